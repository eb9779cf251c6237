package sqlstore

import (
	"fmt"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// The search index tables and the statements that fill them (see Put).

// indexTable is a search index table: type and id, then cols.
type indexTable struct {
	name string
	cols []column
}

// column is a column of an index table, with its PostgreSQL type for an
// array of its values (see Dialect.Arrays).
type column struct{ name, array string }

// The index tables, in the order of indexTables.
const (
	idxToken = iota
	idxString
	idxDate
	idxReference
	idxQuantity
	idxURI
)

// indexTables are the search index tables, all keyed by (type, id).
var indexTables = []indexTable{
	idxToken:     {"idx_token", []column{{"param", "text"}, {"system", "text"}, {"code", "text"}, {"text", "text"}}},
	idxString:    {"idx_string", []column{{"param", "text"}, {"norm", "text"}, {"exact", "text"}}},
	idxDate:      {"idx_date", []column{{"param", "text"}, {"low", "bigint"}, {"high", "bigint"}}},
	idxReference: {"idx_reference", []column{{"param", "text"}, {"ref_type", "text"}, {"ref_id", "text"}, {"ref_url", "text"}}},
	idxQuantity:  {"idx_quantity", []column{{"param", "text"}, {"number", "float8"}, {"system", "text"}, {"code", "text"}, {"unit", "text"}}},
	idxURI:       {"idx_uri", []column{{"param", "text"}, {"uri", "text"}}},
}

// indexSQL are the statements of one index table.
type indexSQL struct {
	ins string // insert one row, or with arrays all of a resource's
	del string // delete a resource's rows
}

// insert is the statement inserting one row of t, or with arrays one
// row per element of the column arrays: type, id, then one array per
// column.
func (t indexTable) insert(arrays bool) string {
	names := []string{"type", "id"}
	vals := []string{"?", "?"}
	for _, c := range t.cols {
		names = append(names, c.name)
		if arrays {
			vals = append(vals, "?::"+c.array+"[]")
		} else {
			vals = append(vals, "?")
		}
	}
	q := `INSERT INTO ` + t.name + ` (` + strings.Join(names, ", ") + `) `
	if arrays {
		return q + `SELECT ?, ?, * FROM unnest(` + strings.Join(vals[2:], ", ") + `)`
	}
	return q + `VALUES (` + strings.Join(vals, ", ") + `)`
}

// delete is the statement deleting a resource's rows of t.
func (t indexTable) delete() string {
	return `DELETE FROM ` + t.name + ` WHERE type = ? AND id = ?`
}

// entryStmts appends the inserts of a resource's index entries to stmts:
// one per entry, or with arrays one per index table. String norms and
// token texts are normalised again (search.Normalize is idempotent), so
// callers that only lower-case still match.
func (s *Store) entryStmts(stmts []Stmt, typ, id string, entries []search.Entry) ([]Stmt, error) {
	var rows [][][]any // by table, with arrays
	if s.d.Arrays {
		rows = make([][][]any, len(indexTables))
	}
	for i := range entries {
		e := &entries[i]
		if e.Param == "" {
			return nil, fmt.Errorf("entry %d: empty param", i)
		}
		tbl, row, err := s.entryRow(typ, id, e)
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", e.Param, err)
		}
		if rows == nil {
			stmts = append(stmts, Stmt{s.index[tbl].ins, row})
		} else {
			rows[tbl] = append(rows[tbl], row[2:])
		}
	}
	for tbl, r := range rows {
		if len(r) > 0 {
			stmts = append(stmts, Stmt{s.index[tbl].ins, columnArrays(indexTables[tbl], typ, id, r)})
		}
	}
	return stmts, nil
}

// entryRow is the index table of e and its row: type, id, then the
// table's columns.
func (s *Store) entryRow(typ, id string, e *search.Entry) (int, []any, error) {
	p := s.text(e.Param)
	switch e.Type {
	case search.TypeToken:
		return idxToken, []any{typ, id, p, s.text(e.System), s.text(e.Code), s.text(search.Normalize(e.Text))}, nil
	case search.TypeString:
		n := e.Norm
		if n == "" {
			n = e.Exact
		}
		return idxString, []any{typ, id, p, s.text(search.Normalize(n)), s.text(e.Exact)}, nil
	case search.TypeDate:
		return idxDate, []any{typ, id, p, lowMS(e.Low), entryHighMS(e.High)}, nil
	case search.TypeReference:
		return idxReference, []any{typ, id, p, s.text(e.RefType), s.text(e.RefID), s.text(e.RefURL)}, nil
	case search.TypeNumber, search.TypeQuantity:
		return idxQuantity, []any{typ, id, p, e.Number, s.text(e.System), s.text(e.Code), s.text(e.Unit)}, nil
	case search.TypeURI:
		return idxURI, []any{typ, id, p, s.text(entryURI(e))}, nil
	}
	return 0, nil, fmt.Errorf("unsupported entry type %q", e.Type)
}

// columnArrays are the arguments of an array insert of rows into t: type,
// id, then one []string, []int64 or []float64 per column.
func columnArrays(t indexTable, typ, id string, rows [][]any) []any {
	args := []any{typ, id}
	for j, c := range t.cols {
		switch c.array {
		case "bigint":
			col := make([]int64, len(rows))
			for i, r := range rows {
				col[i] = r[j].(int64)
			}
			args = append(args, col)
		case "float8":
			col := make([]float64, len(rows))
			for i, r := range rows {
				col[i] = r[j].(float64)
			}
			args = append(args, col)
		default:
			col := make([]string, len(rows))
			for i, r := range rows {
				col[i] = r[j].(string)
			}
			args = append(args, col)
		}
	}
	return args
}

// entryURI is the value of a uri entry: Exact, else RefURL, else Code
// (search.Entry has no field of its own for uris).
func entryURI(e *search.Entry) string {
	switch {
	case e.Exact != "":
		return e.Exact
	case e.RefURL != "":
		return e.RefURL
	}
	return e.Code
}
