package replay_test

import (
	"context"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestDeliveriesTellCorrections: the operator's list and view of the
// deliveries (the API, the CLI and the console show them) mark the
// delivery of a replay's correction as one, with the mapping it corrected
// from and to; the record's original delivery, of the same record
// version, is not marked (p42 F8).
func TestDeliveriesTellCorrections(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	ctx := context.Background()
	s := f.service(heartRateDisplay)
	if sum, _ := run(t, s, replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "heart rate display fixed"}); sum.Deliveries != 5 {
		t.Fatalf("apply enqueued %d corrections, want 5", sum.Deliveries)
	}
	marked := map[string]bool{}
	for _, tenant := range []string{search.AllTenants, "clinic-a"} {
		views, err := f.a.Operator.List(ctx, tenant, store.DeliveryFilter{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range views {
			if tenant != search.AllTenants {
				// A tenant's operator sees the same marks on its own.
				if (v.Correction != nil) != marked[v.ID] {
					t.Errorf("List(%q): delivery %s correction %+v, want marked %v as for every tenant", tenant, v.ID, v.Correction, marked[v.ID])
				}
				continue
			}
			if v.Correction == nil {
				continue
			}
			marked[v.ID] = true
			if v.Correction.MappingVersion != "2.0.0-test" || v.Correction.PreviousMappingVersion != mapping.Version {
				t.Errorf("List(*): delivery %s correction %+v, want mapping %s -> 2.0.0-test", v.ID, *v.Correction, mapping.Version)
			}
			if got, want := v.Correction.String(), "correction, mapping "+mapping.Version+" -> 2.0.0-test"; got != want {
				t.Errorf("Correction.String() = %q, want %q", got, want)
			}
			shown, err := f.a.Operator.Show(ctx, tenant, v.ID, false)
			if err != nil || shown.Correction == nil || *shown.Correction != *v.Correction {
				t.Errorf("Show(%s) correction %+v, %v; want %+v", v.ID, shown.Correction, err, *v.Correction)
			}
		}
		if tenant == search.AllTenants && (len(marked) != 5 || len(views) <= 5) {
			t.Errorf("List(*): %d of %d deliveries marked corrections, want the 5 corrections (and not the originals)", len(marked), len(views))
		}
	}
}
