package bulk_test

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
)

// newPostgresApp is newApp on a PostgreSQL store in a fresh schema of
// GATEWAY_TEST_POSTGRES_URL (the test is skipped without it); it returns
// the schema's name too.
func newPostgresApp(t *testing.T) (*app.App, string) {
	t.Helper()
	ctx := context.Background()
	dsn, schema := pgtest.Schema(t, "kgb", "the export fence test")
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := app.New(app.Config{Store: st, BacklogEvery: -1, Jobs: jobs.Config{Poll: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	a.Bulk = bulk.New(bulk.Config{Store: st, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs, PartBytes: 1 << 20, FileResources: 40})
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, schema
}

// TestExportSinceChainMissesNoWrite (p21 F1): on PostgreSQL, where
// writers run in parallel, a write stamped before an export's kick-off
// but committed after it is in that export or in the next one _since its
// transactionTime: a chain of incremental exports loses nothing. The write
// is held open, stamped and uncommitted, while the export kicks off; it
// commits once the kick-off waits for it (the kick-off's fence shows in
// pg_locks as a lock not granted), or, if the kick-off does not wait,
// once the export is done.
func TestExportSinceChainMissesNoWrite(t *testing.T) {
	a, schema := newPostgresApp(t)
	ctx := context.Background()
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs system/*.cu")})
	first := exportIDs(t, a, sc, "")

	stamped, release, written := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	const id = "held-open"
	go func() {
		wsc := auditlog.NewScope("create", sc.Principal)
		written <- a.Engine.Write(ctx, wsc, func(tx *engine.Tx) (int, error) {
			r, entries, err := store.NewVersion("Observation", id, 1, map[string]any{"status": "final",
				"code": map[string]any{"text": "x"}}, tx.Now())
			if err != nil {
				return 0, err
			}
			if err := tx.Store().Put(r, entries); err != nil {
				return 0, err
			}
			select {
			case <-stamped: // run again (group commit): already told
			default:
				close(stamped)
			}
			<-release
			return 201, nil
		})
	}()
	<-stamped

	type kicked struct {
		j   *store.Job
		err error
	}
	kickoff := make(chan kicked, 1)
	go func() {
		j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async", Base: "https://gw",
			Query: url.Values{"_type": {"Observation"}}})
		kickoff <- kicked{j, err}
	}()
	conn, err := pgx.Connect(ctx, os.Getenv("GATEWAY_TEST_POSTGRES_URL"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var k kicked
	released := false
	for k.j == nil && k.err == nil {
		select {
		case k = <-kickoff:
			continue
		default:
		}
		if !released {
			var waiting bool
			err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
				AND classid = (hashtext('kg-writes')::int8 & 4294967295)::oid AND objid = (hashtext($1)::int8 & 4294967295)::oid
				AND objsubid = 2)`, schema).Scan(&waiting)
			if err != nil {
				t.Fatal(err)
			}
			if waiting {
				close(release) // the kick-off waits for the write: let it commit
				released = true
			}
		}
		time.Sleep(time.Millisecond) // polling the kick-off's state, not timing the test
	}
	if k.err != nil {
		t.Fatal(k.err)
	}
	cur := waitJob(t, a, sc, k.j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	second := manifestIDs(t, a, sc, k.j.ID, cur)
	if !released {
		close(release)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	var m bulk.Manifest
	mustUnmarshal(t, cur.Result, &m)
	third := exportIDs(t, a, sc, m.TransactionTime)
	if slices.Contains(first, id) {
		t.Fatalf("the first export, before the write, holds it: %v", first)
	}
	if !slices.Contains(second, id) && !slices.Contains(third, id) {
		t.Errorf("the write stamped before the kick-off at %s is in neither that export (%v) nor the next _since it (%v)",
			m.TransactionTime, second, third)
	}
}

// exportIDs runs a system export of Observations (_since since, when not
// "") and returns the ids exported.
func exportIDs(t *testing.T, a *app.App, sc *auditlog.Scope, since string) []string {
	t.Helper()
	q := url.Values{"_type": {"Observation"}}
	if since != "" {
		q.Set("_since", since)
	}
	j, err := a.Bulk.Export(context.Background(), sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async",
		Base: "https://gw", Query: q})
	if err != nil {
		t.Fatal(err)
	}
	cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	return manifestIDs(t, a, sc, j.ID, cur)
}

// manifestIDs returns the ids of the resources in the output files of
// the done export job j.
func manifestIDs(t *testing.T, a *app.App, sc *auditlog.Scope, id string, j *store.Job) []string {
	t.Helper()
	var m bulk.Manifest
	mustUnmarshal(t, j.Result, &m)
	var out []string
	for _, f := range m.Output {
		n := f.URL[strings.LastIndex(f.URL, "/")+1:]
		var body strings.Builder
		dl := auditlog.NewScope("job-download", sc.Principal)
		if err := a.Jobs.File(context.Background(), dl, id, atoi(t, n), func(p []byte) error { body.Write(p); return nil }); err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(body.String()) {
			var r struct{ ID string }
			mustUnmarshal(t, []byte(line), &r)
			out = append(out, r.ID)
		}
	}
	return out
}

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
