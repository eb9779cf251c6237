package gateway_test

import (
	"strings"
	"testing"
)

// TestEmptyPreconditionHeaders: a conditional header sent with no value
// (curl -H 'If-None-Exist;') is 400 precondition-invalid naming it, as a
// malformed one is, and nothing is written; it was taken as absent, which
// made a duplicate create or an update without a version check (p27 F3).
// A Bundle entry's empty request.ifMatch (and the like) is refused as well.
func TestEmptyPreconditionHeaders(t *testing.T) {
	h := fhirServer(t)
	const pat = `{"resourceType":"Patient","id":"empty1","identifier":[{"system":"urn:cc","value":"A1"}]}`
	if rec := req(h, "PUT", "/fhir/Patient/empty1", pat); rec.Code != 201 {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	create := `{"resourceType":"Patient","identifier":[{"system":"urn:cc","value":"A1"}]}`
	patch := `[{"op":"add","path":"/active","value":true}]`
	for _, c := range []struct {
		name, method, target, body, header string
		extra                              []string
	}{
		{"create, If-None-Exist", "POST", "/fhir/Patient", create, "If-None-Exist", nil},
		{"update, If-Match", "PUT", "/fhir/Patient/empty1", pat, "If-Match", nil},
		{"update, If-None-Match", "PUT", "/fhir/Patient/empty1", pat, "If-None-Match", nil},
		{"update, If-Unmodified-Since", "PUT", "/fhir/Patient/empty1", pat, "If-Unmodified-Since", nil},
		{"conditional update, If-Match", "PUT", "/fhir/Patient?identifier=urn:cc|A1", pat, "If-Match", nil},
		{"patch, If-Match", "PATCH", "/fhir/Patient/empty1", patch, "If-Match", []string{"Content-Type: application/json-patch+json"}},
		{"delete, If-Match", "DELETE", "/fhir/Patient/empty1", "", "If-Match", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, c.method, c.target, c.body, append([]string{c.header + ":"}, c.extra...)...)
			if rec.Code != 400 || !strings.Contains(rec.Body.String(), "precondition-invalid") || !strings.Contains(rec.Body.String(), c.header) {
				t.Fatalf("%s %s with an empty %s = %d %s; want 400 precondition-invalid naming it", c.method, c.target, c.header, rec.Code, rec.Body)
			}
		})
	}
	// Nothing was written: one Patient A1, at version 1.
	if b := decode(t, req(h, "GET", "/fhir/Patient?identifier=urn:cc|A1", "")); b["total"] != float64(1) {
		t.Errorf("Patient?identifier=urn:cc|A1 total = %v, want 1", b["total"])
	}
	if rec := req(h, "GET", "/fhir/Patient/empty1", ""); rec.Header().Get("ETag") != `W/"1"` {
		t.Errorf("Patient/empty1 ETag = %q, want W/\"1\"", rec.Header().Get("ETag"))
	}
	// The same in a Bundle entry's request, in a transaction and a batch
	// (already: an empty FHIR string is invalid).
	for _, c := range []struct{ name, request string }{
		{"ifMatch", `{"method":"PUT","url":"Patient/empty1","ifMatch":""}`},
		{"ifNoneMatch", `{"method":"PUT","url":"Patient/empty1","ifNoneMatch":""}`},
		{"ifNoneExist", `{"method":"POST","url":"Patient","ifNoneExist":""}`},
	} {
		for _, typ := range []string{"transaction", "batch"} {
			t.Run("entry "+c.name+" in a "+typ, func(t *testing.T) {
				body := strings.Replace(txBundle(`{"resource":`+pat+`,"request":`+c.request+`}`), `"transaction"`, `"`+typ+`"`, 1)
				if c.name == "ifNoneExist" {
					body = strings.Replace(body, `"id":"empty1",`, "", 1)
				}
				rec := req(h, "POST", "/fhir", body)
				s := rec.Body.String()
				// A batch's shell is validated whole: the empty string (a FHIR
				// string is never empty) refuses it, as the entry's own 400 would.
				if rec.Code != 400 && (typ == "transaction" || !strings.Contains(s, `"400`)) {
					t.Fatalf("%s with an empty %s = %d %s; want it refused", typ, c.name, rec.Code, s)
				}
				if !strings.Contains(s, c.name) {
					t.Errorf("the refusal does not name %s: %s", c.name, s)
				}
			})
		}
	}
}
