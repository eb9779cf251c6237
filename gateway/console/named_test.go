package console

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// signInAs gives f's browser a session of p (as a sign-in would) and
// returns its CSRF token.
func (f *fixture) signInAs(t *testing.T, p *auth.Principal) string {
	t.Helper()
	w := httptest.NewRecorder()
	sess := f.c.sessions.create(w, p)
	f.cl.Jar.SetCookies(mustURL(t, f.srv.URL), w.Result().Cookies())
	return sess.csrf
}

// ingestAs stores an example record as a client of tenant and returns
// the patient it names.
func (f *fixture) ingestAs(t *testing.T, tenant, kind, example string) string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", kind, example))
	if err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "emr-" + tenant, Tenant: tenant, Scopes: auth.ParseScopes(auth.ScopeIngest)})
	sc.TraceID = hex.EncodeToString([]byte(token())[:16])
	if _, err := f.app.Ingest.Ingest(context.Background(), sc, mapping.Kind(kind), doc, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	if len(sc.Patients()) != 1 {
		t.Fatalf("the ingest named patients %v, want 1", sc.Patients())
	}
	return sc.Patients()[0]
}

// namedEvent is an AuditEvent as these tests look at it.
type namedEvent struct {
	Desc       string
	Patients   []string // the entities of role Patient
	Identified []string // the entities named by identifier, system|value
}

