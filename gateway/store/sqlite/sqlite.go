// Package sqlite is the SQLite implementation of store.Store, on the pure-Go
// driver modernc.org/sqlite. Its statements and logic are those it shares
// with the PostgreSQL backend (gateway/store/internal/sqlstore, whose
// documentation has the tables, the tenants, the outbox, the nonces and
// the search semantics); this package opens and configures the database,
// migrates its schema and supplies SQLite's dialect.
//
// The database runs in WAL mode with synchronous=FULL, so a committed Write
// survives a crash or kill -9. Writes go through one connection, held for
// the Store's life with its statements prepared once, and start with BEGIN
// IMMEDIATE: writers, in this process or another, are serialised by
// SQLite's write lock, which makes "search, then create if absent"
// transactions race-free and orders the audit chain's appends and the
// outbox's claims without locks of their own. Concurrent Writes of this
// process share a transaction and its commit (group commit, one lane: see
// sqlstore), each in a savepoint once one of them failed; savepoint
// journals are kept in memory (multi-row inserts keep no statement
// journal: INSERT OR FAIL), and the write connection's page cache is large enough
// for a batch's pages. UseNonce is one statement on the write connection,
// serialised the same way. Reads (Read, VRead,
// History, Search, the outbox listings, AuditChainAfter) use a separate pool of
// read-only connections and never wait for writers. A database locked
// longer than Options.BusyTimeout (another process writing, a checkpoint)
// is store.ErrUnavailable; a unique or primary key violation is
// store.ErrConflict.
//
// Schema: times are INTEGER unix milliseconds (UTC), booleans INTEGER 0/1.
// The schema is versioned in schema_migrations and migrated by Open; rows
// from before schema version 4 belong to the default tenant, the empty
// string. current_tenant_type_lu, resources_tenant_type_lu and
// resources_tenant_lu serve a tenant's listings, counts and histories; the
// tenant-less indexes serve searches of every tenant (search.AllTenants).
// The planner works from seeded statistics (see plannerStats).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
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
	// Now is the store's clock: the time a Put, PutLedger or Enqueue
	// stamps when the caller gives none, nonce expiry, date "ap" searches
	// and the time a migration is recorded. Default time.Now.
	Now func() time.Time
	// Progress, if not nil, hears of a migration before it runs and of
	// each of its steps as it starts (store.MigrationStep): a long one
	// holds the start (serve logs them).
	Progress func(store.MigrationStep)
	// Existing opens only an existing gateway database at the program's
	// schema version, creating and migrating nothing (the read-only
	// commands): a missing file or a database not set up is
	// store.ErrNoDatabase.
	Existing bool
	// MaxBatch bounds the concurrent writes that share one transaction
	// and commit (group commit). Default sqlstore.DefaultMaxBatch (64).
	MaxBatch int
	// MaxQueue is how many writes may wait for the write connection; one
	// more fails at once with store.ErrBusy (503 with Retry-After at the
	// edge). Default sqlstore.DefaultMaxQueue (1,024).
	MaxQueue int
}

// Store is a store.Store on one SQLite database file.
type Store struct {
	*sqlstore.Store // everything but Close

	w *sql.DB // one connection, held by conns: write transactions, nonces
	r *sql.DB // read-only pool
	c *conns

	closeOnce sync.Once
	closeErr  error
}

var _ store.Store = (*Store)(nil)
var _ store.WriteProber = (*Store)(nil)

var _ store.StatsReporter = (*Store)(nil)

// PoolStats implements store.StatsReporter: the read pool's connections and
// the write queue (SQLite has one write connection: its lane).
func (s *Store) PoolStats() store.PoolStats {
	st := s.WriteStats()
	r := s.r.Stats()
	st.InUse, st.Idle, st.Open, st.Max = int64(r.InUse), int64(r.Idle), int64(r.OpenConnections), int64(r.MaxOpenConnections)
	st.Waits, st.WaitDuration = r.WaitCount, r.WaitDuration
	return st
}

// ProbeWrite implements store.WriteProber: a write transaction could
// begin now, not blocked by another process's lock (conns.ProbeWrite).
func (s *Store) ProbeWrite(ctx context.Context) error { return s.c.ProbeWrite(ctx) }

