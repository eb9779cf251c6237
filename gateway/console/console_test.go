package console

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// fixture is a development-mode console over a fresh SQLite database,
// with a browser-like client (cookies kept).
type fixture struct {
	srv  *httptest.Server
	c    *Console
	app  *app.App
	st   store.Store
	cl   *http.Client
	logs *bytes.Buffer
	db   string // the SQLite database's path
}

func newFixture(t testing.TB, settings *Settings) *fixture {
	t.Helper()
	return newFixtureApp(t, settings, app.Config{})
}

// newFixtureApp is newFixture with the application configured by acfg
// (its store and backlog sampling are the fixture's).
func newFixtureApp(t testing.TB, settings *Settings, acfg app.Config) *fixture {
	t.Helper()
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	acfg.Store, acfg.BacklogEvery = st, -1
	a, err := app.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	logs := &bytes.Buffer{}
	c, err := New(Config{App: a, Settings: settings, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(c) // Secure cookies need https outside loopback names
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	cl := srv.Client()
	cl.Jar = jar
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &fixture{srv: srv, c: c, app: a, st: st, cl: cl, logs: logs, db: db}
}

// get fetches a console path.
func (f *fixture) get(t testing.TB, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := f.cl.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

// post submits a form (csrf is added from the session's last page).
func (f *fixture) post(t testing.TB, path string, form url.Values) (int, string, http.Header) {
	t.Helper()
	resp, err := f.cl.PostForm(f.srv.URL+path, form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the CSRF token from a page.
func csrf(t testing.TB, page string) string {
	t.Helper()
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page")
	}
	return m[1]
}

// auditCount is the number of AuditEvents in the chain.
func (f *fixture) auditCount(t testing.TB) int {
	t.Helper()
	res, err := auditlog.Verify(context.Background(), f.st, f.c.now())
	if err != nil {
		t.Fatal(err)
	}
	return int(res.Records)
}

// TestBadInput: malformed search fields, an unknown record or request, a
// forged form and a stale session each get a readable message on the page
// (no stack trace, no internal error text), change nothing, and keep the
// patient identifier out of every address and log.
func TestBadInput(t *testing.T) {
	f := newFixture(t, nil)
	_, page, _ := f.get(t, "/console/audit")
	token := csrf(t, page)
	const phi = "MRN-SECRET-4711"

	code, body, _ := f.post(t, "/console/audit", url.Values{"csrf": {token}, "patient": {phi}, "from": {"yesterday"}, "outcome": {"9"}})
	if code != http.StatusBadRequest || !strings.Contains(body, "From: a date like") || !strings.Contains(body, "Outcome: choose one") {
		t.Errorf("malformed search = %d, want 400 naming the fields:\n%.2000s", code, body)
	}
	if !strings.Contains(body, `value="`+phi+`"`) {
		t.Errorf("the form does not keep what was typed")
	}

	code, _, h := f.post(t, "/console/audit", url.Values{"csrf": {token}, "patient": {phi}})
	loc := h.Get("Location")
	if code != http.StatusSeeOther || strings.Contains(loc, phi) || !strings.HasPrefix(loc, "/console/audit?q=") {
		t.Errorf("search = %d to %q, want 303 to an opaque search id", code, loc)
	}
	code, body, _ = f.get(t, loc)
	if code != http.StatusOK || !strings.Contains(body, "No patient has that identifier") {
		t.Errorf("search for an unknown patient = %d:\n%.2000s", code, body)
	}

	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/console/audit/events/no-such-event", 404, "no such request"},
		{"/console/audit?q=forgotten", 404, "no longer kept"},
		{"/console/records?source=serenity-clinic-emr&record=NOPE-1", 200, "has received no record"},
		{"/console/records?source=serenity-clinic-emr&record=NOPE-1&kind=pizza", 400, "choose one of the listed kinds"},
		{"/console/deliveries/12345", 404, "no such delivery"},
		{"/console/deliveries/abc", 404, "no such delivery"},
		{"/console/deliveries?status=lost", 400, "choose one of the listed statuses"},
		{"/console/nowhere", 404, "no such page"},
	} {
		code, body, _ := f.get(t, tc.path)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("GET %s = %d, want %d with %q:\n%.1500s", tc.path, code, tc.code, tc.want, body)
		}
		if strings.Contains(body, "goroutine") || strings.Contains(body, ".go:") {
			t.Errorf("GET %s shows internal detail", tc.path)
		}
	}

	before := f.auditCount(t)
	code, body, _ = f.post(t, "/console/replay", url.Values{"destination": {"ehr"}, "since": {"2026-01-01T00:00"}, "confirm": {"yes"}})
	if code != http.StatusForbidden || !strings.Contains(body, "form was refused") {
		t.Errorf("forged replay = %d:\n%.1500s", code, body)
	}
	if after := f.auditCount(t); after != before+1 {
		t.Errorf("a forged form left %d AuditEvents, want 1 (the refusal)", after-before)
	}
	if strings.Contains(f.logs.String(), phi) {
		t.Errorf("the patient identifier reached the log")
	}
}

// TestStaleSession: with sign-in configured, a GET without a session goes
// to the sign-in page and a POST from an ended session is refused with a
// readable message.
func TestStaleSession(t *testing.T) {
	f := newFixture(t, &Settings{Issuer: "https://login.example.org", ClientID: "kg", RedirectURL: "https://gw.example.org/console/callback"})
	code, _, h := f.get(t, "/console/audit")
	if code != http.StatusSeeOther || h.Get("Location") != "/console/login?next=%2Fconsole%2Faudit" {
		t.Errorf("GET without a session = %d to %q", code, h.Get("Location"))
	}
	f.cl.Jar.SetCookies(mustURL(t, f.srv.URL), []*http.Cookie{{Name: sessionCookie, Value: "ended-long-ago"}})
	code, body, _ := f.post(t, "/console/deliveries/1/retry", url.Values{"csrf": {"x"}})
	if code != http.StatusUnauthorized || !strings.Contains(body, "your session has ended") || !strings.Contains(body, "Sign in") {
		t.Errorf("POST with a stale session = %d:\n%.1500s", code, body)
	}
	code, body, h = f.get(t, "/console/login?next=https://evil.example/")
	if code != http.StatusOK || !strings.Contains(body, "/console/login/start?next=%2fconsole%2f") {
		t.Errorf("sign-in page with a foreign next = %d:\n%.1500s", code, body)
	}
	if csp := h.Get("Content-Security-Policy"); csp != ContentSecurityPolicy {
		t.Errorf("CSP = %q", csp)
	}
}

func mustURL(t testing.TB, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestNoInlineScriptOrStyle: the templates hold no script element with
// content, no event handler attribute and no style attribute or element,
// so the Content-Security-Policy holds without 'unsafe-inline'.
func TestNoInlineScriptOrStyle(t *testing.T) {
	bad := regexp.MustCompile(`(?i)<script[^>]*>[^<]|\son[a-z]+=|\sstyle=|<style`)
	files, _ := filepath.Glob("templates/*.html")
	if len(files) == 0 {
		t.Fatal("no templates")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := bad.Find(b); m != nil {
			t.Errorf("%s has inline script or style: %q", f, m)
		}
	}
}

// TestSearchAndExport: a search by patient identifier and a date range
// with times finds the request that stored the patient's record, and the
// search exports as CSV and as a searchset Bundle.
func TestSearchAndExport(t *testing.T) {
	f := newFixture(t, nil)
	doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", f.c.devScope)
	sc.TraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	if _, err := f.app.Ingest.Ingest(context.Background(), sc, "assessment", doc, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	_, page, _ := f.get(t, "/console/audit")
	token := csrf(t, page)
	today := f.c.now().UTC()
	_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {token}, "patient": {"MRN-TEST-000123"},
		"from": {today.Add(-time.Hour).Format("2006-01-02T15:04")}, "to": {today.Format("2006-01-02")}, "interaction": {"ingest"}})
	loc := h.Get("Location")
	code, body, _ := f.get(t, loc)
	if code != http.StatusOK || !strings.Contains(body, "AuditEvents 1 to 1 of 1,") || !strings.Contains(body, "/console/audit/events/") {
		t.Fatalf("search = %d:\n%.3000s", code, body)
	}
	q := strings.TrimPrefix(loc, "/console/audit?q=")
	code, csvBody, hdr := f.post(t, "/console/audit/export", url.Values{"csrf": {token}, "q": {q}, "format": {"csv"}})
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/csv") ||
		!strings.HasPrefix(csvBody, "recorded,auditEvent,") || strings.Count(csvBody, "\n") != 2 || !strings.Contains(csvBody, ",ingest,") {
		t.Errorf("CSV export = %d %q:\n%s", code, hdr.Get("Content-Type"), csvBody)
	}
	code, bundle, hdr := f.post(t, "/console/audit/export", url.Values{"csrf": {token}, "q": {q}, "format": {"bundle"}})
	var b struct {
		ResourceType, Type string
		Total              int
		Entry              []struct{ Resource struct{ ResourceType string } }
	}
	if err := json.Unmarshal([]byte(bundle), &b); err != nil || code != http.StatusOK || b.Type != "searchset" || b.Total != 1 ||
		len(b.Entry) != 1 || b.Entry[0].Resource.ResourceType != "AuditEvent" || !strings.Contains(hdr.Get("Content-Disposition"), "attachment") {
		t.Errorf("Bundle export = %d %v:\n%.500s", code, err, bundle)
	}
	// Its fullUrls are absolute, under the FHIR base, as the API's are
	// (Bundle.entry.fullUrl), and its self link names the search run.
	var urls struct {
		Link  []struct{ Relation, URL string }
		Entry []struct {
			FullURL  string
			Resource struct{ ID string }
		}
	}
	_ = json.Unmarshal([]byte(bundle), &urls)
	for _, e := range urls.Entry {
		if want := f.srv.URL + "/fhir/AuditEvent/" + e.Resource.ID; e.FullURL != want {
			t.Errorf("Bundle export: fullUrl %q, want %q", e.FullURL, want)
		}
	}
	if len(urls.Link) != 1 || urls.Link[0].Relation != "self" || !strings.HasPrefix(urls.Link[0].URL, f.srv.URL+"/fhir/AuditEvent?") ||
		!strings.Contains(urls.Link[0].URL, "subtype="+url.QueryEscape(audit.SystemGatewayInteraction+"|ingest")) || strings.Contains(urls.Link[0].URL, "MRN") {
		t.Errorf("Bundle export: links %+v, want a self link naming the search (patients by id)", urls.Link)
	}

	// The source record's page and a request's page disclose the record's
	// story: their AuditEvents name its patient (and the record), so the
	// patient's audit trail finds them.
	patient := sc.Patients()
	if len(patient) != 1 {
		t.Fatalf("the ingest named patients %v, want 1", patient)
	}
	for _, path := range []string{"/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001",
		"/console/audit/events/" + lastEvent(t, f.st, "ingest")} {
		if code, body, _ := f.get(t, path); code != http.StatusOK {
			t.Fatalf("GET %s = %d:\n%.1500s", path, code, body)
		}
		ev := lastEvent(t, f.st, "")
		got, err := f.app.Store.Read(context.Background(), "AuditEvent", ev)
		if err != nil {
			t.Fatal(err)
		}
		body := string(got.Body)
		if !strings.Contains(body, `"role":{"code":"1"`) || !strings.Contains(body, `"reference":"`+patient[0]+`"`) ||
			strings.Contains(body, "1 receipts") {
			t.Errorf("GET %s: AuditEvent %s does not name the patient %s", path, body, patient[0])
		}
		if strings.HasPrefix(path, "/console/records") && !strings.Contains(body, `"value":"ASM-2026-0310-001"`) {
			t.Errorf("GET %s: AuditEvent %s does not name the record", path, body)
		}
	}
}

// lastEvent is the id of the newest AuditEvent (of subtype, if set).
func lastEvent(t *testing.T, st store.Store, subtype string) string {
	t.Helper()
	id := ""
	err := st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		if subtype == "" || strings.Contains(string(e.Body), `"code":"`+subtype+`"`) {
			id = e.ID
		}
		return nil
	})
	if err != nil || id == "" {
		t.Fatalf("newest AuditEvent %q: %v", subtype, err)
	}
	return id
}

