// Package postgres is the PostgreSQL implementation of store.Store, on
// github.com/jackc/pgx/v5 (pgxpool). Its statements and logic are those it
// shares with the SQLite backend (gateway/store/internal/sqlstore, whose
// documentation has the tables, the tenants, the outbox, the audit chain,
// the nonces and the search semantics); this package connects, migrates
// the schema, supplies PostgreSQL's dialect and keeps the planner
// statistics fresh. gateway/store/storetest proves that the two backends
// behave alike.
//
// Several gateway processes may share one database. Write transactions run
// at READ COMMITTED and rely on unique keys for exactly-once results: a
// resource version is the primary key (type, id, version) of resources, a
// conditional create key the primary key of conditional_keys, a native
// record version the primary key of ledger. Two processes racing for the
// same key are serialised by PostgreSQL: the second waits for the first to
// commit and then fails with a unique violation, which Write's caller sees
// as store.ErrConflict and retries (the retry then sees the first one's
// result). Unlike SQLite, writers that touch no common key run in parallel;
// a "search, then write" transaction that claims no key is therefore not
// serialised against another one (the gateway claims a key for every
// conditional create; an update of an existing resource is guarded by its
// next version's key, and by the version the request first read of it:
// sqlstore's tx.seen refuses a write built from a version that a
// concurrent writer superseded, so no update is lost). The audit chain head, an outbox item being
// completed and the outbox's order keys are locked as sqlstore describes
// (row locks, advisory locks).
//
// Errors: unique violations (23505), serialization failures (40001) and
// deadlocks (40P01) are store.ErrConflict; connection failures (class 08,
// refused or broken connections), administrator shutdowns (57P01..57P03),
// too many connections (class 53), statement timeouts and pool acquire
// timeouts are store.ErrUnavailable, and so is a server refusing a new
// connection: the login (class 28), the CONNECT privilege (42501), the
// database (3D000) or its TLS certificate failing verification, each
// with its store cause (login rejected, permission denied, no such
// database, certificate refused). An invalid URL or setting is
// store.ErrInvalidSettings. When a call finds its pooled
// connection closed by the server (a restart, a failover, an
// administrator), the pool drops all its connections, and the call is run
// again on a new one if it only reads or the failure came at BEGIN; nothing
// else is retried inside the store.
//
// Schema: the tables of the SQLite backend with PostgreSQL types: times are
// BIGINT unix milliseconds (UTC), deleted is BOOLEAN, bodies are BYTEA (the
// exact bytes come back), nonce keys are BYTEA (any bytes, kept exactly),
// text columns use the "C" collation so that comparisons, prefix ranges
// and ORDER BY are bytewise like SQLite's. Open migrates the schema in one
// transaction under a transaction-level advisory lock, so processes
// starting at the same moment on one database migrate it once. PostgreSQL
// text cannot hold NUL bytes or invalid UTF-8: such characters in index
// values, query values, keys and ledger and outbox fields are stored and
// compared as U+FFFD.
//
// Connection settings come from the URL (every pgx/libpq setting, plus
// pool_max_conns and the other pool_* settings of pgxpool) and Options.
// The URL may also carry statement_timeout and lock_timeout (e.g. "30s",
// "500ms" or a number of milliseconds), pool_acquire_timeout (a Go
// duration) and libpq's TCP keepalive settings (keepalive.go); Options
// fields that are set take precedence over the URL.
//
// A server that stops answering without a TCP reset (its host vanished)
// is found by timeouts: the connect timeout, the pool's liveness ping,
// the bound on each round trip (statement timeout plus connect timeout),
// the TCP keepalives and user timeout; and a circuit breaker (breaker.go)
// then refuses calls at once until a probe connection succeeds. A
// statement that waits on another session's lock past the lock timeout
// is store.ErrUnavailable with store.CauseLocked.
//
// Planner statistics: every 1,000 resources it writes (and after 100, 300
// and 900), a Store analyses the tables that changed enough since their
// last analysis, as autovacuum would a minute or so later, and the small
// tables whose file more than doubled (see analyze.go): never analysed
// tables can make a search run into the statement timeout, and plans made
// on a new database's first pages scan them.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// Options tune Open; the zero value is valid. A zero field takes the URL's
// setting, else the default.
type Options struct {
	// MaxConns bounds the connection pool (URL: pool_max_conns). Default:
	// pgxpool's, the larger of 4 and the number of CPUs.
	MaxConns int32
	// StatementTimeout is set on every connection (SET statement_timeout):
	// a statement running longer, waiting for locks included, fails with
	// store.ErrUnavailable. URL: statement_timeout. Default 30s; a negative
	// value, or statement_timeout=0 in the URL, means none.
	StatementTimeout time.Duration
	// LockTimeout is set on every connection (SET lock_timeout): a
	// statement that waits longer for a lock another session holds (a
	// LOCK TABLE, an ALTER TABLE, a row another transaction writes) fails
	// with store.ErrUnavailable, cause store.CauseLocked (503 store-busy
	// with Retry-After at the edge). URL: lock_timeout. Default 5s; a
	// negative value, or lock_timeout=0 in the URL, means none. The
	// schema's migration waits without one.
	LockTimeout time.Duration
	// AcquireTimeout is how long an operation waits for a free pooled
	// connection before failing with store.ErrUnavailable. URL:
	// pool_acquire_timeout. Default 10s.
	AcquireTimeout time.Duration
	// ConnectTimeout bounds establishing one connection. URL:
	// connect_timeout (seconds). Default 5s.
	ConnectTimeout time.Duration
	// Logger receives the circuit breaker's WARN lines (see breaker.go).
	// Default: a logger that discards.
	Logger *slog.Logger
	// Now is the store's clock: the time a Put, PutLedger or Enqueue
	// stamps when the caller gives none, nonce expiry, date "ap" searches
	// and the time a migration is recorded. Default time.Now.
	Now func() time.Time
	// Progress, if not nil, hears of a migration before it runs and of
	// each of its steps as it starts (store.MigrationStep).
	Progress func(store.MigrationStep)
	// Existing opens only a database the gateway set up, at the
	// program's schema version, migrating nothing (the read-only
	// commands): otherwise store.ErrNoDatabase.
	Existing bool
	// WriteLanes is how many batches of concurrent writes run at once,
	// each in its own transaction on its own connection (group commit,
	// see sqlstore). URL: write_lanes. Default DefaultWriteLanes.
	WriteLanes int
	// MaxBatch bounds the concurrent writes that share one transaction
	// and commit. URL: write_batch. Default sqlstore.DefaultMaxBatch (64).
	MaxBatch int
	// MaxQueue is how many writes may wait for a lane; one more fails at
	// once with store.ErrBusy (503 with Retry-After at the edge). URL:
	// write_queue. Default sqlstore.DefaultMaxQueue (1,024).
	MaxQueue int
}

