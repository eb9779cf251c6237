package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// Audit indexing.
//
// An AuditEvent's search index rows are not written in the transaction
// that appends it to the chain (AppendAudit): that transaction writes the
// AuditEvent's version and its chain entry, durably, before the request
// is answered. The rows are written afterwards, many AuditEvents to a
// transaction, in chain order: the audit chain is the durable queue, and
// audit_index_head.seq the point up to which its entries are indexed (an
// audited read then writes a few pages to the WAL instead of one for each
// of its dozen index rows' ranges). After a commit that appended entries,
// a goroutine of the Store waits AuditIndexDelay and indexes what is pending, up to indexChunk
// entries per transaction, each moving audit_index_head in the same
// transaction as the rows it adds; the index rows AppendAudit made of the
// entries the committing process extracted travel to it in memory, others (another process's, or a
// crashed one's) are extracted again from the stored bodies. A search
// that can return AuditEvents first indexes everything the chain holds at
// its start (catchUpAudits), so no search misses a committed AuditEvent.
//
// A crash after a commit and before its AuditEvents are indexed leaves
// them in the chain and unindexed: the next AuditEvent search, or the
// next commit that appends, indexes them. A crash inside an indexing
// transaction leaves nothing of it. Two processes indexing at once both
// move audit_index_head from the same seq: the second one's update finds
// it moved, and its transaction is rolled back.

// indexChunk bounds the chain entries one indexing transaction indexes.
const indexChunk = 1000

// maxIndexCache bounds the AuditEvents whose index rows wait in memory
// for the indexer (beyond, they are extracted again from their bodies).
const maxIndexCache = 50000

// auditIndexer is a Store's indexing of the audit chain.
type auditIndexer struct {
	mu      sync.Mutex // guards the fields below
	running bool
	again   bool
	closed  bool
	cache   map[string]*indexRows // by AuditEvent id
	wg      sync.WaitGroup

	one     sync.Mutex    // one indexing pass of this process at a time
	closing chan struct{} // closed by closeIndexer: no more waiting

	passes atomic.Int64 // indexing transactions committed (AuditIndexPasses)
}

// AuditIndexPasses is how many indexing transactions of the audit chain
// this Store committed (for tests and diagnostics).
func (s *Store) AuditIndexPasses() int64 { return s.ix.passes.Load() }

// errIndexRaced rolls back an indexing transaction whose start another
// process indexed first.
var errIndexRaced = errors.New("audit index moved concurrently")

// audited hands the AuditEvents a commit appended to the indexer and has
// them indexed in the background.
func (s *Store) audited(appended []chainAppend) {
	if len(appended) == 0 {
		return
	}
	x := &s.ix
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return
	}
	if x.cache == nil {
		x.cache = map[string]*indexRows{}
		x.closing = make(chan struct{})
	}
	for _, a := range appended {
		if len(x.cache) < maxIndexCache && a.rows != nil {
			x.cache[a.id] = a.rows
		}
	}
	if x.running {
		x.again = true
		return
	}
	x.running = true
	x.wg.Go(s.indexLoop)
}

// AuditIndexDelay is how long the indexer lets AuditEvents gather after a
// commit appended some before it indexes them: at hundreds of audited
// requests a second, a few hundred go to one indexing transaction, whose
// commit then writes each index's last pages once for all of them,
// instead of a transaction (and its fsync) for every few. Searches do not
// wait for it (catchUpAudits).
const AuditIndexDelay = 200 * time.Millisecond

