package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// appendAudit puts AuditEvent id and appends it to the chain, as the
// gateway does.
func appendAudit(tx store.Tx, id string) error {
	body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q}`, id)
	if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
		return err
	}
	return tx.AppendAudit(id, body, nil)
}

// chainIDs walks the chain through a verifier and returns its ids.
func chainIDs(t *testing.T, s *Store) []string {
	t.Helper()
	var v audit.Verifier
	var ids []string
	err := s.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		ids = append(ids, e.ID)
		return v.Add(e)
	})
	if err != nil {
		t.Fatalf("chain: %v", err)
	}
	return ids
}

// TestAuditAppendsWait: appends from two stores (two processes) on one
// database wait for the chain head's row lock instead of failing: none
// of 200 concurrent appends sees ErrConflict, and the chain verifies.
func TestAuditAppendsWait(t *testing.T) {
	a, u := openFresh(t, Options{})
	b, err := Open(context.Background(), u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const writers, perWriter = 8, 25
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		s := a
		if w%2 == 1 {
			s = b
		}
		wg.Go(func() {
			for i := range perWriter {
				err := s.Write(context.Background(), func(tx store.Tx) error {
					return appendAudit(tx, fmt.Sprintf("w%d-%02d", w, i))
				})
				if err != nil {
					errs[w] = err
					return
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
	if ids := chainIDs(t, a); len(ids) != writers*perWriter {
		t.Errorf("chain has %d entries, want %d", len(ids), writers*perWriter)
	}
}

// TestChainLockOnlyAtCommit: a transaction that appended holds no lock
// on the chain head until it commits (appends are made at the commit),
// and a savepoint that appended and was rolled back leaves no entry:
// another process appends while the transaction is still open, and the
// transaction's own entry follows it.
func TestChainLockOnlyAtCommit(t *testing.T) {
	ctx := context.Background()
	a, u := openFresh(t, Options{})
	b, err := Open(ctx, u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	boom := errors.New("boom")
	err = a.Write(ctx, func(tx store.Tx) error {
		if err := appendAudit(tx, "mine"); err != nil {
			return err
		}
		if err := tx.Savepoint(func() error {
			if err := appendAudit(tx, "undone"); err != nil {
				return err
			}
			return boom
		}); err != boom {
			return fmt.Errorf("Savepoint = %v, want boom", err)
		}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := b.Write(wctx, func(tx store.Tx) error { return appendAudit(tx, "other") }); err != nil {
			return fmt.Errorf("append by another process while the transaction is open: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if ids := chainIDs(t, a); fmt.Sprint(ids) != "[other mine]" {
		t.Errorf("chain = %v, want [other mine]", ids)
	}
}
