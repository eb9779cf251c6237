package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// tx is a store.Tx on a write transaction of the DB. It buffers what
// Put writes (see putBuffer) and the audit chain entries AppendAudit
// appends (see appendChain); otherwise it caches nothing from the
// database, so a savepoint rollback leaves nothing stale.
type tx struct {
	ctx    context.Context
	c      Tx
	s      *Store
	depth  int // of nested Savepoints, naming them
	puts   int // resource versions written (see DB.Committed)
	buf    putBuffer
	audits []chainAppend // appended when the transaction commits
	// failed is the error of a flush whose statements failed: the
	// transaction may hold part of that flush's rows (see
	// Dialect.InsertRows), so every later flush, and so the commit, fails
	// with it, until the rollback of a savepoint begun before it.
	failed error
	// seen is, with Dialect.RowLocks (writers in parallel, at READ
	// COMMITTED), the version of each resource the running request first
	// read (Read, a search's matches and includes) or last wrote: Put
	// refuses, with store.ErrConflict, a version that does not follow it,
	// as the resource changed under a concurrent writer after the request
	// read what it writes from (a PATCH applied to a version that is no
	// longer current, a Patient given an MRN on the version before
	// another record's MRN). Each statement of a READ COMMITTED
	// transaction sees what committed before it, so the request's later
	// read (the update's own) saw the new version, and its write, built
	// from the old, would have taken that away (lost update). The retry
	// (store.Retry) reads the new one. Cleared for each request (call);
	// seenUndo undoes, at a savepoint's rollback, what changed it since.
	seen     map[resKey]int64
	seenUndo []seenChange
}

// seenChange is a change of tx.seen made inside a savepoint: the key and
// what it held before (had false: nothing).
type seenChange struct {
	k   resKey
	v   int64
	had bool
}

// setSeen sets tx.seen[k] to v, noting the change for a savepoint's
// rollback.
func (t *tx) setSeen(k resKey, v int64) {
	old, had := t.seen[k]
	if t.depth > 0 {
		t.seenUndo = append(t.seenUndo, seenChange{k, old, had})
	}
	if t.seen == nil {
		t.seen = map[resKey]int64{}
	}
	t.seen[k] = v
}

// undoSeen undoes the changes of tx.seen after the first mark of them.
func (t *tx) undoSeen(mark int) {
	for i := len(t.seenUndo) - 1; i >= mark; i-- {
		c := t.seenUndo[i]
		if c.had {
			t.seen[c.k] = c.v
		} else {
			delete(t.seen, c.k)
		}
	}
	t.seenUndo = t.seenUndo[:mark]
}

var _ store.Tx = (*tx)(nil)

// Read implements store.Tx: a version Put in this transaction and not yet
// flushed is answered from the buffer; any other resource's current row
// is the database's (the buffer does not change it).
func (t *tx) Read(typ, id string) (*store.Resource, error) {
	if v := t.buf.latest[resKey{typ, id}]; v != nil {
		r := v.resource()
		if r.Deleted {
			return r, fmt.Errorf("%s/%s: %w", typ, id, store.ErrGone)
		}
		return r, nil
	}
	r, err := t.s.readCurrent(t.ctx, t.c, typ, id)
	t.saw(r) // nil when there is none
	return r, err
}

// saw records, for Put's check (tx.seen), the versions of rs the request
// read, unless it read or wrote the resource before.
func (t *tx) saw(rs ...*store.Resource) {
	if !t.s.d.RowLocks {
		return // writers are serialised: what a request reads stays current
	}
	for _, r := range rs {
		if r == nil {
			continue
		}
		k := resKey{r.Type, r.ID}
		if _, ok := t.seen[k]; !ok {
			t.setSeen(k, r.Version)
		}
	}
}

// sawPage records the matches and included resources of pages (saw).
func (t *tx) sawPage(pages ...*store.Page) {
	for _, p := range pages {
		if p != nil {
			t.saw(p.Matches...)
			t.saw(p.Included...)
		}
	}
}

// VRead implements store.Tx: a version Put in this transaction and not
// yet flushed is answered from the buffer (the latest; an earlier one
// after a flush), any other from the database.
func (t *tx) VRead(typ, id string, version int64) (*store.Resource, error) {
	if v := t.buf.latest[resKey{typ, id}]; v != nil && v.version == version {
		return v.resource(), nil
	}
	if err := t.flush(); err != nil {
		return nil, err
	}
	return t.s.vread(t.ctx, t.c, typ, id, version)
}

