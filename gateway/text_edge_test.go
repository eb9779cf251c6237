package gateway_test

import (
	"net/http"
	"net/url"
	"testing"
)

// TestHangulConditionalWrites: a conditional update by a Korean name
// finds only that name (finding p28 F2: family=이 matched 임, whose
// folded jamo it began, and overwrote Lim's Patient with Lee's).
func TestHangulConditionalWrites(t *testing.T) {
	h := fhirServer(t)
	lim := `{"resourceType":"Patient","id":"lim","name":[{"family":"임","given":["하늘"]}],"birthDate":"1991-01-01"}`
	if rec := req(h, "PUT", "/fhir/Patient/lim", lim); rec.Code != http.StatusCreated {
		t.Fatalf("PUT Patient/lim = %d %s", rec.Code, rec.Body)
	}
	q := "family=" + url.QueryEscape("이") + "&given=" + url.QueryEscape("하늘") + "&birthdate=1991-01-01"
	rec := req(h, "GET", "/fhir/Patient?"+q, "")
	if total := decode(t, rec)["total"]; rec.Code != http.StatusOK || total != float64(0) {
		t.Errorf("GET Patient?%s = %d, total %v; want 200, 0", q, rec.Code, total)
	}
	lee := `{"resourceType":"Patient","name":[{"family":"이","given":["하늘"]}],"birthDate":"1991-01-01"}`
	if rec := req(h, "PUT", "/fhir/Patient?"+q, lee); rec.Code != http.StatusCreated {
		t.Errorf("PUT Patient?%s = %d %s; want 201 (a new Patient)", q, rec.Code, rec.Body)
	}
	rec = req(h, "GET", "/fhir/Patient/lim", "")
	if got := decode(t, rec)["meta"].(map[string]any)["versionId"]; got != "1" {
		t.Errorf("Patient/lim versionId = %v, want 1 (untouched)", got)
	}
}
