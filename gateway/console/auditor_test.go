package console

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestAuditSearchLogin: the form's interactions login and logout find the
// sign-ins and sign-outs, which are stored with DICOM subtypes (110122
// Login, 110123 Logout), and the export names them as the form does, not
// by the DICOM code (probe p39 F1).
func TestAuditSearchLogin(t *testing.T) {
	f := newFixture(t, nil)
	for _, in := range []string{"login", "login", "logout"} {
		sc := auditlog.NewScope(in, &auth.Principal{ClientID: "person:auditor@clinic.example"})
		if err := f.app.Audit.Append(sc, http.StatusOK); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		interaction, want string
	}{
		{"login", "AuditEvents 1 to 2 of 2,"},
		{"logout", "AuditEvents 1 to 1 of 1,"},
	} {
		t.Run(tc.interaction, func(t *testing.T) {
			_, page, _ := f.get(t, "/console/audit")
			token := csrf(t, page)
			_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {token}, "interaction": {tc.interaction}})
			loc := h.Get("Location")
			code, body, _ := f.get(t, loc)
			if code != http.StatusOK || !strings.Contains(body, tc.want) || !strings.Contains(body, "<td>"+tc.interaction+" (") {
				t.Fatalf("search by interaction %s = %d, want %q:\n%.3000s", tc.interaction, code, tc.want, body)
			}
			code, csvBody, _ := f.post(t, "/console/audit/export", url.Values{"csrf": {token}, "q": {strings.TrimPrefix(loc, "/console/audit?q=")},
				"format": {"csv"}})
			if code != http.StatusOK || !strings.Contains(csvBody, ","+tc.interaction+",") || strings.Contains(csvBody, ",1101") {
				t.Errorf("CSV export of interaction %s = %d, want it named so:\n%s", tc.interaction, code, csvBody)
			}
		})
	}
}

// TestRecordPageOwnResources: the source record's page lists the requests
// that touched the record's own resources, not every request about its
// patient (another record's ingest names the same Patient), says where the
// patient's trail is, and says when the newest-100 cap cut the list
// (probe p39 F4).
func TestRecordPageOwnResources(t *testing.T) {
	f := newFixture(t, nil)
	ingest := func(file string) string {
		doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", file))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.app.Ingest.Ingest(context.Background(), auditlog.NewScope("ingest", f.c.devScope), "assessment", doc, false, engine.Answer{}); err != nil {
			t.Fatal(err)
		}
		return lastEvent(t, f.st, "ingest")
	}
	own := ingest("phq9-moderate.json") // ASM-2026-0310-001
	other := ingest("gad7-mild.json")   // ASM-2026-0310-002, the same patient
	const path = "/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001"
	code, page, _ := f.get(t, path)
	if code != http.StatusOK || !strings.Contains(page, "/console/audit/events/"+own) {
		t.Fatalf("GET %s = %d, want the record's own ingest listed:\n%.3000s", path, code, page)
	}
	if strings.Contains(page, "/console/audit/events/"+other) {
		t.Errorf("GET %s lists another record's ingest (it names the same Patient)", path)
	}
	if !strings.Contains(page, "search the audit trail by the patient") || strings.Contains(page, "more are not shown") {
		t.Errorf("GET %s: want the patient's trail pointed to, and no cap reached:\n%.4000s", path, page)
	}
	// Each view of the page is an AuditEvent naming the record's
	// Provenance: past 100 of them, the page says the list was cut.
	for range 100 {
		if code, _, _ := f.get(t, path); code != http.StatusOK {
			t.Fatalf("GET %s = %d", path, code)
		}
	}
	if _, page, _ = f.get(t, path); !strings.Contains(page, "the newest 100 are shown; more are not shown") {
		t.Errorf("GET %s after 101 views does not say the list was cut:\n%.4000s", path, page)
	}
}

// TestAuditSearchDescription: the console search's own AuditEvent says
// how many matched in all and how many the page showed, in the API's
// words (probe p39 F8: "25 matches" when 27 matched).
func TestAuditSearchDescription(t *testing.T) {
	f := newFixture(t, nil)
	for range pageSize + 2 {
		if err := f.app.Audit.Append(auditlog.NewScope("login", &auth.Principal{ClientID: "person:auditor@clinic.example"}), http.StatusOK); err != nil {
			t.Fatal(err)
		}
	}
	_, page, _ := f.get(t, "/console/audit")
	_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {csrf(t, page)}, "interaction": {"login"}})
	for _, tc := range []struct{ page, want string }{
		{"1", "console AuditEvent search: 27 matches in all, 25 on this page"},
		{"2", "console AuditEvent search: 27 matches in all, 2 on this page"},
	} {
		if code, _, _ := f.get(t, h.Get("Location")+"&page="+tc.page); code != http.StatusOK {
			t.Fatalf("page %s = %d", tc.page, code)
		}
		got, err := f.app.Store.Read(context.Background(), "AuditEvent", lastEvent(t, f.st, ""))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(got.Body), tc.want) {
			t.Errorf("page %s: the search's AuditEvent %s, want %q", tc.page, got.Body, tc.want)
		}
	}
}

