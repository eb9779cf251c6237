package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// sqliteServer is the gateway on a fresh SQLite database, which the test
// may also reach directly.
func sqliteServer(t testing.TB, acfg app.Config) (http.Handler, store.Store) {
	t.Helper()
	st := tempSQLite(t, sqlite.Options{})
	acfg.Store = st
	return newServer(t, acfg, gateway.Config{}), st
}

// count is the total of a search.
func count(t *testing.T, h http.Handler, query string) int {
	t.Helper()
	rec := req(h, "GET", "/fhir/"+query+"&_summary=count", "")
	total, ok := decode(t, rec)["total"].(float64)
	if rec.Code != 200 || !ok {
		t.Fatalf("GET %s = %d %s", query, rec.Code, rec.Body)
	}
	return int(total)
}

// TestConditionalByID: conditional create and update agree on _id. A
// conditional update by _id that matches nothing creates the resource with
// that id, which the same criteria then find; a conditional create by _id
// finds it; repeating either writes no duplicate; and a conditional key an
// earlier write left behind cannot block an _id match.
func TestConditionalByID(t *testing.T) {
	h, st := sqliteServer(t, app.Config{UpdateCreate: true})
	const patient = `{"resourceType":"Patient","gender":"female"}`

	rec := req(h, "PUT", "/fhir/Patient?_id=pat-x", patient)
	if rec.Code != 201 || decode(t, rec)["id"] != "pat-x" {
		t.Fatalf("PUT Patient?_id=pat-x = %d %s, want 201 creating Patient/pat-x", rec.Code, rec.Body)
	}
	rec = req(h, "POST", "/fhir/Patient", patient, "If-None-Exist: _id=pat-x")
	if rec.Code != 200 || decode(t, rec)["id"] != "pat-x" {
		t.Errorf("POST If-None-Exist _id=pat-x = %d %s, want 200 with Patient/pat-x", rec.Code, rec.Body)
	}
	if rec := req(h, "PUT", "/fhir/Patient?_id=pat-x", patient); rec.Code != 200 {
		t.Errorf("PUT Patient?_id=pat-x again = %d %s, want 200 (an update)", rec.Code, rec.Body)
	}
	if n := count(t, h, "Patient?_id=pat-x"); n != 1 {
		t.Errorf("Patient?_id=pat-x finds %d, want 1", n)
	}

	// POST first: If-None-Exist by _id creates that id, and a repeat finds it.
	for i, want := range []int{201, 200} {
		rec := req(h, "POST", "/fhir/Patient", patient, "If-None-Exist: _id=pat-y")
		if rec.Code != want || decode(t, rec)["id"] != "pat-y" {
			t.Errorf("POST If-None-Exist _id=pat-y #%d = %d %s, want %d Patient/pat-y", i+1, rec.Code, rec.Body, want)
		}
	}

	// A key left by an earlier write (as the gateway wrote before this fix:
	// the _id criteria's key held by a server-id resource) blocks nothing.
	err := st.Write(context.Background(), func(tx store.Tx) error { return tx.ClaimKey("Patient?_id=pat-z", "Patient", "other") })
	if err != nil {
		t.Fatal(err)
	}
	if rec := req(h, "POST", "/fhir/Patient", patient, "If-None-Exist: _id=pat-z"); rec.Code != 201 {
		t.Errorf("POST If-None-Exist _id=pat-z over a stale key = %d %s, want 201", rec.Code, rec.Body)
	}

	// What cannot be created is refused, and nothing is written.
	before := count(t, h, "Patient?_count=0")
	tests := []struct {
		name, method, target, body, header, rule string
		status                                   int
	}{
		{"body id differs from _id", "PUT", "/fhir/Patient?_id=pat-w", `{"resourceType":"Patient","id":"other"}`, "", "id-mismatch", 400},
		{"several ids", "PUT", "/fhir/Patient?_id=a,b", patient, "", "conditional-id-ambiguous", 400},
		{"several ids, create", "POST", "/fhir/Patient", patient, "If-None-Exist: _id=a,b", "conditional-id-ambiguous", 400},
		{"id held, other criteria unmatched", "PUT", "/fhir/Patient?_id=pat-x&gender=male", patient, "", "conditional-id-taken", 412},
		{"resource does not match its criteria", "PUT", "/fhir/Patient?identifier=http://x|1", patient, "", "conditional-criteria-unmatched", 400},
		{"created resource does not match", "POST", "/fhir/Patient", patient, "If-None-Exist: identifier=http://x|1", "conditional-criteria-unmatched", 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.header != "" {
				headers = append(headers, tc.header)
			}
			assertOutcome(t, req(h, tc.method, tc.target, tc.body, headers...), tc.status, tc.rule, "")
		})
	}
	if after := count(t, h, "Patient?_count=0"); after != before {
		t.Errorf("refused writes changed the Patients: %d before, %d after", before, after)
	}
	// Two entries of one transaction with the same criteria are one
	// resource: created by the first, matched by the second.
	p1 := `{"resourceType":"Patient","identifier":[{"system":"http://x","value":"2"}]}`
	entry := `{"fullUrl":"urn:uuid:0b8a1c52-7a0c-4d33-9f4e-9d1b2f8f6a1%d","resource":` + p1 +
		`,"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://x|2"}}`
	rec = req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+
		fmt.Sprintf(entry, 1)+","+fmt.Sprintf(entry, 2)+`]}`)
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"status":"201 Created"`) || !strings.Contains(rec.Body.String(), `"status":"200 OK"`) {
		t.Errorf("two POSTs with the same criteria = %d %s, want 201 then 200", rec.Code, rec.Body)
	}
	if n := count(t, h, "Patient?identifier=http://x|2"); n != 1 {
		t.Errorf("two POSTs with the same criteria made %d Patients, want 1", n)
	}
	// A resource that does match its criteria is created once.
	matching := `{"resourceType":"Patient","identifier":[{"system":"http://x","value":"1"}]}`
	for i, want := range []int{201, 200} {
		if rec := req(h, "PUT", "/fhir/Patient?identifier=http://x|1", matching); rec.Code != want {
			t.Errorf("PUT by identifier #%d = %d %s, want %d", i+1, rec.Code, rec.Body, want)
		}
	}
}

// TestClientChosenIDs: without UpdateCreate (several tenants) a client
// cannot create a resource with an id it chooses, by any way, and the
// answer is the one a foreign id gets.
func TestClientChosenIDs(t *testing.T) {
	h, _ := sqliteServer(t, app.Config{})
	const patient = `{"resourceType":"Patient","id":"mine","gender":"female"}`
	for _, tc := range []struct{ method, target, body, header string }{
		{"PUT", "/fhir/Patient/mine", patient, ""},
		{"PUT", "/fhir/Patient?_id=mine", patient, ""},
		{"PUT", "/fhir/Patient?gender=female", patient, ""},
		{"POST", "/fhir/Patient", patient, "If-None-Exist: _id=mine"},
		{"POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"resource":` + patient + `,"request":{"method":"PUT","url":"Patient/mine"}}]}`, ""},
	} {
		var headers []string
		if tc.header != "" {
			headers = append(headers, tc.header)
		}
		rec := req(h, tc.method, tc.target, tc.body, headers...)
		if tc.target == "/fhir" {
			if !strings.Contains(rec.Body.String(), `"status":"404`) || !strings.Contains(rec.Body.String(), "id-unavailable") {
				t.Errorf("batch PUT Patient/mine = %s, want a 404 id-unavailable entry", rec.Body)
			}
			continue
		}
		assertOutcome(t, rec, http.StatusNotFound, "id-unavailable", "")
	}
	// Server-chosen ids are as before.
	rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"male"}`)
	if rec.Code != 201 {
		t.Fatalf("create = %d", rec.Code)
	}
	id := decode(t, rec)["id"].(string)
	if rec := req(h, "PUT", "/fhir/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`","gender":"female"}`); rec.Code != 200 {
		t.Errorf("update of a server-id resource = %d %s", rec.Code, rec.Body)
	}
	if rec := req(h, "PUT", "/fhir/Patient?gender=other", `{"resourceType":"Patient","gender":"other"}`); rec.Code != 201 {
		t.Errorf("conditional update creating with a server id = %d %s", rec.Code, rec.Body)
	}
}