// Defaults of Options.
const (
	DefaultStatementTimeout = 30 * time.Second
	DefaultAcquireTimeout   = 10 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	DefaultLockTimeout      = 5 * time.Second
	DefaultWriteLanes       = 2
)

// Store is a store.Store on one PostgreSQL database.
type Store struct {
	*sqlstore.Store // everything but Close

	pool           *pgxpool.Pool
	acquireTimeout time.Duration
	answer         time.Duration // how long a statement waits for the server's answer (see limits)
	breaker        *breaker
	now            func() time.Time
	progress       func(store.MigrationStep) // Options.Progress
	analyzer       analyzer                  // planner statistics after bulk writes
	generic        map[string]bool           // see conn.args; read-only after Open
}

var _ store.Store = (*Store)(nil)
var _ store.StatsReporter = (*Store)(nil)

// PoolStats implements store.StatsReporter: the pgxpool's connections (reads
// and write lanes take them alike) and acquire waits, and the write queue.
func (s *Store) PoolStats() store.PoolStats {
	st := s.WriteStats()
	p := s.pool.Stat()
	st.InUse, st.Idle, st.Open, st.Max = int64(p.AcquiredConns()), int64(p.IdleConns()), int64(p.TotalConns()), int64(p.MaxConns())
	st.Waits, st.WaitDuration, st.Canceled = p.EmptyAcquireCount(), p.EmptyAcquireWaitTime(), p.CanceledAcquireCount()
	return st
}

