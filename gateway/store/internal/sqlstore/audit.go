package sqlstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// auditPage is how many chain entries AuditChainAfter and AuditChainFrom
// read per query: the connection (and the snapshot it pins) is free again before fn sees the
// entries.
const auditPage = 1000

// chainAppend is an audit chain entry waiting for its transaction's
// commit, with the AuditEvent's index rows (for the indexer; nil when
// AppendAudit was given no entries, so that the indexer extracts them
// from the body).
type chainAppend struct {
	id   string
	body []byte
	rows *indexRows
}

// AppendAudit implements store.Tx: the entry is kept until the
// transaction commits (see appendChain), its index entries until the
// indexer writes them (see auditindex.go). An id appended twice in the
// transaction is store.ErrConflict at once; invalid entries are an error.
func (t *tx) AppendAudit(id string, body []byte, entries []search.Entry) error {
	s := t.s
	if id == "" {
		return fmt.Errorf("%s: AppendAudit: id is required", s.d.Name)
	}
	for _, a := range t.audits {
		if a.id == id {
			return fmt.Errorf("%w: AuditEvent %s is appended twice", store.ErrConflict, id)
		}
	}
	var rows *indexRows
	if entries != nil {
		rows = new(indexRows)
		if err := s.entryRows(rows, entries); err != nil {
			return fmt.Errorf("%s: AppendAudit %s: %w", s.d.Name, id, err)
		}
	}
	t.audits = append(t.audits, chainAppend{id, body, rows})
	return nil
}

// The statements of appendChain.
const (
	sqlChainHead       = `SELECT seq, hash FROM audit_chain_head WHERE one = 1`
	sqlChainHeadUpdate = `UPDATE audit_chain_head SET seq = ?, hash = ? WHERE one = 1`
)

// chainTable is audit_chain as a flush inserts into it.
var chainTable = &indexTable{name: "audit_chain", cols: []column{{"seq", "bigint"}, {"id", "text"}, {"hash", "text"}}, full: true}

