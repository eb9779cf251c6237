package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The one-time values (store.Nonces): one row per key in nonces, with the
// unix millisecond until which the key counts as used.

var _ store.Nonces = (*Store)(nil)

// Expired nonces are deleted by every purgeEvery-th UseNonce of a Store, at
// most purgeBatch at a time (through nonces_exp, so a purge costs the same
// however large the table): a call inserts one row, a purge can delete
// many, so the table stays near the number of unexpired keys.
const (
	purgeEvery = 64
	purgeBatch = 1000
)

const (
	// sqlUseNonce inserts the key, or takes over its row when that expired
	// (before now, the third argument): changes() is 1 then, 0 for a key in use (the DO
	// UPDATE's WHERE is false and nothing is written).
	sqlUseNonce = `INSERT INTO nonces (key, exp) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET exp = excluded.exp WHERE nonces.exp < ?`
	sqlPurgeNonces = `DELETE FROM nonces WHERE key IN (
		SELECT key FROM nonces WHERE exp < ? ORDER BY exp LIMIT ?)`
)

// UseNonce implements store.Nonces in a write transaction (BEGIN
// IMMEDIATE): uses of the same key, from this process or another, are
// serialised by SQLite's write lock, like writes. It waits for a Write in
// progress, so it must not be called from inside one. A database locked
// longer than the busy timeout is store.ErrUnavailable.
func (s *Store) UseNonce(ctx context.Context, key string, exp time.Time) (bool, error) {
	if err := checkNonceKey(key); err != nil {
		return false, err
	}
	now := time.Now().UnixMilli()
	stx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: use nonce: begin: %w", mapErr(err))
	}
	defer func() { _ = stx.Rollback() }() // after Commit: sql.ErrTxDone
	if s.nonceCalls.Add(1)%purgeEvery == 0 {
		if _, err := stx.ExecContext(ctx, sqlPurgeNonces, now, purgeBatch); err != nil {
			return false, fmt.Errorf("sqlite: purge nonces: %w", mapErr(err))
		}
	}
	r, err := stx.ExecContext(ctx, sqlUseNonce, key, ceilMS(exp), now)
	if err != nil {
		return false, fmt.Errorf("sqlite: use nonce: %w", mapErr(err))
	}
	n, err := r.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: use nonce: %w", mapErr(err))
	}
	if err := stx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: use nonce: commit: %w", mapErr(err))
	}
	return n == 1, nil
}

// checkNonceKey refuses keys UseNonce does not take.
func checkNonceKey(key string) error {
	switch {
	case key == "":
		return errors.New("sqlite: use nonce: empty key")
	case len(key) > store.MaxNonceKey:
		return fmt.Errorf("sqlite: use nonce: key of %d bytes, more than %d", len(key), store.MaxNonceKey)
	}
	return nil
}

// ceilMS is t in unix milliseconds, rounded up: a key is never forgotten
// before its exp.
func ceilMS(t time.Time) int64 {
	ms := t.UnixMilli()
	if t.Sub(time.UnixMilli(ms)) > 0 {
		ms++
	}
	return ms
}
