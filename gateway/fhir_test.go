package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// tempSQLite is a fresh SQLite store in t's temporary directory, closed
// when t ends.
func tempSQLite(t testing.TB, opts sqlite.Options) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// fhirServer is the gateway on a fresh SQLite database.
func fhirServer(t *testing.T) http.Handler {
	t.Helper()
	st := tempSQLite(t, sqlite.Options{})
	// One tenant (development mode): clients may choose ids, as serve allows then.
	return newServer(t, app.Config{Store: st, UpdateCreate: true}, gateway.Config{})
}

// req sends a request with optional headers ("Name: value").
func req(h http.Handler, method, target, body string, headers ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if body != "" {
		r.Header.Set("Content-Type", "application/fhir+json")
	}
	for _, hv := range headers {
		k, v, _ := strings.Cut(hv, ":")
		r.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func decode(t *testing.T, rec *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, rec.Body)
	}
	return m
}

const patientJSON = `{"resourceType":"Patient","identifier":[{"system":"http://hospital.example/mrn","value":"M1"}],"name":[{"family":"Testpatient","given":["Ann"]}],"birthDate":"1980-02-03","gender":"female"}`

func TestCRUD(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient", patientJSON)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	if rec.Header().Get("ETag") != `W/"1"` || rec.Header().Get("Location") == "" || rec.Header().Get("Last-Modified") == "" {
		t.Errorf("create headers: %v", rec.Header())
	}
	p := decode(t, rec)
	id := p["id"].(string)
	if p["meta"].(map[string]any)["versionId"] != "1" {
		t.Errorf("meta = %v", p["meta"])
	}

	rec = req(h, "GET", "/fhir/Patient/"+id, "")
	if rec.Code != 200 || rec.Header().Get("ETag") != `W/"1"` {
		t.Fatalf("read = %d %v", rec.Code, rec.Header())
	}

	upd := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`","meta":{"versionId":"99"}`, 1)
	upd = strings.Replace(upd, "Ann", "Anne", 1)
	if rec = req(h, "PUT", "/fhir/Patient/"+id, upd, `If-Match: W/"7"`); rec.Code != http.StatusPreconditionFailed {
		t.Errorf("update with stale If-Match = %d, want 412", rec.Code)
	}
	rec = req(h, "PUT", "/fhir/Patient/"+id, upd, `If-Match: W/"1"`)
	if rec.Code != 200 || rec.Header().Get("ETag") != `W/"2"` {
		t.Fatalf("update = %d %v %s", rec.Code, rec.Header(), rec.Body)
	}
	if v := decode(t, rec)["meta"].(map[string]any)["versionId"]; v != "2" {
		t.Errorf("client-sent versionId was trusted: %v", v)
	}
	if rec = req(h, "GET", "/fhir/Patient/"+id+"/_history/1", ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"Ann"`) {
		t.Errorf("vread v1 = %d %s", rec.Code, rec.Body)
	}
	if rec = req(h, "PUT", "/fhir/Patient/other-id", upd); rec.Code != 400 {
		t.Errorf("PUT with an id differing from the URL = %d, want 400", rec.Code)
	}
	// update-as-create with a client id
	ci := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"client-chosen-1"`, 1)
	if rec = req(h, "PUT", "/fhir/Patient/client-chosen-1", ci); rec.Code != http.StatusCreated {
		t.Errorf("update-as-create = %d %s", rec.Code, rec.Body)
	}
	if rec = req(h, "DELETE", "/fhir/Patient/"+id, ""); rec.Code != http.StatusNoContent {
		t.Errorf("delete = %d", rec.Code)
	}
	if rec = req(h, "GET", "/fhir/Patient/"+id, ""); rec.Code != http.StatusGone {
		t.Errorf("read after delete = %d, want 410", rec.Code)
	}
	rec = req(h, "GET", "/fhir/Patient/"+id+"/_history", "")
	if b := decode(t, rec); rec.Code != 200 || b["type"] != "history" || b["total"].(float64) != 3 {
		t.Errorf("history = %d %s", rec.Code, rec.Body)
	}
	if rec = req(h, "GET", "/fhir/Patient/nope", ""); rec.Code != 404 {
		t.Errorf("read unknown = %d", rec.Code)
	}
	if rec = req(h, "POST", "/fhir/Patient", patientJSON, "Prefer: return=minimal"); rec.Code != 201 || rec.Body.Len() != 0 {
		t.Errorf("Prefer minimal = %d body %q", rec.Code, rec.Body)
	}
	if rec = req(h, "POST", "/fhir/Patient", patientJSON, "Prefer: return=OperationOutcome"); decode(t, rec)["resourceType"] != "OperationOutcome" {
		t.Errorf("Prefer OperationOutcome = %s", rec.Body)
	}
}

