package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// The outbox (store.OutboxTx on the write transaction, store.Outbox on the
// Store), as in the SQLite backend. SQLite serialises every writer; here
// two locks give the same guarantees to several gateway processes:
//   - Enqueue takes a transaction-level advisory lock on each item's
//     destination and order key before inserting it, so the items of one
//     source record get their ids in commit order (an amendment committed
//     after its original never gets the smaller id);
//   - Claim takes one on the destination, so concurrent claims of one
//     destination (several replicas' workers) run one after the other and
//     never hand out the same item twice.
//
// Complete locks the item's row (SELECT ... FOR UPDATE): a late completion
// racing a new claim after the lease expired is applied once.

var (
	_ store.OutboxTx = (*tx)(nil)
	_ store.Outbox   = (*Store)(nil)
)

const outboxCols = `id, destination, order_key, patient, kind, source, record_id, version, trace_id, payload,
	status, attempts, next_attempt, last_error, created, updated, tenant`

// lockOutbox takes the advisory transaction lock of a destination (and
// tenant and order key); the key's first part keeps these apart from the
// migration lock. The default tenant's keys are those of before tenants,
// so that processes of both versions lock alike during an upgrade.
func lockOutbox(ctx context.Context, q pgx.Tx, destination, tenant, orderKey string) error {
	key := text(destination) + "\x1f" + text(orderKey)
	if tenant != "" {
		key += "\x1f" + text(tenant)
	}
	_, err := q.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('kg-outbox'), hashtext($1))`, key)
	return err
}

// Enqueue implements store.OutboxTx.
func (t *tx) Enqueue(items ...*store.OutboxItem) error {
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, it := range items {
		it.Status, it.Created, it.Updated = store.StatusPending, now, now
		if it.NextAttempt.IsZero() {
			it.NextAttempt = now
		}
		if !sqlstore.ValidTenant(it.Tenant) {
			return fmt.Errorf("postgres: enqueue: %q is not a tenant", it.Tenant)
		}
		if err := lockOutbox(t.ctx, t.q, it.Destination, it.Tenant, it.OrderKey); err != nil {
			return fmt.Errorf("postgres: enqueue: %w", mapErr(t.ctx, err))
		}
		payload := it.Payload
		if payload == nil {
			payload = []byte{}
		}
		err := t.q.QueryRow(t.ctx, `INSERT INTO outbox (destination, order_key, patient, kind, source, record_id,
			version, trace_id, payload, status, next_attempt, created, updated, tenant)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) RETURNING id`,
			text(it.Destination), text(it.OrderKey), text(it.Patient), text(it.Kind), text(it.Source), text(it.RecordID),
			text(it.Version), text(it.TraceID), payload, it.Status, it.NextAttempt.UnixMilli(), now.UnixMilli(), now.UnixMilli(),
			it.Tenant).
			Scan(&it.ID)
		if err != nil {
			return fmt.Errorf("postgres: enqueue: %w", mapErr(t.ctx, err))
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
		if err := lockOutbox(ctx, t.q, destination, "", ""); err != nil {
			return fmt.Errorf("postgres: claim: %w", mapErr(ctx, err))
		}
		nowMS := now.UnixMilli()
		// Expired leases: a crashed worker's claims are due again.
		if _, err := t.q.Exec(ctx, `UPDATE outbox SET status = 'pending'
			WHERE destination = $1 AND status = 'inflight' AND lease_until <= $2`, text(destination), nowMS); err != nil {
			return fmt.Errorf("postgres: claim: %w", mapErr(ctx, err))
		}
		rows, err := t.q.Query(ctx, `UPDATE outbox SET status = 'inflight', lease_until = $4, updated = $2
			WHERE status = 'pending' AND id IN (SELECT o.id FROM outbox o
				WHERE o.destination = $1 AND o.status = 'pending' AND o.next_attempt <= $2
				  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.destination = o.destination AND p.order_key = o.order_key
				                  AND p.tenant = o.tenant AND p.id < o.id AND p.status IN ('pending', 'inflight'))
				ORDER BY o.id LIMIT $3)
			RETURNING `+outboxCols, text(destination), nowMS, limit, now.Add(lease).UnixMilli())
		if err == nil {
			out, err = scanItems(rows)
		}
		if err != nil {
			return fmt.Errorf("postgres: claim: %w", mapErr(ctx, err))
		}
		sortItems(out)
		return nil
	})
	return out, err
}

// sortItems orders items by id (UPDATE ... RETURNING has no order).
func sortItems(items []*store.OutboxItem) {
	for i := 1; i < len(items); i++ {
		for j := i; j > 0 && items[j].ID < items[j-1].ID; j-- {
			items[j], items[j-1] = items[j-1], items[j]
		}
	}
}

// Complete implements store.Outbox.
func (s *Store) Complete(ctx context.Context, a *store.Attempt, status string, nextAttempt time.Time) error {
	switch status {
	case store.StatusDone, store.StatusPending, store.StatusDead:
	default:
		return fmt.Errorf("postgres: complete: invalid status %q", status)
	}
	return s.Write(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		var n int
		err := t.q.QueryRow(ctx, `SELECT attempts FROM outbox WHERE id = $1 AND status = 'inflight' FOR UPDATE`, a.ItemID).Scan(&n)
		if errNoRows(err) {
			return store.ErrNotFound // absent, or no longer in flight: a late completion changes nothing
		}
		if err != nil {
			return fmt.Errorf("postgres: complete: %w", mapErr(ctx, err))
		}
		n++
		a.N = n
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO delivery_attempts (item_id, n, at, duration_ms, http_status, outcome, trace_id, error)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, a.ItemID, n, a.At.UnixMilli(), a.Duration.Milliseconds(), a.HTTPStatus,
			a.Outcome, text(a.TraceID), text(a.Error))
		b.Queue(`UPDATE outbox SET status = $1, attempts = $2, next_attempt = $3, lease_until = 0,
			last_error = $4, updated = $5 WHERE id = $6`, status, n, nextAttempt.UnixMilli(), text(a.Error), a.At.UnixMilli(), a.ItemID)
		if err := t.q.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("postgres: complete: %w", mapErr(ctx, err))
		}
		return nil
	})
}

// Deliveries implements store.Outbox: f.Tenant "" lists every tenant's
// items.
func (s *Store) Deliveries(ctx context.Context, f store.DeliveryFilter) ([]*store.OutboxItem, error) {
	var where []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, cond+" $"+strconv.Itoa(len(args)))
	}
	if f.Status != "" {
		add("status =", text(f.Status))
	}
	if f.Destination != "" {
		add("destination =", text(f.Destination))
	}
	if f.Patient != "" {
		add("patient =", text(f.Patient))
	}
	if f.Source != "" {
		add("source =", text(f.Source))
	}
	if f.Kind != "" {
		add("kind =", text(f.Kind))
	}
	if f.RecordID != "" {
		add("record_id =", text(f.RecordID))
	}
	if f.TraceID != "" {
		add("trace_id =", text(f.TraceID))
	}
	if f.Tenant != "" {
		if !sqlstore.ValidTenant(f.Tenant) {
			return nil, nil // no item has it
		}
		add("tenant =", f.Tenant)
	}
	if !f.Since.IsZero() {
		add("created >=", f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		add("created <", f.Until.UnixMilli())
	}
	q := `SELECT ` + outboxCols + ` FROM outbox`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	q += fmt.Sprintf(` ORDER BY id DESC LIMIT $%d OFFSET $%d`, len(args)+1, len(args)+2)
	args = append(args, limit, max(f.Offset, 0))
	var out []*store.OutboxItem
	err := s.single(ctx, func(db querier) error {
		rows, err := db.Query(ctx, q, args...)
		if err == nil {
			out, err = scanItems(rows)
		}
		if err != nil {
			return fmt.Errorf("postgres: deliveries: %w", mapErr(ctx, err))
		}
		return nil
	})
	return out, err
}

// Delivery implements store.Outbox.
func (s *Store) Delivery(ctx context.Context, id int64) (*store.OutboxItem, []*store.Attempt, error) {
	var items []*store.OutboxItem
	var attempts []*store.Attempt
	err := s.readTx(ctx, func(db querier) error {
		rows, err := db.Query(ctx, `SELECT `+outboxCols+` FROM outbox WHERE id = $1`, id)
		if err == nil {
			items, err = scanItems(rows)
		}
		if err != nil || len(items) == 0 {
			return err
		}
		arows, err := db.Query(ctx, `SELECT item_id, n, at, duration_ms, http_status, outcome, trace_id, error
			FROM delivery_attempts WHERE item_id = $1 ORDER BY n`, id)
		if err != nil {
			return err
		}
		defer arows.Close()
		for arows.Next() {
			a := &store.Attempt{}
			var at, dur int64
			if err := arows.Scan(&a.ItemID, &a.N, &at, &dur, &a.HTTPStatus, &a.Outcome, &a.TraceID, &a.Error); err != nil {
				return err
			}
			a.At, a.Duration = time.UnixMilli(at).UTC(), time.Duration(dur)*time.Millisecond
			attempts = append(attempts, a)
		}
		return arows.Err()
	})
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: delivery: %w", mapErr(ctx, err))
	}
	if len(items) == 0 {
		return nil, nil, store.ErrNotFound
	}
	return items[0], attempts, nil
}

// Retry implements store.Outbox.
func (s *Store) Retry(ctx context.Context, id int64, now time.Time) error {
	return s.Write(ctx, func(stx store.Tx) error {
		tag, err := stx.(*tx).q.Exec(ctx, `UPDATE outbox SET status = 'pending', next_attempt = $1, updated = $1
			WHERE id = $2 AND status = 'dead'`, now.UnixMilli(), id)
		if err != nil {
			return fmt.Errorf("postgres: retry: %w", mapErr(ctx, err))
		}
		if tag.RowsAffected() == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// Replay implements store.Outbox.
func (s *Store) Replay(ctx context.Context, destination string, since, now time.Time) (int, error) {
	var n int64
	err := s.Write(ctx, func(stx store.Tx) error {
		t := stx.(*tx)
		if err := lockOutbox(ctx, t.q, destination, "", ""); err != nil {
			return fmt.Errorf("postgres: replay: %w", mapErr(ctx, err))
		}
		tag, err := t.q.Exec(ctx, `INSERT INTO outbox (destination, order_key, patient, kind, source, record_id,
			version, trace_id, payload, status, next_attempt, created, updated, tenant)
			SELECT destination, order_key, patient, kind, source, record_id, version, trace_id, payload, 'pending', $1, $1, $1, tenant
			FROM outbox WHERE destination = $2 AND created >= $3 AND status IN ('done', 'dead') ORDER BY id`,
			now.UnixMilli(), text(destination), since.UnixMilli())
		if err != nil {
			return fmt.Errorf("postgres: replay: %w", mapErr(ctx, err))
		}
		n = tag.RowsAffected()
		return nil
	})
	return int(n), err
}

// Stats implements store.Outbox.
func (s *Store) Stats(ctx context.Context) ([]store.DestinationStats, error) {
	var out []store.DestinationStats
	err := s.single(ctx, func(db querier) error {
		rows, err := db.Query(ctx, `SELECT destination,
			COUNT(*) FILTER (WHERE status IN ('pending', 'inflight')),
			COUNT(*) FILTER (WHERE status = 'dead'),
			MIN(created) FILTER (WHERE status IN ('pending', 'inflight'))
			FROM outbox GROUP BY destination ORDER BY destination`)
		if err != nil {
			return fmt.Errorf("postgres: stats: %w", mapErr(ctx, err))
		}
		defer rows.Close()
		out = nil
		for rows.Next() {
			var st store.DestinationStats
			var oldest *int64
			if err := rows.Scan(&st.Destination, &st.Pending, &st.Dead, &oldest); err != nil {
				return fmt.Errorf("postgres: stats: %w", mapErr(ctx, err))
			}
			if oldest != nil {
				st.OldestPending = time.UnixMilli(*oldest).UTC()
			}
			out = append(out, st)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("postgres: stats: %w", mapErr(ctx, err))
		}
		return nil
	})
	return out, err
}

// scanItems reads outbox rows and closes them.
func scanItems(rows pgx.Rows) ([]*store.OutboxItem, error) {
	defer rows.Close()
	var out []*store.OutboxItem
	for rows.Next() {
		it := &store.OutboxItem{}
		var next, created, updated int64
		if err := rows.Scan(&it.ID, &it.Destination, &it.OrderKey, &it.Patient, &it.Kind, &it.Source, &it.RecordID,
			&it.Version, &it.TraceID, &it.Payload, &it.Status, &it.Attempts, &next, &it.LastError, &created, &updated, &it.Tenant); err != nil {
			return nil, err
		}
		it.NextAttempt, it.Created, it.Updated = time.UnixMilli(next).UTC(), time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, it)
	}
	return out, rows.Err()
}
