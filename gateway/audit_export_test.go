package gateway_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestAuditExportAPI: GET /admin/audit/export gives an all-tenant auditor
// the chain's slice with its links, which verify-export checks without
// the database; the export is audited itself (after the head it names, so
// the next export holds it); a tenant's auditor is refused, since the
// chain spans every tenant; bad parameters are 400 naming them (p39 F6).
func TestAuditExportAPI(t *testing.T) {
	h, _, tok := clientsServer(t, []auth.Client{
		{ID: "clinA", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
		{ID: "audAll", Tenant: search.AllTenants, Scopes: []string{auth.ScopeAuditor, "system/*.rs"}},
		{ID: "audA", Tenant: "clinic-a", Scopes: []string{auth.ScopeAuditor, "system/*.rs"}},
	})
	if rec := req(h, "POST", "/fhir/Patient", patientJSON, tok["clinA"]); rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	export := func() auditlog.ExportCheck {
		t.Helper()
		rec := req(h, "GET", "/admin/audit/export?since=2000-01-01T00:00:00Z", "", tok["audAll"])
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/x-ndjson" {
			t.Fatalf("export = %d %s %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
		}
		c, err := auditlog.VerifyExport(strings.NewReader(rec.Body.String()))
		if err != nil || !c.Intact || c.Records == 0 || c.FirstSeq != 1 || c.LastSeq != c.HeadSeq || c.Prev != "" {
			t.Fatalf("VerifyExport = %+v, %v, want intact, from record 1 to the head\n%s", c, err, rec.Body)
		}
		return c
	}
	first := export()
	second := export()
	if second.LastSeq <= first.HeadSeq {
		t.Errorf("second export ends at %d, want it past the first's head %d (the first export's AuditEvent)", second.LastSeq, first.HeadSeq)
	}
	if ev := auditSearch(t, h, tok["audAll"], "subtype=audit-export"); len(ev) < 2 {
		t.Errorf("AuditEvents of the exports = %d, want 2", len(ev))
	}
	// The export disclosed the clinic's patient (its create's AuditEvent
	// names it): the export's AuditEvent names the patient, in the whole
	// AuditEvent and in the clinic's share, which its auditor sees
	// (auditor review: it named no one).
	for _, tc := range []struct{ token, who string }{{"audAll", "the all-tenant auditor"}, {"audA", "the clinic's auditor"}} {
		ev := auditSearch(t, h, tok[tc.token], "subtype=audit-export")
		named := 0
		for _, e := range ev {
			if len(e.Patients) > 0 {
				named++
			}
		}
		if named == 0 {
			t.Errorf("%s sees no export AuditEvent naming the patient: %+v", tc.who, ev)
		}
	}

	assertIssue(t, req(h, "GET", "/admin/audit/export", "", tok["audA"]), http.StatusForbidden, "tenant-audit-export", "")
	// A period that has not ended (until later than now less the commit
	// slack): a record made just before until and committed after the
	// export read the head would miss this export and the next.
	soon := url.QueryEscape(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
	rec := req(h, "GET", "/admin/audit/export?until="+soon, "", tok["audAll"])
	assertIssue(t, rec, http.StatusBadRequest, "audit-export-period-open", "until")
	if !strings.Contains(rec.Body.String(), "can be exported from") {
		t.Errorf("export of an open period = %s, want when it can be exported", rec.Body)
	}
	// A date is its midnight UTC, as the CLI's --since and --until take
	// it (p45 F3): a past day exports, a day not yet ended is still open.
	if rec := req(h, "GET", "/admin/audit/export?since=2000-01-01&until=2000-01-02", "", tok["audAll"]); rec.Code != http.StatusOK {
		t.Errorf("export of a past day given as dates = %d %s, want 200", rec.Code, rec.Body)
	}
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	assertIssue(t, req(h, "GET", "/admin/audit/export?until="+tomorrow, "", tok["audAll"]), http.StatusBadRequest, "audit-export-period-open", "until")
	if rec := req(h, "GET", "/admin/audit/export?until=2026-12", "", tok["audAll"]); !strings.Contains(rec.Body.String(), "a date (2026-12-01, its midnight UTC) or a duration before now") {
		t.Errorf("export?until=2026-12 = %d %s, want the formats named", rec.Code, rec.Body)
	}
	for _, q := range []string{"since=yesterday", "until=2026-13-01T00:00:00Z", "until=2026-13-01", "since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z", "from=2026-01-01T00:00:00Z"} {
		if rec := req(h, "GET", "/admin/audit/export?"+q, "", tok["audAll"]); rec.Code != http.StatusBadRequest {
			t.Errorf("export?%s = %d %s, want 400", q, rec.Code, rec.Body)
		}
	}
}
