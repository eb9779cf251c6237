package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// resourceCols are the columns scanResource reads, from table alias r.
const resourceCols = `r.type, r.id, r.version, r.last_updated, r.deleted, r.body, r.tenant`

type scanner interface{ Scan(dest ...any) error }

func scanResource(sc scanner) (*store.Resource, error) {
	var res store.Resource
	var lu int64
	var deleted int
	var body []byte
	if err := sc.Scan(&res.Type, &res.ID, &res.Version, &lu, &deleted, &body, &res.Tenant); err != nil {
		return nil, err
	}
	res.LastUpdated = time.UnixMilli(lu).UTC()
	res.Deleted = deleted != 0
	if !res.Deleted {
		if body == nil {
			body = []byte{}
		}
		res.Body = body
	}
	return &res, nil
}

func readCurrent(ctx context.Context, q querier, typ, id string) (*store.Resource, error) {
	res, err := scanResource(q.QueryRowContext(ctx, `SELECT `+resourceCols+` FROM current c
		JOIN resources r ON r.type = c.type AND r.id = c.id AND r.version = c.version
		WHERE c.type = ? AND c.id = ?`, typ, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: read %s/%s: %w", typ, id, mapErr(err))
	}
	if res.Deleted {
		return res, fmt.Errorf("%s/%s: %w", typ, id, store.ErrGone)
	}
	return res, nil
}

// Read returns the current version of typ/id, of whichever tenant.
func (s *Store) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	return readCurrent(ctx, s.r, typ, id)
}

// VRead returns one version of typ/id, of whichever tenant.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	res, err := scanResource(s.r.QueryRowContext(ctx, `SELECT `+resourceCols+` FROM resources r
		WHERE r.type = ? AND r.id = ? AND r.version = ?`, typ, id, version))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: vread %s/%s/%d: %w", typ, id, version, mapErr(err))
	}
	return res, nil
}

// History returns the versions q selects (of q.Tenant), newest first, and
// their total count. The history of a resource that never existed is
// empty (no error).
func (s *Store) History(ctx context.Context, q store.HistoryQuery) ([]*store.Resource, int, error) {
	if q.ID != "" && q.Type == "" {
		return nil, 0, errors.New("sqlite: history: an id needs a type")
	}
	var where []string
	var args []any
	switch {
	case q.Tenant == search.AllTenants:
	case !sqlstore.ValidTenant(q.Tenant):
		where = append(where, "1 = 0") // no version has it
	default:
		where = append(where, "r.tenant = ?")
		args = append(args, q.Tenant)
	}
	if q.Type != "" {
		where = append(where, "r.type = ?")
		args = append(args, q.Type)
	}
	if q.ID != "" {
		where = append(where, "r.id = ?")
		args = append(args, q.ID)
	}
	if !q.Since.IsZero() {
		where = append(where, "r.last_updated >= ?")
		args = append(args, q.Since.UnixMilli())
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

	rtx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: history: %w", mapErr(err))
	}
	defer rtx.Rollback()
	var total int
	if err := rtx.QueryRowContext(ctx, `SELECT COUNT(*) FROM resources r`+cond, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("sqlite: history: %w", mapErr(err))
	}
	rows, err := rtx.QueryContext(ctx, `SELECT `+resourceCols+` FROM resources r`+cond+order+` LIMIT ? OFFSET ?`,
		append(args, count, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("sqlite: history: %w", mapErr(err))
	}
	defer rows.Close()
	var out []*store.Resource
	for rows.Next() {
		res, err := scanResource(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("sqlite: history: %w", mapErr(err))
		}
		out = append(out, res)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("sqlite: history: %w", mapErr(err))
	}
	return out, total, nil
}
