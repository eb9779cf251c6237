package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// tx is a store.Tx on a write transaction of the DB. It caches nothing
// from the database, so a savepoint rollback leaves nothing stale.
type tx struct {
	ctx   context.Context
	c     Tx
	s     *Store
	depth int // of nested Savepoints, naming them
	puts  int // resource versions written (see DB.Committed)
}

var _ store.Tx = (*tx)(nil)

// Read implements store.Tx.
func (t *tx) Read(typ, id string) (*store.Resource, error) {
	return t.s.readCurrent(t.ctx, t.c, typ, id)
}

// Search implements store.Tx: the matches and the total, no includes.
func (t *tx) Search(q *search.Query) (*store.Page, error) {
	return t.s.search(t.ctx, t.c, q, false)
}

// The statements of Put (see Store.WriteStatements).
const (
	sqlCurVersion    = `SELECT version FROM current WHERE type = ? AND id = ?`
	sqlInsResource   = `INSERT INTO resources (type, id, version, last_updated, deleted, body, tenant) VALUES (?, ?, ?, ?, ?, ?, ?)`
	sqlUpsertCurrent = `INSERT INTO current (type, id, version, last_updated, deleted, tenant) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,
		deleted = excluded.deleted, tenant = excluded.tenant`
	sqlDelKeys = `DELETE FROM conditional_keys WHERE type = ? AND id = ?`
)

// Put implements store.Tx in at most two round trips: the check of the
// current version (skipped for version 1: versions are contiguous from 1,
// so a resource that exists already has a version 1 and the insert below
// fails on the primary key), then one batch of statements. A concurrent
// writer of the same version (where writers run in parallel) makes the
// resources insert wait for it, then fail on the primary key. Either way
// the error is store.ErrConflict. Invalid entries are an error before
// anything is written.
func (t *tx) Put(res *store.Resource, entries []search.Entry) error {
	s := t.s
	if res == nil || res.Type == "" || res.ID == "" {
		return fmt.Errorf("%s: Put: resource type and id are required", s.d.Name)
	}
	if !validTenant(res.Tenant) {
		return fmt.Errorf("%s: Put %s/%s: %q is not a tenant", s.d.Name, res.Type, res.ID, res.Tenant)
	}
	var cur int64
	if res.Version != 1 {
		err := t.c.QueryRow(t.ctx, s.bind(sqlCurVersion), res.Type, res.ID).Scan(&cur)
		if err != nil && !errNoRows(err) {
			return fmt.Errorf("%s: Put: %w", s.d.Name, s.err(t.ctx, err))
		}
		if res.Version != cur+1 {
			return fmt.Errorf("%w: %s/%s version %d, current version is %d", store.ErrConflict, res.Type, res.ID, res.Version, cur)
		}
	}
	if res.LastUpdated.IsZero() {
		res.LastUpdated = s.now()
	}
	res.LastUpdated = res.LastUpdated.UTC().Truncate(time.Millisecond)
	lu := res.LastUpdated.UnixMilli()
	var body []byte // NULL for a deletion
	if !res.Deleted {
		body = res.Body
		if body == nil {
			body = []byte{}
		}
	}
	n := 2 // resources, current
	if cur > 0 {
		n += len(s.index) + 1 // deletes
	}
	if !res.Deleted {
		n += len(entries) // inserts, or fewer with arrays
	}
	stmts := make([]Stmt, 0, n)
	stmts = append(stmts,
		Stmt{s.bind(sqlInsResource), []any{res.Type, res.ID, res.Version, lu, res.Deleted, body, res.Tenant}},
		Stmt{s.bind(sqlUpsertCurrent), []any{res.Type, res.ID, res.Version, lu, res.Deleted, res.Tenant}})
	if cur > 0 {
		for _, x := range s.index {
			stmts = append(stmts, Stmt{x.del, []any{res.Type, res.ID}})
		}
		stmts = append(stmts, Stmt{s.bind(sqlDelKeys), []any{res.Type, res.ID}})
	}
	if !res.Deleted {
		var err error
		if stmts, err = s.entryStmts(stmts, res.Type, res.ID, entries); err != nil {
			return fmt.Errorf("%s: Put %s/%s: %w", s.d.Name, res.Type, res.ID, err)
		}
	}
	if err := t.c.Batch(t.ctx, stmts); err != nil {
		err = s.err(t.ctx, err)
		if res.Version == 1 && errors.Is(err, store.ErrConflict) {
			return fmt.Errorf("%s: Put %s/%s version 1: the resource exists: %w", s.d.Name, res.Type, res.ID, err)
		}
		return fmt.Errorf("%s: Put %s/%s: %w", s.d.Name, res.Type, res.ID, err)
	}
	t.puts++
	return nil
}