// TestConformancePage: the published profiles and value sets are listed
// with their JSON, and the playground links the profiles a mapped record
// claims to them.
func TestConformancePage(t *testing.T) {
	f := newFixture(t, nil)
	status, page, _ := f.get(t, "/console/conformance")
	if status != http.StatusOK || !strings.Contains(page, `id="kg-vital-signs"`) || !strings.Contains(page, "ValueSet") {
		t.Fatalf("conformance page = %d:\n%.500s", status, page)
	}
	_, form, _ := f.get(t, "/console/playground?example=examples/vitals/pre-dose-baseline.json")
	record := form[strings.Index(form, `name="record"`):]
	record = html.UnescapeString(record[strings.Index(record, ">")+1 : strings.Index(record, "</textarea>")])
	status, out, _ := f.post(t, "/console/playground", url.Values{"csrf": {csrf(t, form)}, "kind": {"vitals"}, "record": {record}})
	if status != http.StatusOK || !strings.Contains(out, `href="/console/conformance#kg-vital-signs"`) {
		t.Errorf("the playground does not link the kg-vital-signs profile (status %d)", status)
	}
}

// TestDeliveryReplayForm: the deliveries page's replay form, refused (a
// malformed, missing or future start time, a destination that names
// nothing), comes back (400) with what was typed and the error at its
// field, checked by the operator's rules as the API checks them; nothing
// is replayed. A valid one asks for the confirmation.
func TestDeliveryReplayForm(t *testing.T) {
	f := newFixture(t, nil)
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Payload: []byte(`{}`)}
	if err := f.app.Store.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	_, page, _ := f.get(t, "/console/deliveries")
	token := csrf(t, page)
	for _, tc := range []struct {
		name, dest, since string
		field, want       string // the field in error and what it says
		other             string // the field that was fine
	}{
		{"since a word", "ehr", "garbage", "rp-since", "Since: a date and time like", "rp-dest"},
		{"since missing", "ehr", "", "rp-since", "Since: a start time is needed", "rp-dest"},
		{"since in the future", "ehr", "2099-01-01T00:00", "rp-since", "the time is in the future", "rp-dest"},
		{"unknown destination", "nowhere", "2026-01-01T00:00", "rp-dest", "Destination: choose one of the listed destinations", "rp-since"},
	} {
		before := f.auditCount(t)
		code, body, _ := f.post(t, "/console/replay", url.Values{"csrf": {token}, "destination": {tc.dest}, "since": {tc.since}})
		if code != http.StatusBadRequest || !strings.Contains(body, `id="replay-errors"`) || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want 400 and the form again saying %q:\n%.3000s", tc.name, code, tc.want, body)
			continue
		}
		if !strings.Contains(body, `aria-describedby="`+tc.field+`-error"`) || strings.Contains(body, tc.other+`-error"`) {
			t.Errorf("%s: the error is not at %s only", tc.name, tc.field)
		}
		if tc.since != "" && !strings.Contains(body, `name="since" type="text" value="`+tc.since+`"`) &&
			!strings.Contains(body, `name="since" type="datetime-local" value="`+tc.since+`"`) {
			t.Errorf("%s: the form does not keep the start time typed", tc.name)
		}
		if strings.Contains(body, "Yes, replay") || strings.Contains(body, `<p class="status">`) /* the error page */ {
			t.Errorf("%s: not the deliveries page again", tc.name)
		}
		if after := f.auditCount(t); after != before+1 {
			t.Errorf("%s: %d AuditEvents, want 1", tc.name, after-before)
		}
	}
	// An RFC 3339 time, as the API and the CLI take it, is read too.
	code, body, _ := f.post(t, "/console/replay", url.Values{"csrf": {token}, "destination": {"ehr"}, "since": {"2026-01-01T00:42:00Z"}})
	if code != http.StatusOK || !strings.Contains(body, "Yes, replay") {
		t.Errorf("a valid replay = %d, want the confirmation:\n%.2000s", code, body)
	}
}

