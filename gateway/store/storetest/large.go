package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// largeN is how many resources the large transactions of these tests put:
// several times what a store may send to the database ahead of the commit
// (PostgreSQL's flushing ahead, every 64 versions), so that some are sent
// while later ones are still being put.
const largeN = 300

// putLarge puts version 1 of Basic/<prefix>-0 ... -<n-1>, each with the
// code urn:large|<prefix>, and version 1 of Basic/<taken> after the
// tenth when taken is not "": among the first 64, which a store that
// flushes ahead sends before the others are put.
func putLarge(tx store.Tx, prefix string, n int, taken string) error {
	for i := range n {
		if i == 10 && taken != "" {
			if err := tx.Put(res("Basic", taken, 1, base), []search.Entry{tok("code", "urn:large", prefix)}); err != nil {
				return err
			}
		}
		if err := tx.Put(res("Basic", fmt.Sprintf("%s-%d", prefix, i), 1, base),
			[]search.Entry{tok("code", "urn:large", prefix)}); err != nil {
			return err
		}
	}
	return nil
}

// largeCode is the search for the resources putLarge(prefix) put.
func largeCode(prefix string) *search.Query {
	q := query("Basic", clause("code", search.TypeToken, "", vSys("urn:large", prefix)))
	q.Total = true
	return q
}

// testLargeTransaction: a transaction of many resources reads and searches
// what it put (some of it already sent to the database, some still
// buffered) and commits it whole; one of them a version 1 of a resource
// that exists, found taken wherever the store sends it, fails the
// transaction with store.ErrConflict and leaves none of them, alone and
// queued with other writes (which commit).
func testLargeTransaction(t *testing.T, s store.Store) {
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := putLarge(tx, "big", largeN, ""); err != nil {
			return err
		}
		for _, id := range []string{"big-0", "big-150", fmt.Sprintf("big-%d", largeN-1)} {
			if r, err := tx.Read("Basic", id); err != nil || r.Version != 1 {
				return fmt.Errorf("read Basic/%s in the transaction: %+v, %w", id, r, err)
			}
		}
		pg, err := tx.Search(largeCode("big"))
		if err != nil || pg.Total != largeN {
			return fmt.Errorf("search in the transaction: %+v, %w; want %d", pg, err, largeN)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("large transaction: %v", err)
	}
	if pg, err := s.Search(ctx, largeCode("big")); err != nil || pg.Total != largeN {
		t.Fatalf("after the commit: %+v, %v; want %d matches", pg, err, largeN)
	}

	if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(res("Basic", "taken", 1, base), nil) }); err != nil {
		t.Fatal(err)
	}
	// Alone: the conflict surfaces at the commit, or at the first use of
	// the transaction after the part that holds it was sent (here the
	// Read, which then reports it).
	err = s.Write(ctx, func(tx store.Tx) error {
		if err := putLarge(tx, "lost", largeN, "taken"); err != nil {
			return err
		}
		if _, err := tx.Read("Basic", "absent"); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("a large transaction with a taken version 1: %v; want ErrConflict", err)
	}
	expectNoLarge(t, s, "lost")

	// Queued with other writes, which share its transaction until it fails.
	const n = 8
	const large = 3
	errs := make([]error, n)
	QueuedTogether(t, s, n, func(i int) {
		errs[i] = s.Write(ctx, func(tx store.Tx) error {
			if i == large {
				return putLarge(tx, "queued", largeN, "taken")
			}
			return entryWrites(tx, fmt.Sprint("lq", i))
		})
	})
	for i := range n {
		switch {
		case i == large:
			if !errors.Is(errs[i], store.ErrConflict) {
				t.Errorf("the large write: %v; want ErrConflict", errs[i])
			}
		case errs[i] != nil:
			t.Errorf("write %d: %v; want committed", i, errs[i])
		default:
			expectEntry(t, s, nil, fmt.Sprint("lq", i), true)
		}
	}
	expectNoLarge(t, s, "queued")
	if r, err := s.Read(ctx, "Basic", "taken"); err != nil || r.Version != 1 {
		t.Errorf("Basic/taken: %+v, %v; want its version 1 only", r, err)
	}
}

// expectNoLarge checks that nothing putLarge(prefix) put was committed.
func expectNoLarge(t *testing.T, s store.Store, prefix string) {
	t.Helper()
	ctx := context.Background()
	if pg, err := s.Search(ctx, largeCode(prefix)); err != nil || pg.Total != 0 {
		t.Errorf("%s: %+v, %v; want no match", prefix, pg, err)
	}
	for _, i := range []int{0, largeN / 2, largeN - 1} {
		if _, err := s.Read(ctx, "Basic", fmt.Sprintf("%s-%d", prefix, i)); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Basic/%s-%d: %v; want ErrNotFound", prefix, i, err)
		}
	}
}
