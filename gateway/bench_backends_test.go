package gateway_test

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// BenchmarkIngestBackends measures ingest of the Synthea transactions and
// of native session records on SQLite, on PostgreSQL with one gateway, and
// on PostgreSQL with two gateways (two pools, requests split between them),
// all in one run. PostgreSQL needs GATEWAY_TEST_POSTGRES_URL (its database
// is emptied first).
func BenchmarkIngestBackends(b *testing.B) {
	bundles, resources := syntheaBundles(b)
	session, err := fs.ReadFile(schemas.Examples(), "examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		b.Fatal(err)
	}
	pgURL := os.Getenv("GATEWAY_TEST_POSTGRES_URL")
	backends := []struct {
		name     string
		replicas int
		open     func(b *testing.B) store.Store
	}{
		{"sqlite", 1, func(b *testing.B) store.Store {
			st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"postgres-1", 1, nil},
		{"postgres-2", 2, nil},
	}
	for _, be := range backends {
		for _, load := range []string{"synthea", "sessions"} {
			b.Run(be.name+"/"+load, func(b *testing.B) {
				var servers []http.Handler
				for range be.replicas {
					var st store.Store
					if be.open != nil {
						st = be.open(b)
					} else {
						if pgURL == "" {
							b.Skip("GATEWAY_TEST_POSTGRES_URL not set")
						}
						st = openPostgresEmpty(b, pgURL, len(servers) == 0, "bench_"+strings.ReplaceAll(be.name, "-", "_")+"_"+load)
					}
					b.Cleanup(func() { st.Close() })
					s := newServer(b, app.Config{Store: st}, gateway.Config{})
					servers = append(servers, s)
				}
				var seq atomic.Int64
				for b.Loop() {
					var jobs []string
					if load == "synthea" {
						for _, body := range bundles {
							jobs = append(jobs, string(body))
						}
					} else {
						for range 8 {
							n := seq.Add(1)
							jobs = append(jobs, sessionVariant(string(session), "B", int(n)))
						}
					}
					var wg sync.WaitGroup
					for r, s := range servers {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for i := r; i < len(jobs); i += len(servers) {
								target, ct := "/fhir", "application/fhir+json"
								if load == "sessions" {
									target, ct = "/ingest/session", "application/json"
								}
								req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(jobs[i]))
								req.Header.Set("Content-Type", ct)
								rec := httptest.NewRecorder()
								s.ServeHTTP(rec, req)
								if rec.Code != http.StatusOK {
									b.Errorf("%s = %d %.200s", target, rec.Code, rec.Body)
								}
							}
						}()
					}
					wg.Wait()
				}
				if load == "synthea" {
					b.ReportMetric(float64(resources)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
				} else {
					b.ReportMetric(8*float64(b.N)/b.Elapsed().Seconds(), "records/s")
				}
			})
		}
	}
}

// openPostgresEmpty opens the benchmark database in a schema of its own,
// created fresh for the first open of a sub-benchmark, so every backend
// starts empty.
func openPostgresEmpty(b *testing.B, url string, fresh bool, schema string) store.Store {
	b.Helper()
	ctx := context.Background()
	if fresh {
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []string{"DROP SCHEMA IF EXISTS " + schema + " CASCADE", "CREATE SCHEMA " + schema} {
			if _, err := conn.Exec(ctx, q); err != nil {
				b.Fatal(err)
			}
		}
		conn.Close(ctx)
	}
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	st, err := postgres.Open(ctx, url+sep+"search_path="+schema, postgres.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return st
}
