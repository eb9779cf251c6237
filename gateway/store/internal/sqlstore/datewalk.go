package sqlstore

import (
	"math"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// A search sorted first by a date parameter orders its matches by a value
// each has to be computed from its index rows (dateKey: the earliest Low
// ascending, the latest High descending). Computed for every match and
// sorted, a page cost as much as the matches were many: 0.85-1.5 s for
// AuditEvent?_sort=-date&_count=20 over 17,740 AuditEvents on PostgreSQL.
// A walked search instead reads the parameter's index rows in the order
// of that value (idx_date_low or idx_date_high: type, param, value), keeps
// for each resource the one row that carries its value (the earliest Low
// or the latest High; of equal ones the first by the table's row id) and
// tests the criteria on that row's resource, until the page is full: its
// cost follows the page, not the matches. The matches without a value,
// which sort last, are a second statement (undatedStatement), run only
// when a page reaches them.

// form is the shape of a search's page statement.
type form int

const (
	// formAll orders every match by its computed sort keys.
	formAll form = iota
	// formDated walks the first sort key's index rows: the matches with
	// a value of it.
	formDated
	// formUndated orders the matches without a value of the first sort
	// key (each sorts by noValue).
	formUndated
)

// formOf is the form of q's page statement: formAll unless q is walked;
// then formUndated when its cursor is already among the matches without a
// value, formDated otherwise.
func formOf(q *search.Query) form {
	if !walked(q) {
		return formAll
	}
	if cursorUsable(q) && q.After.Keys[0] == noValue(q.Sort[0]) {
		return formUndated
	}
	return formDated
}

// walked reports whether q's page is walked from the index rows of its
// first sort key, a date parameter: q is ordered, of one type, and starts
// at its cursor or at the first match (an offset past the matches with a
// value cannot be told from the walk), and none of its criteria is
// selective (see selective) or a condition on the sorted parameter or on
// _lastUpdated: a few matches cost less found by their criteria and
// sorted than looked for along a walk of every value.
func walked(q *search.Query) bool {
	if unordered(q) || q.Type == "" || len(q.Sort) == 0 || q.Compartment != nil {
		return false
	}
	if p := q.Sort[0].Param; p == "_lastUpdated" || p == "_id" {
		return false
	}
	if !cursorUsable(q) && q.Offset > 0 {
		return false
	}
	for i := range q.Clauses {
		cl := &q.Clauses[i]
		if cl.Param == q.Sort[0].Param || cl.Param == "_lastUpdated" || selective(cl) {
			// A range of the walked parameter (or its :missing) or of
			// _lastUpdated: its matches are found by their own index,
			// where a walk could read everything before them (date=ge
			// near the end of the order: 1.4 ms found, 278 ms walked,
			// over 30,000 Encounters).
			return false
		}
	}
	return true
}

// selective reports whether a clause usually matches few resources: ids,
// identifiers, references (a patient's, an encounter's), chains and
// reverse chains. Tokens such as a code or a status, strings, dates and
// quantities match many as often as not, and :missing and :not clauses
// are never counted selective.
func selective(cl *search.Clause) bool {
	switch {
	case cl.Missing != nil || cl.Modifier == "not":
		return false
	case cl.Chain != nil || cl.Has != nil:
		return true
	case cl.Param == "_id" || cl.Param == "identifier":
		return true
	}
	return cl.Type == search.TypeReference
}

// noValue is the value a resource without a value of date sort key k
// sorts by: the end of the order.
func noValue(k search.SortKey) int64 {
	if k.Descending {
		return math.MinInt64
	}
	return math.MaxInt64
}

// walkOrder is the idx_date column a walk of date sort key k reads in
// order, and the comparison (" < " or " > ") of a value that comes before
// another in that order: the earliest Low first ascending, the latest
// High first descending.
func walkOrder(k search.SortKey) (col, before string) {
	if k.Descending {
		return "high", " > "
	}
	return "low", " < "
}

// notBefore is the comparison of a value that comes after another in the
// order of k, or is equal to it (before's complement).
func notBefore(k search.SortKey) string {
	if k.Descending {
		return " <= "
	}
	return " >= "
}

// notAfter is the comparison of a value that comes before another in the
// order of k, or is equal to it.
func notAfter(k search.SortKey) string {
	if k.Descending {
		return " >= "
	}
	return " <= "
}

// walkCol is the first term of the order of a walked search's page (in
// formDated): the walked row's value.
func walkCol(k search.SortKey) orderCol {
	col, _ := walkOrder(k)
	return orderCol{col: "w." + col, key: 0, desc: k.Descending}
}

// walkFrom writes the FROM of a walked search's page and its conditions
// on the walked rows w (to be followed by the matches' condition on c).
// CROSS JOIN makes SQLite read w first and Dialect.Opaque keeps it from
// reading w by the ids the criteria name, whatever the criteria (it would
// rather find the matches of a code first and sort them all: see walked
// for when that is better); PostgreSQL's planner takes it as any join and
// weighs the walk against the criteria by its statistics.
// The rows w are the rows of k's parameter with a value (not noValue), or
// when until is not nil with a value not after *until (the walk's budget:
// see walkBudget), each the one that carries its resource's sort key: no
// other row of the resource's parameter is earlier (later) or, as early,
// before it in the table.
func walkFrom(b *Builder, typ string, k search.SortKey, until *int64) {
	col, before := walkOrder(k)
	end, cmp := noValue(k), before
	if until != nil {
		end, cmp = *until, notAfter(k)
	}
	b.Add(` FROM idx_date w CROSS JOIN current c
		WHERE c.type = w.type AND c.id = `+b.d.Opaque+`w.id AND w.type = ? AND w.param = ? AND w.`+col+cmp+`?
		AND NOT EXISTS (SELECT 1 FROM idx_date e WHERE e.type = w.type AND e.id = w.id AND e.param = w.param
			AND (e.`+col+before+`w.`+col+` OR e.`+col+` = w.`+col+` AND e.`+b.d.RowID+` < w.`+b.d.RowID+`)) AND `,
		typ, k.Param, end)
}

// walkBound writes the condition that starts a walk (of the rows named
// alias) at the cursor's value v of k (the cursor's condition, after,
// then orders the rows of v): the walk reads the index from there, not
// from its start.
func walkBound(b *Builder, alias string, k search.SortKey, v int64) {
	col, _ := walkOrder(k)
	b.Add(" AND "+alias+col+notBefore(k)+"?", v)
}

// walkBudgetPerRow is how many index rows a walk reads, for each row its
// page statement selects, before it gives up for the statement that finds
// the matches by their criteria (formAll): a rare code's, or a small
// tenant's, matches may lie anywhere along the index (idx_date has no
// tenant), and a walk to the end of it read 30,000 rows for 20 (0.56 ms
// found by the code and sorted, 219 ms walked).
const walkBudgetPerRow = 50

// walkBudget is the statement of the last value a walk of q's page reads
// with a page statement of limit rows: the value of the
// (walkBudgetPerRow*limit)-th index row of q's first sort key from where
// the walk starts (its cursor's value, or the start of the order). It
// selects no row when the index holds fewer: the walk may then read on to
// its end. The budget is a range of values, never a count of rows, so
// that no run of ties is cut: every row of the last value is read.
func walkBudget(d *Dialect, q *search.Query, limit int) Stmt {
	k := q.Sort[0]
	col, before := walkOrder(k)
	b := NewBuilder(d, q.Type, time.Time{})
	b.Add("SELECT "+col+" FROM idx_date WHERE type = ? AND param = ? AND "+col+before+"?", q.Type, k.Param, noValue(k))
	if cursorUsable(q) {
		walkBound(b, "", k, q.After.Keys[0])
	}
	b.Add(" ORDER BY "+col+direction(k.Descending)+" LIMIT 1 OFFSET ?", walkBudgetPerRow*limit-1)
	return Stmt{SQL: b.SQL(), Args: b.Args()}
}

// undatedCond writes the condition (with AND) that the match c has no
// value of date sort key k: its sort key is noValue.
func undatedCond(b *Builder, k search.SortKey) {
	col, before := walkOrder(k)
	b.Add(" AND NOT EXISTS (SELECT 1 FROM idx_date u WHERE u.type = c.type AND u.id = c.id AND u.param = ? AND u."+col+before+"?)",
		k.Param, noValue(k))
}
