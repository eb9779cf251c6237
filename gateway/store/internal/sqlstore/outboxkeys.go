package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Order keys.
//
// outbox_keys holds a row per order key of every outbox item (its
// OrderKey, and its OrderKeys: a session's nested records and infusion),
// with its destination and tenant, live (1) while the item is pending or
// in flight and 0 once it is done or dead. Claim sends an item only when
// no live row of an earlier item still pending or in flight shares one of
// its keys (a release before the keys, running beside this one in a
// rolling upgrade, leaves the flags of the items it completes set, and
// enqueues items without keys: Claim waits for RepairOrder to give them
// theirs), Blocker names that earlier item, and Retry refuses a dead letter that a later item
// of one of its keys supersedes. Every change of an item's status
// between undone and done or dead updates live in the same transaction.
// (PostgreSQL has no foreign key on item_id: see its schema 9.)

// OutboxKeysIndex is both stores' index of outbox_keys for the order
// checks: a key's live items, in id order, are one range.
const OutboxKeysIndex = `CREATE INDEX outbox_keys_order ON outbox_keys (destination, tenant, order_key, live, item_id)`

// OutboxKeysFill gives every outbox item stored before outbox_keys its
// OrderKey (the migration that adds the table).
const OutboxKeysFill = `INSERT INTO outbox_keys (item_id, order_key, destination, tenant, live)
	SELECT id, order_key, destination, tenant, CASE WHEN status IN ('pending', 'inflight') THEN 1 ELSE 0 END FROM outbox`

