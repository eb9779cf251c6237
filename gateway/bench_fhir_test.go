package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// syntheaBundles reads ../shared/testdata/synthea or skips.
func syntheaBundles(b *testing.B) ([][]byte, int) {
	b.Helper()
	files, _ := filepath.Glob(filepath.Join("..", "..", "shared", "testdata", "synthea", "*.json"))
	if len(files) == 0 {
		b.Skip("../shared/testdata/synthea not present")
	}
	var out [][]byte
	resources := 0
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			b.Fatal(err)
		}
		resources += strings.Count(string(body), `"request"`)
		out = append(out, body)
	}
	return out, resources
}

// BenchmarkSyntheaTransactions loads the nine Synthea bundles as
// transactions into a fresh durable SQLite database per iteration: the
// full path of validation, reference rewriting, indexing and commit.
func BenchmarkSyntheaTransactions(b *testing.B) {
	bundles, resources := syntheaBundles(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
		if err != nil {
			b.Fatal(err)
		}
		s := newServer(b, app.Config{Store: st}, gateway.Config{})
		b.StartTimer()
		for _, body := range bundles {
			r := httptest.NewRequest(http.MethodPost, "/fhir", strings.NewReader(string(body)))
			r.Header.Set("Content-Type", "application/fhir+json")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				b.Fatalf("transaction = %d %.300s", rec.Code, rec.Body)
			}
		}
		b.StopTimer()
		st.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkSyntheaDecodeEncode is the baseline: a bare encoding/json
// decode into any and encode of the same bundles.
func BenchmarkSyntheaDecodeEncode(b *testing.B) {
	bundles, resources := syntheaBundles(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, body := range bundles {
			var v any
			if err := json.Unmarshal(body, &v); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(v); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}
