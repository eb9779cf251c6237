package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

var _ store.WriteProber = (*Store)(nil)

// probeTables are the tables a request writes: its resources and their
// index rows, conditional keys, the ledger, the outbox and the audit
// chain. A lock on any of them that conflicts with a write (a long ALTER
// TABLE, VACUUM FULL, CLUSTER, CREATE INDEX, LOCK TABLE) makes every
// request that writes it wait.
var probeTables = []string{"resources", "current", "idx_token", "idx_string", "idx_date", "idx_reference",
	"idx_quantity", "idx_uri", "conditional_keys", "ledger", "outbox", "audit_chain", "audit_chain_head"}

// Bounds of the write probe: a lock not granted within probeLockWait is
// "locked"; a probe statement that runs longer than probeStatementWait is
// a statement timeout.
const (
	probeLockWait      = "1s"
	probeStatementWait = "2s"
)

// ProbeWrite implements store.WriteProber: a write could be taken now. In
// a read-write transaction (refused by a hot standby: read-only), with a
// short lock_timeout and statement_timeout of its own, it takes the lock
// every INSERT and UPDATE takes (ROW EXCLUSIVE) on the tables a request
// writes, and rolls back: it writes nothing, and conflicts only with the
// locks that would stall writes (store.CauseLocked when one is held past
// probeLockWait). A write of the same rows by a concurrent request does
// not conflict with it.
func (s *Store) ProbeWrite(ctx context.Context) error {
	pc, err := s.acquire(ctx)
	if err != nil {
		return fmt.Errorf("postgres: probe: %w", err)
	}
	defer pc.Release()
	ptx, err := pc.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite})
	if err != nil {
		return fmt.Errorf("postgres: probe: begin: %w", mapErr(ctx, err))
	}
	defer rollback(ctx, ptx)
	for _, stmt := range []string{
		`SET LOCAL lock_timeout = '` + probeLockWait + `'`,
		`SET LOCAL statement_timeout = '` + probeStatementWait + `'`,
		`LOCK TABLE ` + strings.Join(probeTables, ", ") + ` IN ROW EXCLUSIVE MODE`,
	} {
		if _, err := ptx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("postgres: probe: %w", mapErr(ctx, err))
		}
	}
	return nil
}