// Open opens (creating if needed) the SQLite database at path, a file
// name (not ":memory:": the read and write pools must share the file), and
// migrates its schema. An invalid path is an error; a database locked by
// another process for longer than twice the busy timeout is
// store.ErrUnavailable.
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
	now := opts.Now
	if now == nil {
		now = time.Now
	}

	wdsn, rdsn := dsn(path, busy, false), dsn(path, busy, true)
	if opts.Existing {
		if !writable(path) {
			// A read-only copy (an auditor's, a backup): read it as it is,
			// without the WAL's shared memory it could not create.
			wdsn, rdsn = immutableDSN(path, busy), immutableDSN(path, busy)
		}
		if err := checkExisting(ctx, path, rdsn); err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", path, err)
		}
	}
	w, err := sql.Open("sqlite", wdsn)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	from := schemaVersion
	if !opts.Existing {
		if from, err = migrate(ctx, w, 2*busy, now, opts.Progress); err != nil {
			w.Close()
			return nil, fmt.Errorf("sqlite: migrate %s: %w", path, err)
		}
	}

	r, err := sql.Open("sqlite", rdsn)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	r.SetMaxOpenConns(nread)
	r.SetMaxIdleConns(nread)
	r.SetConnMaxLifetime(0)
	r.SetConnMaxIdleTime(0)
	wc, err := w.Conn(ctx)
	if err != nil {
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, mapErr(err))
	}
	cp, err := sql.Open("sqlite", dsnCheckpoint(path, busy))
	if err != nil {
		wc.Close()
		r.Close()
		w.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	cp.SetMaxOpenConns(1)
	cp.SetMaxIdleConns(1)
	c := &conns{wc: wc, r: r, cp: checkpointer{db: cp, wal: path + "-wal"}, busy: busy}
	c.ws = newStmtCache(wc.PrepareContext, true)
	c.rs = newStmtCache(r.PrepareContext, false)
	s := &Store{w: w, r: r, c: c}
	s.Store = sqlstore.New(c, dialect, sqlstore.Config{Now: now, MaxBatch: opts.MaxBatch, MaxQueue: opts.MaxQueue})
	s.SetMigrated(from, migrations)
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

// checkExisting checks, on a read-only connection that changes nothing,
// that path is a gateway database at this program's schema version.
func checkExisting(ctx context.Context, path, dsn string) error {
	if fi, err := os.Stat(path); err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("no such database file: %w", store.ErrNoDatabase)
	}
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	return sqlstore.CheckVersion(ctx, conn{q: db}, schemaVersion)
}

// writable reports whether this process may write the database file and
// its directory (where SQLite keeps the WAL and its shared memory).
func writable(path string) bool {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	probe, err := os.CreateTemp(filepath.Dir(path), ".kg-probe-*")
	if err != nil {
		return false
	}
	probe.Close()
	os.Remove(probe.Name())
	return true
}

// immutableDSN opens path read-only as a file that does not change (a
// copy): no locks, no WAL shared memory, every write refused.
func immutableDSN(path string, busy time.Duration) string {
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	v := url.Values{}
	v.Set("mode", "ro")
	v.Set("immutable", "1")
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	v.Add("_pragma", "query_only(1)")
	return (&url.URL{Scheme: "file", Path: abs, RawQuery: v.Encode()}).String()
}

// dsn is the modernc.org/sqlite data source name: the pragmas are applied
// on every new connection, busy_timeout first.
func dsn(path string, busy time.Duration, readOnly bool) string {
	v := url.Values{}
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	// Foreign keys are not enforced, as on PostgreSQL since its schema 9:
	// the store writes an index row only with its resource's current row,
	// in the same transaction, and never deletes a current row, a version
	// or an outbox item (CheckIntegrity checks that after every test of
	// the shared suite, on both stores). Enforced, every index row looked
	// its current row up on the single write lane: session records at 32
	// clients 97 a second without them against 90 with them, audited
	// reads 4,000 against 3,800 (issue 19, interleaved pairs).
	v.Add("_pragma", "foreign_keys(0)")
	v.Add("_pragma", "synchronous(FULL)")
	if readOnly {
		v.Add("_pragma", "query_only(1)")
	} else {
		v.Add("_pragma", "journal_mode(WAL)")
		// A group-committed transaction dirties many pages: with the
		// default cache (2 MiB) they spill to the WAL before the commit
		// and are written again by it.
		v.Add("_pragma", fmt.Sprintf("cache_size(%d)", -writeCacheKiB))
		// Savepoints (one per request of a group commit, once one of its
		// requests failed) keep the pages they change in a journal of
		// their own: in memory, not in a temporary file written page by
		// page. (Multi-row inserts keep none: see dialect's InsertRows.)
		v.Add("_pragma", "temp_store(MEMORY)")
		// The checkpointer's connection copies the WAL into the database,
		// not a commit (see checkpointer).
		v.Add("_pragma", "wal_autocheckpoint(0)")
		// The WAL file cut back when it starts over (see walRestartBytes).
		v.Add("_pragma", fmt.Sprintf("journal_size_limit(%d)", walRestartBytes))
		v.Set("_txlock", "immediate")
		// Its WAL writes gathered into a few large ones (see walVFS):
		// safe because it syncs at every commit (synchronous FULL above).
		// Should SQLite refuse the VFS, its own writes them one by one.
		if registerWALVFS() == nil {
			v.Set("vfs", walVFSName)
		}
	}
	return path + "?" + v.Encode()
}

