package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// auditBody is the stored body of AuditEvent id.
func auditBody(id string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"meta":{"versionId":"1"}}`, id)
}

// appendAudit puts AuditEvent id (version 1) and appends it to the chain,
// as the gateway does at the end of a transaction.
func appendAudit(tx store.Tx, id string) error {
	body := auditBody(id)
	if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
		return err
	}
	return tx.AppendAudit(id, body, nil)
}

// writeAudit appends ids to the chain in one transaction.
func writeAudit(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	err := s.Write(context.Background(), func(tx store.Tx) error {
		for _, id := range ids {
			if err := appendAudit(tx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("append %v: %v", ids, err)
	}
}

// verifyChain walks the whole chain through an audit.Verifier and returns
// the entries and the verifier's first error.
func verifyChain(t *testing.T, s store.Store) ([]audit.ChainEntry, error) {
	t.Helper()
	var v audit.Verifier
	var entries []audit.ChainEntry
	var broken error
	err := s.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		entries = append(entries, e)
		if broken == nil {
			broken = v.Add(e)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("AuditChainAfter: %v", err)
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
	if seq, hash, err := s.AuditChainHead(ctx); seq != 0 || hash != "" || err != nil {
		t.Errorf("AuditChainHead of an empty chain = %d, %q, %v; want 0, \"\"", seq, hash, err)
	}
	writeAudit(t, s, "a1")
	expectChain(t, s, "a1")
	writeAudit(t, s, "a2", "a3", "a4")
	expectChain(t, s, "a1", "a2", "a3", "a4")
	writeAudit(t, s, "a5")
	expectChain(t, s, "a1", "a2", "a3", "a4", "a5")

	entries, _ := verifyChain(t, s)
	if len(entries) == 5 && entries[0].Hash != audit.Link("", auditBody("a1")) {
		t.Errorf("first Hash = %s, want audit.Link(\"\", body)", entries[0].Hash)
	}
	if seq, hash, err := s.AuditChainHead(ctx); len(entries) == 5 && (seq != 5 || hash != entries[4].Hash || err != nil) {
		t.Errorf("AuditChainHead = %d, %q, %v; want the last entry's seq 5 and hash %q", seq, hash, err, entries[4].Hash)
	}

	// The lean walk from a seq: the same entries and bodies after it.
	var from []string
	err := s.AuditChainFrom(ctx, 2, func(e audit.ChainEntry) error {
		if len(entries) == 5 && (e.Hash != entries[e.Seq-1].Hash || !bytes.Equal(e.Body, entries[e.Seq-1].Body)) {
			t.Errorf("AuditChainFrom entry %d = %s, want AuditChain's hash and body", e.Seq, e.Hash)
		}
		from = append(from, fmt.Sprintf("%d:%s", e.Seq, e.ID))
		return nil
	})
	if err != nil || strings.Join(from, " ") != "3:a3 4:a4 5:a5" {
		t.Errorf("AuditChainFrom(2) = %v, %v; want 3:a3 4:a4 5:a5", from, err)
	}

	// One entry's hash, read alone.
	if hash, err := s.AuditChainHash(ctx, 4); len(entries) == 5 && (hash != entries[3].Hash || err != nil) {
		t.Errorf("AuditChainHash(4) = %q, %v; want %q", hash, err, entries[3].Hash)
	}
	for _, seq := range []int64{0, 6} {
		if hash, err := s.AuditChainHash(ctx, seq); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AuditChainHash(%d) = %q, %v; want ErrNotFound", seq, hash, err)
		}
	}

	// One entry's seq, by its AuditEvent's id.
	if seq, err := s.AuditChainSeq(ctx, "a4"); seq != 4 || err != nil {
		t.Errorf("AuditChainSeq(a4) = %d, %v; want 4", seq, err)
	}
	if seq, err := s.AuditChainSeq(ctx, "a9"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("AuditChainSeq(a9) = %d, %v; want ErrNotFound", seq, err)
	}

	stop := errors.New("stop")
	calls := 0
	err = s.AuditChainAfter(ctx, 0, func(audit.ChainEntry) error {
		calls++
		return stop
	})
	if err != stop || calls != 1 {
		t.Errorf("AuditChainAfter with a failing fn = %v after %d calls, want fn's error unchanged after 1", err, calls)
	}

	err = s.Write(ctx, func(tx store.Tx) error {
		return tx.AppendAudit("a3", auditBody("a3"), nil)
	})
	isErr(t, "AppendAudit of an id already in the chain", err, store.ErrConflict)
	err = s.Write(ctx, func(tx store.Tx) error {
		if err := appendAudit(tx, "a6"); err != nil {
			return err
		}
		return tx.AppendAudit("a6", auditBody("a6"), nil)
	})
	isErr(t, "AppendAudit of an id twice in one transaction", err, store.ErrConflict)
	expectChain(t, s, "a1", "a2", "a3", "a4", "a5")
}

// testAuditEventBodies: AuditEvents are stored packed (store.PackBody),
// whether the caller packed them (store.Resource.Pack) or not; every way
// of reading one (Read, VRead, History, Search, Tx.Read, the chain) gives
// back its JSON.
func testAuditEventBodies(t *testing.T, s store.Store) {
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		for _, id := range []string{"p1", "p2"} {
			res := &store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: auditBody(id)}
			if id == "p1" {
				res.Pack()
			}
			if err := tx.Put(res, nil); err != nil {
				return err
			}
			if err := tx.AppendAudit(id, auditBody(id), nil); err != nil {
				return err
			}
			got, err := tx.Read("AuditEvent", id)
			if err != nil || !bytes.Equal(got.Body, auditBody(id)) {
				t.Errorf("Tx.Read of AuditEvent %s in its transaction = %v, %v", id, got, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expectChain(t, s, "p1", "p2")
	check := func(how string, res *store.Resource, err error) {
		t.Helper()
		if err != nil || res == nil || !bytes.Equal(res.Body, auditBody(res.ID)) {
			t.Errorf("%s = %v, %v; want the AuditEvent's JSON", how, res, err)
		}
	}
	for _, id := range []string{"p1", "p2"} {
		res, err := s.Read(ctx, "AuditEvent", id)
		check("Read", res, err)
		res, err = s.VRead(ctx, "AuditEvent", id, 1)
		check("VRead", res, err)
	}
	hist, _, err := s.History(ctx, store.HistoryQuery{Type: "AuditEvent", Count: 10})
	if len(hist) != 2 {
		t.Errorf("History = %d versions, %v; want 2", len(hist), err)
	}
	for _, res := range hist {
		check("History", res, err)
	}
	pg, err := s.Search(ctx, &search.Query{Type: "AuditEvent", Count: 10, Total: true})
	if err != nil || len(pg.Matches) != 2 {
		t.Fatalf("Search = %v, %v; want 2 matches", pg, err)
	}
	for _, res := range pg.Matches {
		check("Search", res, nil)
	}
}

// testAuditChainPaging: a chain longer than one page of AuditChain's
// reads comes back whole and in order.
func testAuditChainPaging(t *testing.T, s store.Store) {
	const n = 2345
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("p%04d", i)
	}
	writeAudit(t, s, ids...)
	expectChain(t, s, ids...)
}

// testAuditChainRollback: a rolled-back transaction leaves no chain entry
// and its seq is not used up.
func testAuditChainRollback(t *testing.T, s store.Store) {
	ctx := context.Background()
	writeAudit(t, s, "r1")
	boom := errors.New("boom")
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := appendAudit(tx, "gone"); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Write = %v, want fn's error unchanged", err)
	}
	writeAudit(t, s, "r2")
	expectChain(t, s, "r1", "r2") // r2 has seq 2
	if _, err := s.Read(ctx, "AuditEvent", "gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Read of the rolled-back AuditEvent = %v, want ErrNotFound", err)
	}
}

// testAuditChainConcurrent: 8 writers of 25 transactions each append to
// one chain, retrying on ErrConflict as the gateway does; the chain has no
// gap, no fork and verifies.
func testAuditChainConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const writers, perWriter = 8, 25
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				id := fmt.Sprintf("w%d-%02d", w, i)
				for attempt := 0; ; attempt++ {
					err := s.Write(ctx, func(tx store.Tx) error { return appendAudit(tx, id) })
					if errors.Is(err, store.ErrConflict) && attempt < 100 {
						continue
					}
					if err != nil {
						errs[w] = fmt.Errorf("append %s: %w", id, err)
						return
					}
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
	entries, err := verifyChain(t, s)
	if err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
	if len(entries) != writers*perWriter {
		t.Errorf("chain has %d entries, want %d", len(entries), writers*perWriter)
	}
	seen := map[string]bool{}
	last := make([]string, writers) // each writer's entries come in its order
	for i, e := range entries {
		if seen[e.ID] {
			t.Errorf("%s appears twice", e.ID)
		}
		seen[e.ID] = true
		if e.Seq != int64(i+1) {
			t.Errorf("entry %d has seq %d, want %d", i, e.Seq, i+1)
		}
		var w int
		if _, err := fmt.Sscanf(e.ID, "w%d-", &w); err == nil && w < writers {
			if e.ID < last[w] {
				t.Errorf("%s comes after %s of the same writer", e.ID, last[w])
			}
			last[w] = e.ID
		}
	}
}

// testAuditChainServed: the chain walk reports, with each entry, what
// differs in how the store serves its AuditEvent from the version the
// chain holds (a version 2 current points at, a deletion, index rows other
// than its body's), and UnchainedAudits names an AuditEvent stored without
// a chain entry; an AuditEvent served as chained has no faults.
func testAuditChainServed(t *testing.T, s store.Store) {
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		for _, id := range []string{"sv1", "sv2", "sv3"} {
			if err := appendIndexed(tx, id, richAudit(id, "p1"), nil); err != nil {
				return err
			}
		}
		// Appended with index entries that are not its body's (none).
		if err := appendIndexed(tx, "sv4", richAudit("sv4", "p1"), []search.Entry{}); err != nil {
			return err
		}
		// A clinic's AuditEvent (its body names the tenant in source.site),
		// stored under its tenant (sv5) and under another (sv6: moved in
		// every row, which the chain's hash does not cover by itself).
		// An all-tenant client's request (site "*"): its whole record under
		// search.AllTenantsAudit (sv7) and moved to a clinic (sv8); clinic-a's
		// share of it under clinic-a (sv9) and moved to clinic-b (sv10).
		share, err := json.Marshal(audit.ShareDescription("clinic-a") + " (its data named here: ...)")
		if err != nil {
			return err
		}
		for _, ev := range []struct{ id, tenant, site, desc string }{
			{"sv5", "clinic-a", "clinic-a", `"read"`}, {"sv6", "clinic-b", "clinic-a", `"read"`},
			{"sv7", search.AllTenantsAudit, search.AllTenants, `"read"`}, {"sv8", "clinic-a", search.AllTenants, `"read"`},
			{"sv9", "clinic-a", search.AllTenants, string(share)}, {"sv10", "clinic-b", search.AllTenants, string(share)},
		} {
			id := ev.id
			body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"meta":{"versionId":"1"},"action":"R","outcomeDesc":%s,`+
				`"source":{"observer":{"display":"gw"},"site":%q}}`, id, ev.desc, ev.site)
			if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body, Tenant: ev.tenant}, nil); err != nil {
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
	if err := s.IndexAudits(ctx); err != nil {
		t.Fatal(err)
	}
	if ids, n, err := s.UnchainedAudits(ctx, 10); len(ids) != 0 || n != 0 || err != nil {
		t.Errorf("UnchainedAudits before = %v, %d, %v; want none", ids, n, err)
	}
	err = s.Write(ctx, func(tx store.Tx) error {
		changed := &store.Resource{Type: "AuditEvent", ID: "sv2", Version: 2, Body: richAudit("sv2", "p2")}
		if err := tx.Put(changed, nil); err != nil {
			return err
		}
		if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: "sv3", Version: 2, Deleted: true}, nil); err != nil {
			return err
		}
		return tx.Put(&store.Resource{Type: "AuditEvent", ID: "forged", Version: 1, Body: richAudit("forged", "p1")}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"sv1":  nil,
		"sv2":  {"current row names version 2", "1 other version(s)"},
		"sv3":  {"current row names version 2", "marks it deleted", "1 other version(s)"},
		"sv4":  {"search index rows differ", "idx_reference patient: 1 missing"},
		"sv5":  nil,
		"sv6":  {"stored under another tenant than its body names"},
		"sv7":  nil,
		"sv8":  {"stored under another tenant than its body names"},
		"sv9":  nil,
		"sv10": {"stored under another tenant than its body names"},
	}
	entries, broken := verifyChain(t, s)
	if broken != nil || len(entries) != 10 {
		t.Fatalf("chain = %d entries, %v; want 10 that verify", len(entries), broken)
	}
	for _, e := range entries {
		all := strings.Join(e.Faults, "; ")
		if want[e.ID] == nil && len(e.Faults) > 0 {
			t.Errorf("Faults of %s = %q, want none", e.ID, all)
		}
		for _, w := range want[e.ID] {
			if !strings.Contains(all, w) {
				t.Errorf("Faults of %s = %q, want one saying %q", e.ID, all, w)
			}
		}
	}
	if ids, n, err := s.UnchainedAudits(ctx, 10); !slices.Equal(ids, []string{"forged"}) || n != 1 || err != nil {
		t.Errorf("UnchainedAudits = %v, %d, %v; want [forged], 1", ids, n, err)
	}
	if ids, n, err := s.UnchainedAudits(ctx, 0); len(ids) != 0 || n != 1 || err != nil {
		t.Errorf("UnchainedAudits with limit 0 = %v, %d, %v; want none listed, 1 counted", ids, n, err)
	}
}