// History implements store.Tx, after the buffered writes are flushed.
func (t *tx) History(q store.HistoryQuery) ([]*store.Resource, int, error) {
	if err := t.flush(); err != nil {
		return nil, 0, err
	}
	return t.s.history(t.ctx, t.c, q)
}

// Search implements store.Tx: the matches, the total and the included
// resources, after the buffered writes are flushed.
func (t *tx) Search(q *search.Query) (*store.Page, error) {
	if err := t.flush(); err != nil {
		return nil, err
	}
	p, err := t.s.search(t.ctx, t.c, q, true)
	t.sawPage(p)
	return p, err
}

// Include implements store.Tx, after the buffered writes are flushed.
func (t *tx) Include(q *search.Query, from []*store.Resource) ([]*store.Resource, error) {
	if q == nil {
		return nil, fmt.Errorf("%s: include: nil query", t.s.d.Name)
	}
	if len(from) == 0 || len(q.Includes) == 0 && len(q.RevIncludes) == 0 {
		return nil, nil
	}
	if err := t.flush(); err != nil {
		return nil, err
	}
	keys := make([]key, len(from))
	for i, r := range from {
		keys[i] = key{r.Type, r.ID, r.Version}
	}
	inc, err := t.s.includes(t.ctx, t.c, q, keys)
	t.saw(inc...)
	return inc, err
}

// SearchEach implements store.Tx, after the buffered writes are flushed
// (see Store.searchEach).
func (t *tx) SearchEach(qs []*search.Query) ([]*store.Page, error) {
	if err := t.flush(); err != nil {
		return make([]*store.Page, len(qs)), err
	}
	pages, err := t.s.searchEach(t.ctx, t.c, qs)
	t.sawPage(pages...)
	return pages, err
}

// sqlCurVersion is the one statement of Put that reaches the database.
const sqlCurVersion = `SELECT version FROM current WHERE type = ? AND id = ?`

// Put implements store.Tx. It checks the version (against a version of
// the resource buffered in this transaction, else against the database's
// current row, which it reads unless the version is 1: versions are
// contiguous from 1, so a resource that exists already has a version 1,
// and inserting another fails on the primary key) and then buffers the
// version, its current row and its index rows; they are written, many
// resources to a statement, when the buffer is flushed (see putBuffer).
// A version 1 of a resource already stored is therefore reported as
// store.ErrConflict by the flush, that is by a later call of the
// transaction or by its commit; every other conflict, and invalid
// entries, are reported by Put itself, before anything is buffered.
func (t *tx) Put(res *store.Resource, entries []search.Entry) error {
	s := t.s
	if res == nil || res.Type == "" || res.ID == "" {
		return fmt.Errorf("%s: Put: resource type and id are required", s.d.Name)
	}
	if !validTenant(res.Tenant) {
		return fmt.Errorf("%s: Put %s/%s: %q is not a tenant", s.d.Name, res.Type, res.ID, res.Tenant)
	}
	k := resKey{res.Type, res.ID}
	prev := t.buf.latest[k]
	var cur int64
	switch {
	case prev != nil:
		cur = prev.version
	case res.Version != 1:
		err := t.c.QueryRow(t.ctx, s.bind(sqlCurVersion), res.Type, res.ID).Scan(&cur)
		if err != nil && !errNoRows(err) {
			return fmt.Errorf("%s: Put: %w", s.d.Name, s.err(t.ctx, err))
		}
	}
	if res.Version != cur+1 {
		return fmt.Errorf("%w: %s/%s version %d, current version is %d", store.ErrConflict, res.Type, res.ID, res.Version, cur)
	}
	if read, ok := t.seen[k]; ok && prev == nil && read != cur {
		return fmt.Errorf("%w: %s/%s changed by a concurrent writer since version %d, which this request read", store.ErrConflict, res.Type, res.ID, read)
	}
	var rows [numIndexTables][][]any
	if !res.Deleted {
		if err := s.entryRows(&rows, entries); err != nil {
			return fmt.Errorf("%s: Put %s/%s: %w", s.d.Name, res.Type, res.ID, err)
		}
	}
	if res.LastUpdated.IsZero() {
		res.LastUpdated = s.now()
	}
	res.LastUpdated = res.LastUpdated.UTC().Truncate(time.Millisecond)
	var body, packed []byte // NULL for a deletion
	if !res.Deleted {
		body, packed = res.Body, res.Packed()
		if body == nil {
			body, packed = []byte{}, []byte{}
		}
	}
	t.buf.add(k, &bufVersion{version: res.Version, lu: res.LastUpdated.UnixMilli(), deleted: res.Deleted,
		body: body, packed: packed, tenant: res.Tenant, method: res.Method, status: int64(res.Status), rows: rows}, prev == nil && cur > 0)
	if s.d.RowLocks {
		t.setSeen(k, res.Version) // what the request writes next follows its own version
	}
	t.puts++
	t.flushAhead()
	return nil
}

