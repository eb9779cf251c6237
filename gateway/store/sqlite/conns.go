package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// conns are a Store's connections as sqlstore uses them (sqlstore.DB):
// write transactions and nonces on the one write connection, reads on the
// read-only pool. The write connection is held for the Store's life (a
// sql.Conn), so that statements prepared on it stay prepared across
// transactions; wmu gives it to one transaction or autocommit call at a
// time.
type conns struct {
	wmu sync.Mutex
	wc  *sql.Conn
	ws  *stmtCache // prepared on wc
	r   *sql.DB
	rs  *stmtCache // prepared on r (per pooled connection, by database/sql)
	cp  checkpointer
	// beginning is when the BEGIN in progress on wc started waiting for
	// the write lock (UnixNano), 0 when none is (see ProbeWrite).
	beginning atomic.Int64
	// lockedElsewhere: the last BEGIN on wc (a transaction's or a probe's)
	// found the write lock held by another process; cleared when one
	// begins. While it is set, the write connection in use (a BEGIN
	// waiting again, a checkpoint) does not make ProbeWrite say ready.
	lockedElsewhere atomic.Bool
	// inTx: a transaction began on wc and has not ended.
	inTx atomic.Bool
	// busy is the busy timeout: how long a write waits for a lock held
	// by another process (Options.BusyTimeout).
	busy time.Duration
	// writeFailed is the cause (store.CauseFull, CauseReadOnly, CauseIO,
	// CauseCantOpen) of the last write on wc that failed for want of a
	// disk that takes it, "" when none did or a write committed changes
	// since. While it is set, ProbeWrite says so: a transaction can begin
	// on a full disk (it needs no free page) though every write fails.
	writeFailed atomic.Pointer[string]
}

// noteWrite remembers the cause of a write's failure on the write
// connection (see writeFailed); err is the driver's error or nil.
func (c *conns) noteWrite(err error) error {
	if code, ok := sqliteCode(err); ok {
		if cause := unavailableCause(code); cause != "" && cause != store.CauseLocked {
			c.writeFailed.Store(&cause)
		}
	}
	return err
}

// writeFailure is writeFailed's cause, "" when none.
func (c *conns) writeFailure() string {
	if p := c.writeFailed.Load(); p != nil {
		return *p
	}
	return ""
}

// changes is the write connection's count of rows changed since it
// opened (SQLite's total_changes()), -1 when it cannot be read.
func (c *conns) changes(ctx context.Context) int64 {
	var n int64
	if err := c.wc.QueryRowContext(ctx, `SELECT total_changes()`).Scan(&n); err != nil {
		return -1
	}
	return n
}

// Begin starts a write transaction on the write connection, waiting for a
// transaction or autocommit call in progress. The transaction is run with
// plain BEGIN IMMEDIATE, COMMIT and ROLLBACK statements rather than a
// sql.Tx, so that the connection's prepared statements run in it as they
// are (database/sql prepares a connection's statement again for each
// sql.Tx). Its statements run under ctx without its cancellation: SQLite
// rolls a transaction back when a statement in it is interrupted, and
// the statements that followed would then commit one by one. A lock held
// by another process is waited for at most the busy timeout.
//
// first is always "": SQLite's dialect has no fences (its one writer at a
// time is the fence).
func (c *conns) Begin(ctx context.Context, first string) (sqlstore.Tx, error) {
	c.wmu.Lock()
	if c.cp.restart.Swap(false) {
		c.restartWAL(ctx)
	}
	ctx = context.WithoutCancel(ctx)
	t := &tx{c: c, ctx: ctx, changes: -1}
	c.beginning.Store(time.Now().UnixNano())
	_, err := c.beginImmediate(ctx, t)
	c.beginning.Store(0)
	c.lockedElsewhere.Store(isBusy(err))
	if err == nil && c.writeFailure() != "" {
		// A commit that changes rows ends the failure (see Commit); one
		// that changes none (a claim that found nothing) proves nothing.
		t.changes = c.changes(ctx)
	}
	if err != nil {
		c.wmu.Unlock()
		return nil, fmt.Errorf("sqlite: begin: %w", mapErr(err))
	}
	c.inTx.Store(true)
	return t, nil
}