// TestPrincipalTenant: a person's tenant claim names the tenant they act
// for; none, every tenant (*) or a reserved tenant (beginning with *:
// the all-tenant AuditEvents' *all-tenants) is refused; without a tenant
// claim configured they act for every tenant.
func TestPrincipalTenant(t *testing.T) {
	for _, tc := range []struct {
		claim, tenant string
		want          string // the principal's tenant; "" refused
	}{
		{"org", "clinic-a", "clinic-a"},
		{"org", "", ""},
		{"org", "*", ""},
		{"org", "*all-tenants", ""},
		{"", "*all-tenants", "*"},
	} {
		st := &Settings{TenantClaim: tc.claim, RoleClaim: "roles", Auditors: []string{"auditor"}}
		p, err := st.principal(map[string]any{"sub": "ann", "org": tc.tenant, "roles": "auditor"})
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("tenant claim %q: principal of tenant %q, want refused", tc.tenant, p.Tenant)
		case tc.want != "" && (err != nil || p.Tenant != tc.want):
			t.Errorf("tenant claim %q (claim configured %q): %v, %v; want tenant %q", tc.tenant, tc.claim, p, err, tc.want)
		}
	}
}

// deliveryLinkRE finds a delivery's link on the deliveries page.
var deliveryLinkRE = regexp.MustCompile(`href="/console/deliveries/([^"/?]+)"`)

