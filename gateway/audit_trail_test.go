package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/console"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// exampleDoc is the example record at path under schemas/examples.
func exampleDoc(tb testing.TB, path string) []byte {
	tb.Helper()
	doc, err := fs.ReadFile(schemas.Examples(), "examples/"+path)
	if err != nil {
		tb.Fatal(err)
	}
	return doc
}

// auditServer is a gateway on a fresh SQLite database.
func auditServer(t *testing.T) (*Server, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// One tenant (development mode): clients may choose ids, as serve allows then.
	s := NewTestServer(t, app.Config{Store: st, Instance: "test-gw", UpdateCreate: true}, Config{RateLimit: -1},
		func(a *app.App) (*console.Console, error) { return console.New(console.Config{App: a}) })
	return s, st
}

// testServer builds the application and the edge over it.
func testServer(t testing.TB, acfg app.Config, cfg Config) *Server {
	return NewTestServer(t, acfg, cfg, nil)
}

// NewTestServer builds the application (started, closed when the test
// ends) and the edge over it, with the console withConsole builds (nil:
// none). Tests of package gateway_test use it too.
func NewTestServer(t testing.TB, acfg app.Config, cfg Config, withConsole func(*app.App) (*console.Console, error)) *Server {
	t.Helper()
	a, err := app.New(acfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	cfg.App = a
	if withConsole != nil {
		if cfg.Console, err = withConsole(a); err != nil {
			t.Fatal(err)
		}
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// chain returns the audit chain's entries.
func chain(t *testing.T, st store.Store) []audit.ChainEntry {
	t.Helper()
	var out []audit.ChainEntry
	if err := st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func send(h http.Handler, method, target, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/fhir+json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

const obsJSON = `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/p1"},"valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`

// TestEveryRouteAudited: every route has an audit mapping, and a request
// to every audited route (success and failure) leaves exactly one
// AuditEvent with the route's interaction, committed before the answer.
func TestEveryRouteAudited(t *testing.T) {
	s, st := auditServer(t)
	routes := map[string]bool{}
	for _, r := range s.echo.Routes() {
		key := r.Method + " " + r.Path
		if (strings.HasSuffix(r.Path, "/*") && !strings.HasPrefix(r.Path, "/console")) || r.Method == "echo_route_not_found" {
			continue // echo's not-found routes of a group
		}
		routes[key] = true
		if rt, ok := s.routes[key]; !ok || (!rt.console && (rt.interaction == "") != rt.exempt) || (rt.console && (rt.interaction != "" || rt.exempt)) {
			t.Errorf("route %s has no audit mapping in the route table (an interaction, exempt, or audited by the console)", key)
		}
	}
	put := `{"resourceType":"Patient","id":"p1","gender":"female"}`
	fpGender := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},` +
		`{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"male"}]}]}`
	session := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/p1"}}]}`
	cases := []struct {
		route          string // the table key
		method, target string
		body           string
		status         int
	}{
		{"PUT /fhir/:type/:id", "PUT", "/fhir/Patient/p1", put, 201},
		{"PUT /fhir/:type/:id", "PUT", "/fhir/Patient/p1", `{"resourceType":"Patient","id":"p2"}`, 400},
		{"POST /fhir/:type", "POST", "/fhir/Observation", obsJSON, 201},
		{"POST /fhir/:type", "POST", "/fhir/Observation", `{"resourceType":"Observation"}`, 400},
		{"POST /fhir/:type", "POST", "/fhir/AuditEvent", `{"resourceType":"AuditEvent"}`, 405},
		{"PUT /fhir/:type", "PUT", "/fhir/Patient?_id=p1", put, 200},
		{"GET /fhir/:type/:id", "GET", "/fhir/Patient/p1", "", 200},
		{"GET /fhir/:type/:id", "GET", "/fhir/Patient/nope", "", 404},
		{"GET /fhir/:type/:id/_history/:vid", "GET", "/fhir/Patient/p1/_history/1", "", 200},
		{"GET /fhir/:type/:id/_history", "GET", "/fhir/Patient/p1/_history", "", 200},
		{"GET /fhir/:type/_history", "GET", "/fhir/Patient/_history", "", 200},
		{"GET /fhir/_history", "GET", "/fhir/_history?_count=2", "", 200},
		{"GET /fhir/:type", "GET", "/fhir/Observation?subject=Patient/p1", "", 200},
		{"GET /fhir/:type", "GET", "/fhir/Observation?nonsense=1", "", 400},
		{"POST /fhir/:type/_search", "POST", "/fhir/Patient/_search", "", 200},
		{"POST /fhir", "POST", "/fhir", session, 200},
		{"POST /fhir/", "POST", "/fhir/", strings.Replace(session, "batch", "transaction", 1), 200},
		{"POST /fhir/$validate", "POST", "/fhir/$validate", put, 200},
		{"POST /fhir/:type/$validate", "POST", "/fhir/Patient/$validate", put, 200},
		{"POST /fhir/:type/:id/$validate", "POST", "/fhir/Patient/p1/$validate?mode=delete", "", 200},
		{"GET /fhir/metadata", "GET", "/fhir/metadata", "", 200},
		{"DELETE /fhir/:type/:id", "DELETE", "/fhir/Observation/none", "", 204},
		{"DELETE /fhir/:type/:id", "DELETE", "/fhir/AuditEvent/x", "", 405},
		{"POST /ingest/:kind", "POST", "/ingest/vitals?dryRun=true", `{}`, 400},
		{"POST /ingest/:kind", "POST", "/ingest/unknown", `{}`, 404},
		{"GET /admin/deliveries", "GET", "/admin/deliveries", "", 200},
		{"GET /admin/deliveries/:id", "GET", "/admin/deliveries/99", "", 404},
		{"POST /admin/deliveries/:id/retry", "POST", "/admin/deliveries/99/retry", "", 404},
		{"POST /admin/deliveries/:id/cancel", "POST", "/admin/deliveries/99/cancel?reason=x", "", 404},
		{"POST /admin/deliveries/replay", "POST", "/admin/deliveries/replay", "", 400},
		{"GET /admin/lineage", "GET", "/admin/lineage?resource=Patient/p1", "", 200},
		{"GET /admin/lineage", "GET", "/admin/lineage", "", 400},
		{"GET /admin/audit/verify", "GET", "/admin/audit/verify", "", 200},
		{"GET /admin/audit/export", "GET", "/admin/audit/export?since=2026-01-01T00:00:00Z", "", 200},
		{"GET /admin/audit/export", "GET", "/admin/audit/export?since=nope", "", 400},
		{"GET /admin/clients", "GET", "/admin/clients", "", 200},
		{"GET /fhir/:type/:id", "GET", "/fhir/CodeSystem/validation-rule", "", 200}, // a seeded resource
		{"unknown", "GET", "/no/such/endpoint", "", 404},
		{"GET /.well-known/smart-configuration", "GET", "/.well-known/smart-configuration", "", 404},
		{"GET /fhir/.well-known/smart-configuration", "GET", "/fhir/.well-known/smart-configuration", "", 404},
		{"POST /auth/token", "POST", "/auth/token", "", 404},
		{"PATCH /fhir/:type/:id", "PATCH", "/fhir/Patient/p1", fpGender, 200},
		{"PATCH /fhir/:type/:id", "PATCH", "/fhir/Patient/p1", `[{"op":"remove","path":"/id"}]`, 400},
		{"PATCH /fhir/:type", "PATCH", "/fhir/Patient?_id=p1", fpGender, 200},
		{"GET /fhir/:type/:id/:compartment", "GET", "/fhir/Patient/p1/Observation?code=x", "", 200},
		{"GET /fhir/:type/:id/:compartment", "GET", "/fhir/Patient/p1/Practitioner", "", 400},
		{"GET /fhir/:type/:id/$everything", "GET", "/fhir/Patient/p1/$everything?_count=2", "", 200},
		{"GET /fhir/:type/:id/$everything", "GET", "/fhir/Patient/nope/$everything", "", 404},
		{"POST /fhir/:type/:id/$everything", "POST", "/fhir/Patient/p1/$everything", `{"resourceType":"Parameters","parameter":[{"name":"_count","valueInteger":2}]}`, 200},
		{"POST /fhir/:type/:id/$everything", "POST", "/fhir/Patient/p1/$everything", `{"resourceType":"Patient"}`, 400},
		// HEAD is audited as the GET it stands for.
		{"HEAD /fhir/:type/:id", "HEAD", "/fhir/Patient/p1", "", 200},
		{"HEAD /fhir/:type/:id", "HEAD", "/fhir/Patient/nope", "", 404},
		{"HEAD /fhir/:type/:id/_history/:vid", "HEAD", "/fhir/Patient/p1/_history/1", "", 200},
		{"HEAD /fhir/:type/:id/_history", "HEAD", "/fhir/Patient/p1/_history", "", 200},
		{"HEAD /fhir/:type/_history", "HEAD", "/fhir/Patient/_history", "", 200},
		{"HEAD /fhir/_history", "HEAD", "/fhir/_history?_count=2", "", 200},
		{"HEAD /fhir/:type", "HEAD", "/fhir/Observation?subject=Patient/p1", "", 200},
		{"HEAD /fhir/metadata", "HEAD", "/fhir/metadata", "", 200},
		{"HEAD /fhir/:type/:id/:compartment", "HEAD", "/fhir/Patient/p1/Observation?code=x", "", 200},
		{"HEAD /fhir/:type/:id/$everything", "HEAD", "/fhir/Patient/p1/$everything?_count=2", "", 200},
		// Bulk data and jobs (bulk_test.go has their successes).
		{"GET /fhir/$export", "GET", "/fhir/$export", "", 400}, // no Prefer: respond-async
		{"GET /fhir/Patient/$export", "GET", "/fhir/Patient/$export", "", 400},
		{"GET /fhir/Group/:id/$export", "GET", "/fhir/Group/g1/$export", "", 400},
		{"POST /ingest/:kind/$import", "POST", "/ingest/session/$import", `{}`, 415},
		{"GET /jobs/:id", "GET", "/jobs/nope", "", 404},
		{"DELETE /jobs/:id", "DELETE", "/jobs/nope", "", 404},
		{"GET /jobs/:id/files/:n", "GET", "/jobs/nope/files/1", "", 404},
		{"HEAD /jobs/:id/files/:n", "HEAD", "/jobs/nope/files/1", "", 404},
		{"POST /admin/replay", "POST", "/admin/replay?kind=nonsense", "", 400},
		{"POST /admin/reindex", "POST", "/admin/reindex?type=Observations", "", 400},
		{"POST /admin/reindex", "POST", "/admin/reindex?dryRun=true", "", 202},
		// The console audits its pages as the API calls they stand for
		// (the interaction after the '=' of the target).
		{"GET /console/*", "GET", "/console/deliveries#=delivery-list", "", 200},
		{"GET /console/*", "GET", "/console/audit/events/nope#=lineage", "", 404},
		{"GET /console/*", "GET", "/console/no/such/page#=unknown-endpoint", "", 404},
		// The router answers OPTIONS of a served path (an auditor's
		// review: filed as unknown-endpoint); of another path, 404.
		{"OPTIONS", "OPTIONS", "/fhir/Patient#=options", "", 204},
		{"OPTIONS", "OPTIONS", "/fhir/Patient/p1#=options", "", 204},
		{"OPTIONS", "OPTIONS", "/no/such/path#=unknown-endpoint", "", 404},
		{"POST /console/*", "POST", "/console/playground#=ingest", "kind=session", 403}, // no CSRF token
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		target, consoleWant, _ := strings.Cut(tc.target, "#=")
		t.Run(tc.method+" "+target, func(t *testing.T) {
			before := len(chain(t, st))
			rec := send(s, tc.method, target, tc.body)
			if rec.Code != tc.status {
				t.Fatalf("%s %s = %d, want %d: %s", tc.method, tc.target, rec.Code, tc.status, rec.Body)
			}
			entries := chain(t, st)
			if got := len(entries) - before; got != 1 {
				t.Fatalf("%s %s left %d AuditEvents, want 1", tc.method, tc.target, got)
			}
			var ev map[string]any
			if err := json.Unmarshal(entries[len(entries)-1].Body, &ev); err != nil {
				t.Fatal(err)
			}
			want := "unknown-endpoint"
			if tc.route == "OPTIONS" {
				want = consoleWant
			}
			if rt := s.routes[tc.route]; rt != nil {
				want = rt.interaction
				if rt.console {
					want = consoleWant
				}
			}
			if tc.route == "POST /fhir" && strings.Contains(tc.body, `"batch"`) {
				want = "batch"
			}
			if want == "login" {
				want = "110122" // DICOM Login, under type 110114 User Authentication
			}
			sub := ev["subtype"].([]any)[0].(map[string]any)
			if sub["code"] != want {
				t.Errorf("AuditEvent subtype = %v, want %s", sub["code"], want)
			}
			wantOutcome := map[bool]string{true: "0", false: "4"}[tc.status < 400]
			if ev["outcome"] != wantOutcome {
				t.Errorf("AuditEvent outcome = %v, want %s", ev["outcome"], wantOutcome)
			}
			if rid := rec.Header().Get("X-Request-Id"); rid == "" || !strings.Contains(string(entries[len(entries)-1].Body), rid) {
				t.Errorf("AuditEvent does not carry the request id %q", rid)
			}
			// The AuditEvent is a valid R4 resource.
			if err := s.app.Engine.Validator().Structure(entries[len(entries)-1].Body, "AuditEvent"); err != nil {
				t.Errorf("AuditEvent is not valid R4: %v", err)
			}
		})
		covered[tc.route] = true
	}
	for r := range routes {
		if (s.routes[r].interaction != "" || s.routes[r].console) && !covered[r] && r != "GET /console" {
			t.Errorf("route %s is audited but no case here exercises it", r)
		}
	}
	// Probes, and console pages that show no data of the gateway (a
	// redirect, a static file, an empty form), leave no AuditEvent.
	for _, probe := range []string{"/healthz", "/readyz", "/console", "/console/static/console.css", "/console/playground"} {
		before := len(chain(t, st))
		send(s, "GET", probe, "")
		if n := len(chain(t, st)) - before; n != 0 {
			t.Errorf("probe %s left %d AuditEvents, want 0", probe, n)
		}
	}
	res, err := auditlog.Verify(context.Background(), st, time.Now())
	if err != nil || !res.Intact {
		t.Fatalf("VerifyAudit = %+v, %v", res, err)
	}
}

