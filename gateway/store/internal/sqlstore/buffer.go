package sqlstore

import (
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// putBuffer holds the versions Put wrote and the transaction has not yet
// sent to the database, so that they go many to a statement: with
// Dialect.Arrays one statement per table (unnest), otherwise multi-row
// VALUES statements of at most maxRows rows. The buffer is flushed before
// any statement that could see what it holds: a search, a conditional key
// statement after the deletion of a resource's keys, a savepoint, the
// commit. Tx.Read answers a buffered resource from the buffer.
//
// A flush runs, in order: for every buffered resource that was stored
// before (an update or a deletion), the deletion of its index rows and
// conditional keys; the inserts of every buffered version; the current
// row of each resource's latest buffered version (an insert for a
// resource new to the database, an upsert for one stored before); and
// the index rows of those latest versions that are not deletions. (A
// resource written twice in one buffer keeps only its latest index rows.)
// Last, the conditional keys ClaimKey claimed (see tx.ClaimKey).
type putBuffer struct {
	versions []*bufVersion          // every buffered version, in Put order
	latest   map[resKey]*bufVersion // each resource's latest buffered version
	dels     []resKey               // resources stored before: their rows go first
	claims   []claim                // conditional keys to claim, in ClaimKey order
}

// claim is a conditional key claimed for a resource.
type claim struct {
	key string
	res resKey
}

// resKey names a resource.
type resKey struct{ typ, id string }

// bufVersion is one buffered version.
type bufVersion struct {
	key     resKey
	version int64
	lu      int64 // unix milliseconds
	deleted bool
	body    []byte // nil for a deletion
	packed  []byte // body as stored (store.PackBody)
	tenant  string
	method  string // how the version was made (store.Resource.Method)
	status  int64
	rows    [numIndexTables][][]any // index rows by table, without type and id
	stored  bool                    // the database held k before this buffer
}

// resource is v as Tx.Read returns it.
func (v *bufVersion) resource() *store.Resource {
	r := &store.Resource{Type: v.key.typ, ID: v.key.id, Version: v.version, LastUpdated: time.UnixMilli(v.lu).UTC(),
		Deleted: v.deleted, Tenant: v.tenant, Method: v.method, Status: int(v.status)}
	if !v.deleted {
		r.Body = v.body
	}
	return r
}

// add buffers v of k; stored tells that the database holds an earlier
// version of k (whose index rows and keys the flush deletes, and whose
// current row it updates). A later version of k in the same buffer keeps
// what its first one said.
func (b *putBuffer) add(k resKey, v *bufVersion, stored bool) {
	v.key = k
	if b.latest == nil {
		b.latest = map[resKey]*bufVersion{}
	}
	if prev := b.latest[k]; prev != nil {
		stored = prev.stored // said by k's first version in the buffer
	} else if stored {
		b.dels = append(b.dels, k)
	}
	v.stored = stored
	if stored {
		// The flush deletes k's keys before it inserts the claims: a key
		// claimed for k before this Put is dropped, as Put drops k's keys.
		b.claims = slices.DeleteFunc(b.claims, func(c claim) bool { return c.res == k })
	}
	b.versions = append(b.versions, v)
	b.latest[k] = v
}

func (b *putBuffer) empty() bool { return len(b.versions) == 0 && len(b.claims) == 0 }

func (b *putBuffer) reset() {
	b.versions, b.dels, b.claims = nil, nil, nil
	clear(b.latest)
}

// maxRows bounds the rows of one multi-row VALUES statement (SQLite):
// few distinct statements to prepare, far below the limit on host
// parameters.
const maxRows = 64

// stmts are the statements of a flush (see putBuffer); the rows the
// claims inserted are added to *claimed.
func (b *putBuffer) stmts(s *Store, claimed *int64) []Stmt {
	var stmts []Stmt
	for _, k := range b.dels {
		stmts = s.indexDelStmts(stmts, k)
		stmts = append(stmts, Stmt{SQL: s.bind(sqlDelKeys), Args: []any{k.typ, k.id}})
	}
	// Current rows and index rows: the latest buffered version of each
	// resource, in the order of their first Put.
	var cur []*bufVersion
	for _, v := range b.versions {
		if b.latest[v.key] == v {
			cur = append(cur, v)
		}
	}
	stmts = s.rowStmts(stmts, resourcesTable, len(b.versions), func(i int, row []any) []any {
		v := b.versions[i]
		return append(row, v.key.typ, v.key.id, v.version, v.lu, v.deleted, v.packed, v.tenant, v.method, v.status)
	})
	// A resource the database did not hold before has no current row:
	// its first buffered version is a version 1, whose insert above fails
	// on the primary key if the resource exists. Its current row is a
	// plain insert; only the others need the upsert (which costs
	// PostgreSQL a speculative insertion a row: 30% more than an insert).
	var fresh, again []*bufVersion
	for _, v := range cur {
		if v.stored {
			again = append(again, v)
		} else {
			fresh = append(fresh, v)
		}
	}
	currentRow := func(vs []*bufVersion) func(int, []any) []any {
		return func(i int, row []any) []any {
			v := vs[i]
			return append(row, v.key.typ, v.key.id, v.version, v.lu, v.deleted, v.tenant)
		}
	}
	stmts = s.rowStmts(stmts, newCurrentTable, len(fresh), currentRow(fresh))
	stmts = s.rowStmts(stmts, currentTable, len(again), currentRow(again))
	stmts = s.indexRowStmts(stmts, len(cur), func(i int) (resKey, *indexRows) { return cur[i].key, &cur[i].rows })
	// The claims in the order of their keys: concurrent transactions
	// (PostgreSQL) that claim some of the same keys wait for one another
	// in one order, never in a cycle.
	claims := slices.SortedStableFunc(slices.Values(b.claims), func(a, b claim) int { return strings.Compare(a.key, b.key) })
	first := len(stmts)
	stmts = s.rowStmts(stmts, claimsTable, len(claims), func(i int, row []any) []any {
		return append(row, claims[i].key, claims[i].res.typ, claims[i].res.id)
	})
	for i := first; i < len(stmts); i++ {
		stmts[i].Affected = claimed
	}
	return stmts
}

// indexDelStmts appends the statements deleting k's index rows.
func (s *Store) indexDelStmts(stmts []Stmt, k resKey) []Stmt {
	for _, del := range s.indexDel {
		stmts = append(stmts, Stmt{SQL: del, Args: []any{k.typ, k.id}})
	}
	return stmts
}

// indexRowStmts appends the statements inserting the index rows of n
// resources, a statement per table: res(i) is resource i and its rows.
func (s *Store) indexRowStmts(stmts []Stmt, n int, res func(i int) (resKey, *indexRows)) []Stmt {
	for tbl := range indexTables {
		type ref struct {
			key resKey
			row []any
		}
		var rows []ref
		for i := range n {
			k, r := res(i)
			for _, row := range r[tbl] {
				rows = append(rows, ref{k, row})
			}
		}
		stmts = s.rowStmts(stmts, &indexTables[tbl], len(rows), func(i int, row []any) []any {
			return append(append(row, rows[i].key.typ, rows[i].key.id), rows[i].row...)
		})
	}
	return stmts
}

// sqlDelKeys deletes a resource's conditional keys.
const sqlDelKeys = `DELETE FROM conditional_keys WHERE type = ? AND id = ?`

// The tables a flush inserts into besides the index tables. Their
// columns are listed in the order rowStmts' row functions append them.
var (
	resourcesTable = &indexTable{name: "resources", cols: []column{{"type", "text"}, {"id", "text"},
		{"version", "bigint"}, {"last_updated", "bigint"}, {"deleted", "boolean"}, {"body", "bytea"}, {"tenant", "text"},
		{"method", "text"}, {"status", "bigint"}}, full: true}
	currentTable = &indexTable{name: "current", cols: newCurrentTable.cols, full: true,
		suffix: ` ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,
		deleted = excluded.deleted, tenant = excluded.tenant`}
	// claimsTable inserts conditional keys unless they exist (ON
	// CONFLICT DO NOTHING: where writers run in parallel, it waits for a
	// concurrent inserter of the same key to commit or roll back).
	claimsTable = &indexTable{name: "conditional_keys", cols: []column{{"key", "text"}, {"type", "text"}, {"id", "text"}},
		full: true, suffix: ` ON CONFLICT (key) DO NOTHING`}
	// newCurrentTable inserts the current rows of resources new to the
	// database.
	newCurrentTable = &indexTable{name: "current", cols: []column{{"type", "text"}, {"id", "text"},
		{"version", "bigint"}, {"last_updated", "bigint"}, {"deleted", "boolean"}, {"tenant", "text"}}, full: true}
)

// rowStmts appends the statements inserting n rows into t (row(i, dst)
// appends row i's values, every column of t, to dst): with arrays one
// statement of column arrays, otherwise VALUES statements of up to maxRows
// rows, the largest first.
func (s *Store) rowStmts(stmts []Stmt, t *indexTable, n int, row func(i int, dst []any) []any) []Stmt {
	if n == 0 {
		return stmts
	}
	cols := t.allCols()
	if s.d.Arrays {
		vals := make([]any, 0, len(cols))
		for i := 0; i < n; i++ {
			vals = row(i, vals[:0])
			if i == 0 {
				stmts = append(stmts, Stmt{SQL: s.arraysInsert(t), Args: newColumnArrays(cols, n)})
			}
			appendColumns(stmts[len(stmts)-1].Args, vals)
		}
		return stmts
	}
	for i := 0; i < n; {
		size := maxRows
		for size > n-i {
			size /= 4
		}
		size = max(size, 1)
		args := make([]any, 0, size*len(cols))
		for j := 0; j < size; j++ {
			args = row(i+j, args)
		}
		stmts = append(stmts, Stmt{SQL: s.valuesInsert(t, size), Args: args})
		i += size
	}
	return stmts
}

// valuesInsert is the statement inserting n rows into t with VALUES.
func (s *Store) valuesInsert(t *indexTable, n int) string {
	key := insertKey{t, n}
	if q, ok := s.inserts.Load(key); ok {
		return q.(string)
	}
	cols := t.allCols()
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = c.name
	}
	one := "(" + strings.TrimSuffix(strings.Repeat("?, ", len(cols)), ", ") + ")"
	verb := s.d.InsertRows
	if verb == "" {
		verb = "INSERT INTO"
	}
	q := verb + ` ` + t.name + ` (` + strings.Join(names, ", ") + `) VALUES ` +
		strings.TrimSuffix(strings.Repeat(one+", ", n), ", ") + t.suffix
	q = s.bind(q)
	s.inserts.Store(key, q)
	return q
}

