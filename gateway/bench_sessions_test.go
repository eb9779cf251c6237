package gateway_test

import (
	"context"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// sessionVariant is the routine session example as a new record of a new
// patient: record ids, the patient id and the MRN carry the suffix i (as
// the shared load tool's sessions mode does).
func sessionVariant(doc string, tag string, i int) string {
	suf := fmt.Sprintf("%s%d", tag, i)
	return strings.NewReplacer("-2026-0310-", "-2026-0310-"+suf+"-", `"PT-000123"`, `"PT-000123-`+suf+`"`,
		`"MRN-TEST-000123"`, `"MRN-TEST-000123-`+suf+`"`).Replace(doc)
}

// BenchmarkIngestSessions stores new session records (each of a new
// patient, 56 resources) into a durable SQLite database from 1 and from 32
// concurrent clients: the write path and how it scales with clients. An
// op is one record.
func BenchmarkIngestSessions(b *testing.B) {
	raw, err := fs.ReadFile(schemas.Examples(), "examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		b.Fatal(err)
	}
	doc := string(raw)
	for _, clients := range []int{1, 32} {
		b.Run(fmt.Sprintf("c%d", clients), func(b *testing.B) {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			s := newServer(b, app.Config{Store: st}, gateway.Config{})
			post := func(i int) {
				r := httptest.NewRequest(http.MethodPost, "/ingest/session", strings.NewReader(sessionVariant(doc, "B", i)))
				r.Header.Set("Content-Type", "application/json")
				rec := httptest.NewRecorder()
				s.ServeHTTP(rec, r)
				if rec.Code != http.StatusOK {
					b.Errorf("ingest = %d %.300s", rec.Code, rec.Body)
				}
			}
			var next atomic.Int64
			b.ResetTimer()
			var wg sync.WaitGroup
			for range clients {
				wg.Go(func() {
					for {
						i := int(next.Add(1))
						if i > b.N {
							return
						}
						post(i)
					}
				})
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}
