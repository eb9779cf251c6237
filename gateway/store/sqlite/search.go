package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// Search runs q over the current, non-deleted resources of q.Tenant, in
// one read transaction (the page, the total and the includes see one
// snapshot).
func (s *Store) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	rtx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("sqlite: search: %w", mapErr(err))
	}
	defer rtx.Rollback()
	return runSearch(ctx, rtx, q, true)
}

// key identifies one resource version.
type key struct {
	typ, id string
	version int64
}

func runSearch(ctx context.Context, db querier, q *search.Query, withIncludes bool) (*store.Page, error) {
	if q == nil {
		return nil, errors.New("sqlite: search: nil query")
	}
	b := &builder{typ: q.Type, now: time.Now()}
	if err := b.where(q); err != nil {
		return nil, err
	}
	where, args := b.sb.String(), b.args
	pg := &store.Page{Total: -1}
	if q.Total || q.SummaryCount {
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM current c WHERE `+where, args...).Scan(&pg.Total); err != nil {
			return nil, fmt.Errorf("sqlite: search count: %w", mapErr(err))
		}
	}
	if q.SummaryCount {
		return pg, nil
	}

	order, oargs := orderBy(q)
	count, offset := sqlstore.Page(q.Count, q.Offset)
	qargs := append(append(append([]any{}, args...), oargs...), count, offset)
	rows, err := db.QueryContext(ctx, `SELECT c.type, c.id, c.version FROM current c WHERE `+where+
		` ORDER BY `+order+` LIMIT ? OFFSET ?`, qargs...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search: %w", mapErr(err))
	}
	keys, err := scanKeys(rows)
	if err != nil {
		return nil, fmt.Errorf("sqlite: search: %w", mapErr(err))
	}
	if pg.Matches, err = fetch(ctx, db, keys); err != nil {
		return nil, err
	}
	if withIncludes && (len(q.Includes) > 0 || len(q.RevIncludes) > 0) {
		if pg.Included, err = includes(ctx, db, q, keys); err != nil {
			return nil, err
		}
	}
	return pg, nil
}

func scanKeys(rows *sql.Rows) ([]key, error) {
	defer rows.Close()
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.typ, &k.id, &k.version); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// fetchChunk bounds the keys (three arguments each) of one fetch query.
const fetchChunk = 200

// fetch loads the given versions, in the order of keys.
func fetch(ctx context.Context, db querier, keys []key) ([]*store.Resource, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	got := make(map[key]*store.Resource, len(keys))
	for start := 0; start < len(keys); start += fetchChunk {
		chunk := keys[start:min(start+fetchChunk, len(keys))]
		var sb strings.Builder
		args := make([]any, 0, 3*len(chunk))
		sb.WriteString(`SELECT ` + resourceCols + ` FROM resources r WHERE `)
		for i, k := range chunk {
			if i > 0 {
				sb.WriteString(" OR ")
			}
			sb.WriteString("(r.type = ? AND r.id = ? AND r.version = ?)")
			args = append(args, k.typ, k.id, k.version)
		}
		rows, err := db.QueryContext(ctx, sb.String(), args...)
		if err != nil {
			return nil, fmt.Errorf("sqlite: fetch: %w", mapErr(err))
		}
		err = func() error {
			defer rows.Close()
			for rows.Next() {
				res, err := scanResource(rows)
				if err != nil {
					return err
				}
				got[key{res.Type, res.ID, res.Version}] = res
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, fmt.Errorf("sqlite: fetch: %w", mapErr(err))
		}
	}
	out := make([]*store.Resource, 0, len(keys))
	for _, k := range keys {
		if res := got[k]; res != nil {
			out = append(out, res)
		}
	}
	return out, nil
}

// includes resolves q's _include and _revinclude for the matches: current,
// non-deleted resources of q.Tenant, each once, none that is a match,
// ordered by type and id.
func includes(ctx context.Context, db querier, q *search.Query, matches []key) ([]*store.Resource, error) {
	type ref struct{ typ, id string }
	seen := map[ref]bool{}
	byType := map[string][]string{} // match ids by type
	for _, k := range matches {
		seen[ref{k.typ, k.id}] = true
		byType[k.typ] = append(byType[k.typ], k.id)
	}
	var found []key
	tenantCond, tenantArgs := sqlstore.TenantCond(q.Tenant)
	run := func(query string, args []any) error {
		rows, err := db.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		keys, err := scanKeys(rows)
		for _, k := range keys {
			if r := (ref{k.typ, k.id}); !seen[r] {
				seen[r] = true
				found = append(found, k)
			}
		}
		return err
	}
	for typ, ids := range byType {
		for start := 0; start < len(ids); start += fetchChunk {
			chunk := ids[start:min(start+fetchChunk, len(ids))]
			in := "?" + strings.Repeat(", ?", len(chunk)-1)
			for _, inc := range q.Includes {
				if inc.SourceType != "" && inc.SourceType != "*" && inc.SourceType != typ {
					continue
				}
				query := `SELECT c.type, c.id, c.version FROM idx_reference x
					JOIN current c ON c.type = x.ref_type AND c.id = x.ref_id
					WHERE c.deleted = 0 AND x.type = ? AND x.id IN (` + in + `)` + tenantCond
				args := append(append([]any{typ}, anys(chunk)...), tenantArgs...)
				if inc.Param != "" && inc.Param != "*" {
					query += " AND x.param = ?"
					args = append(args, inc.Param)
				}
				if inc.TargetType != "" {
					query += " AND x.ref_type = ?"
					args = append(args, inc.TargetType)
				}
				if err := run(query, args); err != nil {
					return nil, fmt.Errorf("sqlite: _include: %w", mapErr(err))
				}
			}
			for _, inc := range q.RevIncludes {
				if inc.TargetType != "" && inc.TargetType != typ {
					continue
				}
				query := `SELECT c.type, c.id, c.version FROM idx_reference x
					JOIN current c ON c.type = x.type AND c.id = x.id
					WHERE c.deleted = 0 AND x.ref_type = ? AND x.ref_id IN (` + in + `)` + tenantCond
				args := append(append([]any{typ}, anys(chunk)...), tenantArgs...)
				if inc.SourceType != "" && inc.SourceType != "*" {
					query += " AND x.type = ?"
					args = append(args, inc.SourceType)
				}
				if inc.Param != "" && inc.Param != "*" {
					query += " AND x.param = ?"
					args = append(args, inc.Param)
				}
				if err := run(query, args); err != nil {
					return nil, fmt.Errorf("sqlite: _revinclude: %w", mapErr(err))
				}
			}
		}
	}
	sort.Slice(found, func(i, j int) bool {
		if found[i].typ != found[j].typ {
			return found[i].typ < found[j].typ
		}
		return found[i].id < found[j].id
	})
	return fetch(ctx, db, found)
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