// flush writes the buffered versions and claims (see putBuffer.stmts) and
// empties the buffer, also when the statements fail. A claim of a key
// that another resource holds is store.ErrConflict. It first waits for
// a flush sent ahead, whose error is then flush's.
func (t *tx) flush() error {
	if t.failed != nil {
		t.buf.reset()
		return t.failed
	}
	if a, ok := t.c.(*aheadTx); ok {
		if err := a.settle(); err != nil {
			t.buf.reset()
			t.failed = err
			return err
		}
	}
	if t.buf.empty() {
		return nil
	}
	var claimed int64
	stmts := t.buf.stmts(t.s, &claimed)
	claims := t.buf.claims
	t.buf.reset()
	if err := t.c.Batch(t.ctx, stmts); err != nil {
		t.failed = t.flushErr(err)
		return t.failed
	}
	if claimed < int64(len(claims)) {
		return t.checkClaims(claims)
	}
	return nil
}

// flushErr is the error of a flush whose statements failed with err.
func (t *tx) flushErr(err error) error {
	s := t.s
	err = s.err(t.ctx, err)
	if errors.Is(err, store.ErrConflict) {
		return fmt.Errorf("%s: Put: a version written in this transaction exists already: %w", s.d.Name, err)
	}
	return fmt.Errorf("%s: Put: %w", s.d.Name, err)
}

// Flushing ahead.
//
// Where Dialect.FlushAhead says so (PostgreSQL), a Put that leaves
// flushAheadVersions versions or more in the buffer, and no conditional
// key claimed, sends them to the database at once, on another goroutine,
// and returns: the database inserts one part of a large transaction's
// rows while the gateway makes and puts the next (engine's render), rather
// than all of them at the commit while the gateway waits. (A claim needs
// its check after the insert, so a buffer holding one waits for flush.)
// At most one such flush is in flight; while it is, the buffer grows.
// Every other use of the transaction's connection waits for it first
// (aheadTx), and its error, classified as flush's, is the result of the
// first use after it: flush itself, normally (the next search, savepoint
// or the commit), else the statement that came first, which then does not
// run. Either way the transaction fails as if that flush had.
//
// Loading the nine Synthea Bundles into PostgreSQL at one client (issue
// 19), half the wall time was the commit's flush, with the gateway idle;
// flushing ahead raised the rate by 4.5% (median ratio of twelve
// interleaved pairs, faster in nine; 5% in eight more): the overlap is
// bounded by the time the gateway takes to make the resources, since the
// database inserts more slowly than they are made. On SQLite, whose
// inserts compete with the making for the same cores, it gained nothing,
// and the dialect leaves it off.
const flushAheadVersions = 64

// WritesAhead implements store.WritesAhead.
func (t *tx) WritesAhead() bool {
	_, ok := t.c.(*aheadTx)
	return ok
}

// flushAhead sends the buffer ahead when it is due (see above).
func (t *tx) flushAhead() {
	a, ok := t.c.(*aheadTx)
	if !ok || len(t.buf.versions) < flushAheadVersions || len(t.buf.claims) > 0 || !a.idle() {
		return
	}
	var claimed int64 // no claims (above)
	stmts := t.buf.stmts(t.s, &claimed)
	t.buf.reset()
	a.send(t.ctx, stmts, t.flushErr)
}

