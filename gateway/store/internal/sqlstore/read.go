package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// resourceCols are the columns scanResource reads, from table alias r.
const resourceCols = `r.type, r.id, r.version, r.last_updated, r.deleted, r.body, r.tenant, r.method, r.status`

// scanResource reads a row of resourceCols. A body comes back unpacked
// (store.UnpackBody; never nil for a version that is not a deletion).
func scanResource(sc Row) (*store.Resource, error) {
	var res store.Resource
	var lu int64
	var body []byte
	if err := sc.Scan(&res.Type, &res.ID, &res.Version, &lu, &res.Deleted, &body, &res.Tenant, &res.Method, &res.Status); err != nil {
		return nil, err
	}
	res.LastUpdated = time.UnixMilli(lu).UTC()
	if !res.Deleted {
		body, err := store.UnpackBody(body)
		if err != nil {
			return nil, fmt.Errorf("%s/%s version %d: %w", res.Type, res.ID, res.Version, err)
		}
		if body == nil {
			body = []byte{}
		}
		res.Body = body
	}
	return &res, nil
}

// collect reads rows of resourceCols and closes them.
func collect(rows Rows) ([]*store.Resource, error) {
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

// collectWithin is collect of rows as far as b lets their bodies in: cut
// says it stopped at a row b refused (read, not kept; no row after it is
// read).
func collectWithin(rows Rows, b *store.PageBudget) (out []*store.Resource, cut bool, err error) {
	defer rows.Close()
	for rows.Next() {
		res, err := scanResource(rows)
		if err != nil {
			return nil, false, err
		}
		if !b.Take(len(res.Body)) {
			return out, true, nil
		}
		out = append(out, res)
	}
	return out, false, rows.Err()
}

const sqlReadCurrent = `SELECT ` + resourceCols + ` FROM current c
	JOIN resources r ON r.type = c.type AND r.id = c.id AND r.version = c.version
	WHERE c.type = ? AND c.id = ?`

const sqlVRead = `SELECT ` + resourceCols + ` FROM resources r WHERE r.type = ? AND r.id = ? AND r.version = ?`

func (s *Store) readCurrent(ctx context.Context, c Conn, typ, id string) (*store.Resource, error) {
	res, err := scanResource(c.QueryRow(ctx, s.bind(sqlReadCurrent), typ, id))
	if errNoRows(err) {
		return nil, fmt.Errorf("%s/%s: %w", typ, id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: read %s/%s: %w", s.d.Name, typ, id, s.err(ctx, err))
	}
	if res.Deleted {
		return res, fmt.Errorf("%s/%s: %w", typ, id, store.ErrGone)
	}
	return res, nil
}

// Read implements store.Store: the current version of typ/id, of
// whichever tenant; ErrNotFound, or ErrGone with the deletion's metadata.
func (s *Store) Read(ctx context.Context, typ, id string) (*store.Resource, error) {
	var res *store.Resource
	err := s.db.Read(ctx, func(c Conn) error {
		var err error
		res, err = s.readCurrent(ctx, c, typ, id)
		return err
	})
	return res, err
}

// VRead implements store.Store: one version of typ/id, of whichever
// tenant; ErrNotFound if it does not exist.
func (s *Store) VRead(ctx context.Context, typ, id string, version int64) (*store.Resource, error) {
	var res *store.Resource
	err := s.db.Read(ctx, func(c Conn) error {
		var err error
		res, err = s.vread(ctx, c, typ, id, version)
		return err
	})
	return res, err
}

// vread reads one version with c.
func (s *Store) vread(ctx context.Context, c Conn, typ, id string, version int64) (*store.Resource, error) {
	res, err := scanResource(c.QueryRow(ctx, s.bind(sqlVRead), typ, id, version))
	if errNoRows(err) {
		return nil, fmt.Errorf("%s/%s/_history/%d: %w", typ, id, version, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: vread %s/%s/%d: %w", s.d.Name, typ, id, version, s.err(ctx, err))
	}
	return res, nil
}

// History implements store.Store: the versions q selects (of q.Tenant),
// newest first, and their total count, in one snapshot. The history of a
// resource that never existed is empty (no error); an id without a type
// is an error.
func (s *Store) History(ctx context.Context, q store.HistoryQuery) ([]*store.Resource, int, error) {
	var out []*store.Resource
	var total int
	err := s.db.Snapshot(ctx, func(c Conn) error {
		var err error
		out, total, err = s.history(ctx, c, q)
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

// history reads the versions q selects and their count with c.
func (s *Store) history(ctx context.Context, c Conn, q store.HistoryQuery) ([]*store.Resource, int, error) {
	countStmt, pageStmt, err := HistoryStatements(s.d, q)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: history: %w", s.d.Name, err)
	}
	var total int
	if err := c.QueryRow(ctx, countStmt.SQL, countStmt.Args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("%s: history: %w", s.d.Name, s.err(ctx, err))
	}
	rows, err := c.Query(ctx, pageStmt.SQL, pageStmt.Args...)
	var out []*store.Resource
	if err == nil {
		out, _, err = collectWithin(rows, &store.PageBudget{Max: q.MaxBytes})
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: history: %w", s.d.Name, s.err(ctx, err))
	}
	return out, total, nil
}

// HistoryStatements are the statements of History for q: the count of the
// versions it selects, and its page of them.
func HistoryStatements(d *Dialect, q store.HistoryQuery) (Stmt, Stmt, error) {
	if q.ID != "" && q.Type == "" {
		return Stmt{}, Stmt{}, errors.New("an id needs a type")
	}
	b := NewBuilder(d, "", time.Time{})
	b.Add(" WHERE 1 = 1")
	b.scopeCond("r", q.Type, q.Tenant, q.Shared)
	if q.Type != "" {
		b.Add(" AND r.type = ?", q.Type)
	}
	if q.ID != "" {
		b.Add(" AND r.id = ?", q.ID)
	}
	if len(q.Types) > 0 {
		b.Add(" AND ")
		b.in("r.type", q.Types)
	}
	for _, t := range q.Exclude {
		b.Add(" AND r.type <> ?", t)
	}
	switch {
	case !q.Since.IsZero():
		b.Add(" AND r.last_updated >= ?", q.Since.UnixMilli())
	case q.Type == "":
		// A bound on last_updated that selects every version: without
		// one, SQLite plans the system's history as a scan of all the
		// versions and a sort of them all for every page; with it, as a
		// walk of the last_updated index that sorts only the versions of
		// one instant (TestHistoryPlan).
		b.Add(" AND r.last_updated >= ?", int64(math.MinInt64))
	}
	where, nargs := b.SQL(), len(b.Args())
	order := " ORDER BY r.last_updated DESC, r.type, r.id, r.version DESC"
	if q.ID != "" {
		order = " ORDER BY r.version DESC"
	}
	count, offset := pageBounds(q.Count, q.Offset)
	b.Add(order+" LIMIT ? OFFSET ?", count, offset)
	return Stmt{SQL: `SELECT COUNT(*) FROM resources r` + where, Args: b.Args()[:nargs]},
		Stmt{SQL: `SELECT ` + resourceCols + ` FROM resources r` + b.SQL(), Args: b.Args()}, nil
}
