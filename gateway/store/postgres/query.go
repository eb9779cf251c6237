package postgres

import (
	"strconv"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// dialect is PostgreSQL's flavour of the portable search SQL (see sqlstore):
// numbered placeholders ($1, $2, ...) and string arguments made storable
// (see text).
var dialect = &sqlstore.Dialect{
	Name:        "postgres",
	NotDeleted:  "NOT c.deleted",
	Placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	Text:        text,
}
