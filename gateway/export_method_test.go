package gateway_test

import (
	"net/http"
	"net/http/httptest"
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

// TestExportPreferLines (a new user's first hour): respond-async and
// handling=lenient sent as two Prefer header lines are the two
// preferences (RFC 7240 §2: as one comma-joined header); the kick-off
// read the first line only and refused asking for a header it was sent.
func TestExportPreferLines(t *testing.T) {
	h := fhirServer(t)
	for _, lines := range [][]string{{"handling=lenient", "respond-async"}, {"respond-async", "handling=lenient"}} {
		r := httptest.NewRequest(http.MethodGet, "/fhir/$export?_type=Patient&organizeOutputBy=Patient", nil)
		for _, l := range lines {
			r.Header.Add("Prefer", l)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != http.StatusAccepted {
			t.Errorf("Prefer lines %q: %d %s, want 202", lines, rec.Code, rec.Body)
		}
	}
}