// Open connects to the PostgreSQL database at url (postgres:// or
// postgresql://, or a key=value connection string), migrates its schema and
// checks that it answers. An invalid URL or setting is
// store.ErrInvalidSettings, with an error that names the setting but
// never quotes the URL or a value (nor anything of a URL whose password
// holds an unencoded reserved character: it is refused before anything
// is parsed from it); a server that cannot be reached, or that refuses
// the login (see mapErr), is store.ErrUnavailable.
func Open(ctx context.Context, url string, opts Options) (*Store, error) {
	cfg, lim, wcfg, err := config(url, opts)
	if err != nil {
		return nil, err
	}
	probeCfg := cfg.ConnConfig.Copy()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", mapErr(ctx, err))
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{pool: pool, acquireTimeout: lim.acquire, answer: lim.answer, now: now, progress: opts.Progress}
	s.breaker = newBreaker(func(ctx context.Context) error {
		c, err := pgx.ConnectConfig(ctx, probeCfg) // bounded by the connect timeout
		if err != nil {
			return err
		}
		return c.Close(ctx)
	}, pool.Reset, log, now)
	wcfg.Now = now
	s.Store = sqlstore.New(conns{s}, dialect, wcfg)
	s.generic = map[string]bool{}
	for _, q := range append(s.WriteStatements(), s.ReadStatements()...) {
		s.generic[q] = true
	}
	s.analyzer.ctx, s.analyzer.stop = context.WithCancel(context.Background())
	if opts.Existing {
		err = s.checkVersion(ctx)
	} else {
		err = s.migrate(ctx)
	}
	if err != nil {
		s.Close()
		return nil, err
	}
	if err := s.Ping(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// limits are the store's own bounds (see config).
type limits struct {
	acquire time.Duration // Options.AcquireTimeout
	// answer bounds the wait for the server's answer to one statement on
	// the gateway's side: the statement timeout plus the connect timeout
	// (the server's own cancellation, on a server that is slow to
	// answer). A server that has not answered by then is not there (a
	// host that vanished without a TCP reset, behind a proxy that keeps
	// the connection open): the connection is closed and the call fails
	// with store.ErrUnavailable. 0 (no statement timeout): no bound but
	// the TCP keepalives and user timeout.
	answer time.Duration
}

// config parses url and applies opts: the pool configuration (with the
// statement and lock timeouts set on every new connection, the connect
// timeout, TCP keepalives and user timeout on every socket, the pool's
// liveness ping bounded), the store's limits and the group commit's
// configuration. Without a pool size in opts or the URL, the pool has
// DefaultMaxConns connections.
func config(url string, opts Options) (*pgxpool.Config, limits, sqlstore.Config, error) {
	var wcfg sqlstore.Config
	var lim limits
	if ambiguous(url) {
		return nil, lim, wcfg, errAmbiguousURL
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgconn's parse errors may quote the URL: never echo a password,
		// nor a value; the setting's name only.
		return nil, lim, wcfg, settingError(url, err)
	}
	params := cfg.ConnConfig.RuntimeParams
	stmt := DefaultStatementTimeout
	if v, ok := params["statement_timeout"]; ok {
		delete(params, "statement_timeout")
		if stmt, err = parseTimeout(v); err != nil {
			return nil, lim, wcfg, invalidSetting("statement_timeout", "want a duration such as 30s, 500ms or 2min, or a number of milliseconds")
		}
	}
	lock := DefaultLockTimeout
	if v, ok := params["lock_timeout"]; ok {
		delete(params, "lock_timeout")
		if lock, err = parseTimeout(v); err != nil {
			return nil, lim, wcfg, invalidSetting("lock_timeout", "want a duration such as 5s, 500ms or 1min, or a number of milliseconds")
		}
	}
	ka, err := keepaliveSettings(params)
	if err != nil {
		return nil, lim, wcfg, err
	}
	acquire := DefaultAcquireTimeout
	if v, ok := params["pool_acquire_timeout"]; ok {
		delete(params, "pool_acquire_timeout")
		if acquire, err = time.ParseDuration(v); err != nil || acquire <= 0 {
			return nil, lim, wcfg, invalidSetting("pool_acquire_timeout", "want a positive duration such as 10s")
		}
	}
	wcfg.Lanes = DefaultWriteLanes
	for _, p := range []struct {
		name string
		dst  *int
		opt  int
	}{{"write_lanes", &wcfg.Lanes, opts.WriteLanes}, {"write_batch", &wcfg.MaxBatch, opts.MaxBatch}, {"write_queue", &wcfg.MaxQueue, opts.MaxQueue}} {
		if v, ok := params[p.name]; ok {
			delete(params, p.name)
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return nil, lim, wcfg, invalidSetting(p.name, "want a positive number")
			}
			*p.dst = n
		}
		if p.opt > 0 {
			*p.dst = p.opt
		}
	}
	if !strings.Contains(url, "pool_max_conns") {
		cfg.MaxConns = DefaultMaxConns(wcfg.Lanes)
	}
	switch {
	case opts.StatementTimeout > 0:
		stmt = opts.StatementTimeout
	case opts.StatementTimeout < 0:
		stmt = 0
	}
	switch {
	case opts.LockTimeout > 0:
		lock = opts.LockTimeout
	case opts.LockTimeout < 0:
		lock = 0
	}
	if opts.AcquireTimeout > 0 {
		acquire = opts.AcquireTimeout
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.ConnectTimeout > 0 {
		cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	} else if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = DefaultConnectTimeout
	}
	connect := cfg.ConnConfig.ConnectTimeout
	// The connect timeout bounds the whole attempt (TCP, TLS, the
	// login); the dialer's own bounds the TCP connection, and its
	// keepalives and user timeout find a peer gone without a reset.
	cfg.ConnConfig.DialFunc = ka.dialer(connect).DialContext
	if cfg.PingTimeout == 0 { // no pool_ping_timeout in the URL (pgxpool parsed it)
		// pgxpool pings a connection idle for over a second before
		// handing it out: a dead one fails within this, not after the
		// acquire timeout.
		cfg.PingTimeout = connect
	}
	if stmt > 0 {
		lim.answer = stmt + connect
	}
	lim.acquire = acquire
	ms := strconv.FormatInt(stmt.Milliseconds(), 10)
	lms := strconv.FormatInt(lock.Milliseconds(), 10)
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		// plan_cache_mode auto, whatever the server's or role's default:
		// the statements that must be planned for their values run as
		// unnamed statements, the others as prepared statements that may
		// switch to their generic plan (see conn.args).
		_, err := c.Exec(ctx, `SELECT set_config('statement_timeout', $1, false), set_config('lock_timeout', $2, false), `+
			`set_config('plan_cache_mode', 'auto', false)`, ms, lms)
		return err
	}
	return cfg, lim, wcfg, nil
}

