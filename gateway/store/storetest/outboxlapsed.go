package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testOutboxCancelLapsed: Cancel takes an in-flight item whose claim has
// lapsed (its worker died: p44 F2, a restore), never one whose claim is
// live, and Claim and Delivery give the claim's end (LeaseUntil). A claim
// taken again, or renewed, before the cancel's update keeps the item: the
// lapse is checked by the update itself.
func testOutboxCancelLapsed(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	a, b := item("ehr", "LA", "p"), item("ehr", "LB", "p")
	enqueue(t, s, a, b)
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(time.Millisecond)
	claimed, err := ob.Claim(ctx, "ehr", t0, time.Minute, 10)
	if err != nil || !equal(itemIDs(claimed), []int64{a.ID, b.ID}) {
		t.Fatalf("Claim = %v %v", itemIDs(claimed), err)
	}
	if want := t0.Add(time.Minute); !claimed[0].LeaseUntil.Equal(want) {
		t.Errorf("Claim's LeaseUntil = %v, want %v", claimed[0].LeaseUntil, want)
	}
	it, _, err := ob.Delivery(ctx, a.ID)
	if err != nil || !it.LeaseUntil.Equal(t0.Add(time.Minute)) {
		t.Fatalf("Delivery(a).LeaseUntil = %v %v, want %v", it.LeaseUntil, err, t0.Add(time.Minute))
	}
	// A live claim is not cancelled.
	isErr(t, "Cancel of a live claim", ob.Cancel(ctx, a.ID, "x", t0.Add(59*time.Second)), store.ErrNotFound)
	// Nor one that ran out by the caller's clock less than ClaimGrace ago:
	// the claiming gateway's clock may be behind the caller's (a CLI host
	// whose clock is fast), its worker still renewing it.
	isErr(t, "Cancel within the grace after the claim's end",
		ob.Cancel(ctx, a.ID, "x", t0.Add(time.Minute+store.ClaimGrace-time.Millisecond)), store.ErrNotFound)
	// Renewed before the cancel: live again.
	if _, err := ob.Renew(ctx, []int64{b.ID}, t0.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	isErr(t, "Cancel of a renewed claim", ob.Cancel(ctx, b.ID, "x", t0.Add(2*time.Minute)), store.ErrNotFound)
	// Lapsed: cancelled.
	if err := ob.Cancel(ctx, a.ID, "cancelled by operator: lapsed", t0.Add(2*time.Minute)); err != nil {
		t.Fatalf("Cancel of a lapsed claim = %v", err)
	}
	it, _, err = ob.Delivery(ctx, a.ID)
	if err != nil || it.Status != store.StatusDead || it.LastError != "cancelled by operator: lapsed" || !it.LeaseUntil.IsZero() {
		t.Fatalf("after the cancel: %+v %v; want dead, its claim cleared", it, err)
	}
	// A claim again of b after it lapsed (another gateway recovering it)
	// makes it live: the cancel with the same clock fails.
	t4 := t0.Add(4 * time.Minute)
	if got, err := ob.Claim(ctx, "ehr", t4, time.Minute, 10); err != nil || !equal(itemIDs(got), []int64{b.ID}) {
		t.Fatalf("Claim after the lapse = %v %v, want b", itemIDs(got), err)
	}
	isErr(t, "Cancel of a claim taken again", ob.Cancel(ctx, b.ID, "x", t4), store.ErrNotFound)
	if it, _, err := ob.Delivery(ctx, b.ID); err != nil || it.Status != store.StatusInFlight {
		t.Fatalf("b after the refused cancel: %+v %v; want in flight", it, err)
	}
	if err := ob.Complete(ctx, &store.Attempt{ItemID: b.ID, At: t4}, store.StatusDone, time.Time{}); err != nil {
		t.Fatal(err)
	}

	// The race: a gateway claims the lapsed item while an operator cancels
	// it. Exactly one wins, every round.
	for round := range 8 {
		c := item("ehr", "LC", "p")
		enqueue(t, s, c)
		at := t0.Add(time.Duration(10+round*10) * time.Minute)
		if got, err := ob.Claim(ctx, "ehr", at, time.Minute, 10); err != nil || !equal(itemIDs(got), []int64{c.ID}) {
			t.Fatalf("round %d: Claim = %v %v", round, itemIDs(got), err)
		}
		lapsed := at.Add(2 * time.Minute)
		var wg sync.WaitGroup
		var claimErr, cancelErr error
		var got []*store.OutboxItem
		wg.Go(func() { got, claimErr = ob.Claim(ctx, "ehr", lapsed, time.Minute, 10) })
		wg.Go(func() { cancelErr = ob.Cancel(ctx, c.ID, "cancelled by operator: race", lapsed) })
		wg.Wait()
		if claimErr != nil || (cancelErr != nil && !errors.Is(cancelErr, store.ErrNotFound)) {
			t.Fatalf("round %d: Claim %v, Cancel %v", round, claimErr, cancelErr)
		}
		claimedC := equal(itemIDs(got), []int64{c.ID})
		if claimedC == (cancelErr == nil) {
			t.Fatalf("round %d: claimed %v and cancelled %v (Cancel %v): want exactly one", round, claimedC, cancelErr == nil, cancelErr)
		}
		it, _, err := ob.Delivery(ctx, c.ID)
		want := store.StatusDead
		if claimedC {
			want = store.StatusInFlight
		}
		if err != nil || it.Status != want {
			t.Fatalf("round %d: %+v %v, want %s", round, it, err, want)
		}
		if claimedC { // done, so that it holds back nothing
			if err := ob.Complete(ctx, &store.Attempt{ItemID: c.ID, At: lapsed}, store.StatusDone, time.Time{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testOutboxAttemptsAfter: AttemptsAfter pages through the attempts of
// every item in the order they began (two items' attempts begin at the
// same millisecond each round: by item, then number; a page boundary
// falls between them), from a time on, without the EHR's answers (audit
// verify's count of the attempts no AuditEvent names).
func testOutboxAttemptsAfter(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	a, b := item("ehr", "AA", "p"), item("ehr", "AB", "p")
	enqueue(t, s, a, b)
	t0 := time.Now().UTC().Truncate(time.Millisecond).Add(time.Millisecond)
	for i := range 3 {
		at := t0.Add(time.Duration(i) * time.Minute)
		if got, err := ob.Claim(ctx, "ehr", at, time.Second, 10); err != nil || len(got) != 2 {
			t.Fatalf("Claim %d = %v %v", i, itemIDs(got), err)
		}
		for _, id := range []int64{b.ID, a.ID} {
			err := ob.Complete(ctx, &store.Attempt{ItemID: id, At: at, Duration: time.Second, HTTPStatus: 503, Error: "http 503",
				Outcome: []byte(`{"resourceType":"OperationOutcome"}`)}, store.StatusPending, at)
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	type key struct {
		item int64
		n    int
	}
	var all []key
	var after *store.Attempt
	for {
		page, err := ob.AttemptsAfter(ctx, after, time.Time{}, 3)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range page {
			if len(x.Outcome) != 0 || x.HTTPStatus != 503 || x.Error != "http 503" || x.Duration != time.Second {
				t.Errorf("attempt %d/%d = %+v, want 503, its error and duration, no answer", x.ItemID, x.N, x)
			}
			all = append(all, key{x.ItemID, x.N})
		}
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1]
	}
	want := []key{{a.ID, 1}, {b.ID, 1}, {a.ID, 2}, {b.ID, 2}, {a.ID, 3}, {b.ID, 3}}
	if len(all) != len(want) {
		t.Fatalf("AttemptsAfter pages = %v, want %v", all, want)
	}
	for i := range want {
		if all[i] != want[i] {
			t.Fatalf("AttemptsAfter pages = %v, want %v", all, want)
		}
	}
	since, err := ob.AttemptsAfter(ctx, nil, t0.Add(time.Minute), 0)
	if err != nil || len(since) != 4 || since[0].N != 2 || since[0].ItemID != a.ID || !since[0].At.Equal(t0.Add(time.Minute)) {
		t.Fatalf("AttemptsAfter since the second round = %d attempts %v, want 4 from %d/2", len(since), err, a.ID)
	}
	if rest, err := ob.AttemptsAfter(ctx, since[1], t0.Add(time.Minute), 0); err != nil || len(rest) != 2 || rest[0].N != 3 {
		t.Fatalf("AttemptsAfter after %d/%d = %d attempts %v, want the last round's 2", since[1].ItemID, since[1].N, len(rest), err)
	}
}
