package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestExportKickoffMethod (p15 F2): a bulk export's kick-off with another
// method than GET (a client library's POST) is answered alike at every
// level: 405, Allow: OPTIONS, GET (the router answers OPTIONS there), saying to send the kick-off as a GET with the
// parameters in the query.
func TestExportKickoffMethod(t *testing.T) {
	h := fhirServer(t)
	for _, c := range []struct{ method, target string }{
		{"POST", "/fhir/$export"},
		{"POST", "/fhir/Patient/$export"},
		{"POST", "/fhir/Group/g1/$export"},
		{"PUT", "/fhir/$export"},
		{"DELETE", "/fhir/Patient/$export"},
		{"PATCH", "/fhir/Group/g1/$export"},
		{"HEAD", "/fhir/$export"},
	} {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			rec := req(h, c.method, c.target, `{"resourceType":"Parameters"}`, "Prefer: respond-async")
			assertOutcome(t, rec, http.StatusMethodNotAllowed, "method-not-allowed", "")
			if got := rec.Header().Get("Allow"); got != "OPTIONS, GET" {
				t.Errorf("Allow = %q, want OPTIONS, GET", got)
			}
			if !strings.Contains(rec.Body.String(), "kick-off takes GET") {
				t.Errorf("body %s does not say to use GET", rec.Body)
			}
		})
	}
}
