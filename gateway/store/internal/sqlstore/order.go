package sqlstore

import (
	"context"
	"fmt"
	"math"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// OrderBy is the ORDER BY of q's sort keys ("?" placeholders, for Add),
// completed by last_updated then (type and) id so that the order is total
// and paging is stable. A date parameter sorts by its earliest Low
// ascending, its latest High descending; resources without a value come
// last.
func OrderBy(q *search.Query) (string, []any) {
	parts, args, _ := order(q)
	return strings.Join(parts, ", "), args
}

// orderCol is a term of a search's order and its direction: a column
// (c.last_updated, c.type or c.id), or a date sort key's expression with
// its arguments, key its place among the query's SortValues.
type orderCol struct {
	col  string
	args []any
	key  int // -1 for a column
	desc bool
}

// order is OrderBy's terms and arguments and the columns a cursor
// positions in (see after).
func order(q *search.Query) (parts []string, args []any, cols []orderCol) {
	seenLU, seenID := false, false
	column := func(col string, desc bool) {
		dir := " ASC"
		if desc {
			dir = " DESC"
		}
		parts = append(parts, col+dir)
		cols = append(cols, orderCol{col: col, key: -1, desc: desc})
	}
	keys := 0
	for _, k := range q.Sort {
		switch k.Param {
		case "_lastUpdated":
			if !seenLU {
				column("c.last_updated", k.Descending)
			}
			seenLU = true
		case "_id":
			if !seenID {
				if q.Type == "" {
					column("c.type", k.Descending)
				}
				column("c.id", k.Descending)
			}
			seenID = true
		default:
			expr, eargs := dateKey(k)
			dir := " ASC"
			if k.Descending {
				dir = " DESC"
			}
			parts = append(parts, expr+dir)
			args = append(args, eargs...)
			cols = append(cols, orderCol{col: expr, args: eargs, key: keys, desc: k.Descending})
			keys++
		}
	}
	if !seenLU {
		column("c.last_updated", false)
	}
	if !seenID {
		if q.Type == "" {
			column("c.type", false)
		}
		column("c.id", false)
	}
	return parts, args, cols
}

// dateKey is the value a date sort key orders c by ("?" placeholders and
// their arguments): its earliest Low ascending, its latest High
// descending; without a value, the end of the order.
func dateKey(k search.SortKey) (string, []any) {
	if k.Descending {
		return "COALESCE((SELECT MAX(d.high) FROM idx_date d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?)",
			[]any{k.Param, int64(math.MinInt64)}
	}
	return "COALESCE((SELECT MIN(d.low) FROM idx_date d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?)",
		[]any{k.Param, int64(math.MaxInt64)}
}

// after is the condition ("?" placeholders) that a row comes after cur in
// the order of cols: (c1 > v1) OR (c1 = v1 AND c2 > v2) OR ..., with <
// for a descending column. A type-level search orders by id without the
// type, and its cursor's type is the searched one.
func after(cols []orderCol, cur *search.Cursor) (string, []any) {
	val := func(c orderCol) any {
		switch {
		case c.key >= 0:
			return cur.Keys[c.key]
		case c.col == "c.last_updated":
			return cur.LastUpdated
		case c.col == "c.type":
			return cur.Type
		}
		return cur.ID
	}
	var ors []string
	var args []any
	for i, c := range cols {
		var ands []string
		for _, e := range cols[:i] {
			ands = append(ands, e.col+" = ?")
			args = append(append(args, e.args...), val(e))
		}
		op := " > ?"
		if c.desc {
			op = " < ?"
		}
		ands = append(ands, c.col+op)
		args = append(append(args, c.args...), val(c))
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}

// cursorAt is the Cursor of the match r in q's order: the values of q's
// date sort keys, read with c, and r's last update, type and id.
func (s *Store) cursorAt(ctx context.Context, c Conn, q *search.Query, r *store.Resource) (*search.Cursor, error) {
	cur := &search.Cursor{LastUpdated: r.LastUpdated.UnixMilli(), Type: r.Type, ID: r.ID}
	if q.SortValues() == 0 {
		return cur, nil
	}
	_, _, cols := order(q)
	b := NewBuilder(s.d, q.Type, s.now())
	b.Add("SELECT ")
	for _, col := range cols {
		if col.key >= 0 {
			if len(cur.Keys) > 0 {
				b.Add(", ")
			}
			b.Add(col.col, col.args...)
			cur.Keys = append(cur.Keys, 0)
		}
	}
	b.Add(" FROM current c WHERE c.type = ? AND c.id = ?", r.Type, r.ID)
	dest := make([]any, len(cur.Keys))
	for i := range cur.Keys {
		dest[i] = &cur.Keys[i]
	}
	if err := c.QueryRow(ctx, b.SQL(), b.Args()...).Scan(dest...); err != nil {
		return nil, fmt.Errorf("%s: search cursor: %w", s.d.Name, s.err(ctx, err))
	}
	return cur, nil
}