// beginImmediate runs BEGIN IMMEDIATE for t. While the write lock is held
// by another process (the last BEGIN found it so), a write queued a while
// ago waits for it only what is left of its busy timeout counted from when
// it was queued (sqlstore.QueuedAt): the writes queued behind one waiting
// for the lock would otherwise each wait the whole busy timeout in turn,
// and a request refused for the lock was answered after three or four
// times it (an operator's review: 503 store-busy after 13 to 20 s with a
// busy timeout of 5 s). The first write to find the lock waits the whole
// timeout, as do writes queued since a BEGIN last failed.
func (c *conns) beginImmediate(ctx context.Context, t *tx) (int64, error) {
	wait := c.busy
	if q, ok := sqlstore.QueuedAt(ctx); ok && c.lockedElsewhere.Load() {
		wait = max(c.busy-time.Since(q), minLockWait)
	}
	if onBeginWait != nil {
		onBeginWait(wait)
	}
	if wait >= c.busy {
		return t.Exec(ctx, `BEGIN IMMEDIATE`)
	}
	if _, err := c.wc.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, wait.Milliseconds())); err != nil {
		return 0, err
	}
	defer func() { _, _ = c.wc.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, c.busy.Milliseconds())) }()
	return t.Exec(ctx, `BEGIN IMMEDIATE`)
}

// onBeginWait, set by tests, is told how long each BEGIN may wait for the
// write lock.
var onBeginWait func(time.Duration)

// minLockWait is the least a write waits for the write lock: one that has
// waited its busy timeout in the queue still tries once.
const minLockWait = 10 * time.Millisecond

// probeWait is how long ProbeWrite waits for the write lock, and how long
// a BEGIN of the write connection may have waited before ProbeWrite says
// the lock is held elsewhere.
const probeWait = 500 * time.Millisecond

// ProbeWrite reports whether a write transaction could begin now: while
// another process holds the write lock (a backup's BEGIN IMMEDIATE or
// BEGIN EXCLUSIVE, an sqlite3 shell left in a transaction) every write
// waits its busy timeout and fails, though reads go on. With the write
// connection idle it begins and rolls back a transaction, waiting at most
// probeWait; with the connection in use, the transaction in progress
// tells (see awaitWriter: a BEGIN waiting for the lock is waited for
// until it gets it or has waited probeWait). The answer stays "locked"
// from the first BEGIN that finds the lock held to the first that gets
// it, however the probes fall between the writes waiting for it.
//
// After a write failed for a full disk, a read-only file or an I/O error
// (see writeFailed), the probe says so until a write commits again, and
// it writes itself (the database header's user_version, set to what it
// is, and committed), so that the answer comes back without client writes
// once the disk takes writes again.
func (c *conns) ProbeWrite(ctx context.Context) error {
	locked := fmt.Errorf("sqlite: the database is locked by another process: %w",
		store.Unavailable(store.CauseLocked, errors.New("probe")))
	if !c.wmu.TryLock() {
		took, isLocked := c.awaitWriter()
		switch {
		case isLocked:
			return locked
		case !took:
			if cause := c.writeFailure(); cause != "" {
				return fmt.Errorf("sqlite: probe: %w", store.Unavailable(cause, errors.New("the last write failed")))
			}
			return nil
		}
	}
	defer c.wmu.Unlock()
	ctx = context.WithoutCancel(ctx)
	var busy string
	if err := c.wc.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy); err != nil {
		return fmt.Errorf("sqlite: probe: %w", mapErr(err))
	}
	if _, err := c.wc.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, probeWait.Milliseconds())); err != nil {
		return fmt.Errorf("sqlite: probe: %w", mapErr(err))
	}
	defer func() { _, _ = c.wc.ExecContext(ctx, `PRAGMA busy_timeout = `+busy) }()
	if _, err := c.wc.ExecContext(ctx, `BEGIN IMMEDIATE`); err != nil {
		if isBusy(err) {
			c.lockedElsewhere.Store(true)
			return locked
		}
		return fmt.Errorf("sqlite: probe: %w", mapErr(c.noteWrite(err)))
	}
	c.lockedElsewhere.Store(false)
	if c.writeFailure() != "" {
		return c.probeCommit(ctx)
	}
	if _, err := c.wc.ExecContext(ctx, `ROLLBACK`); err != nil {
		return fmt.Errorf("sqlite: probe: %w", mapErr(err))
	}
	return nil
}