// TestDecimals: a decimal is stored only if it is stored and searched
// exactly; the others are refused when written and by $validate.
func TestDecimals(t *testing.T) {
	h := fhirServer(t)
	obs := func(v string) string {
		return `{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":` + v + `}}`
	}
	for _, v := range []string{"1e999", "1" + strings.Repeat("234567890", 44), "1e-400", "0.1000000000000000000000000001"} {
		before := count(t, h, "Observation?_count=0")
		assertOutcome(t, req(h, "POST", "/fhir/Observation", obs(v)), http.StatusBadRequest, "decimal-out-of-range", "")
		if after := count(t, h, "Observation?_count=0"); after != before {
			t.Errorf("decimal %.20s…: %d Observations before, %d after", v, before, after)
		}
		rec := req(h, "POST", "/fhir/Observation/$validate", obs(v))
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), "decimal-out-of-range") {
			t.Errorf("$validate of decimal %.20s… = %d %s, want the decimal-out-of-range issue", v, rec.Code, rec.Body)
		}
	}
	for _, v := range []string{"0.30000000000000004", "72.5", "1.50", "9.99e299", "-1e-300"} {
		if rec := req(h, "POST", "/fhir/Observation", obs(v)); rec.Code != 201 {
			t.Fatalf("POST decimal %s = %d %s", v, rec.Code, rec.Body)
		}
		if n := count(t, h, "Observation?value-quantity="+url.QueryEscape(v)); n != 1 {
			t.Errorf("value-quantity=%s finds %d, want the one stored", v, n)
		}
	}
}

