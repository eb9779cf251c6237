package postgres

import (
	"context"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestStoreShared runs the tests of two stores (two processes) on one
// database.
func TestStoreShared(t *testing.T) {
	testURL(t)
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		u := freshDB(t)
		a, err := Open(context.Background(), u, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		b, err := Open(context.Background(), u, Options{})
		if err != nil {
			a.Close()
			t.Fatalf("Open again: %v", err)
		}
		return a, b
	})
}

func TestNoncePurge(t *testing.T) {
	s, _ := openFresh(t, Options{})
	storetest.NoncePurge(t, s, func(t *testing.T) int {
		var n int
		if err := s.pool.QueryRow(context.Background(), `SELECT COUNT(*) FROM nonces`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	})
}
