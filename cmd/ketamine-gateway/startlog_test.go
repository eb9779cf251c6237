package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// migratedStore is a store that says Open migrated m.
type migratedStore struct {
	store.Store
	m store.Migration
}

func (s migratedStore) Migrated() store.Migration { return s.m }

// logLines runs logRecovery on st and returns its lines by message.
func logLines(t *testing.T, st store.Store) map[string]map[string]any {
	t.Helper()
	var buf bytes.Buffer
	logRecovery(context.Background(), st, slog.New(slog.NewJSONHandler(&buf, nil)), time.Now())
	lines := map[string]map[string]any{}
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil {
			lines[l["msg"].(string)] = l
		}
	}
	return lines
}

// TestLogRecovery: serve's start says what it migrated (from and to
// schema versions), how many deliveries it found in flight and how many
// jobs running, counts only; nothing when there is nothing to say.
func TestLogRecovery(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gw.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if lines := logLines(t, migratedStore{Store: st}); len(lines) != 0 {
		t.Errorf("logRecovery of a current, idle database logged %v, want nothing", lines)
	}
	l := logLines(t, migratedStore{Store: st, m: store.Migration{From: 15, To: 16}})["store: schema migrated"]
	if l == nil || l["level"] != "INFO" || l["from"] != float64(15) || l["to"] != float64(16) {
		t.Errorf("schema migrated line = %v, want INFO from 15 to 16", l)
	}
	// Each migration applied gets a line of its own, with its note, in
	// the order they ran.
	var buf bytes.Buffer
	m := store.Migration{From: 14, To: 16, Applied: []store.AppliedMigration{{Version: 15, Note: "claims dropped"},
		{Version: 16, Note: "delivery ids changed"}}}
	logRecovery(context.Background(), migratedStore{Store: st, m: m}, slog.New(slog.NewJSONHandler(&buf, nil)), time.Now())
	var applied []string
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "store: migration applied" && l["level"] == "INFO" {
			applied = append(applied, fmt.Sprint(l["version"], ": ", l["change"]))
		}
	}
	if want := []string{"15: claims dropped", "16: delivery ids changed"}; !slices.Equal(applied, want) {
		t.Errorf("migration lines = %q, want %q", applied, want)
	}
	if l := logLines(t, st)["store: new database created"]; l == nil || l["schema"] == nil {
		t.Errorf("new database line = %v, want one with its schema version", l)
	}

	for i := range 2 {
		it := &store.OutboxItem{Destination: "ehr", OrderKey: fmt.Sprint("src|session|R", i), Patient: "src|P", Kind: "session",
			Source: "src", RecordID: fmt.Sprint("R", i), Version: "1", Payload: []byte(`{}`)}
		if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := st.Claim(ctx, "ehr", time.Now(), time.Minute, 2); err != nil || len(got) != 2 {
		t.Fatalf("Claim = %d, %v", len(got), err)
	}
	if err := st.CreateJob(ctx, &store.Job{ID: "j1", Kind: "reindex", Tenant: search.AllTenants, Owner: "op"}, nil); err != nil {
		t.Fatal(err)
	}
	if j, err := st.ClaimJob(ctx, []string{"reindex"}, "c1", time.Now(), time.Minute); err != nil || j == nil {
		t.Fatalf("ClaimJob = %v, %v", j, err)
	}
	lines := logLines(t, migratedStore{Store: st})
	if l := lines["delivery: deliveries in flight at start; those of a stopped process are claimed again when "+
		"their claim lapses, their cut-off attempt recorded as interrupted, and sent again"]; l == nil || l["in_flight"] != float64(2) {
		t.Errorf("in-flight line = %v (all: %v), want in_flight 2", l, lines)
	}
	if l := lines["jobs: jobs running at start; those of a stopped process resume from their last checkpoint "+
		"when their lease runs out"]; l == nil || l["running"] != float64(1) || l["leases_end_by"] == nil {
		t.Errorf("jobs line = %v (all: %v), want running 1 with leases_end_by", l, lines)
	}
}

