package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// conns are a Store's pool as sqlstore uses it (sqlstore.DB).
type conns struct{ s *Store }

// Begin starts a READ COMMITTED transaction on a pooled connection, with
// first (a fence's lock) in BEGIN's round trip: one query of the simple
// protocol. When it fails the connection is left in an aborted
// transaction, which the pool closes on release. When the connection
// turns out to have been closed by the server, the pool drops every
// connection it holds and BEGIN runs once more on a new one (nothing was
// written yet).
func (c conns) Begin(ctx context.Context, first string) (sqlstore.Tx, error) {
	s := c.s
	opts := pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}
	if first != "" {
		opts.BeginQuery = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; " + first
	}
	for attempt := 0; ; attempt++ {
		pc, err := s.acquire(ctx)
		if err != nil {
			return nil, err
		}
		ptx, err := s.begin(ctx, pc, opts)
		if err == nil {
			return &tx{conn: s.conn(ptx), ptx: ptx, c: pc}, nil
		}
		pc.Release()
		if attempt > 0 || !lostConn(ctx, err) {
			return nil, fmt.Errorf("postgres: begin: %w", mapErr(ctx, err))
		}
		s.pool.Reset() // the others are likely gone too
	}
}

// Read runs fn with a pooled connection (see Store.single).
func (c conns) Read(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return c.s.single(ctx, func(q querier) error { return fn(c.s.conn(q)) })
}

// Snapshot runs fn in a REPEATABLE READ, READ ONLY transaction (see
// Store.readTx).
func (c conns) Snapshot(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return c.s.readTx(ctx, func(q querier) error { return fn(c.s.conn(q)) })
}

// Autocommit runs fn with a pooled connection, once: when the connection
// turns out to have been closed by the server, the pool drops every
// connection it holds, and fn's error (store.ErrUnavailable) is returned.
func (c conns) Autocommit(ctx context.Context, fn func(sqlstore.Conn) error) error {
	s := c.s
	pc, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer pc.Release()
	err = fn(s.conn(pc))
	if err != nil && lostConn(ctx, err) {
		s.pool.Reset() // the others are likely gone too
	}
	return err
}

// Committed counts the resources written, for the planner statistics (see
// analyze.go).
func (c conns) Committed(ctx context.Context, puts int) { c.s.wrote(ctx, puts) }

// querier is what pgx.Tx and *pgxpool.Conn have in common.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// conn is a sqlstore.Conn on a pooled connection or a transaction.
type conn struct {
	q       querier
	generic map[string]bool // statements that may run on a generic plan
	answer  time.Duration   // see limits.answer
}

// conn is a sqlstore.Conn on q.
func (s *Store) conn(q querier) conn { return conn{q: q, generic: s.generic, answer: s.answer} }

// begin starts a transaction on pc, waiting for the server's answer at
// most the answer bound.
func (s *Store) begin(ctx context.Context, pc *pgxpool.Conn, opts pgx.TxOptions) (pgx.Tx, error) {
	bctx, cancel := bound(ctx, s.answer)
	defer cancel()
	ptx, err := pc.BeginTx(bctx, opts)
	return ptx, noAnswer(ctx, bctx, s.answer, err)
}

// bound is ctx ending after answer too (none when answer is 0): the
// context of one round trip to the server (a statement, a batch, BEGIN,
// COMMIT). pgx closes the connection when it ends before the answer.
func bound(ctx context.Context, answer time.Duration) (context.Context, context.CancelFunc) {
	if answer <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, answer)
}

// noAnswer is err, or when bctx (bound of ctx) ended before the server
// answered and ctx did not, store.ErrUnavailable: the server did not
// answer within the statement timeout and more (a host gone without a
// TCP reset).
func noAnswer(ctx, bctx context.Context, answer time.Duration, err error) error {
	if err == nil || ctx.Err() != nil || !errors.Is(bctx.Err(), context.DeadlineExceeded) {
		return err
	}
	return store.Unavailable(store.CauseUnreachable, fmt.Errorf("%w within %v: %w", errNoAnswer, answer, err))
}

// errNoAnswer marks a round trip the server did not answer within the
// answer bound: running it again on another connection is no use (the
// server is likely gone), so it is not retried (lostConn).
var errNoAnswer = errors.New("no answer from the server")

// boundRows are rows read under a bound context, which their end cancels.
type boundRows struct {
	pgx.Rows
	ctx, bctx context.Context
	answer    time.Duration
	cancel    context.CancelFunc
}

func (r *boundRows) Next() bool {
	if r.Rows.Next() {
		return true
	}
	r.cancel()
	return false
}

func (r *boundRows) Err() error { return noAnswer(r.ctx, r.bctx, r.answer, r.Rows.Err()) }

func (r *boundRows) Close() {
	r.Rows.Close()
	r.cancel()
}

// boundRow is a row read under a bound context, which Scan cancels.
type boundRow struct {
	pgx.Row
	ctx, bctx context.Context
	answer    time.Duration
	cancel    context.CancelFunc
}

