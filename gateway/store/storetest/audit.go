package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// auditBody is the stored body of AuditEvent id.
func auditBody(id string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"meta":{"versionId":"1"}}`, id)
}

// appendAudit puts AuditEvent id (version 1) and appends it to the chain,
// as the gateway does at the end of a transaction.
func appendAudit(tx store.Tx, id string) (int64, error) {
	body := auditBody(id)
	if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
		return 0, err
	}
	return tx.AppendAudit(id, body)
}

// writeAudit appends ids to the chain in one transaction and returns their
// seqs.
func writeAudit(t *testing.T, s store.Store, ids ...string) []int64 {
	t.Helper()
	var seqs []int64
	err := s.Write(context.Background(), func(tx store.Tx) error {
		seqs = nil
		for _, id := range ids {
			seq, err := appendAudit(tx, id)
			if err != nil {
				return err
			}
			seqs = append(seqs, seq)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("append %v: %v", ids, err)
	}
	return seqs
}

// verifyChain walks the whole chain through an audit.Verifier and returns
// the entries and the verifier's first error.
func verifyChain(t *testing.T, s store.Store) ([]audit.ChainEntry, error) {
	t.Helper()
	var v audit.Verifier
	var entries []audit.ChainEntry
	var broken error
	err := s.AuditChain(context.Background(), func(e audit.ChainEntry) error {
		entries = append(entries, e)
		if broken == nil {
			broken = v.Add(e)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("AuditChain: %v", err)
	}
	if broken == nil && v.Verified() != int64(len(entries)) {
		t.Errorf("Verified() = %d, want %d", v.Verified(), len(entries))
	}
	return entries, broken
}

// expectChain checks that the chain verifies and holds exactly ids, in
// order, with seq 1..n and the bodies as stored.
func expectChain(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	entries, err := verifyChain(t, s)
	if err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
	var got []string
	for i, e := range entries {
		got = append(got, e.ID)
		if e.Seq != int64(i+1) {
			t.Errorf("entry %d: Seq = %d, want %d", i, e.Seq, i+1)
		}
		if !bytes.Equal(e.Body, auditBody(e.ID)) {
			t.Errorf("entry %d: Body = %q, want %q", i, e.Body, auditBody(e.ID))
		}
	}
	if !slices.Equal(got, ids) {
		t.Errorf("chain ids = %v, want %v", got, ids)
	}
}

// testAuditChain: appends in several transactions (one or more per
// transaction) form one chain that verifies, with seq 1..n; fn's error
// stops the walk; an id is appended once.
func testAuditChain(t *testing.T, s store.Store) {
	ctx := context.Background()
	expectChain(t, s) // empty
	if got := writeAudit(t, s, "a1"); !slices.Equal(got, []int64{1}) {
		t.Errorf("AppendAudit(a1) seq = %v, want [1]", got)
	}
	if got := writeAudit(t, s, "a2", "a3", "a4"); !slices.Equal(got, []int64{2, 3, 4}) {
		t.Errorf("AppendAudit(a2, a3, a4) seqs = %v, want [2 3 4]", got)
	}
	if got := writeAudit(t, s, "a5"); !slices.Equal(got, []int64{5}) {
		t.Errorf("AppendAudit(a5) seq = %v, want [5]", got)
	}
	expectChain(t, s, "a1", "a2", "a3", "a4", "a5")

	entries, _ := verifyChain(t, s)
	if len(entries) == 5 && entries[0].Hash != audit.Link("", auditBody("a1")) {
		t.Errorf("first Hash = %s, want audit.Link(\"\", body)", entries[0].Hash)
	}

	stop := errors.New("stop")
	calls := 0
	err := s.AuditChain(ctx, func(audit.ChainEntry) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Errorf("AuditChain with a failing fn = %v after %d calls, want fn's error unchanged after 1", err, calls)
	}

	err = s.Write(ctx, func(tx store.Tx) error {
		_, err := tx.AppendAudit("a3", auditBody("a3"))
		return err
	})
	isErr(t, "AppendAudit of an id already in the chain", err, store.ErrConflict)
	expectChain(t, s, "a1", "a2", "a3", "a4", "a5")
}

// testAuditChainPaging: a chain longer than one page of AuditChain's
// reads comes back whole and in order.
func testAuditChainPaging(t *testing.T, s store.Store) {
	const n = 2345
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%04d", i)
	}
	seqs := writeAudit(t, s, ids...)
	if seqs[0] != 1 || seqs[n-1] != n {
		t.Errorf("seqs run %d..%d, want 1..%d", seqs[0], seqs[n-1], n)
	}
	expectChain(t, s, ids...)
}

// testAuditChainRollback: a rolled-back transaction leaves no chain entry
// and its seq is not used up.
func testAuditChainRollback(t *testing.T, s store.Store) {
	ctx := context.Background()
	writeAudit(t, s, "r1")
	boom := errors.New("boom")
	err := s.Write(ctx, func(tx store.Tx) error {
		seq, err := appendAudit(tx, "gone")
		if err != nil {
			return err
		}
		if seq != 2 {
			return fmt.Errorf("AppendAudit(gone) seq = %d, want 2", seq)
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Write = %v, want fn's error unchanged", err)
	}
	if got := writeAudit(t, s, "r2"); !slices.Equal(got, []int64{2}) {
		t.Errorf("AppendAudit after a rollback: seq = %v, want [2]", got)
	}
	expectChain(t, s, "r1", "r2")
}

// testAuditChainConcurrent: 8 writers of 25 transactions each append to
// one chain, retrying on ErrConflict as the gateway does; the chain has no
// gap, no fork and verifies.
func testAuditChainConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const writers, perWriter = 8, 25
	seqs := make([][]int64, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("w%d-%02d", w, i)
				for attempt := 0; ; attempt++ {
					var seq int64
					err := s.Write(ctx, func(tx store.Tx) error {
						var err error
						seq, err = appendAudit(tx, id)
						return err
					})
					if errors.Is(err, store.ErrConflict) && attempt < 100 {
						continue
					}
					if err != nil {
						errs[w] = fmt.Errorf("append %s: %w", id, err)
						return
					}
					seqs[w] = append(seqs[w], seq)
					break
				}
			}
		})
	}
	wg.Wait()
	for w, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", w, err)
		}
	}
	var all []int64
	for w := range writers {
		if !slices.IsSorted(seqs[w]) {
			t.Errorf("writer %d got seqs %v, not increasing", w, seqs[w])
		}
		all = append(all, seqs[w]...)
	}
	slices.Sort(all)
	for i, seq := range all {
		if seq != int64(i+1) {
			t.Fatalf("AppendAudit returned seqs %v, want 1..%d each once", all, writers*perWriter)
		}
	}
	entries, err := verifyChain(t, s)
	if err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
	if len(entries) != writers*perWriter {
		t.Errorf("chain has %d entries, want %d", len(entries), writers*perWriter)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.ID] {
			t.Errorf("%s appears twice", e.ID)
		}
		seen[e.ID] = true
	}
}
