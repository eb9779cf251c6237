package postgres

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestProbeWriteFindsLockedTables: while another session holds a lock on a
// table requests write (a long ALTER TABLE, VACUUM FULL, a DBA's LOCK
// TABLE), the write probe fails within its lock timeout with
// store.CauseLocked, where Ping's SELECT 1 still answers; once the lock is
// released the probe passes, and it wrote nothing.
func TestProbeWriteFindsLockedTables(t *testing.T) {
	s, u := openFresh(t, Options{})
	ctx := context.Background()
	if err := s.ProbeWrite(ctx); err != nil {
		t.Fatalf("ProbeWrite on an idle database = %v", err)
	}
	for _, table := range []string{"resources", "ledger", "outbox"} {
		t.Run(table, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, u)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatal(err)
			}
			if err := s.Ping(ctx); err != nil {
				t.Errorf("Ping = %v, want nil (reads go on)", err)
			}
			if err := s.ProbeWrite(ctx); store.UnavailableCause(err) != store.CauseLocked {
				t.Errorf("ProbeWrite with %s locked = %v, want unavailable (locked)", table, err)
			}
			_ = tx.Rollback(ctx)
			if err := s.ProbeWrite(ctx); err != nil {
				t.Errorf("ProbeWrite after the lock = %v, want nil", err)
			}
		})
	}
}
