package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// OutboxOldRelease: during a rolling upgrade past the migration that added
// the order keys (SQLite 17, PostgreSQL 19), a gateway of a release before
// it still runs on the database: it marks items done or dead without
// clearing their keys' live flags, and enqueues items without keys (p38
// F1, F2). The new release still claims each record's next version (a
// done or dead item holds back nothing, whatever its flag says), never
// sends a version before an earlier one still undelivered (keys or not),
// and RepairOrder makes the keys agree with the items again. exec runs a
// statement on s's database as the old release would (no placeholders).
func OutboxOldRelease(t *testing.T, s store.Store, exec func(query string) error) {
	ob := store.Outbox(s)
	ctx := context.Background()
	now := time.Now().UTC().Add(time.Millisecond)
	later := now.Add(time.Minute)
	run := func(format string, args ...any) {
		t.Helper()
		if err := exec(fmt.Sprintf(format, args...)); err != nil {
			t.Fatal(err)
		}
	}
	// oldEnqueue enqueues it as the old release does: no keys.
	oldEnqueue := func(it *store.OutboxItem) {
		t.Helper()
		enqueue(t, s, it)
		run(`DELETE FROM outbox_keys WHERE item_id = %d`, it.ID)
	}
	claim := func(at time.Time, want ...int64) {
		t.Helper()
		got, err := ob.Claim(ctx, "ehr", at, time.Hour, 10)
		if err != nil || !equal(itemIDs(got), want) {
			t.Fatalf("Claim = %v %v, want %v", itemIDs(got), err, want)
		}
	}
	complete := func(it *store.OutboxItem, status string) {
		t.Helper()
		if err := ob.Complete(ctx, &store.Attempt{ItemID: it.ID, At: now}, status, now); err != nil {
			t.Fatal(err)
		}
	}
	version := func(key, v string) *store.OutboxItem {
		it := item("ehr", key, "p")
		it.Version = v
		return it
	}

	// F1: the old release delivers v1 (done) and dead-letters w1 without
	// clearing their flags; the next versions are claimed all the same.
	v1, w1 := version("src|ae|V", "1"), version("src|ae|W", "1")
	enqueue(t, s, v1, w1)
	claim(later, v1.ID, w1.ID)
	run(`UPDATE outbox SET status = 'done', attempts = 1, lease_until = 0 WHERE id = %d`, v1.ID)
	run(`UPDATE outbox SET status = 'dead', attempts = 1, lease_until = 0 WHERE id = %d`, w1.ID)
	v2, w2 := version("src|ae|V", "2"), version("src|ae|W", "2")
	enqueue(t, s, v2, w2)
	if b, err := ob.Blocker(ctx, v2.ID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Blocker(v2) = %d %v, want none: v1 %d was delivered", b, err, v1.ID)
	}
	claim(later, v2.ID, w2.ID)
	complete(v2, store.StatusDone)
	complete(w2, store.StatusDone)

	// F2: the old release enqueued x1 without keys, the new one x2: x1 is
	// sent first.
	x1 := version("src|ae|X", "1")
	oldEnqueue(x1)
	x2 := version("src|ae|X", "2")
	enqueue(t, s, x2)
	got, err := ob.Claim(ctx, "ehr", later, time.Hour, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range got {
		if it.ID == x2.ID {
			t.Fatalf("Claim = %v: x2 %d claimed before x1 %d, which the old release enqueued without keys", itemIDs(got), x2.ID, x1.ID)
		}
	}
	if len(got) == 0 {
		// x1 waits for its keys.
		if _, err := ob.RepairOrder(ctx); err != nil {
			t.Fatal(err)
		}
		claim(later, x1.ID)
	}
	complete(x1, store.StatusDone)
	claim(later, x2.ID)
	complete(x2, store.StatusDone)

	// And the other way round: y2, enqueued by the old release after the
	// new one's y1, waits for y1.
	y1 := version("src|ae|Y", "1")
	enqueue(t, s, y1)
	y2 := version("src|ae|Y", "2")
	oldEnqueue(y2)
	claim(later, y1.ID)
	if _, err := ob.RepairOrder(ctx); err != nil {
		t.Fatal(err)
	}
	claim(later)
	complete(y1, store.StatusDone)
	claim(later, y2.ID)
	complete(y2, store.StatusDone)

	// The old release delivers z1 and dead-letters d1 again: RepairOrder
	// clears their flags and gives every open item its keys.
	z1, d1, u1 := version("src|ae|Z", "1"), version("src|ae|D", "1"), version("src|ae|U", "1")
	enqueue(t, s, z1, d1)
	claim(later, z1.ID, d1.ID)
	run(`UPDATE outbox SET status = 'done', attempts = 1, lease_until = 0 WHERE id = %d`, z1.ID)
	run(`UPDATE outbox SET status = 'dead', attempts = 1, lease_until = 0 WHERE id = %d`, d1.ID)
	oldEnqueue(u1)
	r, err := ob.RepairOrder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (store.OrderRepair{Keyed: 1, Cleared: 2}); r != want {
		t.Errorf("RepairOrder = %+v, want %+v", r, want)
	}
	if r, err := ob.RepairOrder(ctx); err != nil || r != (store.OrderRepair{}) {
		t.Errorf("RepairOrder again = %+v %v, want nothing to repair", r, err)
	}
	claim(later, u1.ID)
	complete(u1, store.StatusDone)
	checkIntegrity(t, s)
}
