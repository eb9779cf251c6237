package ingest_test

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestAdverseEventWithdrawnInTenant: a withdrawn adverse event is deleted
// in a named tenant too, whose AdverseEvent ids are its own; the
// withdrawal's DELETE named the mapping's id there and deleted nothing
// (found while testing withdrawals).
func TestAdverseEventWithdrawnInTenant(t *testing.T) {
	g := newGateway(t, app.Config{})
	body := aeBody("S-1", "2026-03-02T10:00:00-05:00")
	for _, tenant := range []string{"", "clinic-a", "clinic-b"} {
		if err := g.ingest(tenant, mapping.KindAdverseEvent, rec("E-1", "1", "P-1", "", body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tenant := range []string{"", "clinic-a"} {
		w := strings.Replace(rec("E-1", "2", "P-1", "", body), `"version": "2"}`, `"version": "2", "status": "entered-in-error"}`, 1)
		if err := g.ingest(tenant, mapping.KindAdverseEvent, w); err != nil {
			t.Fatal(err)
		}
		if n := g.count(t, tenant, "AdverseEvent", ""); n != 0 {
			t.Errorf("tenant %q: %d AdverseEvents after the withdrawal, want 0", tenant, n)
		}
	}
	if n := g.count(t, "clinic-b", "AdverseEvent", ""); n != 1 {
		t.Errorf("another tenant's event of the same record id: %d, want 1 (untouched)", n)
	}
}
