package gateway_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// TestEverydaySearchParams: over HTTP, the everyday R4 parameters
// (finding p43 F2) are declared in the CapabilityStatement (with the
// includes they allow), and a mapped vital sign carrying the gateway's PSY
// label and kg-vital-signs profile is found by _security and _profile.
func TestEverydaySearchParams(t *testing.T) {
	h := fhirServer(t)
	cs := decode(t, req(h, "GET", "/fhir/metadata", ""))
	rest := asList(cs["rest"])[0].(map[string]any)
	byType := map[string]map[string]any{}
	for _, r := range asList(rest["resource"]) {
		m := r.(map[string]any)
		byType[m["type"].(string)] = m
	}
	declared := func(typ string) map[string]string {
		out := map[string]string{}
		for _, p := range asList(byType[typ]["searchParam"]) {
			m := p.(map[string]any)
			out[m["name"].(string)] = m["type"].(string)
		}
		return out
	}
	for _, tc := range []struct{ typ, name, kind string }{
		{"Observation", "encounter", "reference"}, {"Observation", "value-concept", "token"},
		{"Observation", "combo-code", "token"}, {"Observation", "value-string", "string"},
		{"Condition", "clinical-status", "token"}, {"Condition", "verification-status", "token"},
		{"Condition", "category", "token"}, {"Condition", "onset-date", "date"}, {"Condition", "encounter", "reference"},
		{"Encounter", "status", "token"}, {"Encounter", "class", "token"}, {"Encounter", "type", "token"},
		{"Encounter", "participant", "reference"}, {"Encounter", "practitioner", "reference"},
		{"Encounter", "service-provider", "reference"},
		{"Procedure", "encounter", "reference"}, {"Procedure", "category", "token"},
		{"MedicationAdministration", "status", "token"}, {"MedicationAdministration", "medication", "reference"},
		{"MedicationAdministration", "context", "reference"}, {"MedicationAdministration", "performer", "reference"},
		{"AdverseEvent", "actuality", "token"}, {"AdverseEvent", "category", "token"},
		{"Patient", "active", "token"}, {"Patient", "phone", "token"}, {"Patient", "email", "token"},
		{"Patient", "telecom", "token"}, {"Patient", "address", "string"}, {"Patient", "address-city", "string"},
		{"Patient", "address-postalcode", "string"}, {"Patient", "address-state", "string"},
		{"Patient", "general-practitioner", "reference"}, {"Patient", "organization", "reference"},
		{"Patient", "deceased", "token"},
		{"DiagnosticReport", "code", "token"}, {"DiagnosticReport", "result", "reference"},
		{"Immunization", "vaccine-code", "token"}, {"Immunization", "date", "date"},
		{"Observation", "_security", "token"}, {"Basic", "_profile", "uri"}, {"Flag", "_tag", "token"},
	} {
		if got := declared(tc.typ)[tc.name]; got != tc.kind {
			t.Errorf("CapabilityStatement %s searchParam %s = %q, want %q", tc.typ, tc.name, got, tc.kind)
		}
	}
	var common []string
	for _, p := range asList(rest["searchParam"]) {
		common = append(common, p.(map[string]any)["name"].(string))
	}
	if want := []string{"_id", "_lastUpdated", "_profile", "_security", "_tag"}; !slices.Equal(common, want) {
		t.Errorf("rest.searchParam = %v, want %v", common, want)
	}
	for _, tc := range []struct{ typ, include string }{
		{"Encounter", "Encounter:practitioner"}, {"Patient", "Patient:general-practitioner"},
		{"Patient", "Patient:organization"}, {"Observation", "Observation:encounter"},
	} {
		if !slices.ContainsFunc(asList(byType[tc.typ]["searchInclude"]), func(v any) bool { return v == tc.include }) {
			t.Errorf("%s searchInclude = %v, want %s among them", tc.typ, byType[tc.typ]["searchInclude"], tc.include)
		}
	}

	if rec := req(h, "POST", "/fhir/Observation", heartRateJSON); rec.Code != http.StatusCreated {
		t.Fatalf("POST Observation = %d %s", rec.Code, rec.Body)
	}
	total := func(query string) any {
		t.Helper()
		rec := req(h, "GET", "/fhir/Observation?"+query, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET Observation?%s = %d %s", query, rec.Code, rec.Body)
		}
		return decode(t, rec)["total"]
	}
	for _, tc := range []struct {
		query string
		want  float64
	}{
		{"_security=PSY", 1},
		{"_security=" + url.QueryEscape("http://terminology.hl7.org/CodeSystem/v3-Confidentiality|R"), 1},
		{"_profile=" + url.QueryEscape(kgVitalSigns), 1},
		{"_profile=" + url.QueryEscape("http://hl7.org/fhir/StructureDefinition/heartrate"), 1},
		{"_security:not=PSY", 0},
		{"combo-code=8867-4", 1},
		{"_tag=urn:t|nothing", 0},
	} {
		if got := total(tc.query); got != tc.want {
			t.Errorf("GET Observation?%s total = %v, want %v", tc.query, got, tc.want)
		}
	}
}