// TestDeliverySendOutcomeWords: an attempt the EHR answered with 500 or
// 422 is not labelled "failed (server)" or "refused (client)", which read
// as the gateway's fault or the clinic's: the words say it was the EHR's
// answer (probe p39 F8).
func TestDeliverySendOutcomeWords(t *testing.T) {
	f := newFixture(t, nil)
	for _, status := range []int{500, 422, 502} {
		sc := auditlog.NewScope("delivery-send", nil)
		sc.Description = "delivery k7q2xw4mbn3ra to ehr: attempt 1: not delivered"
		if err := f.app.Audit.Append(sc, status); err != nil {
			t.Fatal(err)
		}
	}
	_, page, _ := f.get(t, "/console/audit")
	_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {csrf(t, page)}, "interaction": {"delivery-send"}})
	_, body, _ := f.get(t, h.Get("Location"))
	for _, want := range []string{"the EHR answered 500 (its fault)", "the EHR refused it (422)", "no answer from the EHR (or it answered 502)"} {
		if !strings.Contains(body, want) {
			t.Errorf("the delivery-send rows lack %q", want)
		}
	}
	for _, not := range []string{">failed (server)</span>", ">refused (client)</span>"} {
		if strings.Contains(body, not) {
			t.Errorf("a delivery-send row reads %q", not)
		}
	}
}

// allTenantSession makes the fixture's browser an all-tenant auditor's,
// as a sign-in without a tenant claim does.
func allTenantSession(t *testing.T, f *fixture) {
	t.Helper()
	w := httptest.NewRecorder()
	f.c.sessions.create(w, &auth.Principal{ClientID: "person:auditor@clinic.example", Tenant: search.AllTenants,
		Scopes: auth.ParseScopes("system/*.rs " + auth.ScopeAuditor)})
	u, _ := url.Parse(f.srv.URL)
	f.cl.Jar.SetCookies(u, w.Result().Cookies())
}

// TestAllTenantReaderSharesFolded: an all-tenant request is stored whole
// (for all-tenant readers) and as each tenant's share; an all-tenant
// auditor sees each request once, in the audit search's page and the
// record page, and the search counts AuditEvents as AuditEvents (probe
// p39 F7).
func TestAllTenantReaderSharesFolded(t *testing.T) {
	f := newFixture(t, nil)
	doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	isc := auditlog.NewScope("ingest", f.c.devScope)
	isc.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	if _, err := f.app.Ingest.Ingest(context.Background(), isc, "assessment", doc, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	ingested := lastEvent(t, f.st, "ingest")
	allTenantSession(t, f)
	// An all-tenant auditor's look at the record: its AuditEvent whole
	// and the default tenant's share, of one request.
	const path = "/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001"
	if code, body, _ := f.get(t, path); code != http.StatusOK {
		t.Fatalf("GET %s = %d:\n%.2000s", path, code, body)
	}
	_, page, _ := f.get(t, "/console/audit")
	_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {csrf(t, page)}, "client": {"person:auditor@clinic.example"},
		"interaction": {"lineage"}})
	_, body, _ := f.get(t, h.Get("Location"))
	if !strings.Contains(body, "AuditEvents 1 to 2 of 2") || strings.Count(body, "<td><a href=\"/console/audit/events/") != 1 ||
		!strings.Contains(body, "1 tenant's share of a request shown is folded into it") {
		t.Errorf("the search of the record page's view: want 2 AuditEvents counted, 1 row, the share folded:\n%.5000s", body)
	}
	_, body, _ = f.get(t, path)
	if n := strings.Count(body, "<td>lineage</td><td>person:auditor@clinic.example</td>"); n != 1 {
		t.Errorf("the record page lists the earlier view %d times, want once:\n%.5000s", n, body)
	}
	if !strings.Contains(body, "/console/audit/events/"+ingested) {
		t.Errorf("the record page does not list the ingest")
	}
}

// TestAuditSearchClientRegistration: the form's interaction
// client-registration finds the changes of the registered clients the
// gateway recorded at start, which an all-tenant auditor sees (they are
// kept with the all-tenant AuditEvents).
func TestAuditSearchClientRegistration(t *testing.T) {
	f := newFixture(t, nil)
	if _, err := f.app.Audit.RecordClients(context.Background(), []auth.Registration{
		{ID: "ehr-a", Tenant: "clinic-a", Scopes: []string{"system/Patient.rs"}, KeyIDs: []string{"k1"}}}); err != nil {
		t.Fatal(err)
	}
	allTenantSession(t, f)
	_, page, _ := f.get(t, "/console/audit")
	_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {csrf(t, page)}, "interaction": {"client-registration"}})
	code, body, _ := f.get(t, h.Get("Location"))
	if code != http.StatusOK || !strings.Contains(body, "AuditEvents 1 to 1 of 1,") || !strings.Contains(body, "registered client added") {
		t.Fatalf("search by interaction client-registration = %d, want the client added:\n%.3000s", code, body)
	}
}