// auditEvents are the stored AuditEvents of tenant (search.AllTenantsAudit:
// those kept for all-tenant readers) of an interaction, oldest first.
func (f *fixture) auditEvents(t *testing.T, tenant, subtype string) []namedEvent {
	t.Helper()
	q, err := search.Parse("AuditEvent", url.Values{"subtype": {subtype}, "_sort": {"_lastUpdated"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	q.Tenant = tenant
	page, err := f.st.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	var out []namedEvent
	for _, m := range page.Matches {
		var ev struct {
			OutcomeDesc string
			Entity      []struct {
				What struct {
					Reference  string
					Identifier struct{ System, Value string }
				}
				Role struct{ Code string }
			}
		}
		if err := json.Unmarshal(m.Body, &ev); err != nil {
			t.Fatal(err)
		}
		e := namedEvent{Desc: ev.OutcomeDesc}
		for _, en := range ev.Entity {
			switch {
			case en.Role.Code == "1" && strings.HasPrefix(en.What.Reference, "Patient/"):
				e.Patients = append(e.Patients, en.What.Reference)
			case en.What.Identifier.Value != "":
				e.Identified = append(e.Identified, en.What.Identifier.System+"|"+en.What.Identifier.Value)
			}
		}
		out = append(out, e)
	}
	return out
}

// last is the newest of evs (fails the test when there is none).
func last(t *testing.T, evs []namedEvent, what string) namedEvent {
	t.Helper()
	if len(evs) == 0 {
		t.Fatalf("no AuditEvent of %s", what)
	}
	return evs[len(evs)-1]
}

// TestDeliveriesPageNamesPatients: the deliveries page lists patients'
// deliveries (each one's record and clinic patient id); its AuditEvent
// names the patient of each delivery listed, as GET /admin/deliveries
// does, and an all-tenant operator's view leaves each tenant the share
// naming its own patients (probe p16 F13: it named nobody, and no tenant
// had a share).
func TestDeliveriesPageNamesPatients(t *testing.T) {
	f := newFixtureApp(t, nil, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	own := f.ingestAs(t, "", "assessment", "phq9-moderate.json")

	// Development mode: the deliveries listed, their patient.
	if code, body, _ := f.get(t, "/console/deliveries"); code != http.StatusOK {
		t.Fatalf("GET /console/deliveries = %d:\n%.2000s", code, body)
	}
	ev := last(t, f.auditEvents(t, "", "delivery-list"), "the page view")
	if !slices.Equal(ev.Patients, []string{own}) || !strings.HasPrefix(ev.Desc, "HTTP 200 OK: console deliveries: 1 delivery listed") {
		t.Errorf("the page view's AuditEvent names patients %v (%q), want [%s]", ev.Patients, ev.Desc, own)
	}

	// An all-tenant operator sees two tenants' deliveries: the whole record names both
	// patients, each tenant's share its own.
	other := f.ingestAs(t, "clinic-a", "assessment", "gad7-mild.json")
	if own == other {
		t.Fatalf("the two tenants' records name one patient %s", own)
	}
	f.signInAs(t, &auth.Principal{ClientID: "person:olga@example.org", Tenant: search.AllTenants, Scopes: auth.ParseScopes(auth.ScopeOperator)})
	if code, body, _ := f.get(t, "/console/deliveries"); code != http.StatusOK {
		t.Fatalf("GET /console/deliveries as an all-tenant operator = %d:\n%.2000s", code, body)
	}
	whole := last(t, f.auditEvents(t, search.AllTenantsAudit, "delivery-list"), "the all-tenant page view")
	if !slices.Contains(whole.Patients, own) || !slices.Contains(whole.Patients, other) || len(whole.Patients) != 2 {
		t.Errorf("the all-tenant page view names patients %v, want %s and %s", whole.Patients, own, other)
	}
	for _, c := range []struct{ tenant, patient, share string }{
		{"", own, "the share of the default tenant"},
		{"clinic-a", other, `the share of tenant "clinic-a"`},
	} {
		share := last(t, f.auditEvents(t, c.tenant, "delivery-list"), "tenant "+c.tenant+"'s share")
		if !slices.Equal(share.Patients, []string{c.patient}) || !strings.Contains(share.Desc, c.share) {
			t.Errorf("tenant %q's share names patients %v (%q), want [%s]", c.tenant, share.Patients, share.Desc, c.patient)
		}
	}
	// So does a delivery's page (checked here for the pages that show one
	// delivery: the delivery, its record and patient in the share).
	rows, err := f.app.Operator.List(context.Background(), search.AllTenants, store.DeliveryFilter{})
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	for _, v := range rows {
		if v.Tenant == "clinic-a" {
			id = v.ID
		}
	}
	for _, path := range []string{"/console/deliveries/" + id, "/console/deliveries/" + id + "/retry"} {
		if code, body, _ := f.get(t, path); code != http.StatusOK {
			t.Fatalf("GET %s = %d:\n%.2000s", path, code, body)
		}
		share := last(t, f.auditEvents(t, "clinic-a", "delivery-read"), "tenant clinic-a's share of "+path)
		if !slices.Equal(share.Patients, []string{other}) || !slices.ContainsFunc(share.Identified, func(s string) bool { return strings.HasSuffix(s, "|"+id) }) {
			t.Errorf("GET %s: tenant clinic-a's share names patients %v and %v, want [%s] and the delivery", path, share.Patients, share.Identified, other)
		}
	}
}

// TestRefusedRetryNamesDelivery: a retry refused for its form (no CSRF
// token, or another session's: possibly a forged, cross-site request) is
// audited naming the delivery, its source record and its patient, as the
// API's refused retry is, so the record's and the patient's trails show
// the attempt (probe p16 F7); nothing is retried. A path naming no
// delivery of the person's is still refused, naming nothing.
func TestRefusedRetryNamesDelivery(t *testing.T) {
	f := newFixtureApp(t, nil, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	patient := f.ingestAs(t, "", "assessment", "phq9-moderate.json")
	rows, err := f.app.Operator.List(context.Background(), "", store.DeliveryFilter{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("deliveries %v, %v; want 1", rows, err)
	}
	id := rows[0].ID
	_, page, _ := f.get(t, "/console/deliveries") // a session, and its token
	for _, c := range []struct {
		name, path, csrf string
		named            bool
	}{
		{"no token", "/console/deliveries/" + id + "/retry", "", true},
		{"another session's token", "/console/deliveries/" + id + "/retry", csrf(t, page) + "x", true},
		{"no such delivery", "/console/deliveries/aaaaaaaaaaaaa/retry", "", false},
	} {
		code, body, _ := f.post(t, c.path, url.Values{"csrf": {c.csrf}})
		if code != http.StatusForbidden || !strings.Contains(body, "form was refused") {
			t.Errorf("%s: %d, want 403 form refused:\n%.1500s", c.name, code, body)
		}
		ev := last(t, f.auditEvents(t, "", "delivery-retry"), c.name)
		named := slices.Equal(ev.Patients, []string{patient}) &&
			slices.ContainsFunc(ev.Identified, func(s string) bool { return strings.HasSuffix(s, "/delivery|"+id) }) &&
			slices.ContainsFunc(ev.Identified, func(s string) bool { return strings.HasSuffix(s, "|ASM-2026-0310-001") })
		if named != c.named || !strings.Contains(ev.Desc, "console-csrf") {
			t.Errorf("%s: the refusal's AuditEvent (%q) names patients %v and %v; want the delivery, its record and patient named: %v",
				c.name, ev.Desc, ev.Patients, ev.Identified, c.named)
		}
		if !c.named && (len(ev.Patients) > 0 || len(ev.Identified) > 0) {
			t.Errorf("%s: the refusal names %v %v", c.name, ev.Patients, ev.Identified)
		}
	}
	if v, err := f.app.Operator.Show(context.Background(), "", id, false); err != nil || v.Attempts != 0 || v.Status != rows[0].Status {
		t.Errorf("after the refusals the delivery is %+v (%v), want it unchanged", v, err)
	}
}

// TestAuditSearchPatientToken: a patient identifier the token search
// refuses (| alone, two |) is named at the form, like a malformed date,
// and the search is not run; one the search takes is searched (probe p16
// F10: the form passed it, and the results page was a bare 400 naming the
// FHIR parameter "identifier", the form lost).
func TestAuditSearchPatientToken(t *testing.T) {
	f := newFixture(t, nil)
	_, page, _ := f.get(t, "/console/audit")
	token := csrf(t, page)
	for _, c := range []struct {
		patient string
		ok      bool
	}{
		{"|", false},
		{" | ", false},
		{"a|b|c", false},
		{"||", false},
		{"MRN-TEST-000123", true},
		{"|MRN-TEST-000123", true},
		{"https://clinic.example.org/mrn|", true},
		{"a\\|b", true}, // a backslash is searched as itself (system a\, value b)
		{"a,b$c", true}, // escaped when searched: one value
	} {
		before := f.auditCount(t)
		code, body, h := f.post(t, "/console/audit", url.Values{"csrf": {token}, "patient": {c.patient}})
		if !c.ok {
			if code != http.StatusBadRequest || !strings.Contains(body, "The search was not run") ||
				!strings.Contains(body, "Patient identifier: a value, or system|value") || !strings.Contains(body, `id="f-patient" name="patient" value="`) {
				t.Errorf("patient %q: %d, want 400 and the form naming the field:\n%.2000s", c.patient, code, body)
			}
			if after := f.auditCount(t); after != before+1 {
				t.Errorf("patient %q: %d AuditEvents, want 1 (the refusal)", c.patient, after-before)
			}
			continue
		}
		if code != http.StatusSeeOther {
			t.Errorf("patient %q: %d, want 303 to the results:\n%.2000s", c.patient, code, body)
			continue
		}
		if code, body, _ := f.get(t, h.Get("Location")); code != http.StatusOK || !strings.Contains(body, "No patient has that identifier") {
			t.Errorf("patient %q: the results page = %d:\n%.2000s", c.patient, code, body)
		}
	}
}

// TestTimelineAttemptFate: each delivery attempt's line of a request's
// timeline says what became of that attempt (not delivered and sent
// again, delivered), never the delivery's status now, which its receipt
// shows once; a delivery's page says the same of each attempt (probe p16
// F8: a failed attempt's line read "Delivery ... is now done").
func TestTimelineAttemptFate(t *testing.T) {
	f := newFixtureApp(t, nil, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	ctx := context.Background()
	f.ingestAs(t, "", "assessment", "phq9-moderate.json")
	ingestEvent := lastEvent(t, f.st, "ingest")
	for _, a := range []struct {
		status int
		next   string
	}{{500, store.StatusPending}, {200, store.StatusDone}} {
		got, err := f.app.Store.Claim(ctx, "ehr", time.Now().Add(time.Second), time.Minute, 1)
		if err != nil || len(got) != 1 {
			t.Fatalf("Claim = %v %v", got, err)
		}
		at := &store.Attempt{ItemID: got[0].ID, N: got[0].Attempts + 1, At: time.Now(), HTTPStatus: a.status, Error: "http 500"}
		if a.status == 200 {
			at.Error = ""
		}
		if err := f.app.Store.Complete(ctx, at, a.next, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	code, page, _ := f.get(t, "/console/audit/events/"+ingestEvent)
	if code != http.StatusOK {
		t.Fatalf("the request page = %d:\n%.2000s", code, page)
	}
	lines := regexp.MustCompile(`(?s)<li class="ev ev-attempt">(.*?)</li>`).FindAllStringSubmatch(page, -1)
	if len(lines) != 2 {
		t.Fatalf("%d attempts on the timeline, want 2:\n%s", len(lines), page)
	}
	for i, want := range []string{"Not delivered; sent again (attempt 2).", "Delivered."} {
		if l := lines[i][1]; !strings.Contains(l, `<span class="fate">`+want+`</span>`) || strings.Contains(l, "is now") {
			t.Errorf("attempt %d's line, want %q and not the delivery's status now:\n%s", i+1, want, l)
		}
	}
	if !regexp.MustCompile(`delivery \w{13} to ehr: <span class="status s-done">done</span> after 2 attempts`).MatchString(page) {
		t.Errorf("the receipt does not show the delivery's status now:\n%s", page)
	}
	rows, err := f.app.Operator.List(ctx, "", store.DeliveryFilter{})
	if err != nil || len(rows) != 1 {
		t.Fatalf("deliveries %v, %v", rows, err)
	}
	_, page, _ = f.get(t, "/console/deliveries/"+rows[0].ID)
	for _, want := range []string{"after 0 ms. <span class=\"fate\">Not delivered; sent again (attempt 2).</span>", "<span class=\"fate\">Delivered.</span>"} {
		if !strings.Contains(page, want) {
			t.Errorf("the delivery's page lacks %q:\n%s", want, page)
		}
	}
}

// TestAttemptFate: what became of an attempt, by what followed it.
func TestAttemptFate(t *testing.T) {
	failed := operator.AttemptView{N: 1, HTTPStatus: 500, Error: "http 500"}
	interrupted := operator.AttemptView{N: 1, Error: "interrupted: the gateway stopped during this attempt, or could not record it; ..."}
	ok := operator.AttemptView{N: 2, HTTPStatus: 200}
	for _, c := range []struct {
		name string
		v    operator.View
		i    int
		want string
	}{
		{"failed, then another", operator.View{Status: store.StatusDone, History: []operator.AttemptView{failed, ok}}, 0, "Not delivered; sent again (attempt 2)."},
		{"the delivering one", operator.View{Status: store.StatusDone, History: []operator.AttemptView{failed, ok}}, 1, "Delivered."},
		{"interrupted, then another", operator.View{Status: store.StatusDone, History: []operator.AttemptView{interrupted, ok}}, 0,
			"Interrupted: the gateway stopped before the EHR's answer was recorded, so the EHR may have received the record; sent again (attempt 2)."},
		{"to be retried", operator.View{Status: store.StatusPending, History: []operator.AttemptView{failed}}, 0, "Not delivered, to be retried."},
		{"being sent again", operator.View{Status: store.StatusInFlight, History: []operator.AttemptView{failed}}, 0, "Not delivered; being sent again now."},
		{"a dead letter", operator.View{Status: store.StatusDead, History: []operator.AttemptView{failed}}, 0,
			"Not delivered: a dead letter, not sent again unless retried."},
		{"cancelled", operator.View{Status: store.StatusDead, LastError: operator.CancelledPrefix + "x", History: []operator.AttemptView{failed}}, 0,
			"Not delivered; the delivery was then cancelled by an operator."},
	} {
		if got := attemptFate(&c.v, c.i); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// TestPagesOfferWhatThePersonMay: the console offers only what it would
// do for the person (p17 F8): a clinic's operator sees no cross-tenant
// backlog figures or delivery replay and no chain verification; a person
// acting for every tenant is offered dry replays only; development mode
// and an all-tenant operator see the backlog and the replay.
func TestPagesOfferWhatThePersonMay(t *testing.T) {
	f := newFixture(t, nil)
	it := &store.OutboxItem{Destination: "ehr-shared", Tenant: "clinic-b", OrderKey: "k", Patient: "s|p", Kind: "session",
		Source: "s", RecordID: "r", Version: "1", Status: store.StatusPending}
	if err := f.app.Store.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	all := auth.ParseScopes(auth.ScopeOperator + " " + auth.ScopeAuditor + " system/*.rs")
	for _, tc := range []struct {
		name                        string
		p                           *auth.Principal // nil: development mode
		backlog, verify, applyOffer bool
	}{
		{"development mode", nil, true, true, true},
		{"a clinic's operator", &auth.Principal{ClientID: "person:ann", Tenant: "clinic-a", Scopes: all}, false, false, true},
		{"an all-tenant operator", &auth.Principal{ClientID: "person:olga", Tenant: search.AllTenants, Scopes: all}, true, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.p != nil {
				f.signInAs(t, tc.p)
			}
			_, deliveries, _ := f.get(t, "/console/deliveries")
			if got := strings.Contains(deliveries, `id="h-replay"`) && strings.Contains(deliveries, "ehr-shared"); got != tc.backlog {
				t.Errorf("deliveries page offers the replay and names ehr-shared: %v, want %v", got, tc.backlog)
			}
			_, chain, _ := f.get(t, "/console/audit/chain")
			if got := strings.Contains(chain, "Verify the chain now"); got != tc.verify {
				t.Errorf("chain page offers verification: %v, want %v", got, tc.verify)
			}
			_, replays, _ := f.get(t, "/console/replays")
			if got := strings.Contains(replays, `id="r-apply"`); got != tc.applyOffer {
				t.Errorf("replays page offers to apply: %v, want %v", got, tc.applyOffer)
			}
		})
	}
}
