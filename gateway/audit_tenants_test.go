package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// tenantsTokenURL is the token endpoint of tenantsServer's auth config.
const tenantsTokenURL = "http://127.0.0.1/auth/token"

// tenantsServer is the gateway on a fresh SQLite database with an auth
// config of clients of two clinics (clinA: clinic-a, clinB: clinic-b) and
// an all-tenant operator (opAll, tenant *), and the access tokens of each
// (as the token endpoint issues them: signed with the gateway's secret).
func tenantsServer(t *testing.T) (http.Handler, store.Store, map[string]string) {
	t.Helper()
	return clientsServer(t, []auth.Client{
		{ID: "clinA", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
		{ID: "clinB", Tenant: "clinic-b", Scopes: []string{"system/*.cruds"}},
		{ID: "opAll", Tenant: search.AllTenants, Scopes: []string{auth.ScopeOperator, "system/*.rs"}},
	})
}

// clientsServer is the gateway on a fresh SQLite database with an auth
// config of clients (their JWKS filled in), and the "Authorization: Bearer"
// header of each client's access token, by id, granting all its scopes.
func clientsServer(t *testing.T, clients []auth.Client) (http.Handler, store.Store, map[string]string) {
	t.Helper()
	return clientsServerWith(t, clients, app.Config{})
}

// clientsServerWith is clientsServer with the application configured as
// acfg says (its store the server's own).
func clientsServerWith(t *testing.T, clients []auth.Client, acfg app.Config) (http.Handler, store.Store, map[string]string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwk, err := json.Marshal(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k1", Use: "sig", Algorithm: "ES384"})
	if err != nil {
		t.Fatal(err)
	}
	jwks := json.RawMessage(`{"keys":[` + string(jwk) + `]}`)
	secret := []byte("0123456789abcdef0123456789abcdef-tenants")
	clients = slices.Clone(clients)
	for i := range clients {
		clients[i].JWKS = jwks
	}
	as, err := auth.NewServer(auth.Config{TokenURL: tenantsTokenURL, Clients: clients, SigningSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, (&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, c := range clients {
		claims := struct {
			jwt.Claims
			Tenant string `json:"tenant"`
			Scope  string `json:"scope"`
		}{jwt.Claims{Issuer: tenantsTokenURL, Subject: c.ID, IssuedAt: jwt.NewNumericDate(time.Now()),
			Expiry: jwt.NewNumericDate(time.Now().Add(time.Hour)), ID: c.ID + "-token"}, c.Tenant, strings.Join(c.Scopes, " ")}
		tok, err := jwt.Signed(signer).Claims(claims).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		tokens[c.ID] = "Authorization: Bearer " + tok
	}
	st := tempSQLite(t, sqlite.Options{})
	acfg.Store = st
	h := newServer(t, acfg, gateway.Config{Auth: as, AuthTokenURL: tenantsTokenURL})
	return h, st, tokens
}

// auditSeen is an AuditEvent as a tenant's search shows it.
type auditSeen struct {
	ID, Client, Subtype, Site string
	Entities, Patients        []string
}

// auditSearch runs an AuditEvent search with a client's token and returns
// the events.
func auditSearch(t *testing.T, h http.Handler, token, query string) []auditSeen {
	t.Helper()
	rec := req(h, "GET", "/fhir/AuditEvent?"+query+"&_count=100", "", token)
	if rec.Code != 200 {
		t.Fatalf("GET AuditEvent?%s = %d %s", query, rec.Code, rec.Body)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ID      string
				Subtype []struct{ Code string }
				Source  struct{ Site string }
				Agent   []struct {
					Who struct {
						Identifier struct{ System, Value string }
					}
				}
				Entity []struct {
					What struct{ Reference string }
					Role struct{ Code string }
				}
			}
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	var out []auditSeen
	for _, e := range b.Entry {
		r := e.Resource
		s := auditSeen{ID: r.ID, Site: r.Source.Site}
		if len(r.Subtype) > 0 {
			s.Subtype = r.Subtype[0].Code
		}
		if len(r.Agent) > 0 {
			s.Client = r.Agent[0].Who.Identifier.Value
		}
		for _, en := range r.Entity {
			switch {
			case en.What.Reference == "":
			case en.Role.Code == "1" || strings.HasPrefix(en.What.Reference, "Patient/") && !strings.Contains(en.What.Reference, "/_history/"):
				s.Patients = append(s.Patients, en.What.Reference)
			default:
				s.Entities = append(s.Entities, en.What.Reference)
			}
		}
		out = append(out, s)
	}
	return out
}

// byClient keeps the events of client.
func byClient(evs []auditSeen, client string) []auditSeen {
	var out []auditSeen
	for _, e := range evs {
		if e.Client == client {
			out = append(out, e)
		}
	}
	return out
}

// TestAllTenantAuditShares: an all-tenant client's request leaves its
// whole AuditEvent where only all-tenant readers see it, and, for each
// tenant whose data it read or disclosed, that tenant's share (its own
// resources and patients only) in the tenant's own audit trail; the
// default tenant sees none of it, and the chain stays intact.
func TestAllTenantAuditShares(t *testing.T) {
	h, st, tok := tenantsServer(t)
	create := func(client, body string) string {
		t.Helper()
		rec := req(h, "POST", "/fhir/Patient", body, tok[client])
		if rec.Code != 201 {
			t.Fatalf("%s POST Patient = %d %s", client, rec.Code, rec.Body)
		}
		return decode(t, rec)["id"].(string)
	}
	pa := "Patient/" + create("clinA", `{"resourceType":"Patient","gender":"female"}`)
	pb := "Patient/" + create("clinB", `{"resourceType":"Patient","gender":"male"}`)

	// An all-tenant read of clinic-b's patient.
	if rec := req(h, "GET", "/fhir/"+pb, "", tok["opAll"]); rec.Code != 200 {
		t.Fatalf("opAll GET %s = %d %s", pb, rec.Code, rec.Body)
	}
	reads := byClient(auditSearch(t, h, tok["clinB"], "patient="+pb+"&subtype=read"), "opAll")
	if len(reads) != 1 || !slices.Equal(reads[0].Patients, []string{pb}) || !slices.Equal(reads[0].Entities, []string{pb + "/_history/1"}) {
		t.Errorf("clinic-b's AuditEvent?patient=%s shows opAll's reads %+v, want one naming %s only", pb, reads, pb)
	}
	if got := byClient(auditSearch(t, h, tok["clinA"], "agent:identifier=opAll"), "opAll"); len(got) != 0 {
		t.Errorf("clinic-a sees opAll's events %+v, want none (it read nothing of clinic-a's)", got)
	}
	all := byClient(auditSearch(t, h, tok["opAll"], "patient="+pb+"&subtype=read"), "opAll")
	if len(all) != 2 {
		t.Errorf("opAll's AuditEvent?patient=%s shows %+v, want its read's whole event and clinic-b's share", pb, all)
	}

	// An all-tenant search over both clinics: each sees its own part.
	if rec := req(h, "GET", "/fhir/Patient", "", tok["opAll"]); rec.Code != 200 {
		t.Fatalf("opAll GET Patient = %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct{ client, own, other string }{{"clinA", pa, pb}, {"clinB", pb, pa}} {
		var got []auditSeen // opAll's Patient search (not its AuditEvent searches)
		for _, e := range byClient(auditSearch(t, h, tok[tc.client], "subtype=search-type&agent:identifier=opAll"), "opAll") {
			if !slices.ContainsFunc(e.Entities, func(s string) bool { return strings.HasPrefix(s, "AuditEvent/") }) {
				got = append(got, e)
			}
		}
		if len(got) != 1 || !slices.Equal(got[0].Patients, []string{tc.own}) || !slices.Equal(got[0].Entities, []string{tc.own + "/_history/1"}) {
			t.Errorf("%s sees opAll's searches %+v, want one naming %s only", tc.client, got, tc.own)
		}
		if got := auditSearch(t, h, tok[tc.client], "entity="+tc.other); len(got) != 0 {
			t.Errorf("%s finds AuditEvent?entity=%s: %+v, want none", tc.client, tc.other, got)
		}
		got = byClient(auditSearch(t, h, tok[tc.client], "date=ge2000-01-01&agent:identifier=opAll"), "opAll")
		if len(got) == 0 {
			t.Errorf("%s finds no AuditEvent of opAll by date", tc.client)
		}
		for _, e := range got {
			if slices.Contains(e.Patients, tc.other) || e.Site != search.AllTenants {
				t.Errorf("%s finds, by date, opAll's event %+v, naming %s (another tenant's) or of a site other than %q", tc.client, e, tc.other, search.AllTenants)
			}
		}
	}

	// An all-tenant export of every Patient: its download is in each
	// clinic's trail, naming that clinic's patient only.
	rec := req(h, "GET", "/fhir/Patient/$export?_type=Patient", "", tok["opAll"], "Prefer: respond-async")
	if rec.Code != 202 {
		t.Fatalf("opAll Patient/$export = %d %s", rec.Code, rec.Body)
	}
	status := rec.Header().Get("Content-Location")
	u, err := url.Parse(status)
	if err != nil {
		t.Fatal(err)
	}
	var manifest struct{ Output []struct{ URL string } }
	for deadline := time.Now().Add(time.Minute); ; {
		rec := req(h, "GET", u.Path, "", tok["opAll"])
		if rec.Code == 200 {
			if err := json.Unmarshal(rec.Body.Bytes(), &manifest); err != nil {
				t.Fatal(err)
			}
			break
		}
		if rec.Code != 202 || time.Now().After(deadline) {
			t.Fatalf("export status = %d %s", rec.Code, rec.Body)
		}
		time.Sleep(time.Millisecond) // polling a background job, not timing the test
	}
	if len(manifest.Output) != 1 {
		t.Fatalf("export manifest = %+v, want one file", manifest)
	}
	fu, _ := url.Parse(manifest.Output[0].URL)
	if rec := req(h, "GET", fu.Path, "", tok["opAll"]); rec.Code != 200 {
		t.Fatalf("download = %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct{ client, own string }{{"clinA", pa}, {"clinB", pb}} {
		got := byClient(auditSearch(t, h, tok[tc.client], "subtype=job-download&patient="+tc.own), "opAll")
		if len(got) != 1 || !slices.Equal(got[0].Patients, []string{tc.own}) {
			t.Errorf("%s's AuditEvent?patient=%s&subtype=job-download = %+v, want one naming %s only", tc.client, tc.own, got, tc.own)
		}
	}
	if got := byClient(auditSearch(t, h, tok["opAll"], "subtype=job-download"), "opAll"); len(got) != 3 {
		t.Errorf("opAll sees %d job-download events, want 3 (the whole one and each clinic's share)", len(got))
	}

	// The default tenant's AuditEvents hold nothing of opAll's.
	q, err := search.Parse("AuditEvent", url.Values{"agent:identifier": {"opAll"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	q.Tenant = ""
	page, err := st.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Matches) != 0 {
		t.Errorf("the default tenant holds %d of opAll's AuditEvents, want none", len(page.Matches))
	}
	res, err := auditlog.Verify(context.Background(), st, time.Now())
	if err != nil || !res.Intact {
		t.Errorf("audit verify = %+v, %v, want intact", res, err)
	}
}

// TestAllTenantChartIsThePatientsTenants: another clinic may write a
// resource whose subject is a clinic-b patient's id (references are not
// resolved on write, and refusing ids that another tenant holds would tell
// that it holds them); an all-tenant reader's $everything and compartment
// search of that patient show the chart of clinic-b only, not the planted
// Observation (p5 F8). A plain all-tenant search still finds it.
func TestAllTenantChartIsThePatientsTenants(t *testing.T) {
	h, _, tok := tenantsServer(t)
	post := func(client, typ, body string) string {
		t.Helper()
		rec := req(h, "POST", "/fhir/"+typ, body, tok[client])
		if rec.Code != 201 {
			t.Fatalf("%s POST %s = %d %s", client, typ, rec.Code, rec.Body)
		}
		return decode(t, rec)["id"].(string)
	}
	pb := post("clinB", "Patient", `{"resourceType":"Patient","gender":"male"}`)
	own := post("clinB", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"own"},"subject":{"reference":"Patient/`+pb+`"}}`)
	planted := post("clinA", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"planted"},"subject":{"reference":"Patient/`+pb+`"}}`)
	ids := func(target string) []string {
		t.Helper()
		rec := req(h, "GET", target, "", tok["opAll"])
		if rec.Code != 200 {
			t.Fatalf("opAll GET %s = %d %s", target, rec.Code, rec.Body)
		}
		var out []string
		entries, _ := decode(t, rec)["entry"].([]any)
		for _, e := range entries {
			if r, ok := e.(map[string]any)["resource"].(map[string]any); ok && r["resourceType"] == "Observation" {
				out = append(out, r["id"].(string))
			}
		}
		return out
	}
	for _, target := range []string{"/fhir/Patient/" + pb + "/$everything", "/fhir/Patient/" + pb + "/Observation"} {
		if got := ids(target); !slices.Equal(got, []string{own}) {
			t.Errorf("opAll GET %s: Observations %v, want clinic-b's %s only (not clinic-a's %s)", target, got, own, planted)
		}
	}
	if got := ids("/fhir/Observation?subject=Patient/" + pb); len(got) != 2 {
		t.Errorf("opAll's plain search finds %v, want both", got)
	}
	if got := ids("/fhir/Patient/nobody/Observation"); len(got) != 0 {
		t.Errorf("opAll's compartment of a patient no tenant holds = %v, want nothing", got)
	}
}

// TestAllTenantReplayApply: an all-tenant operator, which reads every
// tenant and writes none, may run the mapping replay as a dry run but not
// apply it (403 tenant-required); a tenant's operator applies its own
// tenant's (p14 F8: the all-tenant client rewrote every tenant's records).
func TestAllTenantReplayApply(t *testing.T) {
	h, _, tok := clientsServer(t, []auth.Client{
		{ID: "opA", Tenant: "clinic-a", Scopes: []string{auth.ScopeOperator, auth.ScopeIngest}},
		{ID: "opAll", Tenant: search.AllTenants, Scopes: []string{auth.ScopeOperator, "system/*.rs"}},
	})
	if rec := req(h, "POST", "/ingest/session", string(example(t, "session/routine-ketamine-iv-session.json")), tok["opA"]); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		client, query string
		status        int
	}{
		{"opAll", "apply=true&reason=test", http.StatusForbidden},
		{"opAll", "apply=true&reason=test&tenant=clinic-a", http.StatusForbidden},
		{"opAll", "", http.StatusAccepted},
		{"opA", "apply=true&reason=test", http.StatusAccepted},
	} {
		rec := req(h, "POST", "/admin/replay?"+tc.query, "", tok[tc.client])
		if tc.status == http.StatusForbidden {
			assertIssue(t, rec, tc.status, "tenant-required", "apply")
		} else if rec.Code != tc.status {
			t.Errorf("%s POST /admin/replay?%s = %d %s, want %d", tc.client, tc.query, rec.Code, rec.Body, tc.status)
		}
	}
}

// TestRefusedDeliveryActionNamed: a retry or cancel of a delivery that the
// caller's scopes refuse (a clinic's ingest client, an auditor: separation
// of duties) leaves an AuditEvent naming the delivery, as every other
// answer does, so that "who tried to act on this delivery" finds it
// (auditor review).
func TestRefusedDeliveryActionNamed(t *testing.T) {
	h, _, tok := clientsServerWith(t, []auth.Client{
		{ID: "emr", Tenant: "clinic-a", Scopes: []string{"system/*.cruds", auth.ScopeIngest}},
		{ID: "compliance", Tenant: search.AllTenants, Scopes: []string{auth.ScopeAuditor, "system/*.rs"}},
	}, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	raw := example(t, "assessment/phq9-moderate.json")
	if rec := req(h, "POST", "/ingest/assessment", string(raw), tok["emr"]); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "GET", "/admin/deliveries", "", tok["compliance"])
	var list struct{ Deliveries []struct{ ID string } }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Deliveries) != 1 {
		t.Fatalf("deliveries = %d %s", rec.Code, rec.Body)
	}
	id := list.Deliveries[0].ID
	for _, tc := range []struct{ client, action string }{{"emr", "retry"}, {"compliance", "retry"}, {"compliance", "cancel?reason=x"}} {
		if rec := req(h, "POST", "/admin/deliveries/"+id+"/"+tc.action, "", tok[tc.client]); rec.Code != http.StatusForbidden {
			t.Fatalf("%s %s = %d %s, want 403", tc.client, tc.action, rec.Code, rec.Body)
		}
	}
	evs := auditSearch(t, h, tok["compliance"], "subtype=delivery-retry,delivery-cancel&entity:identifier="+
		url.QueryEscape(audit.SystemDelivery+"|"+id))
	subtypes := map[string]bool{} // the all-tenant auditor's (a whole AuditEvent and a clinic-a share each)
	for _, e := range byClient(evs, "compliance") {
		subtypes[e.Subtype] = true
	}
	if len(byClient(evs, "emr")) != 1 || !subtypes["delivery-retry"] || !subtypes["delivery-cancel"] {
		t.Fatalf("AuditEvents naming the delivery: %+v, want the 3 refusals", evs)
	}
	for _, e := range evs {
		if len(e.Patients) == 0 {
			t.Errorf("the refusal %s names no patient", e.ID)
		}
	}
}

// TestAllTenantAuditOfRefusedRequest: a request refused before it had a
// client (a token that is no token) is filed in the default tenant's
// trail, naming the Patient id it was sent; an all-tenant auditor's
// search that discloses it names that patient in its own tenant's share,
// and a Patient no tenant holds in none: the default tenant's share of it
// named a clinic's patient (an auditor's review).
func TestAllTenantAuditOfRefusedRequest(t *testing.T) {
	h, st, tok := tenantsServer(t)
	rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"female"}`, tok["clinA"])
	if rec.Code != 201 {
		t.Fatalf("POST Patient = %d %s", rec.Code, rec.Body)
	}
	pa := "Patient/" + decode(t, rec)["id"].(string)
	for _, target := range []string{pa, "Patient/never-held"} {
		if rec := req(h, "GET", "/fhir/"+target, "", "Authorization: Bearer garbage"); rec.Code != 401 {
			t.Fatalf("GET %s with a bad token = %d", target, rec.Code)
		}
	}
	for _, target := range []string{pa, "Patient/never-held"} {
		if got := auditSearch(t, h, tok["opAll"], "entity="+target+"&outcome=4"); len(got) == 0 {
			t.Fatalf("opAll finds no AuditEvent of the refused read of %s", target)
		}
	}
	// The default tenant's AuditEvents of opAll's searches name neither.
	q, err := search.Parse("AuditEvent", url.Values{"agent:identifier": {"opAll"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	q.Tenant = ""
	page, err := st.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range page.Matches {
		if strings.Contains(string(m.Body), pa) || strings.Contains(string(m.Body), "never-held") {
			t.Errorf("the default tenant's AuditEvent %s of opAll names %s or Patient/never-held: %s", m.ID, pa, m.Body)
		}
	}
	// Clinic-a's trail holds opAll's search that disclosed the attempt on its patient.
	got := byClient(auditSearch(t, h, tok["clinA"], "patient="+pa+"&subtype=search-type"), "opAll")
	if len(got) != 1 || !slices.Equal(got[0].Patients, []string{pa}) {
		t.Errorf("clinic-a's AuditEvent?patient=%s&subtype=search-type = %+v, want opAll's search naming %s", pa, got, pa)
	}
}