// TestDecimalStringRefusedOnWrite: a decimal written as a JSON string
// ("1.50") is refused on every write with 400 element-type naming the
// element, as an integer or a boolean written as a string is: stored, it
// was served as invalid FHIR JSON and search took the value for missing.
// $validate still reports it as a warning only (the HL7 validator accepts
// it: case cs-order-prop-r4).
func TestDecimalStringRefusedOnWrite(t *testing.T) {
	h := fhirServer(t)
	const valueExpr = "Observation.valueQuantity.value"
	obs := func(id, v string) string {
		return `{"resourceType":"Observation",` + id + `"status":"final","code":{"text":"decstr"},"valueQuantity":{"value":` + v + `,"unit":"mg"}}`
	}
	if rec := req(h, "PUT", "/fhir/Observation/dec-1", obs(`"id":"dec-1",`, "2.5")); rec.Code != 201 {
		t.Fatalf("PUT a decimal number = %d %s", rec.Code, rec.Body)
	}
	fhirPathPatch := `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},` +
		`{"name":"path","valueString":"Observation.valueQuantity.value"},{"name":"value","valueDecimal":"1.50"}]}]}`
	entry := `{"resource":` + obs("", `"1.50"`) + `,"request":{"method":"POST","url":"Observation"}}`
	cases := []struct {
		name, method, target, body, expr string
		headers                          []string
	}{
		{"create", "POST", "/fhir/Observation", obs("", `"1.50"`), valueExpr, nil},
		{"update", "PUT", "/fhir/Observation/dec-1", obs(`"id":"dec-1",`, `"1.50"`), valueExpr, nil},
		{"JSON Patch result", "PATCH", "/fhir/Observation/dec-1", `[{"op":"replace","path":"/valueQuantity/value","value":"1.50"}]`, valueExpr,
			[]string{"Content-Type: application/json-patch+json"}},
		{"FHIRPath Patch value", "PATCH", "/fhir/Observation/dec-1", fhirPathPatch, "Parameters.parameter[0].part[2].valueDecimal", nil},
		{"transaction entry", "POST", "/fhir", txBundle(entry), "Bundle.entry[0].resource.ofType(Observation).valueQuantity.value", nil},
		{"extension", "POST", "/fhir/Patient", `{"resourceType":"Patient","extension":[{"url":"http://example.org/e","valueDecimal":"7"}]}`,
			"Patient.extension[0].valueDecimal", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := count(t, h, "Observation?_count=0")
			rec := req(h, c.method, c.target, c.body, c.headers...)
			assertOutcome(t, rec, http.StatusBadRequest, "element-type", "")
			var oo outcome
			_ = json.Unmarshal(rec.Body.Bytes(), &oo)
			if got := oo.Issue[0].Expression; len(got) != 1 || got[0] != c.expr {
				t.Errorf("expression = %v, want [%s]", got, c.expr)
			}
			if after := count(t, h, "Observation?_count=0"); after != before {
				t.Errorf("%d Observations before, %d after", before, after)
			}
		})
	}
	// A batch fails only the entry.
	b := decode(t, req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+entry+`]}`))
	resp := b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)
	issue := resp["outcome"].(map[string]any)["issue"].([]any)[0].(map[string]any)
	if !strings.HasPrefix(resp["status"].(string), "400") || fmt.Sprint(issue["expression"]) != "[Bundle.entry[0].resource.ofType(Observation).valueQuantity.value]" {
		t.Errorf("batch entry = %v, want 400 naming the element", resp)
	}
	// The stored version is unchanged, and found by its value.
	if n := count(t, h, "Observation?_id=dec-1&value-quantity=2.5"); n != 1 {
		t.Errorf("value-quantity=2.5 finds %d, want the stored version", n)
	}
	// $validate keeps it a warning.
	rec := req(h, "POST", "/fhir/Observation/$validate", obs("", `"1.50"`))
	var oo outcome
	_ = json.Unmarshal(rec.Body.Bytes(), &oo)
	if rec.Code != 200 || len(oo.Issue) == 0 || oo.Issue[0].Severity != "warning" || fmt.Sprint(oo.Issue[0].Expression) != "["+valueExpr+"]" {
		t.Errorf("$validate = %d %s, want a warning at %s", rec.Code, rec.Body, valueExpr)
	}
}

