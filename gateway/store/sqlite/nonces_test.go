package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestStoreShared runs the tests of two stores (two processes) on one
// database file.
func TestStoreShared(t *testing.T) {
	storetest.RunShared(t, func(t *testing.T) (store.Store, store.Store) {
		path := filepath.Join(t.TempDir(), "fhir.db")
		a, err := Open(context.Background(), path, Options{})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		b, err := Open(context.Background(), path, Options{})
		if err != nil {
			a.Close()
			t.Fatalf("Open again: %v", err)
		}
		return a, b
	})
}

func TestNoncePurge(t *testing.T) {
	s, _ := openTemp(t, Options{})
	defer s.Close()
	storetest.NoncePurge(t, s, func(t *testing.T) int {
		var n int
		if err := s.r.QueryRow(`SELECT COUNT(*) FROM nonces`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	})
}
