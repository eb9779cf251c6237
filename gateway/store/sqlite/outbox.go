package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// The outbox (store.OutboxTx on the write transaction, store.Outbox on the
// Store). Claims and completions are write transactions, so they are
// serialised with everything else that writes.

var (
	_ store.OutboxTx = (*tx)(nil)
	_ store.Outbox   = (*Store)(nil)
)

const outboxCols = `id, destination, order_key, patient, kind, source, record_id, version, trace_id, payload,
	status, attempts, next_attempt, last_error, created, updated, tenant`

// Enqueue implements store.OutboxTx.
func (t *tx) Enqueue(items ...*store.OutboxItem) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, it := range items {
		if !sqlstore.ValidTenant(it.Tenant) {
			return fmt.Errorf("sqlite: enqueue: %q is not a tenant", it.Tenant)
		}
		it.Status, it.Created, it.Updated = store.StatusPending, now, now
		if it.NextAttempt.IsZero() {
			it.NextAttempt = now
		}
		row := t.q.QueryRowContext(t.ctx, `INSERT INTO outbox (destination, order_key, patient, kind, source, record_id,
			version, trace_id, payload, status, next_attempt, created, updated, tenant)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			it.Destination, it.OrderKey, it.Patient, it.Kind, it.Source, it.RecordID, it.Version, it.TraceID, it.Payload,
			it.Status, it.NextAttempt.UnixMilli(), now.UnixMilli(), now.UnixMilli(), it.Tenant)
		if err := row.Scan(&it.ID); err != nil {
			return fmt.Errorf("sqlite: enqueue: %w", mapErr(err))
		}
	}
	return nil
}

// Claim implements store.Outbox.
func (s *Store) Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]*store.OutboxItem, error) {
	if limit <= 0 {
		limit = 1
	}
	var out []*store.OutboxItem
	err := s.Write(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		nowMS := now.UnixMilli()
		// Expired leases: a crashed worker's claims are due again.
		if _, err := t.q.ExecContext(ctx, `UPDATE outbox SET status = 'pending'
			WHERE destination = ? AND status = 'inflight' AND lease_until <= ?`, destination, nowMS); err != nil {
			return mapErr(err)
		}
		rows, err := t.q.QueryContext(ctx, `SELECT `+outboxCols+` FROM outbox o
			WHERE o.destination = ? AND o.status = 'pending' AND o.next_attempt <= ?
			  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.destination = o.destination AND p.order_key = o.order_key
			                  AND p.tenant = o.tenant AND p.id < o.id AND p.status IN ('pending', 'inflight'))
			ORDER BY o.id LIMIT ?`, destination, nowMS, limit)
		if err != nil {
			return mapErr(err)
		}
		out, err = scanItems(rows)
		if err != nil {
			return err
		}
		for _, it := range out {
			if _, err := t.q.ExecContext(ctx, `UPDATE outbox SET status = 'inflight', lease_until = ?, updated = ? WHERE id = ?`,
				now.Add(lease).UnixMilli(), nowMS, it.ID); err != nil {
				return mapErr(err)
			}
			it.Status = store.StatusInFlight
		}
		return nil
	})
	return out, err
}

// Complete implements store.Outbox.
func (s *Store) Complete(ctx context.Context, a *store.Attempt, status string, nextAttempt time.Time) error {
	switch status {
	case store.StatusDone, store.StatusPending, store.StatusDead:
	default:
		return fmt.Errorf("sqlite: complete: invalid status %q", status)
	}
	return s.Write(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		var n int
		err := t.q.QueryRowContext(ctx, `SELECT attempts FROM outbox WHERE id = ? AND status = 'inflight'`, a.ItemID).Scan(&n)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound // absent, or no longer in flight: a late completion changes nothing
		}
		if err != nil {
			return mapErr(err)
		}
		n++
		a.N = n
		if _, err := t.q.ExecContext(ctx, `INSERT INTO delivery_attempts (item_id, n, at, duration_ms, http_status, outcome, trace_id, error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, a.ItemID, n, a.At.UnixMilli(), a.Duration.Milliseconds(), a.HTTPStatus, a.Outcome, a.TraceID, a.Error); err != nil {
			return mapErr(err)
		}
		_, err = t.q.ExecContext(ctx, `UPDATE outbox SET status = ?, attempts = ?, next_attempt = ?, lease_until = 0,
			last_error = ?, updated = ? WHERE id = ?`, status, n, nextAttempt.UnixMilli(), a.Error, a.At.UnixMilli(), a.ItemID)
		return mapErr(err)
	})
}

