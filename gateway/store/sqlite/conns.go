package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// conns are a Store's two pools as sqlstore uses them (sqlstore.DB):
// write transactions and nonces on the one write connection, reads on the
// read-only pool.
type conns struct {
	w, r  *sql.DB
	stmts map[string]*sql.Stmt // prepared on w, used in write transactions
}

// Begin starts a BEGIN IMMEDIATE transaction (see dsn) on the write
// connection, waiting for a Write in progress.
func (c *conns) Begin(ctx context.Context) (sqlstore.Tx, error) {
	stx, err := c.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("sqlite: begin: %w", mapErr(err))
	}
	return &tx{conn: conn{stx}, stx: stx, stmts: c.stmts}, nil
}

// Read runs fn on the read-only pool.
func (c *conns) Read(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return fn(conn{c.r})
}

// Snapshot runs fn in a read transaction of the read-only pool.
func (c *conns) Snapshot(ctx context.Context, fn func(sqlstore.Conn) error) error {
	rtx, err := c.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("sqlite: begin read: %w", mapErr(err))
	}
	defer rtx.Rollback()
	return fn(conn{rtx})
}

// Autocommit runs fn on the write connection, outside a transaction: each
// statement takes the write lock (waiting for a Write in progress, in this
// process or another) and commits.
func (c *conns) Autocommit(ctx context.Context, fn func(sqlstore.Conn) error) error {
	return fn(conn{c.w})
}

// Committed does nothing: SQLite's planner statistics are seeded (see
// plannerStats).
func (c *conns) Committed(context.Context, int) {}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// conn is a sqlstore.Conn on a pool or a transaction.
type conn struct{ q querier }

func (c conn) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	res, err := c.q.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (c conn) Query(ctx context.Context, query string, args ...any) (sqlstore.Rows, error) {
	r, err := c.q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return rows{r}, nil
}

func (c conn) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	return c.q.QueryRowContext(ctx, query, args...)
}

// rows are sql.Rows as sqlstore.Rows (Close's error says nothing Err does
// not).
type rows struct{ *sql.Rows }

func (r rows) Close() { _ = r.Rows.Close() }

// tx is a write transaction as sqlstore.Tx: the statements of
// Store.WriteStatements run prepared.
type tx struct {
	conn
	stx   *sql.Tx
	stmts map[string]*sql.Stmt
}

func (t *tx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	st := t.stmts[query]
	if st == nil {
		return t.conn.Exec(ctx, query, args...)
	}
	res, err := t.stx.StmtContext(ctx, st).ExecContext(ctx, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (t *tx) QueryRow(ctx context.Context, query string, args ...any) sqlstore.Row {
	if st := t.stmts[query]; st != nil {
		return t.stx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	return t.conn.QueryRow(ctx, query, args...)
}

// Batch runs the statements one by one (SQLite runs in process: there are
// no round trips to save).
func (t *tx) Batch(ctx context.Context, stmts []sqlstore.Stmt) error {
	for _, st := range stmts {
		if _, err := t.Exec(ctx, st.SQL, st.Args...); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) Commit(context.Context) error { return t.stx.Commit() }

func (t *tx) Rollback(context.Context) { _ = t.stx.Rollback() }
