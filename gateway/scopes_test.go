package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// scopeClients are the clients of the conditional-criteria and export scope
// tests, all of clinic-a: full may do everything; obs is an Observation-only
// integration (a vitals device); obsWrite writes Observations and may not
// search them; ingester only sends native records.
var scopeClients = []auth.Client{
	{ID: "full", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
	{ID: "obs", Tenant: "clinic-a", Scopes: []string{"system/Observation.cruds"}},
	{ID: "obsWrite", Tenant: "clinic-a", Scopes: []string{"system/Observation.cud"}},
	{ID: "ingester", Tenant: "clinic-a", Scopes: []string{auth.ScopeIngest}},
}

// refused checks that rec is the 403 insufficient_scope answer naming
// scope (at location, when not "").
func refused(t *testing.T, rec *httptest.ResponseRecorder, scope, location string) {
	t.Helper()
	code, body := rec.Code, rec.Body.String()
	if code != http.StatusForbidden {
		t.Fatalf("status = %d, want 403 naming %s; body %s", code, scope, body)
	}
	if h := rec.Header().Get("WWW-Authenticate"); !strings.Contains(h, "insufficient_scope") {
		t.Errorf("WWW-Authenticate = %q, want insufficient_scope", h)
	}
	var oo struct {
		Issue []struct {
			Details    struct{ Text string }
			Expression []string
		}
	}
	if err := json.Unmarshal([]byte(body), &oo); err != nil || len(oo.Issue) == 0 {
		t.Fatalf("not an OperationOutcome: %s", body)
	}
	if !strings.Contains(oo.Issue[0].Details.Text, scope) {
		t.Errorf("text = %q, want it to name %s", oo.Issue[0].Details.Text, scope)
	}
	if location != "" && (len(oo.Issue[0].Expression) != 1 || oo.Issue[0].Expression[0] != location) {
		t.Errorf("expression = %v, want [%s]", oo.Issue[0].Expression, location)
	}
}

// TestConditionalScopes: resolving conditional criteria against a type is a
// search of that type, whose answer the client learns (the match's id, or
// whether there is one), so it needs search (s) on that type and read or
// search on every type a chain or _has in them goes through, as the search
// does: a conditional reference in a Bundle, If-None-Exist, a conditional
// update or patch, a Bundle entry's ifNoneExist and conditional url. The
// refusal is the same whether the criteria would match or not, and nothing
// is written. (Before, an Observation-only client tested a name and birth
// date against the Patients through a conditional reference, 201 or 400,
// and got the matching Patient's id.) A native ingest's own conditional
// entries are the gateway's criteria: a client with gateway/ingest only
// still stores its records.
func TestConditionalScopes(t *testing.T) {
	h, _, tok := clientsServer(t, scopeClients)
	rec := req(h, "POST", "/fhir/Patient", patientJSON, tok["full"]) // Testpatient, 1980-02-03
	if rec.Code != http.StatusCreated {
		t.Fatalf("create Patient = %d %s", rec.Code, rec.Body)
	}
	obsCode := `{"system":"http://loinc.org","code":"8867-4"}`
	rec = req(h, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"coding":[`+obsCode+`]}}`, tok["full"])
	if rec.Code != http.StatusCreated {
		t.Fatalf("create Observation = %d %s", rec.Code, rec.Body)
	}
	observations := func() int {
		t.Helper()
		rec := req(h, "GET", "/fhir/Observation?_summary=count", "", tok["full"])
		n, ok := decode(t, rec)["total"].(float64)
		if !ok {
			t.Fatalf("count = %d %s", rec.Code, rec.Body)
		}
		return int(n)
	}

	// A Bundle whose Observation references by criteria.
	bundle := func(kind, ref string) string {
		at := `"subject":{"reference":"` + ref + `"}`
		if strings.HasPrefix(ref, "Observation?") { // an Observation's subject is no Observation (reference-target)
			at = `"hasMember":[{"reference":"` + ref + `"}]`
		}
		return `{"resourceType":"Bundle","type":"` + kind + `","entry":[{"resource":{"resourceType":"Observation","status":"final",` +
			`"code":{"text":"probe"},` + at + `},"request":{"method":"POST","url":"Observation"}}]}`
	}
	// A Bundle of one entry with request (and the Observation as resource).
	entry := func(kind, request string) string {
		return `{"resourceType":"Bundle","type":"` + kind + `","entry":[{"resource":{"resourceType":"Observation","status":"final",` +
			`"code":{"coding":[` + obsCode + `]}},"request":` + request + `}]}`
	}
	const (
		matching = "Patient?family=Testpatient&birthdate=1980-02-03"
		other    = "Patient?family=Testpatient&birthdate=1980-02-04"
	)
	before := observations()
	for _, tc := range []struct {
		name, client, method, target, body, header string
		scope, location                            string // the refusal; "" for an answer that is not refused
	}{
		// Conditional references: a search of Patient.
		{"reference, matching", "obs", "POST", "/fhir", bundle("transaction", matching), "", "system/Patient.s", "Bundle.entry[0]"},
		{"reference, matching none", "obs", "POST", "/fhir", bundle("transaction", other), "", "system/Patient.s", "Bundle.entry[0]"},
		{"reference by birth date", "obs", "POST", "/fhir", bundle("transaction", "Patient?birthdate=1980-02-03"), "", "system/Patient.s", "Bundle.entry[0]"},
		{"reference as an absolute URL", "obs", "POST", "/fhir", bundle("transaction", "http://example.com/fhir/"+matching), "", "system/Patient.s", "Bundle.entry[0]"},
		// A reference to the client's own type, through a chain to Patient.
		{"reference with a chain", "obs", "POST", "/fhir", bundle("transaction", "Observation?code=8867-4&subject:Patient.family=Testpatient"), "",
			"system/Patient.s", "Bundle.entry[0]"},
		// The client's own type, which it may not search.
		{"reference to a type without s", "obsWrite", "POST", "/fhir", bundle("transaction", "Observation?code=8867-4"), "",
			"system/Observation.s", "Bundle.entry[0]"},
		// Conditional create, update and patch: a search of their type.
		{"If-None-Exist without s", "obsWrite", "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"coding":[` + obsCode + `]}}`,
			"If-None-Exist: code=8867-4", "system/Observation.s", ""},
		{"If-None-Exist with a chain", "obs", "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
			"If-None-Exist: subject:Patient.family=Testpatient", "system/Patient.s", ""},
		{"conditional update without s", "obsWrite", "PUT", "/fhir/Observation?code=8867-4", `{"resourceType":"Observation","status":"final","code":{"coding":[` + obsCode + `]}}`,
			"", "system/Observation.s", ""},
		{"conditional update with _has", "obs", "PUT", "/fhir/Observation?_has:Provenance:target:agent=x", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`,
			"", "system/Provenance.s", ""},
		{"conditional patch without s", "obsWrite", "PATCH", "/fhir/Observation?code=8867-4", `[{"op":"replace","path":"/status","value":"amended"}]`,
			"Content-Type: application/json-patch+json", "system/Observation.s", ""},
		// The same in Bundle entries, transaction and batch.
		{"entry ifNoneExist", "obsWrite", "POST", "/fhir", entry("transaction", `{"method":"POST","url":"Observation","ifNoneExist":"code=8867-4"}`), "",
			"system/Observation.s", "Bundle.entry[0]"},
		{"entry conditional url", "obsWrite", "POST", "/fhir", entry("transaction", `{"method":"PUT","url":"Observation?code=8867-4"}`), "",
			"system/Observation.s", "Bundle.entry[0]"},
		{"entry ifNoneExist with a chain", "obs", "POST", "/fhir", entry("transaction", `{"method":"POST","url":"Observation","ifNoneExist":"subject.family=Testpatient"}`), "",
			"system/Patient.s", "Bundle.entry[0]"},

		// Allowed: the scopes cover the search.
		{"reference, full", "full", "POST", "/fhir", bundle("transaction", matching), "", "", ""},
		{"If-None-Exist, obs", "obs", "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"coding":[` + obsCode + `]}}`,
			"If-None-Exist: code=8867-4", "", ""},
		{"entry conditional url, obs", "obs", "POST", "/fhir", entry("transaction", `{"method":"PUT","url":"Observation?code=8867-4"}`), "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := []string{tok[tc.client]}
			if tc.header != "" {
				headers = append(headers, tc.header)
			}
			rec := req(h, tc.method, tc.target, tc.body, headers...)
			if tc.scope == "" {
				if rec.Code >= 300 {
					t.Fatalf("%s %s = %d %s, want it done", tc.method, tc.target, rec.Code, rec.Body)
				}
				return
			}
			refused(t, rec, tc.scope, tc.location)
		})
	}
	if got := observations() - before; got != 1 { // the one full's reference created; the updates changed one
		t.Errorf("%d Observations written, want 1 (only the allowed reference's)", got)
	}

	// In a batch, the entry fails alone, the same whether it would match.
	for _, ref := range []string{matching, other} {
		rec := req(h, "POST", "/fhir", bundle("batch", ref), tok["obs"])
		if rec.Code != http.StatusOK {
			t.Fatalf("batch = %d %s", rec.Code, rec.Body)
		}
		var b struct {
			Entry []struct {
				Response struct {
					Status   string
					Outcome  json.RawMessage
					Location string
				}
			}
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Entry) != 1 {
			t.Fatalf("batch response: %s", rec.Body)
		}
		if r := b.Entry[0].Response; !strings.HasPrefix(r.Status, "403") || !strings.Contains(string(r.Outcome), "system/Patient.s") {
			t.Errorf("batch entry referencing %s = %s %s, want 403 naming system/Patient.s", ref, r.Status, r.Outcome)
		}
	}

	// A native ingest's conditional entries are the gateway's own.
	body, err := os.ReadFile("../schemas/examples/session/esketamine-nasal-session.json")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // stored, then the same record again (its criteria match)
		if rec := req(h, "POST", "/ingest/session", string(body), tok["ingester"], "Content-Type: application/json"); rec.Code != http.StatusOK {
			t.Fatalf("ingest with gateway/ingest only = %d %s", rec.Code, rec.Body)
		}
	}
}

