package auth

import (
	"encoding/json"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

const (
	vitalObs = `{"resourceType":"Observation","id":"bp","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]}}`
	phq9Obs = `{"resourceType":"Observation","id":"phq","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]}}`
	amendedVital = `{"resourceType":"Observation","id":"bp2","status":"amended",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}}`
)

func entriesOf(t *testing.T, body string) []search.Entry {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatal(err)
	}
	return search.Extract("Observation", doc)
}

// TestScopesGrants: a granular scope grants exactly the resources its
// search would select, with the search's token rules.
func TestScopesGrants(t *testing.T) {
	tests := []struct {
		name, scopes, perms, body string
		want                      bool
	}{
		{"vital signs: a vital sign", vitalSigns, "rs", vitalObs, true},
		{"vital signs: a PHQ-9", vitalSigns, "rs", phq9Obs, false},
		{"code alone", "system/Observation.rs?category=vital-signs", "r", vitalObs, true},
		{"system alone", "system/Observation.rs?code=http://loinc.org|", "r", phq9Obs, true},
		{"other system", "system/Observation.rs?category=http://example.org|vital-signs", "r", vitalObs, false},
		{"ORed values", "system/Observation.rs?code=44261-6,85354-9", "s", phq9Obs, true},
		{"ANDed params: both", "system/Observation.rs?category=vital-signs&status=final", "r", vitalObs, true},
		{"ANDed params: one", "system/Observation.rs?category=vital-signs&status=final", "r", amendedVital, false},
		{"bound status code", "system/Observation.rs?status=http://hl7.org/fhir/observation-status|amended", "r", amendedVital, true},
		{"scopes ORed", vitalSigns + " system/Observation.rs?code=44261-6", "r", phq9Obs, true},
		{"unrestricted wins", vitalSigns + " system/Observation.r", "r", phq9Obs, true},
		{"star unrestricted", vitalSigns + " system/*.rs", "r", phq9Obs, true},
		{"other permission", vitalSigns + " system/Observation.c", "u", vitalObs, false},
		{"restricted write", "system/Observation.cu?category=vital-signs", "u", vitalObs, true},
		{"restricted write: other", "system/Observation.cu?category=vital-signs", "u", phq9Obs, false},
		{"not granted at all", "system/Patient.rs", "r", vitalObs, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ParseScopes(tt.scopes).Grants("Observation", tt.perms, entriesOf(t, tt.body)); got != tt.want {
				t.Errorf("ParseScopes(%q).Grants(Observation, %q, %s) = %v, want %v", tt.scopes, tt.perms, tt.name, got, tt.want)
			}
		})
	}
}

func TestScopesRestriction(t *testing.T) {
	s := ParseScopes(vitalSigns + " system/Observation.rs?code=44261-6 system/Patient.rs system/*.c")
	if rs, un := s.Restriction("Observation", "rs"); un || len(rs) != 2 {
		t.Errorf("Restriction(Observation, rs) = %d restrictions, unrestricted %v; want 2, false", len(rs), un)
	}
	if rs, un := s.Restriction("Patient", "r"); !un || rs != nil {
		t.Errorf("Restriction(Patient, r) = %v, %v; want nil, true", rs, un)
	}
	if rs, un := s.Restriction("Observation", "c"); !un || rs != nil {
		t.Errorf("Restriction(Observation, c) = %v, %v; want nil, true (system/*.c)", rs, un)
	}
	if rs, un := s.Restriction("Observation", "d"); un || rs != nil {
		t.Errorf("Restriction(Observation, d) = %v, %v; want nothing granted", rs, un)
	}
}
