package auditlog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// walkCounter counts the chain entries a verification's walk reads.
type walkCounter struct {
	store.Store
	read int
}

func (c *walkCounter) AuditChainAfter(ctx context.Context, after int64, fn func(audit.ChainEntry) error) error {
	return c.Store.AuditChainAfter(ctx, after, func(e audit.ChainEntry) error {
		c.read++
		return fn(e)
	})
}

// TestVerifyFrom: a verification from a trusted earlier head walks only
// the records from it on (read counted), finds a record changed after
// it, and refuses an anchor the chain does not hold as it was given; what
// it proves is said (Scope): a record changed before the anchor is not
// its finding, but the full verification's.
func TestVerifyFrom(t *testing.T) {
	ctx := context.Background()
	const before, after = 2500, 40
	for _, tc := range []struct {
		name     string
		tamper   []string
		from     func(head Anchor) Anchor
		brokenAt int64
		reason   string
	}{
		{name: "intact"},
		{name: "a record after the anchor changed", tamper: []string{changeBody(before + 7)}, brokenAt: before + 7, reason: "was changed"},
		{name: "the anchor's record changed", tamper: []string{changeBody(before)}, brokenAt: before, reason: "was changed"},
		{name: "a record after the anchor deleted", tamper: []string{fmt.Sprintf(`DELETE FROM audit_chain WHERE seq = %d`, before+3)},
			brokenAt: before + 3, reason: "is missing"},
		// Its chain row kept: missing, not "changed" (an auditor's review).
		{name: "an AuditEvent after the anchor deleted", tamper: []string{
			fmt.Sprintf(`DELETE FROM current WHERE type = 'AuditEvent' AND id = 'ae%06d'`, before+4),
			fmt.Sprintf(`DELETE FROM resources WHERE type = 'AuditEvent' AND id = 'ae%06d'`, before+4)},
			brokenAt: before + 4, reason: "its AuditEvent was deleted"},
		// Not this verification's to find: the earlier one vouched for it.
		{name: "a record before the anchor changed", tamper: []string{changeBody(100)}},
		{name: "an anchor with another hash", from: func(h Anchor) Anchor { return Anchor{h.Seq, strings.Repeat("ab", 32)} },
			brokenAt: before, reason: "another hash than the anchor"},
		{name: "an anchor past the chain", from: func(h Anchor) Anchor { return Anchor{before + after + 5, h.Hash} },
			brokenAt: before + after + 5, reason: "holds no record"},
		{name: "an anchor just past the head", from: func(h Anchor) Anchor { return Anchor{before + after + 1, h.Hash} },
			brokenAt: before + after + 1, reason: "holds no record"},
		{name: "the record before the anchor deleted", tamper: []string{fmt.Sprintf(`DELETE FROM audit_chain WHERE seq = %d`, before-1)},
			brokenAt: before, reason: "holds no record"},
		{name: "the anchor's record and the one before it deleted", tamper: []string{
			fmt.Sprintf(`DELETE FROM audit_chain WHERE seq IN (%d, %d)`, before-1, before)},
			brokenAt: before, reason: fmt.Sprintf("no record %d, the anchor verified from", before)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "kg.db")
			base, err := sqlite.Open(ctx, db, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer base.Close()
			appendMany(t, base, 1, before)
			full, err := Verify(ctx, base, time.Now())
			if err != nil || !full.Intact {
				t.Fatalf("Verify = %+v, %v", full, err)
			}
			head := Anchor{Seq: full.HeadSeq, Hash: full.HeadHash}
			appendMany(t, base, before+1, after)
			raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, q := range tc.tamper {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			from := head
			if tc.from != nil {
				from = tc.from(head)
			}
			st := &walkCounter{Store: base}
			var progress int64
			res, err := VerifyWith(ctx, st, time.Now(), VerifyOptions{From: &from, Progress: func(n int64) { progress = n }})
			if err != nil {
				t.Fatal(err)
			}
			if res.From == nil || *res.From != from || !strings.Contains(res.Scope, fmt.Sprintf("records 1 to %d were not checked now", from.Seq-1)) {
				t.Errorf("VerifyWith from %d: from %v, scope %q; want it said what was checked", from.Seq, res.From, res.Scope)
			}
			if st.read > after+1 {
				t.Errorf("VerifyWith from %d read %d chain entries, want at most %d (the anchor's record and those after it)", from.Seq, st.read, after+1)
			}
			if tc.brokenAt == 0 {
				if !res.Intact || res.Records != after+1 || res.HeadSeq != before+after || progress != after+1 {
					t.Errorf("VerifyWith from %d = %+v (progress %d), want intact, %d records checked", from.Seq, res, progress, after+1)
				}
				return
			}
			if res.Intact || res.BrokenAt != tc.brokenAt || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("VerifyWith from %d = intact %t, broken at %d: %s; want broken at %d: %s", from.Seq, res.Intact, res.BrokenAt, res.Reason, tc.brokenAt, tc.reason)
			}
		})
	}
}

