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
// Enqueue for the items' times. "Now" is the Store's clock (Config.Now), as
// it is for nonce expiry and date "ap" searches. A version is the primary
// key of resources, a conditional key that of conditional_keys, a native
// record version that of ledger: two writers racing for one of them are
// serialised by the database, and the second fails with store.ErrConflict.
// ClaimKey never fails a statement (INSERT ... ON CONFLICT DO NOTHING, in
// the flush), so the transaction stays usable after its ErrConflict. Put buffers what
// it writes and a flush sends it many rows to a statement (buffer.go);
// the index entries of _id and _lastUpdated are not stored, as every
// search and sort on them reads the current row. The audit chain entries
// of a transaction are appended when it commits (AppendAudit).
//
// Group commit: every write transaction is a request in one queue,
// served oldest first; concurrent requests share a database transaction
// and its commit, each in a savepoint of its own (commit.go).
//
// Serialisation: without Dialect.RowLocks every write transaction holds
// the database's write lock from its start, so writers never overlap.
// With RowLocks, writers (the lanes of several processes, and of one
// process when Config.Lanes > 1) run in parallel and take locks where
// they must not: the chain append at commit locks the chain head row
// (SELECT ... FOR UPDATE) until the transaction ends, so each
// transaction's entries take the seqs after those of the previous one
// that committed; Complete locks the item's row, so a late completion
// racing a new claim after the lease expired is applied once; Enqueue
// takes the Dialect.Lock of each item's destination and order key before
// inserting it, so the items of one source record get their ids in commit
// order (an amendment committed after its original never gets the smaller
// id), and Claim and Replay take the lock of the destination, so
// concurrent claims of one destination run one after the other and never
// hand out an item twice. Tx.Savepoint uses SAVEPOINT, ROLLBACK TO and
// RELEASE.
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
//   - number/quantity values are ranges: the search value's is [Number -
//     Precision, Number + Precision), an entry's its Number, or with a
//     Comparator the range open at one end it states; the prefixes compare
//     them as quantityCond says. "ap" meets the value ± 10% (at least its
//     Precision).
//   - a date Entry with a zero High is open-ended (no end); a zero Low has
//     no start. A search Value with a zero High is an instant (High = Low).
//   - sorting by a parameter other than _id/_lastUpdated uses the date
//     index entries of that parameter.
//   - Include.Iterate is ignored by Search (one level of _include and
//     _revinclude, from the matches): the engine runs the further rounds
//     with Include; an include Param "*" follows every reference
//     parameter.
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
// embeds it and adds Close, which calls CloseWrites first.
type Store struct {
	db  DB
	d   *Dialect
	now func() time.Time
	w   *committer
	ix  auditIndexer

	migrated store.Migration // what Open migrated (SetMigrated)
	program  int             // the schema version Open migrated to (SetMigrated)

	indexDel []string      // each of indexTables' delete statement (bound)
	bound    sync.Map      // statement with "?" -> in the dialect's placeholders
	inserts  sync.Map      // insertKey -> a flush's insert statement
	qmark    bool          // the dialect's placeholder is "?"
	nonce    atomic.Uint64 // UseNonce calls, timing the purges
}

// Config configures a Store; the zero value is valid.
type Config struct {
	// Now is the store's clock (nil: time.Now).
	Now func() time.Time
	// Lanes is how many batches of write transactions run at once, each
	// in a transaction of its own (see commit.go). Default 1: a backend
	// whose writers are serialised by the database anyway (SQLite) gains
	// nothing from more.
	Lanes int
	// MaxBatch bounds the write requests that share one transaction
	// (DefaultMaxBatch).
	MaxBatch int
	// MaxQueue is how many write requests may wait for a lane before a
	// Write fails with store.ErrBusy (DefaultMaxQueue).
	MaxQueue int
}

// New returns the Store of db in dialect d. It does no I/O; the lanes of
// its group commit start with the first write.
func New(db DB, d *Dialect, cfg Config) *Store {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Store{db: db, d: d, now: cfg.Now, qmark: d.Placeholder(1) == "?"}
	for _, t := range indexTables {
		s.indexDel = append(s.indexDel, s.bind(t.delete()))
	}
	s.w = newCommitter(s, cfg)
	return s
}

// WriteStatements are the statements a write transaction runs most, for a
// backend that prepares statements once (SQLite) or lets them run on a
// generic plan (PostgreSQL: they look rows up by key).
func (s *Store) WriteStatements() []string {
	stmts := []string{s.bind(sqlCurVersion), s.bind(sqlDelKeys), s.bind(sqlReadCurrent),
		s.bind(sqlKeyOwner), s.bind(sqlLedger), s.bind(sqlPutLedger), s.bind(sqlChainHead), s.bind(sqlChainHeadUpdate),
		`SAVEPOINT ` + requestSavepoint, `RELEASE SAVEPOINT ` + requestSavepoint}
	stmts = append(stmts, s.indexDel...)
	if !s.d.Arrays {
		for _, t := range append([]*indexTable{resourcesTable, newCurrentTable, currentTable, chainTable, claimsTable}, tablePointers()...) {
			for n := maxRows; n >= 1; n /= 4 {
				stmts = append(stmts, s.valuesInsert(t, n))
			}
		}
	}
	return stmts
}

// ReadStatements are the statements of reads by id, for a backend that
// prepares statements once (SQLite) or lets them run on a generic plan
// (PostgreSQL).
func (s *Store) ReadStatements() []string {
	return []string{s.bind(sqlReadCurrent), s.bind(sqlVRead)}
}

// tablePointers are pointers to indexTables' elements.
func tablePointers() []*indexTable {
	out := make([]*indexTable, len(indexTables))
	for i := range indexTables {
		out[i] = &indexTables[i]
	}
	return out
}

// Write implements store.Store: fn runs in one transaction of the DB,
// which commits when fn returns nil and rolls back otherwise (fn's error
// is returned unchanged, as is an error of Begin); concurrent Writes share
// transactions and commits (see commit.go) but never each other's
// outcome. fn must not call Write itself and must not use the Tx after
// returning; it may run more than once (see commit.go), like a function
// given to store.Retry.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) error {
	return s.write(ctx, func(t *tx) error { return fn(t) })
}

func (s *Store) write(ctx context.Context, fn func(*tx) error) error {
	return s.w.do(ctx, fn)
}

// QueuedWrites is how many write requests wait for a lane (a gauge for
// operators; see Config.MaxQueue).
func (s *Store) QueuedWrites() int { return s.w.queued() }

// GroupCommit tells how many lanes serve the write queue and how many
// writes one transaction takes at most.
func (s *Store) GroupCommit() (lanes, maxBatch int) { return s.w.lanes, s.w.maxBatch }

// CloseWrites waits for a background indexing pass of the audit chain,
// stops taking write requests (they fail with store.ErrUnavailable) and
// waits for those queued to be answered. A backend's Close calls it before
// closing its connections.
func (s *Store) CloseWrites() {
	s.closeIndexer()
	s.w.close()
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

// Migrated implements store.Store: what opening the database migrated.
func (s *Store) Migrated() store.Migration { return s.migrated }

// SetMigrated records what the backend's Open migrated of its
// migrations ms: from (the schema version it found, 0 for a new database)
// to the last of ms; nothing when from is that.
func (s *Store) SetMigrated(from int, ms []Migration) {
	s.program = ms[len(ms)-1].Version
	if to := ms[len(ms)-1].Version; from != to {
		s.migrated = store.Migration{From: from, To: to, Applied: Applied(ms, from, to)}
	}
}