// dsnCheckpoint is the data source name of the checkpointer's connection:
// it writes only the database file, from the WAL.
func dsnCheckpoint(path string, busy time.Duration) string {
	v := url.Values{}
	v.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busy.Milliseconds()))
	v.Add("_pragma", "synchronous(FULL)")
	return path + "?" + v.Encode()
}

// writeCacheKiB is the page cache of the write connection: room for the
// pages a large transaction dirties (a Synthea Bundle of 3.9 MB, a group
// commit of 32 session records) without spilling them to the WAL before
// its commit, and no more. Every page the cache holds is memory first
// touched when the cache grows to it (two of the kernel's pages per
// database page: the allocator's slot for a 4 KiB page and its header is
// 8 KiB), and a new gateway's cache grows with its first writes: at 32
// MiB a third of the 15-25 thousand page faults of the first nine
// Synthea Bundles were SQLite's (page faults were 16-18% of the
// gateway's CPU). At 8 MiB the same Bundles load 4-16% faster in eight
// interleaved pairs of nine (the ninth 15% slower), writing the same
// bytes (no spill: 32-34 MB either way, as 640-650 MB for 600 session
// records at 32 clients), and six loads in a row into one database, to
// 300 MB, run no slower once the cache is full (issue 19, thirty-fourth
// session).
const writeCacheKiB = 8 << 10

// prepare prepares the statements writes run most once on the write
// connection, and those of reads by id on the read pool.
func (s *Store) prepare(ctx context.Context) error {
	if err := s.c.ws.prepare(ctx, append(s.WriteStatements(), `BEGIN IMMEDIATE`, `COMMIT`, `ROLLBACK`)); err != nil {
		return mapErr(err)
	}
	return mapErr(s.c.rs.prepare(ctx, s.ReadStatements()))
}

// Close stops taking writes, waits for those queued, and closes both
// connection pools; it is safe to call more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.CloseWrites()
		s.c.cp.close()
		s.c.ws.close()
		s.c.rs.close()
		s.closeErr = errors.Join(s.c.wc.Close(), s.r.Close(), s.w.Close(), s.c.cp.db.Close())
	})
	return s.closeErr
}

// SQLite result codes (primary codes are the low byte of extended ones).
const (
	codeBusy             = 5
	codeLocked           = 6
	codeReadOnly         = 8
	codeIOErr            = 10
	codeFull             = 13
	codeCantOpen         = 14
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

// unavailableCause is the store.UnavailableError cause of a SQLite result
// code: the database locked (after the busy timeout), its disk full, the
// file read-only, an I/O error, a file that cannot be opened. These are
// the database's trouble, not the request's nor a fault of the gateway's:
// the request may succeed later.
func unavailableCause(code int) string {
	switch code & 0xff {
	case codeBusy, codeLocked:
		return store.CauseLocked
	case codeFull:
		return store.CauseFull
	case codeReadOnly:
		return store.CauseReadOnly
	case codeIOErr:
		return store.CauseIO
	case codeCantOpen:
		return store.CauseCantOpen
	}
	return ""
}

// mapErr wraps driver errors with the store sentinels: a unique or primary
// key violation is store.ErrConflict; a busy or locked database (after the
// busy timeout), a full disk, a read-only file, an I/O error or a file
// that cannot be opened is a store.UnavailableError of that cause.
func mapErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	if c, ok := sqliteCode(err); ok {
		if c == codeConstraintPK || c == codeConstraintUnique {
			return fmt.Errorf("%w: %v", store.ErrConflict, err)
		}
		if cause := unavailableCause(c); cause != "" {
			return store.Unavailable(cause, err)
		}
	}
	return err
}
