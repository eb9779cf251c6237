package sqlstore

import (
	"context"
	"database/sql"
	"errors"
)

// Dialect is what differs between the backends' SQL. The statements are
// written once, with "?" placeholders, for both; a dialect field names
// each place where they part.
type Dialect struct {
	// Name prefixes error messages ("sqlite", "postgres").
	Name string
	// Placeholder is the placeholder of the n-th argument (from 1): every
	// "?" of a statement becomes one.
	Placeholder func(n int) string
	// Text, if not nil, makes a string storable in a text column (the
	// same on write and in queries, so values still match): it is applied
	// to search values, index entries, conditional keys and the ledger and
	// outbox fields. PostgreSQL text holds no NUL bytes nor invalid UTF-8.
	Text func(s string) string
	// NotDeleted is the condition that the current row c is not deleted
	// (the type of current.deleted: an INTEGER 0/1 or a BOOLEAN).
	NotDeleted string
	// RowLocks tells that concurrent write transactions run in parallel
	// (PostgreSQL at READ COMMITTED): a row the transaction reads and then
	// updates is read FOR UPDATE, and a purge of expired rows skips those
	// another writer holds (FOR UPDATE SKIP LOCKED). Without RowLocks
	// every write transaction holds the database's write lock from its
	// start (SQLite's BEGIN IMMEDIATE), which serialises them.
	RowLocks bool
	// Lock, if not "", is a statement that takes a lock on its one string
	// argument until the transaction ends (PostgreSQL: an advisory lock).
	// The outbox takes it on a destination, and on a destination and
	// order key, so that claims do not interleave and an order key's
	// items get their ids in commit order. Without RowLocks it is "".
	Lock string
	// JobLock is Lock for a bounded job submit (CreateJob with a
	// JobLimit), on its tenant, owner and kind: a lock of its own (its
	// key's first part differs from Lock's), so that a job submit never
	// waits for an outbox claim whose key hashes alike. Without RowLocks
	// it is "".
	JobLock string
	// WriteFence, if not "", is a statement every write transaction runs
	// first, before its function runs (and so before the engine takes
	// the instant of what it writes): it takes a shared lock held to the
	// transaction's end. AwaitFence takes the same lock exclusively, in a
	// transaction of its own that ends at once: it waits for every write
	// transaction holding the shared lock, of any process on the
	// database (PostgreSQL: advisory locks). Without them (SQLite, one
	// writer at a time) AwaitWrites is an empty write transaction.
	WriteFence, AwaitFence string
	// Arrays tells that a Go slice binds as an array (PostgreSQL): a set
	// of values travels as one argument (unnest, = ANY) instead of one
	// placeholder each, and a resource's index entries are inserted with
	// one statement per index table instead of one per entry.
	Arrays bool
	// JoinMatches tells that a search reads the resources of its page in
	// the statement that selects the page (PostgreSQL: the statement cuts
	// the page from the matches' keys and then joins its resources; see
	// outer in search.go). Otherwise the page's keys are selected first
	// and the resources read by key in a second statement (SQLite, which
	// would join, and read, every match's body before sorting).
	JoinMatches bool
	// RowID is the column that tells apart a table's rows that are
	// otherwise equal (SQLite: rowid; PostgreSQL: ctid, stable within a
	// statement): a date-sorted search keeps one index row for each
	// resource (see walkFrom).
	RowID string
	// Opaque prefixes a column whose equality to another must not be
	// carried over to that other's index (SQLite: "+", which also keeps
	// the planner from inferring the column's conditions for the other);
	// "" where the planner may (PostgreSQL). Where it is set, a date-sorted
	// search's walk is taken whatever the criteria (see walkFrom), so the
	// walk stops at a budget (see walkBudget) before it finds the page by
	// its criteria; a planner that weighs the walk against the criteria by
	// its statistics (PostgreSQL) needs none, and the budget's statement
	// cost it more than it saved (BenchmarkDateSort: 12-30 ms for 4-7 ms a
	// page).
	Opaque string
	// InsertRows begins a statement inserting many rows (valuesInsert);
	// "" is "INSERT INTO". SQLite's is "INSERT OR FAIL INTO": a statement
	// that may write several rows and may abort (a NOT NULL or UNIQUE
	// column does) makes SQLite copy every page it changes into a
	// statement journal first, to undo the statement alone; FAIL keeps
	// the rows before a failing one instead, so there is nothing to undo
	// and no journal (issue 19: 3-7% of a Synthea load's CPU, the copies
	// and the memory they took). A failed flush therefore leaves part of
	// its rows, as a Batch that stops at its failing statement leaves the
	// statements before it: the transaction is failed (tx.failed) and
	// commits nothing until a savepoint's rollback undoes the flush.
	InsertRows string
	// FlushAhead tells that a write transaction sends its buffered rows
	// ahead of the commit once they are many (see tx's flushing ahead):
	// where the database works in another process, on another core, while
	// the gateway goes on (PostgreSQL). SQLite's inserts run in the
	// gateway's own process, on its cores.
	FlushAhead bool
	// NonceKey, if not nil, is the argument a nonce key is bound as:
	// []byte for a BYTEA column (PostgreSQL, where text would fold
	// distinct keys into one, see Text). Otherwise the key string.
	NonceKey func(key string) any
	// Err classifies a driver error: it returns err wrapping
	// store.ErrConflict (a unique key taken, a serialization failure, a
	// deadlock: retry the transaction), store.ErrUnavailable (the database
	// cannot be reached, is busy or overloaded) or unchanged. An error
	// that already wraps either is returned unchanged; ctx is the call's,
	// whose own end is not the database's fault.
	Err func(ctx context.Context, err error) error
}