func TestBadWrites(t *testing.T) {
	h := fhirServer(t)
	tests := []struct {
		name, method, target, body string
		status                     int
		rule                       string
	}{
		{"type disagrees with URL", "POST", "/fhir/Observation", patientJSON, 400, "resource-type-mismatch"},
		{"syntax", "POST", "/fhir/Patient", `{"resourceType":"Patient",`, 400, "json-syntax"},
		{"duplicate key", "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"male","gender":"female"}`, 400, "json-duplicate-key"},
		{"unknown element", "POST", "/fhir/Patient", `{"resourceType":"Patient","favourite":"x"}`, 400, "element-unknown"},
		{"bad code", "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"f"}`, 400, "binding-required"},
		{"missing required", "POST", "/fhir/Observation", `{"resourceType":"Observation","code":{"text":"x"}}`, 400, "element-required"},
		{"unknown type", "POST", "/fhir/Nonsense", patientJSON, 404, "resource-type-unknown"},
		{"deep nesting", "POST", "/fhir/Patient", strings.Repeat(`{"a":`, 5000) + "1" + strings.Repeat("}", 5000), 400, "json-depth"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, tc.body)
			assertOutcome(t, rec, tc.status, tc.rule, "")
		})
	}
	// nothing was written
	if b := decode(t, req(h, "GET", "/fhir/Patient?_summary=count", "")); b["total"].(float64) != 0 {
		t.Errorf("bad writes left %v patients", b["total"])
	}
}

// TestConcurrentConditionalCreate: 50 identical conditional creates at once
// make exactly one resource.
func TestConcurrentConditionalCreate(t *testing.T) {
	h := fhirServer(t)
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: identifier=http://hospital.example/mrn|M1").Code
		}()
	}
	wg.Wait()
	created := 0
	for _, c := range codes {
		switch c {
		case 201:
			created++
		case 200:
		default:
			t.Errorf("conditional create answered %d", c)
		}
	}
	b := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|M1", ""))
	if created != 1 || b["total"].(float64) != 1 {
		t.Errorf("%d creates answered 201, %v patients stored; want exactly 1", created, b["total"])
	}
}

func txBundle(entries ...string) string {
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
}

const obsTmpl = `{"fullUrl":"urn:uuid:%s","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"%s"},"effectiveDateTime":"2026-03-02T09:00:00Z","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}},"request":{"method":"POST","url":"Observation"}}`

const patEntry = `{"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":` + patientJSON + `,"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://hospital.example/mrn|M1"}}`

