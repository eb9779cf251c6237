package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// entryWrites makes, in tx, one of each kind of write a batch entry can
// make, all named after n: Patient/<n> with an index entry, the
// conditional key <n>, a ledger entry for record <n>, an outbox item for
// record <n> and AuditEvent/audit-<n> appended to the chain.
func entryWrites(tx store.Tx, n string) error {
	if err := tx.Put(res("Patient", n, 1, base), []search.Entry{tok("identifier", "urn:sp", n)}); err != nil {
		return err
	}
	if err := tx.ClaimKey("key-"+n, "Patient", n); err != nil {
		return err
	}
	if err := tx.PutLedger(&store.Ledger{Source: "src", Kind: "session", RecordID: n, Version: "1", ContentHash: "h", Received: base}); err != nil {
		return err
	}
	if err := tx.Enqueue(item("ehr", n, "p-"+n)); err != nil {
		return err
	}
	return appendAudit(tx, "audit-"+n)
}

// expectEntry checks, inside a transaction and after it, that the writes
// of entryWrites(n) are all there (kept) or all gone.
func expectEntry(t *testing.T, s store.Store, tx store.Tx, n string, kept bool) {
	t.Helper()
	want := store.ErrNotFound
	if kept {
		want = nil
	}
	check := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, want) { // errors.Is(err, nil) is err == nil
			t.Errorf("%s of entry %s: got error %v, want %v", what, n, err, want)
		}
	}
	if tx != nil {
		_, err := tx.Read("Patient", n)
		check("Tx.Read", err)
		_, _, err = tx.KeyOwner("key-" + n)
		check("Tx.KeyOwner", err)
		_, err = tx.Ledger("src", "session", n, "1")
		check("Tx.Ledger", err)
		pg, err := tx.Search(query("Patient", clause("identifier", search.TypeToken, "", vSys("urn:sp", n))))
		if err != nil || (len(pg.Matches) == 1) != kept {
			t.Errorf("Tx.Search of entry %s: %v %v, kept %v", n, pg, err, kept)
		}
		return
	}
	ctx := context.Background()
	_, err := s.Read(ctx, "Patient", n)
	check("Read", err)
	_, err = s.Read(ctx, "AuditEvent", "audit-"+n)
	check("Read AuditEvent", err)
	expect(t, s, "search entry "+n, query("Patient", clause("identifier", search.TypeToken, "", vSys("urn:sp", n))), keptIDs(kept, n)...)
	err = s.Write(ctx, func(tx store.Tx) error {
		_, _, err := tx.KeyOwner("key-" + n)
		check("KeyOwner", err)
		_, err = tx.Ledger("src", "session", n, "1")
		check("Ledger", err)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	items, err := s.Deliveries(ctx, store.DeliveryFilter{RecordID: n})
	if err != nil || len(items) != len(keptIDs(kept, n)) {
		t.Errorf("Deliveries of entry %s: %d items %v, kept %v", n, len(items), err, kept)
	}
}

func keptIDs(kept bool, n string) []string {
	if kept {
		return []string{n}
	}
	return nil
}

// testSavepoint: a failed savepoint's writes of every kind are undone while
// the transaction's other writes, and a successful savepoint's, commit; a
// failed statement inside a savepoint leaves the transaction usable;
// savepoints nest.
func testSavepoint(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, res("Patient", "existing", 1, base))
	boom := errors.New("boom")
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := entryWrites(tx, "outer1"); err != nil {
			return err
		}
		// A failed entry: every kind of write, then fn fails.
		err := tx.Savepoint(func() error {
			if err := entryWrites(tx, "failed"); err != nil {
				return err
			}
			return boom
		})
		if err != boom {
			return fmt.Errorf("Savepoint(failing fn) = %v, want fn's error unchanged", err)
		}
		expectEntry(t, s, tx, "failed", false)
		// A failed statement (a version conflict on a unique key) inside a
		// savepoint: fn's error comes back, the transaction goes on.
		err = tx.Savepoint(func() error {
			if err := entryWrites(tx, "conflicted"); err != nil {
				return err
			}
			return tx.Put(res("Patient", "existing", 1, base), nil)
		})
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("Savepoint(conflicting Put) = %v, want ErrConflict", err)
		}
		expectEntry(t, s, tx, "conflicted", false)
		// A successful entry, with a failed one nested inside.
		err = tx.Savepoint(func() error {
			if err := entryWrites(tx, "kept"); err != nil {
				return err
			}
			if err := tx.Savepoint(func() error {
				if err := entryWrites(tx, "inner"); err != nil {
					return err
				}
				return boom
			}); err != boom {
				return fmt.Errorf("nested Savepoint = %v, want fn's error unchanged", err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("Savepoint(succeeding fn) = %v", err)
		}
		expectEntry(t, s, tx, "kept", true)
		expectEntry(t, s, tx, "inner", false)
		return entryWrites(tx, "outer2")
	})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	for n, kept := range map[string]bool{"outer1": true, "failed": false, "conflicted": false, "kept": true, "inner": false, "outer2": true} {
		expectEntry(t, s, nil, n, kept)
	}
	// The undone appends used up no seq.
	expectChain(t, s, "audit-outer1", "audit-kept", "audit-outer2")
}