// TestOpenFailure: serve's message for a database it could not open names
// a lock held by another process or a full disk as such, not as a --db
// mistake; anything else points at --db.
func TestOpenFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		want, not string
	}{
		{"locked", fmt.Errorf("migrate: %w", store.Unavailable(store.CauseLocked, errors.New("database is locked (5)"))),
			"locked by another process", "check --db"},
		{"full", fmt.Errorf("migrate: %w", store.Unavailable(store.CauseFull, errors.New("database or disk is full (13)"))),
			"disk is full", "check --db"},
		{"not a database", errors.New("file is not a database (26)"), "check --db", "locked"},
		{"unreachable", fmt.Errorf("connect: %w", store.Unavailable(store.CauseUnreachable, errors.New("dial"))), "check --db", "password"},
		{"login rejected", fmt.Errorf("connect: %w", store.Unavailable(store.CauseLogin, errors.New("28P01"))),
			"check the role's password", "could not open"},
		{"permission denied", fmt.Errorf("connect: %w", store.Unavailable(store.CausePermission, errors.New("42501"))),
			"GRANT CONNECT", "could not open"},
		{"no such database", fmt.Errorf("connect: %w", store.Unavailable(store.CauseNoDatabase, errors.New("3D000"))),
			"does not exist", "could not open"},
		{"certificate", fmt.Errorf("connect: %w", store.Unavailable(store.CauseCertificate, errors.New("x509"))),
			"sslrootcert", "could not open"},
		{"settings", fmt.Errorf("postgres: %w: the setting sslmode", store.ErrInvalidSettings), "settings are refused", "could not open"},
		{"newer schema", fmt.Errorf("migrate: %w", &store.SchemaVersionError{Have: 17, Want: 16}),
			"refusing a rollback (a downgrade to an older release): migrate: the database's schema is version 17, this release's 16", "check --db"},
		{"newer index", fmt.Errorf("open: %w", &indexVersionError{have: 9, want: 8}), "restore the backup taken before the upgrade", "check --db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := openFailure(tc.err)
			if !strings.Contains(got, tc.want) || strings.Contains(got, tc.not) {
				t.Errorf("openFailure = %q, want %q and not %q", got, tc.want, tc.not)
			}
		})
	}
}

// TestOpenExit: a database that could not be opened is exit 3 (try
// again later), but settings refused and a server refusing the login,
// the grants, the database's name or its certificate are exit 2: no
// restart mends them.
func TestOpenExit(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{store.Unavailable(store.CauseUnreachable, errors.New("dial")), exitUnchecked},
		{store.Unavailable(store.CauseLocked, errors.New("locked")), exitUnchecked},
		{store.Unavailable(store.CauseShutdown, errors.New("57P03")), exitUnchecked},
		{errors.New("file is not a database (26)"), exitUnchecked},
		{store.Unavailable(store.CauseLogin, errors.New("28P01")), exitUsage},
		{store.Unavailable(store.CausePermission, errors.New("42501")), exitUsage},
		{store.Unavailable(store.CauseNoDatabase, errors.New("3D000")), exitUsage},
		{store.Unavailable(store.CauseCertificate, errors.New("x509")), exitUsage},
		{fmt.Errorf("open: %w", store.ErrInvalidSettings), exitUsage},
		{&store.SchemaVersionError{Have: 17, Want: 16}, exitUsage}, // a rollback: no restart mends it
		{&indexVersionError{have: 9, want: 8}, exitUsage},
		{&store.SchemaVersionError{Have: 15, Want: 16}, exitUnchecked}, // a migration pending (serve migrates it)
	} {
		if got := openExit(fmt.Errorf("open: %w", tc.err)); got != tc.want {
			t.Errorf("openExit(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestMigrationProgressLog: serve logs a migration before it runs (from,
// to, steps) and each step as it starts, with what it changes (p38 F5:
// nothing was logged until the migration had committed, and no listener
// answered meanwhile).
func TestMigrationProgressLog(t *testing.T) {
	var buf bytes.Buffer
	progress := migrationProgress(slog.New(slog.NewJSONHandler(&buf, nil)))
	progress(store.MigrationStep{From: 7, To: 9, Steps: 2})
	progress(store.MigrationStep{From: 7, To: 9, Steps: 2, Version: 8, Note: "drops an index"})
	progress(store.MigrationStep{From: 7, To: 9, Steps: 2, Version: 9, Note: "rebuilds five indexes"})
	var lines []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	if len(lines) != 3 {
		t.Fatalf("logged %d lines, want 3: %s", len(lines), buf.String())
	}
	// A new database: nothing step by step (logMigration says it was
	// created).
	buf.Reset()
	progress(store.MigrationStep{From: 0, To: 9, Steps: 9})
	progress(store.MigrationStep{From: 0, To: 9, Steps: 9, Version: 1, Note: "the gateway's tables"})
	if buf.Len() != 0 {
		t.Errorf("a new database's migration logged %s, want nothing", buf.String())
	}
	if l := lines[0]; l["msg"] != "store: migrating the schema" || l["from"] != float64(7) || l["to"] != float64(9) || l["steps"] != float64(2) ||
		!strings.Contains(fmt.Sprint(l["probes"]), "--migrate-only") {
		t.Errorf("first line = %v, want the migration's from, to, steps and the probes' advice", l)
	}
	for i, want := range []struct {
		version float64
		step    string
		change  string
	}{{8, "1/2", "drops an index"}, {9, "2/2", "rebuilds five indexes"}} {
		if l := lines[i+1]; l["msg"] != "store: migration starting" || l["version"] != want.version || l["step"] != want.step || l["change"] != want.change {
			t.Errorf("line %d = %v, want version %v, step %s, change %q", i+1, l, want.version, want.step, want.change)
		}
	}
}
