package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// BenchmarkChainedSearch loads the nine Synthea bundles into a durable
// SQLite database once and measures, through the real handler (audited,
// as a client sees them), chained and _has searches against the plain
// searches that answer the same question when the client knows our ids
// (the baseline of the same run). It reports the median and 90th
// percentile in ms (issue 13: chained and _has searches under 20 ms at
// p50).
func BenchmarkChainedSearch(b *testing.B) {
	bundles, _ := syntheaBundles(b)
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	s := newServer(b, app.Config{Store: st}, gateway.Config{})
	get := func(target string) map[string]any {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s = %d %.300s", target, rec.Code, rec.Body)
		}
		var m map[string]any
		_ = json.Unmarshal(rec.Body.Bytes(), &m)
		return m
	}
	for _, body := range bundles {
		r := httptest.NewRequest(http.MethodPost, "/fhir", strings.NewReader(string(body)))
		r.Header.Set("Content-Type", "application/fhir+json")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			b.Fatalf("load = %d %.300s", rec.Code, rec.Body)
		}
	}
	// The patient with the most Observations, by its Synthea identifier.
	var pid, ident string
	most := -1
	for _, e := range get("/fhir/Patient?_count=20")["entry"].([]any) {
		p := e.(map[string]any)["resource"].(map[string]any)
		id := p["id"].(string)
		n := int(get("/fhir/Observation?_summary=count&patient=Patient/" + id)["total"].(float64))
		if n > most {
			most, pid = n, id
			for _, i := range p["identifier"].([]any) {
				if im := i.(map[string]any); im["system"] == "https://github.com/synthetichealth/synthea" {
					ident = im["system"].(string) + "|" + im["value"].(string)
				}
			}
		}
	}
	if ident == "" {
		b.Fatal("no Synthea identifier")
	}
	cases := []struct{ name, target string }{
		{"plain/patient=id", "/fhir/Observation?patient=Patient/" + pid},
		{"chain/patient.identifier", "/fhir/Observation?patient.identifier=" + ident},
		{"plain/code+patient=id", "/fhir/Observation?code=http://loinc.org|8302-2&patient=Patient/" + pid},
		{"chain/subject:Patient.identifier+code", "/fhir/Observation?code=http://loinc.org|8302-2&subject:Patient.identifier=" + ident},
		{"plain/identifier", "/fhir/Patient?identifier=" + ident},
		{"has/Observation:patient:code", "/fhir/Patient?_has:Observation:patient:code=http://loinc.org|8302-2"},
		{"has/Encounter:patient:date+identifier", "/fhir/Patient?_has:Encounter:patient:date=ge2010&identifier=" + ident},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			var ds []time.Duration
			for b.Loop() {
				start := time.Now()
				if get(tc.target)["total"] == nil {
					b.Fatal("no total")
				}
				ds = append(ds, time.Since(start))
			}
			b.ReportMetric(percentile(ds, 0.5), "p50_ms")
			b.ReportMetric(percentile(ds, 0.9), "p90_ms")
		})
	}
}

// percentile returns the q-quantile of ds in milliseconds.
func percentile(ds []time.Duration, q float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[min(len(s)-1, int(q*float64(len(s))))].Microseconds()) / 1000
}