// testFlushFailed: a flush whose statement failed (a version 1 of a
// resource that exists, between two new ones in one multi-row insert)
// fails the transaction. An fn that goes on after the error and returns
// nil commits nothing: not the row inserted before the failing one (on
// SQLite a multi-row insert keeps it, see sqlstore.Dialect.InsertRows),
// nor the writes buffered with it. A savepoint rolled back after such a
// flush undoes it, and the transaction goes on and commits.
func testFlushFailed(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, res("Patient", "existing", 1, base))
	code := func(n string) search.Entry { return tok("code", "urn:ff", n) }
	find := func(n string) *search.Query {
		return query("Basic", clause("code", search.TypeToken, "", vSys("urn:ff", n)))
	}
	failing := func(tx store.Tx, a, c string) error {
		for _, r := range []*store.Resource{res("Basic", a, 1, base), res("Patient", "existing", 1, base), res("Basic", c, 1, base)} {
			if err := tx.Put(r, []search.Entry{code(r.ID)}); err != nil {
				return fmt.Errorf("Put %s/%s: %v, want the conflict found by the flush", r.Type, r.ID, err)
			}
		}
		_, err := tx.Search(find(a)) // flushes the three
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("Search after a conflicting Put = %v, want ErrConflict", err)
		}
		return nil // as if nothing had failed
	}
	var fnErr error
	err := s.Write(ctx, func(tx store.Tx) error {
		fnErr = failing(tx, "ff-a", "ff-c")
		return nil
	})
	if fnErr != nil {
		t.Fatal(fnErr)
	}
	if err == nil {
		t.Error("Write whose flush failed = nil, want the flush's error")
	}
	err = s.Write(ctx, func(tx store.Tx) error {
		err := tx.Savepoint(func() error {
			if err := failing(tx, "ff-sa", "ff-sc"); err != nil {
				return fmt.Errorf("%w (not a flush error)", err)
			}
			return nil
		})
		if !errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("Savepoint whose flush failed = %v, want ErrConflict", err)
		}
		return tx.Put(res("Basic", "ff-d", 1, base), []search.Entry{code("ff-d")})
	})
	if err != nil {
		t.Fatalf("Write after a rolled back savepoint: %v", err)
	}
	for _, n := range []string{"ff-a", "ff-c", "ff-sa", "ff-sc"} {
		if _, err := s.VRead(ctx, "Basic", n, 1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("VRead Basic/%s/_history/1 = %v, want ErrNotFound: nothing of a failed flush commits", n, err)
		}
		expect(t, s, "Basic "+n, find(n))
	}
	expect(t, s, "Basic ff-d", find("ff-d"), "ff-d")
	if r, err := s.Read(ctx, "Patient", "existing"); err != nil || r.Version != 1 {
		t.Errorf("Patient/existing = %v %v, want version 1 unchanged", r, err)
	}
}
