package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestOffsetPlusUnencoded: a date or instant query value whose offset's +
// was sent unencoded arrives with a space in its place; every such
// parameter's error says so and how to send it (finding p28 F3: only
// $export did).
func TestOffsetPlusUnencoded(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p1"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("PUT Patient/p1 = %d %s", rec.Code, rec.Body)
	}
	const at = "2026-12-06T14:25:13+13:00" // + unencoded: a space once decoded
	for _, target := range []string{
		"/fhir/Patient/_history?_since=" + at,
		"/fhir/_history?_since=" + at,
		"/fhir/Patient/p1/_history?_since=" + at,
		"/fhir/Patient/p1/$everything?_since=" + at,
		"/fhir/Observation?date=ge" + at,
		"/fhir/Observation?date=" + at,
		"/fhir/Patient?_lastUpdated=gt" + at,
		"/fhir/Patient?birthdate=le2026-12-06T14:25+13:00",
		"/fhir/AuditEvent?date=ge" + at,
		"/admin/deliveries?since=" + at,
		"/admin/deliveries?until=" + at,
		"/fhir/$export?_since=" + at,
	} {
		t.Run(target, func(t *testing.T) {
			rec := req(h, "GET", target, "", "Prefer: respond-async")
			if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "%2B") {
				t.Errorf("GET %s = %d %s; want 400 saying to encode + as %%2B", target, rec.Code, rec.Body)
			}
			if strings.Contains(rec.Body.String(), "14:25") {
				t.Errorf("GET %s: the answer quotes the value: %s", target, rec.Body)
			}
		})
	}
	// A value that is wrong otherwise is not told about +.
	for _, target := range []string{"/fhir/Patient/_history?_since=yesterday", "/fhir/Observation?date=ge2026-13-01",
		"/fhir/Observation?date=ge2026-12-06%2014:25:13"} {
		rec := req(h, "GET", target, "")
		if rec.Code != http.StatusBadRequest || strings.Contains(rec.Body.String(), "%2B") {
			t.Errorf("GET %s = %d %s; want 400 without the + advice", target, rec.Code, rec.Body)
		}
	}
}
