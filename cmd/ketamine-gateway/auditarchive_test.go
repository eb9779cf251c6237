package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestAuditArchiveProcedure runs docs/audit.md's "Retention and archiving"
// as written over a trail recorded across three months: a head saved
// once during the first period anchors the first file (from record 1);
// each later file is checked against the head saved when the period
// before it was archived and the previous file's last record, and every
// check exits 0. The head saved when a period is archived is not held by
// that period's own file (it is recorded after the period ends), which
// the procedure once told users to check (p41 F6).
func TestAuditArchiveProcedure(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db := filepath.Join(dir, "kg.db")
	seq := 0
	record := func(at ...string) { // AuditEvents recorded at these times, chained in this order
		t.Helper()
		st, err := sqlite.Open(ctx, db, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		for _, a := range at {
			seq++
			id := fmt.Sprintf("ae%d", seq)
			body := []byte(`{"resourceType":"AuditEvent","id":"` + id + `","recorded":"` + a + `"}`)
			recorded, _ := time.Parse(time.RFC3339, a)
			err := st.Write(ctx, func(tx store.Tx) error {
				if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, LastUpdated: recorded, Body: body}, nil); err != nil {
					return err
				}
				return tx.AppendAudit(id, body, nil)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	file := func(name string) string { return filepath.Join(dir, name) }
	// run runs a documented command, its standard output to save (the
	// shell's "> FILE") when save is not "", and wants exit 0.
	run := func(save string, args ...string) {
		t.Helper()
		out, errOut, code := cli(t, "", args...)
		if code != 0 {
			t.Fatalf("%v = exit %d, %s %s", args, code, out, errOut)
		}
		if save != "" {
			if err := os.WriteFile(file(save), []byte(out), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := func(export string) string { // the export's lastSeq:lastHash
		t.Helper()
		b, err := os.ReadFile(file(export))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		var m struct {
			Manifest struct {
				LastSeq  int64
				LastHash string
			}
		}
		if err := json.Unmarshal([]byte(lines[len(lines)-1]), &m); err != nil || m.Manifest.LastSeq == 0 {
			t.Fatalf("%s's manifest = %s, %v", export, lines[len(lines)-1], err)
		}
		return fmt.Sprintf("%d:%s", m.Manifest.LastSeq, m.Manifest.LastHash)
	}

	record("2025-10-20T09:00:00Z", "2025-11-03T09:00:00Z") // a trail older than the archive
	// Once, during the first period (November 2025).
	run("head-start.json", "audit", "verify", "--db", db)
	record("2025-11-20T09:00:00Z", "2025-11-30T23:59:00Z", "2025-12-01T00:02:00Z")
	// Early December: November.
	run("head-2025-11.json", "audit", "verify", "--db", db, "--from", "@"+file("head-start.json"))
	run("", "audit", "export", "--db", db, "--until", "2025-12-01", "--out", file("audit-2025-11.ndjson"))
	run("", "audit", "verify-export", "--expect", "@"+file("head-start.json"), file("audit-2025-11.ndjson"))
	// The head saved when November was archived is December's record:
	// November's file cannot show it.
	if _, errOut, code := cli(t, "", "audit", "verify-export", "--expect", "@"+file("head-2025-11.json"), file("audit-2025-11.ndjson")); code != exitInvalid || !strings.Contains(errOut, "not held") {
		t.Errorf("verify-export of November against the head saved after it = exit %d, %s; want 1, not held", code, errOut)
	}
	record("2025-12-15T09:00:00Z")
	// Early January: December (nothing recorded since it ended: the head
	// saved now is December's last record, the record before January's
	// first).
	run("head-2025-12.json", "audit", "verify", "--db", db, "--from", "@"+file("head-2025-11.json"))
	run("", "audit", "export", "--db", db, "--since", "2025-12-01", "--until", "2026-01-01", "--out", file("audit-2025-12.ndjson"))
	run("", "audit", "verify-export", "--expect", "@"+file("head-2025-11.json"), "--expect", last("audit-2025-11.ndjson"), file("audit-2025-12.ndjson"))
	record("2026-01-10T09:00:00Z")
	// Early February: January.
	run("head-2026-01.json", "audit", "verify", "--db", db, "--from", "@"+file("head-2025-12.json"))
	run("", "audit", "export", "--db", db, "--since", "2026-01-01", "--until", "2026-02-01", "--out", file("audit-2026-01.ndjson"))
	run("", "audit", "verify-export", "--expect", "@"+file("head-2025-12.json"), "--expect", last("audit-2025-12.ndjson"), file("audit-2026-01.ndjson"))
}