// TestExportScopes: a bulk export's _typeFilter is a search, and a _has in
// it looks into another type, which needs read or search on it as the same
// search does (before, Observation?_has:AuditEvent:... exported the
// Observations with matching AuditEvents to a client that may not search
// AuditEvents). A refused _type or _typeFilter value is named by its
// parameter, never quoted: it may be anything the client typed, a name.
func TestExportScopes(t *testing.T) {
	h, _, tok := clientsServer(t, scopeClients)
	export := func(client, query string) (int, string) {
		t.Helper()
		rec := req(h, "GET", "/fhir/$export?"+query, "", tok[client], "Prefer: respond-async")
		return rec.Code, rec.Body.String()
	}
	filter := func(f string) string { return "_type=Observation&_typeFilter=" + url.QueryEscape(f) }
	for _, tc := range []struct {
		client, query, scope string
	}{
		{"obs", filter("Observation?_has:AuditEvent:entity:date=gt2020-01-01"), "system/AuditEvent.s"},
		{"obs", filter("Observation?_has:Provenance:target:recorded=gt2020-01-01"), "system/Provenance.s"},
		{"obs", filter("Observation?code=8867-4,Observation?_has:Provenance:target:recorded=gt2020-01-01"), "system/Provenance.s"},
	} {
		t.Run(tc.query, func(t *testing.T) {
			rec := req(h, "GET", "/fhir/$export?"+tc.query, "", tok[tc.client], "Prefer: respond-async")
			refused(t, rec, tc.scope, "")
			if code, body := export("full", tc.query); code != http.StatusAccepted {
				t.Errorf("the same export for system/*.cruds = %d %s, want 202", code, body)
			}
		})
	}
	if code, body := export("obs", filter("Observation?code=8867-4")); code != http.StatusAccepted {
		t.Errorf("a _typeFilter within the scopes = %d %s, want 202", code, body)
	}

	const phi = "Bravopatient-MRN-777"
	for _, tc := range []struct {
		query, rule, expression string
	}{
		{"_type=" + phi, "export-type-unknown", "_type"},
		{"_type=Observation," + phi, "export-type-unknown", "_type"},
		{"_type=Patient&_typeFilter=" + url.QueryEscape(phi+"?name=x"), "export-typefilter-invalid", "_typeFilter"},
		{"_typeFilter=" + url.QueryEscape(phi), "export-typefilter-invalid", "_typeFilter"},
		{phi + "=1", "export-parameter-unsupported", ""},
	} {
		t.Run(tc.query, func(t *testing.T) {
			rec := req(h, "GET", "/fhir/$export?"+tc.query, "", tok["full"], "Prefer: respond-async")
			assertOutcome(t, rec, http.StatusBadRequest, tc.rule, "")
			var oo struct {
				Issue []struct{ Expression []string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || len(oo.Issue) == 0 {
				t.Fatalf("not an OperationOutcome: %s", rec.Body)
			}
			if got := oo.Issue[0].Expression; tc.expression != "" && (len(got) != 1 || got[0] != tc.expression) {
				t.Errorf("expression = %v, want [%s]", got, tc.expression)
			}
			if strings.Contains(rec.Body.String(), "Bravopatient") {
				t.Errorf("the refusal quotes the request: %s", rec.Body)
			}
		})
	}
}

// TestGranularHiddenIDs: with one tenant (update-as-create on), a client
// whose granular scopes hide the clinic's psychiatric Observations gets,
// for a write naming the id of one (live or deleted), the answer an id
// nobody holds gets, and writes nothing: before, If-None-Exist _id=<hidden>
// was 412 conditional-id-taken where an unused id was 201, a PUT to the
// hidden id 404 where an unused one was 201, and a PUT to the deleted
// one took over its id and history (201, W/"3").
func TestGranularHiddenIDs(t *testing.T) {
	const vital = "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
	clients := []auth.Client{
		{ID: "full", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
		{ID: "hcond", Tenant: "clinic-a", Scopes: []string{"system/Observation.cruds?" + vital}},
	}
	h, _, tok := clientsServerWith(t, clients, app.Config{UpdateCreate: true})
	obs := func(category, id string) string {
		idField := ""
		if id != "" {
			idField = `"id":"` + id + `",`
		}
		return `{"resourceType":"Observation",` + idField + `"status":"final","category":[{"coding":[{"system":` +
			`"http://terminology.hl7.org/CodeSystem/observation-category","code":"` + category + `"}]}],` +
			`"code":{"coding":[{"system":"http://loinc.org","code":"44261-6"}]}}`
	}
	create := func() string {
		rec := req(h, "POST", "/fhir/Observation", obs("survey", ""), tok["full"])
		if rec.Code != http.StatusCreated {
			t.Fatalf("create the survey = %d %s", rec.Code, rec.Body)
		}
		return decode(t, rec)["id"].(string)
	}
	phq9, deleted := create(), create()
	if rec := req(h, "DELETE", "/fhir/Observation/"+deleted, "", tok["full"]); rec.Code != http.StatusNoContent {
		t.Fatalf("delete = %d %s", rec.Code, rec.Body)
	}
	answer := func(rec *httptest.ResponseRecorder) string {
		if rec.Code < 300 {
			return strconv.Itoa(rec.Code)
		}
		var oo struct {
			Issue []struct{ Diagnostics, Code string }
		}
		_ = json.Unmarshal(rec.Body.Bytes(), &oo)
		var rules []string
		for _, i := range oo.Issue {
			rules = append(rules, i.Code)
		}
		return strconv.Itoa(rec.Code) + " " + strings.Join(rules, ",") + " " + rec.Body.String()
	}
	for i, tc := range []struct {
		name string
		do   func(id string) *httptest.ResponseRecorder
	}{
		{"If-None-Exist _id", func(id string) *httptest.ResponseRecorder {
			return req(h, "POST", "/fhir/Observation", obs("vital-signs", ""), tok["hcond"], "If-None-Exist: _id="+id)
		}},
		{"PUT", func(id string) *httptest.ResponseRecorder {
			return req(h, "PUT", "/fhir/Observation/"+id, obs("vital-signs", id), tok["hcond"])
		}},
		{"conditional PUT _id", func(id string) *httptest.ResponseRecorder {
			return req(h, "PUT", "/fhir/Observation?_id="+id, obs("vital-signs", ""), tok["hcond"])
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unused := "unused-" + strconv.Itoa(i)
			want := answer(tc.do(unused))
			if !strings.HasPrefix(want, "404") {
				t.Errorf("%s of an unused id = %s, want 404 (a client whose scopes hide resources chooses no ids)", tc.name, want)
			}
			for _, id := range []string{phq9, deleted} {
				if got := strings.ReplaceAll(answer(tc.do(id)), id, unused); got != want {
					t.Errorf("%s of a hidden id = %s, of an unused one %s: want the same", tc.name, got, want)
				}
			}
			if rec := req(h, "GET", "/fhir/Observation/"+deleted+"/_history", "", tok["full"]); !strings.Contains(rec.Body.String(), `"total":2`) {
				t.Errorf("the deleted survey's history = %s, want its 2 versions only", rec.Body)
			}
		})
	}
}

// TestValidateNeedsCreateScope: $validate in mode create (at the type or
// the system level) needs the caller's create scope on the type, as the
// create it checks does: a client that may only read Observations is
// refused for a Patient, 403 naming the scope (an attacker's review: any
// client could have the gateway parse and check large bodies of any
// type).
func TestValidateNeedsCreateScope(t *testing.T) {
	h, _, tok := clientsServer(t, []auth.Client{
		{ID: "reader", Tenant: "clinic-a", Scopes: []string{"system/Observation.rs"}},
		{ID: "writer", Tenant: "clinic-a", Scopes: []string{"system/Patient.c"}},
		{ID: "patient-reader", Tenant: "clinic-a", Scopes: []string{"system/Patient.r"}},
	})
	for _, tc := range []struct {
		client, target string
		code           int
		scope          string // the scope a 403 names
	}{
		{"reader", "/fhir/Patient/$validate?mode=create", http.StatusForbidden, "system/Patient.c"},
		{"reader", "/fhir/$validate?mode=create", http.StatusForbidden, "system/Patient.c"},
		{"writer", "/fhir/Patient/$validate?mode=create", http.StatusOK, ""},
		{"writer", "/fhir/$validate?mode=create", http.StatusOK, ""},
		// General validation (no mode) needs a scope on the type: read,
		// create or update.
		{"reader", "/fhir/Patient/$validate", http.StatusForbidden, "system/Patient.r"},
		{"reader", "/fhir/$validate", http.StatusForbidden, "system/Patient.r"},
		{"writer", "/fhir/Patient/$validate", http.StatusOK, ""},
		{"patient-reader", "/fhir/$validate", http.StatusOK, ""},
	} {
		rec := req(h, "POST", tc.target, patientJSON, tok[tc.client])
		if rec.Code != tc.code {
			t.Errorf("%s POST %s = %d %s, want %d", tc.client, tc.target, rec.Code, rec.Body, tc.code)
		}
		if tc.code == http.StatusForbidden && !strings.Contains(rec.Header().Get("WWW-Authenticate"), tc.scope) {
			t.Errorf("%s POST %s: WWW-Authenticate %q, want it to name %s", tc.client, tc.target, rec.Header().Get("WWW-Authenticate"), tc.scope)
		}
	}
}

// TestChainNamesEveryScope: a chain without a :Type goes into every type
// its reference may target, and its 403 names every scope it lacks, not
// only the first (an attacker's review: a client that added the one named
// met the next 403).
func TestChainNamesEveryScope(t *testing.T) {
	h, _, tok := clientsServer(t, []auth.Client{{ID: "obs", Tenant: "clinic-a", Scopes: []string{"system/Observation.rs"}}})
	rec := req(h, "GET", "/fhir/Observation?subject.name=x", "", tok["obs"])
	if rec.Code != http.StatusForbidden {
		t.Fatalf("untyped chain = %d %s, want 403", rec.Code, rec.Body)
	}
	for _, scope := range []string{"system/Patient.s", "system/Location.s"} { // the types the gateway serves
		if !strings.Contains(rec.Body.String(), scope) || !strings.Contains(rec.Header().Get("WWW-Authenticate"), scope) {
			t.Errorf("the 403 does not name %s: %s / %s", scope, rec.Body, rec.Header().Get("WWW-Authenticate"))
		}
	}
	if rec := req(h, "GET", "/fhir/Observation?subject:Patient.name=x", "", tok["obs"]); rec.Code != http.StatusForbidden ||
		!strings.Contains(rec.Body.String(), "(system/Patient.s is needed)") {
		t.Errorf("typed chain = %d %s, want 403 naming system/Patient.s alone", rec.Code, rec.Body)
	}
}
