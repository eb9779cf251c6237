package replay_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestApplySkipsRefusedDestination: a record stored but not delivered to a
// destination where another tenant holds its source system (a dead letter
// refused when stored) gets no correction there either; the tenant that
// holds the source gets its corrections.
func TestApplySkipsRefusedDestination(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "replay.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := app.New(app.Config{Store: st, NoJobRunner: true, BacklogEvery: -1,
		Routes: []ingest.Route{{Name: "shared", Accepts: func(string, string) bool { return true }}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	f := &fixture{st: st, a: a}
	for i, tenant := range []string{"clinic-a", "clinic-b"} { // clinic-a stores the source first
		body, _ := example(t, "vitals/pre-dose-baseline.json", i)
		f.ingest(t, tenant, "vitals", body)
	}
	s := replay.New(replay.Config{Store: st, Engine: a.Engine, Ingest: a.Ingest, Map: heartRateDisplay,
		MappingVersion: "2.0.0-test", Destinations: []string{"shared"}})
	sum, _ := run(t, s, replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if sum.Changed != 2 || sum.Deliveries != 1 {
		t.Errorf("apply summary = %+v; want 2 changed, 1 correction sent", sum)
	}
	for _, tc := range []struct {
		tenant  string
		sent    int // deliveries with a payload
		refused int
	}{{"clinic-a", 2, 0}, {"clinic-b", 0, 1}} {
		items, err := st.Deliveries(ctx, store.DeliveryFilter{Tenant: tc.tenant, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		sent, refused := 0, 0
		for _, it := range items {
			switch {
			case it.Status == store.StatusDead && strings.HasPrefix(it.LastError, store.Refused):
				refused++
			case len(it.Payload) > 0:
				sent++
			}
		}
		if sent != tc.sent || refused != tc.refused {
			t.Errorf("%s: %d deliveries sent, %d refused; want %d, %d", tc.tenant, sent, refused, tc.sent, tc.refused)
		}
	}
}
