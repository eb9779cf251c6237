package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// The write statements, prepared once per Store (see Store.prepare).
const (
	sqlCurVersion    = `SELECT version FROM current WHERE type = ? AND id = ?`
	sqlInsResource   = `INSERT INTO resources (type, id, version, last_updated, deleted, body, tenant) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlUpsertCurrent = `INSERT INTO current (type, id, version, last_updated, deleted, tenant) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,
		deleted = excluded.deleted, tenant = excluded.tenant`
	sqlDelKeys     = `DELETE FROM conditional_keys WHERE type = ? AND id = ?`
	sqlInsToken    = `INSERT INTO idx_token (type, id, param, system, code, text) VALUES (?, ?, ?, ?, ?, ?)`
	sqlInsString   = `INSERT INTO idx_string (type, id, param, norm, exact) VALUES (?, ?, ?, ?, ?)`
	sqlInsDate     = `INSERT INTO idx_date (type, id, param, low, high) VALUES (?, ?, ?, ?, ?)`
	sqlInsRef      = `INSERT INTO idx_reference (type, id, param, ref_type, ref_id, ref_url) VALUES (?, ?, ?, ?, ?, ?)`
	sqlInsQuantity = `INSERT INTO idx_quantity (type, id, param, number, system, code, unit) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlInsURI      = `INSERT INTO idx_uri (type, id, param, uri) VALUES (?, ?, ?, ?)`
)

// indexTables are the search index tables, all keyed by (type, id).
var indexTables = []string{"idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_uri"}

// sqlDelIndex deletes a resource's entries from each index table.
var sqlDelIndex = func() map[string]string {
	m := map[string]string{}
	for _, t := range indexTables {
		m[t] = `DELETE FROM ` + t + ` WHERE type = ? AND id = ?`
	}
	return m
}()

var writeStmts = func() []string {
	s := []string{sqlCurVersion, sqlInsResource, sqlUpsertCurrent, sqlDelKeys,
		sqlInsToken, sqlInsString, sqlInsDate, sqlInsRef, sqlInsQuantity, sqlInsURI}
	for _, t := range indexTables {
		s = append(s, sqlDelIndex[t])
	}
	return s
}()

// tx is a store.Tx on a BEGIN IMMEDIATE transaction. It caches nothing
// from the database, so a savepoint rollback leaves nothing stale.
type tx struct {
	ctx   context.Context
	q     *sql.Tx
	s     *Store
	depth int // of nested Savepoints, naming them
}

var _ store.Tx = (*tx)(nil)

// exec runs one of the prepared write statements.
func (t *tx) exec(query string, args ...any) error {
	st := t.s.stmts[query]
	var err error
	if st != nil {
		_, err = t.q.StmtContext(t.ctx, st).ExecContext(t.ctx, args...)
	} else {
		_, err = t.q.ExecContext(t.ctx, query, args...)
	}
	return mapErr(err)
}

func (t *tx) Read(typ, id string) (*store.Resource, error) {
	return readCurrent(t.ctx, t.q, typ, id)
}

func (t *tx) Search(q *search.Query) (*store.Page, error) {
	return runSearch(t.ctx, t.q, q, false)
}

func (t *tx) Put(res *store.Resource, entries []search.Entry) error {
	if res == nil || res.Type == "" || res.ID == "" {
		return errors.New("sqlite: Put: resource type and id are required")
	}
	if !sqlstore.ValidTenant(res.Tenant) {
		return fmt.Errorf("sqlite: Put %s/%s: %q is not a tenant", res.Type, res.ID, res.Tenant)
	}
	var cur int64
	err := t.q.StmtContext(t.ctx, t.s.stmts[sqlCurVersion]).QueryRowContext(t.ctx, res.Type, res.ID).Scan(&cur)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("sqlite: Put: %w", mapErr(err))
	}
	if res.Version != cur+1 {
		return fmt.Errorf("%w: %s/%s version %d, current version is %d", store.ErrConflict, res.Type, res.ID, res.Version, cur)
	}
	if res.LastUpdated.IsZero() {
		res.LastUpdated = time.Now()
	}
	res.LastUpdated = res.LastUpdated.UTC().Truncate(time.Millisecond)
	lu := res.LastUpdated.UnixMilli()
	var body any
	if !res.Deleted {
		body = res.Body
		if res.Body == nil {
			body = []byte{}
		}
	}
	if err := t.exec(sqlInsResource, res.Type, res.ID, res.Version, lu, boolInt(res.Deleted), body, res.Tenant); err != nil {
		return fmt.Errorf("sqlite: Put: %w", err)
	}
	if err := t.exec(sqlUpsertCurrent, res.Type, res.ID, res.Version, lu, boolInt(res.Deleted), res.Tenant); err != nil {
		return fmt.Errorf("sqlite: Put: %w", err)
	}
	if cur > 0 {
		for _, tbl := range indexTables {
			if err := t.exec(sqlDelIndex[tbl], res.Type, res.ID); err != nil {
				return fmt.Errorf("sqlite: Put: %w", err)
			}
		}
		if err := t.exec(sqlDelKeys, res.Type, res.ID); err != nil {
			return fmt.Errorf("sqlite: Put: %w", err)
		}
	}
	if res.Deleted {
		return nil
	}
	for i := range entries {
		if err := t.putEntry(res.Type, res.ID, &entries[i]); err != nil {
			return fmt.Errorf("sqlite: Put %s/%s entry %s: %w", res.Type, res.ID, entries[i].Param, err)
		}
	}
	return nil
}

