package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The one-time values (store.Nonces): one row per key in nonces, with the
// unix millisecond until which the key counts as used.

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
	// (before the third argument, now): one row is affected then, none for
	// a key in use (the DO UPDATE's WHERE is false and nothing is
	// written). Where writers run in parallel, a concurrent use of the
	// same key waits for this one to commit, then evaluates the WHERE on
	// the row as committed (READ COMMITTED re-checks the latest version of
	// a conflicting row), so exactly one wins.
	sqlUseNonce = `INSERT INTO nonces (key, exp) VALUES (?, ?)
		ON CONFLICT (key) DO UPDATE SET exp = excluded.exp WHERE nonces.exp < ?`
	// sqlPurgeNonces deletes up to its second argument of the keys expired
	// before its first; with row locks it skips rows that a concurrent
	// UseNonce or purge has locked instead of waiting for them.
	sqlPurgeNonces = `DELETE FROM nonces WHERE key IN (
		SELECT key FROM nonces WHERE exp < ? ORDER BY exp LIMIT ?%s)`
)

// UseNonce implements store.Nonces with one INSERT ... ON CONFLICT
// statement that commits by itself (DB.Autocommit). Every purgeEvery-th
// call then deletes expired rows; a failed purge is left to the next one.
// A use is not run again when the connection breaks (it may have
// committed): the call fails with store.ErrUnavailable.
func (s *Store) UseNonce(ctx context.Context, key string, exp time.Time) (bool, error) {
	switch {
	case key == "":
		return false, fmt.Errorf("%s: use nonce: empty key", s.d.Name)
	case len(key) > store.MaxNonceKey:
		return false, fmt.Errorf("%s: use nonce: key of %d bytes, more than %d", s.d.Name, len(key), store.MaxNonceKey)
	}
	now := s.now().UnixMilli()
	var arg any = key
	if s.d.NonceKey != nil {
		arg = s.d.NonceKey(key)
	}
	var n int64
	err := s.db.Autocommit(ctx, func(c Conn) error {
		var err error
		if n, err = c.Exec(ctx, s.bind(sqlUseNonce), arg, ceilMS(exp), now); err != nil {
			return fmt.Errorf("%s: use nonce: %w", s.d.Name, s.err(ctx, err))
		}
		if s.nonce.Add(1)%purgeEvery == 0 {
			skip := ""
			if s.d.RowLocks {
				skip = " FOR UPDATE SKIP LOCKED"
			}
			_, _ = c.Exec(ctx, s.bind(fmt.Sprintf(sqlPurgeNonces, skip)), now, purgeBatch)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	return n == 1, nil
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