// aheadTx is a write transaction that may have a flush in flight (see
// flushing ahead): each of its uses waits for that flush first. It wraps
// the transaction in a field, not by embedding: a method Tx gains must be
// written here, or it would not wait.
type aheadTx struct {
	tx   Tx
	done chan struct{} // closed when the flush in flight ended; nil when none was sent since the last wait
	err  error         // that flush's error, until a use reports it
}

var _ Tx = (*aheadTx)(nil)

// idle reports, without waiting, whether another flush may be sent: none
// is in flight, and the last one's error (if any) has been reported.
func (a *aheadTx) idle() bool {
	if a.done != nil {
		select {
		case <-a.done:
			a.done = nil
		default:
			return false
		}
	}
	return a.err == nil
}

// send runs stmts as a Batch on another goroutine; fail classifies its
// error.
func (a *aheadTx) send(ctx context.Context, stmts []Stmt, fail func(error) error) {
	done := make(chan struct{})
	a.done = done
	go func() {
		defer close(done)
		if err := a.tx.Batch(ctx, stmts); err != nil {
			a.err = fail(err)
		}
	}()
}

// settle waits for the flush in flight, if any, and returns its error,
// once.
func (a *aheadTx) settle() error {
	if a.done != nil {
		<-a.done
		a.done = nil
	}
	err := a.err
	a.err = nil
	return err
}

func (a *aheadTx) Exec(ctx context.Context, query string, args ...any) (int64, error) {
	if err := a.settle(); err != nil {
		return 0, err
	}
	return a.tx.Exec(ctx, query, args...)
}

func (a *aheadTx) Query(ctx context.Context, query string, args ...any) (Rows, error) {
	if err := a.settle(); err != nil {
		return nil, err
	}
	return a.tx.Query(ctx, query, args...)
}

func (a *aheadTx) QueryRow(ctx context.Context, query string, args ...any) Row {
	if err := a.settle(); err != nil {
		return errRow{err}
	}
	return a.tx.QueryRow(ctx, query, args...)
}

func (a *aheadTx) Batch(ctx context.Context, stmts []Stmt) error {
	if err := a.settle(); err != nil {
		return err
	}
	return a.tx.Batch(ctx, stmts)
}

func (a *aheadTx) QueryBatch(ctx context.Context, stmts []Stmt, fn func(i int, rows Rows) error) error {
	if err := a.settle(); err != nil {
		return err
	}
	return a.tx.QueryBatch(ctx, stmts, fn)
}

// Commit commits, unless the flush in flight failed: then it rolls back
// and returns that flush's error.
func (a *aheadTx) Commit(ctx context.Context) error {
	if err := a.settle(); err != nil {
		a.tx.Rollback(ctx)
		return err
	}
	return a.tx.Commit(ctx)
}

func (a *aheadTx) Rollback(ctx context.Context) {
	_ = a.settle() // the transaction ends without what it wrote
	a.tx.Rollback(ctx)
}

// errRow is a Row whose Scan returns err.
type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// checkClaims checks, after a flush whose claims did not all insert their
// key, that each key is held by the resource that claimed it (claimed
// twice in the transaction, or earlier). A key held by another resource is
// store.ErrConflict, and so is one gone (deleted by a concurrent
// transaction after the insert found it).
//
// A conditional key is search criteria (an identifier's system and value,
// a name): patient data, which the errors leave out.
func (t *tx) checkClaims(claims []claim) error {
	for _, c := range claims {
		typ, id, err := t.KeyOwner(c.key) // the buffer is empty: it reads the database
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("%w: a conditional key changed hands concurrently", store.ErrConflict)
		case err != nil:
			return err
		case typ != c.res.typ || id != c.res.id:
			return fmt.Errorf("%w: a conditional key of %s/%s is held by %s/%s", store.ErrConflict, c.res.typ, c.res.id, typ, id)
		}
	}
	return nil
}

// discard drops the buffered writes and the chain appends after the
// first n (a savepoint's, rolled back).
func (t *tx) discard(n int) {
	t.buf.reset()
	t.audits = t.audits[:n]
}

// rolledBack tells t that a savepoint begun after its last successful
// flush was rolled back: the rows of a failed flush since are undone.
func (t *tx) rolledBack() { t.failed = nil }

