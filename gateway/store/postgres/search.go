package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// Search runs q over the current, non-deleted resources of q.Tenant. When
// it takes more than one statement (a total, includes) they run in one
// REPEATABLE READ transaction, so the page, the total and the includes see
// one snapshot.
func (s *Store) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	if q == nil {
		return nil, errors.New("postgres: search: nil query")
	}
	var pg *store.Page
	run := func(db querier) error {
		var err error
		pg, err = runSearch(ctx, db, q, true)
		return err
	}
	var err error
	if q.Total || len(q.Includes) > 0 || len(q.RevIncludes) > 0 {
		err = s.readTx(ctx, run)
	} else {
		err = s.single(ctx, run)
	}
	return pg, err
}

// key identifies one resource version.
type key struct {
	typ, id string
	version int64
}

func runSearch(ctx context.Context, db querier, q *search.Query, withIncludes bool) (*store.Page, error) {
	if q == nil {
		return nil, errors.New("postgres: search: nil query")
	}
	b := sqlstore.NewBuilder(dialect, q.Type, time.Now())
	if err := b.Where(q); err != nil {
		return nil, err
	}
	where := b.SQL()
	pg := &store.Page{Total: -1}
	if q.Total || q.SummaryCount {
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM current c WHERE `+where, b.Args()...).Scan(&pg.Total); err != nil {
			return nil, fmt.Errorf("postgres: search count: %w", mapErr(ctx, err))
		}
	}
	if q.SummaryCount {
		return pg, nil
	}

	order, oargs := sqlstore.OrderBy(q)
	count, offset := sqlstore.Page(q.Count, q.Offset)
	b.Add(" ORDER BY "+order, oargs...)
	b.Add(" LIMIT ? OFFSET ?", count, offset)
	rows, err := db.Query(ctx, `SELECT `+resourceCols+` FROM current c
		JOIN resources r ON r.type = c.type AND r.id = c.id AND r.version = c.version
		WHERE `+b.SQL(), b.Args()...)
	if err == nil {
		pg.Matches, err = collect(rows)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: search: %w", mapErr(ctx, err))
	}
	if withIncludes && (len(q.Includes) > 0 || len(q.RevIncludes) > 0) {
		keys := make([]key, len(pg.Matches))
		for i, r := range pg.Matches {
			keys[i] = key{r.Type, r.ID, r.Version}
		}
		if pg.Included, err = includes(ctx, db, q, keys); err != nil {
			return nil, err
		}
	}
	return pg, nil
}

// fetch loads the given versions, in the order of keys, in one statement.
func fetch(ctx context.Context, db querier, keys []key) ([]*store.Resource, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	types, ids, versions := make([]string, len(keys)), make([]string, len(keys)), make([]int64, len(keys))
	for i, k := range keys {
		types[i], ids[i], versions[i] = k.typ, k.id, k.version
	}
	rows, err := db.Query(ctx, `SELECT `+resourceCols+` FROM resources r
		JOIN unnest($1::text[], $2::text[], $3::bigint[]) AS k(type, id, version)
		ON r.type = k.type AND r.id = k.id AND r.version = k.version`, types, ids, versions)
	var got []*store.Resource
	if err == nil {
		got, err = collect(rows)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: fetch: %w", mapErr(ctx, err))
	}
	byKey := make(map[key]*store.Resource, len(got))
	for _, r := range got {
		byKey[key{r.Type, r.ID, r.Version}] = r
	}
	out := make([]*store.Resource, 0, len(keys))
	for _, k := range keys {
		if r := byKey[k]; r != nil {
			out = append(out, r)
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
	var types []string
	for _, k := range matches {
		seen[ref{k.typ, k.id}] = true
		if byType[k.typ] == nil {
			types = append(types, k.typ)
		}
		byType[k.typ] = append(byType[k.typ], k.id)
	}
	var found []key
	tenantCond, tenantArgs := sqlstore.TenantCond(q.Tenant)
	run := func(b *sqlstore.Builder) error {
		rows, err := db.Query(ctx, b.SQL(), b.Args()...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k key
			if err := rows.Scan(&k.typ, &k.id, &k.version); err != nil {
				return err
			}
			if r := (ref{k.typ, k.id}); !seen[r] {
				seen[r] = true
				found = append(found, k)
			}
		}
		return rows.Err()
	}
	for _, typ := range types {
		ids := byType[typ]
		for _, inc := range q.Includes {
			if inc.SourceType != "" && inc.SourceType != "*" && inc.SourceType != typ {
				continue
			}
			b := sqlstore.NewBuilder(dialect, "", time.Time{})
			b.Add(`SELECT c.type, c.id, c.version FROM idx_reference x
				JOIN current c ON c.type = x.ref_type AND c.id = x.ref_id
				WHERE NOT c.deleted AND x.type = ? AND x.id = ANY(?)`, typ, ids)
			b.Add(tenantCond, tenantArgs...)
			if inc.Param != "" && inc.Param != "*" {
				b.Add(" AND x.param = ?", inc.Param)
			}
			if inc.TargetType != "" {
				b.Add(" AND x.ref_type = ?", inc.TargetType)
			}
			if err := run(b); err != nil {
				return nil, fmt.Errorf("postgres: _include: %w", mapErr(ctx, err))
			}
		}
		for _, inc := range q.RevIncludes {
			if inc.TargetType != "" && inc.TargetType != typ {
				continue
			}
			b := sqlstore.NewBuilder(dialect, "", time.Time{})
			b.Add(`SELECT c.type, c.id, c.version FROM idx_reference x
				JOIN current c ON c.type = x.type AND c.id = x.id
				WHERE NOT c.deleted AND x.ref_type = ? AND x.ref_id = ANY(?)`, typ, ids)
			b.Add(tenantCond, tenantArgs...)
			if inc.SourceType != "" && inc.SourceType != "*" {
				b.Add(" AND x.type = ?", inc.SourceType)
			}
			if inc.Param != "" && inc.Param != "*" {
				b.Add(" AND x.param = ?", inc.Param)
			}
			if err := run(b); err != nil {
				return nil, fmt.Errorf("postgres: _revinclude: %w", mapErr(ctx, err))
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
