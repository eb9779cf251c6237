package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Search implements store.Store: q over the current, non-deleted
// resources of q.Tenant. When the search takes more than one statement
// that could see different data (a total, includes) they run in one
// snapshot. A nil query, or one the package cannot run (see the package
// documentation), is an error.
func (s *Store) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	if q == nil {
		return nil, fmt.Errorf("%s: search: nil query", s.d.Name)
	}
	if auditsSearched(q) {
		if err := s.catchUpAudits(ctx); err != nil {
			return nil, err
		}
	}
	var pg *store.Page
	run := func(c Conn) error {
		var err error
		pg, err = s.search(ctx, c, q, true)
		return err
	}
	var err error
	if q.Total || len(q.Includes) > 0 || len(q.RevIncludes) > 0 || !q.SummaryCount && formOf(q) == formDated {
		// (A walked search's page takes more than one statement: its
		// budget, and may take the statement of its matches without a
		// date or of all its matches: see search.)
		err = s.db.Snapshot(ctx, run)
	} else {
		// The page's keys and then its resources (see Dialect.JoinMatches)
		// need no snapshot: a version, once written, never changes.
		err = s.db.Read(ctx, run)
	}
	return pg, err
}

// Include implements store.Store: q's includes from the resources from,
// in one snapshot.
func (s *Store) Include(ctx context.Context, q *search.Query, from []*store.Resource) ([]*store.Resource, error) {
	if q == nil {
		return nil, fmt.Errorf("%s: include: nil query", s.d.Name)
	}
	if len(from) == 0 || len(q.Includes) == 0 && len(q.RevIncludes) == 0 {
		return nil, nil
	}
	keys := make([]key, len(from))
	audits := auditsSearched(q)
	for i, r := range from {
		keys[i] = key{r.Type, r.ID, r.Version}
		audits = audits || r.Type == "AuditEvent" // its own index rows are followed
	}
	if audits {
		if err := s.catchUpAudits(ctx); err != nil {
			return nil, err
		}
	}
	var out []*store.Resource
	err := s.db.Snapshot(ctx, func(c Conn) error {
		var err error
		out, err = s.includes(ctx, c, q, keys)
		return err
	})
	return out, err
}

// key identifies one resource version.
type key struct {
	typ, id string
	version int64
}

