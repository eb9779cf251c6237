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

// notCareDates are the date parameters of types of the patient
// compartment that do not date care: Patient's birthdate, and a
// Condition's onset-date (a problem that began years ago is part of the
// care in any period: $everything keeps Conditions whatever their dates).
var notCareDates = map[string]string{
	"Condition": "onset-date",
	"Patient":   "birthdate",
}

// TestCareDates: every date parameter the gateway indexes on a type of the
// patient compartment is that type's CareDate (or Patient's birthdate), so
// that a new one is a decision for $everything's start and end, not
// silently left out; and each CareDate is a date parameter of its type.
func TestCareDates(t *testing.T) {
	for _, rt := range PatientCompartmentTypes() {
		for _, p := range Params(rt) {
			if p.Type != TypeDate || p.Name == "_lastUpdated" || notCareDates[rt] == p.Name {
				continue
			}
			if got := CareDate(rt); got != p.Name {
				t.Errorf("%s: date parameter %s, CareDate %q: say in careDates which one dates its care", rt, p.Name, got)
			}
		}
	}
	for rt, name := range careDates {
		if p, ok := Lookup(rt, name); !ok || p.Type != TypeDate {
			t.Errorf("careDates: %s %s is not a date parameter of the type", rt, name)
		}
		if _, ok := PatientCompartment(rt); !ok {
			t.Errorf("careDates: %s is not a type of the patient compartment", rt)
		}
	}
}
