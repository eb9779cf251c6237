package gateway_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// TestValidateModes: $validate takes profile and mode only (query or
// Parameters body) and refuses anything else naming where; mode=update
// checks the id and that clients write the type, mode=delete that the
// resource named exists and may be deleted, mode=profile is refused.
func TestValidateModes(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`); rec.Code != 201 {
		t.Fatalf("PUT Patient/p1 = %d %s", rec.Code, rec.Body)
	}
	const patient = `{"resourceType":"Patient"}`
	param := func(parts ...string) string {
		return `{"resourceType":"Parameters","parameter":[` + strings.Join(parts, ",") + `]}`
	}
	for _, tc := range []struct {
		name, target, body string
		status             int
		rule, expr         string // rule "" : valid
	}{
		{"no mode", "/fhir/Patient/$validate", patient, 200, "", ""},
		{"mode create", "/fhir/Patient/$validate?mode=create", patient, 200, "", ""},
		{"mode bogus", "/fhir/Patient/$validate?mode=bogus", patient, 400, "operation-parameters-invalid", "mode"},
		{"mode twice", "/fhir/Patient/$validate?mode=create&mode=update", patient, 400, "operation-parameters-invalid", "mode"},
		{"unknown query parameter", "/fhir/Patient/$validate?foo=bar", patient, 400, "operation-parameters-invalid", ""},
		{"mode profile", "/fhir/Patient/$validate?mode=profile", patient, 400, "validate-mode-unsupported", "mode"},
		{"mode in Parameters", "/fhir/$validate", param(`{"name":"resource","resource":`+patient+`}`, `{"name":"mode","valueCode":"bogus"}`),
			400, "operation-parameters-invalid", "Parameters.parameter[1].valueCode"},
		{"unknown Parameters parameter", "/fhir/$validate", param(`{"name":"resource","resource":`+patient+`}`, `{"name":"foo","valueString":"x"}`),
			400, "operation-parameters-invalid", "Parameters.parameter[1].name"},
		{"Parameters with mode only", "/fhir/Observation/$validate", param(`{"name":"mode","valueCode":"delete"}`),
			400, "operation-parameters-invalid", ""},
		{"Parameters delete of an instance", "/fhir/Patient/p1/$validate", param(`{"name":"mode","valueCode":"delete"}`), 200, "", ""},
		{"update without id", "/fhir/Patient/$validate?mode=update", patient, 200, "id-mismatch", "Patient.id"},
		{"update with id", "/fhir/Patient/$validate?mode=update", `{"resourceType":"Patient","id":"p2"}`, 200, "", ""},
		{"update of a read-only type", "/fhir/$validate?mode=update",
			`{"resourceType":"StructureDefinition","id":"x","url":"http://x.org/sd","name":"X","status":"draft","kind":"resource","abstract":false,"type":"Patient"}`,
			200, "conformance-read-only", ""},
		{"delete by instance", "/fhir/Patient/p1/$validate?mode=delete", "", 200, "", ""},
		{"delete of an unknown instance", "/fhir/Patient/nope/$validate?mode=delete", "", 200, "resource-unknown", "Patient.id"},
		{"delete by the resource's id", "/fhir/$validate?mode=delete", `{"resourceType":"Patient","id":"p1"}`, 200, "", ""},
		{"delete of a conformance resource", "/fhir/StructureDefinition/kg-vital-signs/$validate?mode=delete", "", 200, "conformance-read-only", ""},
		{"delete without an id", "/fhir/Patient/$validate?mode=delete", patient, 400, "operation-parameters-invalid", ""},
		// No mode is R4's general validation: the content, not a write's
		// rules (a conformance review: a valid ValueSet was "invalid" for
		// being read-only here, an instance's body for lacking its id).
		{"no mode, a read-only type", "/fhir/ValueSet/$validate", `{"resourceType":"ValueSet","status":"draft"}`, 200, "", ""},
		{"no mode, an instance without id", "/fhir/Patient/p1/$validate", patient, 200, "", ""},
		{"no mode, an instance of another id", "/fhir/Patient/p1/$validate", `{"resourceType":"Patient","id":"p2"}`, 200, "id-mismatch", "Patient.id"},
		{"mode create, a read-only type", "/fhir/ValueSet/$validate?mode=create", `{"resourceType":"ValueSet","status":"draft"}`, 200, "conformance-read-only", ""},
		{"create at an instance", "/fhir/Patient/p1/$validate?mode=create", `{"resourceType":"Patient","id":"p1"}`, 400, "operation-parameters-invalid", "mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, "POST", tc.target, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("POST %s = %d %s, want %d", tc.target, rec.Code, rec.Body, tc.status)
			}
			is := issues(t, decode(t, rec))
			if tc.rule == "" {
				if len(is) != 1 || is[0]["severity"] != "information" {
					t.Errorf("POST %s = %v, want valid", tc.target, is)
				}
				return
			}
			if !hasIssue(is, tc.rule, tc.expr) || is[0]["severity"] != "error" {
				t.Errorf("POST %s = %v, want an error %s at %q", tc.target, is, tc.rule, tc.expr)
			}
			if strings.Contains(rec.Body.String(), "foo") || strings.Contains(rec.Body.String(), "bogus") {
				t.Errorf("POST %s repeats the value sent: %s", tc.target, rec.Body)
			}
		})
	}
}

// TestValidateInstance: POST /fhir/{type}/{id}/$validate validates the
// body as an update of that instance (R4 defines $validate there), rather
// than answering a 405 that points at GET; another operation there is
// operation-unknown, as for GET; a conditional delete's 405 says what is
// unsupported and what to do.
func TestValidateInstance(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient/p1/$validate", `{"resourceType":"Patient","id":"p1"}`)
	if is := issues(t, decode(t, rec)); rec.Code != 200 || len(is) != 1 || is[0]["severity"] != "information" {
		t.Errorf("instance $validate = %d %s", rec.Code, rec.Body)
	}
	rec = req(h, "POST", "/fhir/Patient/p1/$validate", `{"resourceType":"Patient","id":"p2"}`)
	if is := issues(t, decode(t, rec)); rec.Code != 200 || !hasIssue(is, "id-mismatch", "Patient.id") {
		t.Errorf("instance $validate of another id = %d %s", rec.Code, rec.Body)
	}
	rec = req(h, "POST", "/fhir/Patient/p1/$nope", `{"resourceType":"Patient","id":"p1"}`)
	assertOutcome(t, rec, http.StatusNotFound, "operation-unknown", "")
	rec = req(h, "DELETE", "/fhir/Patient?identifier="+url.QueryEscape("urn:x|1"), "")
	assertOutcome(t, rec, http.StatusMethodNotAllowed, "method-not-allowed", "")
	if !strings.Contains(rec.Body.String(), "conditional delete") || !strings.Contains(rec.Body.String(), "DELETE /fhir/{type}/{id}") {
		t.Errorf("conditional delete: %s", rec.Body)
	}
	allow := strings.Split(rec.Header().Get("Allow"), ", ")
	if slices.Contains(allow, "DELETE") || !slices.Contains(allow, "GET") || !slices.Contains(allow, "POST") {
		t.Errorf("conditional delete: Allow = %v", allow)
	}
}

// TestValidateBaseProfile: R4's base definition of the resource's type as
// the profile is plain R4 validation; of another type, or one of the
// gateway's extension definitions, a type mismatch in the verdict.
func TestValidateBaseProfile(t *testing.T) {
	h := fhirServer(t)
	const obs = `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`
	for _, tc := range []struct{ name, target, rule string }{
		{"base of the type", "/fhir/$validate?profile=" + url.QueryEscape("http://hl7.org/fhir/StructureDefinition/Observation"), ""},
		{"base with R4's version", "/fhir/Observation/$validate?profile=" + url.QueryEscape("http://hl7.org/fhir/StructureDefinition/Observation|4.0.1"), ""},
		{"base of another type", "/fhir/$validate?profile=" + url.QueryEscape("http://hl7.org/fhir/StructureDefinition/Patient"), "profile.type-mismatch"},
		{"an extension", "/fhir/$validate?profile=" + url.QueryEscape("https://ketamine-gateway.org/fhir/StructureDefinition/monitoring-timepoint"), "profile.type-mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, "POST", tc.target, obs)
			is := issues(t, decode(t, rec))
			if rec.Code != 200 {
				t.Fatalf("POST %s = %d %s", tc.target, rec.Code, rec.Body)
			}
			if tc.rule == "" && (len(is) != 1 || is[0]["severity"] != "information") || tc.rule != "" && !hasIssue(is, tc.rule, "Observation") {
				t.Errorf("POST %s = %v, want %q", tc.target, is, tc.rule)
			}
		})
	}
	rec := req(h, "POST", "/fhir/$validate?profile="+url.QueryEscape("http://hl7.org/fhir/StructureDefinition/Observation|3.0.2"), obs)
	assertOutcome(t, rec, http.StatusBadRequest, "profile.unknown", "")
}