// TestDeliveryPublicIDs: the console shows and links a delivery by its
// public id, not the outbox row's number (one sequence over every
// tenant); the row's number, or a garbled id, is no delivery. A retry
// goes back to the delivery's page by the same id.
func TestDeliveryPublicIDs(t *testing.T) {
	f := newFixture(t, nil)
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Status: store.StatusDead, LastError: "422 from the EHR"}
	if err := f.app.Store.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	_, page, _ := f.get(t, "/console/deliveries")
	m := deliveryLinkRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no delivery linked on the deliveries page:\n%.3000s", page)
	}
	id := m[1]
	if _, err := strconv.ParseInt(id, 10, 64); err == nil || len(id) != 13 {
		t.Errorf("the delivery is linked as %q, want its public id (13 letters and digits), not a number", id)
	}
	code, body, _ := f.get(t, "/console/deliveries/"+id)
	if code != http.StatusOK || !strings.Contains(body, "Delivery "+id) {
		t.Fatalf("GET its page = %d, want 200 titled Delivery %s:\n%.2000s", code, id, body)
	}
	code, body, _ = f.get(t, "/console/deliveries/"+id+"/retry")
	if code != http.StatusOK {
		t.Fatalf("GET the retry confirmation = %d:\n%.2000s", code, body)
	}
	code, _, h := f.post(t, "/console/deliveries/"+id+"/retry", url.Values{"csrf": {csrf(t, body)}})
	if code != http.StatusSeeOther || h.Get("Location") != "/console/deliveries/"+id {
		t.Errorf("POST retry = %d to %q, want 303 to the delivery's page", code, h.Get("Location"))
	}
	for _, other := range []string{strconv.FormatInt(it.ID, 10), id + "a", strings.ToUpper(id)} {
		if code, body, _ := f.get(t, "/console/deliveries/"+other); code != http.StatusNotFound || !strings.Contains(body, "no such delivery") {
			t.Errorf("GET /console/deliveries/%s = %d, want 404 no such delivery", other, code)
		}
	}
}

