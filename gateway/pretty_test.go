package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestPrettyEverywhere: _pretty=true indents every FHIR answer (http.html,
// general parameters), a read, vread and the representation a write
// answers with as much as a search.
func TestPrettyEverywhere(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/pp1", `{"resourceType":"Patient","id":"pp1","gender":"male"}`); rec.Code != http.StatusCreated {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	for _, c := range []struct{ name, method, target, body, ctype string }{
		{"read", "GET", "/fhir/Patient/pp1?_pretty=true", "", ""},
		{"vread", "GET", "/fhir/Patient/pp1/_history/1?_pretty=true", "", ""},
		{"create", "POST", "/fhir/Patient?_pretty=true", `{"resourceType":"Patient"}`, ""},
		{"update", "PUT", "/fhir/Patient/pp1?_pretty=true", `{"resourceType":"Patient","id":"pp1","gender":"female"}`, ""},
		{"patch", "PATCH", "/fhir/Patient/pp1?_pretty=true", `[{"op":"replace","path":"/gender","value":"other"}]`, "Content-Type: application/json-patch+json"},
		{"search", "GET", "/fhir/Patient?_pretty=true", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hs []string
			if c.ctype != "" {
				hs = append(hs, c.ctype)
			}
			rec := req(h, c.method, c.target, c.body, hs...)
			if rec.Code >= 300 {
				t.Fatalf("%s %s = %d %s", c.method, c.target, rec.Code, rec.Body)
			}
			if !strings.HasPrefix(rec.Body.String(), "{\n  \"resourceType\": ") {
				t.Errorf("%s %s answered %.60q, want it indented", c.method, c.target, rec.Body.String())
			}
			plain := req(h, "GET", strings.Replace(c.target, "?_pretty=true", "", 1), "")
			if c.method == "GET" && strings.Contains(plain.Body.String(), "\n") {
				t.Errorf("GET %s without _pretty is indented", c.target)
			}
		})
	}
}
