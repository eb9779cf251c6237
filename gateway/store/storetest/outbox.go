package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

func enqueue(t *testing.T, s store.Store, items ...*store.OutboxItem) {
	t.Helper()
	err := s.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(items...) })
	if err != nil {
		t.Fatal(err)
	}
}

func item(dest, key, patient string) *store.OutboxItem {
	return &store.OutboxItem{Destination: dest, OrderKey: key, Patient: patient, Kind: "session", Source: "src",
		RecordID: key, Version: "1", Payload: []byte(`{"resourceType":"Bundle"}`)}
}

func itemIDs(items []*store.OutboxItem) []int64 {
	var out []int64
	for _, it := range items {
		out = append(out, it.ID)
	}
	return out
}

// testOutbox: claim order per key, retries, dead letters not blocking,
// operator retry and replay, stats.
func testOutbox(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	a1, a2, b1, c1 := item("ehr", "A", "pa"), item("ehr", "A", "pa"), item("ehr", "B", "pb"), item("other", "C", "pc")
	a2.Version = "2"
	enqueue(t, s, a1, a2, b1, c1)
	now := time.Now().UTC().Add(time.Millisecond) // after the enqueue: the items are due
	if a1.ID == 0 || a2.ID <= a1.ID || a1.Status != store.StatusPending {
		t.Fatalf("Enqueue ids/status = %d %d %s", a1.ID, a2.ID, a1.Status)
	}
	got, err := ob.Claim(ctx, "ehr", now, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{a1.ID, b1.ID}; !equal(itemIDs(got), want) {
		t.Fatalf("Claim = %v, want %v (the amendment waits for its original)", itemIDs(got), want)
	}
	if again, _ := ob.Claim(ctx, "ehr", now, time.Minute, 10); len(again) != 0 {
		t.Fatalf("in-flight items claimed twice: %v", itemIDs(again))
	}
	if err := ob.Complete(ctx, &store.Attempt{ItemID: c1.ID, At: now}, store.StatusDone, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Complete of an item not in flight = %v, want ErrNotFound", err)
	}
	// a1 fails and is retried later; b1 dies.
	if err := ob.Complete(ctx, &store.Attempt{ItemID: a1.ID, At: now, HTTPStatus: 503, Error: "http 503"}, store.StatusPending, now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := ob.Complete(ctx, &store.Attempt{ItemID: b1.ID, At: now, HTTPStatus: 400, Error: "http 400", Outcome: []byte(`{"resourceType":"OperationOutcome"}`)}, store.StatusDead, now); err != nil {
		t.Fatal(err)
	}
	if got, _ := ob.Claim(ctx, "ehr", now, time.Minute, 10); len(got) != 0 {
		t.Fatalf("Claim before the retry time = %v", itemIDs(got))
	}
	got, _ = ob.Claim(ctx, "ehr", now.Add(time.Minute), time.Minute, 10)
	if !equal(itemIDs(got), []int64{a1.ID}) {
		t.Fatalf("Claim at retry time = %v, want [%d]", itemIDs(got), a1.ID)
	}
	if err := ob.Complete(ctx, &store.Attempt{ItemID: a1.ID, At: now, HTTPStatus: 200}, store.StatusDone, now); err != nil {
		t.Fatal(err)
	}
	got, _ = ob.Claim(ctx, "ehr", now.Add(time.Minute), time.Minute, 10)
	if !equal(itemIDs(got), []int64{a2.ID}) {
		t.Fatalf("after the original is done, Claim = %v, want the amendment %d", itemIDs(got), a2.ID)
	}
	it, attempts, err := ob.Delivery(ctx, a1.ID)
	if err != nil || it.Status != store.StatusDone || it.Attempts != 2 || len(attempts) != 2 || attempts[0].HTTPStatus != 503 || attempts[1].N != 2 {
		t.Fatalf("Delivery(a1) = %+v %+v %v", it, attempts, err)
	}
	if _, _, err := ob.Delivery(ctx, 999999); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delivery(unknown) = %v, want ErrNotFound", err)
	}
	dead, err := ob.Deliveries(ctx, store.DeliveryFilter{Status: store.StatusDead})
	if err != nil || !equal(itemIDs(dead), []int64{b1.ID}) {
		t.Fatalf("Deliveries(dead) = %v %v", itemIDs(dead), err)
	}
	if byPatient, _ := ob.Deliveries(ctx, store.DeliveryFilter{Patient: "pc"}); !equal(itemIDs(byPatient), []int64{c1.ID}) {
		t.Errorf("Deliveries(patient) = %v", itemIDs(byPatient))
	}
	if err := ob.Retry(ctx, b1.ID, now); err != nil {
		t.Fatal(err)
	}
	// A pending item (b1 now) is made due now as well.
	if err := ob.Retry(ctx, b1.ID, now); err != nil {
		t.Errorf("Retry of a pending item = %v, want nil", err)
	}
	for _, id := range []int64{a1.ID, a2.ID} { // done, in flight
		if err := ob.Retry(ctx, id, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Retry of item %d (done or in flight) = %v, want ErrNotFound", id, err)
		}
	}
	stats, err := ob.Stats(ctx)
	if err != nil || len(stats) != 2 || stats[0].Destination != "ehr" || stats[0].Pending != 2 || stats[0].InFlight != 1 ||
		stats[0].OldestPending.IsZero() {
		t.Fatalf("Stats = %+v %v", stats, err)
	}
	n, err := ob.Replay(ctx, "ehr", now.Add(-time.Hour), now)
	if err != nil || n != 0 { // a1 is done but superseded by a2, in flight; b1 is pending
		t.Fatalf("Replay = %d %v, want 0", n, err)
	}
}

// testOutboxReplay: a replay re-sends the latest delivered version of each
// record, once: not its superseded versions (they would roll the EHR
// back), not the copies of earlier replays, not a record whose latest
// delivery is a dead letter or still pending.
func testOutboxReplay(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	var now time.Time // after every enqueue
	// finish claims it (the earliest live item of its key) and completes it
	// with status.
	finish := func(it *store.OutboxItem, status string) {
		t.Helper()
		got, err := ob.Claim(ctx, it.Destination, now, time.Minute, 100)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, g := range got {
			if g.ID == it.ID {
				found = true
				continue
			}
			// Hand the others back: their lease ends at once.
			if _, err := ob.Renew(ctx, []int64{g.ID}, now.Add(-time.Second)); err != nil {
				t.Fatal(err)
			}
		}
		if !found {
			t.Fatalf("item %d (%s v%s) not claimable; claimed %v", it.ID, it.OrderKey, it.Version, itemIDs(got))
		}
		if err := ob.Complete(ctx, &store.Attempt{ItemID: it.ID, At: now}, status, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	version := func(key, v string) *store.OutboxItem {
		it := item("ehr", key, "p"+key)
		it.Version = v
		enqueue(t, s, it)
		return it
	}
	k1, k2, k3 := version("K", "1"), version("K", "2"), version("K", "3") // all delivered: v3 is replayed
	l1, l2 := version("L", "1"), version("L", "2")                        // v2 a dead letter: retry it, not replay
	m1, _ := version("M", "1"), version("M", "2")                         // v2 pending: sent anyway
	n1 := version("N", "1")                                               // a dead letter only
	other := item("other", "K", "pK")
	enqueue(t, s, other)
	now = time.Now().UTC().Add(time.Millisecond)
	for _, f := range []struct {
		it     *store.OutboxItem
		status string
	}{{k1, store.StatusDone}, {k2, store.StatusDone}, {k3, store.StatusDone}, {l1, store.StatusDone}, {l2, store.StatusDead},
		{m1, store.StatusDone}, {n1, store.StatusDead}, {other, store.StatusDone}} {
		finish(f.it, f.status)
	}
	since := now.Add(-time.Hour)
	replayed := func(want int) *store.OutboxItem {
		t.Helper()
		n, err := ob.Replay(ctx, "ehr", since, now)
		if err != nil || n != want {
			t.Fatalf("Replay = %d %v, want %d", n, err, want)
		}
		if want == 0 {
			return nil
		}
		got, err := ob.Deliveries(ctx, store.DeliveryFilter{Destination: "ehr", Limit: 1})
		if err != nil || len(got) != 1 || got[0].OrderKey != "K" || got[0].Version != "3" || got[0].Status != store.StatusPending {
			t.Fatalf("the replayed delivery = %+v %v, want K version 3, pending", got, err)
		}
		return got[0]
	}
	cp := replayed(1)
	replayed(0) // the copy is pending: it is the latest, nothing more to send
	finish(cp, store.StatusDone)
	replayed(1) // the copy was delivered: replayed once more, not with the originals
}

// testOutboxLease: a crashed worker's claim is taken over after the lease.
func testOutboxLease(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	x := item("ehr", "X", "px")
	enqueue(t, s, x)
	now := time.Now().UTC().Add(time.Millisecond)
	if got, _ := ob.Claim(ctx, "ehr", now, time.Minute, 1); len(got) != 1 {
		t.Fatal("first claim failed")
	}
	if got, _ := ob.Claim(ctx, "ehr", now.Add(30*time.Second), time.Minute, 1); len(got) != 0 {
		t.Fatal("claimed again within the lease")
	}
	got, _ := ob.Claim(ctx, "ehr", now.Add(61*time.Second), time.Minute, 1)
	if !equal(itemIDs(got), []int64{x.ID}) {
		t.Fatalf("claim after the lease = %v", itemIDs(got))
	}
	// The lapsed claim's attempt may have been sent: the item says so, and
	// when it was claimed, for the worker to record that attempt.
	if it := got[0]; it.LastError != store.LeaseEnded || !it.NextAttempt.Equal(now.Truncate(time.Millisecond)) || it.Attempts != 0 {
		t.Errorf("item claimed after the lease: last error %q, next attempt %v, %d attempts; want %q, %v (the lapsed claim), 0",
			it.LastError, it.NextAttempt, it.Attempts, store.LeaseEnded, now.Truncate(time.Millisecond))
	}

	// A renewed lease holds past its first end; a finished item is not
	// renewed; unknown ids are ignored.
	y := item("ehr-renew", "Y", "py")
	enqueue(t, s, y)
	t0 := now.Add(2 * time.Minute)
	if got, _ := ob.Claim(ctx, "ehr-renew", t0, time.Minute, 1); !equal(itemIDs(got), []int64{y.ID}) {
		t.Fatalf("claim of y = %v", itemIDs(got))
	}
	if got, err := ob.Renew(ctx, []int64{987654, y.ID}, t0.Add(3*time.Minute)); err != nil || !equal(got, []int64{y.ID}) {
		t.Fatalf("Renew = %v, %v; want [%d]", got, err, y.ID)
	}
	if got, _ := ob.Claim(ctx, "ehr-renew", t0.Add(2*time.Minute), time.Minute, 1); len(got) != 0 {
		t.Fatalf("claimed within the renewed lease: %v", itemIDs(got))
	}
	if err := ob.Complete(ctx, &store.Attempt{ItemID: y.ID, At: t0}, store.StatusDone, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if got, err := ob.Renew(ctx, []int64{y.ID}, t0.Add(time.Hour)); err != nil || len(got) != 0 {
		t.Fatalf("Renew of a finished item = %v, %v; want none", got, err)
	}
	if got, err := ob.Renew(ctx, nil, t0); err != nil || len(got) != 0 {
		t.Fatalf("Renew of nothing = %v, %v", got, err)
	}
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// testDeliveryFilter: each field of store.DeliveryFilter selects on its
// own and together with the others; Delivery lists attempts in order.
func testDeliveryFilter(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	mk := func(dest, source, kind, record, trace string) *store.OutboxItem {
		it := item(dest, source+"|"+kind+"|"+record, "pat-"+record)
		it.Source, it.Kind, it.RecordID, it.TraceID = source, kind, record, trace
		return it
	}
	a := mk("ehr", "clinic-a", "session", "r1", "trace-1")
	b := mk("ehr", "clinic-a", "assessment", "r1", "trace-1")
	c := mk("ehr", "clinic-b", "session", "r1", "trace-2")
	d := mk("other", "clinic-a", "session", "r2", "")
	enqueue(t, s, a, b, c, d)
	tests := []struct {
		name string
		f    store.DeliveryFilter
		want []*store.OutboxItem // newest first
	}{
		{"none", store.DeliveryFilter{}, []*store.OutboxItem{d, c, b, a}},
		{"source", store.DeliveryFilter{Source: "clinic-a"}, []*store.OutboxItem{d, b, a}},
		{"kind", store.DeliveryFilter{Kind: "session"}, []*store.OutboxItem{d, c, a}},
		{"record", store.DeliveryFilter{RecordID: "r1"}, []*store.OutboxItem{c, b, a}},
		{"trace", store.DeliveryFilter{TraceID: "trace-1"}, []*store.OutboxItem{b, a}},
		{"source and kind and record", store.DeliveryFilter{Source: "clinic-a", Kind: "session", RecordID: "r1"}, []*store.OutboxItem{a}},
		{"record and destination", store.DeliveryFilter{RecordID: "r2", Destination: "other"}, []*store.OutboxItem{d}},
		{"trace and source", store.DeliveryFilter{TraceID: "trace-2", Source: "clinic-a"}, nil},
		{"unknown record", store.DeliveryFilter{RecordID: "r"}, nil},
		{"source is not a prefix", store.DeliveryFilter{Source: "clinic"}, nil},
		{"limit", store.DeliveryFilter{Source: "clinic-a", Limit: 2}, []*store.OutboxItem{d, b}},
		{"offset", store.DeliveryFilter{Source: "clinic-a", Offset: 1}, []*store.OutboxItem{b, a}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ob.Deliveries(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if !equal(itemIDs(got), itemIDs(tc.want)) {
				t.Errorf("Deliveries(%+v) = %v, want %v", tc.f, itemIDs(got), itemIDs(tc.want))
			}
		})
	}

	// Three attempts at a: Delivery lists them in order.
	now := time.Now().UTC().Add(time.Millisecond)
	for n := 1; n <= 3; n++ {
		claimed, err := ob.Claim(ctx, "ehr", now, time.Minute, 1)
		if err != nil || !equal(itemIDs(claimed), []int64{a.ID}) {
			t.Fatalf("Claim %d = %v %v, want [%d]", n, itemIDs(claimed), err, a.ID)
		}
		status := store.StatusPending
		if n == 3 {
			status = store.StatusDone
		}
		if err := ob.Complete(ctx, &store.Attempt{ItemID: a.ID, At: now, HTTPStatus: 500 + n}, status, now); err != nil {
			t.Fatal(err)
		}
	}
	_, attempts, err := ob.Delivery(ctx, a.ID)
	if err != nil || len(attempts) != 3 {
		t.Fatalf("Delivery(a) = %d attempts, %v; want 3", len(attempts), err)
	}
	for i, at := range attempts {
		if at.N != i+1 || at.HTTPStatus != 501+i || at.ItemID != a.ID {
			t.Errorf("attempt %d = N %d status %d item %d, want N %d status %d item %d", i, at.N, at.HTTPStatus, at.ItemID, i+1, 501+i, a.ID)
		}
	}
}

// testOutboxCancel: Cancel makes a pending or dead item a dead letter with
// the reason (not one in flight or done), after which the next version of
// its record is claimed; Blocker names the earliest pending or in-flight
// item a later version waits for.
func testOutboxCancel(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	v1, v2, v3, other := item("ehr", "K", "p"), item("ehr", "K", "p"), item("ehr", "K", "p"), item("ehr", "L", "p")
	v2.Version, v3.Version = "2", "3"
	enqueue(t, s, v1, v2, v3, other)
	now := time.Now().UTC().Add(time.Millisecond)
	for _, tc := range []struct {
		id, want int64
	}{{v1.ID, 0}, {v2.ID, v1.ID}, {v3.ID, v1.ID}, {other.ID, 0}} {
		got, err := ob.Blocker(ctx, tc.id)
		if tc.want == 0 && !errors.Is(err, store.ErrNotFound) || tc.want != 0 && (err != nil || got != tc.want) {
			t.Errorf("Blocker(%d) = %d %v, want %d", tc.id, got, err, tc.want)
		}
	}
	if err := ob.Cancel(ctx, v1.ID, "cancelled by operator: x", now); err != nil {
		t.Fatal(err)
	}
	it, _, err := ob.Delivery(ctx, v1.ID)
	if err != nil || it.Status != store.StatusDead || it.LastError != "cancelled by operator: x" {
		t.Fatalf("after Cancel: %+v %v", it, err)
	}
	if got, err := ob.Blocker(ctx, v3.ID); err != nil || got != v2.ID {
		t.Errorf("Blocker(v3) after the cancel = %d %v, want v2 %d", got, err, v2.ID)
	}
	got, err := ob.Claim(ctx, "ehr", now, time.Minute, 10)
	if err != nil || !equal(itemIDs(got), []int64{v2.ID, other.ID}) {
		t.Fatalf("Claim after the cancel = %v %v, want v2 and the other record", itemIDs(got), err)
	}
	if err := ob.Cancel(ctx, v2.ID, "x", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Cancel in flight = %v, want ErrNotFound", err)
	}
	if err := ob.Cancel(ctx, v1.ID, "cancelled by operator: y", now); err != nil {
		t.Errorf("Cancel of a dead letter = %v, want nil", err)
	}
}
