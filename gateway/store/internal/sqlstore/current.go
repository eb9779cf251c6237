package sqlstore

import (
	"context"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// CurrentSinceSQL and CurrentAfterSQL are CurrentAfter's first page and
// its next ones: the current rows of a type in the order of the index
// current_type_lu (type, last_updated, id), from a time on, or after the
// last row of a page (a row comparison, so that the index scan starts
// there, as AttemptsAfterSQL's).
const (
	CurrentSinceSQL = `SELECT id, version, last_updated FROM current
			WHERE type = ? AND last_updated >= ? ORDER BY type, last_updated, id LIMIT ?`
	CurrentAfterSQL = `SELECT id, version, last_updated FROM current
			WHERE type = ? AND (last_updated, id) > (?, ?) ORDER BY type, last_updated, id LIMIT ?`
)

// CurrentAfter implements store.Store.
func (s *Store) CurrentAfter(ctx context.Context, typ string, after *store.Listed, since time.Time, limit int) ([]store.Listed, error) {
	if limit <= 0 {
		limit = 1000
	}
	q, args := CurrentSinceSQL, []any{typ, since.UnixMilli(), limit}
	if after != nil {
		q, args = CurrentAfterSQL, []any{typ, after.At.UnixMilli(), after.ID, limit}
	}
	var out []store.Listed
	err := s.db.Read(ctx, func(c Conn) error {
		out = out[:0] // fn may run again
		rows, err := c.Query(ctx, s.bind(q), args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var l store.Listed
			var at int64
			if err := rows.Scan(&l.ID, &l.Version, &at); err != nil {
				return err
			}
			l.At = time.UnixMilli(at)
			out = append(out, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("%s: current %s rows: %w", s.d.Name, typ, s.err(ctx, err))
	}
	return out, nil
}
