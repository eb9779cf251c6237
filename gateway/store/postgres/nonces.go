package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The one-time values (store.Nonces): one row per key in nonces, with the
// unix millisecond until which the key counts as used. Keys are BYTEA, so
// any bytes are kept exactly (text would fold NUL bytes and invalid UTF-8
// into U+FFFD, and make distinct keys one).

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
	// (before $3, now): one row is affected then, none for a key in use.
	// A concurrent use of the same key waits for this one to commit, then
	// evaluates the WHERE on the row as committed (READ COMMITTED re-checks
	// the latest version of a conflicting row), so exactly one wins.
	sqlUseNonce = `INSERT INTO nonces (key, exp) VALUES ($1, $2)
		ON CONFLICT (key) DO UPDATE SET exp = excluded.exp WHERE nonces.exp < $3`
	// sqlPurgeNonces skips rows that a concurrent UseNonce or purge has
	// locked instead of waiting for them.
	sqlPurgeNonces = `DELETE FROM nonces WHERE key IN (
		SELECT key FROM nonces WHERE exp < $1 ORDER BY exp LIMIT $2 FOR UPDATE SKIP LOCKED)`
)

// UseNonce implements store.Nonces with one INSERT ... ON CONFLICT
// statement (its own transaction). Every purgeEvery-th call then deletes
// expired rows; a failed purge is left to the next one. A use is not
// retried when the connection breaks (it may have committed): the call
// fails with store.ErrUnavailable.
func (s *Store) UseNonce(ctx context.Context, key string, exp time.Time) (bool, error) {
	switch {
	case key == "":
		return false, errors.New("postgres: use nonce: empty key")
	case len(key) > store.MaxNonceKey:
		return false, fmt.Errorf("postgres: use nonce: key of %d bytes, more than %d", len(key), store.MaxNonceKey)
	}
	now := time.Now().UnixMilli()
	c, err := s.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer c.Release()
	tag, err := c.Exec(ctx, sqlUseNonce, []byte(key), ceilMS(exp), now)
	if err != nil {
		if lostConn(ctx, err) {
			s.pool.Reset() // the others are likely gone too
		}
		return false, fmt.Errorf("postgres: use nonce: %w", mapErr(ctx, err))
	}
	if s.nonceCalls.Add(1)%purgeEvery == 0 {
		_, _ = c.Exec(ctx, sqlPurgeNonces, now, purgeBatch)
	}
	return tag.RowsAffected() == 1, nil
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