// probeCommit ends ProbeWrite's transaction with a write that commits
// (see ProbeWrite): nil and the failure forgotten when it does, the
// failure's cause otherwise.
func (c *conns) probeCommit(ctx context.Context) error {
	var v int64
	err := c.wc.QueryRowContext(ctx, `PRAGMA user_version`).Scan(&v)
	if err == nil {
		_, err = c.wc.ExecContext(ctx, fmt.Sprintf(`PRAGMA user_version = %d`, v))
	}
	if err == nil {
		_, err = c.wc.ExecContext(ctx, `COMMIT`)
	}
	if err != nil {
		_, _ = c.wc.ExecContext(ctx, `ROLLBACK`)
		c.noteWrite(err)
		if cause := c.writeFailure(); cause != "" {
			return fmt.Errorf("sqlite: probe: %w", store.Unavailable(cause, err))
		}
		return fmt.Errorf("sqlite: probe: %w", mapErr(err))
	}
	c.writeFailed.Store(nil)
	return nil
}

// busyRetry bounds how long SQLite's busy handler sleeps between its
// tries for a lock (100 ms), with a margin: a BEGIN still waiting that
// long after a probe began would have got a lock freed before it.
const busyRetry = 150 * time.Millisecond

// awaitWriter is ProbeWrite's wait while the write connection is in use,
// checked every few milliseconds (sync.Mutex has no timed lock), at most
// 2*probeWait. A transaction that began tells the lock is free. A BEGIN
// waiting for the lock is waited for: it gets it (free), or it has waited
// longer than probeWait and still waits busyRetry after the probe began
// (another process holds it). took reports that it got wmu, for
// ProbeWrite to try a BEGIN itself; otherwise locked is the answer
// (lockedElsewhere when nothing told).
func (c *conns) awaitWriter() (took, locked bool) {
	start := time.Now()
	for {
		if c.wmu.TryLock() {
			return true, false
		}
		if c.inTx.Load() {
			return false, false // a transaction began: the lock is not held elsewhere
		}
		if t := c.beginning.Load(); t != 0 && time.Since(time.Unix(0, t)) > probeWait && time.Since(start) > busyRetry {
			c.lockedElsewhere.Store(true)
			return false, true
		}
		if time.Since(start) > 2*probeWait {
			return false, c.lockedElsewhere.Load()
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// restartWAL has the WAL started over from its beginning by the next
// write transaction (see walRestartBytes): a RESTART checkpoint on the
// write connection, between two transactions, copies what the passive
// checkpoints have not yet copied and waits for the readers still reading
// older pages of the WAL, at most restartWait. A read that takes longer
// (an export) leaves it to a try restartBackoff later: the lane must not
// wait on it at every transaction.
func (c *conns) restartWAL(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	var busy string
	if err := c.wc.QueryRowContext(ctx, `PRAGMA busy_timeout`).Scan(&busy); err != nil {
		return
	}
	if _, err := c.wc.ExecContext(ctx, fmt.Sprintf(`PRAGMA busy_timeout = %d`, restartWait.Milliseconds())); err != nil {
		return
	}
	var blocked, frames, copied int
	err := c.wc.QueryRowContext(ctx, `PRAGMA wal_checkpoint(RESTART)`).Scan(&blocked, &frames, &copied)
	_, _ = c.wc.ExecContext(ctx, `PRAGMA busy_timeout = `+busy)
	if err != nil || blocked != 0 {
		c.cp.backoff()
	}
}

// Read runs fn on the read-only pool.
func (c *conns) Read(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return fn(conn{q: c.r, stmts: c.rs})
}

// Snapshot runs fn in a read transaction of the read-only pool.
func (c *conns) Snapshot(ctx context.Context, fn func(sqlstore.Conn) error) error {
	rtx, err := c.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: begin read: %w", mapErr(err))
	}
	defer rtx.Rollback()
	return fn(conn{q: rtx, stmts: c.rs, tx: rtx})
}

// Autocommit runs fn on the write connection, outside a transaction: each
// statement takes the write lock (waiting for a writer in another
// process) and commits.
func (c *conns) Autocommit(ctx context.Context, fn func(sqlstore.Conn) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return fn(conn{q: c.wc, stmts: c.ws})
}

// Committed has the WAL checkpointed (see checkpointer); SQLite's planner
// statistics are seeded (see plannerStats).
func (c *conns) Committed(context.Context, int) { c.cp.kick() }

// checkpointer copies the WAL's committed pages into the database file
// after commits, at most every checkpointEvery, on a connection of its
// own, instead of the write connection doing it inside the commit of the
// transaction that crossed the WAL's size threshold (SQLite's automatic
// checkpoint, switched off on the write connection): the writes that
// group-commit do not wait for the copy and its fsync, and a page changed
// by many commits in between is copied once. A checkpoint is PASSIVE (it
// never waits for or blocks readers and writers); one runs at a time. It
// runs in a goroutine that ends when no checkpoint is due, so an idle
// Store runs none; close waits for it.
type checkpointer struct {
	db  *sql.DB // one connection
	wal string  // the WAL file's path

	// restart asks the write connection to have the WAL started over
	// (conns.restartWAL): a checkpoint found it larger than
	// walRestartBytes.
	restart atomic.Bool

	mu           sync.Mutex
	running      bool
	last         time.Time // the last checkpoint's start
	restartAfter time.Time // no restart asked for before (backoff)
	closed       bool
	wg           sync.WaitGroup
}

// checkpointEvery spaces checkpoints: the WAL then holds what some
// hundred milliseconds of commits wrote, a few MiB at most at the write
// rates the gateway reaches, and a reader finds a page in it rather than
// in the database file no slower.
const checkpointEvery = 250 * time.Millisecond

// walRestartBytes bounds the WAL under sustained writes. SQLite starts
// the WAL over from its beginning only when a write transaction begins
// after a checkpoint has copied all of it, which passive checkpoints
// beside a write lane busy without pause never achieve: 1,500 session
// records at 32 clients grew it to 923 MB beside a 550 MB database (issue
// 19). Past this size the write connection makes the next transaction
// start it over (conns.restartWAL), and the file is cut back to this size
// then (the write connection's journal_size_limit).
var walRestartBytes int64 = 64 << 20 // a variable for the tests

// restartWait is the longest the write connection waits for readers of
// older pages of the WAL before it gives the restart up, and
// restartBackoff how long it is not asked for again then.
const (
	restartWait    = 20 * time.Millisecond
	restartBackoff = 2 * time.Second
)

// backoff asks for no restart during restartBackoff.
func (c *checkpointer) backoff() {
	c.mu.Lock()
	c.restartAfter = time.Now().Add(restartBackoff)
	c.mu.Unlock()
}

// kick asks for a checkpoint after a commit: one starts unless one runs
// or the last started less than checkpointEvery ago (a later commit will
// ask again).
func (c *checkpointer) kick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.db == nil || c.running || time.Since(c.last) < checkpointEvery {
		return
	}
	c.running, c.last = true, time.Now()
	c.wg.Go(c.run)
}

func (c *checkpointer) run() {
	// A failure (a busy database) leaves the pages to the next one.
	_, _ = c.db.Exec(`PRAGMA wal_checkpoint(PASSIVE)`)
	fi, err := os.Stat(c.wal)
	c.mu.Lock()
	if err == nil && fi.Size() > walRestartBytes && time.Now().After(c.restartAfter) {
		c.restart.Store(true)
	}
	c.running = false
	c.mu.Unlock()
}

// close waits for a checkpoint in progress and takes no more.
func (c *checkpointer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}

// querier is what *sql.DB, *sql.Conn and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn is a sqlstore.Conn on a pool, a connection or a transaction; its
// statements run prepared from stmts (tx, when not nil, is the read
// transaction they run in: a statement prepared on the pool is made the
// transaction's).
type conn struct {
	q     querier
	stmts *stmtCache
	tx    *sql.Tx
}

// stmt is the prepared statement of query, or nil when it is not to be
// prepared.
func (c conn) stmt(ctx context.Context, query string) *sql.Stmt {
	st := c.stmts.get(ctx, query)
	if st != nil && c.tx != nil {
		return c.tx.StmtContext(ctx, st)
	}
	return st
}

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	var res sql.Result
	var err error
	if st := c.stmt(ctx, query); st != nil {
		res, err = st.ExecContext(ctx, args...)
	} else {
		res, err = c.q.ExecContext(ctx, query, args...)
	}
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	var r *sql.Rows
	var err error
	if st := c.stmt(ctx, query); st != nil {
		r, err = st.QueryContext(ctx, args...)
	} else {
		r, err = c.q.QueryContext(ctx, query, args...)
	}
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (c conn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.q.QueryRowContext(ctx, query, args...)
}

// rows are sql.Rows as sqlstore.Rows (Close's error says nothing Err does
// not).
type rows struct{ *sql.Rows }

func (r rows) Close() { _ = r.Rows.Close() }

// tx is a write transaction as sqlstore.Tx, on the write connection
// (see Begin); it gives the connection back when it ends.
type tx struct {
	c   *conns
	ctx context.Context // Begin's, without cancellation
	// changes is the connection's changes() at Begin when a write had
	// failed before (conns.writeFailed), -1 otherwise.
	changes int64
}

func (t *tx) conn() conn { return conn{q: t.c.wc, stmts: t.c.ws} }

func (t *tx) Exec(_ context.Context, query string, args ...any) (int64, error) {
	n, err := t.conn().Exec(t.ctx, query, args...)
	return n, t.c.noteWrite(err)
}

func (t *tx) Query(_ context.Context, query string, args ...any) (sqlstore.Rows, error) {
	r, err := t.conn().Query(t.ctx, query, args...)
	if err != nil {
		return nil, t.c.noteWrite(err)
	}
	return notedRows{Rows: r, c: t.c}, nil
}

func (t *tx) QueryRow(_ context.Context, query string, args ...any) sqlstore.Row {
	return notedRow{Row: t.conn().QueryRow(t.ctx, query, args...), c: t.c}
}

// notedRow and notedRows are a write transaction's results: an error
// they report (a statement that writes, RETURNING, or spills the page
// cache) is noted as a write's (conns.noteWrite).
type notedRow struct {
	sqlstore.Row
	c *conns
}

func (r notedRow) Scan(dest ...any) error { return r.c.noteWrite(r.Row.Scan(dest...)) }

type notedRows struct {
	sqlstore.Rows
	c *conns
}

func (r notedRows) Err() error { return r.c.noteWrite(r.Rows.Err()) }

// Batch runs the statements one by one (SQLite runs in process: there are
// no round trips to save).
func (t *tx) Batch(_ context.Context, stmts []sqlstore.Stmt) error {
	c := t.conn()
	for _, st := range stmts {
		n, err := c.Exec(t.ctx, st.SQL, st.Args...)
		if err != nil {
			return t.c.noteWrite(err)
		}
		if st.Affected != nil {
			*st.Affected += n
		}
	}
	return nil
}

// QueryBatch runs the queries one by one.
func (t *tx) QueryBatch(_ context.Context, stmts []sqlstore.Stmt, fn func(i int, rows sqlstore.Rows) error) error {
	c := t.conn()
	for i, st := range stmts {
		rows, err := c.Query(t.ctx, st.SQL, st.Args...)
		if err == nil {
			err = fn(i, rows)
		}
		if err != nil {
			return t.c.noteWrite(err)
		}
	}
	return nil
}

// Commit commits; when COMMIT fails (the database stayed locked by a
// reader of another process, an I/O error), the transaction is rolled
// back, so the connection is never left inside it.
func (t *tx) Commit(context.Context) error {
	defer t.c.wmu.Unlock()
	defer t.c.inTx.Store(false)
	var changed bool
	if t.changes >= 0 {
		changed = t.c.changes(t.ctx) > t.changes
	}
	if _, err := t.conn().Exec(t.ctx, `COMMIT`); err != nil {
		_, _ = t.conn().Exec(t.ctx, `ROLLBACK`)
		return t.c.noteWrite(err)
	}
	if changed {
		t.c.writeFailed.Store(nil)
	}
	return nil
}

func (t *tx) Rollback(context.Context) {
	defer t.c.wmu.Unlock()
	defer t.c.inTx.Store(false)
	_, _ = t.conn().Exec(t.ctx, `ROLLBACK`)
}

// stmtCache keeps prepared statements by their text: those a Store
// prepares at Open for good and, if it prepares on demand, up to
// maxDynamic others (searches, mostly the few shapes of conditional
// lookups), dropped all at once when more come. Only a cache whose
// statements run one at a time (the write connection's) prepares on
// demand: a dropped statement is closed at once. A statement of several
// (";") is never prepared (SQLite would prepare only its first).
type stmtCache struct {
	prep     func(ctx context.Context, query string) (*sql.Stmt, error)
	onDemand bool

	mu      sync.Mutex
	fixed   map[string]*sql.Stmt
	dynamic map[string]*sql.Stmt
}

// maxDynamic bounds the statements a stmtCache prepares on demand.
const maxDynamic = 256

func newStmtCache(prep func(ctx context.Context, query string) (*sql.Stmt, error), onDemand bool) *stmtCache {
	return &stmtCache{prep: prep, onDemand: onDemand, fixed: map[string]*sql.Stmt{}, dynamic: map[string]*sql.Stmt{}}
}

// prepare prepares queries for good.
func (c *stmtCache) prepare(ctx context.Context, queries []string) error {
	for _, q := range queries {
		st, err := c.prep(ctx, q)
		if err != nil {
			return err
		}
		c.fixed[q] = st
	}
	return nil
}

// get returns the prepared statement of query, preparing it if need be;
// nil when it is not to be prepared or cannot be (the caller then runs
// the text, which reports the error).
func (c *stmtCache) get(ctx context.Context, query string) *sql.Stmt {
	if c == nil || strings.Contains(query, ";") {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.fixed[query]; st != nil {
		return st
	}
	if st := c.dynamic[query]; st != nil || !c.onDemand {
		return st
	}
	st, err := c.prep(ctx, query)
	if err != nil {
		return nil
	}
	if len(c.dynamic) >= maxDynamic {
		for q, old := range c.dynamic {
			_ = old.Close()
			delete(c.dynamic, q)
		}
	}
	c.dynamic[query] = st
	return st
}

// close closes every statement.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range []map[string]*sql.Stmt{c.fixed, c.dynamic} {
		for q, st := range m {
			_ = st.Close()
			delete(m, q)
		}
	}
}