// TestClinicalInvariantsOnWrite: a write of a resource that breaks one of
// R4's clinical invariants is 400 under the invariant's key, naming the
// element; they were stored and forwarded (the table of every invariant is
// schemas/r4's TestInvariants).
func TestClinicalInvariantsOnWrite(t *testing.T) {
	h := fhirServer(t)
	const subject = `"subject":{"reference":"Patient/1"}`
	cases := []struct{ name, typ, body, rule, expr string }{
		{"allergy active and entered in error", "AllergyIntolerance", `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/1"},` +
			`"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},` +
			`"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-verification","code":"entered-in-error"}]}}`,
			"ait-2", "AllergyIntolerance"},
		{"abated condition still active", "Condition", `{"resourceType":"Condition",` + subject + `,` +
			`"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},"abatementDateTime":"2020-01-01"}`,
			"con-4", "Condition"},
		{"range low above high", "Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"},` +
			`"valueRange":{"low":{"value":5,"unit":"mg"},"high":{"value":1,"unit":"mg"}}}`, "rng-2", "Observation.valueRange"},
		{"duration without unit", "MedicationRequest", `{"resourceType":"MedicationRequest","status":"active","intent":"order",` + subject + `,` +
			`"medicationCodeableConcept":{"text":"k"},"dosageInstruction":[{"timing":{"repeat":{"duration":40}}}]}`,
			"tim-1", "MedicationRequest.dosageInstruction[0].timing.repeat"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, "POST", "/fhir/"+c.typ, c.body)
			assertOutcome(t, rec, http.StatusBadRequest, c.rule, "")
			var oo outcome
			_ = json.Unmarshal(rec.Body.Bytes(), &oo)
			if got := oo.Issue[0].Expression; len(got) != 1 || got[0] != c.expr {
				t.Errorf("expression = %v, want [%s]", got, c.expr)
			}
			if n := count(t, h, c.typ+"?_count=0"); n != 0 {
				t.Errorf("%d %s stored, want none", n, c.typ)
			}
		})
	}
}

// TestSearchLimits: a search beyond the limits is a 400 naming the limit
// (and only a parameter the gateway knows); within them it runs. How quick
// the refusal is, BenchmarkSearchLimitRefusal measures.
func TestSearchLimits(t *testing.T) {
	h, _ := sqliteServer(t, app.Config{})
	rep := func(kv string, n int) string { return strings.TrimSuffix(strings.Repeat(kv+"&", n), "&") }
	for _, q := range []string{rep("name=a", 300), rep("name=a", 1000), rep("birthdate=ge2000", 6),
		"_id=" + strings.TrimSuffix(strings.Repeat("a,", 101), ","), rep("Jane+Doe=1", 40)} {
		rec := req(h, "GET", "/fhir/Patient?"+q, "")
		assertOutcome(t, rec, http.StatusBadRequest, "search-limit-exceeded", "")
		if strings.Contains(rec.Body.String(), "Jane") {
			t.Errorf("the answer quotes an unknown parameter name: %s", rec.Body)
		}
	}
	if rec := req(h, "GET", "/fhir/Patient?"+rep("name=a", 5), ""); rec.Code != 200 {
		t.Errorf("5 repetitions = %d %s", rec.Code, rec.Body)
	}
	// Limits are configurable.
	h2, _ := sqliteServer(t, app.Config{SearchLimits: searchLimits(2)})
	assertOutcome(t, req(h2, "GET", "/fhir/Patient?name=a&name=b&name=c", ""), http.StatusBadRequest, "search-limit-exceeded", "")
	// A page may carry at most Included included resources.
	h3, _ := sqliteServer(t, app.Config{SearchLimits: search.Limits{Included: 1}})
	rec := req(h3, "POST", "/fhir/Patient", patientJSON)
	pid := decode(t, rec)["id"].(string)
	for range 2 {
		obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/` + pid + `"}}`
		if rec := req(h3, "POST", "/fhir/Observation", obs); rec.Code != 201 {
			t.Fatalf("create Observation = %d %s", rec.Code, rec.Body)
		}
	}
	assertOutcome(t, req(h3, "GET", "/fhir/Patient?_revinclude=Observation:subject", ""), http.StatusBadRequest, "search-limit-exceeded", "")
	if rec := req(h3, "GET", "/fhir/Observation?_include=Observation:subject", ""); rec.Code != 200 {
		t.Errorf("one included resource = %d %s", rec.Code, rec.Body)
	}
	// A search form is bounded like a query string.
	r := httptestForm("/fhir/Patient/_search", "name="+strings.Repeat("a", 70<<10))
	rec = httptestDo(h, r)
	assertOutcome(t, rec, http.StatusRequestEntityTooLarge, "search-form-too-large", "")
	// An unknown parameter is refused without being named.
	rec = req(h, "GET", "/fhir/Patient?Jane+Doe+1980=x", "")
	assertOutcome(t, rec, http.StatusBadRequest, "search-param-unknown", "")
	if strings.Contains(rec.Body.String(), "Jane") {
		t.Errorf("the answer quotes an unknown parameter name: %s", rec.Body)
	}
	rec = req(h, "GET", "/fhir/Patient?Jane+Doe=x&name=a", "", "Prefer: handling=lenient")
	if rec.Code != 200 || strings.Contains(rec.Body.String(), "Jane") {
		t.Errorf("lenient search with an unknown name = %d %s, want 200 without the name", rec.Code, rec.Body)
	}
}

