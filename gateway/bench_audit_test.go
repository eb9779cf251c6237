package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// benchServer is a gateway on a fresh SQLite database with the audit trail
// and tracing (in-memory exporter) switched as asked.
func benchServer(b *testing.B, audit, tracing bool) *Server {
	b.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), fmt.Sprintf("bench-%t-%t.db", audit, tracing)), sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	acfg := app.Config{Store: st, NoAudit: !audit}
	cfg := Config{RateLimit: -1, MaxInFlight: 1024}
	if tracing {
		tel, spans, _ := telemetry.NewForTest()
		b.Cleanup(func() { spans.Reset(); _ = tel.Shutdown(context.Background()) })
		cfg.Telemetry, acfg.Tracer = tel, tel.TracerProvider()
	}
	return testServer(b, acfg, cfg)
}

// ingestSession stores the example session as record number i.
func ingestSession(b *testing.B, s *Server, doc []byte, i int) {
	body := strings.ReplaceAll(string(doc), "-2026-0310-", fmt.Sprintf("-2026-0310-B%d-", i))
	r := httptest.NewRequest(http.MethodPost, "/ingest/session", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	if rec.Code != http.StatusOK {
		b.Fatalf("ingest = %d %.300s", rec.Code, rec.Body)
	}
}

// postPatient stores a Patient for the read benchmarks and returns the
// path that reads it.
func postPatient(b *testing.B, s *Server) string {
	b.Helper()
	r := httptest.NewRequest(http.MethodPost, "/fhir/Patient", strings.NewReader(`{"resourceType":"Patient","gender":"female"}`))
	r.Header.Set("Content-Type", "application/fhir+json")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	loc, _, _ := strings.Cut(rec.Header().Get("Location"), "/_history/")
	i := strings.Index(loc, "/fhir/Patient/")
	if rec.Code != http.StatusCreated || i < 0 {
		b.Fatalf("POST Patient = %d %.300s (Location %q)", rec.Code, rec.Body, loc)
	}
	return loc[i:]
}

// BenchmarkIngestAudit stores native session records with tracing and the
// audit trail (AuditEvent + hash chain + Provenance) off and on, in one
// run, to measure what they cost on ingest; and a read, where the audit
// record is the only write.
func BenchmarkIngestAudit(b *testing.B) {
	doc := exampleDoc(b, "session/routine-ketamine-iv-session.json")
	for _, tc := range []struct {
		name           string
		audit, tracing bool
	}{{"off", false, false}, {"on", true, true}, {"audit-only", true, false}, {"tracing-only", false, true}} {
		b.Run("ingest-"+tc.name, func(b *testing.B) {
			s := benchServer(b, tc.audit, tc.tracing)
			i := 0
			for b.Loop() {
				ingestSession(b, s, doc, i)
				i++
			}
		})
		b.Run("read-"+tc.name, func(b *testing.B) {
			s := benchServer(b, tc.audit, tc.tracing)
			path := postPatient(b, s)
			for b.Loop() {
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
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
		b.Run(map[bool]string{false: "off", true: "on"}[on], func(b *testing.B) {
			s := benchServer(b, on, false)
			path := postPatient(b, s)
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					rec := httptest.NewRecorder()
					s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
					if rec.Code != http.StatusOK {
						b.Errorf("read = %d", rec.Code)
						return
					}
				}
			})
		})
	}
}

// BenchmarkIngestAuditInterleaved measures the same as BenchmarkIngestAudit
// but alternates the two servers request by request, so that drift of the
// disk's fsync time during the run falls on both equally; it reports
// ms/record for each and their ratio.
func BenchmarkIngestAuditInterleaved(b *testing.B) {
	doc := exampleDoc(b, "session/routine-ketamine-iv-session.json")
	servers := []*Server{benchServer(b, false, false), benchServer(b, true, true)}
	var spent [2]time.Duration
	i := 0
	for b.Loop() {
		for k, s := range servers {
			start := time.Now()
			ingestSession(b, s, doc, i)
			spent[k] += time.Since(start)
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(float64(spent[0].Milliseconds())/n, "ms-off/record")
	b.ReportMetric(float64(spent[1].Milliseconds())/n, "ms-on/record")
	b.ReportMetric(float64(spent[1])/float64(spent[0]), "on/off")
}