// indexLoop indexes what is pending AuditIndexDelay after it was started,
// and again AuditIndexDelay after each pass during which more was
// appended; it ends after a pass during which nothing was, or once the
// Store closes (which ends the wait at once).
func (s *Store) indexLoop() {
	x := &s.ix
	for {
		select {
		case <-time.After(AuditIndexDelay):
		case <-x.closing:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		// Go on at once only after a full chunk: entries appended while
		// a pass ran wait AuditIndexDelay and go to one transaction
		// together. Going on while anything at all was pending ran a pass
		// for every few dozen AuditEvents, each with its own commit, back
		// to back with the appends, on SQLite's one write connection
		// (issue 19: reads at 32 clients 1,491-1,919 a second that way,
		// 1,820-2,081 this way).
		for {
			n, err := s.indexAudits(ctx)
			if err != nil || n < indexChunk {
				break // a failure is retried by the next commit or search
			}
		}
		cancel()
		x.mu.Lock()
		if !x.again || x.closed {
			x.running = false
			x.mu.Unlock()
			return
		}
		x.again = false
		x.mu.Unlock()
	}
}

// closeIndexer waits for a background pass to end and starts no more.
func (s *Store) closeIndexer() {
	x := &s.ix
	x.mu.Lock()
	x.closed = true
	if x.closing != nil {
		close(x.closing)
	}
	x.mu.Unlock()
	x.wg.Wait()
}

// sqlIndexHeads reads the chain head and the index head.
const sqlIndexHeads = `SELECT (SELECT seq FROM audit_chain_head WHERE one = 1), (SELECT seq FROM audit_index_head WHERE one = 1)`

// IndexAudits implements store.Store (catchUpAudits).
func (s *Store) IndexAudits(ctx context.Context) error { return s.catchUpAudits(ctx) }

// catchUpAudits indexes the chain up to its head as it is now: a search
// that may return AuditEvents calls it first.
func (s *Store) catchUpAudits(ctx context.Context) error {
	for {
		var head, indexed int64
		err := s.db.Read(ctx, func(c Conn) error {
			return c.QueryRow(ctx, sqlIndexHeads).Scan(&head, &indexed)
		})
		if err != nil {
			return fmt.Errorf("%s: audit index: %w", s.d.Name, s.err(ctx, err))
		}
		if indexed >= head {
			return nil
		}
		if _, err := s.indexAudits(ctx); err != nil {
			return err
		}
	}
}

// pendingAudit is a chain entry to index.
type pendingAudit struct {
	seq  int64
	id   string
	body []byte
}

// indexAudits indexes up to indexChunk chain entries after the index head
// in one write transaction; it returns how many (0: none pending).
func (s *Store) indexAudits(ctx context.Context) (int, error) {
	x := &s.ix
	x.one.Lock()
	defer x.one.Unlock()
	var from int64
	var pending []pendingAudit
	err := s.db.Read(ctx, func(c Conn) error {
		pending = pending[:0]
		if err := c.QueryRow(ctx, `SELECT seq FROM audit_index_head WHERE one = 1`).Scan(&from); err != nil {
			return err
		}
		rows, err := c.Query(ctx, s.bind(`SELECT seq, id FROM audit_chain WHERE seq > ? ORDER BY seq LIMIT ?`), from, indexChunk)
		if err != nil {
			return err
		}
		for rows.Next() {
			var p pendingAudit
			if err := rows.Scan(&p.seq, &p.id); err != nil {
				rows.Close()
				return err
			}
			pending = append(pending, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		// The bodies of those whose rows are not in memory (another
		// process's, a crashed one's, or beyond maxIndexCache): an
		// AuditEvent is never changed, so a later read sees the same.
		return s.auditBodies(ctx, c, pending)
	})
	if err != nil {
		return 0, fmt.Errorf("%s: audit index: %w", s.d.Name, s.err(ctx, err))
	}
	if len(pending) == 0 {
		return 0, nil
	}
	// The rows of each AuditEvent: from the committing process, or
	// extracted from the stored body (none for a missing body).
	type indexed struct {
		id   string
		rows *indexRows
	}
	all := make([]indexed, len(pending))
	x.mu.Lock()
	for i, p := range pending {
		all[i] = indexed{p.id, x.cache[p.id]}
	}
	x.mu.Unlock()
	for i, p := range pending {
		if all[i].rows != nil {
			continue // made by AppendAudit
		}
		all[i].rows = new(indexRows)
		if p.body == nil {
			continue
		}
		if err := s.entryRows(all[i].rows, extractAudit(p.body)); err != nil {
			return 0, fmt.Errorf("%s: audit index: AuditEvent %s: %w", s.d.Name, p.id, err)
		}
	}
	to := pending[len(pending)-1].seq
	err = s.write(ctx, func(t *tx) error {
		n, err := t.c.Exec(t.ctx, s.bind(`UPDATE audit_index_head SET seq = ? WHERE one = 1 AND seq = ?`), to, from)
		if err != nil {
			return err
		}
		if n != 1 {
			return errIndexRaced
		}
		stmts := s.indexRowStmts(nil, len(all), func(i int) (resKey, *indexRows) {
			return resKey{"AuditEvent", all[i].id}, all[i].rows
		})
		return t.c.Batch(t.ctx, stmts)
	})
	if errors.Is(err, errIndexRaced) {
		return len(pending), nil // another process indexed them: go on from where it got
	}
	if err != nil {
		return 0, fmt.Errorf("%s: audit index: %w", s.d.Name, s.err(ctx, err))
	}
	x.passes.Add(1)
	x.mu.Lock()
	for _, p := range pending {
		delete(x.cache, p.id)
	}
	x.mu.Unlock()
	return len(pending), nil
}

// auditBodies reads the stored bodies of the pending AuditEvents whose
// index rows the indexer does not hold in memory.
func (s *Store) auditBodies(ctx context.Context, c Conn, pending []pendingAudit) error {
	at := map[string]int{}
	s.ix.mu.Lock()
	for i, p := range pending {
		if s.ix.cache[p.id] == nil {
			at[p.id] = i
		}
	}
	s.ix.mu.Unlock()
	if len(at) == 0 {
		return nil
	}
	ids := make([]string, 0, len(at))
	for id := range at {
		ids = append(ids, id)
	}
	b := s.builder()
	b.Add(`SELECT id, body FROM resources WHERE type = 'AuditEvent' AND version = 1 AND `)
	b.in("id", ids)
	rows, err := c.Query(ctx, b.SQL(), b.Args()...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var body []byte
		if err := rows.Scan(&id, &body); err != nil {
			return err
		}
		pending[at[id]].body = auditJSON(body)
	}
	return rows.Err()
}

// extractAudit is the index entries of a stored AuditEvent body (none if
// it does not decode).
func extractAudit(body []byte) []search.Entry {
	entries, _ := extractJSON("AuditEvent", body)
	return entries
}

// extractJSON is the index entries of a resource of typ whose JSON is
// body, decoded as the engine decodes what it stores (fhirwire.Decode).
func extractJSON(typ string, body []byte) ([]search.Entry, error) {
	doc, err := fhirwire.Decode(body)
	if err != nil {
		return nil, err
	}
	return search.Extract(typ, doc), nil
}

// auditsSearched tells whether a search reads AuditEvents' index rows (as
// matches, or as _revinclude sources): it then waits for the audit index.
// (An _include of an AuditEvent follows the matches' own rows.)
func auditsSearched(q *search.Query) bool {
	if q.Type == "" || q.Type == "AuditEvent" {
		return true
	}
	for _, inc := range q.RevIncludes {
		if inc.SourceType == "AuditEvent" || inc.SourceType == "*" || inc.SourceType == "" {
			return true
		}
	}
	return false
}