// TestDiffPageLines: the comparison's diff has one line per JSON line: each
// line is a block of its own in <pre class="diff">, so no newline may sit
// between them (it would render as an empty line after every line).
func TestDiffPageLines(t *testing.T) {
	f := newFixture(t, nil)
	old, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	newer := strings.Replace(strings.Replace(string(old), `{"number": 9, "score": 0}`, `{"number": 9, "score": 3}`, 1), `"total": 11`, `"total": 14`, 1)
	_, form, _ := f.get(t, "/console/playground/diff")
	status, page, _ := f.post(t, "/console/playground/diff", url.Values{"csrf": {csrf(t, form)}, "kind": {"assessment"}, "old": {string(old)}, "new": {newer}})
	if status != http.StatusOK {
		t.Fatalf("compare = %d:\n%.2000s", status, page)
	}
	pres := regexp.MustCompile(`(?s)<pre class="diff"[^>]*>(.*?)</pre>`).FindAllStringSubmatch(page, -1)
	if len(pres) == 0 {
		t.Fatalf("no diff on the page:\n%.3000s", page)
	}
	for _, m := range pres {
		if n := strings.Count(m[1], `<span class="d`); n < 2 {
			t.Errorf("a diff of %d lines, want several", n)
		}
		if strings.Contains(m[1], "\n") {
			t.Errorf("a newline between the diff's lines (each is a block: an empty line after each):\n%.400q", m[1])
		}
	}
}

// TestDeliveryAnswerLabel: a dead letter's EHR answer is labelled for what
// it shows: summarised, with the number of texts left out, by default; as
// received only with ?answers=full.
func TestDeliveryAnswerLabel(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	const phi = "PHI-ECHO Sample Riley"
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Payload: []byte(`{}`)}
	if err := f.app.Store.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	if got, err := f.app.Store.Claim(ctx, "ehr", time.Now().Add(time.Second), time.Minute, 1); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v %v", got, err)
	}
	answer := `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","details":{"text":"` + phi +
		` rejected"},"diagnostics":"` + phi + `","expression":["Bundle.entry[0].resource.subject"]}]}`
	if err := f.app.Store.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 422, Outcome: []byte(answer)}, store.StatusDead, time.Time{}); err != nil {
		t.Fatal(err)
	}
	ids, err := f.app.Operator.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := "/console/deliveries/" + ids.Encode(it.ID)
	for _, tc := range []struct {
		name, query, want, not string
		phi                    bool
	}{
		{"summarised", "", "<summary>The EHR's answer, summarised: 2 texts or resources left out", "as received</summary>", false},
		{"in full", "?answers=full", "<summary>The EHR's answer as received</summary>", "summarised:", true},
	} {
		status, page, _ := f.get(t, path+tc.query)
		if status != http.StatusOK || !strings.Contains(page, tc.want) || strings.Contains(page, tc.not) {
			t.Errorf("%s: %d, want a page with %q and without %q:\n%.3000s", tc.name, status, tc.want, tc.not, page)
		}
		if strings.Contains(page, phi) != tc.phi {
			t.Errorf("%s: the EHR's texts shown %v, want %v", tc.name, !tc.phi, tc.phi)
		}
	}
}