// ClaimKey implements store.Tx: it inserts the key unless it exists (where
// writers run in parallel, ON CONFLICT DO NOTHING waits for a concurrent
// inserter of the same key to commit or roll back), then, if it existed,
// checks its owner. Nothing fails inside the transaction, so the caller
// may go on using it after an ErrConflict.
func (t *tx) ClaimKey(key, typ, id string) error {
	s := t.s
	key = s.text(key)
	n, err := t.c.Exec(t.ctx, s.bind(`INSERT INTO conditional_keys (key, type, id) VALUES (?, ?, ?)
		ON CONFLICT (key) DO NOTHING`), key, typ, id)
	if err != nil {
		return fmt.Errorf("%s: ClaimKey: %w", s.d.Name, s.err(t.ctx, err))
	}
	if n == 1 {
		return nil
	}
	ot, oid, err := t.KeyOwner(key)
	switch {
	case err == nil && ot == typ && oid == id:
		return nil // already ours
	case err == nil:
		return fmt.Errorf("%w: conditional key %q is held by %s/%s", store.ErrConflict, key, ot, oid)
	case errors.Is(err, store.ErrNotFound):
		// Deleted by a concurrent transaction after our insert found it.
		return fmt.Errorf("%w: conditional key %q changed hands concurrently", store.ErrConflict, key)
	}
	return err
}

// KeyOwner implements store.Tx.
func (t *tx) KeyOwner(key string) (typ, id string, err error) {
	s := t.s
	err = t.c.QueryRow(t.ctx, s.bind(`SELECT type, id FROM conditional_keys WHERE key = ?`), s.text(key)).Scan(&typ, &id)
	if errNoRows(err) {
		return "", "", fmt.Errorf("conditional key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: KeyOwner: %w", s.d.Name, s.err(t.ctx, err))
	}
	return typ, id, nil
}

// Ledger implements store.Tx.
func (t *tx) Ledger(source, kind, recordID, version string) (*store.Ledger, error) {
	s := t.s
	l := &store.Ledger{Source: source, Kind: kind, RecordID: recordID, Version: version}
	var received int64
	err := t.c.QueryRow(t.ctx, s.bind(`SELECT content_hash, response, received FROM ledger
		WHERE source = ? AND kind = ? AND record_id = ? AND version = ?`),
		s.text(source), s.text(kind), s.text(recordID), s.text(version)).
		Scan(&l.ContentHash, &l.Response, &received)
	if errNoRows(err) {
		return nil, fmt.Errorf("ledger %s/%s/%s/%s: %w", source, kind, recordID, version, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: Ledger: %w", s.d.Name, s.err(t.ctx, err))
	}
	l.Received = time.UnixMilli(received).UTC()
	return l, nil
}

// PutLedger implements store.Tx: a zero l.Received is set to now, and it
// is truncated to the millisecond.
func (t *tx) PutLedger(l *store.Ledger) error {
	s := t.s
	if l.Received.IsZero() {
		l.Received = s.now()
	}
	l.Received = l.Received.UTC().Truncate(time.Millisecond)
	_, err := t.c.Exec(t.ctx, s.bind(`INSERT INTO ledger (source, kind, record_id, version, content_hash, response, received,
		tenant, mapping_version, input) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`), s.text(l.Source), s.text(l.Kind),
		s.text(l.RecordID), s.text(l.Version), s.text(l.ContentHash), l.Response, l.Received.UnixMilli(),
		s.text(l.Tenant), s.text(l.MappingVersion), l.Input)
	if err != nil {
		return fmt.Errorf("%s: PutLedger: %w", s.d.Name, s.err(t.ctx, err))
	}
	return nil
}

// Savepoint implements store.Tx. ROLLBACK TO undoes fn's writes, releases
// the row locks fn took (the audit chain head's among them) and ends the
// aborted state a failed statement leaves (PostgreSQL); it fails only
// when the transaction is lost (the connection broke, ctx ended, or the
// database rolled the whole transaction back, as SQLite does after a disk
// full or I/O error).
func (t *tx) Savepoint(fn func() error) error {
	s := t.s
	t.depth++
	defer func() { t.depth-- }()
	name := fmt.Sprintf("kg_sp%d", t.depth)
	if _, err := t.c.Exec(t.ctx, `SAVEPOINT `+name); err != nil {
		return fmt.Errorf("%s: savepoint: %w", s.d.Name, lost(s.err(t.ctx, err)))
	}
	ferr := fn()
	if ferr == nil {
		if _, err := t.c.Exec(t.ctx, `RELEASE SAVEPOINT `+name); err != nil {
			return fmt.Errorf("%s: release savepoint: %w", s.d.Name, lost(s.err(t.ctx, err)))
		}
		return nil
	}
	// One statement, one round trip (pgx sends a statement without
	// arguments as a simple query, which may hold several).
	if _, err := t.c.Exec(t.ctx, `ROLLBACK TO SAVEPOINT `+name+`; RELEASE SAVEPOINT `+name); err != nil {
		if errors.Is(ferr, store.ErrConflict) || errors.Is(ferr, store.ErrUnavailable) {
			return ferr
		}
		return fmt.Errorf("%s: rollback to savepoint (after %v): %w", s.d.Name, ferr, lost(s.err(t.ctx, err)))
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