// appendChain appends the transaction's audit entries to the chain, just
// before it commits: it checks that no id is in the chain already
// (store.ErrConflict), reads the chain head (locking its row until the
// commit, with Dialect.RowLocks: concurrent transactions append one after
// the other, each after the previous one committed), then inserts the
// entries with their seqs and hashes and moves the head, in one batch.
// The head is thus held only for the commit, however long the
// transaction ran before.
func (t *tx) appendChain() error {
	if len(t.audits) == 0 {
		return nil
	}
	s := t.s
	ids := make([]string, len(t.audits))
	for i, a := range t.audits {
		ids[i] = s.text(a.id)
	}
	taken := ""
	err := s.chunks(len(ids), func(start, end int) error {
		b := s.builder()
		b.Add(`SELECT id FROM audit_chain WHERE `)
		b.in("id", ids[start:end])
		b.Add(` LIMIT 1`)
		err := t.c.QueryRow(t.ctx, b.SQL(), b.Args()...).Scan(&taken)
		if errNoRows(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: AppendAudit: %w", s.d.Name, s.err(t.ctx, err))
	}
	if taken != "" {
		return fmt.Errorf("%w: AuditEvent %s is in the audit chain already", store.ErrConflict, taken)
	}
	var last int64
	var prev string
	if err := t.c.QueryRow(t.ctx, s.bind(sqlChainHead+s.forUpdate())).Scan(&last, &prev); err != nil {
		return fmt.Errorf("%s: AppendAudit: read the chain head: %w", s.d.Name, s.err(t.ctx, err))
	}
	type link struct {
		seq  int64
		hash string
	}
	links := make([]link, len(t.audits))
	for i, a := range t.audits {
		prev = audit.Link(prev, a.body)
		links[i] = link{last + int64(i) + 1, prev}
	}
	stmts := s.rowStmts(nil, chainTable, len(links), func(i int, row []any) []any {
		return append(row, links[i].seq, ids[i], links[i].hash)
	})
	stmts = append(stmts, Stmt{SQL: s.bind(sqlChainHeadUpdate), Args: []any{last + int64(len(links)), prev}})
	if err := t.c.Batch(t.ctx, stmts); err != nil {
		return fmt.Errorf("%s: AppendAudit: %w", s.d.Name, s.err(t.ctx, err))
	}
	return nil
}

// AuditChainAfter implements store.Store, reading the chain in pages of
// auditPage entries by seq, each page in one snapshot with what is wrong
// with how the store serves its AuditEvents (auditcheck.go).
func (s *Store) AuditChainAfter(ctx context.Context, after int64, fn func(audit.ChainEntry) error) error {
	for {
		var page []audit.ChainEntry
		err := s.db.Snapshot(ctx, func(c Conn) error {
			var err error
			page, err = s.auditPage(ctx, c, after)
			return err
		})
		if err != nil {
			return fmt.Errorf("%s: audit chain: %w", s.d.Name, s.err(ctx, err))
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < auditPage {
			return nil
		}
		after = page[len(page)-1].Seq
	}
}

// sqlChainFrom is AuditChainFrom's page: the chain's entries and their
// version 1 bodies, nothing else.
const sqlChainFrom = `SELECT a.seq, a.id, a.hash, r.body FROM audit_chain a
	LEFT JOIN resources r ON r.type = 'AuditEvent' AND r.id = a.id AND r.version = 1
	WHERE a.seq > ? ORDER BY a.seq LIMIT ?`

// AuditChainFrom implements store.Store, in pages of auditPage entries,
// each read in one snapshot.
func (s *Store) AuditChainFrom(ctx context.Context, after int64, fn func(audit.ChainEntry) error) error {
	for {
		var page []audit.ChainEntry
		err := s.db.Snapshot(ctx, func(c Conn) error {
			rows, err := c.Query(ctx, s.bind(sqlChainFrom), after, auditPage)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var e audit.ChainEntry
				if err := rows.Scan(&e.Seq, &e.ID, &e.Hash, &e.Body); err != nil { // NULL: nil Body
					return err
				}
				if e.Body != nil {
					e.Body = auditJSON(e.Body)
				}
				page = append(page, e)
			}
			return rows.Err()
		})
		if err != nil {
			return fmt.Errorf("%s: audit chain: %w", s.d.Name, s.err(ctx, err))
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < auditPage {
			return nil
		}
		after = page[len(page)-1].Seq
	}
}

// sqlChainSeek is AuditChainSeek's first entry: the period's AuditEvent
// versions 1, found by resources_type_lu (type, last_updated), each
// looked up in the chain by its id (unique). MIN, not ORDER BY seq LIMIT
// 1, so that the planner drives it from the period's index range rather
// than from the chain's first seq.
const sqlChainSeek = `SELECT COALESCE(MIN(a.seq), 0) FROM resources r JOIN audit_chain a ON a.id = r.id
	WHERE r.type = 'AuditEvent' AND r.last_updated >= ? AND r.last_updated < ? AND r.version = 1`

// sqlChainBefore is the chain entry before a seq (0: none), whatever gap
// lies between them: the record an export's first line links to.
const sqlChainBefore = `SELECT COALESCE(MAX(seq), 0) FROM audit_chain WHERE seq < ?`

// AuditChainSeek implements store.Store, in one snapshot. The period is
// widened to whole milliseconds (the column's unit): since down, until
// up, so that every AuditEvent recorded in it is found.
func (s *Store) AuditChainSeek(ctx context.Context, since, until time.Time) (before int64, ok bool, err error) {
	var first int64
	lo, hi := int64(math.MinInt64), int64(math.MaxInt64)
	if !since.IsZero() {
		lo = since.UnixMilli() // rounds down, before 1970 too
	}
	if !until.IsZero() {
		hi = ceilMS(until)
	}
	err = s.db.Snapshot(ctx, func(c Conn) error {
		if err := c.QueryRow(ctx, s.bind(sqlChainSeek), lo, hi).Scan(&first); err != nil {
			return err
		}
		if first == 0 {
			return nil
		}
		return c.QueryRow(ctx, s.bind(sqlChainBefore), first).Scan(&before)
	})
	if err != nil {
		return 0, false, fmt.Errorf("%s: audit chain seek: %w", s.d.Name, s.err(ctx, err))
	}
	return before, first > 0, nil
}

// sqlChainHash is one chain entry's hash.
const sqlChainHash = `SELECT hash FROM audit_chain WHERE seq = ?`

// AuditChainHash implements store.Store.
func (s *Store) AuditChainHash(ctx context.Context, seq int64) (hash string, err error) {
	err = s.db.Read(ctx, func(c Conn) error {
		return c.QueryRow(ctx, s.bind(sqlChainHash), seq).Scan(&hash)
	})
	switch {
	case errNoRows(err):
		return "", fmt.Errorf("%s: audit chain entry %d: %w", s.d.Name, seq, store.ErrNotFound)
	case err != nil:
		return "", fmt.Errorf("%s: audit chain entry %d: %w", s.d.Name, seq, s.err(ctx, err))
	}
	return hash, nil
}

// AuditChainSeq implements store.Store (audit_chain.id is unique, so
// indexed).
func (s *Store) AuditChainSeq(ctx context.Context, id string) (seq int64, err error) {
	err = s.db.Read(ctx, func(c Conn) error {
		return c.QueryRow(ctx, s.bind(`SELECT seq FROM audit_chain WHERE id = ?`), id).Scan(&seq)
	})
	switch {
	case errNoRows(err):
		return 0, fmt.Errorf("%s: audit chain entry of %s: %w", s.d.Name, id, store.ErrNotFound)
	case err != nil:
		return 0, fmt.Errorf("%s: audit chain entry of %s: %w", s.d.Name, id, s.err(ctx, err))
	}
	return seq, nil
}

// AuditChainHead implements store.Store.
func (s *Store) AuditChainHead(ctx context.Context) (seq int64, hash string, err error) {
	err = s.db.Read(ctx, func(c Conn) error {
		return c.QueryRow(ctx, s.bind(sqlChainHead)).Scan(&seq, &hash)
	})
	switch {
	case errNoRows(err):
		return 0, "", fmt.Errorf("%s: audit chain head: %w", s.d.Name, store.ErrNotFound)
	case err != nil:
		return 0, "", fmt.Errorf("%s: audit chain head: %w", s.d.Name, s.err(ctx, err))
	}
	return seq, hash, nil
}

// auditJSON is the JSON of a stored AuditEvent body (store.UnpackBody),
// or the stored bytes themselves when they do not unpack: such a body was
// changed behind the store's back, the chain's hash does not match it
// (the verifier reports its record), and it decodes to no index entries
// (extractAudit). Reads of it fail instead (scanResource).
func auditJSON(stored []byte) []byte {
	if body, err := store.UnpackBody(stored); err == nil {
		return body
	}
	return stored
}
