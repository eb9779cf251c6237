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

// TestExactCanonical: :exact compares canonically equivalent text as one
// (NFC): a name stored decomposed (NFD) is found by its precomposed
// spelling and the other way round; case and accents still count
// (finding p28 F5).
func TestExactCanonical(t *testing.T) {
	h := fhirServer(t)
	for id, family := range map[string]string{"nfd": "Te Wha\u0304riki", "nfc": "Ng\u0101ti"} {
		body := `{"resourceType":"Patient","id":"` + id + `","name":[{"family":"` + family + `"}]}`
		if rec := req(h, "PUT", "/fhir/Patient/"+id, body); rec.Code != http.StatusCreated {
			t.Fatalf("PUT Patient/%s = %d %s", id, rec.Code, rec.Body)
		}
	}
	for query, want := range map[string]float64{
		"family:exact=" + url.QueryEscape("Te Wh\u0101riki"):  1, // NFC query, NFD stored
		"family:exact=" + url.QueryEscape("Te Wha\u0304riki"): 1,
		"family:exact=" + url.QueryEscape("Nga\u0304ti"):      1, // NFD query, NFC stored
		"family:exact=" + url.QueryEscape("Ngati"):            0,
		"family:exact=" + url.QueryEscape("ng\u0101ti"):       0,
	} {
		rec := req(h, "GET", "/fhir/Patient?"+query, "")
		if got := decode(t, rec)["total"]; rec.Code != http.StatusOK || got != want {
			t.Errorf("GET Patient?%s = %d, total %v; want %v", query, rec.Code, got, want)
		}
	}
}
