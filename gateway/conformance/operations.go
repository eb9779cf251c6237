package conformance

import (
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// OperationDefinition is an R4 OperationDefinition (operationdefinition.html).
type OperationDefinition struct {
	ResourceType string               `json:"resourceType"`
	ID           string               `json:"id"`
	URL          string               `json:"url"`
	Version      string               `json:"version"`
	Name         string               `json:"name"`
	Title        string               `json:"title"`
	Status       string               `json:"status"`
	Kind         string               `json:"kind"`
	Experimental bool                 `json:"experimental"`
	Publisher    string               `json:"publisher"`
	Description  string               `json:"description"`
	AffectsState bool                 `json:"affectsState"`
	Code         string               `json:"code"`
	Comment      string               `json:"comment,omitempty"`
	Base         string               `json:"base,omitempty"`
	Resource     []string             `json:"resource"`
	System       bool                 `json:"system"`
	Type         bool                 `json:"type"`
	Instance     bool                 `json:"instance"`
	Parameter    []OperationParameter `json:"parameter"`
}

// OperationParameter is one parameter of an operation.
type OperationParameter struct {
	Name          string `json:"name"`
	Use           string `json:"use"`
	Min           int    `json:"min"`
	Max           string `json:"max"`
	Documentation string `json:"documentation"`
	Type          string `json:"type"`
}

// ValidateURL is the canonical url of the gateway's $validate.
const ValidateURL = mapping.Canonical + "/OperationDefinition/Resource-validate"

// OperationDefinitions returns the definitions of the FHIR operations the
// gateway implements: $validate.
func OperationDefinitions() []OperationDefinition {
	return []OperationDefinition{{
		ResourceType: "OperationDefinition", ID: "Resource-validate", URL: ValidateURL, Version: mapping.Version,
		Name: "Validate", Title: "Validate a resource", Status: "active", Kind: "operation", Publisher: profile.Publisher,
		Description: "Validates a resource against R4 (structure, cardinality, primitives, required bindings, invariants), " +
			"the profiles it claims in meta.profile that the gateway knows (its kg-* profiles and the R4 vital-signs profiles) and " +
			"the profile given in the profile parameter. The answer is an OperationOutcome whose issues name the rule and the " +
			"element (FHIRPath); it is 200 whatever the verdict. An unknown profile is a 400.",
		Code: "validate", Base: "http://hl7.org/fhir/OperationDefinition/Resource-validate",
		Comment:  "POST [base]/$validate or [base]/[type]/$validate, with the resource as the body, or a Parameters resource with resource and profile. The profile may also be given as a query parameter (?profile=url). Modes (create, update, delete) are not supported; instances are not validated in place.",
		Resource: []string{"Resource"}, System: true, Type: true, Instance: false,
		Parameter: []OperationParameter{
			{Name: "resource", Use: "in", Min: 0, Max: "1", Type: "Resource",
				Documentation: "The resource to validate (in a Parameters body; otherwise the body is the resource)."},
			{Name: "profile", Use: "in", Min: 0, Max: "1", Type: "uri",
				Documentation: "The canonical url (optionally |version) of a profile to validate against: a kg-* profile or an R4 vital-signs profile (see the CapabilityStatement's supportedProfile)."},
			{Name: "return", Use: "out", Min: 1, Max: "1", Type: "OperationOutcome",
				Documentation: "The issues found: errors, warnings (extensible bindings) and information (profiles not checked)."},
		},
	}}
}