// TestAuditEventsReadOnly: clients cannot write AuditEvents, directly or
// in a Bundle, and nothing of such a transaction is written.
func TestAuditEventsReadOnly(t *testing.T) {
	s, _ := auditServer(t)
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[
	 {"fullUrl":"urn:uuid:0b8a1c52-7a0c-4d33-9f4e-9d1b2f8f6a11","resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}},
	 {"resource":{"resourceType":"AuditEvent","id":"x","type":{"code":"rest"},"recorded":"2026-01-01T00:00:00Z",
	   "agent":[{"requestor":true,"who":{"display":"me"}}],"source":{"observer":{"display":"me"}}},"request":{"method":"PUT","url":"AuditEvent/x"}}]}`
	if rec := send(s, "POST", "/fhir", tx); rec.Code != http.StatusMethodNotAllowed || !strings.Contains(rec.Body.String(), "audit-read-only") {
		t.Errorf("transaction writing an AuditEvent = %d %s, want 405 audit-read-only", rec.Code, rec.Body)
	}
	rec := send(s, "GET", "/fhir/Patient?_summary=count&_total=accurate", "")
	if !strings.Contains(rec.Body.String(), `"total":0`) {
		t.Errorf("the rejected transaction wrote data: %s", rec.Body)
	}
}

// TestGatewayProvenanceReadOnly: the Provenance the gateway writes (of a
// native record, of a client's Bundle) cannot be changed, deleted or
// forged by a client, directly or in a Bundle, and nothing of such a
// transaction is written; a client's own Provenance stays writable; the
// lineage believes only the gateway's.
func TestGatewayProvenanceReadOnly(t *testing.T) {
	s, st := auditServer(t)
	dec := func(rec *httptest.ResponseRecorder) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
			t.Fatalf("response is not JSON: %v: %s", err, rec.Body)
		}
		return m
	}
	record := exampleDoc(t, "assessment/phq9-moderate.json")
	if rec := send(s, "POST", "/ingest/assessment", string(record)); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	if rec := send(s, "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":`+obsJSON+
		`,"request":{"method":"POST","url":"Observation"}}]}`); rec.Code != http.StatusOK {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	var recID, execID string
	var recDoc map[string]any
	for _, e := range dec(send(s, "GET", "/fhir/Provenance", ""))["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		if id := r["id"].(string); strings.HasPrefix(id, "rec-") {
			recID, recDoc = id, r
		} else {
			execID = id
		}
	}
	if recID == "" || execID == "" {
		t.Fatalf("Provenance of the record %q and of the Bundle %q", recID, execID)
	}
	target := recDoc["target"].([]any)[1].(map[string]any)["reference"].(string) // an Observation
	target = strings.Split(target, "/_history/")[0]
	receipts := func(q string) int {
		t.Helper()
		rec := send(s, "GET", "/admin/lineage?"+q, "")
		if rec.Code != http.StatusOK {
			return 0
		}
		return len(dec(rec)["receipts"].([]any))
	}
	const recordQ = "source=serenity-clinic-emr&record=ASM-2026-0310-001"
	if n := receipts(recordQ); n != 1 {
		t.Fatalf("lineage of the record: %d receipts, want 1", n)
	}
	js := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	with := func(doc map[string]any, key string, v any) map[string]any {
		out := map[string]any{}
		for k, x := range doc {
			out[k] = x
		}
		if v == nil {
			delete(out, key)
		} else {
			out[key] = v
		}
		return out
	}
	renamed := with(recDoc, "agent", []any{map[string]any{"type": recDoc["agent"].([]any)[0].(map[string]any)["type"],
		"who": map[string]any{"display": "Forged Client"}}})
	copied := with(with(recDoc, "id", nil), "meta", nil)
	copied["entity"] = []any{map[string]any{"role": "source", "what": map[string]any{"identifier": map[string]any{
		"system": "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/assessment-record", "value": "FAKE-REC-1"}}}}
	mine := map[string]any{"resourceType": "Provenance", "target": []any{map[string]any{"reference": target}},
		"recorded": "2026-01-01T00:00:00Z", "agent": []any{map[string]any{"who": map[string]any{"display": "Dr. Example"}}}}
	bundle := func(typ string, entries ...string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
	}
	patient := `{"resource":{"resourceType":"Patient","gender":"male"},"request":{"method":"POST","url":"Patient"}}`
	patients := func() string {
		return fmt.Sprint(dec(send(s, "GET", "/fhir/Patient?_summary=count", ""))["total"])
	}
	before := patients()
	for _, tc := range []struct {
		name, method, target, body string
		status                     int
		rule                       string
	}{
		{"delete a record's", "DELETE", "/fhir/Provenance/" + recID, "", 405, "provenance-read-only"},
		{"rename a record's agent", "PUT", "/fhir/Provenance/" + recID, js(renamed), 405, "provenance-read-only"},
		{"delete a Bundle's", "DELETE", "/fhir/Provenance/" + execID, "", 405, "provenance-read-only"},
		{"replace a Bundle's", "PUT", "/fhir/Provenance/" + execID, js(with(mine, "id", execID)), 405, "provenance-read-only"},
		{"create at a reserved id", "PUT", "/fhir/Provenance/rec-00000000000000000000000000forged",
			js(with(mine, "id", "rec-00000000000000000000000000forged")), 405, "provenance-read-only"},
		{"post a copy", "POST", "/fhir/Provenance", js(copied), 403, "provenance-agent-reserved"},
		{"transaction deleting one", "POST", "/fhir", bundle("transaction", patient,
			`{"request":{"method":"DELETE","url":"Provenance/`+recID+`"}}`), 405, "provenance-read-only"},
		{"transaction posting a copy", "POST", "/fhir", bundle("transaction", patient,
			`{"resource":`+js(copied)+`,"request":{"method":"POST","url":"Provenance"}}`), 403, "provenance-agent-reserved"},
		{"transaction updating a Bundle's", "POST", "/fhir", bundle("transaction", patient,
			`{"resource":`+js(with(mine, "id", execID))+`,"request":{"method":"PUT","url":"Provenance/`+execID+`"}}`), 405, "provenance-read-only"},
	} {
		rec := send(s, tc.method, tc.target, tc.body)
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.rule) {
			t.Errorf("%s: %s %s = %d %s, want %d %s", tc.name, tc.method, tc.target, rec.Code, rec.Body, tc.status, tc.rule)
		}
	}
	// The reason fits the case: a Bundle's Provenance has no reserved id
	// (p45 F2), a write at a reserved id is told so.
	if body := send(s, "DELETE", "/fhir/Provenance/"+execID, "").Body.String(); !strings.Contains(body, "names the gateway's agents") || strings.Contains(body, "reserved") {
		t.Errorf("delete a Bundle's Provenance: %s, want the reason that it is the gateway's record, and no reserved id", body)
	}
	if body := send(s, "PUT", "/fhir/Provenance/rec-00000000000000000000000000forged", js(with(mine, "id", "rec-00000000000000000000000000forged"))).Body.String(); !strings.Contains(body, "ids beginning rec- are reserved") {
		t.Errorf("create at a reserved id: %s, want the reason that the id is reserved", body)
	}
	patch := func(target, ops string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("PATCH", target, strings.NewReader(ops))
		r.Header.Set("Content-Type", "application/json-patch+json")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		return rec
	}
	if rec := patch("/fhir/Provenance/"+recID, `[{"op":"remove","path":"/agent/2"}]`); rec.Code != 405 || !strings.Contains(rec.Body.String(), "provenance-read-only") {
		t.Errorf("PATCH a record's Provenance = %d %s, want 405 provenance-read-only", rec.Code, rec.Body)
	}
	rec := send(s, "POST", "/fhir", bundle("batch", `{"request":{"method":"DELETE","url":"Provenance/`+execID+`"}}`))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status":"405`) {
		t.Errorf("batch deleting a Bundle's Provenance = %d %s, want its entry 405", rec.Code, rec.Body)
	}
	if got := patients(); got != before {
		t.Errorf("refused transactions wrote: %s Patients, want %s", got, before)
	}

	// A client's own Provenance: created, changed and deleted as before,
	// but it may not take the gateway's agents.
	rec = send(s, "POST", "/fhir/Provenance", js(mine))
	if rec.Code != http.StatusCreated {
		t.Fatalf("POST a client's Provenance = %d %s", rec.Code, rec.Body)
	}
	id := dec(rec)["id"].(string)
	if rec := send(s, "PUT", "/fhir/Provenance/"+id, js(with(mine, "id", id))); rec.Code != http.StatusOK {
		t.Errorf("PUT a client's Provenance = %d %s", rec.Code, rec.Body)
	}
	if rec := patch("/fhir/Provenance/"+id, `[{"op":"add","path":"/agent/-","value":{"who":{"identifier":{"system":"https://ketamine-gateway.org/fhir/sid/client","value":"x"}}}}]`); rec.Code != 403 || !strings.Contains(rec.Body.String(), "provenance-agent-reserved") {
		t.Errorf("PATCH the gateway's agent into a client's Provenance = %d %s, want 403 provenance-agent-reserved", rec.Code, rec.Body)
	}
	if n := receipts("resource=" + target); n != 1 {
		t.Errorf("lineage of %s: %d receipts, want only the gateway's", target, n)
	}
	if rec := send(s, "DELETE", "/fhir/Provenance/"+id, ""); rec.Code != http.StatusNoContent {
		t.Errorf("DELETE a client's Provenance = %d %s", rec.Code, rec.Body)
	}

	// A copy an older build let a client write under another id is not a
	// receipt.
	err := st.Write(context.Background(), func(tx store.Tx) error {
		r, entries, err := store.NewVersion("Provenance", "forged-by-an-older-build", 1, with(recDoc, "id", "forged-by-an-older-build"), time.Now())
		if err != nil {
			return err
		}
		return tx.Put(r, entries)
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := receipts(recordQ); n != 1 {
		t.Errorf("lineage of the record: %d receipts, want 1 (the copy is not the gateway's)", n)
	}
}

// TestLineageQueries: a malformed lineage query is 400 lineage-query-invalid
// saying what a valid one is; one about nothing the gateway holds is 404
// lineage-not-found; never a 500.
func TestLineageQueries(t *testing.T) {
	s, _ := auditServer(t)
	record := exampleDoc(t, "assessment/phq9-moderate.json")
	if rec := send(s, "POST", "/ingest/assessment", string(record)); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	rec := send(s, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"male"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	var created map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &created); err != nil {
		t.Fatal(err)
	}
	pid := created["id"].(string)
	if rec := send(s, "DELETE", "/fhir/Patient/"+pid, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete = %d %s", rec.Code, rec.Body)
	}
	// A console page that looked for a record never received does not
	// make it one with a story.
	if rec := send(s, "GET", "/console/records?source=serenity-clinic-emr&record=NOPE-1", ""); rec.Code != http.StatusOK {
		t.Fatalf("console record page = %d", rec.Code)
	}
	for _, tc := range []struct {
		query  string
		status int
		want   string // a rule id, or in the answer
	}{
		{"source=serenity-clinic-emr&record=ASM-2026-0310-001", 200, `"receipts":[{`},
		{"source=serenity-clinic-emr&record=ASM-2026-0310-001&kind=assessment", 200, `"receipts":[{`},
		{"resource=Patient/" + pid, 200, `"receipts":[]`}, // deleted, but it was stored
		{"resource=Nope/1", 400, "lineage-query-invalid"},
		{"resource=observation/1", 400, "lineage-query-invalid"},
		{"resource=Observation", 400, "lineage-query-invalid"},
		{"source=serenity-clinic-emr&record=ASM-2026-0310-001&kind=pizza", 400, "lineage-query-invalid"},
		{"kind=session&trace=4bf92f3577b34da6a3ce929d0e0e4736", 400, "lineage-query-invalid"},
		{"source=serenity-clinic-emr&record=NOPE-1", 404, "lineage-not-found"},
		{"source=serenity-clinic-emr&record=ASM-2026-0310-001&kind=session", 404, "lineage-not-found"},
		{"source=other-emr&record=ASM-2026-0310-001", 404, "lineage-not-found"},
		{"resource=Observation/nope", 404, "lineage-not-found"},
		{"trace=4bf92f3577b34da6a3ce929d0e0e4736", 404, "lineage-not-found"},
	} {
		rec := send(s, "GET", "/admin/lineage?"+tc.query, "")
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("lineage?%s = %d %s, want %d %s", tc.query, rec.Code, rec.Body, tc.status, tc.want)
		}
	}
}

// TestOperatorParameters: the operator API refuses what the CLI refuses,
// with the same rules (a status or destination that names nothing, a count
// out of range, a tenant the caller does not act for), and a parameter it
// does not take, naming it: never an empty answer that looks like "no
// dead letters" or "nothing to replay".
func TestOperatorParameters(t *testing.T) {
	s, st := sqliteServer(t, true)
	const since = "since=2026-12-01T00:00:00Z"
	for _, tc := range []struct {
		method, target string
		status         int
		want           string // a rule id or a part of the message
	}{
		{"GET", "/admin/deliveries", 200, `"deliveries":[]`},
		{"GET", "/admin/deliveries?status=dead&destination=ehr&limit=51&offset=0&_pretty=true", 200, `"deliveries"`},
		{"GET", "/admin/deliveries?status=&destination=&patient=&since=&until=&limit=&offset=", 200, `"deliveries"`},
		{"GET", "/admin/deliveries?status=bogus", 400, "status must be one of pending, inflight, done, dead"},
		{"GET", "/admin/deliveries?destination=nope", 400, "destination names no destination; the destinations are ehr"},
		{"GET", "/admin/deliveries?limit=0", 400, "limit must be from 1 to 1000"},
		{"GET", "/admin/deliveries?limit=5000", 400, "limit must be from 1 to 1000"},
		{"GET", "/admin/deliveries?limit=ten", 400, "parameter-invalid"},
		{"GET", "/admin/deliveries?patient=PT-000123", 400, "patient must be <source system>|<clinic patient id>"},
		{"GET", "/admin/deliveries?patient=%7CPT-000123", 400, "patient must be <source system>|<clinic patient id>"},
		{"GET", "/admin/deliveries?patient=serenity-clinic-emr%7C", 400, "patient must be <source system>|<clinic patient id>"},
		{"GET", "/admin/deliveries?since=2026-12-31T00:00:00Z&until=2026-12-01T00:00:00Z", 400, "until must be later than since"},
		// The CLI's time flags' forms (deliveries list --since 7d): a
		// duration before now, as well as a time or a date.
		{"GET", "/admin/deliveries?since=7d&until=2h", 200, `"deliveries"`},
		{"GET", "/admin/deliveries?since=90m", 200, `"deliveries"`},
		{"GET", "/admin/deliveries?since=2026-12-01", 200, `"deliveries"`},
		{"GET", "/admin/deliveries?since=yesterday", 400, "since must be RFC 3339 (2026-12-01T08:00:00Z), a date (2026-12-01, its midnight UTC) or a duration before now (90m, 24h, 7d)"},
		{"POST", "/admin/deliveries/replay?destination=ehr&since=1h", 200, `"replayed":0`},
		{"GET", "/admin/deliveries?statsu=dead", 400, `parameter-unknown`},
		{"GET", "/admin/deliveries/1?payload=true&x=1", 400, "does not take was sent, and nothing was done; it takes payload, _pretty"},
		{"GET", "/admin/deliveries/1?payload=yes", 400, "payload must be true or false"},
		{"GET", "/admin/deliveries/1?payload=", 400, "payload must be true or false"},
		{"POST", "/admin/deliveries/replay?destination=nope&" + since, 400, "destination names no destination"},
		{"POST", "/admin/deliveries/replay?destination=ehr&" + since, 200, `"replayed":0`},
		{"POST", "/admin/deliveries/replay?destination=ehr&" + since + "&dryRun=true", 400, "parameter-unknown"},
		{"POST", "/admin/replay?tenant=nosuch", 400, "replay-tenant-unknown"},
		{"POST", "/admin/replay?kind=session&apply=true", 400, "replay-reason-missing"},
		{"POST", "/admin/replay?kind=session&aply=true", 400, "parameter-unknown"},
		// The documented undo of a replay (mapping.md §10): refused as
		// unknown before a first-hour review; taken now (this database
		// holds no record to replay).
		{"POST", "/admin/replay?kind=session&downgrade=true", 400, "replay-tenant-unknown"},
		{"POST", "/admin/replay?kind=session&downgrade=maybe", 400, "downgrade must be true or false"},
		{"POST", "/admin/reindex?batch=0&dryRun=true", 400, "batch must be between 1 and 10000"},
		{"POST", "/admin/reindex?batch=-3&dryRun=true", 400, "batch must be between 1 and 10000"},
		{"POST", "/admin/reindex?dryrun=true", 400, "a query parameter is spelt dryRun"},
		{"POST", "/admin/reindex?batch=5&dryRun=true", 202, ""},
		{"GET", "/admin/lineage?resource=Patient/p1&recrod=x", 400, "parameter-unknown"},
		// As the answers name it (an EHR review): the parameter is named.
		{"GET", "/admin/lineage?source=s&recordId=x", 400, "a query parameter is spelt record"},
		{"GET", "/admin/deliveries?recordId=x", 400, "a query parameter is spelt record"},
		{"GET", "/admin/lineage?resource=Patient/p1&resource=Patient/p2", 400, "resource is given more than once"},
		{"GET", "/admin/audit/verify?full=true", 400, "parameter-unknown"},
		{"GET", "/admin/audit/verify", 200, `"intact":true`},
		{"GET", "/admin/audit/verify?expect=1:" + strings.Repeat("0a", 32), 200, `"held":false`},
		{"GET", "/admin/audit/verify?expect=7", 400, "an anchor is <record number>:<hash>"},
		// From a head: one the chain does not hold is a broken chain there.
		{"GET", "/admin/audit/verify?from=1:" + strings.Repeat("0a", 32), 200, `"brokenAt":1`},
		{"GET", "/admin/audit/verify?from=1:" + strings.Repeat("0a", 32), 200, `"scope":"from record 1`},
		{"GET", "/admin/audit/verify?from=x", 400, `"expression":["from"]`},
		{"GET", "/admin/audit/verify?from=2:" + strings.Repeat("0a", 32) + "&expect=1:" + strings.Repeat("0a", 32), 400, "an anchor before from"},
	} {
		rec := send(s, tc.method, tc.target, "")
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("%s %s = %d %s, want %d %s", tc.method, tc.target, rec.Code, rec.Body, tc.status, tc.want)
		}
	}
	// A made-up parameter name may be record content: never repeated.
	if rec := send(s, "GET", "/admin/deliveries?ZqSecretName7=1", ""); rec.Code != 400 || strings.Contains(rec.Body.String(), "ZqSecretName7") {
		t.Errorf("an unknown operator parameter = %d %s; want 400 without its name", rec.Code, rec.Body)
	}

	// A delivery read names the delivery, the record and its patient, and
	// says whether the payload (the patient's data) was disclosed.
	raw := exampleDoc(t, "assessment/phq9-moderate.json")
	if rec := send(s, "POST", "/ingest/assessment", string(raw)); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	ingested := lastAudit(t, st)
	// A second record of the patient: its Provenance targets no Patient
	// (the Patient was stored before), its delivery still names the patient.
	second := strings.Replace(string(raw), "ASM-2026-0310-001", "ASM-2026-0310-002", 1)
	if rec := send(s, "POST", "/ingest/assessment", second); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	// The deliveries by record, as the operator's list names them.
	pub := listedDeliveries(t, s)
	for _, tc := range []struct{ delivery, query, want string }{
		{"1", "?payload=true", "delivery " + pub["ASM-2026-0310-001"] + ": 0 attempts; "},
		{"1", "?payload=true", "payload (the FHIR Bundle) and the EHR's answers disclosed"},
		{"1", "?payload=false", "payload not disclosed"},
		{"1", "", "payload not disclosed"},
		{"2", "?payload=true", "payload (the FHIR Bundle) and the EHR's answers disclosed"},
		{"2", "", "delivery " + pub["ASM-2026-0310-002"] + ": 0 attempts; payload not disclosed"},
	} {
		id := pub["ASM-2026-0310-00"+tc.delivery]
		if rec := send(s, "GET", "/admin/deliveries/"+id+tc.query, ""); rec.Code != http.StatusOK {
			t.Fatalf("delivery read = %d %s", rec.Code, rec.Body)
		}
		got := lastAudit(t, st)
		record := "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/assessment-record|ASM-2026-0310-00" + tc.delivery
		if !strings.Contains(got.Desc, tc.want) || !slices.Equal(got.Patients, ingested.Patients) || len(got.Patients) != 1 ||
			!slices.Contains(got.Named, audit.SystemDelivery+"|"+id) || !slices.Contains(got.Named, record) {
			t.Errorf("delivery %s read%s: AuditEvent %+v; want %q, the patient %v, the delivery and the record named", tc.delivery, tc.query, got, tc.want, ingested.Patients)
		}
	}
	// A list names the patient of each delivery listed (the list shows
	// their clinic patient ids), a list by patient the patient searched
	// for, and how many were listed; a list of another patient names none.
	for _, tc := range []struct {
		patient, want string
		patients      []string
	}{
		{"serenity-clinic-emr|PT-000123", "deliveries: 2 deliveries listed of one patient", ingested.Patients},
		{"serenity-clinic-emr|PT-NOBODY", "deliveries: 0 deliveries listed of one patient", nil},
		{"", "deliveries: 2 deliveries listed", ingested.Patients},
	} {
		if rec := send(s, "GET", "/admin/deliveries?patient="+url.QueryEscape(tc.patient), ""); rec.Code != http.StatusOK {
			t.Fatalf("delivery list = %d %s", rec.Code, rec.Body)
		}
		if got := lastAudit(t, st); !strings.HasSuffix(got.Desc, tc.want) || !slices.Equal(got.Patients, tc.patients) {
			t.Errorf("delivery list of %q: AuditEvent %+v; want %q and the patients %v", tc.patient, got, tc.want, tc.patients)
		}
	}
	// A retry names what a read names, refused (in flight) or not; a
	// replay says how many it queued again.
	second2 := pub["ASM-2026-0310-002"]
	if rec := send(s, "POST", "/admin/deliveries/"+second2+"/retry", ""); rec.Code != http.StatusOK ||
		!strings.Contains(rec.Body.String(), `"id":"`+second2+`"`) {
		t.Fatalf("retry of a pending delivery = %d %s", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st); !slices.Equal(got.Patients, ingested.Patients) || !slices.Contains(got.Named, audit.SystemDelivery+"|"+second2) ||
		!strings.HasSuffix(got.Desc, "delivery "+second2+" queued again") {
		t.Errorf("delivery retry: AuditEvent %+v; want the patient %v and the delivery named", got, ingested.Patients)
	}
	if _, err := st.Claim(context.Background(), "ehr", time.Now().Add(time.Second), time.Minute, 10); err != nil {
		t.Fatal(err)
	}
	if rec := send(s, "POST", "/admin/deliveries/"+second2+"/retry", ""); rec.Code != http.StatusConflict {
		t.Fatalf("retry of a delivery in flight = %d %s", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st); !slices.Equal(got.Patients, ingested.Patients) || !slices.Contains(got.Named, audit.SystemDelivery+"|"+second2) ||
		!strings.Contains(got.Desc, "delivery-not-dead") {
		t.Errorf("delivery retry: AuditEvent %+v; want the patient %v and the delivery named", got, ingested.Patients)
	}
	if rec := send(s, "POST", "/admin/deliveries/replay?destination=ehr&since=2000-01-01T00:00:00Z", ""); rec.Code != http.StatusOK {
		t.Fatalf("replay = %d %s", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st); !strings.HasSuffix(got.Desc, "delivery replay: 0 deliveries queued again") {
		t.Errorf("delivery replay: AuditEvent %+v; want how many were queued again", got)
	}
}

// TestDeliveriesOfRecord: the operator lists the deliveries of one
// record (source, kind, record id), every version newest first, and marks
// the one that withdrew it; a kind that is not one is refused.
func TestDeliveriesOfRecord(t *testing.T) {
	s, st := sqliteServer(t, true)
	raw := string(exampleDoc(t, "assessment/phq9-moderate.json"))
	other := strings.Replace(raw, "ASM-2026-0310-001", "ASM-2026-0310-002", 1)
	v2 := strings.Replace(raw, `"version": "1"`, `"version": "2", "status": "entered-in-error"`, 1)
	if v2 == raw {
		t.Fatal("the example's version is not where the test changes it")
	}
	for _, doc := range []string{raw, other, v2} {
		if rec := send(s, "POST", "/ingest/assessment", doc); rec.Code != http.StatusOK {
			t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
		}
	}
	// The withdrawal's AuditEvent says so, not only its Provenance.
	if got := lastAudit(t, st); !strings.Contains(got.Desc, "assessment record withdrawn (entered-in-error): ") {
		t.Errorf("the withdrawal's AuditEvent says %q", got.Desc)
	}
	var got struct {
		Deliveries []struct {
			RecordID, Version string
			Withdrawal        bool
		}
	}
	rec := send(s, "GET", "/admin/deliveries?source=serenity-clinic-emr&kind=assessment&record=ASM-2026-0310-001", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("deliveries of a record = %d %s", rec.Code, rec.Body)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Deliveries) != 2 || got.Deliveries[0].Version != "2" || !got.Deliveries[0].Withdrawal ||
		got.Deliveries[1].Version != "1" || got.Deliveries[1].Withdrawal {
		t.Errorf("deliveries of a record = %+v; want version 2 marked withdrawal, then version 1 unmarked", got.Deliveries)
	}
	for _, q := range []string{"record=ASM-2026-0310-002", "source=other-clinic", "kind=vitals&record=ASM-2026-0310-001"} {
		rec := send(s, "GET", "/admin/deliveries?"+q, "")
		got.Deliveries = nil
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil || rec.Code != http.StatusOK {
			t.Fatalf("%s = %d %s", q, rec.Code, rec.Body)
		}
		want := 0
		if q == "record=ASM-2026-0310-002" {
			want = 1
		}
		if len(got.Deliveries) != want {
			t.Errorf("%s: %d deliveries, want %d", q, len(got.Deliveries), want)
		}
	}
	if rec := send(s, "GET", "/admin/deliveries?kind=phq9", ""); rec.Code != http.StatusBadRequest ||
		!strings.Contains(rec.Body.String(), "kind must be one of assessment, vitals") {
		t.Errorf("a kind that is not one = %d %s; want 400 naming the kinds", rec.Code, rec.Body)
	}
}

// TestSchemaRefusalNamesRecord: a record its JSON Schema refuses for a
// value, its identity sound, is named in the refusal's AuditEvent, so
// that every request about that source record finds it; one whose
// identity the schema refused names none (auditor review).
func TestSchemaRefusalNamesRecord(t *testing.T) {
	s, st := sqliteServer(t, false)
	raw := string(exampleDoc(t, "assessment/phq9-moderate.json"))
	const record = "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/assessment-record|ASM-2026-0310-001"
	for _, tc := range []struct {
		name, doc string
		named     bool
	}{
		{"a total out of range", strings.Replace(raw, `"total": 11`, `"total": 99`, 1), true},
		{"a record id that is not a string", strings.Replace(raw, `"recordId": "ASM-2026-0310-001"`, `"recordId": 7`, 1), false},
	} {
		if tc.doc == raw {
			t.Fatalf("%s: the example was not changed", tc.name)
		}
		if rec := send(s, "POST", "/ingest/assessment", tc.doc); rec.Code != http.StatusBadRequest {
			t.Fatalf("%s: ingest = %d %s, want 400", tc.name, rec.Code, rec.Body)
		}
		if got := lastAudit(t, st); slices.Contains(got.Named, record) != tc.named {
			t.Errorf("%s: the refusal's AuditEvent names %v; record named: want %v", tc.name, got.Named, tc.named)
		}
	}
}

// TestConcurrencyBound: with every slot taken a request waits briefly,
// then gets 503 with Retry-After; once a slot frees, requests are served.
func TestConcurrencyBound(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s := testServer(t, app.Config{Store: st}, Config{RateLimit: -1, MaxInFlight: 1})
	s.inFlight <- struct{}{} // a request in progress
	rec := send(s, "GET", "/fhir/Patient", "")
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "server-busy") {
		t.Errorf("request over the bound = %d %q %s, want 503 server-busy with Retry-After 1", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := send(s, "GET", "/healthz", ""); rec.Code != http.StatusOK {
		t.Errorf("healthz at the bound = %d, want 200 (liveness never waits)", rec.Code)
	}
	<-s.inFlight
	if rec := send(s, "GET", "/fhir/Patient", ""); rec.Code != http.StatusOK {
		t.Errorf("request with a free slot = %d", rec.Code)
	}
}

// TestClientAddress: behind a trusted proxy the client's address comes from
// X-Forwarded-For, for the audit record and the rate limit; from anyone
// else X-Forwarded-For is ignored.
func TestClientAddress(t *testing.T) {
	_, lb, _ := net.ParseCIDR("10.0.0.0/8")
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// One request a client per 100 s (a burst of 1): the flood below meets
	// its 429 however slowly a loaded machine serves it (at 1 a second, a
	// burst of 2, four requests taking over 2 s all passed).
	s := testServer(t, app.Config{Store: st}, Config{RateLimit: 0.01, TrustedProxies: []*net.IPNet{lb}})
	get := func(remote, xff string) (int, string) {
		r := httptest.NewRequest("GET", "/fhir/metadata", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		entries := chain(t, st)
		var ev struct {
			Agent []struct {
				Network struct{ Address string } `json:"network"`
			} `json:"agent"`
		}
		_ = json.Unmarshal(entries[len(entries)-1].Body, &ev)
		return rec.Code, ev.Agent[0].Network.Address
	}
	for _, tc := range []struct{ remote, xff, want string }{
		{"10.1.2.3:5555", "203.0.113.9", "203.0.113.9"},
		{"10.1.2.3:5555", "198.51.100.1, 203.0.113.10, 10.9.9.9", "203.0.113.10"},
		{"198.51.100.7:1", "203.0.113.11", "198.51.100.7"},
		{"10.1.2.3:5555", "not-an-address", "10.1.2.3"},
	} {
		if _, got := get(tc.remote, tc.xff); got != tc.want {
			t.Errorf("remote %s, X-Forwarded-For %q: audited address %q, want %q", tc.remote, tc.xff, got, tc.want)
		}
	}
	// The rate limit counts clients, not the proxy.
	for i := range 5 {
		if code, _ := get("10.1.2.3:5555", fmt.Sprintf("203.0.113.%d", 100+i)); code != http.StatusOK {
			t.Errorf("client %d through the proxy = %d, want 200", i, code)
		}
	}
	codes := []int{}
	for range 4 {
		r := httptest.NewRequest("GET", "/fhir/metadata", nil)
		r.RemoteAddr = "10.1.2.3:5555"
		r.Header.Set("X-Forwarded-For", "203.0.113.200")
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, r)
		codes = append(codes, rec.Code)
	}
	if !slices.Contains(codes, http.StatusTooManyRequests) {
		t.Errorf("one client flooding through the proxy: %v, want a 429", codes)
	}
}

// auditOf decodes the newest AuditEvent: its action, description, the
// patients (role Patient) and what it names by identifier (system|value).
type auditOf struct {
	Action, Desc, Subtype string
	Patients, Refs        []string
	Named                 []string
}

func lastAudit(t *testing.T, st store.Store) auditOf {
	t.Helper()
	entries := chain(t, st)
	var ev struct {
		Action      string `json:"action"`
		OutcomeDesc string `json:"outcomeDesc"`
		Subtype     []struct{ Code string }
		Entity      []struct {
			Role struct{ Code string } `json:"role"`
			What struct {
				Reference  string                         `json:"reference"`
				Identifier struct{ System, Value string } `json:"identifier"`
			} `json:"what"`
		} `json:"entity"`
	}
	if err := json.Unmarshal(entries[len(entries)-1].Body, &ev); err != nil {
		t.Fatal(err)
	}
	out := auditOf{Action: ev.Action, Desc: ev.OutcomeDesc, Subtype: ev.Subtype[0].Code}
	for _, e := range ev.Entity {
		switch {
		case e.Role.Code == "1":
			out.Patients = append(out.Patients, e.What.Reference)
		case e.What.Reference != "":
			out.Refs = append(out.Refs, e.What.Reference)
		case e.What.Identifier.System != audit.SystemRequestID:
			out.Named = append(out.Named, e.What.Identifier.System+"|"+e.What.Identifier.Value)
		}
	}
	return out
}

// TestAuditNamesPatientsOfListingTypes: a Provenance, an AuditEvent and
// a Group are about the patients R4's patient search parameters and
// patient compartment say (targets, entities and agents, members): reading
// or searching them names those patients.
func TestAuditNamesPatientsOfListingTypes(t *testing.T) {
	s, st := auditServer(t)
	if rec := send(s, "POST", "/ingest/assessment", string(exampleDoc(t, "assessment/phq9-moderate.json"))); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	patient := lastAudit(t, st).Patients
	var prov struct{ Refs []string }
	prov.Refs = lastAudit(t, st).Refs
	if len(patient) != 1 || len(prov.Refs) == 0 {
		t.Fatalf("the ingest names patients %v and %v", patient, prov.Refs)
	}
	group := `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"` + patient[0] + `"}}]}`
	rec := send(s, "POST", "/fhir/Group", group)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create Group = %d %s", rec.Code, rec.Body)
	}
	groupLoc := strings.SplitN(strings.TrimPrefix(rec.Header().Get("Location"), "http://example.com/fhir/"), "/_history", 2)[0]
	for _, target := range []string{
		"/fhir/" + prov.Refs[0],
		"/fhir/Provenance?target=" + patient[0],
		"/fhir/AuditEvent?patient=" + patient[0] + "&_count=2",
		"/fhir/" + groupLoc,
		"/fhir/Group",
	} {
		if rec := send(s, "GET", target, ""); rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		if got := lastAudit(t, st); !slices.Equal(got.Patients, patient) {
			t.Errorf("GET %s: AuditEvent names patients %v, want %v", target, got.Patients, patient)
		}
	}
}

// TestAuditNamesPatientAndRecord: every request about a stored record
// names, in its AuditEvent, the record (by the identifier its Provenance
// names it by) and the stored patient it concerns, with the action it
// stands for, so that AuditEvent?patient= and the record's lineage find
// it: a version re-sent (R), refused (U: the record is stored) for each
// reason, a dry run (E), a new version (U); and so do a lineage and a
// delivery read, which disclose the patient's data.
func TestAuditNamesPatientAndRecord(t *testing.T) {
	s, st := auditServer(t)
	raw := exampleDoc(t, "assessment/phq9-moderate.json")
	orig := string(raw)
	edit := func(pairs ...string) string { return strings.NewReplacer(pairs...).Replace(orig) }
	if rec := send(s, "POST", "/ingest/assessment", orig); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	var found struct {
		Entry []struct{ Resource struct{ ID string } }
	}
	if err := json.Unmarshal(send(s, "GET", "/fhir/Patient", "").Body.Bytes(), &found); err != nil || len(found.Entry) != 1 {
		t.Fatalf("the stored Patient: %v %+v", err, found)
	}
	patient := "Patient/" + found.Entry[0].Resource.ID
	record := "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/assessment-record|ASM-2026-0310-001"
	noMRN := edit(`"mrn": {
      "value": "MRN-TEST-000123",
      "system": "https://serenity-test-hospital.example/fhir/mrn",
      "assigner": "Serenity Test Hospital"
    },`, "", `"PT-000123"`, `"PT-000555"`, `"version": "1"`, `"version": "3"`, "09:08:12", "10:08:12")
	if noMRN == orig {
		t.Fatal("the example changed: the edit to remove its MRN does nothing")
	}
	// A session stored for another patient, which a record of the patient
	// then names (a rule against the stored session).
	otherSession := strings.NewReplacer(`"harbor-ketamine-ehr"`, `"serenity-clinic-emr"`, "hk-inf-30099", "INF-OTHER").
		Replace(string(exampleDoc(t, "session/minimal-not-done-session.json")))
	if rec := send(s, "POST", "/ingest/session", otherSession); rec.Code != http.StatusOK {
		t.Fatalf("ingest the other patient's session = %d %s", rec.Code, rec.Body)
	}
	otherPatient := lastAudit(t, st).Patients
	for _, tc := range []struct {
		name, target, body string
		status             int
		action             string
		named              string // a record named
		rule               string // in the description
	}{
		{"re-sent", "/ingest/assessment", orig, 200, "R", record, "already received"},
		{"version reused", "/ingest/assessment", edit("somewhat-difficult", "very-difficult"), 409, "U", record, ingest.RuleVersionReused},
		{"version stale", "/ingest/assessment", edit(`"version": "1"`, `"version": "0"`, "2026-03-10T09:08:12", "2026-03-10T09:07:12"), 409, "U", record, ingest.RuleVersionStale},
		{"MRN of another patient", "/ingest/assessment", edit("ASM-2026-0310-001", "ASM-2026-0310-002", `"PT-000123"`, `"PT-000999"`), 409, "C",
			strings.Replace(record, "-001", "-002", 1), ingest.RuleIdentityConflict},
		{"stored for another patient", "/ingest/assessment", noMRN, 409, "U", record, ingest.RulePatientChanged},
		{"names another patient's stored session", "/ingest/assessment", edit("ASM-2026-0310-001", "ASM-2026-0310-009", "INF-2026-0310-001", "INF-OTHER"), 422, "C",
			strings.Replace(record, "-001", "-009", 1), "session.patient-mismatch"},
		{"dry run (reads nothing stored: names no patient)", "/ingest/assessment?dryRun=true", orig, 200, "E", record, "dry run"},
		{"new version", "/ingest/assessment", edit(`"version": "1"`, `"version": "2"`, "09:08:12", "09:18:12"), 200, "U", record, "entries"},
		{"lineage of the record", "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001", "", 200, "R", record, "lineage: 2 receipts"},
		{"lineage of a resource", "", "", 200, "R", "", "lineage: 1 receipt, 1 request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.target == "" {
				tc.target = "/admin/lineage?resource=" + patient
			}
			method := "POST"
			if tc.body == "" {
				method = "GET"
			}
			if rec := send(s, method, tc.target, tc.body); rec.Code != tc.status {
				t.Fatalf("%s = %d %s, want %d", tc.target, rec.Code, rec.Body, tc.status)
			}
			got := lastAudit(t, st)
			if got.Action != tc.action || slices.Contains(got.Patients, patient) == strings.HasPrefix(tc.name, "dry run") || !strings.Contains(got.Desc, tc.rule) ||
				(tc.named != "" && !slices.Contains(got.Named, tc.named)) {
				t.Errorf("AuditEvent action %s, patients %v, named %v, %q; want %s, %s, %q, %q", got.Action, got.Patients, got.Named, got.Desc,
					tc.action, patient, tc.named, tc.rule)
			}
			if tc.named != "" && strings.HasPrefix(tc.target, "/admin/lineage") && len(got.Named) != 1 {
				t.Errorf("the lineage names %v, want only the record as it was sent (%s)", got.Named, tc.named)
			}
		})
	}
	// The other direction: the other patient's session named by the
	// patient's stored record is refused, naming its own stored Patient.
	sessionNamed := strings.Replace(otherSession, "INF-OTHER", "INF-2026-0310-001", 1)
	if rec := send(s, "POST", "/ingest/session", sessionNamed); rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("the session a record of another patient names = %d %s, want 422", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st); len(otherPatient) != 1 || !slices.Contains(got.Patients, otherPatient[0]) || !strings.Contains(got.Desc, "session.patient-mismatch") {
		t.Errorf("the refused session's AuditEvent names patients %v (%q), want its own stored Patient %v", got.Patients, got.Desc, otherPatient)
	}
	// The patient's audit trail finds every one of them; the record's
	// lineage lists the refused and re-sent versions too.
	var bundle struct{ Total int }
	_ = json.Unmarshal(send(s, "GET", "/fhir/AuditEvent?patient="+patient+"&_summary=count", "").Body.Bytes(), &bundle)
	if bundle.Total != 11 { // the first ingest, the nine above but the dry run, and the Patient search
		t.Errorf("AuditEvent?patient=%s: %d, want 11", patient, bundle.Total)
	}
	var l auditlog.Lineage
	_ = json.Unmarshal(send(s, "GET", "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001", "").Body.Bytes(), &l)
	var descs []string
	for _, r := range l.Requests {
		descs = append(descs, r.Description)
	}
	for _, want := range []string{"already received", ingest.RuleVersionReused, ingest.RuleVersionStale, ingest.RulePatientChanged, "dry run", "lineage: 2 receipts"} {
		if !slices.ContainsFunc(descs, func(d string) bool { return strings.Contains(d, want) }) {
			t.Errorf("the record's lineage lacks the request %q: %q", want, descs)
		}
	}

	// The lineage of a record a session nests names it as it was sent
	// (its kind's identifier), not as every kind it might have been.
	s2, st2 := auditServer(t)
	session := exampleDoc(t, "session/routine-ketamine-iv-session.json")
	if rec := send(s2, "POST", "/ingest/session", string(session)); rec.Code != http.StatusOK {
		t.Fatalf("ingest session = %d %s", rec.Code, rec.Body)
	}
	if rec := send(s2, "GET", "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001", ""); rec.Code != http.StatusOK {
		t.Fatalf("lineage of the nested record = %d %s", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st2); !slices.Equal(got.Named, []string{record}) || len(got.Patients) != 1 {
		t.Errorf("the nested record's lineage names %v and patients %v, want only %s and the session's patient", got.Named, got.Patients, record)
	}
}

// listedDeliveries returns the public ids of the deliveries GET
// /admin/deliveries lists, by their source record's id.
func listedDeliveries(t *testing.T, s http.Handler) map[string]string {
	t.Helper()
	rec := send(s, "GET", "/admin/deliveries", "")
	var list struct {
		Deliveries []struct {
			ID       string `json:"id"`
			RecordID string `json:"recordId"`
		} `json:"deliveries"`
	}
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &list) != nil {
		t.Fatalf("GET /admin/deliveries = %d %s", rec.Code, rec.Body)
	}
	out := map[string]string{}
	for _, d := range list.Deliveries {
		out[d.RecordID] = d.ID
	}
	return out
}

// TestAuditNamesPatientOfDeletion: deleting a patient's resource, by
// DELETE or in a transaction, names the patient in its AuditEvent (taken
// from the version deleted: the deletion has no body), so that
// AuditEvent?patient= shows who removed their data (p16 F4).
func TestAuditNamesPatientOfDeletion(t *testing.T) {
	s, st := auditServer(t)
	rec := send(s, "POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Deleted"}]}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create Patient = %d %s", rec.Code, rec.Body)
	}
	patient := strings.SplitN(strings.TrimPrefix(rec.Header().Get("Location"), "http://example.com/fhir/"), "/_history", 2)[0]
	obs := func() string {
		rec := send(s, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"`+patient+`"}}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("create Observation = %d %s", rec.Code, rec.Body)
		}
		return strings.SplitN(strings.TrimPrefix(rec.Header().Get("Location"), "http://example.com/fhir/"), "/_history", 2)[0]
	}
	if rec := send(s, "DELETE", "/fhir/"+obs(), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st); !slices.Equal(got.Patients, []string{patient}) {
		t.Errorf("DELETE: AuditEvent names patients %v, want %s", got.Patients, patient)
	}
	bundle := `{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"DELETE","url":"` + obs() + `"}}]}`
	if rec := send(s, "POST", "/fhir", bundle); rec.Code != http.StatusOK {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st); !slices.Equal(got.Patients, []string{patient}) {
		t.Errorf("transaction DELETE: AuditEvent names patients %v, want %s", got.Patients, patient)
	}
	// Deleting what is deleted already names nobody new, and fails nothing.
	if rec := send(s, "DELETE", "/fhir/"+patient, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE Patient = %d %s", rec.Code, rec.Body)
	}
	if got := lastAudit(t, st); !slices.Equal(got.Patients, []string{patient}) {
		t.Errorf("DELETE Patient: AuditEvent names patients %v, want %s", got.Patients, patient)
	}
}

