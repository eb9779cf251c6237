package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
)

// auditPage is how many chain entries AuditChain reads per query: the
// connection goes back to the pool before fn sees the entries.
const auditPage = 1000

// AppendAudit implements store.Tx: it locks the chain head row until the
// transaction ends (see the package documentation), then inserts the entry
// and moves the head, in one round trip.
func (t *tx) AppendAudit(id string, body []byte) (int64, error) {
	if id == "" {
		return 0, errors.New("postgres: AppendAudit: id is required")
	}
	var last int64
	var prev string
	err := t.q.QueryRow(t.ctx, `SELECT seq, hash FROM audit_chain_head WHERE one = 1 FOR UPDATE`).Scan(&last, &prev)
	if err != nil {
		return 0, fmt.Errorf("postgres: AppendAudit %s: lock the chain head: %w", id, mapErr(t.ctx, err))
	}
	seq, hash := last+1, audit.Link(prev, body)
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO audit_chain (seq, id, hash) VALUES ($1, $2, $3)`, seq, id, hash)
	b.Queue(`UPDATE audit_chain_head SET seq = $1, hash = $2 WHERE one = 1`, seq, hash)
	if err := t.q.SendBatch(t.ctx, b).Close(); err != nil {
		return 0, fmt.Errorf("postgres: AppendAudit %s: %w", id, mapErr(t.ctx, err))
	}
	return seq, nil
}

// AuditChain implements store.Store, reading the chain in pages of
// auditPage entries by seq.
func (s *Store) AuditChain(ctx context.Context, fn func(audit.ChainEntry) error) error {
	var after int64
	for {
		var page []audit.ChainEntry
		err := s.single(ctx, func(q querier) error {
			var err error
			page, err = readAuditPage(ctx, q, after)
			return err
		})
		if err != nil {
			return fmt.Errorf("postgres: audit chain: %w", mapErr(ctx, err))
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

// readAuditPage reads the chain entries after seq after, with their bodies.
func readAuditPage(ctx context.Context, q querier, after int64) ([]audit.ChainEntry, error) {
	rows, err := q.Query(ctx, `SELECT c.seq, c.id, c.hash, r.body FROM audit_chain c
		LEFT JOIN resources r ON r.type = 'AuditEvent' AND r.id = c.id AND r.version = 1
		WHERE c.seq > $1 ORDER BY c.seq LIMIT $2`, after, auditPage)
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
