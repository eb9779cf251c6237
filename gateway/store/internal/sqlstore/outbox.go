package sqlstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The outbox (store.OutboxTx on the write transaction, store.Outbox on the
// Store). Claims, completions, retries and replays are write transactions;
// see the package documentation for how they are serialised.

const outboxCols = `id, destination, order_key, patient, kind, source, record_id, version, trace_id, payload,
	status, attempts, next_attempt, last_error, created, updated, tenant, probes, lease_until`

// lockOutbox takes the Dialect.Lock of a destination (and tenant and order
// key), if the dialect has one. The default tenant's keys are those of
// before tenants, so that processes of both versions lock alike during an
// upgrade.
func (t *tx) lockOutbox(destination, tenant, orderKey string) error {
	s := t.s
	if s.d.Lock == "" {
		return nil
	}
	key := s.text(destination) + "\x1f" + s.text(orderKey)
	if tenant != "" {
		key += "\x1f" + s.text(tenant)
	}
	_, err := t.c.Exec(t.ctx, s.bind(s.d.Lock), key)
	return err
}

// Enqueue implements store.OutboxTx.
func (t *tx) Enqueue(items ...*store.OutboxItem) error {
	s := t.s
	now := s.now().UTC().Truncate(time.Millisecond)
	for _, it := range items {
		if !validTenant(it.Tenant) {
			return fmt.Errorf("%s: enqueue: %q is not a tenant", s.d.Name, it.Tenant)
		}
		if it.Status != store.StatusDead {
			it.Status, it.LastError = store.StatusPending, ""
		}
		it.Created, it.Updated = now, now
		if it.NextAttempt.IsZero() {
			it.NextAttempt = now
		}
		// Each key's items get their ids in commit order (locks taken in
		// one order, so that two enqueues never wait for each other).
		keys := orderKeys(it)
		locks := slices.Clone(keys)
		slices.Sort(locks)
		for _, k := range locks {
			if err := t.lockOutbox(it.Destination, it.Tenant, k); err != nil {
				return fmt.Errorf("%s: enqueue: %w", s.d.Name, s.err(t.ctx, err))
			}
		}
		payload := it.Payload
		if payload == nil {
			payload = []byte{} // the column is NOT NULL
		}
		err := t.c.QueryRow(t.ctx, s.bind(`INSERT INTO outbox (destination, order_key, patient, kind, source, record_id,
			version, trace_id, payload, status, next_attempt, created, updated, tenant, last_error)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`),
			s.text(it.Destination), s.text(it.OrderKey), s.text(it.Patient), s.text(it.Kind), s.text(it.Source),
			s.text(it.RecordID), s.text(it.Version), s.text(it.TraceID), payload, it.Status, it.NextAttempt.UnixMilli(),
			now.UnixMilli(), now.UnixMilli(), it.Tenant, s.text(it.LastError)).
			Scan(&it.ID)
		if err == nil {
			err = t.insertKeys(it, keys)
		}
		if err != nil {
			return fmt.Errorf("%s: enqueue: %w", s.d.Name, s.err(t.ctx, err))
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
	err := s.write(ctx, func(t *tx) error {
		if err := t.lockOutbox(destination, "", ""); err != nil {
			return fmt.Errorf("%s: claim: %w", s.d.Name, s.err(t.ctx, err))
		}
		nowMS := now.UnixMilli()
		// Expired leases: a crashed worker's claims are due again, marked
		// so that the next worker records the attempt that was cut off
		// (it may have reached the destination), dated when it was claimed.
		if _, err := t.c.Exec(t.ctx, s.bind(`UPDATE outbox SET status = 'pending', last_error = ?, next_attempt = updated
			WHERE destination = ? AND status = 'inflight' AND lease_until <= ?`), store.LeaseEnded, s.text(destination), nowMS); err != nil {
			return fmt.Errorf("%s: claim: %w", s.d.Name, s.err(t.ctx, err))
		}
		// An item is sent when it is the earliest undelivered one of each
		// of its keys: its record's previous item (OrderKey) is not
		// pending or in flight, checked first (one probe of outbox_order,
		// which settles most held-back items; it also holds an item back
		// behind one that a release before the keys enqueued without
		// them; the tenant is compared on that item only, since a
		// condition on it in the probe makes SQLite walk the tenant's
		// items instead), it
		// has its keys (one enqueued without them waits for RepairOrder),
		// and no earlier live key of its keys belongs to an item pending
		// or in flight (a release before the keys marked items done or
		// dead without clearing their flags). p38 F1, F2: a rolling
		// upgrade past the keys' migration.
		rows, err := t.c.Query(t.ctx, s.bind(`UPDATE outbox SET status = 'inflight', lease_until = ?, updated = ?
			WHERE status = 'pending' AND id IN (SELECT o.id FROM outbox o
				WHERE o.destination = ? AND o.status = 'pending' AND o.next_attempt <= ?
				  AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.id = (SELECT b.id FROM outbox b
				                      WHERE b.destination = o.destination AND b.order_key = o.order_key AND b.id < o.id
				                      ORDER BY b.id DESC LIMIT 1)
				                  AND p.tenant = o.tenant AND p.status IN ('pending', 'inflight'))
				  AND EXISTS (SELECT 1 FROM outbox_keys k WHERE k.item_id = o.id)
				  AND NOT EXISTS (SELECT 1 FROM outbox_keys k JOIN outbox_keys p ON p.destination = k.destination
				                  AND p.tenant = k.tenant AND p.order_key = k.order_key AND p.live = 1 AND p.item_id < k.item_id
				                  JOIN outbox po ON po.id = p.item_id AND po.status IN ('pending', 'inflight')
				                  WHERE k.item_id = o.id)
				ORDER BY o.id LIMIT ?)
			RETURNING `+outboxCols), now.Add(lease).UnixMilli(), nowMS, s.text(destination), nowMS, limit)
		if err == nil {
			out, err = scanItems(rows)
		}
		if err != nil {
			return fmt.Errorf("%s: claim: %w", s.d.Name, s.err(t.ctx, err))
		}
		// UPDATE ... RETURNING has no order.
		slices.SortFunc(out, func(a, b *store.OutboxItem) int { return cmp.Compare(a.ID, b.ID) })
		return nil
	})
	if err != nil {
		// The transaction did not commit (or its commit's fate is
		// unknown): nothing is claimed, and the items read inside it must
		// not be sent (probe p37 F1).
		return nil, err
	}
	return out, nil
}

// Renew implements store.Outbox.
func (s *Store) Renew(ctx context.Context, ids []int64, until time.Time) ([]int64, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	b := s.builder()
	b.Add(`UPDATE outbox SET lease_until = ? WHERE status = 'inflight' AND id IN (`, until.UnixMilli())
	for i, id := range ids {
		if i > 0 {
			b.Add(`, `)
		}
		b.Add(`?`, id)
	}
	b.Add(`) RETURNING id`)
	var renewed []int64
	err := s.db.Autocommit(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, b.SQL(), b.Args()...)
		if err == nil {
			renewed, err = scanIDs(rows)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: renew: %w", s.d.Name, s.err(ctx, err))
	}
	slices.Sort(renewed) // UPDATE ... RETURNING has no order
	return renewed, nil
}

// Complete implements store.Outbox.
func (s *Store) Complete(ctx context.Context, a *store.Attempt, status string, nextAttempt time.Time) error {
	switch status {
	case store.StatusDone, store.StatusPending, store.StatusDead:
	default:
		return fmt.Errorf("%s: complete: invalid status %q", s.d.Name, status)
	}
	return s.write(ctx, func(t *tx) error {
		var n int
		err := t.c.QueryRow(t.ctx, s.bind(`SELECT attempts FROM outbox WHERE id = ? AND status = 'inflight'`+s.forUpdate()), a.ItemID).Scan(&n)
		if errNoRows(err) {
			return store.ErrNotFound // absent, or no longer in flight: a late completion changes nothing
		}
		if err != nil {
			return fmt.Errorf("%s: complete: %w", s.d.Name, s.err(t.ctx, err))
		}
		n++
		a.N = n
		probe := 0
		if a.Probe {
			probe = 1
		}
		stmts := []Stmt{
			{SQL: s.bind(`INSERT INTO delivery_attempts (item_id, n, at, duration_ms, http_status, outcome, trace_id, error)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), Args: []any{a.ItemID, n, a.At.UnixMilli(), a.Duration.Milliseconds(), a.HTTPStatus,
				a.Outcome, s.text(a.TraceID), s.text(a.Error)}},
			{SQL: s.bind(`UPDATE outbox SET status = ?, attempts = ?, next_attempt = ?, lease_until = 0,
				last_error = ?, updated = ?, probes = probes + ? WHERE id = ?`), Args: []any{status, n, nextAttempt.UnixMilli(),
				s.text(a.Error), a.At.UnixMilli(), probe, a.ItemID}},
		}
		if status != store.StatusPending { // done or dead: it holds back no later item
			stmts = append(stmts, Stmt{SQL: s.bind(setLive), Args: []any{0, a.ItemID}})
		}
		if err = t.c.Batch(t.ctx, stmts); err != nil {
			return fmt.Errorf("%s: complete: %w", s.d.Name, s.err(t.ctx, err))
		}
		return nil
	})
}

// Deliveries implements store.Outbox: f.Tenant "" lists every tenant's
// items.
func (s *Store) Deliveries(ctx context.Context, f store.DeliveryFilter) ([]*store.OutboxItem, error) {
	st, ok := DeliveriesStatement(s.d, f)
	if !ok {
		return nil, nil // no item has the tenant
	}
	var out []*store.OutboxItem
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, st.SQL, st.Args...)
		if err == nil {
			out, err = scanItems(rows)
		}
		if err != nil {
			return fmt.Errorf("%s: deliveries: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	})
	return out, err
}

// DeliveriesStatement is the statement of Store.Deliveries (exported for
// the stores' plan tests); false when no item can match (a tenant no item
// has).
func DeliveriesStatement(d *Dialect, f store.DeliveryFilter) (Stmt, bool) {
	b := NewBuilder(d, "", time.Time{})
	b.Add(`SELECT ` + outboxCols + ` FROM outbox`)
	and := " WHERE "
	eq := func(col, v string) {
		if v != "" {
			b.Add(and+col+" = ?", v)
			and = " AND "
		}
	}
	eq("status", f.Status)
	if f.Status != "" && f.Status != store.StatusDone {
		// Said in the text so that a planner may use the partial indexes
		// of the open items (outbox_open_id: in id order), which hold no
		// delivered row: a "?" proves nothing.
		b.Add(" AND status <> 'done'")
	}
	eq("destination", f.Destination)
	eq("patient", f.Patient)
	eq("source", f.Source)
	eq("kind", f.Kind)
	eq("record_id", f.RecordID)
	eq("trace_id", f.TraceID)
	if f.Tenant != "" && !validTenant(f.Tenant) {
		return Stmt{}, false
	}
	eq("tenant", f.Tenant)
	if !f.Since.IsZero() {
		b.Add(and+"created >= ?", f.Since.UnixMilli())
		and = " AND "
	}
	if !f.Until.IsZero() {
		b.Add(and+"created < ?", f.Until.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	b.Add(` ORDER BY id DESC LIMIT ? OFFSET ?`, limit, max(f.Offset, 0))
	return Stmt{SQL: b.SQL(), Args: b.Args()}, true
}

// Delivery implements store.Outbox.
func (s *Store) Delivery(ctx context.Context, id int64) (*store.OutboxItem, []*store.Attempt, error) {
	var items []*store.OutboxItem
	var attempts []*store.Attempt
	err := s.db.Snapshot(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, s.bind(`SELECT `+outboxCols+` FROM outbox WHERE id = ?`), id)
		if err == nil {
			items, err = scanItems(rows)
		}
		if err != nil || len(items) == 0 {
			return err
		}
		arows, err := c.Query(ctx, s.bind(`SELECT `+attemptCols+`, outcome, trace_id
			FROM delivery_attempts WHERE item_id = ? ORDER BY n`), id)
		if err == nil {
			attempts, err = scanAttempts(arows, true) // fn may run again: a new slice
		}
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s: delivery: %w", s.d.Name, s.err(ctx, err))
	}
	if len(items) == 0 {
		return nil, nil, store.ErrNotFound
	}
	return items[0], attempts, nil
}

// DeliveryAttemptsAt is the index of the delivery attempts by the time
// they began (SQLite's schema 22, PostgreSQL's 24), in the order of
// AttemptsAfter's pages.
const DeliveryAttemptsAt = `CREATE INDEX delivery_attempts_at ON delivery_attempts (at, item_id, n)`

// AttemptsSinceSQL and AttemptsAfterSQL are AttemptsAfter's first page
// and its next ones (tests explain their plans): the attempts in the
// order of the index delivery_attempts_at (at, item_id, n), from a time
// on, or after the last attempt of a page. The cursor is a row
// comparison, as bulk's and reindex's keysets, so that the index scan
// starts there (written as at > ? OR (at = ? AND ...) PostgreSQL walked
// the index from its first entry). Before the index (schema 22 on
// SQLite, 24 on PostgreSQL), the pages went by the primary key and read
// every attempt, however recent the time.
const (
	AttemptsSinceSQL = `SELECT ` + attemptCols + ` FROM delivery_attempts
			WHERE at >= ? ORDER BY at, item_id, n LIMIT ?`
	AttemptsAfterSQL = `SELECT ` + attemptCols + ` FROM delivery_attempts
			WHERE (at, item_id, n) > (?, ?, ?) ORDER BY at, item_id, n LIMIT ?`
)

// AttemptsAfter implements store.Outbox: one page, by the index of the
// attempts' times.
func (s *Store) AttemptsAfter(ctx context.Context, after *store.Attempt, since time.Time, limit int) ([]*store.Attempt, error) {
	if limit <= 0 {
		limit = 1000
	}
	q, args := AttemptsSinceSQL, []any{since.UnixMilli(), limit}
	if after != nil {
		q, args = AttemptsAfterSQL, []any{after.At.UnixMilli(), after.ItemID, after.N, limit}
	}
	var out []*store.Attempt
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, s.bind(q), args...)
		if err == nil {
			out, err = scanAttempts(rows, false) // fn may run again: a new slice
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: attempts: %w", s.d.Name, s.err(ctx, err))
	}
	return out, nil
}

// attemptCols are the columns of a delivery attempt scanAttempts reads
// first: every one but the EHR's answer and the trace id.
const attemptCols = `item_id, n, at, duration_ms, http_status, error`

// scanAttempts reads and closes rows of attemptCols, followed, with
// answers, by outcome and trace_id.
func scanAttempts(rows Rows, answers bool) ([]*store.Attempt, error) {
	defer rows.Close()
	var out []*store.Attempt
	for rows.Next() {
		a := &store.Attempt{}
		var at, dur int64
		dest := []any{&a.ItemID, &a.N, &at, &dur, &a.HTTPStatus, &a.Error}
		if answers {
			dest = append(dest, &a.Outcome, &a.TraceID)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		a.At, a.Duration = time.UnixMilli(at).UTC(), time.Duration(dur)*time.Millisecond
		out = append(out, a)
	}
	return out, rows.Err()
}

// Retry implements store.Outbox.
func (s *Store) Retry(ctx context.Context, id int64, now time.Time) error {
	return s.write(ctx, func(t *tx) error {
		var status string
		err := t.c.QueryRow(t.ctx, s.bind(`SELECT status FROM outbox WHERE id = ?`+s.forUpdate()), id).Scan(&status)
		if errNoRows(err) || (err == nil && status != store.StatusDead && status != store.StatusPending) {
			return store.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("%s: retry: %w", s.d.Name, s.err(t.ctx, err))
		}
		if status == store.StatusDead {
			later, lstatus, err := t.laterItem(id)
			if err != nil {
				return fmt.Errorf("%s: retry: %w", s.d.Name, s.err(t.ctx, err))
			}
			if later != 0 {
				return &store.LaterDeliveryError{ID: later, Status: lstatus}
			}
		}
		err = t.c.Batch(t.ctx, []Stmt{
			{SQL: s.bind(`UPDATE outbox SET status = 'pending', next_attempt = ?, updated = ? WHERE id = ?`),
				Args: []any{now.UnixMilli(), now.UnixMilli(), id}},
			{SQL: s.bind(setLive), Args: []any{1, id}},
		})
		if err != nil {
			return fmt.Errorf("%s: retry: %w", s.d.Name, s.err(t.ctx, err))
		}
		return nil
	})
}

// Cancel implements store.Outbox.
func (s *Store) Cancel(ctx context.Context, id int64, lastError string, now time.Time) error {
	return s.write(ctx, func(t *tx) error {
		// An in-flight item only once its claim has lapsed, checked by
		// this update: PostgreSQL evaluates the condition again on the row
		// a concurrent Claim or Renew has just changed, and SQLite has one
		// writer, so a live worker's claim is never taken. Lapsed means
		// over for store.ClaimGrace by now: lease_until was written from
		// the claiming gateway's clock, now is the caller's, and the two
		// hosts' clocks are assumed synchronised (NTP) to within it.
		n, err := t.c.Exec(t.ctx, s.bind(`UPDATE outbox SET status = 'dead', last_error = ?, lease_until = 0, updated = ?
			WHERE id = ? AND (status IN ('dead', 'pending') OR (status = 'inflight' AND lease_until <= ?))`),
			s.text(lastError), now.UnixMilli(), id, now.Add(-store.ClaimGrace).UnixMilli())
		if err == nil && n > 0 {
			_, err = t.c.Exec(t.ctx, s.bind(setLive), 0, id)
		}
		if err != nil {
			return fmt.Errorf("%s: cancel: %w", s.d.Name, s.err(t.ctx, err))
		}
		if n == 0 {
			return store.ErrNotFound
		}
		return nil
	})
}

// Blocker implements store.Outbox.
func (s *Store) Blocker(ctx context.Context, id int64) (int64, error) {
	var blocker int64
	err := s.db.Read(ctx, func(c Conn) error {
		err := c.QueryRow(ctx, s.bind(`SELECT p.item_id FROM outbox_keys k JOIN outbox_keys p
			ON p.destination = k.destination AND p.tenant = k.tenant AND p.order_key = k.order_key
			JOIN outbox po ON po.id = p.item_id AND po.status IN ('pending', 'inflight')
			WHERE k.item_id = ? AND p.live = 1 AND p.item_id < k.item_id
			ORDER BY p.item_id LIMIT 1`), id).Scan(&blocker)
		if errNoRows(err) {
			return store.ErrNotFound
		}
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return 0, err
	}
	if err != nil {
		return 0, fmt.Errorf("%s: blocker: %w", s.d.Name, s.err(ctx, err))
	}
	return blocker, nil
}

// Replay implements store.Outbox.
func (s *Store) Replay(ctx context.Context, destination string, since, now time.Time) (int, error) {
	var n int64
	err := s.write(ctx, func(t *tx) error {
		if err := t.lockOutbox(destination, "", ""); err != nil {
			return fmt.Errorf("%s: replay: %w", s.d.Name, s.err(t.ctx, err))
		}
		ms := now.UnixMilli()
		// Per record (tenant and order key) only its latest delivery, and
		// only when that was delivered: an older version would roll the
		// EHR back, a copy of an earlier replay is the same record again,
		// a pending one is sent anyway and a dead letter is retried, not
		// replayed.
		rows, err := t.c.Query(t.ctx, s.bind(`SELECT o.id FROM outbox o
			WHERE o.destination = ? AND o.created >= ? AND o.status = 'done'
			  AND NOT EXISTS (SELECT 1 FROM outbox l WHERE l.destination = o.destination AND l.order_key = o.order_key
			                  AND l.tenant = o.tenant AND l.id > o.id)
			ORDER BY o.id`), s.text(destination), since.UnixMilli())
		var ids []int64
		if err == nil {
			ids, err = scanIDs(rows)
		}
		// Each copy is ordered on the keys of its original (a session's
		// nested records too).
		n = 0
		for _, id := range ids {
			if err != nil {
				break
			}
			var copyID int64
			err = t.c.QueryRow(t.ctx, s.bind(`INSERT INTO outbox (destination, order_key, patient, kind, source, record_id,
				version, trace_id, payload, status, next_attempt, created, updated, tenant)
				SELECT destination, order_key, patient, kind, source, record_id, version, trace_id, payload,
					'pending', ?, ?, ?, tenant FROM outbox WHERE id = ? RETURNING id`), ms, ms, ms, id).Scan(&copyID)
			if err == nil {
				_, err = t.c.Exec(t.ctx, s.bind(`INSERT INTO outbox_keys (item_id, order_key, destination, tenant, live)
					SELECT ?, order_key, destination, tenant, 1 FROM outbox_keys WHERE item_id = ?`), copyID, id)
			}
			n++
		}
		if err != nil {
			return fmt.Errorf("%s: replay: %w", s.d.Name, s.err(t.ctx, err))
		}
		return nil
	})
	return int(n), err
}

// OutboxStatsSQL counts the open items (pending, in flight, dead) per
// destination. It reads only the partial index outbox_open (exported for
// the stores' plan tests): never a delivered row, of which the outbox holds
// every one ever made (p32: /readyz at 0.4 s over 6,000 of them when this
// read them all, payloads too).
const OutboxStatsSQL = `SELECT destination,
			COUNT(*) FILTER (WHERE status IN ('pending', 'inflight')),
			COUNT(*) FILTER (WHERE status = 'inflight'),
			COUNT(*) FILTER (WHERE status = 'dead'),
			MIN(created) FILTER (WHERE status IN ('pending', 'inflight'))
			FROM outbox WHERE status <> 'done' GROUP BY destination`

// OutboxDestinationsSQL lists the destinations the outbox holds items to,
// done ones too, in order: a loose index scan (one index lookup per
// destination, on the indexes led by destination), where a DISTINCT would
// read every item's index entry.
const OutboxDestinationsSQL = `WITH RECURSIVE d (name) AS (
			SELECT MIN(destination) FROM outbox
			UNION ALL
			SELECT (SELECT MIN(destination) FROM outbox WHERE destination > d.name) FROM d WHERE d.name IS NOT NULL)
			SELECT name FROM d WHERE name IS NOT NULL`

// Stats implements store.Outbox: every destination the outbox holds an
// item to, with the counts of its open ones (zero when all are done).
func (s *Store) Stats(ctx context.Context) ([]store.DestinationStats, error) {
	var out []store.DestinationStats
	err := s.db.Read(ctx, func(c Conn) error {
		rows, err := c.Query(ctx, OutboxDestinationsSQL)
		if err != nil {
			return fmt.Errorf("%s: stats: %w", s.d.Name, s.err(ctx, err))
		}
		out = nil // fn may run again
		for rows.Next() {
			var st store.DestinationStats
			if err := rows.Scan(&st.Destination); err != nil {
				rows.Close()
				return fmt.Errorf("%s: stats: %w", s.d.Name, s.err(ctx, err))
			}
			out = append(out, st)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: stats: %w", s.d.Name, s.err(ctx, err))
		}
		// In byte order, whatever the database's collation.
		slices.SortFunc(out, func(a, b store.DestinationStats) int { return cmp.Compare(a.Destination, b.Destination) })
		rows, err = c.Query(ctx, OutboxStatsSQL)
		if err != nil {
			return fmt.Errorf("%s: stats: %w", s.d.Name, s.err(ctx, err))
		}
		defer rows.Close()
		for rows.Next() {
			var st store.DestinationStats
			var oldest *int64
			if err := rows.Scan(&st.Destination, &st.Pending, &st.InFlight, &st.Dead, &oldest); err != nil {
				return fmt.Errorf("%s: stats: %w", s.d.Name, s.err(ctx, err))
			}
			if oldest != nil {
				st.OldestPending = time.UnixMilli(*oldest).UTC()
			}
			// An item enqueued after the first query: its destination
			// is listed too.
			i, found := slices.BinarySearchFunc(out, st.Destination, func(a store.DestinationStats, name string) int {
				return cmp.Compare(a.Destination, name)
			})
			if found {
				out[i] = st
			} else {
				out = slices.Insert(out, i, st)
			}
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("%s: stats: %w", s.d.Name, s.err(ctx, err))
		}
		return nil
	})
	return out, err
}

// scanItems reads outbox rows and closes them.
func scanItems(rows Rows) ([]*store.OutboxItem, error) {
	defer rows.Close()
	var out []*store.OutboxItem
	for rows.Next() {
		it := &store.OutboxItem{}
		var next, created, updated, lease int64
		if err := rows.Scan(&it.ID, &it.Destination, &it.OrderKey, &it.Patient, &it.Kind, &it.Source, &it.RecordID,
			&it.Version, &it.TraceID, &it.Payload, &it.Status, &it.Attempts, &next, &it.LastError, &created, &updated, &it.Tenant,
			&it.Probes, &lease); err != nil {
			return nil, err
		}
		if it.Status == store.StatusInFlight && lease > 0 {
			it.LeaseUntil = time.UnixMilli(lease).UTC()
		}
		it.NextAttempt, it.Created, it.Updated = time.UnixMilli(next).UTC(), time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, it)
	}
	return out, rows.Err()
}

// scanIDs reads rows of one id and closes them.
func scanIDs(rows Rows) ([]int64, error) {
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}