// TestAuditSearchTimePrecision: "From" and "To (inclusive)" cover the whole
// day, minute or second typed, so a one-minute window (From = To) finds
// what was recorded in that minute (probe p8 F11).
func TestAuditSearchTimePrecision(t *testing.T) {
	f := newFixture(t, nil)
	doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", f.c.devScope)
	if _, err := f.app.Ingest.Ingest(context.Background(), sc, "assessment", doc, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	got, err := f.app.Store.Read(context.Background(), "AuditEvent", lastEvent(t, f.st, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	var ev struct{ Recorded time.Time }
	if err := json.Unmarshal(got.Body, &ev); err != nil {
		t.Fatal(err)
	}
	rec := ev.Recorded.UTC()
	for _, c := range []struct {
		name, from, to string
		want           bool
	}{
		{"same minute", rec.Format("2006-01-02T15:04"), rec.Format("2006-01-02T15:04"), true},
		{"to the minute", "", rec.Format("2006-01-02T15:04"), true},
		{"same second", rec.Format("2006-01-02T15:04:05"), rec.Format("2006-01-02T15:04:05"), true},
		{"same day", rec.Format("2006-01-02"), rec.Format("2006-01-02"), true},
		{"minute before", "", rec.Add(-time.Minute).Format("2006-01-02T15:04"), false},
		{"minute after", rec.Add(time.Minute).Format("2006-01-02T15:04"), "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, page, _ := f.get(t, "/console/audit")
			code, body, h := f.post(t, "/console/audit", url.Values{"csrf": {csrf(t, page)}, "from": {c.from}, "to": {c.to},
				"interaction": {"ingest"}})
			if code != http.StatusSeeOther {
				t.Fatalf("search from %q to %q = %d:\n%.2000s", c.from, c.to, code, body)
			}
			_, body, _ = f.get(t, h.Get("Location"))
			if found := strings.Contains(body, "/console/audit/events/"); found != c.want {
				t.Errorf("search from %q to %q (recorded %s) found a request = %v, want %v", c.from, c.to,
					rec.Format(time.RFC3339Nano), found, c.want)
			}
		})
	}
}

// TestDeliveryPageDisclosure: a delivery's page never shows the payload
// (the FHIR Bundle), so its AuditEvent never says the payload was
// disclosed; "Show them in full" discloses the EHR's answers (probe p8 F13).
func TestDeliveryPageDisclosure(t *testing.T) {
	f := newFixture(t, nil)
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Status: store.StatusDead, LastError: "422 from the EHR"}
	if err := f.app.Store.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	_, page, _ := f.get(t, "/console/deliveries")
	m := deliveryLinkRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no delivery linked on the deliveries page:\n%.3000s", page)
	}
	for _, c := range []struct{ query, want string }{
		{"", "; payload not disclosed"},
		{"?answers=full", "; the EHR's answers disclosed; payload not disclosed"},
	} {
		code, body, _ := f.get(t, "/console/deliveries/"+m[1]+c.query)
		if code != http.StatusOK || strings.Contains(body, `"resourceType": "Bundle"`) {
			t.Fatalf("GET the delivery%s = %d, want 200 without the payload:\n%.2000s", c.query, code, body)
		}
		got, err := f.app.Store.Read(context.Background(), "AuditEvent", lastEvent(t, f.st, "delivery-read"))
		if err != nil {
			t.Fatal(err)
		}
		var ev struct{ OutcomeDesc string }
		if err := json.Unmarshal(got.Body, &ev); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(ev.OutcomeDesc, c.want) {
			t.Errorf("GET the delivery%s: AuditEvent outcomeDesc %q, want it to end %q", c.query, ev.OutcomeDesc, c.want)
		}
	}
}

// TestChainPageBroken: on a broken chain the page does not call the last
// record verified the head, nor advise recording it; it names the head
// the database holds (probe p8 F15).
func TestChainPageBroken(t *testing.T) {
	f := newFixture(t, nil)
	for range 5 {
		f.get(t, "/console/deliveries") // audited page views: records of the chain
	}
	_, page, _ := f.get(t, "/console/audit/chain")
	token := csrf(t, page)
	if code, _, _ := f.post(t, "/console/audit/chain", url.Values{"csrf": {token}}); code != http.StatusSeeOther {
		t.Fatalf("verify = %d, want 303", code)
	}
	_, page, _ = f.get(t, "/console/audit/chain")
	if !strings.Contains(page, "<strong>Intact</strong>") || !strings.Contains(page, "<dt>Head</dt>") ||
		!strings.Contains(page, "Record the head's sequence number") {
		t.Fatalf("an intact chain's page does not show its head and the advice:\n%s", page)
	}
	// The head, given back as an anchor, is held; an anchor that is not
	// one is refused at its field, nothing verified.
	m := regexp.MustCompile(`<dt>Head</dt><dd>record (\d+), hash <code>([0-9a-f]{64})</code>`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no head on the page:\n%s", page)
	}
	head := m[1] + ":" + m[2]
	if code, _, _ := f.post(t, "/console/audit/chain", url.Values{"csrf": {token}, "anchors": {" " + head + "\r\n"}}); code != http.StatusSeeOther {
		t.Fatalf("verify with an anchor = %d, want 303", code)
	}
	_, page, _ = f.get(t, "/console/audit/chain")
	if !strings.Contains(page, "<strong>Intact</strong>") || !strings.Contains(page, "record "+m[1]+", hash <code>"+m[2]+"</code>: held") ||
		!strings.Contains(page, ">"+head+"</textarea>") {
		t.Fatalf("the head given as an anchor is not shown held (and kept in the field):\n%s", page)
	}
	for _, bad := range []string{"7", "3:" + strings.Repeat("A", 64), strings.Repeat(head+" ", maxAnchors+1)} {
		code, page, _ := f.post(t, "/console/audit/chain", url.Values{"csrf": {token}, "anchors": {head + "\n" + bad}})
		if code != http.StatusBadRequest || !strings.Contains(page, `id="c-anchors-error"`) || !strings.Contains(page, "Anchors") ||
			!strings.Contains(page, "The chain was not verified") {
			t.Errorf("anchors %q = %d, want 400 naming the field:\n%s", bad, code, page)
		}
	}
	raw, err := sql.Open("sqlite", "file:"+f.db+"?_pragma=busy_timeout(10000)") // the console writes meanwhile (its audit index)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE audit_chain SET hash = CASE WHEN hash LIKE '00%' THEN 'ff' ELSE '00' END || substr(hash, 3) WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := f.post(t, "/console/audit/chain", url.Values{"csrf": {token}, "anchors": {head}}); code != http.StatusSeeOther {
		t.Fatalf("verify = %d, want 303", code)
	}
	_, page, _ = f.get(t, "/console/audit/chain")
	for _, want := range []string{"Broken at record 3", "<dt>Last intact record</dt><dd>record 2,", "<dt>Head the database holds (not verified)</dt>",
		"A broken chain has no head to record",
		// The anchor is past the break, where the walk stopped: not
		// checked, not "cut off" (probe p39 F2).
		"record " + m[1] + ", hash <code>" + m[2] + "</code>: <strong>not checked: the chain is broken at record 3, before this anchor</strong>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the broken chain's page lacks %q", want)
		}
	}
	for _, unwanted := range []string{"<dt>Head</dt>", "Record the head's sequence number"} {
		if strings.Contains(page, unwanted) {
			t.Errorf("the broken chain's page shows %q:\n%s", unwanted, page)
		}
	}
}

