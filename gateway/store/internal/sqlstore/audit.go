package sqlstore

import (
	"context"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
)

// auditPage is how many chain entries AuditChain reads per query: the
// connection (and the snapshot it pins) is free again before fn sees the
// entries.
const auditPage = 1000

// AppendAudit implements store.Tx: it reads the chain head (locking its
// row until the transaction ends, with Dialect.RowLocks; see the package
// documentation), then inserts the entry and moves the head, in one round
// trip.
func (t *tx) AppendAudit(id string, body []byte) (int64, error) {
	s := t.s
	if id == "" {
		return 0, fmt.Errorf("%s: AppendAudit: id is required", s.d.Name)
	}
	var last int64
	var prev string
	err := t.c.QueryRow(t.ctx, `SELECT seq, hash FROM audit_chain_head WHERE one = 1`+s.forUpdate()).Scan(&last, &prev)
	if err != nil {
		return 0, fmt.Errorf("%s: AppendAudit %s: read the chain head: %w", s.d.Name, id, s.err(t.ctx, err))
	}
	seq, hash := last+1, audit.Link(prev, body)
	err = t.c.Batch(t.ctx, []Stmt{
		{s.bind(`INSERT INTO audit_chain (seq, id, hash) VALUES (?, ?, ?)`), []any{seq, id, hash}},
		{s.bind(`UPDATE audit_chain_head SET seq = ?, hash = ? WHERE one = 1`), []any{seq, hash}},
	})
	if err != nil {
		return 0, fmt.Errorf("%s: AppendAudit %s: %w", s.d.Name, id, s.err(t.ctx, err))
	}
	return seq, nil
}

// AuditChain implements store.Store, reading the chain in pages of
// auditPage entries by seq.
func (s *Store) AuditChain(ctx context.Context, fn func(audit.ChainEntry) error) error {
	var after int64
	for {
		var page []audit.ChainEntry
		err := s.db.Read(ctx, func(c Conn) error {
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

// auditPage reads the chain entries after seq after, with their bodies.
func (s *Store) auditPage(ctx context.Context, c Conn, after int64) ([]audit.ChainEntry, error) {
	rows, err := c.Query(ctx, s.bind(`SELECT c.seq, c.id, c.hash, r.body FROM audit_chain c
		LEFT JOIN resources r ON r.type = 'AuditEvent' AND r.id = c.id AND r.version = 1
		WHERE c.seq > ? ORDER BY c.seq LIMIT ?`), after, auditPage)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var page []audit.ChainEntry
	for rows.Next() {
		var e audit.ChainEntry
		if err := rows.Scan(&e.Seq, &e.ID, &e.Hash, &e.Body); err != nil { // NULL: nil Body
			return nil, err
		}
		page = append(page, e)
	}
	return page, rows.Err()
}
