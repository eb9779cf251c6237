package gateway_test

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// TestEverydaySearchParams: over HTTP, the everyday R4 parameters
// (finding p43 F2) are declared in the CapabilityStatement (with the
// includes they allow); _tag, _profile and _security are not (they are
// not indexed: docs/fhir.md), and a search by one is refused as
// unsupported.
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
	} {
		if got := declared(tc.typ)[tc.name]; got != tc.kind {
			t.Errorf("CapabilityStatement %s searchParam %s = %q, want %q", tc.typ, tc.name, got, tc.kind)
		}
	}
	var common []string
	for _, p := range asList(rest["searchParam"]) {
		common = append(common, p.(map[string]any)["name"].(string))
	}
	if want := []string{"_id", "_lastUpdated"}; !slices.Equal(common, want) {
		t.Errorf("rest.searchParam = %v, want %v", common, want)
	}
	for _, name := range []string{"_tag", "_profile", "_security"} {
		var types []string
		for typ := range byType {
			if _, ok := declared(typ)[name]; ok {
				types = append(types, typ)
			}
		}
		if len(types) > 0 {
			t.Errorf("CapabilityStatement declares searchParam %s for %d types (%s, ...), want none", name, len(types), types[0])
		}
	}
	for _, q := range []string{"_tag=urn:t|a", "_profile=" + url.QueryEscape(kgVitalSigns), "_security=PSY", "_security:not=PSY"} {
		rec := req(h, "GET", "/fhir/Observation?"+q, "")
		assertOutcome(t, rec, http.StatusBadRequest, "search-param-unsupported", "")
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
		{"combo-code=8867-4", 1},
		{"value-concept=x", 0},
	} {
		if got := total(tc.query); got != tc.want {
			t.Errorf("GET Observation?%s total = %v, want %v", tc.query, got, tc.want)
		}
	}
}
