// Package sqlite is the SQLite implementation of store.Store, on the pure-Go
// driver modernc.org/sqlite.
//
// The database runs in WAL mode with synchronous=FULL, so a committed Write
// survives a crash or kill -9. Writes go through one connection and start
// with BEGIN IMMEDIATE: writers, in this process or another, are serialised
// by SQLite's write lock, which makes "search, then create if absent"
// transactions race-free. Reads (Read, VRead, History, Search) use a
// separate pool of read-only connections and never wait for writers.
//
// Schema: resources holds every version; current the latest version of each
// resource; idx_token, idx_string, idx_date, idx_reference, idx_quantity
// and idx_uri the search index entries of the current, non-deleted
// versions; conditional_keys and ledger the conditional-create keys and the
// ingest ledger; audit_chain the audit hash chain (seq, AuditEvent id,
// hash) and audit_chain_head its last seq and hash; nonces the one-time
// values of store.Nonces (key, expiry). Times are stored as
// INTEGER unix milliseconds (UTC). The schema is versioned in
// schema_migrations and migrated by Open.
//
// Tenants: resources, current and outbox carry a tenant column (rows
// from before schema version 4 belong to the default tenant, the empty
// string). A resource is keyed by type and id across tenants, and current
// holds the tenant of its latest version. A search restricts the current
// rows to the query's tenant in every statement it runs (matches, total,
// _include, _revinclude); the index tables carry no tenant, since every
// index condition is tied to a current row's type and id. History
// restricts the versions by their own tenant. current_tenant_type_lu,
// resources_tenant_type_lu and resources_tenant_lu serve a tenant's
// listings, counts and histories; the tenant-less indexes serve searches
// of every tenant (search.AllTenants).
//
// Tx.AppendAudit needs no lock of its own: the write lock that every write
// transaction holds from BEGIN IMMEDIATE to its end serialises the appends
// of all processes. Tx.Savepoint uses SQLite's SAVEPOINT, ROLLBACK TO and
// RELEASE.
//
// Tx.Put sets a zero res.LastUpdated to now and truncates it to the
// millisecond (in res, so the caller sees what is stored); a new version of
// an existing resource releases the conditional keys it held (the caller
// claims them again). PutLedger does the same for a zero Received.
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
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Options tune Open; the zero value is valid.
type Options struct {
	// BusyTimeout is how long a statement waits for a lock held by another
	// connection (another process writing, a WAL checkpoint) before the
	// operation fails with store.ErrUnavailable. Default 5s.
	BusyTimeout time.Duration
	// MaxReadConns bounds the read connection pool. Default GOMAXPROCS,
	// at least 2.
	MaxReadConns int
}

// Store is a store.Store on one SQLite database file.
type Store struct {
	w *sql.DB // one connection, write transactions
	r *sql.DB // read-only pool

	stmts map[string]*sql.Stmt // prepared on w, used in write transactions

	nonceCalls atomic.Uint64 // UseNonce calls, timing the purges

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)

// Open opens (creating if needed) the SQLite database at path, a file
// name (not ":memory:": the read and write pools must share the file), and
// migrates its schema.
func Open(ctx context.Context, path string, opts Options) (*Store, error) {
	if path == "" || strings.ContainsAny(path, "?#") || strings.HasPrefix(path, ":memory:") || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", path)
	}
	busy := opts.BusyTimeout
	if busy <= 0 {
		busy = 5 * time.Second
	}
	nread := opts.MaxReadConns
	if nread <= 0 {
		nread = max(runtime.GOMAXPROCS(0), 2)
	}

	w, err := sql.Open("sqlite", dsn(path, busy, false))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := migrate(ctx, w, 2*busy); err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
	}

	r, err := sql.Open("sqlite", dsn(path, busy, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(nread)
	r.SetMaxIdleConns(nread)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	s := &Store{w: w, r: r, stmts: map[string]*sql.Stmt{}}
	if err := s.prepare(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("sqlite: prepare: %w", err)
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// dsn is the modernc.org/sqlite data source name: the pragmas are applied
// on every new connection, busy_timeout first.
func dsn(path string, busy time.Duration, readOnly bool) string {
	v := url.Values{}
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	v.Add("_pragma", "foreign_keys(1)")
	v.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		v.Add("_pragma", "query_only(1)")
	} else {
		v.Add("_pragma", "journal_mode(WAL)")
		v.Set("_txlock", "immediate")
	}
	return path + "?" + v.Encode()
}

// prepare prepares the write statements once on the write connection.
func (s *Store) prepare(ctx context.Context) error {
	for _, q := range writeStmts {
		st, err := s.w.PrepareContext(ctx, q)
		if err != nil {
			return mapErr(err)
		}
		s.stmts[q] = st
	}
	return nil
}

// Write runs fn in one BEGIN IMMEDIATE transaction on the write connection.
// fn must not call Write itself (it would wait for its own connection) and
// must not use the Tx after returning.
func (s *Store) Write(ctx context.Context, fn func(store.Tx) error) (err error) {
	stx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", mapErr(err))
	}
	t := &tx{ctx: ctx, q: stx, s: s}
	done := false
	defer func() {
		if !done {
			_ = stx.Rollback() // fn panicked
		}
	}()
	if err := fn(t); err != nil {
		done = true
		_ = stx.Rollback()
		return err
	}
	done = true
	if err := stx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", mapErr(err))
	}
	return nil
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.r.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
		return fmt.Errorf("sqlite: ping: %w", mapErr(err))
	}
	return nil
}

// Close closes both connection pools; it is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		for _, st := range s.stmts {
			st.Close()
		}
		s.closeErr = errors.Join(s.r.Close(), s.w.Close())
	})
	return s.closeErr
}

// SQLite result codes (primary codes are the low byte of extended ones).
const (
	codeBusy             = 5
	codeLocked           = 6
	codeConstraintPK     = 1555
	codeConstraintUnique = 2067
)

func sqliteCode(err error) (int, bool) {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code(), true
	}
	return 0, false
}

func isBusy(err error) bool {
	c, ok := sqliteCode(err)
	return ok && (c&0xff == codeBusy || c&0xff == codeLocked)
}

// mapErr wraps driver errors with the store sentinels: a unique or primary
// key violation is store.ErrConflict, a busy or locked database (after the
// busy timeout) store.ErrUnavailable.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if c, ok := sqliteCode(err); ok {
		switch {
		case c == codeConstraintPK || c == codeConstraintUnique:
			return fmt.Errorf("%w: %v", store.ErrConflict, err)
		case c&0xff == codeBusy || c&0xff == codeLocked:
			return fmt.Errorf("%w: %v", store.ErrUnavailable, err)
		}
	}
	return err
}
