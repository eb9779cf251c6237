package sqlstore

import (
	"math"
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

// orderCol is a column of a Keyset order and its direction.
type orderCol struct {
	col  string // c.last_updated, c.type or c.id
	desc bool
}

// order is OrderBy's terms and arguments and, for a Keyset order, its
// columns (nil otherwise).
func order(q *search.Query) (parts []string, args []any, cols []orderCol) {
	seenLU, seenID := false, false
	column := func(col string, desc bool) {
		dir := " ASC"
		if desc {
			dir = " DESC"
		}
		parts = append(parts, col+dir)
		cols = append(cols, orderCol{col, desc})
	}
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
			if k.Descending {
				parts = append(parts, "COALESCE((SELECT MAX(d.high) FROM idx_date d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?) DESC")
				args = append(args, k.Param, int64(math.MinInt64))
			} else {
				parts = append(parts, "COALESCE((SELECT MIN(d.low) FROM idx_date d WHERE d.type = c.type AND d.id = c.id AND d.param = ?), ?) ASC")
				args = append(args, k.Param, int64(math.MaxInt64))
			}
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
	if !q.Keyset() {
		cols = nil
	}
	return parts, args, cols
}

// after is the condition ("?" placeholders) that a row comes after cur in
// the order of cols: (c1 > v1) OR (c1 = v1 AND c2 > v2) OR ..., with <
// for a descending column. A type-level search orders by id without the
// type, and its cursor's type is the searched one.
func after(cols []orderCol, cur *search.Cursor) (string, []any) {
	val := func(col string) any {
		switch col {
		case "c.last_updated":
			return cur.LastUpdated
		case "c.type":
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
			args = append(args, val(e.col))
		}
		op := " > ?"
		if c.desc {
			op = " < ?"
		}
		ands = append(ands, c.col+op)
		args = append(args, val(c.col))
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return "(" + strings.Join(ors, " OR ") + ")", args
}
