package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// resourceCols are the columns scanResource reads, from table alias r.
const resourceCols = `r.type, r.id, r.version, r.last_updated, r.deleted, r.body, r.tenant`

func scanResource(sc pgx.Row) (*store.Resource, error) {
	var res store.Resource
	var lu int64
	var body []byte
	if err := sc.Scan(&res.Type, &res.ID, &res.Version, &lu, &res.Deleted, &body, &res.Tenant); err != nil {
		return nil, err
	}
	res.LastUpdated = time.UnixMilli(lu).UTC()
	if !res.Deleted {
		if body == nil {
			body = []byte{}
		}
		res.Body = body
	}
	return &res, nil
}

func readCurrent(ctx context.Context, q querier, typ, id string) (*store.Resource, error) {
	res, err := scanResource(q.QueryRow(ctx, `SELECT `+resourceCols+` FROM current c
		JOIN resources r ON r.type = c.type AND r.id = c.id AND r.version = c.version
		WHERE c.type = $1 AND c.id = $2`, typ, id))
	if errNoRows(err) {
		return nil, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: read %s/%s: %w", typ, id, mapErr(ctx, err))
	}
	if res.Deleted {
		return res, fmt.Errorf("%s/%s: %w", typ, id, store.ErrGone)
	}
	return res, nil
}

// Read returns the current version of typ/id, of whichever tenant.
func (s *Store) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	var res *store.Resource
	err := s.single(ctx, func(q querier) error {
		var err error
		res, err = readCurrent(ctx, q, typ, id)
		return err
	})
	return res, err
}

// VRead returns one version of typ/id, of whichever tenant.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	var res *store.Resource
	err := s.single(ctx, func(q querier) error {
		var err error
		res, err = scanResource(q.QueryRow(ctx, `SELECT `+resourceCols+` FROM resources r
			WHERE r.type = $1 AND r.id = $2 AND r.version = $3`, typ, id, version))
		if errNoRows(err) {
			return fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, store.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("postgres: vread %s/%s/%d: %w", typ, id, version, mapErr(ctx, err))
		}
		return nil
	})
	return res, err
}

// History returns the versions q selects (of q.Tenant), newest first, and
// their total count (one snapshot). The history of a resource that never
// existed is empty (no error).
func (s *Store) History(ctx context.Context, q store.HistoryQuery) ([]*store.Resource, int, error) {
	if q.ID != "" && q.Type == "" {
		return nil, 0, errors.New("postgres: history: an id needs a type")
	}
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	switch {
	case q.Tenant == search.AllTenants:
	case !sqlstore.ValidTenant(q.Tenant):
		where = append(where, "1 = 0") // no version has it
	default:
		where = append(where, "r.tenant = "+arg(q.Tenant))
	}
	if q.Type != "" {
		where = append(where, "r.type = "+arg(q.Type))
	}
	if q.ID != "" {
		where = append(where, "r.id = "+arg(q.ID))
	}
	if !q.Since.IsZero() {
		where = append(where, "r.last_updated >= "+arg(q.Since.UnixMilli()))
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	order := " ORDER BY r.last_updated DESC, r.type, r.id, r.version DESC"
	if q.ID != "" {
		order = " ORDER BY r.version DESC"
	}
	count, offset := sqlstore.Page(q.Count, q.Offset)
	nargs := len(args)
	limit := " LIMIT " + arg(count) + " OFFSET " + arg(offset)

	var out []*store.Resource
	var total int
	err := s.readTx(ctx, func(db querier) error {
		if err := db.QueryRow(ctx, `SELECT COUNT(*) FROM resources r`+cond, args[:nargs]...).Scan(&total); err != nil {
			return fmt.Errorf("postgres: history: %w", mapErr(ctx, err))
		}
		rows, err := db.Query(ctx, `SELECT `+resourceCols+` FROM resources r`+cond+order+limit, args...)
		if err == nil {
			out, err = collect(rows)
		}
		if err != nil {
			return fmt.Errorf("postgres: history: %w", mapErr(ctx, err))
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// collect scans rows of resourceCols.
func collect(rows pgx.Rows) ([]*store.Resource, error) {
	defer rows.Close()
	var out []*store.Resource
	for rows.Next() {
		res, err := scanResource(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, res)
	}
	return out, rows.Err()
}