// DB is a backend's connections, as a Store uses them. The errors of the
// methods themselves (no connection, BEGIN failed) come back named and
// classified (see Dialect.Err); fn's errors come back unchanged.
type DB interface {
	// Begin starts a write transaction and, when first is not "", runs
	// first in it (Dialect.WriteFence or AwaitFence), in the same round
	// trip as BEGIN where the backend can.
	Begin(ctx context.Context, first string) (Tx, error)
	// Read runs fn, which only reads, with a connection. It may run fn
	// again, on a new connection, when the first turned out to be lost.
	Read(ctx context.Context, fn func(Conn) error) error
	// Snapshot is Read in a read-only transaction: fn's statements see
	// one snapshot of the database.
	Snapshot(ctx context.Context, fn func(Conn) error) error
	// Autocommit runs fn, whose statements write, each committing on its
	// own, with a connection. It runs fn once: a statement that may have
	// committed is never run again.
	Autocommit(ctx context.Context, fn func(Conn) error) error
	// Committed is told of each committed write transaction and the
	// number of resource versions it put (PostgreSQL keeps its planner
	// statistics fresh with it).
	Committed(ctx context.Context, puts int)
}

// Conn runs statements, on a connection or in a transaction. A Row for
// no row scans to an error that is sql.ErrNoRows.
type Conn interface {
	// Exec runs a statement and returns how many rows it changed.
	Exec(ctx context.Context, query string, args ...any) (int64, error)
	Query(ctx context.Context, query string, args ...any) (Rows, error)
	QueryRow(ctx context.Context, query string, args ...any) Row
}

// Rows are the rows of a query (as sql.Rows, pgx.Rows).
type Rows interface {
	Next() bool
	Scan(dest ...any) error
	Err() error
	Close()
}

// Row is the row of a query that returns at most one.
type Row interface {
	Scan(dest ...any) error
}

// Tx is a write transaction.
type Tx interface {
	Conn
	// Batch runs the statements in order, in one round trip where the
	// driver can, and returns the first error (the statements after it
	// may or may not have run).
	Batch(ctx context.Context, stmts []Stmt) error
	// QueryBatch runs the queries in order, in one round trip where the
	// driver can, and calls fn with the rows of each (fn closes them); it
	// returns the first error, of a query or of fn.
	QueryBatch(ctx context.Context, stmts []Stmt, fn func(i int, rows Rows) error) error
	// Commit commits. The Tx is done afterwards, also after an error.
	Commit(ctx context.Context) error
	// Rollback ends the transaction without its writes, also when ctx has
	// ended. A failed rollback is the connection's end, not an error.
	Rollback(ctx context.Context)
}

// Stmt is one statement of a Batch.
type Stmt struct {
	SQL  string
	Args []any
	// Affected, when not nil, is increased by the rows the statement
	// changed (Tx.Batch).
	Affected *int64
}

// errNoRows tells whether err is a Row's "no rows" (pgx.ErrNoRows is
// sql.ErrNoRows too).
func errNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