// putEntry inserts one index entry. String norms and token texts are
// normalised again (search.Normalize is idempotent), so callers that only
// lower-case still match.
func (t *tx) putEntry(typ, id string, e *search.Entry) error {
	if e.Param == "" {
		return errors.New("empty param")
	}
	switch e.Type {
	case search.TypeToken:
		return t.exec(sqlInsToken, typ, id, e.Param, e.System, e.Code, search.Normalize(e.Text))
	case search.TypeString:
		n := e.Norm
		if n == "" {
			n = e.Exact
		}
		return t.exec(sqlInsString, typ, id, e.Param, search.Normalize(n), e.Exact)
	case search.TypeDate:
		return t.exec(sqlInsDate, typ, id, e.Param, sqlstore.LowMS(e.Low), sqlstore.EntryHighMS(e.High))
	case search.TypeReference:
		return t.exec(sqlInsRef, typ, id, e.Param, e.RefType, e.RefID, e.RefURL)
	case search.TypeNumber, search.TypeQuantity:
		return t.exec(sqlInsQuantity, typ, id, e.Param, e.Number, e.System, e.Code, e.Unit)
	case search.TypeURI:
		return t.exec(sqlInsURI, typ, id, e.Param, entryURI(e))
	}
	return fmt.Errorf("unsupported entry type %q", e.Type)
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

func (t *tx) ClaimKey(key, typ, id string) error {
	_, err := t.q.ExecContext(t.ctx, `INSERT INTO conditional_keys (key, type, id) VALUES (?, ?, ?)`, key, typ, id)
	if err = mapErr(err); errors.Is(err, store.ErrConflict) {
		ot, oid, oerr := t.KeyOwner(key)
		if oerr == nil && ot == typ && oid == id {
			return nil // already ours
		}
		return fmt.Errorf("%w: conditional key %q is held by %s/%s", store.ErrConflict, key, ot, oid)
	}
	if err != nil {
		return fmt.Errorf("sqlite: ClaimKey: %w", err)
	}
	return nil
}

func (t *tx) KeyOwner(key string) (typ, id string, err error) {
	err = t.q.QueryRowContext(t.ctx, `SELECT type, id FROM conditional_keys WHERE key = ?`, key).Scan(&typ, &id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("conditional key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("sqlite: KeyOwner: %w", mapErr(err))
	}
	return typ, id, nil
}

func (t *tx) Ledger(source, kind, recordID, version string) (*store.Ledger, error) {
	l := &store.Ledger{Source: source, Kind: kind, RecordID: recordID, Version: version}
	var received int64
	err := t.q.QueryRowContext(t.ctx, `SELECT content_hash, response, received FROM ledger
		WHERE source = ? AND kind = ? AND record_id = ? AND version = ?`, source, kind, recordID, version).
		Scan(&l.ContentHash, &l.Response, &received)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("ledger %s/%s/%s/%s: %w", source, kind, recordID, version, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: Ledger: %w", mapErr(err))
	}
	l.Received = time.UnixMilli(received).UTC()
	return l, nil
}

func (t *tx) PutLedger(l *store.Ledger) error {
	if l.Received.IsZero() {
		l.Received = time.Now()
	}
	l.Received = l.Received.UTC().Truncate(time.Millisecond)
	_, err := t.q.ExecContext(t.ctx, `INSERT INTO ledger (source, kind, record_id, version, content_hash, response, received)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, l.Source, l.Kind, l.RecordID, l.Version, l.ContentHash, l.Response, l.Received.UnixMilli())
	if err != nil {
		return fmt.Errorf("sqlite: PutLedger: %w", mapErr(err))
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Savepoint implements store.Tx. ROLLBACK TO undoes fn's writes and keeps
// the transaction; it fails only when SQLite has already rolled back the
// whole transaction (after a disk full or I/O error, for instance).
func (t *tx) Savepoint(fn func() error) error {
	t.depth++
	defer func() { t.depth-- }()
	name := fmt.Sprintf("kg_sp%d", t.depth)
	if _, err := t.q.ExecContext(t.ctx, `SAVEPOINT `+name); err != nil {
		return fmt.Errorf("sqlite: savepoint: %w", lost(mapErr(err)))
	}
	ferr := fn()
	if ferr == nil {
		if _, err := t.q.ExecContext(t.ctx, `RELEASE `+name); err != nil {
			return fmt.Errorf("sqlite: release savepoint: %w", lost(mapErr(err)))
		}
		return nil
	}
	_, err := t.q.ExecContext(t.ctx, `ROLLBACK TO `+name)
	if err == nil {
		_, err = t.q.ExecContext(t.ctx, `RELEASE `+name)
	}
	if err != nil {
		if errors.Is(ferr, store.ErrConflict) || errors.Is(ferr, store.ErrUnavailable) {
			return ferr
		}
		return fmt.Errorf("sqlite: rollback to savepoint (after %v): %w", ferr, lost(mapErr(err)))
	}
	return ferr
}

// lost makes err, which ended the transaction, wrap store.ErrConflict or
// store.ErrUnavailable, so that the caller ends the transaction.
func lost(err error) error {
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