// search runs q with c: the matches, the total if asked for and, if
// withIncludes, the included resources.
func (s *Store) search(ctx context.Context, c Conn, q *search.Query, withIncludes bool) (*store.Page, error) {
	if q == nil {
		return nil, fmt.Errorf("%s: search: nil query", s.d.Name)
	}
	pg := &store.Page{Total: -1}
	if q.Total || q.SummaryCount {
		count, err := countStatement(s.d, q, s.now())
		if err != nil {
			return nil, err
		}
		if err := c.QueryRow(ctx, count.SQL, count.Args...).Scan(&pg.Total); err != nil {
			return nil, fmt.Errorf("%s: search count: %w", s.d.Name, s.err(ctx, err))
		}
	}
	if q.SummaryCount {
		return pg, nil
	}

	n, _ := pageBounds(q.Count, q.Offset)
	f := formOf(q)
	var until *int64 // a walk's budget (see walkBudget): a forced walk's (see Dialect.Opaque)
	if f == formDated && s.d.Opaque != "" {
		bst := walkBudget(s.d, q, n+1)
		var v int64
		switch err := c.QueryRow(ctx, bst.SQL, bst.Args...).Scan(&v); {
		case err == nil:
			until = &v
		case !errNoRows(err):
			return nil, fmt.Errorf("%s: search walk budget: %w", s.d.Name, s.err(ctx, err))
		}
	}
	page, err := statements(s.d, q, s.now(), f, n+1, until)
	if err != nil {
		return nil, err
	}

	var keys []key
	// The values of the date sort keys of each match, which the page's
	// statement selects after its columns (see SearchStatements).
	vals := sortValues{n: q.SortValues()}
	join := joinMatches(s.d, q)
	got := 0 // the rows the statements selected
	budget := &store.PageBudget{Max: q.MaxBytes}
	run := func(st Stmt) error {
		rows, err := c.Query(ctx, st.SQL, st.Args...)
		if err == nil {
			vals.Rows = rows
			if join {
				var res []*store.Resource
				res, pg.Cut, err = collectWithin(&vals, budget)
				pg.Matches, got = append(pg.Matches, res...), got+len(res)
			} else {
				n := len(keys)
				keys, err = scanKeys(&vals, keys)
				got += len(keys) - n
			}
		}
		if err != nil {
			return fmt.Errorf("%s: search: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	}
	if err := run(page); err != nil {
		return nil, err
	}
	if f == formDated && got < n+1 && !pg.Cut { // (a walked search peeks: n is peeked(q))
		var rest Stmt
		if until != nil {
			// The walk reached the end of its budget before the page was
			// full: the page is found by the criteria instead.
			keys, pg.Matches, vals.of, got = nil, nil, nil, 0
			*budget = store.PageBudget{Max: q.MaxBytes} // (what the walk read is not on the page)
			rest, err = statements(s.d, q, s.now(), formAll, n+1, nil)
		} else {
			// The matches with a value of the first sort key ran out
			// before the page did: those without follow.
			rest, err = undatedStatement(s.d, q, s.now(), n+1-got)
		}
		if err != nil {
			return nil, err
		}
		if err := run(rest); err != nil {
			return nil, err
		}
	}
	if join {
		if n := peeked(q); n > 0 && len(pg.Matches) > n {
			pg.Matches, pg.More = pg.Matches[:n], true
		}
		if withIncludes && (len(q.Includes) > 0 || len(q.RevIncludes) > 0) {
			keys = make([]key, len(pg.Matches))
			for i, r := range pg.Matches {
				keys[i] = key{r.Type, r.ID, r.Version}
			}
		}
	} else {
		if n := peeked(q); n > 0 && len(keys) > n {
			keys, pg.More = keys[:n], true
		}
		var err error
		if pg.Matches, pg.Cut, err = s.fetchWithin(ctx, c, keys, budget); err != nil {
			return nil, err
		}
		if pg.Cut {
			keys = keys[:len(pg.Matches)] // (each key's version is there: a version never changes)
		}
	}
	if pg.Cut {
		pg.More = true
	}
	if pg.More && len(pg.Matches) > 0 {
		last := pg.Matches[len(pg.Matches)-1]
		pg.Next = &search.Cursor{Order: q.OrderSignature(), LastUpdated: last.LastUpdated.UnixMilli(), Type: last.Type, ID: last.ID}
		if vals.n > 0 {
			pg.Next.Keys = vals.of[len(pg.Matches)-1]
		}
	}
	if withIncludes && (len(q.Includes) > 0 || len(q.RevIncludes) > 0) {
		var err error
		if pg.Included, err = s.includes(ctx, c, q, keys); err != nil {
			return nil, err
		}
	}
	return pg, nil
}

// searchEach runs the searches qs with c, in order, as search without
// includes does, and returns their pages in the order of qs. It stops at
// the first error and returns it with the pages of the queries answered
// before it (nil for the others: the first of them is the one that
// failed, or shared a failed batch). Consecutive lookups (an unordered
// search with no total: a conditional entry's criteria, which find nothing
// most of the time) go together: their statements in one Tx.QueryBatch,
// then the resources they found in one fetch. A session record's
// transaction has 56 of them, each a round trip to PostgreSQL when run
// alone (issue 19).
func (s *Store) searchEach(ctx context.Context, c Tx, qs []*search.Query) ([]*store.Page, error) {
	pages := make([]*store.Page, len(qs))
	var stmts []Stmt
	var group []int // the index in qs of each of stmts
	lookups := func() error {
		if len(stmts) == 0 {
			return nil
		}
		keys := make([][]key, len(stmts))
		err := c.QueryBatch(ctx, stmts, func(j int, rows Rows) (err error) {
			keys[j], err = scanKeys(rows, nil)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: search: %w", s.d.Name, s.err(ctx, err))
		}
		found, err := s.fetch(ctx, c, slices.Concat(keys...))
		if err != nil {
			return err
		}
		byKey := make(map[key]*store.Resource, len(found))
		for _, r := range found {
			byKey[key{r.Type, r.ID, r.Version}] = r
		}
		for j, i := range group {
			pg := &store.Page{Total: -1}
			for _, k := range keys[j] {
				if r := byKey[k]; r != nil {
					pg.Matches = append(pg.Matches, r)
				}
			}
			pages[i] = pg
		}
		stmts, group = stmts[:0], group[:0]
		return nil
	}
	for i, q := range qs {
		if q != nil && unordered(q) && !q.Total && !q.SummaryCount {
			// (Statements that cannot be built: search below says why.)
			if page, err := statements(s.d, q, s.now(), formAll, 0, nil); err == nil {
				stmts, group = append(stmts, page), append(group, i)
				continue
			}
		}
		if err := lookups(); err != nil {
			return pages, err
		}
		pg, err := s.search(ctx, c, q, false)
		if err != nil {
			return pages, err
		}
		pages[i] = pg
	}
	return pages, lookups()
}

// SearchStatements are the statements a search of q runs in dialect d at
// now: page selects its page of matches (with Dialect.JoinMatches their
// resources, otherwise their keys: type, id, version) and count counts
// every match. A search sorted first by a date parameter that it walks
// (see walked) runs more: the value its walk stops at (walkBudget), and
// when its page is not full, the statement of its matches without a value
// of that parameter or, past the budget, of all its matches; page then
// selects only the matches with a value, read to the end of the index (or,
// when the cursor is past them, only those without). The backends' tests
// explain their plans.
func SearchStatements(d *Dialect, q *search.Query, now time.Time) (page, count Stmt, err error) {
	if count, err = countStatement(d, q, now); err != nil {
		return Stmt{}, Stmt{}, err
	}
	n, _ := pageBounds(q.Count, q.Offset)
	page, err = statements(d, q, now, formOf(q), n+1, nil)
	return page, count, err
}

// countStatement is the statement that counts the matches of q at now.
func countStatement(d *Dialect, q *search.Query, now time.Time) (Stmt, error) {
	b := NewBuilder(d, q.Type, now)
	if err := b.Where(q); err != nil {
		return Stmt{}, err
	}
	return Stmt{SQL: `SELECT COUNT(*) FROM current c WHERE ` + b.SQL(), Args: b.Args()}, nil
}

// undatedStatement is the page statement of the matches of q without a
// value of its first sort key, from the first of them, limit at most:
// the rest of a page of a walked search (see walked) whose matches with
// a value ran out before the page was full.
func undatedStatement(d *Dialect, q *search.Query, now time.Time, limit int) (Stmt, error) {
	qq := *q
	qq.After, qq.Offset = nil, 0
	return statements(d, &qq, now, formUndated, limit, nil)
}

// statements is the page statement of q in form f, with a page of at most
// limit matches when q is ordered; a walk (formDated) reads its index to
// the value until when it is not nil (see walkBudget), else to its end.
func statements(d *Dialect, q *search.Query, now time.Time, f form, limit int, until *int64) (Stmt, error) {
	cols := `c.type, c.id, c.version`
	join := joinMatches(d, q)
	if join {
		// The page is ordered and cut from the matches' keys first, and
		// only its rows are joined with their resources: joined before
		// the sort, every match's resource row was read to keep 20 (a
		// code's 4,281 Observations: 1.4-2.0 s against 0.15-0.22 s; probe
		// p37 F3). outer wraps the statement.
		cols += `, c.last_updated`
	}
	b := NewBuilder(d, q.Type, now)
	if unordered(q) {
		b.Add(PlanOnce + `SELECT ` + cols + ` FROM current c WHERE `)
		if err := b.Where(q); err != nil {
			return Stmt{}, err
		}
		// The page bounds written out: a generic plan takes a LIMIT or
		// OFFSET argument for a tenth of the rows, and PostgreSQL would
		// keep planning the statement anew (see PlanOnce).
		n, offset := pageBounds(q.Count, q.Offset)
		b.Add(" LIMIT " + strconv.Itoa(n) + " OFFSET " + strconv.Itoa(offset))
		return Stmt{SQL: b.SQL(), Args: b.Args()}, nil
	}
	parts, oargs, ocols := order(q)
	// The values of the date sort keys follow the columns (for the next
	// page's cursor: sortValues).
	b.Add(`SELECT ` + cols)
	switch f {
	case formDated:
		// The first sort key is the walked index row's value.
		first := walkCol(q.Sort[0])
		oargs = oargs[len(ocols[0].args):]
		parts[0], ocols[0] = first.col+direction(first.desc), first
	case formUndated:
		// The matches without a value all sort by the same constant,
		// selected for the cursor but not ordered by: a constant first
		// in the order kept SQLite from reading the matches in the
		// order of the next term (a sort of the whole type: 222 ms for
		// 2.3 ms over 30,000 Encounters).
		b.Add(", CAST(? AS BIGINT) AS k0", noValue(q.Sort[0]))
		oargs = oargs[len(ocols[0].args):]
		parts, ocols = parts[1:], ocols[1:]
	}
	for _, oc := range ocols {
		if oc.key >= 0 {
			b.Add(", "+oc.col+" AS k"+strconv.Itoa(oc.key), oc.args...)
		}
	}
	if f == formDated {
		walkFrom(b, q.Type, q.Sort[0], until)
	} else {
		b.Add(` FROM current c WHERE `)
	}
	if err := b.Where(q); err != nil {
		return Stmt{}, err
	}
	if f == formUndated {
		undatedCond(b, q.Sort[0])
	}
	_, offset := pageBounds(q.Count, q.Offset)
	if cursorUsable(q) {
		// The page starts after the cursor, not at the offset (which
		// only numbered it): see search.Query.After.
		if f == formDated {
			walkBound(b, "w.", q.Sort[0], q.After.Keys[0])
		}
		cond, cargs := after(ocols, q.After)
		b.Add(" AND "+cond, cargs...)
		offset = 0
	}
	if join {
		// The date sort keys by their names (computed once a row),
		// the order again outside.
		for i, c := range ocols {
			if c.key >= 0 {
				parts[i] = "k" + strconv.Itoa(c.key) + strings.TrimPrefix(parts[i], c.col)
				oargs = oargs[len(c.args):]
			}
		}
	}
	b.Add(" ORDER BY "+strings.Join(parts, ", "), oargs...)
	// limit is one more than the page: is there a next page? (search
	// trims it: Page.More)
	b.Add(" LIMIT ? OFFSET ?", limit, offset)
	if join {
		return Stmt{SQL: outer(q, b.SQL()), Args: b.Args()}, nil
	}
	return Stmt{SQL: b.SQL(), Args: b.Args()}, nil
}

// cursorUsable reports whether q's page starts after its cursor (one
// value for each date sort key), not at its offset.
func cursorUsable(q *search.Query) bool {
	return q.After != nil && len(q.After.Keys) == q.SortValues()
}

// outer is the page statement of an ordered search whose matches' resources
// are joined (joinMatches): inner, the page of the matches' keys (type,
// id, version, last_updated and the date sort keys k0, k1, ...), joined
// with their resources and ordered again.
func outer(q *search.Query, inner string) string {
	_, _, cols := order(q)
	sel := make([]string, 0, q.SortValues())
	by := make([]string, len(cols))
	for i, c := range cols {
		name := "p." + strings.TrimPrefix(c.col, "c.")
		if c.key >= 0 {
			name = "p.k" + strconv.Itoa(c.key)
			sel = append(sel, name)
		}
		by[i] = name + direction(c.desc)
	}
	keys := ""
	if len(sel) > 0 {
		keys = ", " + strings.Join(sel, ", ")
	}
	return `SELECT ` + resourceCols + keys + ` FROM (` + inner + `) p
			JOIN resources r ON r.type = p.type AND r.id = p.id AND r.version = p.version
			ORDER BY ` + strings.Join(by, ", ")
}

// PlanOnce begins a statement whose plan does not depend on its values, so
// that a backend may plan it once for all of them (PostgreSQL: a generic
// plan): an unordered search's page, which stops at its few matches
// (search.Query.Unordered: a conditional lookup; from the index of its
// condition whatever the value, and planning it cost ten times running it).
// A backend that plans every statement once (SQLite) reads it as the
// comment it is.
const PlanOnce = "/* plan once */ "

// unordered reports whether the matches of q may come in any order: the
// caller said so, and named no sort.
func unordered(q *search.Query) bool { return !q.Ordered() }

// peeked is the page size of q when its page statement selects one match
// more than that, to tell whether a next page follows (a Keyset order:
// see SearchStatements), and 0 when it does not.
func peeked(q *search.Query) int {
	if unordered(q) {
		return 0
	}
	n, _ := pageBounds(q.Count, q.Offset)
	return n
}

// joinMatches reports whether the page statement of q reads the matches'
// resources (Dialect.JoinMatches), or only their keys. An unordered search
// (a conditional lookup, which finds nothing most of the time) selects
// keys: its plan is then that of the conditions alone, with no join to
// weigh (and PostgreSQL plans it once: see PlanOnce).
func joinMatches(d *Dialect, q *search.Query) bool { return d.JoinMatches && !unordered(q) }

// sortValues reads rows whose last n columns are the values of a query's
// date sort keys (n may be 0): Scan takes the other columns and keeps
// those values, of each row in turn, in of.
type sortValues struct {
	Rows
	n  int
	of [][]int64
}

func (v *sortValues) Scan(dest ...any) error {
	if v.n == 0 {
		return v.Rows.Scan(dest...)
	}
	row := make([]int64, v.n)
	for i := range row {
		dest = append(dest, &row[i])
	}
	if err := v.Rows.Scan(dest...); err != nil {
		return err
	}
	v.of = append(v.of, row)
	return nil
}

// scanKeys appends rows of (type, id, version) to keys and closes them.
func scanKeys(rows Rows, keys []key) ([]key, error) {
	defer rows.Close()
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.typ, &k.id, &k.version); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// chunk bounds the values of one statement when each takes a placeholder
// (see Dialect.Arrays).
const chunk = 200

// chunks calls fn for consecutive parts of n values: one part with
// Arrays, else parts of at most chunk values.
func (s *Store) chunks(n int, fn func(start, end int) error) error {
	size := chunk
	if s.d.Arrays {
		size = max(n, 1)
	}
	for start := 0; start < n; start += size {
		if err := fn(start, min(start+size, n)); err != nil {
			return err
		}
	}
	return nil
}

const sqlFetchArrays = `SELECT ` + resourceCols + ` FROM resources r
	JOIN unnest(?::text[], ?::text[], ?::bigint[]) AS k(type, id, version)
	ON r.type = k.type AND r.id = k.id AND r.version = k.version`

// fetch loads the given versions, in the order of keys.
func (s *Store) fetch(ctx context.Context, c Conn, keys []key) ([]*store.Resource, error) {
	return s.fetchAtMost(ctx, c, keys, 0)
}

// errOverBudget stops fetchAtMost past its bound.
var errOverBudget = errors.New("bodies over the page's bound")

// fetchWithin is fetch of the first of keys that b lets in, in their
// order: cut says it left some out. The versions come in statements of
// many keys, in no order, so the budget left is first a bound on them
// all; past it, reading stops and they come one by one, in order, until
// b refuses one (a bounded page of large bodies; rare).
func (s *Store) fetchWithin(ctx context.Context, c Conn, keys []key, b *store.PageBudget) ([]*store.Resource, bool, error) {
	if b.Max <= 0 {
		res, err := s.fetch(ctx, c, keys)
		return res, false, err
	}
	res, err := s.fetchAtMost(ctx, c, keys, max(b.Max-b.Spent, 1))
	if err == nil {
		for _, r := range res {
			b.Take(len(r.Body)) // each fits: they come to at most what is left
		}
		return res, false, nil
	}
	if !errors.Is(err, errOverBudget) {
		return nil, false, err
	}
	var out []*store.Resource
	for i := range keys {
		one, err := s.fetch(ctx, c, keys[i:i+1])
		if err != nil {
			return nil, false, err
		}
		if len(one) == 1 && !b.Take(len(one[0].Body)) {
			return out, true, nil
		}
		out = append(out, one...)
	}
	return out, false, nil
}

// fetchAtMost is fetch, failing with errOverBudget as soon as the bodies
// it read come to more than limit bytes (0: no limit).
func (s *Store) fetchAtMost(ctx context.Context, c Conn, keys []key, limit int) ([]*store.Resource, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	got := make(map[key]*store.Resource, len(keys))
	size := 0
	err := s.chunks(len(keys), func(start, end int) error {
		part := keys[start:end]
		var query string
		var args []any
		if s.d.Arrays {
			types, ids, versions := make([]string, len(part)), make([]string, len(part)), make([]int64, len(part))
			for i, k := range part {
				types[i], ids[i], versions[i] = k.typ, k.id, k.version
			}
			query, args = s.bind(sqlFetchArrays), []any{types, ids, versions}
		} else {
			b := s.builder()
			b.args = make([]any, 0, 3*len(part))
			b.sb.Grow(len(resourceCols) + 50*len(part) + 40)
			b.Add(`SELECT ` + resourceCols + ` FROM resources r WHERE `)
			for i, k := range part {
				if i > 0 {
					b.Add(" OR ")
				}
				b.Add("(r.type = ? AND r.id = ? AND r.version = ?)", k.typ, k.id, k.version)
			}
			query, args = b.SQL(), b.Args()
		}
		rows, err := c.Query(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanResource(rows)
			if err != nil {
				return err
			}
			if size += len(r.Body); limit > 0 && size > limit {
				return errOverBudget
			}
			got[key{r.Type, r.ID, r.Version}] = r
		}
		return rows.Err()
	})
	if errors.Is(err, errOverBudget) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: fetch: %w", s.d.Name, s.err(ctx, err))
	}
	out := make([]*store.Resource, 0, len(keys))
	for _, k := range keys {
		if r := got[k]; r != nil {
			out = append(out, r)
		}
	}
	return out, nil
}

// includes resolves q's _include and _revinclude for the matches: current,
// non-deleted resources q.Tenant reads, each by the rule of its own type
// (scopeCond: q.Tenant's, or the default tenant's of a type q.Shared
// names), whatever the matches' type; each once, none that is a match,
// ordered by type and id.
func (s *Store) includes(ctx context.Context, c Conn, q *search.Query, matches []key) ([]*store.Resource, error) {
	type ref struct{ typ, id string }
	seen := map[ref]bool{}
	byType := map[string][]string{} // match ids by type
	var types []string
	for _, k := range matches {
		seen[ref{k.typ, k.id}] = true
		if byType[k.typ] == nil {
			types = append(types, k.typ)
		}
		byType[k.typ] = append(byType[k.typ], k.id)
	}
	var found []key
	run := func(b *Builder) error {
		rows, err := c.Query(ctx, b.SQL(), b.Args()...)
		if err != nil {
			return err
		}
		keys, err := scanKeys(rows, nil)
		for _, k := range keys {
			if r := (ref{k.typ, k.id}); !seen[r] {
				seen[r] = true
				found = append(found, k)
			}
		}
		return err
	}
	for _, typ := range types {
		ids := byType[typ]
		err := s.chunks(len(ids), func(start, end int) error {
			for _, inc := range q.Includes {
				if inc.SourceType != "" && inc.SourceType != "*" && inc.SourceType != typ {
					continue
				}
				b := s.builder()
				b.Add(`SELECT c.type, c.id, c.version FROM idx_reference x
					JOIN current c ON c.type = x.ref_type AND c.id = x.ref_id
					WHERE `+s.d.NotDeleted+` AND x.type = ? AND `, typ)
				b.in("x.id", ids[start:end])
				if inc.Param != "" && inc.Param != "*" {
					b.refRows(typ, inc.Param)
				}
				if inc.TargetType != "" {
					b.Add(" AND x.ref_type = ?", inc.TargetType)
					b.scopeCond("c", inc.TargetType, q.Tenant, q.Shared)
				} else {
					b.mixedScopeCond("c", q.Tenant, q.Shared)
				}
				if err := run(b); err != nil {
					return fmt.Errorf("%s: _include: %w", s.d.Name, s.err(ctx, err))
				}
			}
			for _, inc := range q.RevIncludes {
				if inc.TargetType != "" && inc.TargetType != typ {
					continue
				}
				b := s.builder()
				b.Add(`SELECT c.type, c.id, c.version FROM idx_reference x
					JOIN current c ON c.type = x.type AND c.id = x.id
					WHERE `+s.d.NotDeleted+` AND x.ref_type = ? AND `, typ)
				b.in("x.ref_id", ids[start:end])
				source := ""
				if inc.SourceType != "" && inc.SourceType != "*" {
					source = inc.SourceType
					b.Add(" AND x.type = ?", source)
					b.scopeCond("c", source, q.Tenant, q.Shared)
				} else {
					b.mixedScopeCond("c", q.Tenant, q.Shared)
				}
				if inc.Param != "" && inc.Param != "*" {
					b.refRows(source, inc.Param)
				}
				if err := run(b); err != nil {
					return fmt.Errorf("%s: _revinclude: %w", s.d.Name, s.err(ctx, err))
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	slices.SortFunc(found, func(a, b key) int {
		return cmp.Or(strings.Compare(a.typ, b.typ), strings.Compare(a.id, b.id))
	})
	res, cut, err := s.fetchWithin(ctx, c, found, &store.PageBudget{Max: q.MaxBytes})
	if cut {
		return nil, search.IncludedTooLarge(q.MaxBytes)
	}
	return res, err
}
