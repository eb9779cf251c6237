package search_test

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestParamDefinitions: every parameter names where it is defined (the
// CapabilityStatement's searchParam.definition): R4's SearchParameter for
// those the gateway implements as R4 defines them, the gateway's own for
// those it defines, none for the gateway's approximated patient parameter.
func TestParamDefinitions(t *testing.T) {
	const hl7, kg = "http://hl7.org/fhir/SearchParameter/", "https://ketamine-gateway.org/fhir/SearchParameter/"
	for _, tc := range []struct{ typ, name, want string }{
		{"Observation", "code", hl7 + "clinical-code"},
		{"Observation", "patient", hl7 + "clinical-patient"},
		{"Observation", "_id", hl7 + "Resource-id"},
		{"Observation", "_lastUpdated", hl7 + "Resource-lastUpdated"},
		{"Patient", "identifier", hl7 + "Patient-identifier"},
		{"Patient", "family", hl7 + "individual-family"},
		{"Practitioner", "identifier", hl7 + "Practitioner-identifier"},
		{"Organization", "name", hl7 + "Organization-name"},
		{"CodeSystem", "url", hl7 + "conformance-url"},
		{"MedicationAdministration", "part-of", kg + "MedicationAdministration-part-of"},
		{"AdverseEvent", "identifier", kg + "AdverseEvent-identifier"},
		{"AuditEvent", "trace-id", kg + "AuditEvent-trace-id"},
		{"Provenance", "trace-id", kg + "Provenance-trace-id"},
		{"Practitioner", "patient", ""}, // any reference to a Patient: not R4's
		{"Account", "patient", hl7 + "Account-patient"},
		{"Immunization", "patient", hl7 + "clinical-patient"},
		{"Goal", "patient", hl7 + "clinical-patient"},
		{"Task", "patient", hl7 + "Task-patient"},
		{"Group", "member", hl7 + "Group-member"},
		{"Medication", "patient", ""}, // R4 has none: the gateway's own
	} {
		p, ok := search.Lookup(tc.typ, tc.name)
		if !ok || p.Definition != tc.want {
			t.Errorf("Lookup(%s, %s).Definition = %q, %v; want %q", tc.typ, tc.name, p.Definition, ok, tc.want)
		}
	}
	// No parameter is left without one but the approximated patient; one
	// R4 defines cites R4's SearchParameter, one it does not the
	// gateway's own, never HL7's.
	for _, typ := range search.Types() {
		for _, p := range search.Params(typ) {
			if p.Definition == "" && !(p.Name == "patient" && len(p.Paths) == 0) {
				t.Errorf("%s %s has no definition", typ, p.Name)
			}
			r4 := search.R4Definition(typ, p.Name)
			switch {
			case strings.HasPrefix(p.Definition, hl7) && p.Definition != r4:
				t.Errorf("%s %s cites %s, but R4's is %q", typ, p.Name, p.Definition, r4)
			case strings.HasPrefix(p.Definition, kg) && r4 != "":
				t.Errorf("%s %s cites the gateway's %s, but R4 defines it: %s", typ, p.Name, p.Definition, r4)
			}
		}
	}
}
