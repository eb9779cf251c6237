package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// Pipeline is the native-record and FHIR validation pipeline shared by the
// HTTP API and the CLI, so both answer the same input the same way.
type Pipeline struct {
	opts      mapping.Options
	schemas   *schemas.Set
	validator *r4.Validator
}

// NewPipeline compiles the schemas and the FHIR validator once.
func NewPipeline(opts mapping.Options) (*Pipeline, error) {
	set, err := schemas.New()
	if err != nil {
		return nil, fmt.Errorf("compile schemas: %w", err)
	}
	return &Pipeline{opts: opts, schemas: set, validator: r4.New(r4.Options{})}, nil
}

// Map validates a native record against its schema, checks its clinical
// rules and maps it. Client mistakes come back as *Error (unknown kind),
// *schemas.ValidationError or *mapping.RuleError.
func (p *Pipeline) Map(kind mapping.Kind, doc []byte) (*mapping.Result, error) {
	return p.MapWith(kind, doc, p.opts)
}

// MapWith is Map with other mapping options (e.g. Update for a newer
// version of a stored record).
func (p *Pipeline) MapWith(kind mapping.Kind, doc []byte, opts mapping.Options) (*mapping.Result, error) {
	if err := p.ValidateRecord(kind, doc); err != nil {
		return nil, err
	}
	return p.MapValid(kind, doc, opts)
}

// ValidateRecord checks a native record against its kind's JSON Schema.
// Returns *Error for an unknown kind and *schemas.ValidationError for a
// client mistake.
func (p *Pipeline) ValidateRecord(kind mapping.Kind, doc []byte) error {
	if !knownKind(kind) {
		return errKindUnknown
	}
	return p.schemas.Validate(string(kind), doc)
}

// MapValid checks the clinical rules of a record ValidateRecord accepted
// and maps it (*mapping.RuleError for a broken rule); the schema is not
// checked again.
func (p *Pipeline) MapValid(kind mapping.Kind, doc []byte, opts mapping.Options) (*mapping.Result, error) {
	rec, err := mapping.Decode(kind, doc)
	if err != nil {
		return nil, fmt.Errorf("decode schema-valid %s record: %w", kind, err)
	}
	return mapping.Map(rec, opts)
}

// errKindUnknown answers a record kind the gateway does not map.
var errKindUnknown = errorf(http.StatusNotFound, "not-found", "kind-unknown",
	"unknown record kind; use assessment, vitals, infusion, adverse-event or session")

// ValidateMapped checks every resource a mapping produced against the R4
// definitions and returns their JSON (nil for an entry without a
// resource), so the store writes the bytes it validated. A failure is the
// gateway's bug, not the client's: it returns an error that answers 500
// (the record is not stored).
func (p *Pipeline) ValidateMapped(res *mapping.Result) ([][]byte, error) {
	raws := make([][]byte, len(res.Entries))
	for i, e := range res.Entries {
		if e.Resource == nil {
			continue
		}
		raw, err := json.Marshal(e.Resource)
		if err != nil {
			return nil, fmt.Errorf("marshal mapped entry %d: %w", i, err)
		}
		if r := p.validator.ValidateAs(raw, e.ResourceType); !r.Valid() {
			rule := ""
			if is := fhirIssues(r); len(is) > 0 {
				rule = is[0].Rule
			}
			return nil, fmt.Errorf("mapped %s entry %d breaks FHIR rule %q", e.ResourceType, i, rule)
		}
		raws[i] = raw
	}
	return raws, nil
}

// ValidateFHIR validates a FHIR resource (or Bundle) structurally. It
// returns *FHIRValidationError when there is an error-severity issue.
func (p *Pipeline) ValidateFHIR(doc []byte) error {
	res := p.validator.Validate(doc)
	if !res.Valid() {
		return &FHIRValidationError{Result: res}
	}
	m, err := decodeJSON(doc)
	if err != nil {
		return &FHIRValidationError{Result: res}
	}
	typ, _ := m["resourceType"].(string)
	issues := checkProfiles(m, typ)
	if entries, ok := m["entry"].([]any); ok && typ == "Bundle" {
		for i, e := range entries {
			em, _ := e.(map[string]any)
			if r, ok := em["resource"].(map[string]any); ok {
				issues = append(issues, checkProfiles(r, fmt.Sprintf("Bundle.entry[%d].resource", i))...)
			}
		}
	}
	return profileError(issues)
}

func knownKind(k mapping.Kind) bool {
	for _, known := range mapping.Kinds() {
		if k == known {
			return true
		}
	}
	return false
}

// CodeSystems returns the gateway's own CodeSystems: the local concepts of
// the mappings and the catalogue of validation rule ids.
func CodeSystems() []fhir.CodeSystem {
	rules := fhir.CodeSystem{
		Id:            ptr("validation-rule"),
		Url:           ptr(RuleSystem),
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