// Deliveries implements store.Outbox: f.Tenant "" lists every tenant's
// items.
func (s *Store) Deliveries(ctx context.Context, f store.DeliveryFilter) ([]*store.OutboxItem, error) {
	var where []string
	var args []any
	add := func(cond string, v any) { where = append(where, cond); args = append(args, v) }
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.Destination != "" {
		add("destination = ?", f.Destination)
	}
	if f.Patient != "" {
		add("patient = ?", f.Patient)
	}
	if f.Source != "" {
		add("source = ?", f.Source)
	}
	if f.Kind != "" {
		add("kind = ?", f.Kind)
	}
	if f.RecordID != "" {
		add("record_id = ?", f.RecordID)
	}
	if f.TraceID != "" {
		add("trace_id = ?", f.TraceID)
	}
	if f.Tenant != "" {
		add("tenant = ?", f.Tenant)
	}
	if !f.Since.IsZero() {
		add("created >= ?", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("created < ?", f.Until.UnixMilli())
	}
	q := `SELECT ` + outboxCols + ` FROM outbox`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q += ` ORDER BY id DESC LIMIT ? OFFSET ?`
	args = append(args, limit, max(f.Offset, 0))
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, mapErr(err)
	}
	return scanItems(rows)
}

// Delivery implements store.Outbox.
func (s *Store) Delivery(ctx context.Context, id int64) (*store.OutboxItem, []*store.Attempt, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT `+outboxCols+` FROM outbox WHERE id = ?`, id)
	if err != nil {
		return nil, nil, mapErr(err)
	}
	items, err := scanItems(rows)
	if err != nil {
		return nil, nil, err
	}
	if len(items) == 0 {
		return nil, nil, store.ErrNotFound
	}
	arows, err := s.r.QueryContext(ctx, `SELECT item_id, n, at, duration_ms, http_status, outcome, trace_id, error
		FROM delivery_attempts WHERE item_id = ? ORDER BY n`, id)
	if err != nil {
		return nil, nil, mapErr(err)
	}
	defer arows.Close()
	var attempts []*store.Attempt
	for arows.Next() {
		a := &store.Attempt{}
		var at, dur int64
		if err := arows.Scan(&a.ItemID, &a.N, &at, &dur, &a.HTTPStatus, &a.Outcome, &a.TraceID, &a.Error); err != nil {
			return nil, nil, mapErr(err)
		}
		a.At, a.Duration = time.UnixMilli(at).UTC(), time.Duration(dur)*time.Millisecond
		attempts = append(attempts, a)
	}
	return items[0], attempts, mapErr(arows.Err())
}

// Retry implements store.Outbox.
func (s *Store) Retry(ctx context.Context, id int64, now time.Time) error {
	return s.Write(ctx, func(stx store.Tx) error {
		res, err := stx.(*tx).q.ExecContext(ctx, `UPDATE outbox SET status = 'pending', next_attempt = ?, updated = ?
			WHERE id = ? AND status = 'dead'`, now.UnixMilli(), now.UnixMilli(), id)
		if err != nil {
			return mapErr(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// Replay implements store.Outbox.
func (s *Store) Replay(ctx context.Context, destination string, since, now time.Time) (int, error) {
	var n int64
	err := s.Write(ctx, func(stx store.Tx) error {
		res, err := stx.(*tx).q.ExecContext(ctx, `INSERT INTO outbox (destination, order_key, patient, kind, source, record_id,
			version, trace_id, payload, status, next_attempt, created, updated, tenant)
			SELECT destination, order_key, patient, kind, source, record_id, version, trace_id, payload, 'pending', ?, ?, ?, tenant
			FROM outbox WHERE destination = ? AND created >= ? AND status IN ('done', 'dead') ORDER BY id`,
			now.UnixMilli(), now.UnixMilli(), now.UnixMilli(), destination, since.UnixMilli())
		if err != nil {
			return mapErr(err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return int(n), err
}

// Stats implements store.Outbox.
func (s *Store) Stats(ctx context.Context) ([]store.DestinationStats, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT destination,
		SUM(CASE WHEN status IN ('pending', 'inflight') THEN 1 ELSE 0 END),
		SUM(CASE WHEN status = 'dead' THEN 1 ELSE 0 END),
		MIN(CASE WHEN status IN ('pending', 'inflight') THEN created END)
		FROM outbox GROUP BY destination ORDER BY destination`)
	if err != nil {
		return nil, mapErr(err)
	}
	defer rows.Close()
	var out []store.DestinationStats
	for rows.Next() {
		var st store.DestinationStats
		var oldest sql.NullInt64
		if err := rows.Scan(&st.Destination, &st.Pending, &st.Dead, &oldest); err != nil {
			return nil, mapErr(err)
		}
		if oldest.Valid {
			st.OldestPending = time.UnixMilli(oldest.Int64).UTC()
		}
		out = append(out, st)
	}
	return out, mapErr(rows.Err())
}

// scanItems reads outbox rows and closes them.
func scanItems(rows *sql.Rows) ([]*store.OutboxItem, error) {
	defer rows.Close()
	var out []*store.OutboxItem
	for rows.Next() {
		it := &store.OutboxItem{}
		var next, created, updated int64
		if err := rows.Scan(&it.ID, &it.Destination, &it.OrderKey, &it.Patient, &it.Kind, &it.Source, &it.RecordID,
			&it.Version, &it.TraceID, &it.Payload, &it.Status, &it.Attempts, &next, &it.LastError, &created, &updated, &it.Tenant); err != nil {
			return nil, mapErr(err)
		}
		it.NextAttempt, it.Created, it.Updated = time.UnixMilli(next).UTC(), time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, it)
	}
	return out, mapErr(rows.Err())
}
