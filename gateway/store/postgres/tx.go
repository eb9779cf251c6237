package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// The write statements (pgx prepares and caches them per connection).
const (
	sqlCurVersion    = `SELECT version FROM current WHERE type = $1 AND id = $2`
	sqlInsResource   = `INSERT INTO resources (type, id, version, last_updated, deleted, body, tenant) VALUES ($1, $2, $3, $4, $5, $6, $7)`
	sqlUpsertCurrent = `INSERT INTO current (type, id, version, last_updated, deleted, tenant) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (type, id) DO UPDATE SET version = excluded.version, last_updated = excluded.last_updated,
		deleted = excluded.deleted, tenant = excluded.tenant`
	sqlDelKeys = `DELETE FROM conditional_keys WHERE type = $1 AND id = $2`
)

// indexTables are the search index tables, all keyed by (type, id).
var indexTables = []string{"idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_uri"}

// sqlDelIndex deletes a resource's entries from each index table.
var sqlDelIndex = func() map[string]string {
	m := map[string]string{}
	for _, t := range indexTables {
		m[t] = `DELETE FROM ` + t + ` WHERE type = $1 AND id = $2`
	}
	return m
}()

// tx is a store.Tx on a READ COMMITTED transaction. It caches nothing
// from the database, so a savepoint rollback leaves nothing stale.
type tx struct {
	ctx   context.Context
	q     pgx.Tx
	depth int // of nested Savepoints, naming them
	puts  int // resource versions written (see Store.wrote)
}

var _ store.Tx = (*tx)(nil)

func (t *tx) Read(typ, id string) (*store.Resource, error) {
	return readCurrent(t.ctx, t.q, typ, id)
}

func (t *tx) Search(q *search.Query) (*store.Page, error) {
	return runSearch(t.ctx, t.q, q, false)
}

// Put writes a resource version in at most two round trips: the check of
// the current version (skipped for version 1: versions are contiguous from
// 1, so a resource that exists already has a version 1 and the insert
// below fails on the primary key), then one batch of statements. A
// concurrent writer of the same version makes the resources insert wait
// for it, then fail with a unique violation. Either way the error is
// store.ErrConflict; after a unique violation the transaction can only be
// rolled back (as after any failed statement).
func (t *tx) Put(res *store.Resource, entries []search.Entry) error {
	if res == nil || res.Type == "" || res.ID == "" {
		return errors.New("postgres: Put: resource type and id are required")
	}
	if !sqlstore.ValidTenant(res.Tenant) {
		return fmt.Errorf("postgres: Put %s/%s: %q is not a tenant", res.Type, res.ID, res.Tenant)
	}
	var cur int64
	if res.Version != 1 {
		err := t.q.QueryRow(t.ctx, sqlCurVersion, res.Type, res.ID).Scan(&cur)
		if err != nil && !errNoRows(err) {
			return fmt.Errorf("postgres: Put: %w", mapErr(t.ctx, err))
		}
		if res.Version != cur+1 {
			return fmt.Errorf("%w: %s/%s version %d, current version is %d", store.ErrConflict, res.Type, res.ID, res.Version, cur)
		}
	}
	if res.LastUpdated.IsZero() {
		res.LastUpdated = time.Now()
	}
	res.LastUpdated = res.LastUpdated.UTC().Truncate(time.Millisecond)
	lu := res.LastUpdated.UnixMilli()
	var body []byte
	if !res.Deleted {
		body = res.Body
		if res.Body == nil {
			body = []byte{}
		}
	}
	b := &pgx.Batch{}
	b.Queue(sqlInsResource, res.Type, res.ID, res.Version, lu, res.Deleted, body, res.Tenant)
	b.Queue(sqlUpsertCurrent, res.Type, res.ID, res.Version, lu, res.Deleted, res.Tenant)
	if cur > 0 {
		for _, tbl := range indexTables {
			b.Queue(sqlDelIndex[tbl], res.Type, res.ID)
		}
		b.Queue(sqlDelKeys, res.Type, res.ID)
	}
	if !res.Deleted {
		if err := queueEntries(b, res.Type, res.ID, entries); err != nil {
			return fmt.Errorf("postgres: Put %s/%s: %w", res.Type, res.ID, err)
		}
	}
	if err := t.q.SendBatch(t.ctx, b).Close(); err != nil {
		if res.Version == 1 && isUnique(err) {
			return fmt.Errorf("%w: %s/%s version 1: the resource exists", store.ErrConflict, res.Type, res.ID)
		}
		return fmt.Errorf("postgres: Put %s/%s: %w", res.Type, res.ID, mapErr(t.ctx, err))
	}
	t.puts++
	return nil
}

