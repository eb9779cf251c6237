package search

import "testing"

func TestPatientCompartment(t *testing.T) {
	for _, tc := range []struct {
		rt, param string
		ok        bool
	}{
		{"Observation", "patient", true},
		{"Encounter", "patient", true},
		{"AdverseEvent", "subject", true},
		{"Patient", "_id", true},
		{"Immunization", "patient", true},
		{"Provenance", "patient", true},
		{"Practitioner", "", false},
		{"CodeSystem", "", false},
		{"Nope", "", false},
	} {
		if param, ok := PatientCompartment(tc.rt); param != tc.param || ok != tc.ok {
			t.Errorf("PatientCompartment(%s) = %q, %v; want %q, %v", tc.rt, param, ok, tc.param, tc.ok)
		}
	}
	if n := len(PatientCompartmentTypes()); n != 67 {
		t.Errorf("PatientCompartmentTypes() has %d types, want the 67 of R4's definition", n)
	}
}
