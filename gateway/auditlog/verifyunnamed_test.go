package auditlog

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// putReceipt stores the receipt of version 1 of native record recordID
// (a Patient its target), recorded at at, and returns its id: with its
// ingest's AuditEvent naming it when named (as the gateway writes one),
// else the receipt alone, as one written behind the gateway's back or
// left by a cut tail.
func putReceipt(t *testing.T, st store.Store, l *Log, recordID string, at time.Time, named bool) string {
	t.Helper()
	return putTenantReceipt(t, st, l, "", recordID, at, named)
}

// putTenantReceipt is putReceipt of a record of tenant.
func putTenantReceipt(t *testing.T, st store.Store, l *Log, tenant, recordID string, at time.Time, named bool) string {
	t.Helper()
	ctx := context.Background()
	id := audit.RecordProvenanceID(tenant, "emr", "session", recordID, "1")
	prov := audit.Provenance{ID: id, Activity: "CREATE", Source: "emr", MappingVersion: "2.0.0",
		WhatSystem: "https://x.example/sid/emr/session-record", WhatValue: recordID, WhatDisplay: "session record version 1",
		RecordKind: "session", RecordVersion: "1", ContentHash: audit.SHA256([]byte("the clinic's record " + recordID))}
	err := st.Write(ctx, func(tx store.Tx) error {
		p, entries, err := store.NewVersion("Patient", "pt-"+recordID, 1, map[string]any{"active": true}, at)
		if err == nil {
			err = tx.Put(p, entries)
		}
		if err != nil {
			return err
		}
		if !named {
			prov.Recorded = at
			prov.Targets = []audit.Entity{{Type: "Patient", ID: p.ID, Version: 1}}
			r, entries, err := store.NewVersion("Provenance", id, 1, audit.ProvenanceResource(prov), at)
			if err != nil {
				return err
			}
			return tx.Put(r, entries)
		}
		sc := NewScope("ingest", nil)
		sc.RequestID, sc.TraceID = "req-"+recordID, "4bf92f3577b34da6a3ce929d0e0e4736"
		sc.Reset()
		sc.Touch(p)
		if err := l.WriteProvenance(tx, sc, prov, []*store.Resource{p}, at); err != nil {
			return err
		}
		// The record version's ledger entry, as ingest writes it with
		// its receipt.
		if err := putLedger(tx, tenant, recordID, at); err != nil {
			return err
		}
		return l.AppendTx(tx, sc, 201)
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// putLedger writes the ledger entry of version 1 of session record
// recordID of source emr of tenant, received at.
func putLedger(tx store.Tx, tenant, recordID string, at time.Time) error {
	return tx.PutLedger(&store.Ledger{Tenant: tenant, Source: store.Namespaced(tenant, "emr"), Kind: "session", RecordID: recordID,
		Version: "1", ContentHash: audit.SHA256([]byte("the clinic's record " + recordID)), Received: at})
}

// withStore runs fn on f's database with an audit log.
func withStore(t *testing.T, f *lineageFixture, fn func(st store.Store, l *Log)) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), f.db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := New(st, Config{Observer: "gw-1"})
	l.Start()
	defer l.Close()
	fn(st, l)
}

// cutTail is SQL that deletes the chain's last record and every row of
// its AuditEvent, and moves the head back to the record before: the cut
// an administrator can make that the chain's own links do not show.
func cutTail() []string {
	last := `(SELECT id FROM audit_chain WHERE seq = (SELECT MAX(seq) FROM audit_chain))`
	return append(deleteResource("AuditEvent", last), `DELETE FROM audit_chain WHERE seq = (SELECT MAX(seq) FROM audit_chain)`,
		`UPDATE audit_chain_head SET seq = (SELECT MAX(seq) FROM audit_chain), hash = (SELECT hash FROM audit_chain ORDER BY seq DESC LIMIT 1)`)
}

// deleteResource is SQL that deletes every row of resource typ/id (id an
// SQL expression: a quoted id, or a subquery), its versions and index.
func deleteResource(typ, id string) []string {
	var stmts []string
	for _, tbl := range []string{"idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_uri", "current", "resources"} {
		stmts = append(stmts, fmt.Sprintf(`DELETE FROM %s WHERE type = '%s' AND id = %s`, tbl, typ, id))
	}
	return stmts
}

// clientProvenance stores a client's own Provenance (no gateway agent) of
// id: written in a Bundle (its receipt, named, lists it), created on its
// own (its create's AuditEvent names it), or behind the gateway's back
// (neither).
func clientProvenance(t *testing.T, st store.Store, l *Log, id, how string) {
	t.Helper()
	at := time.Now().UTC().Add(2 * time.Hour)
	err := st.Write(context.Background(), func(tx store.Tx) error {
		r, entries, err := store.NewVersion("Provenance", id, 1, map[string]any{"resourceType": "Provenance",
			"recorded": "2026-03-01T10:00:00Z", "target": []any{map[string]any{"reference": "Patient/p1"}},
			"agent": []any{map[string]any{"who": map[string]any{"display": "Dr. Example"}}}}, at)
		if err == nil {
			err = tx.Put(r, entries)
		}
		if err != nil {
			return err
		}
		switch how {
		case "bundle":
			sc := NewScope("transaction", nil)
			sc.Reset()
			if err := l.WriteProvenance(tx, sc, BundleProvenance("transaction", []byte(`{}`)), []*store.Resource{r}, at); err != nil {
				return err
			}
			return l.AppendTx(tx, sc, 200)
		case "create":
			sc := NewScope("create", nil)
			sc.Reset()
			sc.Touch(r)
			return l.AppendTx(tx, sc, 201)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestVerifyUnnamedReceipts: a Provenance no chained AuditEvent names and
// no named receipt lists is a fault naming it, counted and said apart by
// Summary and Describe: the chain's tail cut with the head moved back,
// which the links and the head alone do not show (an auditor's review,
// session 42). A client's own Provenance is vouched for by the AuditEvent
// of its create or the receipt of its Bundle. Nothing a row says of itself
// exempts it (an auditor's review: receipts back-dated before the trail's
// first AuditEvent, relabelled as a client's or marked deleted hid a cut).
func TestVerifyUnnamedReceipts(t *testing.T) {
	t.Run("named", func(t *testing.T) {
		f := newLineageFixture(t)
		withStore(t, f, func(st store.Store, l *Log) { putReceipt(t, st, l, "INF-9", time.Now().UTC().Add(2*time.Hour), true) })
		res := verifyTampered(t, f)
		if !res.Intact || res.Lineage.UnnamedReceipts != 0 || res.Lineage.Provenances != 2 || res.Lineage.LedgerEntries != 1 {
			t.Fatalf("Verify = %s (lineage %+v, faults %+v); want intact, both receipts found, the ledger entry checked", res.Summary(), res.Lineage, res.Faults)
		}
	})
	t.Run("the tail cut", func(t *testing.T) {
		f := newLineageFixture(t)
		var id string
		withStore(t, f, func(st store.Store, l *Log) {
			id = putReceipt(t, st, l, "INF-9", time.Now().UTC().Add(2*time.Hour), true)
		})
		res := verifyTampered(t, f, cutTail()...)
		about := "Provenance/" + id + "/_history/1"
		if res.Intact || res.Lineage.UnnamedReceipts != 1 || res.Lineage.Faults != 1 || len(res.Faults) != 1 {
			t.Fatalf("Verify = %s (lineage %+v, faults %+v); want one fault, the receipt no AuditEvent names", res.Summary(), res.Lineage, res.Faults)
		}
		if fl := res.Faults[0]; fl.About != about || fl.AuditEvent != "" || fl.Problem != UnnamedReceiptProblem {
			t.Errorf("fault = %+v, want one about %s naming no AuditEvent", fl, about)
		}
		sum := res.Summary()
		for _, want := range []string{"1 receipt that no chained AuditEvent names (first: " + about + ")", "tail cut"} {
			if !strings.Contains(sum, want) {
				t.Errorf("Summary() = %q, want it to say %q", sum, want)
			}
		}
		if strings.Contains(sum, "stored otherwise") {
			t.Errorf("Summary() = %q, want the unnamed receipt not called one stored otherwise", sum)
		}
		if d := res.Describe(); !strings.Contains(d, "1 receipt no AuditEvent names") || strings.Contains(d, "stored otherwise") {
			t.Errorf("Describe() = %q, want the unnamed receipt counted as such", d)
		}
	})
	for _, how := range []string{"bundle", "create"} {
		t.Run("a client's Provenance, "+how, func(t *testing.T) {
			f := newLineageFixture(t)
			withStore(t, f, func(st store.Store, l *Log) { clientProvenance(t, st, l, "client-prov", how) })
			res := verifyTampered(t, f)
			if !res.Intact || res.Lineage.UnnamedReceipts != 0 {
				t.Fatalf("Verify = %s (lineage %+v, faults %+v); want intact: its %s vouches for it", res.Summary(), res.Lineage, res.Faults, how)
			}
		})
	}
	for _, tc := range []struct {
		name  string
		stmts []string
	}{
		// The cut's receipts made to look older than the trail, or
		// deleted: still faults.
		{"back-dated", []string{`UPDATE current SET last_updated = 0 WHERE type = 'Provenance'`,
			`UPDATE resources SET last_updated = 0 WHERE type = 'Provenance'`}},
		{"marked deleted", []string{`UPDATE current SET deleted = 1 WHERE type = 'Provenance' AND id LIKE 'rec-%'`}},
	} {
		t.Run("the tail cut, "+tc.name, func(t *testing.T) {
			f := newLineageFixture(t)
			withStore(t, f, func(st store.Store, l *Log) {
				putReceipt(t, st, l, "INF-9", time.Now().UTC().Add(2*time.Hour), true)
			})
			res := verifyTampered(t, f, append(cutTail(), tc.stmts...)...)
			if res.Intact || res.Lineage.UnnamedReceipts < 1 {
				t.Fatalf("Verify = %s (lineage %+v, faults %+v); want the cut receipt a fault", res.Summary(), res.Lineage, res.Faults)
			}
		})
	}
	t.Run("the tail cut, its receipt deleted too", func(t *testing.T) {
		f := newLineageFixture(t)
		var id string
		withStore(t, f, func(st store.Store, l *Log) {
			id = putReceipt(t, st, l, "INF-9", time.Now().UTC().Add(2*time.Hour), true)
		})
		res := verifyTampered(t, f, append(cutTail(), deleteResource("Provenance", "'"+id+"'")...)...)
		about := "Provenance/" + id
		if res.Intact || res.Lineage.UnreceiptedRecords != 1 || res.Lineage.UnnamedReceipts != 0 || len(res.Faults) != 1 ||
			res.Lineage.LedgerEntries != 1 {
			t.Fatalf("Verify = %s (lineage %+v, faults %+v); want one fault, the ledger entry whose receipt no AuditEvent names",
				res.Summary(), res.Lineage, res.Faults)
		}
		if fl := res.Faults[0]; fl.About != about || fl.Problem != UnreceiptedRecordProblem {
			t.Errorf("fault = %+v, want one about %s", fl, about)
		}
		if sum := res.Summary(); !strings.Contains(sum, "1 record version in the ledger whose receipt no chained AuditEvent names (first: "+about+")") ||
			strings.Contains(sum, "stored otherwise") {
			t.Errorf("Summary() = %q, want the ledger entry told as such", sum)
		}
		if d := res.Describe(); !strings.Contains(d, "1 record version received whose receipt no AuditEvent names") || strings.Contains(d, "stored otherwise") {
			t.Errorf("Describe() = %q, want the ledger entry counted as such", d)
		}
	})
	t.Run("a ledger entry written behind the gateway's back", func(t *testing.T) {
		f := newLineageFixture(t)
		withStore(t, f, func(st store.Store, l *Log) {
			if err := st.Write(context.Background(), func(tx store.Tx) error { return putLedger(tx, "", "INF-7", time.Now().UTC()) }); err != nil {
				t.Fatal(err)
			}
		})
		res := verifyTampered(t, f)
		want := "Provenance/" + audit.RecordProvenanceID("", "emr", "session", "INF-7", "1")
		if res.Intact || res.Lineage.UnreceiptedRecords != 1 || res.Faults[0].About != want {
			t.Fatalf("Verify = %s (lineage %+v, faults %+v); want it a fault about %s", res.Summary(), res.Lineage, res.Faults, want)
		}
	})
	// A cut record's entry relabelled out of its tenant's namespace onto
	// another record's named receipt (an auditor's review: it passed).
	t.Run("the tail cut, its receipt deleted, its entry relabelled", func(t *testing.T) {
		f := newLineageFixture(t)
		var id string
		withStore(t, f, func(st store.Store, l *Log) {
			id = putTenantReceipt(t, st, l, "clinic-a", "INF-5", time.Now().UTC().Add(time.Hour), true)
			putTenantReceipt(t, st, l, "clinic-a", "INF-6", time.Now().UTC().Add(2*time.Hour), true)
		})
		cut := audit.RecordProvenanceID("clinic-a", "emr", "session", "INF-6", "1")
		stmts := append(deleteResource("Provenance", "'"+cut+"'"),
			`UPDATE ledger SET source = 'emr', record_id = 'INF-5' WHERE record_id = 'INF-6'`)
		res := verifyTampered(t, f, append(cutTail(), stmts...)...)
		if res.Intact || res.Lineage.UnreceiptedRecords != 1 || len(res.Faults) != 1 || res.Faults[0].Problem != MislabelledLedgerProblem ||
			res.Faults[0].About != "Provenance/"+id {
			t.Fatalf("Verify = %s (lineage %+v, faults %+v); want the relabelled entry a fault", res.Summary(), res.Lineage, res.Faults)
		}
	})
	t.Run("a Provenance written behind the gateway's back", func(t *testing.T) {
		f := newLineageFixture(t)
		withStore(t, f, func(st store.Store, l *Log) { clientProvenance(t, st, l, "forged-prov", "") })
		res := verifyTampered(t, f)
		if res.Intact || res.Lineage.UnnamedReceipts != 1 || res.Faults[0].About != "Provenance/forged-prov/_history/1" {
			t.Fatalf("Verify = %s (lineage %+v, faults %+v); want it a fault: no AuditEvent names it", res.Summary(), res.Lineage, res.Faults)
		}
	})
}

// TestVerifyFromUnnamedReceipt: from an anchor, a receipt written after
// the anchor that no AuditEvent names is a fault, though the walk reads
// no AuditEvent of a write; one whose AuditEvent was committed before the
// anchor's (a write queue's delay, a replica's clock), not walked, is
// found named by the search index: no fault (an auditor's review: a
// window of 30 s after each anchor was not checked).
func TestVerifyFromUnnamedReceipt(t *testing.T) {
	d := newDeliveryTrail(t, "NEAR-2")
	putReceipt(t, d.st, d.l, "INF-1", d.now, true)
	anchorAt := d.now.Add(time.Minute)
	// Its AuditEvent before the anchor's, its row dated after.
	putReceipt(t, d.st, d.l, "INF-2", anchorAt.Add(10*time.Second), true)
	anchor := d.anchor(t, anchorAt)
	res, err := VerifyWith(d.ctx, d.st, time.Now(), VerifyOptions{From: &anchor})
	if err != nil || !res.Intact || res.Lineage.UnnamedReceipts != 0 {
		t.Fatalf("VerifyWith(from the anchor) = %s (lineage %+v, faults %+v), %v; want intact: the index finds its AuditEvent", res.Summary(), res.Lineage, res.Faults, err)
	}
	for _, at := range []time.Duration{10 * time.Second, 2 * time.Minute} {
		id := putReceipt(t, d.st, d.l, "INF-3-"+at.String(), anchorAt.Add(at), false)
		res, err = VerifyWith(d.ctx, d.st, time.Now(), VerifyOptions{From: &anchor})
		if err != nil || res.Intact || !slices.ContainsFunc(res.Faults, func(f AuditFault) bool { return f.About == "Provenance/"+id+"/_history/1" }) {
			t.Fatalf("VerifyWith(from the anchor) = %s (lineage %+v, faults %+v), %v; want the receipt written %s after it a fault", res.Summary(), res.Lineage, res.Faults, err, at)
		}
	}
}