// orderKeys are the order keys of it, OrderKey first, without repeats.
func orderKeys(it *store.OutboxItem) []string {
	keys := []string{it.OrderKey}
	for _, k := range it.OrderKeys {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	return keys
}

// setLive is the statement that sets the live flag of an item's keys
// (arguments: live, item id).
const setLive = `UPDATE outbox_keys SET live = ? WHERE item_id = ?`

// insertKeys is the statement that adds an item's keys as live.
func (t *tx) insertKeys(it *store.OutboxItem, keys []string) error {
	s := t.s
	b := s.builder()
	b.Add(`INSERT INTO outbox_keys (item_id, order_key, destination, tenant, live) VALUES `)
	live := 0
	if it.Status == store.StatusPending {
		live = 1
	}
	for i, k := range keys {
		if i > 0 {
			b.Add(`, `)
		}
		b.Add(`(?, ?, ?, ?, ?)`, it.ID, s.text(k), s.text(it.Destination), it.Tenant, live)
	}
	_, err := t.c.Exec(t.ctx, b.SQL(), b.Args()...)
	return err
}

// mayHaveReached is the condition on an outbox item o that it may have
// reached its destination, or may yet (store.Outbox.MayHaveReached): not
// dead, or a dead letter with an attempt the EHR may have applied.
var mayHaveReached = `(o.status <> 'dead' OR EXISTS (SELECT 1 FROM delivery_attempts a WHERE a.item_id = o.id AND
	((a.http_status BETWEEN 200 AND 299) OR a.http_status IN (409, 504) OR (a.http_status = 0 AND (` + ambiguousErrors() + `)))))`

// ambiguousErrors is the SQL condition that a.error begins with one of
// store.AmbiguousErrors (constants of the gateway's, no client's text).
func ambiguousErrors() string {
	var b strings.Builder
	for i, p := range store.AmbiguousErrors {
		if i > 0 {
			b.WriteString(" OR ")
		}
		fmt.Fprintf(&b, "a.error LIKE '%s%%'", p)
	}
	return b.String()
}

// Reached implements store.OutboxTx: one probe of outbox_keys_order per
// key.
func (t *tx) Reached(tenant, destination string, keys []string) (bool, error) {
	s := t.s
	for _, k := range keys {
		var one int
		err := t.c.QueryRow(t.ctx, s.bind(`SELECT 1 FROM outbox_keys k JOIN outbox o ON o.id = k.item_id
			WHERE k.destination = ? AND k.tenant = ? AND k.order_key = ? AND `+mayHaveReached+` LIMIT 1`),
			s.text(destination), tenant, s.text(k)).Scan(&one)
		if errNoRows(err) {
			continue
		}
		if err != nil {
			return false, fmt.Errorf("%s: reached: %w", s.d.Name, s.err(t.ctx, err))
		}
		return true, nil
	}
	return false, nil
}

// EarlierReached implements store.Outbox.
func (s *Store) EarlierReached(ctx context.Context, id int64) (bool, error) {
	var one int
	err := s.db.Read(ctx, func(c Conn) error {
		return c.QueryRow(ctx, s.bind(`SELECT 1 FROM outbox_keys k JOIN outbox_keys e
			ON e.destination = k.destination AND e.tenant = k.tenant AND e.order_key = k.order_key AND e.item_id < k.item_id
			JOIN outbox o ON o.id = e.item_id
			WHERE k.item_id = ? AND `+mayHaveReached+` LIMIT 1`), id).Scan(&one)
	})
	if errNoRows(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s: earlier reached: %w", s.d.Name, s.err(ctx, err))
	}
	return true, nil
}

// MayHaveReached implements store.Outbox.
func (s *Store) MayHaveReached(ctx context.Context, id int64) (bool, error) {
	var reached bool
	err := s.db.Read(ctx, func(c Conn) error {
		return c.QueryRow(ctx, s.bind(`SELECT `+mayHaveReached+` FROM outbox o WHERE o.id = ?`), id).Scan(&reached)
	})
	if errNoRows(err) {
		return false, fmt.Errorf("delivery %d: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("%s: may have reached: %w", s.d.Name, s.err(ctx, err))
	}
	return reached, nil
}

// LatestItem implements store.OutboxTx: one probe of outbox_keys_order.
func (t *tx) LatestItem(tenant, destination, key string) (status, lastError string, err error) {
	s := t.s
	err = t.c.QueryRow(t.ctx, s.bind(`SELECT o.status, o.last_error FROM outbox_keys k JOIN outbox o ON o.id = k.item_id
		WHERE k.destination = ? AND k.tenant = ? AND k.order_key = ? ORDER BY k.item_id DESC LIMIT 1`),
		s.text(destination), tenant, s.text(key)).Scan(&status, &lastError)
	if errNoRows(err) {
		return "", "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("%s: latest item: %w", s.d.Name, s.err(t.ctx, err))
	}
	return status, lastError, nil
}

// laterItem returns the latest item to item id's destination and tenant
// that shares one of its order keys, has a greater id and is not dead,
// or is a withdrawal withheld (store.WithheldWithdrawal) (its id and
// status); id 0 if there is none.
func (t *tx) laterItem(id int64) (later int64, status string, err error) {
	return t.s.laterItemOn(t.ctx, t.c, id)
}

// laterItemFrom selects, as l, the outbox items later than the item
// whose id the statement appends after it (a "?" or a column): to the
// same destination and tenant, sharing one of its order keys, not dead or
// a withdrawal withheld. Its two arguments come first
// (laterItemArgs).
const laterItemFrom = `FROM outbox_keys k
	JOIN outbox_keys lk ON lk.destination = k.destination AND lk.tenant = k.tenant AND lk.order_key = k.order_key
		AND lk.item_id > k.item_id
	JOIN outbox l ON l.id = lk.item_id
	WHERE (l.status <> 'dead' OR substr(l.last_error, 1, ?) = ?) AND k.item_id = `

// laterItemArgs are laterItemFrom's arguments.
func laterItemArgs() []any {
	return []any{len(store.WithheldWithdrawal), store.WithheldWithdrawal}
}

// laterItemOn is laterItem on the connection c (a transaction's or a
// reader's).
func (s *Store) laterItemOn(ctx context.Context, c Conn, id int64) (later int64, status string, err error) {
	err = c.QueryRow(ctx, s.bind(`SELECT l.id, l.status `+laterItemFrom+`? ORDER BY l.id DESC LIMIT 1`),
		append(laterItemArgs(), id)...).Scan(&later, &status)
	if errNoRows(err) {
		return 0, "", nil
	}
	return later, status, err
}

// Superseder implements store.Outbox.
func (s *Store) Superseder(ctx context.Context, id int64) (later int64, status string, err error) {
	err = s.db.Read(ctx, func(c Conn) error {
		var err error
		later, status, err = s.laterItemOn(ctx, c, id)
		return err
	})
	if err != nil {
		return 0, "", fmt.Errorf("%s: superseder: %w", s.d.Name, s.err(ctx, err))
	}
	return later, status, nil
}

// Superseders implements store.Outbox: laterItemOn of each id, in one
// statement per 500 ids (a listing's page is at most 1000).
func (s *Store) Superseders(ctx context.Context, ids []int64) (map[int64]store.Superseding, error) {
	out := make(map[int64]store.Superseding)
	err := s.db.Read(ctx, func(c Conn) error {
		for len(ids) > 0 {
			n := min(len(ids), 500)
			b := NewBuilder(s.d, "", time.Time{})
			b.Add(`SELECT x.id, s.id, s.status FROM outbox x
				JOIN outbox s ON s.id = (SELECT l.id `+laterItemFrom+`x.id ORDER BY l.id DESC LIMIT 1)
				WHERE `, laterItemArgs()...)
			addIn(b, "x.id", ids[:n])
			ids = ids[n:]
			rows, err := c.Query(ctx, b.SQL(), b.Args()...)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id int64
				var l store.Superseding
				if err := rows.Scan(&id, &l.ID, &l.Status); err != nil {
					rows.Close()
					return err
				}
				out[id] = l
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s: superseders: %w", s.d.Name, s.err(ctx, err))
	}
	return out, nil
}

// OutboxKeysLive is both stores' index of the live keys (a migration after
// OutboxKeysIndex's): RepairOrder finds the flags to clear through it,
// never reading the keys of the delivered history.
const OutboxKeysLive = `CREATE INDEX outbox_keys_live ON outbox_keys (item_id) WHERE live = 1`

// RepairOrder implements store.Outbox: in one write transaction, the open
// items without keys (through the partial index of the open items,
// outbox_open_id) get their OrderKey, live while pending or in flight, and
// the live keys (outbox_keys_live) of items done or dead are cleared. A
// release before the keys writes both during a rolling upgrade; Claim
// already ignores the stale flags, and waits for the keys of the items
// without them.
func (s *Store) RepairOrder(ctx context.Context) (store.OrderRepair, error) {
	var r store.OrderRepair
	err := s.write(ctx, func(t *tx) error {
		keyed, err := t.c.Exec(t.ctx, `INSERT INTO outbox_keys (item_id, order_key, destination, tenant, live)
			SELECT o.id, o.order_key, o.destination, o.tenant, CASE WHEN o.status IN ('pending', 'inflight') THEN 1 ELSE 0 END
			FROM outbox o WHERE o.status <> 'done' AND NOT EXISTS (SELECT 1 FROM outbox_keys k WHERE k.item_id = o.id)`)
		if err != nil {
			return fmt.Errorf("%s: repair order: %w", s.d.Name, s.err(t.ctx, err))
		}
		cleared, err := t.c.Exec(t.ctx, `UPDATE outbox_keys SET live = 0 WHERE live = 1
			AND item_id IN (SELECT k.item_id FROM outbox_keys k JOIN outbox o ON o.id = k.item_id
				WHERE k.live = 1 AND o.status IN ('done', 'dead'))`)
		if err != nil {
			return fmt.Errorf("%s: repair order: %w", s.d.Name, s.err(t.ctx, err))
		}
		r = store.OrderRepair{Keyed: int(keyed), Cleared: int(cleared)}
		return nil
	})
	return r, err
}