// TestSmallTexts: counts read as English ("failed once", not "1 times"),
// and every page names an icon, so browsers do not ask for a
// /favicon.ico the gateway does not have (probe p8 F12).
func TestSmallTexts(t *testing.T) {
	f := newFixture(t, nil)
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Status: store.StatusDead, LastError: "422 from the EHR"}
	if err := f.app.Store.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+f.db+"?_pragma=busy_timeout(10000)") // the console writes meanwhile (its audit index)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`UPDATE outbox SET attempts = 1`); err != nil {
		t.Fatal(err)
	}
	_, page, _ := f.get(t, "/console/deliveries")
	m := deliveryLinkRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no delivery linked on the deliveries page:\n%.3000s", page)
	}
	_, body, _ := f.get(t, "/console/deliveries/"+m[1]+"/retry")
	if !strings.Contains(body, "It has failed once, last with") {
		t.Errorf("the retry confirmation of a delivery that failed once:\n%s", body)
	}
	for _, path := range []string{"/console/", "/console/audit", "/console/deliveries", "/console/nowhere"} {
		if _, body, _ := f.get(t, path); !strings.Contains(body, `<link rel="icon" href="data:,">`) {
			t.Errorf("GET %s names no icon", path)
		}
	}
}

// TestRecordPageInfusionOfSession: an infusion sent inside a session is
// found as kind infusion (an infusion and the session of that infusion are
// one record), as a nested assessment is found as kind assessment (probe
// p8 F10).
func TestRecordPageInfusionOfSession(t *testing.T) {
	f := newFixture(t, nil)
	doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", f.c.devScope)
	if _, err := f.app.Ingest.Ingest(context.Background(), sc, "session", doc, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ record, kind string }{
		{"INF-2026-0310-001", "infusion"},
		{"INF-2026-0310-001", "session"},
		{"INF-2026-0310-001", ""},
		{"ASM-2026-0310-005", "assessment"},
	} {
		code, body, _ := f.get(t, "/console/records?source=serenity-clinic-emr&record="+c.record+"&kind="+c.kind)
		if code != http.StatusOK || strings.Contains(body, "has received no record") || !strings.Contains(body, "resource versions produced") {
			t.Errorf("record %s of kind %q = %d, want the session's receipt:\n%.3000s", c.record, c.kind, code, body)
		}
	}
}

// heldWorker is a delivery worker whose destination "ehr" is on hold.
type heldWorker struct{ until time.Time }

func (w heldWorker) Holds() map[string]time.Time            { return map[string]time.Time{"ehr": w.until} }
func (heldWorker) Release(string) bool                      { return true }
func (heldWorker) CapabilityGaps() []operator.CapabilityGap { return nil }

// gapsWorker is a delivery worker whose capability check found gaps.
type gapsWorker struct{ gaps []operator.CapabilityGap }

func (gapsWorker) Holds() map[string]time.Time                { return nil }
func (gapsWorker) Release(string) bool                        { return false }
func (w gapsWorker) CapabilityGaps() []operator.CapabilityGap { return w.gaps }