// TestLineageKeepsRecordStory: reading a record's lineage again and again
// never pushes its own requests (its ingests, a version refused) out of
// the lineage: lineage reads are shown apart, the newest few, and the
// answer counts what it left out and names the search that lists it all
// (p16 F17).
func TestLineageKeepsRecordStory(t *testing.T) {
	s, _ := auditServer(t)
	record := string(exampleDoc(t, "assessment/phq9-moderate.json"))
	if rec := send(s, "POST", "/ingest/assessment", record); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	// The same version with other content: refused, and named.
	if rec := send(s, "POST", "/ingest/assessment", strings.Replace(record, `"total": 11`, `"total": 12`, 1)); rec.Code < 400 {
		t.Fatalf("refused version = %d %s", rec.Code, rec.Body)
	}
	const query = "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001"
	for range 25 {
		if rec := send(s, "GET", query, ""); rec.Code != http.StatusOK {
			t.Fatalf("lineage = %d %s", rec.Code, rec.Body)
		}
	}
	rec := send(s, "GET", query, "")
	var l struct {
		Requests []struct {
			Interaction, Outcome string
		}
		RequestsOmitted int
		RequestsSearch  string
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	refused := 0
	for _, r := range l.Requests {
		counts[r.Interaction]++
		if r.Interaction == "ingest" && r.Outcome != "0" {
			refused++
		}
	}
	if counts["ingest"] != 2 || refused != 1 || counts["lineage"] != 20 {
		t.Errorf("lineage requests = %v (%d refused), want both ingests (one refused) and the newest 20 lineage reads", counts, refused)
	}
	if l.RequestsOmitted != 5 || !strings.Contains(l.RequestsSearch, "AuditEvent?entity:identifier=") {
		t.Errorf("omitted %d, search %q: want the 5 older lineage reads counted and the search named", l.RequestsOmitted, l.RequestsSearch)
	}
}

// TestLineageByTraceNamesRecord: a lineage read by trace (or by resource)
// shows the receipts' source records, and its AuditEvent names them, as a
// read by record does, so that every request about the record finds it
// (p16 F14).
func TestLineageByTraceNamesRecord(t *testing.T) {
	s, st := auditServer(t)
	if rec := send(s, "POST", "/ingest/assessment", string(exampleDoc(t, "assessment/phq9-moderate.json"))); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	const record = "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/assessment-record|ASM-2026-0310-001"
	rec := send(s, "GET", "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001", "")
	var l struct {
		Receipts []struct {
			TraceID   string
			Resources []string
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || len(l.Receipts) != 1 {
		t.Fatalf("lineage = %d %s", rec.Code, rec.Body)
	}
	queries := []string{"resource=" + strings.Split(l.Receipts[0].Resources[len(l.Receipts[0].Resources)-1], "/_history")[0]}
	if tr := l.Receipts[0].TraceID; tr != "" { // a server with a tracer
		queries = append(queries, "trace="+tr)
	}
	for _, q := range queries {
		if rec := send(s, "GET", "/admin/lineage?"+q, ""); rec.Code != http.StatusOK {
			t.Fatalf("lineage?%s = %d %s", q, rec.Code, rec.Body)
		}
		if got := lastAudit(t, st); !slices.Contains(got.Named, record) {
			t.Errorf("lineage?%s: AuditEvent names %v, want the source record %s", q, got.Named, record)
		}
	}
}

// TestReceiptNamesPatient: every receipt of a native record names its
// patient, also a later version's (which targets no Patient version), so
// reading it names the patient in its AuditEvent (p16 F9).
func TestReceiptNamesPatient(t *testing.T) {
	s, st := auditServer(t)
	record := string(exampleDoc(t, "assessment/phq9-moderate.json"))
	if rec := send(s, "POST", "/ingest/assessment", record); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	patient := lastAudit(t, st).Patients
	v2 := strings.Replace(strings.Replace(record, `"version": "1"`, `"version": "2"`, 1), `"lastUpdated": "2026-03-10T09:08:12-05:00"`, `"lastUpdated": "2026-03-10T10:08:12-05:00"`, 1)
	if rec := send(s, "POST", "/ingest/assessment", v2); rec.Code != http.StatusOK {
		t.Fatalf("ingest v2 = %d %s", rec.Code, rec.Body)
	}
	var prov string
	for _, r := range lastAudit(t, st).Refs {
		if strings.HasPrefix(r, "Provenance/") {
			prov = strings.Split(r, "/_history")[0]
		}
	}
	if prov == "" || len(patient) != 1 {
		t.Fatalf("v2's AuditEvent names no Provenance, or v1's %v patients", patient)
	}
	body := send(s, "GET", "/fhir/"+prov, "")
	if body.Code != http.StatusOK || strings.Contains(body.Body.String(), `"target":[{"reference":"Patient/`) {
		t.Fatalf("GET %s = %d %s, want a receipt without a Patient target", prov, body.Code, body.Body)
	}
	if got := lastAudit(t, st); !slices.Equal(got.Patients, patient) {
		t.Errorf("reading v2's receipt names patients %v, want %v", got.Patients, patient)
	}
}

// TestLineageMarksDeleted: a receipt lists each resource it produced that
// is deleted since, with the deletion's version and time, so that the
// lineage does not present a withdrawn resource as held (p16 F5).
func TestLineageMarksDeleted(t *testing.T) {
	s, _ := auditServer(t)
	if rec := send(s, "POST", "/ingest/assessment", string(exampleDoc(t, "assessment/phq9-moderate.json"))); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	const query = "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001"
	type lineage struct {
		Receipts []struct {
			Resources []string
			Deleted   []struct{ Resource, Version, At string }
		}
	}
	read := func() lineage {
		t.Helper()
		rec := send(s, "GET", query, "")
		var l lineage
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || len(l.Receipts) != 1 {
			t.Fatalf("lineage = %d %s", rec.Code, rec.Body)
		}
		return l
	}
	l := read()
	if len(l.Receipts[0].Deleted) != 0 {
		t.Fatalf("nothing deleted yet, lineage lists %+v", l.Receipts[0].Deleted)
	}
	var obs string
	for _, r := range l.Receipts[0].Resources {
		if strings.HasPrefix(r, "Observation/") {
			obs = strings.Split(r, "/_history")[0]
		}
	}
	if obs == "" {
		t.Fatalf("the receipt produced no Observation: %v", l.Receipts[0].Resources)
	}
	if rec := send(s, "DELETE", "/fhir/"+obs, ""); rec.Code != http.StatusOK && rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE %s = %d %s", obs, rec.Code, rec.Body)
	}
	l = read()
	d := l.Receipts[0].Deleted
	if len(d) != 1 || d[0].Resource != obs || !strings.HasPrefix(d[0].Version, obs+"/_history/") || d[0].At == "" {
		t.Errorf("deleted = %+v, want %s alone, with the deletion's version and time", d, obs)
	}
}

// TestLineageMarksChangedSince: a receipt lists each resource it produced
// whose current version a client wrote later through the FHIR API (stored,
// not delivered: operations.md), with that version, its time, method and
// client, as it lists deletions, so that an auditor asked whether the EHR
// holds the change does not answer yes (p39 F5). A later native version
// of the record, which is delivered, is no such change.
func TestLineageMarksChangedSince(t *testing.T) {
	s, _ := auditServer(t)
	doc := string(exampleDoc(t, "assessment/phq9-moderate.json"))
	if rec := send(s, "POST", "/ingest/assessment", doc); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	const query = "/admin/lineage?source=serenity-clinic-emr&record=ASM-2026-0310-001"
	type changed struct{ Resource, Version, At, Method, Client string }
	type lineage struct {
		Receipts []struct {
			Resources []string
			Changed   []changed `json:"changedSince"`
		}
	}
	read := func(receipts int) lineage {
		t.Helper()
		rec := send(s, "GET", query, "")
		var l lineage
		if err := json.Unmarshal(rec.Body.Bytes(), &l); err != nil || len(l.Receipts) != receipts {
			t.Fatalf("lineage = %d %s, want %d receipts", rec.Code, rec.Body, receipts)
		}
		return l
	}
	l := read(1)
	if len(l.Receipts[0].Changed) != 0 {
		t.Fatalf("nothing changed yet, lineage lists %+v", l.Receipts[0].Changed)
	}
	var obs string
	for _, r := range l.Receipts[0].Resources {
		if strings.HasPrefix(r, "Observation/") && obs == "" {
			obs = strings.Split(r, "/_history")[0]
		}
	}
	if obs == "" {
		t.Fatalf("the receipt produced no Observation: %v", l.Receipts[0].Resources)
	}
	rec := send(s, "GET", "/fhir/"+obs, "")
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("GET %s = %d %s", obs, rec.Code, rec.Body)
	}
	body["status"] = "entered-in-error"
	b, _ := json.Marshal(body)
	if rec := send(s, "PUT", "/fhir/"+obs, string(b)); rec.Code != http.StatusOK {
		t.Fatalf("PUT %s = %d %s", obs, rec.Code, rec.Body)
	}
	l = read(1)
	c := l.Receipts[0].Changed
	if len(c) != 1 || c[0].Resource != obs || c[0].Version != obs+"/_history/2" || c[0].At == "" || c[0].Method != "PUT" || c[0].Client == "" {
		t.Errorf("changedSince = %+v, want %s alone, at version 2 by PUT, with its time and client", c, obs)
	}
	// The console's record page says so, as it says "Deleted since".
	page := send(s, "GET", "/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001", "").Body.String()
	if !strings.Contains(page, "Changed since through the FHIR API, not delivered") || !strings.Contains(page, obs+"/_history/2") {
		t.Errorf("the console's record page does not mark %s as changed since:\n%.4000s", obs, page)
	}

	// The record's version 2: its resources are delivered, nothing is
	// changed since either receipt.
	v2 := strings.Replace(strings.Replace(doc, `"version": "1"`, `"version": "2"`, 1), `"total": 11`, `"total": 12`, 1)
	v2 = strings.Replace(v2, `{"number": 9, "score": 0}`, `{"number": 9, "score": 1}`, 1)
	if rec := send(s, "POST", "/ingest/assessment", v2); rec.Code != http.StatusOK {
		t.Fatalf("ingest v2 = %d %s", rec.Code, rec.Body)
	}
	for i, r := range read(2).Receipts {
		if len(r.Changed) != 0 {
			t.Errorf("receipt %d: changedSince = %+v after the record's version 2, want none", i, r.Changed)
		}
	}
}

// TestAuditNamesRefusedEntryTargets: a refused entry of a Bundle that
// targeted an instance (a PUT, PATCH or DELETE of Type/id) is named by the
// request's AuditEvent, unversioned, as a refused request of its own is,
// so that an attempt on a resource, an AuditEvent included, shows in its
// trail (p45 F1); a refused create, or a target that is no instance (an
// invalid id), names nothing.
func TestAuditNamesRefusedEntryTargets(t *testing.T) {
	s, st := auditServer(t)
	rec := send(s, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"male"}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	var p struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	entries := chain(t, st)
	ae := entries[len(entries)-1].ID // the create's AuditEvent
	bundle := func(typ string, entries ...string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`
	}
	deleteAE := `{"request":{"method":"DELETE","url":"AuditEvent/` + ae + `"}}`
	update := `{"resource":{"resourceType":"Patient","id":"` + p.ID + `","gender":"female"},"request":{"method":"PUT","url":"Patient/` + p.ID + `"}}`
	for _, tc := range []struct {
		name, body  string
		status      int
		want, never []string
	}{
		{"batch", bundle("batch", deleteAE, update), 200, []string{"AuditEvent/" + ae, "Patient/" + p.ID}, nil},
		{"transaction", bundle("transaction", update, deleteAE), 405, []string{"AuditEvent/" + ae}, []string{"Patient/"}},
		{"invalid id", bundle("batch", `{"request":{"method":"DELETE","url":"Patient/not_an_id"}}`), 200, nil, []string{"Patient/"}},
		{"refused create", bundle("batch", `{"resource":{"resourceType":"AuditEvent"},"request":{"method":"POST","url":"AuditEvent"}}`), 200, nil, []string{"AuditEvent/"}},
	} {
		if rec := send(s, "POST", "/fhir", tc.body); rec.Code != tc.status {
			t.Fatalf("%s: = %d %s, want %d", tc.name, rec.Code, rec.Body, tc.status)
		}
		got := lastAudit(t, st)
		named := append(got.Refs, got.Patients...)
		for _, w := range tc.want {
			if !slices.Contains(named, w) {
				t.Errorf("%s: AuditEvent names %v, want %s", tc.name, named, w)
			}
		}
		for _, n := range tc.never {
			if slices.ContainsFunc(named, func(r string) bool { return strings.HasPrefix(r, n) }) {
				t.Errorf("%s: AuditEvent names %v, want nothing beginning %s", tc.name, named, n)
			}
		}
	}
	// An auditor's question, who tried to change this AuditEvent, finds
	// the Bundles.
	rec = send(s, "GET", "/fhir/AuditEvent?entity=AuditEvent/"+ae+"&_summary=count", "")
	if !strings.Contains(rec.Body.String(), `"total":2`) {
		t.Errorf("AuditEvent?entity=AuditEvent/%s = %s, want the batch's and the transaction's", ae, rec.Body)
	}
}

// TestLineageManyReferences: a source record whose resources are more
// than one search may OR (a session with a few more assessments: 156)
// has its console page, listing who touched each of them, the last
// included; a resource written by more than 100 receipts has its lineage
// (p45: both answered 400, search-limit-exceeded).
func TestLineageManyReferences(t *testing.T) {
	s, st := auditServer(t)
	var session map[string]any
	if err := json.Unmarshal(exampleDoc(t, "session/routine-ketamine-iv-session.json"), &session); err != nil {
		t.Fatal(err)
	}
	assessments := session["assessments"].([]any)
	for i := range 4 {
		var cadss map[string]any
		for _, a := range assessments {
			if a.(map[string]any)["instrument"] == "CADSS" {
				b, _ := json.Marshal(a)
				_ = json.Unmarshal(b, &cadss)
			}
		}
		cadss["recordId"] = fmt.Sprintf("ASM-MANY-%d", i)
		cadss["takenAt"] = fmt.Sprintf("2026-03-10T10:%02d:00-05:00", 20+5*i)
		assessments = append(assessments, cadss)
	}
	session["assessments"] = assessments
	body, _ := json.Marshal(session)
	rec := send(s, "POST", "/ingest/session", string(body))
	if rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	var answer struct {
		Entry []struct{ Response struct{ Location string } }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &answer); err != nil || len(answer.Entry) <= 100 {
		t.Fatalf("the session wrote %d resources (%v), want more than 100", len(answer.Entry), err)
	}
	last := answer.Entry[len(answer.Entry)-1].Response.Location
	if i := strings.Index(last, "/_history/"); i > 0 {
		last = last[:i]
	}
	if rec := send(s, "GET", "/fhir/"+last, ""); rec.Code != http.StatusOK {
		t.Fatalf("read %s = %d", last, rec.Code)
	}
	entries := chain(t, st)
	read := entries[len(entries)-1].ID
	rec = send(s, "GET", "/console/records?source=serenity-clinic-emr&record="+session["source"].(map[string]any)["recordId"].(string), "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), read) {
		t.Errorf("console record page = %d, want 200 listing the read of %s (AuditEvent %s)", rec.Code, last, read)
	}

	// A Patient written by 101 transactions: 101 receipts.
	rec = send(s, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"male"}`)
	var p struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.ID == "" {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	for i := range 101 {
		tx := fmt.Sprintf(`{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":%q,"gender":"male","birthDate":"1980-01-%02d"},"request":{"method":"PUT","url":"Patient/%s"}}]}`,
			p.ID, i%28+1, p.ID)
		if rec := send(s, "POST", "/fhir", tx); rec.Code != http.StatusOK {
			t.Fatalf("transaction %d = %d %s", i, rec.Code, rec.Body)
		}
	}
	rec = send(s, "GET", "/admin/lineage?resource=Patient/"+p.ID, "")
	var l struct{ Receipts []any }
	if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &l) != nil || len(l.Receipts) < 101 {
		t.Errorf("lineage of Patient/%s = %d, %d receipts; want 200 with 101 or more: %.300s", p.ID, rec.Code, len(l.Receipts), rec.Body)
	}
}

// TestAuditNamesDeleteOfNothing: a DELETE that deletes nothing (an id
// never used, one deleted already; another tenant's is answered alike)
// is answered 204 and its AuditEvent names the id it aimed at,
// unversioned, directly and in a batch: "who tried to delete this
// resource" finds it (an attack review: such an AuditEvent named only the
// request).
func TestAuditNamesDeleteOfNothing(t *testing.T) {
	s, st := auditServer(t)
	rec := send(s, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"male"}`)
	var p struct{ ID string }
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct{ name, method, target, body, want string }{
		{"deleted", "DELETE", "/fhir/Patient/" + p.ID, "", "Patient/" + p.ID + "/_history/2"},
		{"deleted already", "DELETE", "/fhir/Patient/" + p.ID, "", "Patient/" + p.ID},
		{"never used", "DELETE", "/fhir/Patient/never-used-1", "", "Patient/never-used-1"},
		{"in a batch", "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"DELETE","url":"Observation/never-used-2"}}]}`, "Observation/never-used-2"},
	} {
		if rec := send(s, tc.method, tc.target, tc.body); rec.Code >= 300 {
			t.Fatalf("%s: = %d %s", tc.name, rec.Code, rec.Body)
		}
		if got := lastAudit(t, st); !slices.Contains(got.Refs, tc.want) {
			t.Errorf("%s: AuditEvent names %v, want %s", tc.name, got.Refs, tc.want)
		}
	}
}

// sqliteServer is a server over a fresh SQLite store, with one destination,
// "ehr", that accepts every record when routed.
func sqliteServer(t *testing.T, routed bool) (*Server, *sqlite.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := app.Config{Store: st}
	if routed {
		cfg.Routes = []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}
	}
	return testServer(t, cfg, Config{RateLimit: -1}), st
}
