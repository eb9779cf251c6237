package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestParametersNotRESTful: R4 gives Parameters no RESTful endpoint: the
// CapabilityStatement does not list it, its URLs answer 404
// resource-type-not-restful (pointing at /fhir/$validate), and a
// Parameters with a resource parameter validates that resource at the
// system level (HL7's params-resource case).
func TestParametersNotRESTful(t *testing.T) {
	h := fhirServer(t)
	const params = `{"resourceType":"Parameters","parameter":[{"name":"x","valueString":"y"}]}`
	for _, tc := range []struct{ method, target, body string }{
		{"POST", "/fhir/Parameters", params},
		{"PUT", "/fhir/Parameters/a", `{"resourceType":"Parameters","id":"a"}`},
		{"GET", "/fhir/Parameters/a", ""},
		{"GET", "/fhir/Parameters", ""},
		{"DELETE", "/fhir/Parameters/a", ""},
		{"GET", "/fhir/Parameters/_history", ""},
		{"POST", "/fhir/Parameters/$validate", params},
	} {
		rec := req(h, tc.method, tc.target, tc.body)
		assertOutcome(t, rec, http.StatusNotFound, "resource-type-not-restful", "")
		if !strings.Contains(rec.Body.String(), "/fhir/$validate") {
			t.Errorf("%s %s does not point at /fhir/$validate: %s", tc.method, tc.target, rec.Body)
		}
	}
	bundle := `{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + params + `,"request":{"method":"POST","url":"Parameters"}}]}`
	if rec := req(h, "POST", "/fhir", bundle); !strings.Contains(rec.Body.String(), "resource-type-not-restful") {
		t.Errorf("batch POST Parameters = %d %s", rec.Code, rec.Body)
	}
	cs := decode(t, req(h, "GET", "/fhir/metadata", ""))
	for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
		if r.(map[string]any)["type"] == "Parameters" {
			t.Errorf("the CapabilityStatement lists Parameters: %v", r)
		}
	}
	// HL7's params-resource: a Parameters whose resource is a Patient.
	paramsResource := `{"resourceType":"Parameters","parameter":[{"name":"resource","resource":{"resourceType":"Patient","name":[{"given":["James"]}],"birthDate":"2011-02-02"}}]}`
	rec := req(h, "POST", "/fhir/$validate", paramsResource)
	if is := issues(t, decode(t, rec)); rec.Code != 200 || len(is) != 1 || is[0]["severity"] != "information" {
		t.Errorf("params-resource = %d %s", rec.Code, rec.Body)
	}
	// A Parameters without $validate's parameters is the resource validated.
	rec = req(h, "POST", "/fhir/$validate", params)
	if is := issues(t, decode(t, rec)); rec.Code != 200 || len(is) != 1 || is[0]["severity"] != "information" {
		t.Errorf("a Parameters resource = %d %s", rec.Code, rec.Body)
	}
}