func TestTransaction(t *testing.T) {
	h := fhirServer(t)
	body := txBundle(patEntry,
		fmt.Sprintf(obsTmpl, "22222222-2222-4222-8222-222222222222", "urn:uuid:11111111-1111-4111-8111-111111111111"))
	rec := req(h, "POST", "/fhir", body)
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	b := decode(t, rec)
	if b["type"] != "transaction-response" || len(b["entry"].([]any)) != 2 {
		t.Fatalf("response = %s", rec.Body)
	}
	loc := b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	pid := strings.Split(loc, "/")[1]
	obs := decode(t, req(h, "GET", "/fhir/Observation?subject=Patient/"+pid, ""))
	if obs["total"].(float64) != 1 {
		t.Errorf("urn:uuid reference not rewritten: %v", obs["total"])
	}
	// Same Bundle again: the patient matches (200), a new Observation.
	rec = req(h, "POST", "/fhir", body)
	st := decode(t, rec)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["status"]
	if st != "200 OK" {
		t.Errorf("repeated conditional create status = %v", st)
	}

	// Only links are rewritten to the new ids (http.html#trules): data of
	// type string (a result, a text, business identifiers) stays as sent.
	rec = req(h, "POST", "/fhir", txBundle(
		`{"fullUrl":"urn:uuid:55555555-5555-4555-8555-555555555555","resource":{"resourceType":"DocumentReference","status":"current","masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:55555555-5555-4555-8555-555555555555"},"content":[{"attachment":{"contentType":"text/plain","url":"urn:uuid:55555555-5555-4555-8555-555555555555"}}]},"request":{"method":"POST","url":"DocumentReference"}}`,
		`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"urn:uuid:55555555-5555-4555-8555-555555555555"},"valueString":"urn:uuid:55555555-5555-4555-8555-555555555555","identifier":[{"system":"http://ex/other","value":"urn:uuid:55555555-5555-4555-8555-555555555555"}],"derivedFrom":[{"reference":"urn:uuid:55555555-5555-4555-8555-555555555555"}]},"request":{"method":"POST","url":"Observation"}}`),
		"Prefer: return=representation")
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	ents := decode(t, rec)["entry"].([]any)
	doc := ents[0].(map[string]any)["resource"].(map[string]any)
	ob := ents[1].(map[string]any)["resource"].(map[string]any)
	self := "DocumentReference/" + doc["id"].(string)
	urn := "urn:uuid:55555555-5555-4555-8555-555555555555"
	for _, c := range []struct{ name, got, want string }{
		{"DocumentReference.masterIdentifier.value", doc["masterIdentifier"].(map[string]any)["value"].(string), urn},
		{"DocumentReference.content.attachment.url (url)", doc["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any)["url"].(string), self},
		{"Observation.code.text", ob["code"].(map[string]any)["text"].(string), urn},
		{"Observation.valueString", ob["valueString"].(string), urn},
		{"Observation.identifier.value", ob["identifier"].([]any)[0].(map[string]any)["value"].(string), urn},
		{"Observation.derivedFrom.reference", ob["derivedFrom"].([]any)[0].(map[string]any)["reference"].(string), self},
	} {
		if c.got != c.want {
			t.Errorf("after the transaction %s = %q, want %q", c.name, c.got, c.want)
		}
	}

	// A transaction whose last entry is invalid leaves no trace.
	bad := txBundle(
		`{"fullUrl":"urn:uuid:33333333-3333-4333-8333-333333333333","resource":{"resourceType":"Patient","identifier":[{"system":"x:y","value":"NEW"}]},"request":{"method":"POST","url":"Patient"}}`,
		`{"fullUrl":"urn:uuid:44444444-4444-4444-8444-444444444444","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:99999999-9999-4999-8999-999999999999"}},"request":{"method":"POST","url":"Observation"}}`)
	rec = req(h, "POST", "/fhir", bad)
	assertOutcome(t, rec, 400, "reference-unresolved", "")
	if !strings.Contains(rec.Body.String(), "Bundle.entry[1]") {
		t.Errorf("outcome does not name the failing entry: %s", rec.Body)
	}
	if n := decode(t, req(h, "GET", "/fhir/Patient?identifier=x:y|NEW", ""))["total"].(float64); n != 0 {
		t.Errorf("failed transaction wrote %v patients", n)
	}
}

// TestLargeTransaction: a transaction of hundreds of creates (rendered on
// several goroutines) stores every one with its reference rewritten; the
// same transaction failing at its last entry, after a search entry had the
// creates written to the database, leaves none of them.
func TestLargeTransaction(t *testing.T) {
	h := fhirServer(t)
	const n = 600
	bundle := func(tail ...string) string {
		entries := []string{patEntry}
		for i := range n {
			entries = append(entries, fmt.Sprintf(obsTmpl, fmt.Sprintf("22222222-2222-4222-8222-%012d", i), "urn:uuid:11111111-1111-4111-8111-111111111111"))
		}
		return txBundle(append(entries, tail...)...)
	}
	// GETs run last, in Bundle order: the search sees the creates (the
	// store writes them to the database first), the read fails.
	search := `{"request":{"method":"GET","url":"Observation?code=http://loinc.org|8867-4"}}`
	failing := `{"request":{"method":"GET","url":"Patient/not-there"}}`
	assertOutcome(t, req(h, "POST", "/fhir", bundle(search, failing)), 404, "resource-unknown", "")
	if got := decode(t, req(h, "GET", "/fhir/Observation?code=http://loinc.org|8867-4&_summary=count", ""))["total"]; got != 0.0 {
		t.Fatalf("the failed transaction left %v Observations", got)
	}
	rec := req(h, "POST", "/fhir", bundle())
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %.500s", rec.Code, rec.Body)
	}
	entries := decode(t, rec)["entry"].([]any)
	pid := strings.Split(entries[0].(map[string]any)["response"].(map[string]any)["location"].(string), "/")[1]
	ids := map[string]bool{}
	for _, e := range entries[1:] {
		resp := e.(map[string]any)["response"].(map[string]any)
		if resp["status"] != "201 Created" {
			t.Fatalf("entry status %v", resp["status"])
		}
		ids[strings.Split(resp["location"].(string), "/")[1]] = true
	}
	if len(ids) != n {
		t.Errorf("%d distinct Observation ids, want %d", len(ids), n)
	}
	if got := decode(t, req(h, "GET", "/fhir/Observation?subject=Patient/"+pid+"&_summary=count", ""))["total"]; got != float64(n) {
		t.Errorf("Observations of the patient: %v, want %d", got, n)
	}
}

func TestBatch(t *testing.T) {
	h := fhirServer(t)
	body := `{"resourceType":"Bundle","type":"batch","entry":[` + `{"resource":` + patientJSON + `,"request":{"method":"POST","url":"Patient"}},` +
		`{"resource":{"resourceType":"Patient","gender":"x"},"request":{"method":"POST","url":"Patient"}},` +
		`{"request":{"method":"GET","url":"Patient/does-not-exist"}}]}`
	rec := req(h, "POST", "/fhir", body)
	if rec.Code != 200 {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	var got []string
	for _, e := range decode(t, rec)["entry"].([]any) {
		got = append(got, e.(map[string]any)["response"].(map[string]any)["status"].(string))
	}
	if len(got) != 3 || got[0] != "201 Created" || !strings.HasPrefix(got[2], "404") {
		t.Errorf("batch statuses = %v", got)
	}
}

func TestSearchPaging(t *testing.T) {
	h := fhirServer(t)
	for i := range 7 {
		p := strings.Replace(patientJSON, `"M1"`, fmt.Sprintf(`"P%d"`, i), 1)
		if rec := req(h, "POST", "/fhir/Patient", p); rec.Code != 201 {
			t.Fatal(rec.Body)
		}
	}
	seen := map[string]bool{}
	next := "/fhir/Patient?family=testpat&_count=3"
	pages := 0
	for next != "" {
		b := decode(t, req(h, "GET", next, ""))
		if b["total"].(float64) != 7 {
			t.Fatalf("total = %v", b["total"])
		}
		for _, e := range b["entry"].([]any) {
			seen[e.(map[string]any)["fullUrl"].(string)] = true
		}
		next = ""
		for _, l := range b["link"].([]any) {
			if l.(map[string]any)["relation"] == "next" {
				u := l.(map[string]any)["url"].(string)
				next = u[strings.Index(u, "/fhir/"):]
			}
		}
		pages++
	}
	if len(seen) != 7 || pages != 3 {
		t.Errorf("paging saw %d resources over %d pages, want 7 over 3", len(seen), pages)
	}
	assertOutcome(t, req(h, "GET", "/fhir/Patient?shoe-size=42", ""), 400, "search-param-unknown", "")
	if rec := req(h, "GET", "/fhir/Patient?shoe-size=42", "", "Prefer: handling=lenient"); rec.Code != 200 {
		t.Errorf("lenient unknown param = %d", rec.Code)
	}
}

func TestMetadata(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "GET", "/fhir/metadata", "")
	b := decode(t, rec)
	if b["resourceType"] != "CapabilityStatement" || b["fhirVersion"] != "4.0.1" {
		t.Fatalf("metadata = %v", b)
	}
	if res := r4.New(r4.Options{}).Validate(rec.Body.Bytes()); !res.Valid() {
		t.Errorf("the CapabilityStatement is not valid R4: %+v", res.Issues)
	}
	// The gateway's own CodeSystem is a stored resource.
	if rec := req(h, "GET", "/fhir/CodeSystem/ketamine-gateway", ""); rec.Code != 200 {
		t.Errorf("CodeSystem read = %d", rec.Code)
	}
}

func TestGatewayProfiles(t *testing.T) {
	h := fhirServer(t)
	obs := `{"resourceType":"Observation","meta":{"profile":["https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs"]},` +
		`"identifier":[{"system":"urn:x","value":"1"}],"status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"vital-signs"}]}],` +
		`"code":{"text":"Heart rate"},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-03-02T09:00:00Z","valueQuantity":{"value":72,"unit":"/min","system":"http://unitsofmeasure.org","code":"/min"}}`
	assertOutcome(t, req(h, "POST", "/fhir/Observation", obs), http.StatusUnprocessableEntity, "profile.security-label", "")
	withLabels := strings.Replace(obs, `"meta":{`, `"meta":{"security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"},{"system":"http://terminology.hl7.org/CodeSystem/v3-Confidentiality","code":"R"}],`, 1)
	if rec := req(h, "POST", "/fhir/Observation", withLabels); rec.Code != http.StatusCreated {
		t.Errorf("profile-conformant Observation = %d %s", rec.Code, rec.Body)
	}
	noUnit := strings.Replace(withLabels, `"unit":"/min",`, "", 1)
	assertOutcome(t, req(h, "POST", "/fhir/Observation", noUnit), http.StatusUnprocessableEntity, "profile.vital-quantity", "")
}

func TestConditionalMultipleMatches(t *testing.T) {
	h := fhirServer(t)
	for range 2 {
		if rec := req(h, "POST", "/fhir/Patient", patientJSON); rec.Code != 201 {
			t.Fatal(rec.Body)
		}
	}
	assertOutcome(t, req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: identifier=http://hospital.example/mrn|M1"),
		http.StatusPreconditionFailed, "conditional-multiple-matches", "")
	assertOutcome(t, req(h, "PUT", "/fhir/Patient?identifier=http://hospital.example/mrn|M1", patientJSON),
		http.StatusPreconditionFailed, "conditional-multiple-matches", "")
	// Conditional update with no match creates; with one match updates.
	p2 := strings.Replace(patientJSON, `"M1"`, `"M2"`, 1)
	if rec := req(h, "PUT", "/fhir/Patient?identifier=http://hospital.example/mrn|M2", p2); rec.Code != 201 {
		t.Errorf("conditional update, no match = %d", rec.Code)
	}
	if rec := req(h, "PUT", "/fhir/Patient?identifier=http://hospital.example/mrn|M2", p2); rec.Code != 200 || rec.Header().Get("ETag") != `W/"2"` {
		t.Errorf("conditional update, one match = %d %v", rec.Code, rec.Header())
	}
	// A body id that differs from the resource the criteria select is a 400,
	// in a single request and in a transaction entry alike.
	p2id := strings.Replace(p2, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"someone-else"`, 1)
	assertOutcome(t, req(h, "PUT", "/fhir/Patient?identifier=http://hospital.example/mrn|M2", p2id), http.StatusBadRequest, "id-mismatch", "")
	assertOutcome(t, req(h, "POST", "/fhir", txBundle(`{"resource":`+p2id+`,"request":{"method":"PUT","url":"Patient?identifier=http://hospital.example/mrn|M2"}}`)),
		http.StatusBadRequest, "id-mismatch", "")
	// Escaped | in a token value.
	p3 := strings.Replace(patientJSON, `"M1"`, `"A|B"`, 1)
	if rec := req(h, "POST", "/fhir/Patient", p3); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	if b := decode(t, req(h, "GET", `/fhir/Patient?identifier=http://hospital.example/mrn|A\|B`, "")); b["total"].(float64) != 1 {
		t.Errorf("escaped | search found %v", b["total"])
	}
}

// TestTransactionConditionalLookups: the conditional entries of a
// transaction are looked up together (store.Tx.SearchEach), and each is
// decided as if searched in its turn: a match, a create, the same criteria
// twice deciding one resource, and, when several entries fail, the error
// of the first of them in the Bundle.
func TestTransactionConditionalLookups(t *testing.T) {
	h := fhirServer(t)
	patient := func(mrn string) string { return strings.Replace(patientJSON, `"M1"`, `"`+mrn+`"`, 1) }
	for _, mrn := range []string{"M1", "M1", "M3"} {
		if rec := req(h, "POST", "/fhir/Patient", patient(mrn)); rec.Code != 201 {
			t.Fatal(rec.Body)
		}
	}
	m3 := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|M3", ""))
	m3ID := m3["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	post := func(mrn, criteria string) string {
		return `{"resource":` + patient(mrn) + `,"request":{"method":"POST","url":"Patient","ifNoneExist":"` + criteria + `"}}`
	}
	put := func(mrn, criteria string) string {
		return `{"resource":` + patient(mrn) + `,"request":{"method":"PUT","url":"Patient?` + criteria + `"}}`
	}
	rec := req(h, "POST", "/fhir", txBundle(
		post("M3", "identifier=http://hospital.example/mrn|M3"),
		post("M5", "identifier=http://hospital.example/mrn|M5"),
		put("M4", "identifier=http://hospital.example/mrn|M4"),
		post("M5", "identifier=http://hospital.example/mrn|M5"),
	))
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	var got []string
	for _, e := range decode(t, rec)["entry"].([]any) {
		r := e.(map[string]any)["response"].(map[string]any)
		got = append(got, r["status"].(string)+" "+strings.Join(strings.Split(r["location"].(string), "/")[:2], "/"))
	}
	m5 := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|M5", ""))
	m4 := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|M4", ""))
	if m5["total"].(float64) != 1 || m4["total"].(float64) != 1 {
		t.Fatalf("stored: M5 %v, M4 %v patients; want 1 each", m5["total"], m4["total"])
	}
	m5ID := m5["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	m4ID := m4["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	want := []string{"200 OK Patient/" + m3ID, "201 Created Patient/" + m5ID, "201 Created Patient/" + m4ID, "200 OK Patient/" + m5ID}
	if !slices.Equal(got, want) {
		t.Errorf("responses:\n got %q\nwant %q", got, want)
	}

	// Two failing entries: the first in the Bundle is the one reported.
	for _, c := range []struct {
		name, rule string
		status     int
		entries    []string
	}{
		{"multiple matches before invalid criteria", "conditional-multiple-matches", http.StatusPreconditionFailed,
			[]string{post("M6", "identifier=http://hospital.example/mrn|M6"), post("M1", "identifier=http://hospital.example/mrn|M1"), post("M7", "nosuchparam=1")}},
		{"invalid criteria before multiple matches", search.RuleParamUnknown, http.StatusBadRequest,
			[]string{post("M6", "identifier=http://hospital.example/mrn|M6"), post("M7", "nosuchparam=1"), post("M1", "identifier=http://hospital.example/mrn|M1")}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, "POST", "/fhir", txBundle(c.entries...))
			assertOutcome(t, rec, c.status, c.rule, "")
			if !strings.Contains(rec.Body.String(), "Bundle.entry[1]") {
				t.Errorf("outcome does not name Bundle.entry[1]: %s", rec.Body)
			}
			if n := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|M6", ""))["total"].(float64); n != 0 {
				t.Errorf("the failed transaction stored %v patients", n)
			}
		})
	}
}
