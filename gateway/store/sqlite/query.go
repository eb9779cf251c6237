package sqlite

import (
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// dialect is SQLite's flavour of the portable search SQL (see sqlstore).
var dialect = &sqlstore.Dialect{
	Name:        "sqlite",
	NotDeleted:  "c.deleted = 0",
	Placeholder: func(int) string { return "?" },
}

// builder accumulates the condition of a search (built by sqlstore) and its
// arguments.
type builder struct {
	sb   strings.Builder
	args []any
	typ  string    // the query's resource type ("" for every type)
	now  time.Time // for date "ap"
}

// where writes the condition selecting the matches of q over current c.
func (b *builder) where(q *search.Query) error {
	w := sqlstore.NewBuilder(dialect, b.typ, b.now)
	if err := w.Where(q); err != nil {
		return err
	}
	b.sb.WriteString(w.SQL())
	b.args = append(b.args, w.Args()...)
	return nil
}

// orderBy is the ORDER BY of q's sort keys (see sqlstore.OrderBy).
func orderBy(q *search.Query) (string, []any) { return sqlstore.OrderBy(q) }
