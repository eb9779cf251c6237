// Package sqlstore is the store.Store of both SQL backends, SQLite
// (gateway/store/sqlite) and PostgreSQL (gateway/store/postgres): their
// statements and logic are written here once. A backend supplies a DB, its
// connections and transactions, and a Dialect, the few places where its
// SQL differs (placeholders, row locks, arrays, error classes); it keeps
// its connection setup, its schema (its migrations, which Migrate runs)
// and what is its own (SQLite's planner statistics, PostgreSQL's ANALYZE
// after bulk writes). A backend's Store embeds this package's Store and
// adds Close.
//
// Both schemas have the same tables and columns: resources holds every
// version; current the latest version of each resource; idx_token,
// idx_string, idx_date, idx_reference, idx_quantity and idx_uri the search
// index entries of the current, non-deleted versions; conditional_keys and
// ledger the conditional-create keys and the ingest ledger; outbox and
// delivery_attempts the transactional outbox; audit_chain the audit hash
// chain (seq, AuditEvent id, hash) and audit_chain_head, one row, its last
// seq and hash; nonces the one-time values (key, expiry). Times are stored
// as unix milliseconds (UTC).
//
// Tenants: resources, current and outbox carry a tenant column. A resource
// is keyed by type and id across tenants, and current holds the tenant of
// its latest version. A search restricts the current rows to the query's
// tenant in every statement it runs (matches, total, _include,
// _revinclude); the index tables carry no tenant, since every index
// condition is tied to a current row's type and id. History restricts the
// versions by their own tenant.
//
// Writes: Tx.Put sets a zero res.LastUpdated to now and truncates it to the
// millisecond (in res, so the caller sees what is stored); a new version
// of an existing resource releases the conditional keys it held (the
// caller claims them again). PutLedger does the same for a zero Received,
// Enqueue for the items' times. "Now" is the Store's clock (New's now), as
// it is for nonce expiry and date "ap" searches. A version is the primary
// key of resources, a conditional key that of conditional_keys, a native
// record version that of ledger: two writers racing for one of them are
// serialised by the database, and the second fails with store.ErrConflict.
// ClaimKey never fails a statement (INSERT ... ON CONFLICT DO NOTHING),
// so the transaction stays usable after its ErrConflict.
//
// Serialisation: without Dialect.RowLocks every write transaction holds
// the database's write lock from its start, so writers never overlap.
// With RowLocks, writers run in parallel and take locks where they must
// not: AppendAudit locks the chain head row (SELECT ... FOR UPDATE) until
// the transaction ends, so each append takes the next seq after the
// previous one committed, and a rolled-back append, or a rolled-back
// savepoint around it, releases the row unchanged; Complete locks the
// item's row, so a late completion racing a new claim after the lease
// expired is applied once; Enqueue takes the Dialect.Lock of each item's
// destination and order key before inserting it, so the items of one
// source record get their ids in commit order (an amendment committed
// after its original never gets the smaller id), and Claim and Replay
// take the lock of the destination, so concurrent claims of one
// destination run one after the other and never hand out an item twice.
// Tx.Savepoint uses SAVEPOINT, ROLLBACK TO and RELEASE.
//
// Nonces: UseNonce is one INSERT ... ON CONFLICT DO UPDATE ... WHERE the
// row expired, a statement of its own, so concurrent uses of a key, from
// any process, have one winner; every purgeEvery-th use of a Store then
// purges up to purgeBatch expired rows.
//
// Search semantics beyond search.Query's documentation:
//   - string values are compared in the form search.Normalize gives (the
//     extractor's rule, so entries and query values cannot drift apart);
//     Put normalises Entry.Norm and Entry.Text again (it is idempotent).
//     Token :text matches when the normalised Entry.Text contains the
//     normalised value.
//   - date "ap" matches entries overlapping the value's range widened on
//     both sides by 10% of the distance between now and the value, and at
//     least one day.
//   - number/quantity "ap" matches within 10% of the value (at least its
//     Precision); "sa"/"eb" mean "gt"/"lt".
//   - a date Entry with a zero High is open-ended (no end); a zero Low has
//     no start. A search Value with a zero High is an instant (High = Low).
//   - sorting by a parameter other than _id/_lastUpdated uses the date
//     index entries of that parameter.
//   - Include.Iterate is ignored (one level of _include/_revinclude); an
//     include Param "*" follows every reference parameter.
//   - chained clauses and unknown modifiers are rejected with an error.
//   - Count <= 0 means 50, for Search and History alike.
package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Store is a store.Store on a backend's DB in its Dialect. A backend
// embeds it and adds Close.
type Store struct {
	db  DB
	d   *Dialect
	now func() time.Time

	index []indexSQL    // the statements of each of indexTables
	bound sync.Map      // statement with "?" -> in the dialect's placeholders
	qmark bool          // the dialect's placeholder is "?"
	nonce atomic.Uint64 // UseNonce calls, timing the purges
}