// flushKeys flushes the buffer when it holds the deletion of a resource's
// conditional keys or a claim, which a key statement must see.
func (t *tx) flushKeys() error {
	if len(t.buf.dels) == 0 && len(t.buf.claims) == 0 {
		return nil
	}
	return t.flush()
}

// The statements of the conditional keys and the ledger.
const (
	sqlKeyOwner       = `SELECT type, id FROM conditional_keys WHERE key = ?`
	sqlLedger         = `SELECT content_hash, response, received, input FROM ledger WHERE source = ? AND kind = ? AND record_id = ? AND version = ?`
	sqlLedgerVersions = `SELECT version, content_hash, received, input FROM ledger
		WHERE source = ? AND kind = ? AND record_id = ? ORDER BY received, version`
	// The ledger's source of a tenant other than the default one is
	// "tenant:<tenant>|<source>" (engine.Namespaced).
	sqlSourceTenants = `SELECT tenant, kind, MIN(received) FROM ledger
		WHERE source = CASE WHEN tenant = '' THEN CAST(? AS TEXT) ELSE 'tenant:' || tenant || '|' || CAST(? AS TEXT) END
		GROUP BY tenant, kind ORDER BY 3, 1, 2`
	sqlPutLedger = `INSERT INTO ledger (source, kind, record_id, version, content_hash, response, received,
		tenant, mapping_version, input) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// ClaimKey implements store.Tx. The claim is buffered with the writes
// (see putBuffer): the flush inserts every claimed key unless it exists,
// in one statement (where writers run in parallel, ON CONFLICT DO NOTHING
// waits for a concurrent inserter of the same key to commit or roll back),
// and then, if some existed, checks their owners. So a key held by another
// resource is reported as store.ErrConflict by a later call of the
// transaction that flushes (KeyOwner, Search, a savepoint's end) or by its
// commit, as a version 1 of a resource that exists is by Put. Nothing
// fails inside the transaction, so the caller may go on using it after
// that ErrConflict.
func (t *tx) ClaimKey(key, typ, id string) error {
	if typ == "" || id == "" {
		return fmt.Errorf("%s: ClaimKey: resource type and id are required", t.s.d.Name)
	}
	t.buf.claims = append(t.buf.claims, claim{t.s.text(key), resKey{typ, id}})
	return nil
}

// KeyOwner implements store.Tx.
//
// A conditional key is search criteria (an identifier's system and value,
// a name): patient data, which the errors of ClaimKey and KeyOwner leave
// out.
func (t *tx) KeyOwner(key string) (typ, id string, err error) {
	s := t.s
	if err := t.flushKeys(); err != nil {
		return "", "", err
	}
	err = t.c.QueryRow(t.ctx, s.bind(sqlKeyOwner), s.text(key)).Scan(&typ, &id)
	if errNoRows(err) {
		return "", "", fmt.Errorf("conditional key: %w", store.ErrNotFound)
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
	err := t.c.QueryRow(t.ctx, s.bind(sqlLedger),
		s.text(source), s.text(kind), s.text(recordID), s.text(version)).
		Scan(&l.ContentHash, &l.Response, &received, &l.Input)
	if errNoRows(err) {
		return nil, fmt.Errorf("ledger %s/%s/%s/%s: %w", source, kind, recordID, version, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: Ledger: %w", s.d.Name, s.err(t.ctx, err))
	}
	l.Received = time.UnixMilli(received).UTC()
	return l, nil
}

// LedgerVersions implements store.Tx.
func (t *tx) LedgerVersions(source, kind, recordID string) ([]*store.Ledger, error) {
	s := t.s
	rows, err := t.c.Query(t.ctx, s.bind(sqlLedgerVersions), s.text(source), s.text(kind), s.text(recordID))
	if err != nil {
		return nil, fmt.Errorf("%s: LedgerVersions: %w", s.d.Name, s.err(t.ctx, err))
	}
	defer rows.Close()
	var out []*store.Ledger
	for rows.Next() {
		l := &store.Ledger{Source: source, Kind: kind, RecordID: recordID}
		var received int64
		if err := rows.Scan(&l.Version, &l.ContentHash, &received, &l.Input); err != nil {
			return nil, fmt.Errorf("%s: LedgerVersions: %w", s.d.Name, s.err(t.ctx, err))
		}
		l.Received = time.UnixMilli(received).UTC()
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: LedgerVersions: %w", s.d.Name, s.err(t.ctx, err))
	}
	return out, nil
}

// SourceTenants implements store.Tx.
func (t *tx) SourceTenants(source string) ([]store.SourceTenant, error) {
	s := t.s
	rows, err := t.c.Query(t.ctx, s.bind(sqlSourceTenants), s.text(source), s.text(source))
	if err != nil {
		return nil, fmt.Errorf("%s: SourceTenants: %w", s.d.Name, s.err(t.ctx, err))
	}
	defer rows.Close()
	var out []store.SourceTenant
	for rows.Next() {
		var st store.SourceTenant
		var first int64
		if err := rows.Scan(&st.Tenant, &st.Kind, &first); err != nil {
			return nil, fmt.Errorf("%s: SourceTenants: %w", s.d.Name, s.err(t.ctx, err))
		}
		st.First = time.UnixMilli(first).UTC()
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: SourceTenants: %w", s.d.Name, s.err(t.ctx, err))
	}
	return out, nil
}

// PutLedger implements store.Tx: a zero l.Received is set to now, and it
// is truncated to the millisecond.
func (t *tx) PutLedger(l *store.Ledger) error {
	s := t.s
	if l.Received.IsZero() {
		l.Received = s.now()
	}
	l.Received = l.Received.UTC().Truncate(time.Millisecond)
	_, err := t.c.Exec(t.ctx, s.bind(sqlPutLedger), s.text(l.Source), s.text(l.Kind), s.text(l.RecordID), s.text(l.Version),
		s.text(l.ContentHash), l.Response, l.Received.UnixMilli(), s.text(l.Tenant), s.text(l.MappingVersion), l.Input)
	if err != nil {
		return fmt.Errorf("%s: PutLedger: %w", s.d.Name, s.err(t.ctx, err))
	}
	return nil
}

// Savepoint implements store.Tx. The buffered writes are flushed before
// the savepoint, so that it holds exactly fn's, and fn's are flushed
// before it is released (their errors are fn's) or dropped when it is
// rolled back, with fn's chain appends. ROLLBACK TO undoes fn's writes,
// releases the row locks fn took and ends the aborted state a failed
// statement leaves (PostgreSQL); it fails only when the transaction is
// lost (the connection broke, ctx ended, or the database rolled the whole
// transaction back, as SQLite does after a disk full or I/O error).
func (t *tx) Savepoint(fn func() error) error {
	s := t.s
	if err := t.flush(); err != nil {
		return lostErr(err)
	}
	t.depth++
	defer func() { t.depth-- }()
	name := fmt.Sprintf("kg_sp%d", t.depth)
	if _, err := t.c.Exec(t.ctx, `SAVEPOINT `+name); err != nil {
		return fmt.Errorf("%s: savepoint: %w", s.d.Name, lostErr(s.err(t.ctx, err)))
	}
	audits, seen := len(t.audits), len(t.seenUndo)
	ferr := fn()
	if ferr == nil {
		ferr = t.flush()
	}
	if ferr == nil {
		if _, err := t.c.Exec(t.ctx, `RELEASE SAVEPOINT `+name); err != nil {
			return fmt.Errorf("%s: release savepoint: %w", s.d.Name, lostErr(s.err(t.ctx, err)))
		}
		return nil
	}
	t.discard(audits)
	t.undoSeen(seen)
	// One statement, one round trip (pgx sends a statement without
	// arguments as a simple query, which may hold several).
	if _, err := t.c.Exec(t.ctx, `ROLLBACK TO SAVEPOINT `+name+`; RELEASE SAVEPOINT `+name); err != nil {
		if errors.Is(ferr, store.ErrConflict) || errors.Is(ferr, store.ErrUnavailable) {
			return ferr
		}
		return fmt.Errorf("%s: rollback to savepoint (after %v): %w", s.d.Name, ferr, lostErr(s.err(t.ctx, err)))
	}
	t.rolledBack()
	return ferr
}

// lostErr makes err, which ended the transaction, wrap store.ErrConflict
// or store.ErrUnavailable, so that the caller ends the transaction.
func lostErr(err error) error {
	if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
