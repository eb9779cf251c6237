package gateway_test

import (
	"net/http"
	"testing"
)

// TestDatesAtTheYearRangeEnds: an instant in year 0001 or 9999 whose
// offset moves it outside those years in UTC is valid FHIR; the store
// accepts it, so a date search must find it (it had no date row at all).
func TestDatesAtTheYearRangeEnds(t *testing.T) {
	h := fhirServer(t)
	for id, when := range map[string]string{
		"late":  "9999-12-31T23:59:59-14:00",
		"early": "0001-01-01T00:00:00+14:00",
		"mid":   "2026-03-02T09:00:00Z",
	} {
		body := `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"x"},"effectiveDateTime":"` + when + `"}`
		if rec := req(h, "PUT", "/fhir/Observation/"+id, body); rec.Code != http.StatusCreated {
			t.Fatalf("PUT Observation/%s = %d %s", id, rec.Code, rec.Body)
		}
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"date=ge9999-12-31", []string{"late"}},
		{"date=gt9999-12-31T12:00:00Z", []string{"late"}},
		{"date=lt0001-01-02", []string{"early"}},
		{"date=le0001-01-01T00:00:00%2B14:00", []string{"early"}},
		{"date=ge2000&date=lt3000", []string{"mid"}},
	} {
		t.Run(tc.query, func(t *testing.T) {
			rec := req(h, "GET", "/fhir/Observation?"+tc.query, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("GET = %d %s", rec.Code, rec.Body)
			}
			var got []string
			entries, _ := decode(t, rec)["entry"].([]any)
			for _, e := range entries {
				r, _ := e.(map[string]any)["resource"].(map[string]any)
				got = append(got, r["id"].(string))
			}
			if len(got) != len(tc.want) || (len(got) == 1 && got[0] != tc.want[0]) {
				t.Errorf("GET Observation?%s = %v, want %v", tc.query, got, tc.want)
			}
		})
	}
}

// TestLeapSecondDay: a leap second (23:59:60, which FHIR's dateTime
// allows) is found on its own day, not the next (finding p28 F4).
func TestLeapSecondDay(t *testing.T) {
	h := fhirServer(t)
	body := `{"resourceType":"Observation","id":"leap","status":"final","code":{"text":"x"},"effectiveDateTime":"2026-12-06T23:59:60Z"}`
	if rec := req(h, "PUT", "/fhir/Observation/leap", body); rec.Code != http.StatusCreated {
		t.Fatalf("PUT Observation/leap = %d %s", rec.Code, rec.Body)
	}
	for query, want := range map[string]float64{
		"date=2026-12-06":             1,
		"date=2026-12-07":             0,
		"date=lt2026-12-07":           1,
		"date=ge2026-12-06T23:59:59Z": 1,
	} {
		rec := req(h, "GET", "/fhir/Observation?"+query, "")
		if got := decode(t, rec)["total"]; rec.Code != http.StatusOK || got != want {
			t.Errorf("GET Observation?%s = %d, total %v; want %v", query, rec.Code, got, want)
		}
	}
}
