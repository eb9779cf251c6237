package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestLogStopTheWorldMigration: a migration that is not rolling-safe
// (sqlstore.Migration.NotRolling) is logged at WARN, saying that every
// gateway and CLI of a release older than its schema must be stopped now
// and what such a one left running would do wrong (p44 F1: it was an INFO
// line like any other, and an old replica went on delivering, unaudited).
// A rolling one stays INFO.
func TestLogStopTheWorldMigration(t *testing.T) {
	m := store.Migration{From: 12, To: 23, Applied: []store.AppliedMigration{
		{Version: 18, Note: "an index"},
		{Version: 19, Note: "deliveries are ordered on every record they carry", NotRolling: true,
			Older: "they send deliveries out of order"},
		{Version: 20, Note: "fingerprints"},
	}}
	var buf bytes.Buffer
	logMigration(migratedStore{m: m}, slog.New(slog.NewJSONHandler(&buf, nil)))
	var warn []map[string]any
	info := 0
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatal(err)
		}
		switch {
		case l["level"] == "WARN":
			warn = append(warn, l)
		case l["msg"] == "store: migration applied":
			info++
		}
	}
	if len(warn) != 1 || info != 2 {
		t.Fatalf("logged %d WARN lines and %d INFO 'migration applied' lines, want 1 and 2:\n%s", len(warn), info, buf.String())
	}
	l := warn[0]
	msg := fmt.Sprint(l["msg"])
	for _, want := range []string{"stop-the-world", "stop every gateway and CLI", "older than schema 19", "now"} {
		if !strings.Contains(msg, want) {
			t.Errorf("WARN line's msg = %q, want it to say %q", msg, want)
		}
	}
	if l["version"] != float64(19) || l["change"] != "deliveries are ordered on every record they carry" ||
		l["older_releases"] != "they send deliveries out of order" {
		t.Errorf("WARN line = %v, want version 19, its change and what older releases would do", l)
	}
}

// TestImportLogsItsMigration: import, which migrates the database as
// serve does, logs what it migrated as serve does (it said nothing, so a
// stop-the-world migration it ran went unannounced: p44 F1).
func TestImportLogsItsMigration(t *testing.T) {
	var latest int
	older := rollbackDB(t, func(ctx context.Context, _ store.Store, db *sql.DB) error {
		if err := db.QueryRowContext(ctx, `SELECT MAX(version) FROM schema_migrations`).Scan(&latest); err != nil {
			return err
		}
		// The last migration (SQLite's 22) adds delivery_attempts_at.
		if _, err := db.ExecContext(ctx, `DROP INDEX delivery_attempts_at`); err != nil {
			return err
		}
		_, err := db.ExecContext(ctx, `DELETE FROM schema_migrations WHERE version = ?`, latest)
		return err
	})
	_, errOut, code := cli(t, "{}\n", "import", "--kind", "vitals", "--db", older, "--report", filepath.Join(t.TempDir(), "r"), "-")
	want := fmt.Sprintf(`"msg":"store: migration applied","version":%d`, latest)
	if code != 1 || !strings.Contains(errOut, want) {
		t.Errorf("import on an older schema: exit %d, stderr %q; want exit 1 (the record rejected) and %s", code, errOut, want)
	}
}
