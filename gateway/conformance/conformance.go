// Package conformance holds the gateway's conformance resources: its
// CodeSystems (the local concepts of the mappings and the catalogue of
// validation rule ids), the StructureDefinitions of its profiles and
// extensions and the ValueSets they bind (package profile), the
// SearchParameters it defines, the OperationDefinitions of its operations
// and the ImplementationGuide that lists them all. The engine stores them
// at start so they are readable and searchable like any resource; the CLI
// prints the CodeSystems and packs everything as a FHIR NPM package.
package conformance

import (
	"encoding/json"
	"fmt"
	"slices"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
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
		Publisher:     ptr(profile.Publisher),
		Description:   ptr("The rule ids the gateway reports in OperationOutcome.issue.details.coding: the JSON (json-*) and schema (schema.*) rules of native records, their clinical rules, the rules of the gateway's profiles (profile.*), the R4 validator's structure rules and the FHIR invariant keys it checks, and the rules of requests, of the FHIR API, of authentication (auth-*), bulk data, jobs and the console."),
		CaseSensitive: ptr(true),
		Content:       fhir.CodeSystemContentModeFragment,
	}
	for _, r := range schemas.Rules() {
		rules.Concept = append(rules.Concept, fhir.CodeSystemConcept{Code: r.ID, Definition: ptr(r.Description)})
	}
	for _, r := range mapping.Rules() {
		rules.Concept = append(rules.Concept, fhir.CodeSystemConcept{Code: r.ID, Definition: ptr(r.Description)})
	}
	for _, r := range profile.Rules() {
		rules.Concept = append(rules.Concept, fhir.CodeSystemConcept{Code: r.ID, Definition: ptr(r.Description)})
	}
	for _, r := range GatewayRules() {
		if !slices.ContainsFunc(rules.Concept, func(c fhir.CodeSystemConcept) bool { return c.Code == r.ID }) {
			rules.Concept = append(rules.Concept, fhir.CodeSystemConcept{Code: r.ID, Definition: ptr(r.Description)})
		}
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

// Resource is one conformance resource, rendered, with the facts a
// package index lists.
type Resource struct {
	ResourceType, ID, URL, Version, Name, Title, Description string
	// Kind, Type and Derivation are a StructureDefinition's; Content a
	// CodeSystem's.
	Kind, Type, Derivation, Content string
	// JSON is the resource.
	JSON []byte
}

// All returns every conformance resource the gateway publishes, the
// ImplementationGuide last. p supplies the profiles, extensions and
// ValueSets.
func All(p *profile.Set) ([]Resource, error) {
	var docs []any
	for _, cs := range CodeSystems() {
		docs = append(docs, cs)
	}
	for _, vs := range p.ValueSets() {
		docs = append(docs, vs)
	}
	for _, sd := range p.Profiles() {
		docs = append(docs, sd)
	}
	for _, sd := range p.Extensions() {
		docs = append(docs, sd)
	}
	for _, sp := range search.GatewaySearchParameters() {
		docs = append(docs, sp)
	}
	for _, op := range OperationDefinitions() {
		docs = append(docs, op)
	}
	out := make([]Resource, 0, len(docs)+1)
	for _, d := range docs {
		r, err := render(d)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	ig, err := render(guide(out))
	if err != nil {
		return nil, err
	}
	return append(out, ig), nil
}

// Resources returns every conformance resource the gateway stores, as JSON.
func Resources(p *profile.Set) ([][]byte, error) {
	all, err := All(p)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, 0, len(all))
	for _, r := range all {
		out = append(out, r.JSON)
	}
	return out, nil
}

// render marshals a resource and reads its index facts back.
func render(doc any) (Resource, error) {
	raw, err := json.Marshal(doc)
	if err != nil {
		return Resource{}, fmt.Errorf("marshal conformance resource: %w", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return Resource{}, fmt.Errorf("read conformance resource: %w", err)
	}
	get := func(k string) string { s, _ := m[k].(string); return s }
	r := Resource{ResourceType: get("resourceType"), ID: get("id"), URL: get("url"), Version: get("version"),
		Name: get("name"), Title: get("title"), Description: get("description"), JSON: raw}
	if r.ResourceType == "StructureDefinition" {
		r.Kind, r.Type, r.Derivation = get("kind"), get("type"), get("derivation")
	}
	if r.ResourceType == "CodeSystem" {
		r.Content = get("content")
	}
	return r, nil
}

func ptr[T any](v T) *T { return &v }
