package replay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// benchDB is the replay benchmark's database of n stored session records:
// KG_REPLAY_BENCH_DB, or a file in the temporary directory kept between
// runs (storing 10,000 sessions through ingest takes minutes).
func benchDB(b *testing.B, n int) string {
	b.Helper()
	path := os.Getenv("KG_REPLAY_BENCH_DB")
	if path == "" {
		path = filepath.Join(os.TempDir(), fmt.Sprintf("kg-replay-bench-%d.db", n))
	}
	if _, err := os.Stat(path); err == nil {
		return path
	}
	b.Logf("storing %d session records in %s (once)", n, path)
	ctx := context.Background()
	tmp := path + ".part"
	os.Remove(tmp)
	st, err := sqlite.Open(ctx, tmp, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	a, err := app.New(app.Config{Store: st, NoJobRunner: true, BacklogEvery: -1})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		b.Fatal(err)
	}
	var lines []string
	for i := range n {
		body, _ := example(b, "session/routine-ketamine-iv-session.json", i)
		lines = append(lines, string(body))
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "bench", Tenant: "clinic-a", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	c, err := a.Bulk.Import(ctx, sc, bulk.NDJSON(strings.NewReader(strings.Join(lines, "\n")), 1<<24),
		bulk.ImportOptions{Kind: "session", RunID: "bench", Workers: 4})
	a.Close()
	st.Close()
	if err != nil || c.Stored != int64(n) {
		b.Fatalf("store the sessions: %+v, %v", c, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	return path
}

// BenchmarkReplaySessions is a dry replay of the stored session records
// (10,000 by default, KG_REPLAY_BENCH_N), interleaved with its baseline:
// mapping the same stored inputs again (schema, rules, mapping, rendering
// with the R4 check) without reading or comparing what is stored. Each
// iteration runs both once.
//
//	go test -run '^$' -bench ReplaySessions -benchtime 2x -count 3 -timeout 60m ./gateway/replay
func BenchmarkReplaySessions(b *testing.B) {
	n := 10_000
	if v, err := strconv.Atoi(os.Getenv("KG_REPLAY_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	path := benchDB(b, n)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	a, err := app.New(app.Config{Store: st, NoJobRunner: true, BacklogEvery: -1})
	if err != nil {
		b.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	var replayTime, mapTime time.Duration
	for b.Loop() {
		t0 := time.Now()
		sum, err := a.Replay.Run(ctx, operator(), replay.Options{Tenant: search.AllTenants, Kind: "session"}, nil, nil)
		replayTime += time.Since(t0)
		if err != nil || sum.Records != n || sum.Unchanged != n {
			b.Fatalf("replay: %+v, %v", sum, err)
		}

		t0 = time.Now()
		mapped := 0
		q := store.LedgerQuery{Tenant: search.AllTenants, Kind: "session", Limit: 500}
		p := a.Ingest.Pipeline()
		for {
			page, err := st.LedgerEntries(ctx, q)
			if err != nil {
				b.Fatal(err)
			}
			for _, l := range page {
				var res *mapping.Result
				err := p.ValidateRecord(mapping.Kind(l.Kind), l.Input)
				if err == nil {
					var rec mapping.Record
					if rec, err = ingest.Decode(mapping.Kind(l.Kind), l.Input); err == nil {
						res, err = mapping.Map(rec, a.Ingest.Options(l.Tenant))
					}
				}
				if err == nil {
					_, err = p.Marshal(res)
				}
				if err != nil {
					b.Fatal(err)
				}
				mapped++
			}
			if len(page) < q.Limit {
				break
			}
			last := page[len(page)-1]
			q.After = store.LedgerKey{Source: last.Source, Kind: last.Kind, RecordID: last.RecordID, Version: last.Version}
		}
		mapTime += time.Since(t0)
		if mapped != n {
			b.Fatalf("mapped %d", mapped)
		}
	}
	b.ReportMetric(replayTime.Seconds()/float64(b.N), "s/replay")
	b.ReportMetric(float64(b.N*n)/replayTime.Seconds(), "replay-rec/s")
	b.ReportMetric(float64(b.N*n)/mapTime.Seconds(), "map-rec/s")
	b.ReportMetric(replayTime.Seconds()/mapTime.Seconds(), "replay/map")
}