// isUnique tells whether err is a unique violation.
func isUnique(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// columns collects the rows of one index table column by column, for one
// multi-row INSERT ... SELECT FROM unnest(...).
type columns struct {
	n    int
	cols [5][]any
}

func (c *columns) add(vals ...any) {
	for i, v := range vals {
		c.cols[i] = append(c.cols[i], v)
	}
	c.n++
}

// The multi-row index inserts: $1 type, $2 id, then one array per column.
var sqlInsIndex = map[string]string{
	"idx_token": `INSERT INTO idx_token (type, id, param, system, code, text)
		SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[])`,
	"idx_string": `INSERT INTO idx_string (type, id, param, norm, exact)
		SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[])`,
	"idx_date": `INSERT INTO idx_date (type, id, param, low, high)
		SELECT $1, $2, * FROM unnest($3::text[], $4::bigint[], $5::bigint[])`,
	"idx_reference": `INSERT INTO idx_reference (type, id, param, ref_type, ref_id, ref_url)
		SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::text[], $6::text[])`,
	"idx_quantity": `INSERT INTO idx_quantity (type, id, param, number, system, code, unit)
		SELECT $1, $2, * FROM unnest($3::text[], $4::float8[], $5::text[], $6::text[], $7::text[])`,
	"idx_uri": `INSERT INTO idx_uri (type, id, param, uri)
		SELECT $1, $2, * FROM unnest($3::text[], $4::text[])`,
}

// queueEntries queues the inserts of a resource's index entries, one
// statement per index table. String norms and token texts are normalised
// again (search.Normalize is idempotent), so callers that only lower-case
// still match.
func queueEntries(b *pgx.Batch, typ, id string, entries []search.Entry) error {
	tables := map[string]*columns{}
	col := func(tbl string) *columns {
		if tables[tbl] == nil {
			tables[tbl] = &columns{}
		}
		return tables[tbl]
	}
	for i := range entries {
		e := &entries[i]
		if e.Param == "" {
			return fmt.Errorf("entry %d: empty param", i)
		}
		p := text(e.Param)
		switch e.Type {
		case search.TypeToken:
			col("idx_token").add(p, text(e.System), text(e.Code), text(search.Normalize(e.Text)))
		case search.TypeString:
			n := e.Norm
			if n == "" {
				n = e.Exact
			}
			col("idx_string").add(p, text(search.Normalize(n)), text(e.Exact))
		case search.TypeDate:
			col("idx_date").add(p, sqlstore.LowMS(e.Low), sqlstore.EntryHighMS(e.High))
		case search.TypeReference:
			col("idx_reference").add(p, text(e.RefType), text(e.RefID), text(e.RefURL))
		case search.TypeNumber, search.TypeQuantity:
			col("idx_quantity").add(p, e.Number, text(e.System), text(e.Code), text(e.Unit))
		case search.TypeURI:
			col("idx_uri").add(p, text(entryURI(e)))
		default:
			return fmt.Errorf("entry %s: unsupported entry type %q", e.Param, e.Type)
		}
	}
	for _, tbl := range indexTables {
		c := tables[tbl]
		if c == nil {
			continue
		}
		args := []any{typ, id}
		for _, vals := range c.cols {
			if vals != nil {
				args = append(args, typedArray(vals))
			}
		}
		b.Queue(sqlInsIndex[tbl], args...)
	}
	return nil
}

// typedArray turns a column of values into a []string, []int64 or
// []float64 (what pgx encodes as text[], bigint[], float8[]).
func typedArray(vals []any) any {
	switch vals[0].(type) {
	case int64:
		out := make([]int64, len(vals))
		for i, v := range vals {
			out[i] = v.(int64)
		}
		return out
	case float64:
		out := make([]float64, len(vals))
		for i, v := range vals {
			out[i] = v.(float64)
		}
		return out
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = v.(string)
	}
	return out
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

// ClaimKey inserts the key unless it exists (ON CONFLICT DO NOTHING waits
// for a concurrent inserter of the same key to commit or roll back), then,
// if it existed, checks its owner. Nothing fails inside the transaction, so
// the caller may go on using it after an ErrConflict.
func (t *tx) ClaimKey(key, typ, id string) error {
	key = text(key)
	tag, err := t.q.Exec(t.ctx, `INSERT INTO conditional_keys (key, type, id) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO NOTHING`, key, typ, id)
	if err != nil {
		return fmt.Errorf("postgres: ClaimKey: %w", mapErr(t.ctx, err))
	}
	if tag.RowsAffected() == 1 {
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

func (t *tx) KeyOwner(key string) (typ, id string, err error) {
	err = t.q.QueryRow(t.ctx, `SELECT type, id FROM conditional_keys WHERE key = $1`, text(key)).Scan(&typ, &id)
	if errNoRows(err) {
		return "", "", fmt.Errorf("conditional key %q: %w", key, store.ErrNotFound)
	}
	if err != nil {
		return "", "", fmt.Errorf("postgres: KeyOwner: %w", mapErr(t.ctx, err))
	}
	return typ, id, nil
}

func (t *tx) Ledger(source, kind, recordID, version string) (*store.Ledger, error) {
	l := &store.Ledger{Source: source, Kind: kind, RecordID: recordID, Version: version}
	var received int64
	err := t.q.QueryRow(t.ctx, `SELECT content_hash, response, received FROM ledger
		WHERE source = $1 AND kind = $2 AND record_id = $3 AND version = $4`,
		text(source), text(kind), text(recordID), text(version)).
		Scan(&l.ContentHash, &l.Response, &received)
	if errNoRows(err) {
		return nil, fmt.Errorf("ledger %s/%s/%s/%s: %w", source, kind, recordID, version, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: Ledger: %w", mapErr(t.ctx, err))
	}
	l.Received = time.UnixMilli(received).UTC()
	return l, nil
}

func (t *tx) PutLedger(l *store.Ledger) error {
	if l.Received.IsZero() {
		l.Received = time.Now()
	}
	l.Received = l.Received.UTC().Truncate(time.Millisecond)
	_, err := t.q.Exec(t.ctx, `INSERT INTO ledger (source, kind, record_id, version, content_hash, response, received)
		VALUES ($1, $2, $3, $4, $5, $6, $7)`, text(l.Source), text(l.Kind), text(l.RecordID), text(l.Version),
		text(l.ContentHash), l.Response, l.Received.UnixMilli())
	if err != nil {
		return fmt.Errorf("postgres: PutLedger: %w", mapErr(t.ctx, err))
	}
	return nil
}

// Savepoint implements store.Tx. ROLLBACK TO undoes fn's writes, releases
// the row locks fn took (the audit chain head's among them) and ends the
// aborted state a failed statement leaves; it fails only when the
// transaction is lost (the connection broke, or ctx ended).
func (t *tx) Savepoint(fn func() error) error {
	t.depth++
	defer func() { t.depth-- }()
	name := fmt.Sprintf("kg_sp%d", t.depth)
	if _, err := t.q.Exec(t.ctx, `SAVEPOINT `+name); err != nil {
		return fmt.Errorf("postgres: savepoint: %w", lost(mapErr(t.ctx, err)))
	}
	ferr := fn()
	if ferr == nil {
		if _, err := t.q.Exec(t.ctx, `RELEASE SAVEPOINT `+name); err != nil {
			return fmt.Errorf("postgres: release savepoint: %w", lost(mapErr(t.ctx, err)))
		}
		return nil
	}
	// One round trip (pgx sends a query without arguments as a simple
	// query, which may hold several statements).
	if _, err := t.q.Exec(t.ctx, `ROLLBACK TO SAVEPOINT `+name+`; RELEASE SAVEPOINT `+name); err != nil {
		if errors.Is(ferr, store.ErrConflict) || errors.Is(ferr, store.ErrUnavailable) {
			return ferr
		}
		return fmt.Errorf("postgres: rollback to savepoint (after %v): %w", ferr, lost(mapErr(t.ctx, err)))
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
