package sqlite

import (
	"context"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// dialect is SQLite's flavour of the shared SQL (see sqlstore.Dialect):
// "?" placeholders, deleted as INTEGER 0/1, no row locks or advisory locks
// (every write transaction holds the write lock from BEGIN IMMEDIATE), no
// arrays, a search's page read by key after it is selected, and rows
// inserted many to a statement with no statement journal (InsertRows).
var dialect = &sqlstore.Dialect{
	Name:        "sqlite",
	Placeholder: func(int) string { return "?" },
	NotDeleted:  "c.deleted = 0",
	RowID:       "rowid",
	Opaque:      "+",
	InsertRows:  "INSERT OR FAIL INTO",
	Err:         func(_ context.Context, err error) error { return mapErr(err) },
}