func (r *boundRow) Scan(dest ...any) error {
	defer r.cancel()
	return noAnswer(r.ctx, r.bctx, r.answer, r.Row.Scan(dest...))
}

// Plans.
//
// A statement the store builds for a query (a search and its count, an
// include, a chain, a listing) is planned for its values every time it
// runs: its best plan depends on how common the values are (a patient
// with thousands of reference rows against one with ten), and the generic
// plan PostgreSQL switches a prepared statement to after five runs reads
// the common value's range for every value (issue 19: a count at 57.7 ms
// against 2.1 ms). It runs as pgx's unnamed
// statement (QueryExecModeCacheDescribe), which PostgreSQL plans anew at
// each run. The store's fixed statements by key (sqlstore's
// WriteStatements and ReadStatements: a read by id, a version check, a
// key claim, the deletion of a resource's index rows), the statements
// sqlstore marks sqlstore.PlanOnce (a conditional lookup) and the
// statements of a Batch (inserts, updates by key) run as prepared
// statements under the default plan_cache_mode: PostgreSQL switches them
// to their generic plan after five runs and plans them no more. Planned
// at every run, the conditional lookups of session records took 430 µs
// of planning for 14 µs of execution: two fifths of the database's CPU
// while ingesting them (each of a record's 56 entries has one).

// args are the arguments of sql as conn passes them to pgx: a statement
// that is not generic runs as an unnamed statement.
func (c conn) args(sql string, args []any) []any {
	if c.generic[sql] || strings.HasPrefix(sql, sqlstore.PlanOnce) {
		return args
	}
	return append([]any{pgx.QueryExecModeCacheDescribe}, args...)
}

func (c conn) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	bctx, cancel := bound(ctx, c.answer)
	defer cancel()
	tag, err := c.q.Exec(bctx, sql, c.args(sql, args)...)
	return tag.RowsAffected(), noAnswer(ctx, bctx, c.answer, err)
}

func (c conn) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	bctx, cancel := bound(ctx, c.answer)
	rows, err := c.q.Query(bctx, sql, c.args(sql, args)...)
	if err != nil {
		cancel()
		return nil, noAnswer(ctx, bctx, c.answer, err)
	}
	return &boundRows{Rows: rows, ctx: ctx, bctx: bctx, answer: c.answer, cancel: cancel}, nil
}

func (c conn) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	bctx, cancel := bound(ctx, c.answer)
	return &boundRow{Row: c.q.QueryRow(bctx, sql, c.args(sql, args)...), ctx: ctx, bctx: bctx, answer: c.answer, cancel: cancel}
}

// tx is a write transaction as sqlstore.Tx; it releases its connection
// when it ends.
type tx struct {
	conn
	ptx pgx.Tx
	c   *pgxpool.Conn
}

// Batch sends the statements in one round trip.
func (t *tx) Batch(ctx context.Context, stmts []sqlstore.Stmt) error {
	bctx, cancel := bound(ctx, t.answer)
	defer cancel()
	br := t.send(bctx, stmts)
	for _, st := range stmts {
		tag, err := br.Exec()
		if err != nil {
			_ = br.Close()
			return noAnswer(ctx, bctx, t.answer, err)
		}
		if st.Affected != nil {
			*st.Affected += tag.RowsAffected()
		}
	}
	return noAnswer(ctx, bctx, t.answer, br.Close())
}

// QueryBatch sends the queries in one round trip. They run as prepared
// statements (pgx's default for a batch): the conditional lookups it
// serves are sqlstore.PlanOnce.
func (t *tx) QueryBatch(ctx context.Context, stmts []sqlstore.Stmt, fn func(i int, rows sqlstore.Rows) error) error {
	bctx, cancel := bound(ctx, t.answer)
	defer cancel()
	br := t.send(bctx, stmts)
	for i := range stmts {
		rows, err := br.Query()
		if err == nil {
			err = fn(i, rows)
		}
		if err != nil {
			_ = br.Close()
			return noAnswer(ctx, bctx, t.answer, err)
		}
	}
	return noAnswer(ctx, bctx, t.answer, br.Close())
}

// send sends stmts as one pgx batch; the caller reads the results in
// order and closes them.
func (t *tx) send(ctx context.Context, stmts []sqlstore.Stmt) pgx.BatchResults {
	b := &pgx.Batch{}
	for _, st := range stmts {
		b.Queue(st.SQL, st.Args...)
	}
	return t.ptx.SendBatch(ctx, b)
}

func (t *tx) Commit(ctx context.Context) error {
	defer t.c.Release()
	bctx, cancel := bound(ctx, t.answer)
	defer cancel()
	err := t.ptx.Commit(bctx)
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return errors.New("the transaction was rolled back after a failed statement")
	}
	return noAnswer(ctx, bctx, t.answer, err)
}

func (t *tx) Rollback(ctx context.Context) {
	rollback(ctx, t.ptx)
	t.c.Release()
}
