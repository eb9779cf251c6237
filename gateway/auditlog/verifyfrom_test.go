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

func (c *walkCounter) AuditChain(ctx context.Context, fn func(audit.ChainEntry) error) error {
	return c.AuditChainAfter(ctx, 0, fn)
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
			body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"outcomeDesc":"x"}`, id)
			if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
				return err
			}
			if err := tx.AppendAudit(id, body, nil); err != nil {
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
