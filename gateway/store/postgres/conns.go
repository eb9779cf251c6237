package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// conns are a Store's pool as sqlstore uses it (sqlstore.DB).
type conns struct{ s *Store }

// Begin starts a READ COMMITTED transaction on a pooled connection. When
// the connection turns out to have been closed by the server, the pool
// drops every connection it holds and BEGIN runs once more on a new one
// (nothing was written yet).
func (c conns) Begin(ctx context.Context) (sqlstore.Tx, error) {
	s := c.s
	for attempt := 0; ; attempt++ {
		pc, err := s.acquire(ctx)
		if err != nil {
			return nil, err
		}
		ptx, err := pc.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite})
		if err == nil {
			return &tx{conn: conn{ptx}, ptx: ptx, c: pc}, nil
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
	return c.s.single(ctx, func(q querier) error { return fn(conn{q}) })
}

// Snapshot runs fn in a REPEATABLE READ, READ ONLY transaction (see
// Store.readTx).
func (c conns) Snapshot(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return c.s.readTx(ctx, func(q querier) error { return fn(conn{q}) })
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
	err = fn(conn{pc})
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
type conn struct{ q querier }

func (c conn) Exec(ctx context.Context, sql string, args ...any) (int64, error) {
	tag, err := c.q.Exec(ctx, sql, args...)
	return tag.RowsAffected(), err
}

func (c conn) Query(ctx context.Context, sql string, args ...any) (sqlstore.Rows, error) {
	rows, err := c.q.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return rows, nil
}

func (c conn) QueryRow(ctx context.Context, sql string, args ...any) sqlstore.Row {
	return c.q.QueryRow(ctx, sql, args...)
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
	b := &pgx.Batch{}
	for _, st := range stmts {
		b.Queue(st.SQL, st.Args...)
	}
	return t.ptx.SendBatch(ctx, b).Close()
}

func (t *tx) Commit(ctx context.Context) error {
	defer t.c.Release()
	err := t.ptx.Commit(ctx)
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return errors.New("the transaction was rolled back after a failed statement")
	}
	return err
}

func (t *tx) Rollback(ctx context.Context) {
	rollback(ctx, t.ptx)
	t.c.Release()
}
