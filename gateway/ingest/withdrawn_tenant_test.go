package ingest_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
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

// TestWithdrawalOfRecordNeverStored: a withdrawal of a record the gateway
// holds no version of is stored, with a warning, and delivered nowhere
// (an EHR review: the EHR got a new Patient and resources entered in
// error for a record it never had); the version it withdraws, arriving
// after it, is refused as stale. A withdrawal of a stored record is
// delivered as before.
func TestWithdrawalOfRecordNeverStored(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	const vitals = `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 80`
	withdrawal := func(id string) string {
		return strings.Replace(rec(id, "2", "P-1", "", vitals), `"version": "2"}`,
			`"version": "2", "lastUpdated": "2026-03-02T16:00:00Z", "status": "entered-in-error"}`, 1)
	}
	warnings, err := g.ingestAnswer(t, "", withdrawal("V-9"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.HasPrefix(w, ingest.RuleWithdrawnNotStored+":") }) {
		t.Errorf("warnings %v, want %s", warnings, ingest.RuleWithdrawnNotStored)
	}
	if items := g.deliveries(t, "", "serenity-clinic-emr", "V-9"); len(items) != 0 {
		t.Errorf("%d deliveries of a withdrawal of a record never stored, want none", len(items))
	}
	v1 := strings.Replace(rec("V-9", "1", "P-1", "", vitals), `"version": "1"}`, `"version": "1", "lastUpdated": "2026-03-02T15:00:00Z"}`, 1)
	wantIssues(t, g.ingest("", mapping.KindVitals, v1), outcome.Conflict, ingest.RuleVersionStale, "/source/lastUpdated")

	if err := g.ingest("", mapping.KindVitals, rec("V-8", "1", "P-1", "", vitals)); err != nil {
		t.Fatal(err)
	}
	if warnings, err = g.ingestAnswer(t, "", withdrawal("V-8")); err != nil || len(warnings) != 0 {
		t.Errorf("withdrawal of a stored record: %v, warnings %v", err, warnings)
	}
	if items := g.deliveries(t, "", "serenity-clinic-emr", "V-8"); len(items) != 2 {
		t.Errorf("%d deliveries of a stored record and its withdrawal, want 2", len(items))
	}
}
