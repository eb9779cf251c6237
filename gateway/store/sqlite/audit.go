package sqlite

import (
	"context"
	"errors"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
)

// auditPage is how many chain entries AuditChain reads per query: the
// read transaction (and the WAL it pins) ends before fn sees the entries.
const auditPage = 1000

// AppendAudit implements store.Tx. The write lock of the transaction
// serialises appends (see the package documentation).
func (t *tx) AppendAudit(id string, body []byte) (int64, error) {
	if id == "" {
		return 0, errors.New("sqlite: AppendAudit: id is required")
	}
	var last int64
	var prev string
	err := t.q.QueryRowContext(t.ctx, `SELECT seq, hash FROM audit_chain_head WHERE one = 1`).Scan(&last, &prev)
	if err != nil {
		return 0, fmt.Errorf("sqlite: AppendAudit %s: read the chain head: %w", id, mapErr(err))
	}
	seq, hash := last+1, audit.Link(prev, body)
	if _, err := t.q.ExecContext(t.ctx, `INSERT INTO audit_chain (seq, id, hash) VALUES (?, ?, ?)`, seq, id, hash); err != nil {
		return 0, fmt.Errorf("sqlite: AppendAudit %s: %w", id, mapErr(err))
	}
	if _, err := t.q.ExecContext(t.ctx, `UPDATE audit_chain_head SET seq = ?, hash = ? WHERE one = 1`, seq, hash); err != nil {
		return 0, fmt.Errorf("sqlite: AppendAudit %s: %w", id, mapErr(err))
	}
	return seq, nil
}

// AuditChain implements store.Store, reading the chain in pages of
// auditPage entries by seq.
func (s *Store) AuditChain(ctx context.Context, fn func(audit.ChainEntry) error) error {
	var after int64
	for {
		page, err := s.auditPage(ctx, after)
		if err != nil {
			return err
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
func (s *Store) auditPage(ctx context.Context, after int64) ([]audit.ChainEntry, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT c.seq, c.id, c.hash, r.body FROM audit_chain c
		LEFT JOIN resources r ON r.type = 'AuditEvent' AND r.id = c.id AND r.version = 1
		WHERE c.seq > ? ORDER BY c.seq LIMIT ?`, after, auditPage)
	if err != nil {
		return nil, fmt.Errorf("sqlite: audit chain: %w", mapErr(err))
	}
	defer rows.Close()
	var page []audit.ChainEntry
	for rows.Next() {
		var e audit.ChainEntry
		if err := rows.Scan(&e.Seq, &e.ID, &e.Hash, &e.Body); err != nil { // NULL: nil Body
			return nil, fmt.Errorf("sqlite: audit chain: %w", mapErr(err))
		}
		page = append(page, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: audit chain: %w", mapErr(err))
	}
	return page, nil
}