// TestDeliveriesShowCapabilityGaps: the deliveries page tells an
// all-tenant operator what /readyz tells: each resource type a
// destination's CapabilityStatement does not support, and a capability
// check that failed, also for a destination with no delivery yet.
func TestDeliveriesShowCapabilityGaps(t *testing.T) {
	f := newFixtureApp(t, nil, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	if _, page, _ := f.get(t, "/console/deliveries"); strings.Contains(page, "Destination capabilities") {
		t.Errorf("capabilities shown without a worker:\n%s", page)
	}
	since := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	f.app.Operator.SetWorker(gapsWorker{gaps: []operator.CapabilityGap{
		{Destination: "ehr", Unsupported: []operator.UnsupportedType{
			{ResourceType: "DetectedIssue", MissingInteractions: []string{"create", "update"}},
			{ResourceType: "AdverseEvent", Listed: true, MissingInteractions: []string{"delete"}},
			{ResourceType: "Patient", Listed: true, MissingFlags: []string{"conditionalCreate"}},
			{ResourceType: "Observation", Listed: true, MissingInteractions: []string{"update"}, MissingFlags: []string{"conditionalUpdate"}}}},
		{Destination: "lab", CheckFailed: "metadata: http 503", CheckFailedSince: &since},
	}})
	_, page, _ := f.get(t, "/console/deliveries")
	for _, want := range []string{
		"Destination capabilities",
		"<strong>ehr</strong> does not support <strong>DetectedIssue</strong>: its CapabilityStatement does not list the type",
		"<strong>ehr</strong> does not support <strong>AdverseEvent</strong>: its CapabilityStatement lists the type without delete<",
		"<strong>ehr</strong> does not support <strong>Patient</strong>: its CapabilityStatement does not declare conditionalCreate true for it<",
		"<strong>ehr</strong> does not support <strong>Observation</strong>: its CapabilityStatement lists the type without update, and does not declare conditionalUpdate true for it<",
		"<strong>lab</strong>: its CapabilityStatement could not be read since 2026-12-06 08:00:00.000 UTC (metadata: http 503)",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the deliveries page lacks %q:\n%s", want, page)
		}
	}
}

// TestDeliveriesShowHold: the deliveries page says a destination is on
// hold, and until when, or not configured, as /readyz does (probe p10
// F14: the page said only "Ready" while nothing would be sent for ten
// minutes).
func TestDeliveriesShowHold(t *testing.T) {
	enqueue := func(f *fixture) {
		it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r", Version: "1"}
		if err := f.app.Store.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
			t.Fatal(err)
		}
	}
	f := newFixture(t, nil) // no destination configured
	enqueue(f)
	if _, page, _ := f.get(t, "/console/deliveries"); !strings.Contains(page, "not configured in this gateway") {
		t.Errorf("a destination not configured is not shown so:\n%s", page)
	}
	f = newFixtureApp(t, nil, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	enqueue(f)
	_, page, _ := f.get(t, "/console/deliveries")
	if strings.Contains(page, "on hold") || strings.Contains(page, "not configured") || !strings.Contains(page, "<td>yes</td>") {
		t.Errorf("a destination sending is shown otherwise:\n%s", page)
	}
	until := time.Date(2026, 12, 5, 13, 14, 7, 0, time.UTC)
	f.app.Operator.SetWorker(heldWorker{until: until})
	_, page, _ = f.get(t, "/console/deliveries")
	if !strings.Contains(page, "on hold until 2026-12-05 13:14:07.000 UTC") {
		t.Errorf("the hold is not shown:\n%s", page)
	}
}

// TestAuditSearchPagesSnapshot: the pages of a saved audit search are run
// at its first page's snapshot: each page view is itself an AuditEvent
// naming the patient, yet the total stays and no row shows twice (p16 F2).
func TestAuditSearchPagesSnapshot(t *testing.T) {
	f := newFixture(t, nil)
	doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.app.Ingest.Ingest(context.Background(), auditlog.NewScope("ingest", f.c.devScope), "assessment", doc, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	// Enough requests about the patient for three pages.
	for range 2*pageSize + 5 {
		if code, _, _ := f.get(t, "/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001"); code != http.StatusOK {
			t.Fatalf("record page = %d", code)
		}
	}
	_, page, _ := f.get(t, "/console/audit")
	_, _, h := f.post(t, "/console/audit", url.Values{"csrf": {csrf(t, page)}, "patient": {"MRN-TEST-000123"}})
	loc := h.Get("Location")
	total := regexp.MustCompile(`AuditEvents \d+ to \d+ of ([\d,]+)`)
	event := regexp.MustCompile(`/console/audit/events/([0-9a-f]+)`)
	seen := map[string]bool{}
	first := ""
	for p := 1; p <= 4; p++ {
		code, body, _ := f.get(t, fmt.Sprintf("%s&page=%d", loc, p))
		if code != http.StatusOK {
			t.Fatalf("page %d = %d", p, code)
		}
		m := total.FindStringSubmatch(body)
		if m == nil {
			break // past the last page
		}
		if first == "" {
			first = m[1]
		} else if m[1] != first {
			t.Errorf("page %d: total %s, want the first page's %s", p, m[1], first)
		}
		for _, e := range event.FindAllStringSubmatch(body, -1) {
			if seen[e[1]] {
				t.Errorf("page %d shows %s again", p, e[1])
			}
			seen[e[1]] = true
		}
	}
	if len(seen) < 2*pageSize {
		t.Errorf("%d rows over the pages, want the first page's total", len(seen))
	}
	// A page past the last says so, and where the matches are; it does not
	// say that nothing matches (p45).
	_, body, _ := f.get(t, loc+"&page=9")
	if !strings.Contains(body, "Page 9 is past the last: the search matches "+first+" AuditEvents") ||
		!strings.Contains(body, `href="`+loc+`"`) || strings.Contains(body, "No request matches") {
		t.Errorf("page 9 of %s matches:\n%s", first, body)
	}
}
