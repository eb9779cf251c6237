package sqlstore

import (
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// The search index tables and the statements that fill them (see Put).

// indexTable is a search index table: type and id, then cols (or, when
// full, exactly cols: the other tables a flush inserts into). suffix
// follows the statement (an upsert's ON CONFLICT).
type indexTable struct {
	name   string
	cols   []column
	full   bool
	suffix string
}

// allCols are the columns of a row of t, in the order of its inserts.
func (t *indexTable) allCols() []column {
	if t.full {
		return t.cols
	}
	return append([]column{{"type", "text"}, {"id", "text"}}, t.cols...)
}

// column is a column of a table, with its PostgreSQL type for an array
// of its values (see Dialect.Arrays).
type column struct{ name, array string }

// The index tables, in the order of indexTables.
const (
	idxToken = iota
	idxString
	idxDate
	idxReference
	idxQuantity
	idxURI
	numIndexTables
)

// indexRows are a resource's index rows by table, without type and id
// (see entryRows).
type indexRows = [numIndexTables][][]any

// indexTables are the search index tables, all keyed by (type, id).
var indexTables = [numIndexTables]indexTable{
	idxToken:     {name: "idx_token", cols: []column{{"param", "text"}, {"system", "text"}, {"code", "text"}, {"text", "text"}}},
	idxString:    {name: "idx_string", cols: []column{{"param", "text"}, {"norm", "text"}, {"exact", "text"}}},
	idxDate:      {name: "idx_date", cols: []column{{"param", "text"}, {"low", "bigint"}, {"high", "bigint"}}},
	idxReference: {name: "idx_reference", cols: []column{{"param", "text"}, {"ref_type", "text"}, {"ref_id", "text"}, {"ref_url", "text"}}},
	idxQuantity:  {name: "idx_quantity", cols: []column{{"param", "text"}, {"number", "float8"}, {"system", "text"}, {"code", "text"}, {"unit", "text"}, {"comparator", "text"}}},
	idxURI:       {name: "idx_uri", cols: []column{{"param", "text"}, {"uri", "text"}}},
}

// delete is the statement deleting a resource's rows of t.
func (t *indexTable) delete() string {
	return `DELETE FROM ` + t.name + ` WHERE type = ? AND id = ?`
}

// unindexed are the parameters whose entries Put does not store: every
// resource has exactly one value of each, in its current row, from which
// searches and sorts on them are answered.
var unindexed = map[string]bool{"_id": true, "_lastUpdated": true}

// entryRows sorts a resource's index entries into rows by table (without
// type and id). String norms and token texts are normalised again
// (search.Normalize is idempotent), so callers that only lower-case still
// match. An invalid entry is an error.
func (s *Store) entryRows(rows *[numIndexTables][][]any, entries []search.Entry) error {
	for i := range entries {
		e := &entries[i]
		if e.Param == "" {
			return fmt.Errorf("entry %d: empty param", i)
		}
		tbl, row, err := s.entryRow(e)
		if err != nil {
			return fmt.Errorf("entry %s: %w", e.Param, err)
		}
		if !unindexed[e.Param] {
			rows[tbl] = append(rows[tbl], row)
		}
	}
	return nil
}

// entryRow is the index table of e and its row: the table's columns.
func (s *Store) entryRow(e *search.Entry) (int, []any, error) {
	p := s.text(e.Param)
	switch e.Type {
	case search.TypeToken:
		return idxToken, []any{p, s.text(e.System), s.text(e.Code), s.text(search.Normalize(e.Text))}, nil
	case search.TypeString:
		n := e.Norm
		if n == "" {
			n = e.Exact
		}
		return idxString, []any{p, s.text(search.Normalize(n)), s.text(e.Exact)}, nil
	case search.TypeDate:
		return idxDate, []any{p, storedMS(e.Low), storedMS(e.High)}, nil
	case search.TypeReference:
		return idxReference, []any{p, s.text(e.RefType), s.text(e.RefID), s.text(e.RefURL)}, nil
	case search.TypeNumber, search.TypeQuantity:
		if e.Comparator != "" && !search.IsComparator(e.Comparator) {
			return 0, nil, fmt.Errorf("comparator %q is not <, <=, >= or >", e.Comparator)
		}
		return idxQuantity, []any{p, e.Number, s.text(e.System), s.text(e.Code), s.text(e.Unit), s.text(e.Comparator)}, nil
	case search.TypeURI:
		return idxURI, []any{p, s.text(entryURI(e))}, nil
	}
	return 0, nil, fmt.Errorf("unsupported entry type %q", e.Type)
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