// DefaultMaxConns is the pool size when neither Options.MaxConns nor the
// URL's pool_max_conns sets one: four connections per CPU the process may
// use (reads wait on the database far more than they compute), at least
// 8, plus one per write lane.
func DefaultMaxConns(lanes int) int32 {
	return int32(max(4*runtime.GOMAXPROCS(0), 8) + lanes)
}

// parseTimeout reads a statement_timeout value: a number of milliseconds
// (PostgreSQL's unit), a Go duration ("1.5s", "500ms") or a PostgreSQL
// one ("2min", "1h", "1d").
func parseTimeout(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return time.Duration(n) * time.Millisecond, nil
	}
	switch {
	case strings.HasSuffix(v, "min"):
		v = strings.TrimSuffix(v, "in")
	case strings.HasSuffix(v, "d"):
		n, err := strconv.ParseFloat(strings.TrimSuffix(v, "d"), 64)
		if err != nil || n < 0 {
			return 0, errors.New("want a duration such as 30s")
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(strings.ReplaceAll(v, " ", ""))
	if err != nil || d < 0 {
		return 0, errors.New("want a duration such as 30s")
	}
	return d, nil
}

// acquire takes a pooled connection, waiting at most the acquire timeout:
// a pool that stays exhausted, or a database that cannot be reached, is
// store.ErrUnavailable; so is every call while the circuit breaker is
// open (see breaker.go), at once.
func (s *Store) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	if err := s.breaker.check(); err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, s.acquireTimeout)
	defer cancel()
	c, err := s.pool.Acquire(actx)
	if err == nil {
		s.breaker.succeeded()
		return c, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("postgres: connect: %w", mapErr(ctx, err))
	}
	if actx.Err() != nil {
		if st := s.pool.Stat(); st.AcquiredConns() >= st.MaxConns() {
			// Every connection is in use: the pool is too small for the
			// load, the database is there.
			return nil, fmt.Errorf("postgres: %w", store.Unavailable(store.CauseNoConn,
				fmt.Errorf("no free connection within %v: %v", s.acquireTimeout, err)))
		}
		// The time went on connecting or on pinging pooled
		// connections that did not answer.
		s.breaker.failed(store.CauseUnreachable)
		return nil, fmt.Errorf("postgres: %w", store.Unavailable(store.CauseUnreachable,
			fmt.Errorf("no connection could be made within %v: %v", s.acquireTimeout, err)))
	}
	err = mapErr(ctx, err)
	if cause := store.UnavailableCause(err); cause != "" {
		s.breaker.failed(cause)
	}
	return nil, fmt.Errorf("postgres: connect: %w", err)
}

