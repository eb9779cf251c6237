package auditlog

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestVerifyRolledBackWrite (p37 F2): the AuditEvent of a write whose
// transaction rolled back (its commit failed) records it as failed. As an
// earlier build wrote it, it still names the Provenance the transaction
// wrote, with its json-sha256: that receipt never existed, and verify
// does not report it deleted but counts it as not written (RolledBack).
// As this build writes it (Scope.RolledBack), it names nothing written.
func TestVerifyRolledBackWrite(t *testing.T) {
	for _, tc := range []struct {
		name           string
		rolledBack     bool // the scope forgets what the transaction wrote, as Engine.Write does now
		wantRolledBack int
	}{
		{"earlier build's AuditEvent", false, 1},
		{"this build's AuditEvent", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			l := New(st, Config{Observer: "gw-1"})
			l.Start()
			defer l.Close()
			now := time.Now().UTC()
			sc := NewScope("ingest", nil)
			errCommit := errors.New("commit failed")
			err = st.Write(ctx, func(tx store.Tx) error {
				sc.Reset()
				p, entries, err := store.NewVersion("Patient", "p1", 1, map[string]any{"active": true}, now)
				if err != nil {
					return err
				}
				if err := tx.Put(p, entries); err != nil {
					return err
				}
				sc.Touch(p)
				prov := audit.Provenance{Activity: "CREATE", Source: "emr", WhatDisplay: "session record version 1",
					ContentHash: audit.SHA256([]byte("the clinic's record"))}
				if err := l.WriteProvenance(tx, sc, prov, []*store.Resource{p}, now); err != nil {
					return err
				}
				if err := l.AppendTx(tx, sc, 200); err != nil {
					return err
				}
				return errCommit // the commit is lost: nothing of it is stored
			})
			if !errors.Is(err, errCommit) {
				t.Fatalf("Write = %v, want the commit's failure", err)
			}
			if tc.rolledBack {
				sc.RolledBack()
			}
			if err := l.Append(sc, 503); err != nil {
				t.Fatal(err)
			}
			res, err := Verify(ctx, st, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if !res.Intact || res.Lineage.Faults != 0 || res.Records != 1 {
				t.Errorf("Verify = intact %v, %d records, faults %+v, want intact with 1 record", res.Intact, res.Records, res.Faults)
			}
			if res.Lineage.RolledBack != tc.wantRolledBack {
				t.Errorf("Lineage.RolledBack = %d, want %d", res.Lineage.RolledBack, tc.wantRolledBack)
			}
			if tc.wantRolledBack > 0 && !strings.Contains(res.Lineage.Note, "failed") {
				t.Errorf("Lineage.Note = %q, want it to say why those were not checked", res.Lineage.Note)
			}
		})
	}
}
