package storetest

import (
	"bytes"
	"context"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testDeliveryIDKeyShared: two processes on one database read the same
// delivery id key (the ids they show agree), 32 bytes, not zeros.
func testDeliveryIDKeyShared(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	ka, err := a.DeliveryIDKey(ctx)
	if err != nil {
		t.Fatalf("DeliveryIDKey through a: %v", err)
	}
	kb, err := b.DeliveryIDKey(ctx)
	if err != nil {
		t.Fatalf("DeliveryIDKey through b: %v", err)
	}
	if len(ka) != 32 || bytes.Equal(ka, make([]byte, 32)) {
		t.Errorf("DeliveryIDKey = %d bytes (zero: %t), want 32 random bytes", len(ka), bytes.Equal(ka, make([]byte, 32)))
	}
	if !bytes.Equal(ka, kb) {
		t.Error("DeliveryIDKey differs between two stores on one database, want one key per database")
	}
}

// testDeliveryIDKey: a new database has its delivery id key.
func testDeliveryIDKey(t *testing.T, s store.Store) { MigratedDeliveryIDKey(t, s) }

// MigratedDeliveryIDKey checks s, opened on a database of the schema
// before the deployment keys (SQLite's 15, PostgreSQL's 17) or a new one:
// it has its delivery id key, 32 bytes. It returns the key.
func MigratedDeliveryIDKey(t *testing.T, s store.Store) []byte {
	t.Helper()
	k, err := s.DeliveryIDKey(context.Background())
	if err != nil || len(k) != 32 {
		t.Fatalf("DeliveryIDKey = %d bytes, %v; want 32", len(k), err)
	}
	return k
}
