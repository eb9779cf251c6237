package conformance

import (
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
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
	// Binding is the value set a code parameter's values come from.
	Binding *OperationBinding `json:"binding,omitempty"`
}

// OperationBinding is OperationDefinition.parameter.binding.
type OperationBinding struct {
	Strength string `json:"strength"`
	ValueSet string `json:"valueSet"`
}

// ValidateURL is the canonical url of the gateway's $validate.
const ValidateURL = mapping.Canonical + "/OperationDefinition/Resource-validate"

// EverythingURL is the canonical url of the gateway's Patient $everything.
const EverythingURL = mapping.Canonical + "/OperationDefinition/Patient-everything"

// OperationDefinitions returns the definitions of the FHIR operations the
// gateway implements: $validate and Patient $everything, each as the
// gateway implements it (derived from R4's, whose base it names).
func OperationDefinitions() []OperationDefinition {
	return []OperationDefinition{everything(), {
		ResourceType: "OperationDefinition", ID: "Resource-validate", URL: ValidateURL, Version: mapping.Version,
		Name: "Validate", Title: "Validate a resource", Status: "active", Kind: "operation", Publisher: profile.Publisher,
		Description: "Validates a resource against R4 (structure, cardinality, primitives, required bindings, invariants), " +
			"the profiles it claims in meta.profile that the gateway knows (its kg-* profiles and the R4 vital-signs profiles) and " +
			"the profile given in the profile parameter; with mode=update also that it carries the id (the URL's at the " +
			"instance level) and that clients write its type and id; with mode=create and update also that it adds no identifier " +
			"in a system the gateway mints for native records' resources (identifier-reserved, as the write would refuse it); " +
			"with mode=delete, whatever the content, that the resource " +
			"named exists and clients may delete it. The answer is an OperationOutcome whose issues name the rule and the " +
			"element (FHIRPath); it is 200 whatever the verdict. An unknown profile, a mode outside create, update and delete, " +
			"and any parameter not declared here are a 400.",
		Code: "validate", Base: "http://hl7.org/fhir/OperationDefinition/Resource-validate",
		Comment: "POST [base]/$validate, [base]/[type]/$validate or [base]/[type]/[id]/$validate, with the resource as the body, " +
			"or a Parameters resource with resource, mode and profile (a Parameters body with none of them is the resource " +
			"validated). profile and mode may also be query parameters (?profile=url&mode=update). Without a mode the content " +
			"is validated (R4's general validation), at every level; mode=delete needs no body at the instance level, elsewhere a " +
			"resource with its id. mode=profile is not supported (400 validate-mode-unsupported): give the profile without a mode.",
		Resource: []string{"Resource"}, System: true, Type: true, Instance: true,
		Parameter: []OperationParameter{
			{Name: "resource", Use: "in", Min: 0, Max: "1", Type: "Resource",
				Documentation: "The resource to validate (in a Parameters body; otherwise the body is the resource). Not needed for mode=delete."},
			{Name: "mode", Use: "in", Min: 0, Max: "1", Type: "code",
				Binding: &OperationBinding{Strength: "required", ValueSet: "http://hl7.org/fhir/ValueSet/resource-validation-mode|4.0.1"},
				Documentation: "None (the default): general validation, the content only, needing a scope on the type (read, create " +
					"or update). create (also that clients may create the type and its identifiers; needs the create scope), update (the " +
					"resource must carry its id, the URL's at the instance level, and clients must write its type and id; needs the " +
					"update scope) or delete (the resource named, by the URL or the resource's type and id, must exist and clients " +
					"may delete it; the content is not checked; needs the delete scope). R4's profile mode is not supported."},
			{Name: "profile", Use: "in", Min: 0, Max: "1", Type: "uri",
				Documentation: "The canonical url (optionally |version) of a profile to validate against: a kg-* profile or an R4 vital-signs profile (see the CapabilityStatement's supportedProfile), or R4's base definition of the resource's type (http://hl7.org/fhir/StructureDefinition/[type]), which adds nothing to the R4 checks."},
			{Name: "return", Use: "out", Min: 1, Max: "1", Type: "OperationOutcome",
				Documentation: "The issues found: errors, warnings (extensible bindings) and information (profiles not checked)."},
		},
	}}
}

// everything is Patient $everything as the gateway implements it: R4's
// (patient-operation-everything.html) at the instance level only, with
// _offset for paging.
func everything() OperationDefinition {
	return OperationDefinition{
		ResourceType: "OperationDefinition", ID: "Patient-everything", URL: EverythingURL, Version: mapping.Version,
		Name: "Everything", Title: "Fetch a patient's record", Status: "active", Kind: "operation", Publisher: profile.Publisher,
		Description: "Returns one Patient (first on the first page) and the resources of its patient compartment the caller " +
			"may see, as a searchset Bundle paged by _count and _offset (newest last). AuditEvents only when _type names " +
			"them; the resources those reference (Practitioners, Medications) are not added.",
		Code: "everything", Base: "http://hl7.org/fhir/OperationDefinition/Patient-everything",
		Comment: "GET [base]/Patient/[id]/$everything?parameters, or POST with a Parameters body (or none). Only the " +
			"instance level: [base]/Patient/$everything (every patient) is not supported. start and end compare each " +
			"resource's date of care, the search parameter " + careDates() + "; resources of other types, and those " +
			"without that date, are returned whatever the period. Any parameter not declared here is a 400 naming it.",
		Resource: []string{"Patient"}, System: false, Type: false, Instance: true,
		Parameter: []OperationParameter{
			{Name: "start", Use: "in", Min: 0, Max: "1", Type: "date",
				Documentation: "The start of the period of care (a date; a dateTime with its time zone is taken too): resources whose date of care ends before it are left out. Without it, all care up to end."},
			{Name: "end", Use: "in", Min: 0, Max: "1", Type: "date",
				Documentation: "The end of the period of care (a date covers its whole day; a dateTime with its time zone is taken too): resources whose date of care begins after it are left out. Without it, all care from start on."},
			{Name: "_since", Use: "in", Min: 0, Max: "1", Type: "instant",
				Documentation: "Only resources updated at or after this instant (meta.lastUpdated); the Patient is returned whatever it says. An instant to the second with its time zone (2026-12-06T14:50:00Z): a date alone, or a time without seconds or zone, is 400."},
			{Name: "_type", Use: "in", Min: 0, Max: "*", Type: "code",
				Documentation: "The resource types to return, of the Patient compartment (a comma list in a URL, the parameter repeated in a Parameters body). Without it every compartment type the caller's scopes let it read, but AuditEvent; a type it may not read is 403."},
			{Name: "_count", Use: "in", Min: 0, Max: "1", Type: "integer",
				Documentation: "The page size: default 50, at most 1000; 0 answers the total only (no entries), as a search's _count=0."},
			{Name: "_offset", Use: "in", Min: 0, Max: "1", Type: "integer",
				Documentation: "The first match of the page (the gateway's next links carry it)."},
			{Name: "return", Use: "out", Min: 1, Max: "1", Type: "Bundle",
				Documentation: "A searchset Bundle: the Patient, then the resources of its compartment."},
		},
	}
}

// careDates lists the types whose date of care $everything's start and end
// compare, with its search parameter ("AdverseEvent date, ...").
func careDates() string {
	var out []string
	for _, t := range search.PatientCompartmentTypes() {
		if p := search.CareDate(t); p != "" {
			out = append(out, t+" "+p)
		}
	}
	return strings.Join(out, ", ")
}