// TestMetadataSearchLimits: the CapabilityStatement states the search
// limits the server applies (the configured ones), so that a client knows
// them before it meets search-limit-exceeded: _count's largest page, the
// parameters, occurrences and values of a search, the includes, and the
// :text/:contains values in all (search.MaxScanValues), and what it states
// is what a search meets.
func TestMetadataSearchLimits(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits search.Limits
		want   []string
	}{
		{"defaults", search.Limits{}, []string{
			fmt.Sprintf("_count at most %d", search.MaxCount),
			fmt.Sprintf("at most %d parameters", search.DefaultMaxParams),
			fmt.Sprintf("%d occurrences of one parameter", search.DefaultMaxRepeats),
			fmt.Sprintf("%d comma-separated values", search.DefaultMaxValues),
			fmt.Sprintf("%d _include and _revinclude", search.DefaultMaxIncludes),
			fmt.Sprintf("%d included resources", search.DefaultMaxIncluded),
			fmt.Sprintf("at most %d :text and :contains values", search.MaxScanValues),
		}},
		{"configured", search.Limits{Params: 12, Repeats: 2, Values: 7, Includes: 3, Included: 40}, []string{
			"at most 12 parameters", "2 occurrences of one parameter", "7 comma-separated values",
			"3 _include and _revinclude", "40 included resources",
			fmt.Sprintf("at most %d :text and :contains values", search.MaxScanValues),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, _ := sqliteServer(t, app.Config{SearchLimits: tc.limits})
			var cs struct {
				Rest []struct{ Documentation string }
			}
			if err := json.Unmarshal(req(h, "GET", "/fhir/metadata", "").Body.Bytes(), &cs); err != nil || len(cs.Rest) != 1 {
				t.Fatalf("metadata: %v, %d rest", err, len(cs.Rest))
			}
			var missing []string
			for _, w := range tc.want {
				if !strings.Contains(cs.Rest[0].Documentation, w) {
					missing = append(missing, w)
				}
			}
			if len(missing) > 0 {
				t.Errorf("rest.documentation does not say %q: %s", missing, cs.Rest[0].Documentation)
			}
		})
	}
	// The :text/:contains bound stated is the one a search meets (across
	// parameters and occurrences).
	h, _ := sqliteServer(t, app.Config{})
	values := func(n int) string { return strings.TrimSuffix(strings.Repeat("x,", n), ",") }
	half := search.MaxScanValues / 2
	if rec := req(h, "GET", "/fhir/Observation?code:text="+values(half)+"&category:text="+values(search.MaxScanValues-half), ""); rec.Code != http.StatusOK {
		t.Errorf("%d :text values = %d %s, want 200", search.MaxScanValues, rec.Code, rec.Body)
	}
	assertOutcome(t, req(h, "GET", "/fhir/Observation?code:text="+values(half)+"&category:text="+values(search.MaxScanValues-half+1), ""),
		http.StatusBadRequest, "search-limit-exceeded", "")
}

