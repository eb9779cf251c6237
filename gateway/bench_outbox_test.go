package gateway_test

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// BenchmarkIngestOutbox stores native session records with delivery off
// and on (one destination: the record is also enqueued in the outbox in
// the same transaction), to measure the outbox's cost on ingest.
func BenchmarkIngestOutbox(b *testing.B) {
	doc, err := fs.ReadFile(schemas.Examples(), "examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		routes []ingest.Route
	}{
		{"delivery-off", nil},
		{"delivery-on", []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			s := newServer(b, app.Config{Store: st, Routes: tc.routes}, gateway.Config{})
			i := 0
			for b.Loop() {
				// A new record of a new patient each time, so every request
				// stores (and no clinical check reads the earlier ones).
				body := sessionVariant(string(doc), "B", i)
				i++
				r := httptest.NewRequest(http.MethodPost, "/ingest/session", strings.NewReader(body))
				r.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK {
					b.Fatalf("ingest = %d %.300s", rec.Code, rec.Body)
				}
			}
		})
	}
}
