package engine

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

const (
	vitalSigns = "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
	vitalObs   = `{"resourceType":"Observation","id":"bp","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]}}`
	phq9Obs = `{"resourceType":"Observation","id":"phq","status":"final",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"survey"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]}}`
	amendedVital = `{"resourceType":"Observation","id":"bp2","status":"amended",
		"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],
		"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]}}`
)

// TestGrants: a granular scope grants exactly the stored resources its
// search would select, with the search's token rules, decoding the stored
// body as the stores do to index it (storedContent).
func TestGrants(t *testing.T) {
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
		// The engine decodes a body with a UTF-8 byte order mark as it
		// would have indexed it; encoding/json refuses it.
		{"byte order mark", vitalSigns, "rs", "\xEF\xBB\xBF" + vitalObs, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &store.Resource{Type: "Observation", ID: "x", Version: 1, Body: []byte(tt.body)}
			if got := grants(auth.ParseScopes(tt.scopes), tt.perms, r); got != tt.want {
				t.Errorf("grants(%q, %q, %s) = %v, want %v", tt.scopes, tt.perms, tt.name, got, tt.want)
			}
		})
	}
}