// searchLimits allows n repetitions of a parameter.
func searchLimits(n int) search.Limits { return search.Limits{Repeats: n} }

// httptestForm is a POST of an x-www-form-urlencoded body.
func httptestForm(target, body string) *http.Request {
	r := httptest.NewRequest("POST", target, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func httptestDo(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

// TestValidateUpdateAsPut: $validate mode=update gives the verdict a PUT
// of the same resource would: with several tenants (no update-as-create)
// an id the caller's tenant does not hold, another tenant's or an unused
// one, is 404 id-unavailable to the PUT and the id-unavailable issue to
// $validate, alike; the tenant's own resource is valid (p14 F4: $validate
// said valid where the PUT answered 404).
func TestValidateUpdateAsPut(t *testing.T) {
	h, _, tok := tenantsServer(t)
	created := func(token string) string {
		rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"female"}`, token)
		if rec.Code != http.StatusCreated {
			t.Fatalf("create = %d %s", rec.Code, rec.Body)
		}
		return decode(t, rec)["id"].(string)
	}
	own, foreign := created(tok["clinA"]), created(tok["clinB"])
	for _, tc := range []struct {
		name, id, rule string
	}{
		{"the tenant's own", own, ""},
		{"another tenant's", foreign, "id-unavailable"},
		{"an unused id", "unused-0001", "id-unavailable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"resourceType":"Patient","id":"` + tc.id + `","gender":"male"}`
			rec := req(h, "POST", "/fhir/Patient/"+tc.id+"/$validate?mode=update", body, tok["clinA"])
			var oo outcome
			_ = json.Unmarshal(rec.Body.Bytes(), &oo)
			var rules []string
			for _, i := range oo.Issue {
				if i.Severity == "error" && len(i.Details.Coding) > 0 {
					rules = append(rules, i.Details.Coding[0].Code)
				}
			}
			if rec.Code != http.StatusOK || (tc.rule == "") != (len(rules) == 0) || (tc.rule != "" && !slices.Contains(rules, tc.rule)) {
				t.Errorf("$validate mode=update = %d, errors %v, want %q", rec.Code, rules, tc.rule)
			}
			put := req(h, "PUT", "/fhir/Patient/"+tc.id, body, tok["clinA"])
			if want := map[bool]int{true: http.StatusOK, false: http.StatusNotFound}[tc.rule == ""]; put.Code != want {
				t.Errorf("PUT = %d %s, want %d", put.Code, put.Body, want)
			}
		})
	}
}
