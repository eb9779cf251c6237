package sqlstore

import (
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
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
// direction is an ORDER BY term's direction.
func direction(desc bool) string {
	if desc {
		return " DESC"
	}
	return " ASC"
}

// positions in (see after).
func order(q *search.Query) (parts []string, args []any, cols []orderCol) {
	seenLU, seenID := false, false
	column := func(col string, desc bool) {
		parts = append(parts, col+direction(desc))
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
			parts = append(parts, expr+direction(k.Descending))
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
	col, _ := walkOrder(k)
	agg := "MIN"
	if k.Descending {
		agg = "MAX"
	}
	return "COALESCE((SELECT " + agg + "(d." + col + ") FROM idx_date d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?)",
		[]any{k.Param, noValue(k)}
}

// after is the condition ("?" placeholders) that a row comes after cur in
// the order of cols: c1 > v1 OR (c1 = v1 AND (c2 > v2 OR (c2 = v2 AND
// ...))), with < for a descending column, nested so that a date sort
// key's expression (a subquery) is written twice, not once for each
// column after it. A type-level search orders by id without the type, and
// its cursor's type is the searched one.
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
	var sb strings.Builder
	var args []any
	for i, c := range cols {
		op := " > ?"
		if c.desc {
			op = " < ?"
		}
		sb.WriteString("(" + c.col + op)
		args = append(append(args, c.args...), val(c))
		if i < len(cols)-1 {
			sb.WriteString(" OR (" + c.col + " = ? AND ")
			args = append(append(args, c.args...), val(c))
		}
	}
	for i := range cols {
		sb.WriteString(")")
		if i < len(cols)-1 {
			sb.WriteString(")")
		}
	}
	return sb.String(), args
}