// arraysInsert is the statement inserting rows into t from one array
// argument per column (Dialect.Arrays).
func (s *Store) arraysInsert(t *indexTable) string {
	key := insertKey{t, -1}
	if q, ok := s.inserts.Load(key); ok {
		return q.(string)
	}
	cols := t.allCols()
	names, vals := make([]string, len(cols)), make([]string, len(cols))
	for i, c := range cols {
		names[i], vals[i] = c.name, "?::"+c.array+"[]"
	}
	q := s.bind(`INSERT INTO ` + t.name + ` (` + strings.Join(names, ", ") + `) SELECT * FROM unnest(` +
		strings.Join(vals, ", ") + `)` + t.suffix)
	s.inserts.Store(key, q)
	return q
}

// insertKey names a generated insert statement: a table and its number
// of rows (-1: column arrays).
type insertKey struct {
	table *indexTable
	rows  int
}

// newColumnArrays are empty column arrays for n rows of cols.
func newColumnArrays(cols []column, n int) []any {
	args := make([]any, len(cols))
	for j, c := range cols {
		switch c.array {
		case "bigint":
			args[j] = make([]int64, 0, n)
		case "float8":
			args[j] = make([]float64, 0, n)
		case "boolean":
			args[j] = make([]bool, 0, n)
		case "bytea":
			args[j] = make([][]byte, 0, n)
		default:
			args[j] = make([]string, 0, n)
		}
	}
	return args
}

// appendColumns appends one row's values to the column arrays args.
func appendColumns(args []any, vals []any) {
	for j, v := range vals {
		switch a := args[j].(type) {
		case []int64:
			args[j] = append(a, v.(int64))
		case []float64:
			args[j] = append(a, v.(float64))
		case []bool:
			args[j] = append(a, v.(bool))
		case [][]byte:
			args[j] = append(a, v.([]byte))
		case []string:
			args[j] = append(a, v.(string))
		}
	}
}
