package replay_test

import (
	"context"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestApplySkipsDeadDestination: a correction goes only to a destination
// that had the record: one delivery of it done, or pending or in flight
// (the correction queues behind it). A destination whose only delivery of
// it is a dead letter, cancelled by an operator ("sent to the wrong
// hospital") or refused by the EHR, never had it and gets no correction:
// it would be the first, partial, thing that EHR receives of the record.
// One whose dead letter the EHR may have applied (a transaction-response
// with a failed entry: it holds the others, final) gets it (an EHR
// review, of withdrawals).
func TestApplySkipsDeadDestination(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ids := map[string]string{}
	for i, name := range []string{"cancelled", "refused", "done", "inflight", "pending", "partly"} {
		body, id := example(t, "vitals/pre-dose-baseline.json", 40+i)
		f.ingest(t, "clinic-a", "vitals", body)
		ids[name] = id
	}
	item := func(id string) *store.OutboxItem {
		t.Helper()
		items, err := f.st.Deliveries(ctx, store.DeliveryFilter{RecordID: id, Tenant: "clinic-a", Limit: 10})
		if err != nil || len(items) != 1 {
			t.Fatalf("deliveries of %s: %d, %v", id, len(items), err)
		}
		return items[0]
	}
	now := time.Now()
	if err := f.st.Cancel(ctx, item(ids["cancelled"]).ID, "cancelled by operator: sent to the wrong hospital", now); err != nil {
		t.Fatal(err)
	}
	pending := item(ids["pending"]).ID
	if err := f.st.Cancel(ctx, pending, "cancelled by operator: held", now); err != nil { // kept out of the claim
		t.Fatal(err)
	}
	claimed, err := f.st.Claim(ctx, "ehr", now, time.Hour, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.st.Retry(ctx, pending, now); err != nil { // pending again
		t.Fatal(err)
	}
	for _, it := range claimed {
		switch it.RecordID {
		case ids["refused"]:
			err = f.st.Complete(ctx, &store.Attempt{ItemID: it.ID, N: 1, At: now, HTTPStatus: 422, Error: "http 422"}, store.StatusDead, now)
		case ids["done"]:
			err = f.st.Complete(ctx, &store.Attempt{ItemID: it.ID, N: 1, At: now, HTTPStatus: 200}, store.StatusDone, now)
		case ids["partly"]:
			err = f.st.Complete(ctx, &store.Attempt{ItemID: it.ID, N: 1, At: now, HTTPStatus: 200,
				Error: "entry 3 (PUT Observation): http 400; the EHR applied the transaction's other entries (2 of 3 answered 2xx)"}, store.StatusDead, now)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for name, want := range map[string]string{"cancelled": store.StatusDead, "refused": store.StatusDead, "done": store.StatusDone,
		"inflight": store.StatusInFlight, "pending": store.StatusPending, "partly": store.StatusDead} {
		if got := item(ids[name]).Status; got != want {
			t.Fatalf("%s: delivery %s, want %s", name, got, want)
		}
	}

	s := f.service(heartRateDisplay)
	_, got := run(t, s, replay.Options{Tenant: "clinic-a", Kind: mapping.KindVitals, Apply: true, Reason: "heart rate display fixed"})
	for name, want := range map[string]int{"cancelled": 0, "refused": 0, "done": 1, "inflight": 1, "pending": 1, "partly": 1} {
		r := got[ids[name]]
		if !r.Applied || r.Deliveries != want {
			t.Errorf("%s: applied %v, %d corrections enqueued, want %d", name, r.Applied, r.Deliveries, want)
		}
		items, _ := f.st.Deliveries(ctx, store.DeliveryFilter{RecordID: ids[name], Tenant: "clinic-a", Limit: 10})
		if len(items) != 1+want {
			t.Errorf("%s: %d outbox items, want %d", name, len(items), 1+want)
		}
	}
}
