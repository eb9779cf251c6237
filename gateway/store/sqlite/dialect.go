package sqlite

import (
	"context"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// dialect is SQLite's flavour of the shared SQL (see sqlstore.Dialect):
// "?" placeholders, deleted as INTEGER 0/1, no row locks or advisory locks
// (every write transaction holds the write lock from BEGIN IMMEDIATE), no
// arrays, and a search's page read by key after it is selected.
var dialect = &sqlstore.Dialect{
	Name:        "sqlite",
	Placeholder: func(int) string { return "?" },
	NotDeleted:  "c.deleted = 0",
	RowID:       "rowid",
	Opaque:      "+",
	Err:         func(_ context.Context, err error) error { return mapErr(err) },
}