// New returns the Store of db in dialect d, whose clock is now (nil:
// time.Now). It does no I/O.
func New(db DB, d *Dialect, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	s := &Store{db: db, d: d, now: now, qmark: d.Placeholder(1) == "?"}
	for _, t := range indexTables {
		s.index = append(s.index, indexSQL{ins: s.bind(t.insert(d.Arrays)), del: s.bind(t.delete())})
	}
	return s
}

// WriteStatements are the statements a Write runs most (those of Put), for
// a backend that prepares statements once (SQLite).
func (s *Store) WriteStatements() []string {
	stmts := []string{s.bind(sqlCurVersion), s.bind(sqlInsResource), s.bind(sqlUpsertCurrent), s.bind(sqlDelKeys)}
	for _, x := range s.index {
		stmts = append(stmts, x.ins, x.del)
	}
	return stmts
}

// Write implements store.Store: fn runs in one transaction of the DB,
// which commits when fn returns nil and rolls back otherwise (fn's error
// is returned unchanged, as is an error of Begin). fn must not call Write
// itself and must not use the Tx after returning.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) error {
	return s.write(ctx, func(t *tx) error { return fn(t) })
}

func (s *Store) write(ctx context.Context, fn func(*tx) error) error {
	c, err := s.db.Begin(ctx)
	if err != nil {
		return err
	}
	t := &tx{ctx: ctx, c: c, s: s}
	done := false
	defer func() {
		if !done {
			c.Rollback(ctx) // fn panicked
		}
	}()
	if err := fn(t); err != nil {
		done = true
		c.Rollback(ctx)
		return err
	}
	done = true
	if err := c.Commit(ctx); err != nil {
		return fmt.Errorf("%s: commit: %w", s.d.Name, s.err(ctx, err))
	}
	s.db.Committed(ctx, t.puts)
	return nil
}

// Ping implements store.Store: the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	return s.db.Read(ctx, func(c Conn) error {
		var one int
		if err := c.QueryRow(ctx, `SELECT 1`).Scan(&one); err != nil {
			return fmt.Errorf("%s: ping: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	})
}

// bind is q, a statement with "?" placeholders made of constants, in the
// dialect's placeholders. The results are kept: there is one for each of
// the package's statements.
func (s *Store) bind(q string) string {
	if s.qmark {
		return q
	}
	if b, ok := s.bound.Load(q); ok {
		return b.(string)
	}
	b := bind(s.d, q)
	s.bound.Store(q, b)
	return b
}

// bind is q with each "?" replaced by d's placeholder of its argument.
func bind(d *Dialect, q string) string {
	var sb strings.Builder
	n := 0
	for {
		i := strings.IndexByte(q, '?')
		if i < 0 {
			sb.WriteString(q)
			return sb.String()
		}
		n++
		sb.WriteString(q[:i])
		sb.WriteString(d.Placeholder(n))
		q = q[i+1:]
	}
}

// builder is a Builder for a statement that is not a search's.
func (s *Store) builder() *Builder { return NewBuilder(s.d, "", time.Time{}) }

// text makes v storable in a text column (see Dialect.Text).
func (s *Store) text(v string) string {
	if s.d.Text == nil {
		return v
	}
	return s.d.Text(v)
}

// err classifies a driver error (see Dialect.Err).
func (s *Store) err(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	return s.d.Err(ctx, err)
}

// forUpdate is the locking clause of a SELECT of rows the transaction goes
// on to update (see Dialect.RowLocks).
func (s *Store) forUpdate() string {
	if s.d.RowLocks {
		return " FOR UPDATE"
	}
	return ""
}
