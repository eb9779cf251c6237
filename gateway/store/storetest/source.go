package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testSourceTenants: the tenants that stored records of a source system,
// each with its first record's time per kind, earliest first, whatever the
// namespace their ledger stores the source in; other sources not counted.
func testSourceTenants(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)
	for i, l := range []struct {
		tenant, source, kind string
		at                   int // minutes after base
	}{
		{"clinic-b", "tenant:clinic-b|emr", "vitals", 5},
		{"clinic-b", "tenant:clinic-b|emr", "vitals", 1},
		{"clinic-b", "tenant:clinic-b|emr", "session", 4},
		{"", "emr", "vitals", 3},
		{"clinic-a", "tenant:clinic-a|emr", "vitals", 9},
		{"clinic-c", "tenant:clinic-c|other-emr", "vitals", 0},
		{"clinic-c", "tenant:clinic-c|x|emr", "vitals", 0}, // another source that ends the same
	} {
		err := s.Write(ctx, func(tx store.Tx) error {
			return tx.PutLedger(&store.Ledger{Tenant: l.tenant, Source: l.source, Kind: l.kind, RecordID: string(rune('a' + i)),
				Version: "1", ContentHash: "h", Received: base.Add(time.Duration(l.at) * time.Minute)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var got []store.SourceTenant
	err := s.Write(ctx, func(tx store.Tx) error {
		var err error
		got, err = tx.SourceTenants("emr")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []store.SourceTenant{{Tenant: "clinic-b", Kind: "vitals", First: base.Add(time.Minute)},
		{Tenant: "", Kind: "vitals", First: base.Add(3 * time.Minute)}, {Tenant: "clinic-b", Kind: "session", First: base.Add(4 * time.Minute)},
		{Tenant: "clinic-a", Kind: "vitals", First: base.Add(9 * time.Minute)}}
	if len(got) != len(want) {
		t.Fatalf("SourceTenants(emr) = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Tenant != want[i].Tenant || got[i].Kind != want[i].Kind || !got[i].First.Equal(want[i].First) {
			t.Errorf("SourceTenants(emr)[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

// testEnqueueDead: an item enqueued as a dead letter keeps its reason and
// is never claimed; any other status enqueued is pending, without error.
func testEnqueueDead(t *testing.T, s store.Store) {
	ctx := context.Background()
	dead := item("ehr", "k1", "p")
	dead.Payload, dead.Status, dead.LastError = nil, store.StatusDead, store.Refused+"rule: reason"
	other := item("ehr", "k2", "p")
	other.Status, other.LastError = store.StatusDone, "stale"
	enqueue(t, s, dead, other)
	claimed, err := s.Claim(ctx, "ehr", time.Now().Add(time.Hour), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(claimed) != 1 || claimed[0].ID != other.ID {
		t.Errorf("claimed %v, want only item %d", itemIDs(claimed), other.ID)
	}
	got, _, err := s.Delivery(ctx, dead.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != store.StatusDead || got.LastError != dead.LastError || len(got.Payload) != 0 {
		t.Errorf("dead letter = %s %q %d bytes, want dead %q no payload", got.Status, got.LastError, len(got.Payload), dead.LastError)
	}
	if got, _, _ := s.Delivery(ctx, other.ID); got.LastError != "" {
		t.Errorf("pending item's last error %q, want none", got.LastError)
	}
}
