// Package conformance holds the gateway's own conformance resources: its
// CodeSystems (the local concepts of the mappings and the catalogue of
// validation rule ids) and the SearchParameters it defines. The engine
// stores them at start so they are readable and searchable like any
// resource; the CLI prints them.
package conformance

import (
	"encoding/json"
	"fmt"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// CodeSystems returns the gateway's own CodeSystems: the local concepts of
// the mappings and the catalogue of validation rule ids.
func CodeSystems() []fhir.CodeSystem {
	rules := fhir.CodeSystem{
		Id:            ptr("validation-rule"),
		Url:           ptr(outcome.RuleSystem),
		Version:       ptr(mapping.Version),
		Name:          ptr("KetamineGatewayValidationRule"),
		Title:         ptr("Ketamine-therapy gateway validation rules"),
		Status:        fhir.PublicationStatusActive,
		Experimental:  ptr(false),
		Description:   ptr("The rule ids the gateway reports in OperationOutcome.issue.details.coding. Clinical rules of native records are listed here; schema rules are named schema.<keyword>, JSON rules json-<problem>, FHIR structure rules by their validator rule id or FHIR invariant key."),
		CaseSensitive: ptr(true),
		Content:       fhir.CodeSystemContentModeFragment,
	}
	for _, r := range mapping.Rules() {
		rules.Concept = append(rules.Concept, fhir.CodeSystemConcept{Code: r.ID, Definition: ptr(r.Description)})
	}
	return append(mapping.CodeSystems(), rules)
}

// CodeSystemIDs lists the ids of CodeSystems().
func CodeSystemIDs() []string {
	var ids []string
	for _, cs := range CodeSystems() {
		if cs.Id != nil {
			ids = append(ids, *cs.Id)
		}
	}
	return ids
}

// Resources returns every conformance resource the gateway stores, as JSON.
func Resources() ([][]byte, error) {
	var docs []any
	for _, cs := range CodeSystems() {
		docs = append(docs, cs)
	}
	for _, sp := range search.GatewaySearchParameters() {
		docs = append(docs, sp)
	}
	out := make([][]byte, 0, len(docs))
	for _, d := range docs {
		raw, err := json.Marshal(d)
		if err != nil {
			return nil, fmt.Errorf("marshal conformance resource: %w", err)
		}
		out = append(out, raw)
	}
	return out, nil
}

func ptr[T any](v T) *T { return &v }
