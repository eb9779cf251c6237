package gateway_test

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// benchRecords are n records of the example of kind, each its own (every
// recordId, the patient's id and MRN suffixed with tag and its number),
// one JSON document each.
func benchRecords(b *testing.B, kind, example, tag string, n int) []string {
	b.Helper()
	raw, err := fs.ReadFile(schemas.Examples(), "examples/"+kind+"/"+example)
	if err != nil {
		b.Fatal(err)
	}
	out := make([]string, n)
	for i := range n {
		body, err := schemas.Renumbered(raw, fmt.Sprintf("-%s%06d", tag, i))
		if err != nil {
			b.Fatal(err)
		}
		out[i] = string(body)
	}
	return out
}

// BenchmarkImportVsAPI ingests the same native records, each iteration
// twice on fresh SQLite databases: through the API (POST /ingest/{kind}
// over HTTP on the loopback, 4 clients at once, connections kept alive)
// and through the bulk import (4 records at once), and reports both rates
// and their ratio.
//
//	go test -run '^$' -bench ImportVsAPI -benchtime 3x -count 3 ./gateway
func BenchmarkImportVsAPI(b *testing.B) {
	for _, load := range []struct{ kind, example string }{
		{"assessment", "phq9-moderate.json"},
		{"session", "routine-ketamine-iv-session.json"},
	} {
		b.Run(load.kind, func(b *testing.B) {
			n := 400
			if load.kind == "session" {
				n = 60
			}
			var apiTime, importTime time.Duration
			iter := 0
			for b.Loop() {
				iter++
				recs := benchRecords(b, load.kind, load.example, fmt.Sprintf("b%d", iter), n)
				ctx := context.Background()

				api := func() {
					st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "api.db"), sqlite.Options{})
					if err != nil {
						b.Fatal(err)
					}
					defer st.Close()
					srv := httptest.NewServer(newServer(b, app.Config{Store: st, BacklogEvery: -1, NoJobRunner: true}, gateway.Config{}))
					defer srv.Close()
					t0 := time.Now()
					var wg sync.WaitGroup
					for w := range 4 {
						wg.Go(func() {
							for i := w; i < n; i += 4 {
								resp, err := srv.Client().Post(srv.URL+"/ingest/"+load.kind, "application/json", strings.NewReader(recs[i]))
								if err != nil {
									b.Error(err)
									return
								}
								_, _ = io.Copy(io.Discard, resp.Body)
								resp.Body.Close()
								if resp.StatusCode != http.StatusOK {
									b.Errorf("ingest = %d", resp.StatusCode)
								}
							}
						})
					}
					wg.Wait()
					apiTime += time.Since(t0)
				}
				imp := func() {
					st, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "import.db"), sqlite.Options{})
					if err != nil {
						b.Fatal(err)
					}
					defer st.Close()
					a, err := app.New(app.Config{Store: st, BacklogEvery: -1, NoJobRunner: true})
					if err != nil {
						b.Fatal(err)
					}
					if err := a.Start(ctx); err != nil {
						b.Fatal(err)
					}
					defer a.Close()
					sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "bench", Scopes: auth.ParseScopes(auth.ScopeIngest)})
					t0 := time.Now()
					c, err := a.Bulk.Import(ctx, sc, bulk.NDJSON(strings.NewReader(strings.Join(recs, "\n")), 1<<24),
						bulk.ImportOptions{Kind: mapping.Kind(load.kind), RunID: "bench", Workers: 4})
					importTime += time.Since(t0)
					if err != nil || c.Stored != int64(n) {
						b.Fatalf("import: %+v, %v", c, err)
					}
				}
				// A and B alternate which goes first.
				if iter%2 == 1 {
					api()
					imp()
				} else {
					imp()
					api()
				}
			}
			total := float64(b.N * n)
			b.ReportMetric(total/apiTime.Seconds(), "api-rec/s")
			b.ReportMetric(total/importTime.Seconds(), "import-rec/s")
			b.ReportMetric(apiTime.Seconds()/importTime.Seconds(), "import/api-speed")
		})
	}
}
