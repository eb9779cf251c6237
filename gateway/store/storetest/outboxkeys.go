package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testOutboxKeys: an item is ordered on each of its order keys, so that a
// session, its nested records and its infusion, one record identity each,
// are never sent out of order whichever way they were sent (p23 F1).
func testOutboxKeys(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	session := func(v string) *store.OutboxItem {
		it := item("ehr", "src|session|S", "p")
		it.Version, it.OrderKeys = v, []string{"src|infusion|S", "src|vitals|V"}
		return it
	}
	own := func(key string) *store.OutboxItem { return item("ehr", key, "p") }
	s1, v1, i1, u1, other := session("1"), own("src|vitals|V"), own("src|infusion|S"), own("src|vitals|U"), item("ehr2", "src|vitals|V", "p")
	enqueue(t, s, s1, v1, i1, u1, other)
	now := time.Now().UTC().Add(time.Millisecond)
	claim := func(at time.Time, want ...int64) {
		t.Helper()
		got, err := ob.Claim(ctx, "ehr", at, time.Hour, 10)
		if err != nil || !equal(itemIDs(got), want) {
			t.Fatalf("Claim = %v %v, want %v", itemIDs(got), err, want)
		}
	}
	complete := func(it *store.OutboxItem, status string, next time.Time) {
		t.Helper()
		if err := ob.Complete(ctx, &store.Attempt{ItemID: it.ID, At: now}, status, next); err != nil {
			t.Fatal(err)
		}
	}
	// The vitals sent on its own and the infusion wait for the session
	// that nests them; an unrelated record does not.
	claim(now, s1.ID, u1.ID)
	if b, err := ob.Blocker(ctx, v1.ID); err != nil || b != s1.ID {
		t.Errorf("Blocker(vitals) = %d %v, want the session %d", b, err, s1.ID)
	}
	complete(s1, store.StatusPending, now.Add(time.Minute)) // the EHR answered 500
	claim(now)
	claim(now.Add(time.Minute), s1.ID)
	complete(s1, store.StatusDone, now)
	claim(now.Add(time.Minute), v1.ID, i1.ID)
	// And the other way round: a session waits for the vitals record
	// sent on its own before it, and for its infusion.
	v2, i2, s2 := own("src|vitals|V"), own("src|infusion|S"), session("2")
	v2.Version, i2.Version = "2", "2"
	enqueue(t, s, v2, i2, s2)
	complete(v1, store.StatusDone, now)
	complete(i1, store.StatusDead, now)
	claim(now.Add(time.Minute), v2.ID, i2.ID)
	complete(v2, store.StatusDone, now)
	claim(now.Add(time.Minute)) // i2 in flight
	if b, err := ob.Blocker(ctx, s2.ID); err != nil || b != i2.ID {
		t.Errorf("Blocker(session) = %d %v, want the infusion %d", b, err, i2.ID)
	}
	complete(i2, store.StatusDone, now)
	claim(now.Add(time.Minute), s2.ID)
	// A cancelled item no longer holds back the later ones of any of its
	// keys.
	s3, v3 := session("3"), own("src|vitals|V")
	enqueue(t, s, s3, v3)
	complete(s2, store.StatusDone, now)
	if err := ob.Cancel(ctx, s3.ID, "wrong hospital", now); err != nil {
		t.Fatal(err)
	}
	claim(now.Add(time.Minute), v3.ID)
	// A replay's copy of a session is ordered on its nested records too.
	complete(v3, store.StatusDone, now)
	s4 := item("ehr", "src|session|T", "p")
	s4.OrderKeys = []string{"src|vitals|N"}
	enqueue(t, s, s4)
	claim(now.Add(time.Minute), s4.ID)
	complete(s4, store.StatusDone, now)
	if n, err := ob.Replay(ctx, "ehr", now.Add(-time.Hour), now); err != nil || n == 0 {
		t.Fatalf("Replay = %d %v", n, err)
	}
	n1 := own("src|vitals|N")
	enqueue(t, s, n1)
	got, err := ob.Claim(ctx, "ehr", now.Add(time.Minute), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range got {
		if it.ID == n1.ID {
			t.Errorf("Claim after a replay = %v: the vitals record %d overtook the replayed session nesting it", itemIDs(got), n1.ID)
		}
	}
}

// testOutboxRetryLater: a dead letter that a later item of the same
// record (any shared order key) to the same destination supersedes, done,
// pending or in flight, is not retried (p23 F2); with no later item, or
// only a dead one, or one to another destination, it is.
func testOutboxRetryLater(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	now := time.Now().UTC().Add(time.Millisecond)
	v1, v2, free, elsewhere := item("ehr", "src|vitals|W", "p"), item("ehr", "src|vitals|W", "p"), item("ehr", "src|vitals|F", "p"), item("ehr2", "src|vitals|W", "p")
	v2.Version = "2"
	enqueue(t, s, v1, free)
	got, err := ob.Claim(ctx, "ehr", now.Add(time.Minute), time.Minute, 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("Claim = %v %v", itemIDs(got), err)
	}
	for _, it := range got {
		if err := ob.Complete(ctx, &store.Attempt{ItemID: it.ID, At: now, HTTPStatus: 422}, store.StatusDead, now); err != nil {
			t.Fatal(err)
		}
	}
	// A session nesting the record, sent later, supersedes it as well.
	sess := item("ehr", "src|session|S", "p")
	sess.OrderKeys = []string{"src|vitals|W"}
	enqueue(t, s, v2, elsewhere, sess)
	var later *store.LaterDeliveryError
	if err := ob.Retry(ctx, v1.ID, now); !errors.As(err, &later) || later.ID != sess.ID || later.Status != store.StatusPending {
		t.Fatalf("Retry(v1, later session pending) = %v, want a LaterDeliveryError naming %d", err, sess.ID)
	}
	if it, _, _ := ob.Delivery(ctx, v1.ID); it.Status != store.StatusDead {
		t.Errorf("refused Retry changed the status to %s", it.Status)
	}
	if err := ob.Cancel(ctx, sess.ID, "test", now); err != nil {
		t.Fatal(err)
	}
	if err := ob.Retry(ctx, v1.ID, now); !errors.As(err, &later) || later.ID != v2.ID {
		t.Fatalf("Retry(v1, v2 pending) = %v, want a LaterDeliveryError naming %d", err, v2.ID)
	}
	got, _ = ob.Claim(ctx, "ehr", now.Add(time.Minute), time.Minute, 10)
	if !equal(itemIDs(got), []int64{v2.ID}) {
		t.Fatalf("Claim = %v, want v2", itemIDs(got))
	}
	if err := ob.Complete(ctx, &store.Attempt{ItemID: v2.ID, At: now, HTTPStatus: 200}, store.StatusDone, now); err != nil {
		t.Fatal(err)
	}
	if err := ob.Retry(ctx, v1.ID, now); !errors.As(err, &later) || later.ID != v2.ID || later.Status != store.StatusDone {
		t.Fatalf("Retry(v1, v2 done) = %v, want a LaterDeliveryError naming %d done", err, v2.ID)
	}
	// Superseder names what Retry refuses for, without a write.
	if id, status, err := ob.Superseder(ctx, v1.ID); err != nil || id != v2.ID || status != store.StatusDone {
		t.Errorf("Superseder(v1) = %d %s %v, want %d done", id, status, err, v2.ID)
	}
	if id, _, err := ob.Superseder(ctx, free.ID); err != nil || id != 0 {
		t.Errorf("Superseder(free) = %d %v, want none", id, err)
	}
	// No later item of its own record: retried.
	if err := ob.Retry(ctx, free.ID, now); err != nil {
		t.Errorf("Retry(free) = %v", err)
	}
	// A later dead letter does not supersede, except a withdrawal withheld
	// from a destination that never had the record.
	x1, x2, x3 := item("ehr3", "src|vitals|X", "p"), item("ehr3", "src|vitals|X", "p"), item("ehr3", "src|vitals|X", "p")
	x1.Status, x1.LastError = store.StatusDead, "cancelled by operator: wrong destination"
	x2.Status, x2.LastError = store.StatusDead, store.Refused+"some-rule: another reason"
	enqueue(t, s, x1, x2)
	if err := ob.Retry(ctx, x1.ID, now); err != nil {
		t.Errorf("Retry(x1, a later dead letter) = %v, want it retried", err)
	}
	if err := ob.Cancel(ctx, x1.ID, "again", now); err != nil {
		t.Fatal(err)
	}
	x3.Status, x3.LastError = store.StatusDead, store.WithheldWithdrawal+": never had it"
	enqueue(t, s, x3)
	if err := ob.Retry(ctx, x1.ID, now); !errors.As(err, &later) || later.ID != x3.ID || later.Status != store.StatusDead {
		t.Errorf("Retry(x1, a withheld withdrawal later) = %v, want a LaterDeliveryError naming %d", err, x3.ID)
	}
	if id, status, err := ob.Superseder(ctx, x1.ID); err != nil || id != x3.ID || status != store.StatusDead {
		t.Errorf("Superseder(x1) = %d %s %v, want the withheld withdrawal %d", id, status, err, x3.ID)
	}
	// Superseders answers as Superseder for each of a page's ids at once,
	// leaving out those without one (and an id that names nothing).
	page, err := ob.Superseders(ctx, []int64{v1.ID, free.ID, x1.ID, x2.ID, x3.ID, x3.ID + 1000})
	want := map[int64]store.Superseding{v1.ID: {ID: v2.ID, Status: store.StatusDone},
		x1.ID: {ID: x3.ID, Status: store.StatusDead}, x2.ID: {ID: x3.ID, Status: store.StatusDead}}
	if err != nil || !maps.Equal(page, want) {
		t.Errorf("Superseders = %v %v, want %v", page, err, want)
	}
	// Reached: a destination holding an item of one of the keys not dead
	// (done, pending: the session nesting W at ehr), not one whose items
	// of them are all dead (X at ehr3), nor another tenant's.
	for _, tc := range []struct {
		tenant, dest string
		keys         []string
		want         bool
	}{
		{"", "ehr", []string{"src|vitals|W"}, true},
		{"", "ehr", []string{"src|vitals|Q", "src|vitals|F"}, true}, // F retried: pending
		{"", "ehr", []string{"src|session|S"}, false},               // cancelled
		{"", "ehr3", []string{"src|vitals|X"}, false},
		{"", "ehr4", []string{"src|vitals|W"}, false},
		{"clinic-b", "ehr", []string{"src|vitals|W"}, false},
	} {
		var got bool
		err := s.Write(ctx, func(tx store.Tx) error {
			var err error
			got, err = tx.Reached(tc.tenant, tc.dest, tc.keys)
			return err
		})
		if err != nil || got != tc.want {
			t.Errorf("Reached(%q, %s, %v) = %v %v, want %v", tc.tenant, tc.dest, tc.keys, got, err, tc.want)
		}
	}
	// LatestItem: the latest item of a key at a destination, none for
	// another key.
	for _, tc := range []struct{ dest, key, status, prefix string }{
		{"ehr3", "src|vitals|X", store.StatusDead, store.WithheldWithdrawal},
		{"ehr", "src|vitals|F", store.StatusPending, ""},
		{"ehr", "src|vitals|none", "", ""},
	} {
		var status, lastError string
		err := s.Write(ctx, func(tx store.Tx) error {
			var err error
			status, lastError, err = tx.LatestItem("", tc.dest, tc.key)
			return err
		})
		if err != nil || status != tc.status || !strings.HasPrefix(lastError, tc.prefix) {
			t.Errorf("LatestItem(%s, %s) = %s %q %v, want %s %q…", tc.dest, tc.key, status, lastError, err, tc.status, tc.prefix)
		}
	}
}

// testOutboxReach: a dead letter one of whose attempts the EHR may have
// applied (a 2xx with a failed entry, a 409 or 504, no answer after the
// request left) counts as having reached its destination, for
// MayHaveReached, Reached and EarlierReached; one refused, cancelled, or
// whose request never left does not. EarlierReached looks at the items
// before the one asked of, of its keys, destination and tenant only.
func testOutboxReach(t *testing.T, s store.Store) {
	ctx := context.Background()
	ob := store.Outbox(s)
	now := time.Now().UTC().Truncate(time.Millisecond).Add(time.Hour) // every item due
	for i, tc := range []struct {
		attempts []store.Attempt // the last one makes the item dead
		want     bool
	}{
		{[]store.Attempt{{HTTPStatus: 400, Error: "http 400 (invalid)"}}, false},
		{[]store.Attempt{{HTTPStatus: 500, Error: "http 500"}, {HTTPStatus: 422, Error: "http 422"}}, false},
		{[]store.Attempt{{Error: "connection refused"}, {HTTPStatus: 400, Error: "http 400"}}, false},
		{[]store.Attempt{{Error: store.NotSent + "the destination's filter.kinds does not accept this record's kind"}}, false},
		{[]store.Attempt{{HTTPStatus: 200, Error: "entry 2 (POST Observation): http 400"}}, true},
		{[]store.Attempt{{HTTPStatus: 409, Error: "http 409"}, {HTTPStatus: 400, Error: "http 400"}}, true},
		{[]store.Attempt{{HTTPStatus: 504, Error: "http 504"}, {HTTPStatus: 400, Error: "http 400"}}, true},
		{[]store.Attempt{{Error: "timeout"}, {HTTPStatus: 400, Error: "http 400"}}, true},
		{[]store.Attempt{{Error: "connection reset"}, {HTTPStatus: 400, Error: "http 400"}}, true},
		{[]store.Attempt{{Error: "interrupted: the gateway stopped during this attempt"}, {HTTPStatus: 400, Error: "http 400"}}, true},
	} {
		dest := fmt.Sprintf("reach%d", i)
		first, later, elsewhere := item(dest, "src|vitals|R", "p"), item(dest, "src|vitals|R", "p"), item(dest, "src|vitals|Other", "p")
		later.Version = "2"
		enqueue(t, s, first)
		for n, a := range tc.attempts {
			if got, err := ob.Claim(ctx, dest, now, time.Minute, 1); err != nil || len(got) != 1 || got[0].ID != first.ID {
				t.Fatalf("%s: Claim = %v %v", dest, itemIDs(got), err)
			}
			a.ItemID, a.N, a.At = first.ID, n+1, now
			status := store.StatusPending
			if n == len(tc.attempts)-1 {
				status = store.StatusDead
			}
			if err := ob.Complete(ctx, &a, status, now); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := ob.MayHaveReached(ctx, first.ID); err != nil || got != tc.want {
			t.Errorf("%s: MayHaveReached after attempts %v = %v %v, want %v", dest, tc.attempts, got, err, tc.want)
		}
		var got bool
		err := s.Write(ctx, func(tx store.Tx) error {
			var err error
			got, err = tx.Reached("", dest, []string{"src|vitals|R"})
			return err
		})
		if err != nil || got != tc.want {
			t.Errorf("%s: Reached after attempts %v = %v %v, want %v", dest, tc.attempts, got, err, tc.want)
		}
		enqueue(t, s, later, elsewhere)
		if got, err := ob.EarlierReached(ctx, later.ID); err != nil || got != tc.want {
			t.Errorf("%s: EarlierReached(later) = %v %v, want %v", dest, got, err, tc.want)
		}
		if got, err := ob.EarlierReached(ctx, first.ID); err != nil || got {
			t.Errorf("%s: EarlierReached(first) = %v %v, want false: nothing before it", dest, got, err)
		}
		if got, err := ob.EarlierReached(ctx, elsewhere.ID); err != nil || got {
			t.Errorf("%s: EarlierReached(another record's) = %v %v, want false", dest, got, err)
		}
	}
	// A pending or delivered earlier item reaches it.
	p1, p2 := item("reachP", "src|vitals|P", "p"), item("reachP", "src|vitals|P", "p")
	enqueue(t, s, p1, p2)
	if got, err := ob.EarlierReached(ctx, p2.ID); err != nil || !got {
		t.Errorf("EarlierReached after a pending item = %v %v, want true", got, err)
	}
	if got, err := ob.MayHaveReached(ctx, p1.ID); err != nil || !got {
		t.Errorf("MayHaveReached of a pending item = %v %v, want true", got, err)
	}
	if _, err := ob.MayHaveReached(ctx, 1<<40); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("MayHaveReached of no item = %v, want ErrNotFound", err)
	}
}
