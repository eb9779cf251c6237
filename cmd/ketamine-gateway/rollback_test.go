package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// rollbackDB makes a database with a resource, then has change alter it
// through SQL (as a newer or older release would have left it).
func rollbackDB(t *testing.T, change func(ctx context.Context, st store.Store, db *sql.DB) error) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(ctx, path, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"resourceType":"Patient","id":"p1","gender":"female"}`
	err = st.Write(ctx, func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Patient", ID: "p1", Version: 1, LastUpdated: time.Now(), Body: []byte(body)}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	err = change(ctx, st, db)
	db.Close()
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// writers are the commands that write to the database they open, args
// without --db.
var writers = [][]string{
	{"serve", "--addr", "127.0.0.1:0"},
	{"import", "--kind", "vitals", "RECORDS"},
	{"replay", "--apply", "--reason", "r", "--no-config"},
	{"reindex"},
	{"deliveries", "retry", "d1"},
	{"deliveries", "cancel", "d1", "--reason", "r"},
	{"jobs", "cancel", "j1"},
	// The reads that show the patients' data write their AuditEvent (its
	// search index rows too).
	{"lineage", "--resource", "Patient/p1"},
	{"deliveries", "list"},
	{"deliveries", "show", "d1"},
	{"replay", "--show-values"},
}

// readers change nothing in the database they open (they show none of
// the patients' data, and write no AuditEvent).
var readers = [][]string{
	{"audit", "verify"},
	{"reindex", "--dry-run"},
	{"jobs", "list"},
	{"replay"},
}

func withDB(args []string, db, records string) []string {
	out := make([]string, 0, len(args)+2)
	for _, a := range args {
		if a == "RECORDS" {
			a = records
		}
		out = append(out, a)
	}
	return append(out, "--db", db)
}

// TestRollbackRefused: a build older than the release that upgraded the
// database (its search index version recorded above this build's, with
// the same schema) is refused by every command that writes, exit 2 (a
// person must run the newer release or restore the backup; restarting
// mends nothing), saying it is a rollback, what this build would do
// wrong and what to do; nothing is written. The commands that only read
// still read. A newer schema is refused the same way by every command,
// not as a --db mistake.
func TestRollbackRefused(t *testing.T) {
	records := writeTemp(t, "vitals.ndjson", "{}\n")
	newerIndex := rollbackDB(t, func(ctx context.Context, st store.Store, _ *sql.DB) error {
		return st.MarkIndexed(ctx, search.IndexVersion+1)
	})
	for _, args := range writers {
		_, errOut, code := cli(t, "", withDB(args, newerIndex, records)...)
		for _, want := range []string{"rollback", fmt.Sprintf("search index is version %d, this release's %d",
			search.IndexVersion+1, search.IndexVersion), "search index rows the older way",
			"restore the backup taken before the upgrade", "docs/deployment.md"} {
			if code != exitUsage || !strings.Contains(errOut, want) {
				t.Errorf("%v on a newer index: exit %d, stderr %q; want exit 2 saying %q", args, code, errOut, want)
			}
		}
	}
	for _, args := range readers {
		if _, errOut, code := cli(t, "", withDB(args, newerIndex, records)...); code == exitUsage || strings.Contains(errOut, "rollback") {
			t.Errorf("%v (read only) on a newer index: exit %d, stderr %q; want it to read", args, code, errOut)
		}
	}
	st, err := sqlite.Open(context.Background(), newerIndex, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := st.IndexVersion(context.Background()); err != nil || v != search.IndexVersion+1 {
		t.Errorf("index version after the refusals = %d, %v; want %d unchanged", v, err, search.IndexVersion+1)
	}
	st.Close()

	newerSchema := rollbackDB(t, func(ctx context.Context, _ store.Store, db *sql.DB) error {
		_, err := db.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ((SELECT MAX(version) + 1 FROM schema_migrations), 0)`)
		return err
	})
	for _, args := range append(append([][]string{}, writers...), readers...) {
		_, errOut, code := cli(t, "", withDB(args, newerSchema, records)...)
		for _, want := range []string{"rollback", "the database's schema is version", "restore the backup taken before the upgrade",
			"docs/deployment.md"} {
			if code != exitUsage || !strings.Contains(errOut, want) || strings.Contains(errOut, "check --db") {
				t.Errorf("%v on a newer schema: exit %d, stderr %q; want exit 2 saying %q, not to check --db", args, code, errOut, want)
			}
		}
	}
}

// TestMigrationPending: the commands that open only an existing database
// (they migrate nothing) say of one whose schema is older than this
// release's that a migration is pending, both versions and what to do
// (serve --migrate-only on a copy for a dry replay), not that the gateway
// never set it up; exit 3 as before. serve --migrate-only creates or
// migrates a database and exits 0 without serving, after which they read
// it.
func TestMigrationPending(t *testing.T) {
	var latest int
	older := rollbackDB(t, func(ctx context.Context, _ store.Store, db *sql.DB) error {
		if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&latest); err != nil {
			return err
		}
		_, err := db.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = ?`, latest)
		return err
	})
	for _, args := range [][]string{{"replay"}, {"audit", "verify"}, {"lineage", "--resource", "Patient/p1"}, {"reindex", "--dry-run"}} {
		_, errOut, code := cli(t, "", withDB(args, older, "")...)
		want := fmt.Sprintf("the database's schema is version %d, this release's %d", latest-1, latest)
		if code != exitUnchecked || !strings.Contains(errOut, want) || !strings.Contains(errOut, "--migrate-only") ||
			!strings.Contains(errOut, "copy") || strings.Contains(errOut, "never set up") {
			t.Errorf("%v on an older schema: exit %d, stderr %q; want exit 3 saying %q and what to do", args, code, errOut, want)
		}
	}
	// (The store's tests migrate older schemas: TestMigrationNotes.)
	fresh := filepath.Join(t.TempDir(), "new.db")
	_, errOut, code := cli(t, "", "serve", "--migrate-only", "--db", fresh)
	if code != 0 || !strings.Contains(errOut, `"msg":"store: new database created"`) || strings.Contains(errOut, `"msg":"listening"`) {
		t.Errorf("serve --migrate-only: exit %d, stderr %q; want 0, the migration logged, not serving", code, errOut)
	}
	if _, errOut, code := cli(t, "", "audit", "verify", "--db", fresh); code != 0 {
		t.Errorf("audit verify after serve --migrate-only: exit %d, stderr %q", code, errOut)
	}
}
