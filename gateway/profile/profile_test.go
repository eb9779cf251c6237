package profile_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
)

// security and identifier satisfy the rules every kg-* profile shares.
const common = `"meta": {"profile": ["https://ketamine-gateway.org/fhir/StructureDefinition/%s"],
	"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"},
	{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
	"identifier": [{"system": "https://x.example/sid", "value": "1"}], "subject": {"reference": "Patient/1"}`

// TestNewProfiles: the rules of kg-safety-flag and kg-medication-request
// hold for a conforming resource and name the element at fault otherwise.
func TestNewProfiles(t *testing.T) {
	flag := `{"resourceType": "Flag", ` + fmt.Sprintf(common, "kg-safety-flag") + `, "status": "active",
		"code": {"text": "C-SSRS screener positive"},
		"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety"}]}],
		"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail", "valueReference": {"reference": "Observation/1"}}]}`
	plan := `{"resourceType": "MedicationRequest", ` + fmt.Sprintf(common, "kg-medication-request") + `, "status": "completed",
		"intent": "order", "medicationCodeableConcept": {"text": "Ketamine"},
		"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 46, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]}]}`
	tests := []struct {
		name, doc string
		drop      string // a member removed from the resource
		want      string // the rule broken, "" none
	}{
		{"flag", flag, "", ""},
		{"flag without flag-detail", flag, "extension", "profile.flag-detail"},
		{"flag without category", flag, "category", "profile.flag-category"},
		{"flag without code text", flag, "code", "profile.code-text"},
		{"plan", plan, "", ""},
		{"plan without a planned dose", plan, "dosageInstruction", "profile.planned-dose"},
		{"plan without subject", plan, "subject", "profile.subject"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal([]byte(tc.doc), &doc); err != nil {
				t.Fatal(err)
			}
			delete(doc, tc.drop)
			issues := profile.Check(doc, "R")
			switch {
			case tc.want == "" && len(issues) > 0:
				t.Errorf("Check() = %+v, want none", issues)
			case tc.want != "" && (len(issues) != 1 || issues[0].Rule != tc.want):
				t.Errorf("Check() = %+v, want %s", issues, tc.want)
			}
		})
	}
}