// rollback ends ptx, also when ctx is already cancelled (a failed rollback
// closes the connection, which the pool then replaces).
func rollback(ctx context.Context, ptx pgx.Tx) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = ptx.Rollback(rctx)
}

// readTx runs fn in a REPEATABLE READ, READ ONLY transaction: the
// statements of one search or history page see one snapshot.
func (s *Store) readTx(ctx context.Context, fn func(q querier) error) error {
	return s.single(ctx, func(q querier) error {
		ptx, err := s.begin(ctx, q.(*pgxpool.Conn), pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return fmt.Errorf("postgres: begin: %w", mapErr(ctx, err))
		}
		defer rollback(ctx, ptx)
		return fn(ptx)
	})
}

// single runs fn, which only reads, with a pooled connection. When the
// connection turns out to have been closed by the server (a restart, a
// failover, an administrator), the pool drops every connection it holds
// and fn runs once more on a new one.
func (s *Store) single(ctx context.Context, fn func(q querier) error) error {
	for attempt := 0; ; attempt++ {
		c, err := s.acquire(ctx)
		if err != nil {
			return err
		}
		err = fn(c)
		c.Release()
		if err == nil || attempt > 0 || !lostConn(ctx, err) {
			return err
		}
		s.pool.Reset() // the others are likely gone too
	}
}

// closeWait bounds Close's wait for the writes queued and the connections
// in use (statements on a server that stopped answering end by
// themselves within the answer bound, or when their callers' contexts
// are cancelled, see serve's drain).
const closeWait = 5 * time.Second

// Close stops taking writes, waits for those queued, and closes the pool,
// waiting for connections in use to be released, all for at most
// closeWait: past it Close returns an error and leaves the rest to end
// on its own (the process is stopping). It is safe to call more than
// once.
func (s *Store) Close() error {
	s.breaker.close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.CloseWrites()
		s.stopAnalyzer()
		s.pool.Close()
	}()
	t := time.NewTimer(closeWait)
	defer t.Stop()
	select {
	case <-done:
		return nil
	case <-t.C:
		return fmt.Errorf("postgres: close: %w", store.Unavailable(store.CauseUnreachable,
			fmt.Errorf("connections still in use after %v, left to close", closeWait)))
	}
}