// appendMany appends n AuditEvents from record first, in one transaction.
func appendMany(t *testing.T, st store.Store, first, n int) {
	t.Helper()
	err := st.Write(context.Background(), func(tx store.Tx) error {
		for seq := first; seq < first+n; seq++ {
			id := fmt.Sprintf("ae%06d", seq)
			if err := putAuditEvent(tx, id, fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"outcomeDesc":"x"}`, id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// changeBody is SQL that changes the stored body of record seq (appendMany's).
func changeBody(seq int) string {
	return fmt.Sprintf(`UPDATE resources SET body = CAST('{"resourceType":"AuditEvent","id":"ae%06d","outcomeDesc":"y"}' AS BLOB)
		WHERE type = 'AuditEvent' AND id = 'ae%06d'`, seq, seq)
}

// deliveryTrail is a SQLite store with an audit log and one item queued
// for destination ehr-b (record recordID), now after the store's clock,
// which dates the items: the fixture of the tests of attempts around an
// anchor.
type deliveryTrail struct {
	ctx  context.Context
	st   store.Store
	l    *Log
	ids  *operator.IDs
	now  time.Time
	item *store.OutboxItem
}

func newDeliveryTrail(t *testing.T, recordID string) *deliveryTrail {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	l := New(st, Config{Observer: "gw-1"})
	l.Start()
	t.Cleanup(func() { l.Close() })
	item := &store.OutboxItem{Destination: "ehr-b", OrderKey: "emr|session|" + recordID, Kind: "session", Source: "emr", RecordID: recordID,
		Version: "1", Payload: []byte(`{"resourceType":"Bundle","type":"transaction"}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(item) }); err != nil {
		t.Fatal(err)
	}
	ids, err := operator.LoadIDs(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	return &deliveryTrail{ctx: ctx, st: st, l: l, ids: ids, now: time.Now().UTC().Add(time.Hour).Truncate(time.Second), item: item}
}

// claim claims the item at at for lease.
func (d *deliveryTrail) claim(t *testing.T, at time.Time, lease time.Duration) *store.OutboxItem {
	t.Helper()
	its, err := d.st.Claim(d.ctx, "ehr-b", at, lease, 1)
	if err != nil || len(its) != 1 {
		t.Fatalf("Claim = %v, %v; want one item", its, err)
	}
	return its[0]
}

// send appends the delivery-send AuditEvent of attempt a of it.
func (d *deliveryTrail) send(t *testing.T, it *store.OutboxItem, a *store.Attempt, outcome string) {
	t.Helper()
	if err := d.l.AppendSent(d.ctx, d.st, "https://x.example/sid", Sent{Delivery: d.ids.Encode(it.ID), Destination: it.Destination,
		Item: it, Attempt: a, Outcome: outcome}); err != nil {
		t.Fatal(err)
	}
}

// anchor appends a read's AuditEvent recorded at recorded and returns the
// anchor a verification then gives.
func (d *deliveryTrail) anchor(t *testing.T, recorded time.Time) Anchor {
	t.Helper()
	rec := audit.Record{ID: "anchor", Interaction: "read", Status: 200, Recorded: recorded, Observer: "gw-1"}
	if err := d.st.Write(d.ctx, newEvent("", rec).put); err != nil {
		t.Fatal(err)
	}
	earlier, err := Verify(d.ctx, d.st, time.Now())
	if err != nil || !earlier.Intact {
		t.Fatalf("Verify = %+v, %v; want intact", earlier, err)
	}
	return Anchor{Seq: earlier.HeadSeq, Hash: earlier.HeadHash}
}

// TestVerifyFromStalledWorker: an attempt the next worker recorded, and
// audited, as interrupted before the anchor, whose stalled worker's own
// AuditEvent of it comes after the anchor, is no fault of a verification
// from the anchor (the whole walk pairs the two; from the anchor, the
// first is vouched for by the earlier verification).
func TestVerifyFromStalledWorker(t *testing.T) {
	d := newDeliveryTrail(t, "INF-2")
	stalled := d.claim(t, d.now, time.Millisecond)
	next := d.claim(t, d.now.Add(35*time.Second), time.Minute)
	interrupted := &store.Attempt{ItemID: next.ID, N: next.Attempts + 1, At: next.NextAttempt, TraceID: next.TraceID,
		Error: "interrupted: the gateway stopped during this attempt"}
	d.send(t, next, interrupted, "interrupted")
	if err := d.st.Complete(d.ctx, interrupted, store.StatusPending, interrupted.At); err != nil {
		t.Fatal(err)
	}
	// The anchor: an AuditEvent recorded after the attempt began.
	anchor := d.anchor(t, d.now.Add(time.Minute))
	// The stalled worker's AuditEvent of its attempt, after the anchor:
	// its row was never written (the next worker's is).
	d.send(t, stalled, &store.Attempt{ItemID: stalled.ID, N: 1, At: d.now, Duration: 8 * time.Second, HTTPStatus: 200,
		Outcome: []byte(`{"resourceType":"Bundle","type":"transaction-response"}`)}, "done")
	for _, opts := range []VerifyOptions{{}, {From: &anchor}} {
		res, err := VerifyWith(d.ctx, d.st, time.Now(), opts)
		if err != nil || !res.Intact || res.Lineage.Faults != 0 {
			t.Errorf("VerifyWith(from %v) = %s (%+v), %v; want intact, no lineage fault", opts.From, res.Summary(), res.Faults, err)
		}
	}
}

// TestVerifyFromAttemptNearAnchor: from an anchor, an attempt begun just
// after the anchor's AuditEvent was recorded, whose delivery-send
// AuditEvent was committed before the anchor's (a write queue's delay, a
// replica's clock), is not walked: no fault, counted as not checked
// (nearAnchor, with a note). One begun well after the anchor that no
// AuditEvent names is still a fault (review of fix-ops, 4).
func TestVerifyFromAttemptNearAnchor(t *testing.T) {
	d := newDeliveryTrail(t, "NEAR-1")
	anchorAt := d.now.Add(time.Minute)
	it := d.claim(t, anchorAt, time.Minute)
	// Its AuditEvent is committed before the anchor's; the attempt began
	// 10 s after the anchor's recorded time.
	a := &store.Attempt{ItemID: it.ID, N: 1, At: anchorAt.Add(10 * time.Second), Duration: time.Second, HTTPStatus: 503,
		Error: "http 503", TraceID: it.TraceID}
	d.send(t, it, a, "retry")
	if err := d.st.Complete(d.ctx, a, store.StatusPending, a.At); err != nil {
		t.Fatal(err)
	}
	anchor := d.anchor(t, anchorAt)
	res, err := VerifyWith(d.ctx, d.st, time.Now(), VerifyOptions{From: &anchor})
	if err != nil || !res.Intact || res.Lineage.Unaudited != 0 || res.Lineage.NearAnchor != 1 ||
		!strings.Contains(res.Lineage.Note, "began within 30s after the anchor") {
		t.Fatalf("VerifyWith(from the anchor) = %s (lineage %+v, faults %+v), %v; want intact, the attempt not checked", res.Summary(), res.Lineage, res.Faults, err)
	}

	// An attempt no AuditEvent names, begun well after the anchor: a fault.
	again := d.claim(t, anchorAt.Add(2*time.Minute), time.Minute)
	late := &store.Attempt{ItemID: again.ID, N: 2, At: anchorAt.Add(2 * time.Minute), HTTPStatus: 200}
	if err := d.st.Complete(d.ctx, late, store.StatusDone, time.Time{}); err != nil {
		t.Fatal(err)
	}
	res, err = VerifyWith(d.ctx, d.st, time.Now(), VerifyOptions{From: &anchor})
	if err != nil || res.Intact || res.Lineage.Unaudited != 1 || res.Lineage.NearAnchor != 1 {
		t.Fatalf("VerifyWith(from the anchor) = %s (lineage %+v), %v; want the later attempt a fault", res.Summary(), res.Lineage, err)
	}
}
