package gateway

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// BenchmarkIngestAudit stores native session records with tracing and the
// audit trail (AuditEvent + hash chain + Provenance) off and on, in one
// run, to measure what they cost on ingest; and a read, where the audit
// record is the only write.
func BenchmarkIngestAudit(b *testing.B) {
	doc, err := fs.ReadFile(schemas.Examples(), "examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		audit bool
	}{{"off", false}, {"on", true}} {
		server := func(b *testing.B) *Server {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			cfg := Config{Store: st, RateLimit: -1}
			if tc.audit {
				tel, spans, _ := telemetry.NewForTest()
				b.Cleanup(func() { spans.Reset(); _ = tel.Shutdown(context.Background()) })
				cfg.Telemetry = tel
			}
			s, err := NewServer(cfg)
			if err != nil {
				b.Fatal(err)
			}
			s.noAudit = !tc.audit
			return s
		}
		b.Run("ingest-"+tc.name, func(b *testing.B) {
			s := server(b)
			i := 0
			for b.Loop() {
				body := strings.ReplaceAll(string(doc), "-2026-0310-", fmt.Sprintf("-2026-0310-B%d-", i))
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
		b.Run("read-"+tc.name, func(b *testing.B) {
			s := server(b)
			r := httptest.NewRequest(http.MethodPut, "/fhir/Patient/p1", strings.NewReader(`{"resourceType":"Patient","id":"p1"}`))
			r.Header.Set("Content-Type", "application/fhir+json")
			s.ServeHTTP(httptest.NewRecorder(), r)
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/fhir/Patient/p1", nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("read = %d", rec.Code)
				}
			}
		})
	}
}

// BenchmarkReadAuditParallel reads one resource from many goroutines with
// the audit trail off and on: every audited read commits one AuditEvent.
func BenchmarkReadAuditParallel(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "off", true: "on"}[on]
		b.Run(name, func(b *testing.B) {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			s, err := NewServer(Config{Store: st, RateLimit: -1, MaxInFlight: 1024})
			if err != nil {
				b.Fatal(err)
			}
			s.noAudit = !on
			r := httptest.NewRequest(http.MethodPut, "/fhir/Patient/p1", strings.NewReader(`{"resourceType":"Patient","id":"p1"}`))
			r.Header.Set("Content-Type", "application/fhir+json")
			s.ServeHTTP(httptest.NewRecorder(), r)
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/fhir/Patient/p1", nil))
					if rec.Code != http.StatusOK {
						b.Errorf("read = %d", rec.Code)
						return
					}
				}
			})
		})
	}
}
