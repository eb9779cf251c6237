package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

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
	// A version the resource does not have is version-unknown, an unknown
	// resource resource-unknown: the client tells its two mistakes apart.
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+id+"/_history/99", ""), 404, "version-unknown", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+id+"/_history/abc", ""), 404, "version-unknown", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/nope/_history/1", ""), 404, "resource-unknown", "")
	// If-Match: * holds for a resource that exists (RFC 9110 13.1.1), and
	// fails for one that does not.
	star := strings.Replace(upd, `"Anne"`, `"Anna"`, 1)
	if rec = req(h, "PUT", "/fhir/Patient/"+id, star, "If-Match: *"); rec.Code != 200 || rec.Header().Get("ETag") != `W/"3"` {
		t.Errorf("update with If-Match: * = %d %s, want 200 version 3", rec.Code, rec.Body)
	}
	if rec = req(h, "PATCH", "/fhir/Patient/"+id, `[{"op":"replace","path":"/gender","value":"male"}]`,
		"Content-Type: application/json-patch+json", "If-Match: *"); rec.Code != 200 {
		t.Errorf("patch with If-Match: * = %d %s, want 200", rec.Code, rec.Body)
	}
	absent := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"star-absent"`, 1)
	if rec = req(h, "PUT", "/fhir/Patient/star-absent", absent, "If-Match: *"); rec.Code != http.StatusPreconditionFailed {
		t.Errorf("update-as-create with If-Match: * = %d, want 412", rec.Code)
	}
	if rec = req(h, "PUT", "/fhir/Patient/other-id", upd); rec.Code != 400 {
		t.Errorf("PUT with an id differing from the URL = %d, want 400", rec.Code)
	}
	// update-as-create with a client id
	ci := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"client-chosen-1"`, 1)
	if rec = req(h, "PUT", "/fhir/Patient/client-chosen-1", ci); rec.Code != http.StatusCreated {
		t.Errorf("update-as-create = %d %s", rec.Code, rec.Body)
	}
	// A delete with If-Match naming an older version fails and deletes
	// nothing; with the current one (or *) it deletes (http.html#concurrency).
	assertOutcome(t, req(h, "DELETE", "/fhir/Patient/"+id, "", `If-Match: W/"3"`), 412, "version-mismatch", "")
	if rec = req(h, "GET", "/fhir/Patient/"+id, ""); rec.Code != 200 {
		t.Errorf("read after a refused delete = %d, want 200", rec.Code)
	}
	assertOutcome(t, req(h, "POST", "/fhir", txBundle(`{"request":{"method":"DELETE","url":"Patient/`+id+`","ifMatch":"W/\"1\""}}`)),
		412, "version-mismatch", "")
	assertOutcome(t, req(h, "DELETE", "/fhir/Patient/star-absent", "", "If-Match: *"), 412, "version-mismatch", "")
	if rec = req(h, "DELETE", "/fhir/Patient/"+id, "", `If-Match: W/"4"`); rec.Code != http.StatusNoContent {
		t.Errorf("delete with the current If-Match = %d %s", rec.Code, rec.Body)
	}
	if rec = req(h, "DELETE", "/fhir/Patient/"+id, ""); rec.Code != http.StatusNoContent {
		t.Errorf("delete = %d", rec.Code)
	}
	if rec = req(h, "GET", "/fhir/Patient/"+id, ""); rec.Code != http.StatusGone {
		t.Errorf("read after delete = %d, want 410", rec.Code)
	}
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+id+"/_history/99", ""), 404, "version-unknown", "")
	rec = req(h, "GET", "/fhir/Patient/"+id+"/_history", "")
	if b := decode(t, rec); rec.Code != 200 || b["type"] != "history" || b["total"].(float64) != 5 {
		t.Errorf("history = %d %s", rec.Code, rec.Body)
	}
	if rec = req(h, "GET", "/fhir/Patient/nope", ""); rec.Code != 404 {
		t.Errorf("read unknown = %d", rec.Code)
	}
	for _, prefer := range []string{"Prefer: return=minimal", "Prefer: return = minimal", `Prefer: handling=strict, RETURN="minimal"`, "Prefer: return=minimal; x=y"} {
		if rec = req(h, "POST", "/fhir/Patient", patientJSON, prefer); rec.Code != 201 || rec.Body.Len() != 0 {
			t.Errorf("%s = %d body %q", prefer, rec.Code, rec.Body)
		}
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
		{"PUT id with _", "PUT", "/fhir/Patient/bad_id", `{"resourceType":"Patient","id":"bad_id"}`, 400, "id-invalid"},
		{"PUT id of 65", "PUT", "/fhir/Patient/" + strings.Repeat("a", 65), `{"resourceType":"Patient","id":"` + strings.Repeat("a", 65) + `"}`, 400, "id-invalid"},
		{"DELETE id with _", "DELETE", "/fhir/Patient/has_underscore", "", 400, "id-invalid"},
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

// TestMisspeltTypeInURL: a misspelt resource type in a URL (a search, a
// read, a create) is told the nearest type, never repeating the one sent,
// as one in a body is (an EHR engineer's review).
func TestMisspeltTypeInURL(t *testing.T) {
	h := fhirServer(t)
	for _, tc := range []struct{ method, target, body string }{
		{"GET", "/fhir/Patinet?name=x", ""},
		{"GET", "/fhir/Observaton/1", ""},
		{"POST", "/fhir/Patinet", `{"resourceType":"Patient"}`},
	} {
		rec := req(h, tc.method, tc.target, tc.body)
		assertOutcome(t, rec, 404, "resource-type-unknown", "")
		body := rec.Body.String()
		if !strings.Contains(body, "the nearest resource type is '") || strings.Contains(body, "Patinet") || strings.Contains(body, "Observaton") {
			t.Errorf("%s %s: %s, want the nearest type named, not the one sent", tc.method, tc.target, body)
		}
	}
	// A batch's GET entry too.
	rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patinet?name=x"}}]}`)
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, "the nearest resource type is 'Patient'") || strings.Contains(body, "Patinet") {
		t.Errorf("a batch GET of Patinet: %d %s, want the entry told the nearest type", rec.Code, body)
	}
	if body := req(h, "GET", "/fhir/Zzzzqqq", "").Body.String(); strings.Contains(body, "nearest") {
		t.Errorf("GET /fhir/Zzzzqqq: %s, want no nearest type for a name near none", body)
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

// TestConditionalUpdateKey: a conditional update whose new version its
// criteria still select keeps their conditional key (engine keepKey); one
// whose new version they no longer select frees it, so that a later
// conditional create of the old criteria creates, as its search finds
// nothing, rather than colliding with a key held by a resource the
// criteria do not find.
func TestConditionalUpdateKey(t *testing.T) {
	h := fhirServer(t)
	const m1 = "identifier=http://hospital.example/mrn|M1"
	if rec := req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: "+m1); rec.Code != 201 {
		t.Fatalf("conditional create = %d %s", rec.Code, rec.Body)
	}
	if rec := req(h, "PUT", "/fhir/Patient?"+m1, strings.Replace(patientJSON, "Ann", "Anne", 1)); rec.Code != 200 {
		t.Fatalf("conditional update keeping the identifier = %d %s", rec.Code, rec.Body)
	}
	if rec := req(h, "PUT", "/fhir/Patient?"+m1, strings.Replace(patientJSON, `"M1"`, `"M2"`, 1)); rec.Code != 200 {
		t.Fatalf("conditional update changing the identifier = %d %s", rec.Code, rec.Body)
	}
	if rec := req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: "+m1); rec.Code != 201 {
		t.Errorf("conditional create of the identifier the update dropped = %d %s, want 201", rec.Code, rec.Body)
	}
	for _, id := range []string{"M1", "M2"} {
		if n := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|"+id, ""))["total"].(float64); n != 1 {
			t.Errorf("%d Patients with %s, want 1", int(n), id)
		}
	}
}

func txBundle(entries ...string) string {
	return `{"resourceType":"Bundle","type":"transaction","entry":[` + strings.Join(entries, ",") + `]}`
}

// jsonPatchEntry is a transaction's PATCH entry of url: a Binary holding
// the JSON Patch ops.
func jsonPatchEntry(url, ops string) string {
	data := base64.StdEncoding.EncodeToString([]byte(ops))
	return `{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"` + data +
		`"},"request":{"method":"PATCH","url":"` + url + `"}}`
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
	// A batch entry's issues name the element as a transaction's do: in
	// FHIRPath, the nested resource's type with ofType.
	bad := `{"resource":{"resourceType":"Observation","status":"bogus","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}`
	const want = "Bundle.entry[0].resource.ofType(Observation).status"
	b := decode(t, req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+bad+`]}`))
	oo := b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["outcome"].(map[string]any)
	if got := oo["issue"].([]any)[0].(map[string]any)["expression"]; fmt.Sprint(got) != "["+want+"]" {
		t.Errorf("batch entry issue expression = %v, want [%s]", got, want)
	}
	rec = req(h, "POST", "/fhir", txBundle(bad))
	var tx outcome
	_ = json.Unmarshal(rec.Body.Bytes(), &tx)
	if len(tx.Issue) == 0 || fmt.Sprint(tx.Issue[0].Expression) != "["+want+"]" {
		t.Errorf("transaction entry issue = %s, want expression [%s]", rec.Body, want)
	}
}

// TestBundlePrefer: Prefer: return= shapes the entries of a
// transaction-response and a batch-response (http.html#ops): with
// representation the resources written, with OperationOutcome an outcome
// per write entry saying what it did (entry.response.outcome) and no
// resource, with minimal or none neither. A GET entry always carries what
// it read.
func TestBundlePrefer(t *testing.T) {
	h := fhirServer(t)
	pat := func(id string) string {
		return strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	}
	if rec := req(h, "PUT", "/fhir/Patient/pr-upd", pat("pr-upd")); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	ine := `{"resource":{"resourceType":"Patient","id":"pr-upd"},"request":{"method":"POST","url":"Patient","ifNoneExist":"_id=pr-upd"}}`
	entries := []string{
		`{"resource":` + patientJSON + `,"request":{"method":"POST","url":"Patient"}}`,
		`{"resource":` + pat("pr-new") + `,"request":{"method":"PUT","url":"Patient/pr-new"}}`,
		`{"resource":` + strings.Replace(pat("pr-upd"), `"Ann"`, `"Anne"`, 1) + `,"request":{"method":"PUT","url":"Patient/pr-upd"}}`,
		jsonPatchEntry("Patient/pr-patch", `[{"op":"replace","path":"/gender","value":"male"}]`),
		`{"request":{"method":"DELETE","url":"Patient/pr-del"}}`,
		`{"request":{"method":"DELETE","url":"Patient/pr-never"}}`,
		`{"request":{"method":"GET","url":"Patient/pr-patch"}}`,
	}
	// What each entry's outcome says it did (with OperationOutcome).
	did := []string{"created Patient/", "created Patient/pr-new version 1", "updated Patient/pr-upd version 2",
		"patched Patient/pr-patch version 2", "deleted Patient/pr-del", "nothing was deleted", ""}
	tests := []struct {
		name, bundle, prefer string
		resources            bool // write entries carry their resource
		outcomes             bool // write entries carry an outcome
	}{
		{"transaction, no preference", "transaction", "", false, false},
		{"transaction, minimal", "transaction", "return=minimal", false, false},
		{"transaction, representation", "transaction", "return=representation", true, false},
		{"transaction, OperationOutcome", "transaction", "return=OperationOutcome", false, true},
		{"batch, OperationOutcome", "batch", "return=OperationOutcome", false, true},
		{"batch, representation", "batch", "return=representation", true, false},
		{"batch, minimal", "batch", "return = minimal", false, false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Fresh targets for each run: ids suffixed by the case.
			sfx := fmt.Sprint("-", i)
			for _, id := range []string{"pr-upd", "pr-del", "pr-patch"} {
				if rec := req(h, "PUT", "/fhir/Patient/"+id+sfx, pat(id+sfx)); rec.Code != 201 {
					t.Fatal(rec.Body)
				}
			}
			var es []string
			for _, e := range entries {
				es = append(es, strings.NewReplacer("pr-upd", "pr-upd"+sfx, "pr-del", "pr-del"+sfx, "pr-patch", "pr-patch"+sfx,
					"pr-new", "pr-new"+sfx, "pr-never", "pr-never"+sfx).Replace(e))
			}
			body := strings.Replace(txBundle(es...), `"transaction"`, `"`+tc.bundle+`"`, 1)
			var headers []string
			if tc.prefer != "" {
				headers = append(headers, "Prefer: "+tc.prefer)
			}
			rec := req(h, "POST", "/fhir", body, headers...)
			if rec.Code != 200 {
				t.Fatalf("%s = %d %s", tc.bundle, rec.Code, rec.Body)
			}
			got := decode(t, rec)["entry"].([]any)
			for j, x := range got {
				e := x.(map[string]any)
				rs := e["response"].(map[string]any)
				_, hasRes := e["resource"]
				oo, hasOO := rs["outcome"].(map[string]any)
				if j == len(got)-1 { // the GET
					if !hasRes || hasOO {
						t.Errorf("GET entry: resource %v, outcome %v; want the resource only", hasRes, hasOO)
					}
					continue
				}
				wantRes := tc.resources && j <= 3 // not the deletions
				if hasRes != wantRes || hasOO != tc.outcomes {
					t.Errorf("entry %d (%s): resource %v, outcome %v; want %v, %v", j, rs["status"], hasRes, hasOO, wantRes, tc.outcomes)
				}
				if hasOO {
					iss := oo["issue"].([]any)[0].(map[string]any)
					text := iss["details"].(map[string]any)["text"].(string)
					want := strings.NewReplacer("pr-upd", "pr-upd"+sfx, "pr-del", "pr-del"+sfx, "pr-patch", "pr-patch"+sfx,
						"pr-new", "pr-new"+sfx).Replace(did[j])
					if iss["severity"] != "information" || !strings.HasPrefix(text, want) {
						t.Errorf("entry %d outcome = %v %q, want information %q", j, iss["severity"], text, want)
					}
				}
			}
		})
	}
	// A conditional create that matched says so.
	rec := req(h, "POST", "/fhir", txBundle(ine), "Prefer: return=OperationOutcome")
	e := decode(t, rec)["entry"].([]any)[0].(map[string]any)
	oo, _ := e["response"].(map[string]any)["outcome"].(map[string]any)
	if oo == nil || !strings.Contains(fmt.Sprint(oo), "matched the conditional criteria") {
		t.Errorf("matched conditional create: %s", rec.Body)
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
	// searchInclude and searchRevInclude are given on the type searched,
	// and the server accepts every value advertised.
	var cs struct {
		PatchFormat []string
		Rest        []struct {
			Resource []struct {
				Type                            string
				SearchInclude, SearchRevInclude []string
			}
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &cs); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cs.PatchFormat, "application/json-patch+json") || !slices.Contains(cs.PatchFormat, "application/fhir+json") {
		t.Errorf("patchFormat = %v", cs.PatchFormat)
	}
	for _, r := range cs.Rest[0].Resource {
		switch r.Type {
		case "Patient", "Encounter", "Claim":
		default:
			continue
		}
		if r.Type == "Patient" && (!slices.Contains(r.SearchRevInclude, "Observation:subject") || !slices.Contains(r.SearchRevInclude, "Claim:patient")) {
			t.Errorf("Patient searchRevInclude = %v, want Observation:subject and Claim:patient among them", r.SearchRevInclude)
		}
		for _, v := range r.SearchRevInclude {
			if rec := req(h, "GET", "/fhir/"+r.Type+"?_revinclude="+v+"&_count=1", ""); rec.Code != 200 {
				t.Errorf("%s?_revinclude=%s (advertised) = %d %s", r.Type, v, rec.Code, rec.Body)
			}
		}
		for _, v := range r.SearchInclude {
			if rec := req(h, "GET", "/fhir/"+r.Type+"?_include="+v+"&_count=1", ""); rec.Code != 200 {
				t.Errorf("%s?_include=%s (advertised) = %d %s", r.Type, v, rec.Code, rec.Body)
			}
		}
	}
	// The gateway's own CodeSystem is a stored resource.
	if rec := req(h, "GET", "/fhir/CodeSystem/ketamine-gateway", ""); rec.Code != 200 {
		t.Errorf("CodeSystem read = %d", rec.Code)
	}
}

// TestMetadataDeclares: the CapabilityStatement declares the Bulk Data
// exports the gateway serves (instantiates the IG's statement, names HL7's
// OperationDefinitions), and conditional writes and versioned updates
// only for the types clients write.
func TestMetadataDeclares(t *testing.T) {
	h := fhirServer(t)
	var cs struct {
		Instantiates []string
		Rest         []struct {
			Operation []struct{ Name, Definition string }
			Resource  []struct {
				Type                                 string
				Versioning                           string
				ConditionalCreate, ConditionalUpdate *bool
				Interaction                          []struct{ Code string }
				Operation                            []struct{ Name, Definition string }
			}
		}
	}
	if err := json.Unmarshal(req(h, "GET", "/fhir/metadata", "").Body.Bytes(), &cs); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cs.Instantiates, "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data") {
		t.Errorf("instantiates = %v, want the Bulk Data IG's CapabilityStatement", cs.Instantiates)
	}
	type op = struct{ Name, Definition string }
	if want := (op{"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}); !slices.Contains(cs.Rest[0].Operation, want) {
		t.Errorf("rest.operation = %v, want %v among them", cs.Rest[0].Operation, want)
	}
	for _, r := range cs.Rest[0].Resource {
		writes := slices.ContainsFunc(r.Interaction, func(i struct{ Code string }) bool { return i.Code == "create" || i.Code == "update" })
		switch {
		case writes && (r.ConditionalCreate == nil || !*r.ConditionalCreate || r.ConditionalUpdate == nil || !*r.ConditionalUpdate ||
			r.Versioning != "versioned-update"):
			t.Errorf("%s (written by clients): conditionalCreate %v, conditionalUpdate %v, versioning %q", r.Type,
				r.ConditionalCreate, r.ConditionalUpdate, r.Versioning)
		case !writes && (r.ConditionalCreate != nil || r.ConditionalUpdate != nil || r.Versioning != "versioned"):
			t.Errorf("%s (read-only): conditionalCreate %v, conditionalUpdate %v, versioning %q, want none and versioned", r.Type,
				r.ConditionalCreate, r.ConditionalUpdate, r.Versioning)
		}
		want := map[string]op{"Patient": {"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"},
			"Group": {"export", "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"}}[r.Type]
		if want.Name != "" && !slices.Contains(r.Operation, want) {
			t.Errorf("%s operation = %v, want %v among them", r.Type, r.Operation, want)
		}
		if r.Type == "AuditEvent" && writes {
			t.Errorf("AuditEvent interactions %v include a write", r.Interaction)
		}
	}
	// What is declared is served.
	for _, path := range []string{"/fhir/$export", "/fhir/Patient/$export"} {
		if rec := req(h, "GET", path, "", "Prefer: respond-async"); rec.Code != http.StatusAccepted {
			t.Errorf("GET %s = %d %s, want 202", path, rec.Code, rec.Body)
		}
	}
}

// TestMetadataParams: GET metadata reads mode (full and normative are the
// statement; terminology is 404, no TerminologyCapabilities is published)
// and shapes the statement by _summary and _elements as a read.
func TestMetadataParams(t *testing.T) {
	h := fhirServer(t)
	whole := req(h, "GET", "/fhir/metadata", "").Body.Len()
	for _, tc := range []struct {
		query  string
		status int
		rule   string
		check  func(cs map[string]any) string // what is wrong, "" for nothing
	}{
		{"mode=full", 200, "", nil},
		{"mode=normative", 200, "", nil},
		{"mode=terminology", 404, "terminology-capabilities-unsupported", nil},
		{"mode=other", 400, "search-value-invalid", nil},
		{"mode=full&mode=full", 400, "search-value-invalid", nil},
		{"_summary=true", 200, "", func(cs map[string]any) string {
			rest := cs["rest"].([]any)[0].(map[string]any)
			for _, r := range rest["resource"].([]any) {
				r := r.(map[string]any)
				if r["type"] == nil || r["searchParam"] != nil || r["searchRevInclude"] != nil || r["interaction"] != nil {
					return fmt.Sprintf("a resource keeps more than its summary: %v", r)
				}
				if r["type"] == "Patient" && r["operation"] == nil {
					return "Patient lost its operations"
				}
			}
			if cs["fhirVersion"] != "4.0.1" || cs["instantiates"] == nil {
				return "the top-level summary elements are gone"
			}
			return ""
		}},
		{"_summary=false", 200, "", nil},
		{"_summary=count", 400, "search-value-invalid", nil},
		{"_elements=rest", 200, "", func(cs map[string]any) string {
			if cs["rest"] == nil || cs["software"] != nil || cs["fhirVersion"] == nil {
				return "want rest and the mandatory elements only"
			}
			return ""
		}},
		{"_elements=nope", 400, "search-value-invalid", nil},
	} {
		t.Run(tc.query, func(t *testing.T) {
			rec := req(h, "GET", "/fhir/metadata?"+tc.query, "")
			if tc.rule != "" {
				assertOutcome(t, rec, tc.status, tc.rule, "")
				return
			}
			if rec.Code != tc.status {
				t.Fatalf("GET metadata?%s = %d %s", tc.query, rec.Code, rec.Body)
			}
			cs := decode(t, rec)
			shaped := strings.Contains(fmt.Sprint(cs["meta"]), "SUBSETTED")
			if cs["resourceType"] != "CapabilityStatement" || shaped != (tc.check != nil) {
				t.Errorf("GET metadata?%s: %s, SUBSETTED %v", tc.query, cs["resourceType"], shaped)
			}
			if tc.check == nil {
				if rec.Body.Len() != whole {
					t.Errorf("GET metadata?%s: %d bytes, want the whole statement's %d", tc.query, rec.Body.Len(), whole)
				}
				return
			}
			if tc.query == "_summary=true" && rec.Body.Len() >= whole/4 {
				t.Errorf("GET metadata?%s: %d bytes of %d", tc.query, rec.Body.Len(), whole)
			}
			if msg := tc.check(cs); msg != "" {
				t.Errorf("GET metadata?%s: %s", tc.query, msg)
			}
		})
	}
	// A Bundle's GET entry of metadata reads its parameters the same way.
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"metadata?mode=terminology"}},` +
		`{"request":{"method":"GET","url":"metadata?_summary=true"}}]}`
	entries := decode(t, req(h, "POST", "/fhir", batch))["entry"].([]any)
	status := func(i int) string {
		return fmt.Sprint(entries[i].(map[string]any)["response"].(map[string]any)["status"])
	}
	if !strings.HasPrefix(status(0), "404") || !strings.HasPrefix(status(1), "200") {
		t.Errorf("batch metadata entries answered %s and %s, want 404 and 200", status(0), status(1))
	}
	if cs := entries[1].(map[string]any)["resource"].(map[string]any); !strings.Contains(fmt.Sprint(cs["meta"]), "SUBSETTED") {
		t.Errorf("batch metadata?_summary=true entry is not the summary: meta %v", cs["meta"])
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
	p2b := strings.Replace(p2, `"Ann"`, `"Anne"`, 1)
	if rec := req(h, "PUT", "/fhir/Patient?identifier=http://hospital.example/mrn|M2", p2b); rec.Code != 200 || rec.Header().Get("ETag") != `W/"2"` {
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
// of the first of them in the order entries are processed (Bundle order
// among POSTs).
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

// TestMalformedQueries: a query string (URL, search form, Bundle entry,
// conditional criteria) whose percent-encoding is malformed or whose bytes
// are not UTF-8 is a 400 naming the parameter at every entry point, never
// a search with the parameter dropped or read as empty; a search form must
// be a form.
func TestMalformedQueries(t *testing.T) {
	h := fhirServer(t)
	pid := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	if rec := req(h, "POST", "/fhir/Patient", strings.Replace(patientJSON, `"M1"`, `"M2"`, 1)); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name, method, target, contentType, body string
		headers                                 []string
		status                                  int
		rule, expression                        string
	}{
		{"lone percent", "GET", "/fhir/Patient?_id=" + pid + "%", "", "", nil, 400, "search-value-invalid", "_id"},
		{"bad escape", "GET", "/fhir/Patient?family=%ZZ", "", "", nil, 400, "search-value-invalid", "family"},
		{"bad escape among good", "GET", "/fhir/Patient?gender=female&identifier=http://hospital.example/mrn|M%2", "", "", nil, 400, "search-value-invalid", "identifier"},
		{"not UTF-8", "GET", "/fhir/Patient?family=%FF", "", "", nil, 400, "search-value-invalid", "family"},
		{"not UTF-8 pair", "GET", "/fhir/Patient?family=%C3%28", "", "", nil, 400, "search-value-invalid", "family"},
		{"semicolon", "GET", "/fhir/Patient?family=Test;x", "", "", nil, 400, "search-value-invalid", "family"},
		{"bad name", "GET", "/fhir/Patient?fam%ZZily=x", "", "", nil, 400, "search-value-invalid", ""},
		{"lenient still refuses", "GET", "/fhir/Patient?family=%ZZ", "", "", []string{"Prefer: handling=lenient"}, 400, "search-value-invalid", "family"},
		{"compartment", "GET", "/fhir/Patient/" + pid + "/Observation?code=8302-2%G1", "", "", nil, 400, "search-value-invalid", "code"},
		{"everything", "GET", "/fhir/Patient/" + pid + "/$everything?_type=Condition%", "", "", nil, 400, "search-value-invalid", "_type"},
		{"history", "GET", "/fhir/Patient/_history?_since=%FF", "", "", nil, 400, "search-value-invalid", "_since"},
		{"read", "GET", "/fhir/Patient/" + pid + "?_elements=%ZZ", "", "", nil, 400, "search-value-invalid", "_elements"},
		{"form bad escape", "POST", "/fhir/Patient/_search", form, "family=%ZZ", nil, 400, "search-value-invalid", "family"},
		{"form not UTF-8", "POST", "/fhir/Patient/_search", form, "family=%FF", nil, 400, "search-value-invalid", "family"},
		{"form in URL bad", "POST", "/fhir/Patient/_search?family=%ZZ", form, "gender=female", nil, 400, "search-value-invalid", "family"},
		{"form as JSON", "POST", "/fhir/Patient/_search", "application/json", `{"identifier":"http://hospital.example/mrn|M1"}`, nil, 415, "content-type-unsupported", ""},
		// A body is read as it is sent: not compressed, in UTF-8.
		{"gzip body", "POST", "/fhir/Patient", "application/fhir+json", patientJSON, []string{"Content-Encoding: gzip"}, 415, "content-encoding-unsupported", ""},
		{"gzip native record", "POST", "/ingest/vitals?dryRun=true", "application/json", `{}`, []string{"Content-Encoding: identity, gzip"}, 415, "content-encoding-unsupported", ""},
		{"latin1 body", "POST", "/fhir/Patient", "application/fhir+json; charset=latin1", patientJSON, nil, 415, "content-type-unsupported", ""},
		{"form as text", "POST", "/fhir/Patient/_search", "text/plain", "identifier=http://hospital.example/mrn|M1", nil, 415, "content-type-unsupported", ""},
		{"form as Parameters", "POST", "/fhir/Patient/_search", "application/fhir+json", `{"resourceType":"Parameters"}`, nil, 415, "content-type-unsupported", ""},
		{"form without a type", "POST", "/fhir/Patient/_search", "", "identifier=http://hospital.example/mrn|M1", nil, 415, "content-type-unsupported", ""},
		{"If-None-Exist not UTF-8", "POST", "/fhir/Patient", "application/fhir+json", patientJSON, []string{"If-None-Exist: family=%FF"}, 400, "search-value-invalid", "family"},
		{"conditional update bad escape", "PUT", "/fhir/Patient?identifier=%ZZ", "application/fhir+json", patientJSON, nil, 400, "search-value-invalid", "identifier"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			for _, hv := range tc.headers {
				k, v, _ := strings.Cut(hv, ":")
				r.Header.Set(k, strings.TrimSpace(v))
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			assertOutcome(t, rec, tc.status, tc.rule, "")
			var oo outcome
			_ = json.Unmarshal(rec.Body.Bytes(), &oo)
			if got := oo.Issue[0].Expression; tc.expression != "" && (len(got) != 1 || got[0] != tc.expression) {
				t.Errorf("expression = %v, want [%s]", got, tc.expression)
			}
		})
	}
	// A Bundle entry's search by the same rule.
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?family=%FF"}}]}`
	b := decode(t, req(h, "POST", "/fhir", batch))
	if got := fmt.Sprint(b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["status"]); !strings.HasPrefix(got, "400") {
		t.Errorf("batch GET with %%FF = %s, want 400", got)
	}
	// The well-formed searches still work: a form, an empty body without
	// a Content-Type (the parameters in the URL), an escaped % and ;.
	for _, tc := range []struct{ target, contentType, body string }{
		{"/fhir/Patient/_search", form, "identifier=http%3A%2F%2Fhospital.example%2Fmrn|M1"},
		{"/fhir/Patient/_search?identifier=http://hospital.example/mrn|M1", "", ""},
		{"/fhir/Patient?identifier=http://hospital.example/mrn|M1&family:exact=Testpat%25&family:missing=false", "", ""},
	} {
		r := httptest.NewRequest("POST", tc.target, strings.NewReader(tc.body))
		if strings.Contains(tc.target, "?identifier") && !strings.Contains(tc.target, "_search") {
			r.Method = "GET"
		}
		if tc.contentType != "" {
			r.Header.Set("Content-Type", tc.contentType)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != 200 {
			t.Fatalf("%s %s = %d %s", r.Method, tc.target, rec.Code, rec.Body)
		}
		want := 1.0
		if strings.Contains(tc.target, "%25") {
			want = 0 // no family starts with "Testpat%"
		}
		if got := decode(t, rec)["total"]; got != want {
			t.Errorf("%s %s: total = %v, want %v", r.Method, tc.target, got, want)
		}
	}
	// A body in UTF-8, said or not, with no coding or identity, is read.
	r := httptest.NewRequest("POST", "/fhir/Patient", strings.NewReader(patientJSON))
	r.Header.Set("Content-Type", "application/fhir+json; charset=UTF-8")
	r.Header.Set("Content-Encoding", "identity")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	if rec.Code != 201 {
		t.Errorf("a UTF-8 body with Content-Encoding: identity = %d %s", rec.Code, rec.Body)
	}
}

// TestFormatOverridesAccept: _format=json wins over an Accept header
// without JSON (http.html#mime); without _format such an Accept is 406.
func TestFormatOverridesAccept(t *testing.T) {
	h := fhirServer(t)
	pid := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	tests := []struct {
		query, accept string
		status        int
	}{
		{"?_format=json", "text/html", 200},
		{"?_format=application/fhir%2Bjson", "application/fhir+xml", 200},
		{"?_format=application/fhir+json", "application/fhir+xml", 200}, // the + read as a space
		{"?_format=application/fhir%2Bjson%3BfhirVersion=4.0", "application/xml", 200},
		{"", "text/html", 406},
		{"?_format=xml", "application/fhir+json", 406},
		{"", "application/fhir+json", 200},
	}
	for _, tc := range tests {
		t.Run(tc.query+" "+tc.accept, func(t *testing.T) {
			rec := req(h, "GET", "/fhir/Patient/"+pid+tc.query, "", "Accept: "+tc.accept)
			if rec.Code != tc.status {
				t.Errorf("GET ?%s with Accept %s = %d %s, want %d", tc.query, tc.accept, rec.Code, rec.Body, tc.status)
			}
		})
	}
}

// TestGenericJSONAccept: an Accept or _format naming a generic JSON type
// (application/json, text/json) is answered in FHIR JSON labelled with
// that type (http.html#mime), errors included; the FHIR type is the
// answer otherwise, and wins over a generic type of the same q. Every
// answer says it varies with Accept.
func TestGenericJSONAccept(t *testing.T) {
	h := fhirServer(t)
	pid := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	const fhirJSON, appJSON, textJSON = "application/fhir+json; charset=utf-8", "application/json; charset=utf-8",
		"text/json; charset=utf-8"
	for _, tc := range []struct {
		name, target, accept string
		status               int
		contentType          string
	}{
		{"text/json", "/fhir/Patient/" + pid, "text/json", 200, textJSON},
		{"application/json", "/fhir/Patient/" + pid, "application/json", 200, appJSON},
		{"application/fhir+json", "/fhir/Patient/" + pid, "application/fhir+json", 200, fhirJSON},
		{"no Accept", "/fhir/Patient/" + pid, "", 200, fhirJSON},
		{"anything", "/fhir/Patient/" + pid, "*/*", 200, fhirJSON},
		{"a browser's", "/fhir/Patient/" + pid, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", 200, fhirJSON},
		{"generic and FHIR alike", "/fhir/Patient/" + pid, "application/json, application/fhir+json", 200, fhirJSON},
		{"generic preferred", "/fhir/Patient/" + pid, "application/fhir+json;q=0.5, application/json", 200, appJSON},
		{"text/json preferred", "/fhir/Patient/" + pid, "application/json;q=0.5, text/json", 200, textJSON},
		{"text/*", "/fhir/Patient/" + pid, "text/*", 200, textJSON},
		{"anything but FHIR JSON", "/fhir/Patient/" + pid, "application/fhir+json;q=0, */*", 200, appJSON},
		{"text/json of R4", "/fhir/Patient/" + pid, "text/json; fhirVersion=4.0", 200, textJSON},
		{"text/json of another version", "/fhir/Patient/" + pid, "text/json; fhirVersion=5.0", 406, fhirJSON},
		{"text/json refused", "/fhir/Patient/" + pid, "text/json;q=0", 406, fhirJSON},
		{"HTML", "/fhir/Patient/" + pid, "text/html", 406, fhirJSON},
		{"_format=application/json over Accept", "/fhir/Patient/" + pid + "?_format=application/json", "text/html", 200, appJSON},
		{"_format=text/json", "/fhir/Patient/" + pid + "?_format=text/json", "", 200, textJSON},
		{"_format=json over a generic Accept", "/fhir/Patient/" + pid + "?_format=json", "application/json", 200, fhirJSON},
		{"an error", "/fhir/Patient/nope", "text/json", 404, textJSON},
		{"a searchset", "/fhir/Patient?_id=" + pid, "application/json", 200, appJSON},
		{"the CapabilityStatement", "/fhir/metadata", "text/json", 200, textJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.accept != "" {
				headers = append(headers, "Accept: "+tc.accept)
			}
			rec := req(h, "GET", tc.target, "", headers...)
			if rec.Code != tc.status || rec.Header().Get("Content-Type") != tc.contentType {
				t.Errorf("GET %s with Accept %q = %d %s, want %d %s", tc.target, tc.accept, rec.Code,
					rec.Header().Get("Content-Type"), tc.status, tc.contentType)
			}
			if !slices.Contains(rec.Header().Values("Vary"), "Accept") {
				t.Errorf("GET %s: Vary %q, want Accept", tc.target, rec.Header().Values("Vary"))
			}
			var m map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil || m["resourceType"] == nil {
				t.Errorf("GET %s: body %s, want FHIR JSON", tc.target, rec.Body)
			}
		})
	}
}

// TestFHIRVersionParameter: the fhirVersion parameter of a FHIR media type
// (http.html#version-parameter) is honoured: an Accept or _format that
// takes only another FHIR version than R4 is 406, a body labelled with
// another version 415; q=0 on application/fhir+json refuses it.
func TestFHIRVersionParameter(t *testing.T) {
	h := fhirServer(t)
	pid := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	for _, tc := range []struct {
		name, query, accept string
		status              int
		rule                string
	}{
		{"4.0", "", "application/fhir+json; fhirVersion=4.0", 200, ""},
		{"4.0.0", "", "application/fhir+json; fhirVersion=4.0.0", 200, ""},
		{"4.0.1 quoted", "", `application/fhir+json; fhirVersion="4.0.1"`, 200, ""},
		{"5.0", "", "application/fhir+json; fhirVersion=5.0", 406, "fhir-version-unsupported"},
		{"3.0 on application/json", "", "application/json; fhirversion=3.0", 406, "fhir-version-unsupported"},
		{"name in capitals", "", "application/fhir+json; FHIRVERSION=5.0", 406, "fhir-version-unsupported"},
		{"5.0 or 4.0", "", "application/fhir+json; fhirVersion=5.0, application/fhir+json; fhirVersion=4.0;q=0.5", 200, ""},
		{"5.0 or anything", "", "application/fhir+json; fhirVersion=5.0, */*;q=0.1", 200, ""},
		{"q=0 and XML", "", "application/fhir+json;q=0, application/xml", 406, "format-unsupported"},
		{"q=0 and anything", "", "application/fhir+json;q=0, */*", 200, ""}, // application/json: TestGenericJSONAccept
		{"q=0.0", "", "application/fhir+json;q=0.0", 406, "format-unsupported"},
		{"q=0.5", "", "application/fhir+json;q=0.5", 200, ""},
		{"a malformed q is ignored", "", "application/fhir+json;q=x", 200, ""},
		{"q=0 on another JSON type", "", "application/json;q=0, application/fhir+json", 200, ""},
		{"_format 5.0", "?_format=application/fhir%2Bjson%3BfhirVersion=5.0", "", 406, "fhir-version-unsupported"},
		{"_format 4.0.1", "?_format=application/fhir%2Bjson%3BfhirVersion=4.0.1", "application/fhir+json; fhirVersion=5.0", 200, ""},
	} {
		t.Run("Accept "+tc.name, func(t *testing.T) {
			var headers []string
			if tc.accept != "" {
				headers = append(headers, "Accept: "+tc.accept)
			}
			rec := req(h, "GET", "/fhir/Patient/"+pid+tc.query, "", headers...)
			switch {
			case tc.rule != "":
				assertOutcome(t, rec, tc.status, tc.rule, "")
			case rec.Code != tc.status:
				t.Errorf("GET with Accept %s = %d %s, want %d", tc.accept, rec.Code, rec.Body, tc.status)
			}
		})
	}
	for _, tc := range []struct {
		name, method, target, contentType, body string
		status                                  int
		rule                                    string
	}{
		{"create 4.0", "POST", "/fhir/Patient", "application/fhir+json; fhirVersion=4.0", patientJSON, 201, ""},
		{"create 4.0.1", "POST", "/fhir/Patient", "application/fhir+json;fhirVersion=4.0.1", patientJSON, 201, ""},
		{"create 3.0", "POST", "/fhir/Patient", "application/fhir+json; fhirVersion=3.0", patientJSON, 415, "fhir-version-unsupported"},
		{"update 5.0", "PUT", "/fhir/Patient/" + pid, "application/fhir+json; fhirVersion=5.0",
			strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+pid+`"`, 1), 415, "fhir-version-unsupported"},
		{"FHIRPath Patch 5.0", "PATCH", "/fhir/Patient/" + pid, "application/fhir+json; fhirVersion=5.0",
			`{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.gender"}]}]}`,
			415, "fhir-version-unsupported"},
		{"transaction 5.0", "POST", "/fhir", "application/fhir+json; fhirVersion=5.0", txBundle(patEntry), 415, "fhir-version-unsupported"},
	} {
		t.Run("Content-Type "+tc.name, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, tc.body, "Content-Type: "+tc.contentType)
			switch {
			case tc.rule != "":
				assertOutcome(t, rec, tc.status, tc.rule, "")
			case rec.Code != tc.status:
				t.Errorf("%s with Content-Type %s = %d %s, want %d", tc.method, tc.contentType, rec.Code, rec.Body, tc.status)
			}
		})
	}
	// A Bundle's GET entry reads its _format as the top-level GET does.
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/` + pid +
		`?_format=application/fhir%2Bjson%3BfhirVersion%3D5.0"}}]}`
	b := decode(t, req(h, "POST", "/fhir", batch))
	if st := fmt.Sprint(b["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["status"]); !strings.HasPrefix(st, "406") {
		t.Errorf("batch GET entry with _format fhirVersion=5.0 answered %s, want 406", st)
	}
}

// TestHistoryParams: history reads _count, _offset and _since by the rules
// of search, and refuses what it does not support (R4's _at and _list,
// anything else) as search does, or ignores it under
// Prefer: handling=lenient, leaving it out of the self link.
func TestHistoryParams(t *testing.T) {
	h := fhirServer(t)
	id := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	upd := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	for i := range 2 { // each a change: an unchanged update writes no version
		if rec := req(h, "PUT", "/fhir/Patient/"+id, strings.Replace(upd, `"Ann"`, fmt.Sprintf(`"Ann%d"`, i), 1)); rec.Code != 200 {
			t.Fatal(rec.Body)
		}
	}
	inst := "/fhir/Patient/" + id + "/_history"
	tests := []struct {
		name, target, prefer string
		status               int
		rule, expression     string
		total, entries       int
	}{
		{"plain", inst, "", 200, "", "", 3, 3},
		{"_count=0 is the total only", inst + "?_count=0", "", 200, "", "", 3, 0},
		{"_count above the maximum is the maximum", inst + "?_count=5000", "", 200, "", "", 3, 3},
		{"_count=1", inst + "?_count=1", "", 200, "", "", 3, 1},
		{"_count=0 of the type", "/fhir/Patient/_history?_count=0", "", 200, "", "", 3, 0},
		{"_count=0 of the system", "/fhir/_history?_count=0", "", 200, "", "", -1, 0},
		{"_count not a number", inst + "?_count=x", "", 400, "search-value-invalid", "_count", 0, 0},
		{"_count twice", inst + "?_count=1&_count=2", "", 400, "search-value-invalid", "_count", 0, 0},
		{"_since not an instant", inst + "?_since=2020", "", 400, "search-value-invalid", "_since", 0, 0},
		{"_at", inst + "?_at=2000-01-01T00:00:00Z", "", 400, "search-param-unsupported", "_at", 0, 0},
		{"_list", "/fhir/Patient/_history?_list=x", "", 400, "search-param-unsupported", "_list", 0, 0},
		{"_summary", inst + "?_summary=count", "", 400, "search-param-unsupported", "_summary", 0, 0},
		{"_elements", "/fhir/_history?_elements=id", "", 400, "search-param-unsupported", "_elements", 0, 0},
		{"unknown", inst + "?foo=SECRET7", "", 400, "search-param-unknown", "", 0, 0},
		{"unknown, system", "/fhir/_history?foo=bar", "", 400, "search-param-unknown", "", 0, 0},
		{"lenient _at", inst + "?_at=2000-01-01T00:00:00Z&_count=2", "handling=lenient", 200, "", "", 3, 2},
		{"lenient unknown", inst + "?foo=SECRET7", "handling=lenient", 200, "", "", 3, 3},
		{"_format", inst + "?_format=json", "", 200, "", "", 3, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.prefer != "" {
				headers = append(headers, "Prefer: "+tc.prefer)
			}
			rec := req(h, "GET", tc.target, "", headers...)
			if tc.status != 200 {
				assertOutcome(t, rec, tc.status, tc.rule, "")
				var oo outcome
				_ = json.Unmarshal(rec.Body.Bytes(), &oo)
				if got := oo.Issue[0].Expression; tc.expression != "" && fmt.Sprint(got) != "["+tc.expression+"]" {
					t.Errorf("expression = %v, want [%s]", got, tc.expression)
				}
				if strings.Contains(rec.Body.String(), "SECRET7") {
					t.Errorf("the outcome quotes the request: %s", rec.Body)
				}
				return
			}
			if rec.Code != 200 {
				t.Fatalf("GET %s = %d %s", tc.target, rec.Code, rec.Body)
			}
			b := decode(t, rec)
			entries, _ := b["entry"].([]any)
			if tc.total >= 0 && b["total"] != float64(tc.total) || len(entries) != tc.entries {
				t.Errorf("GET %s: total %v, %d entries; want %d, %d", tc.target, b["total"], len(entries), tc.total, tc.entries)
			}
			self := b["link"].([]any)[0].(map[string]any)["url"].(string)
			if strings.Contains(self, "_at") || strings.Contains(self, "SECRET7") {
				t.Errorf("self link %s shows a parameter that was ignored", self)
			}
		})
	}
}

// TestMalformedFHIRPaths: a path that is not a FHIR URL, although a route
// took it, is route-unknown (as /fhir/Patient/x/ is), never "no such
// resource" or "no such version" of a resource and version that exist; a
// version id not written as the gateway writes its ids (01) is no version.
func TestMalformedFHIRPaths(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/client-1", `{"resourceType":"Patient","id":"client-1"}`); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	for _, tc := range []struct {
		method, path string
		status       int
		rule         string
	}{
		{"GET", "/fhir/Patient/client-1/_history/1/extra", 404, "route-unknown"},
		{"GET", "/fhir/Patient/client-1/_history/1/_history", 404, "route-unknown"},
		{"GET", "/fhir/Patient/client-1/_history//1", 404, "route-unknown"},
		{"GET", "/fhir/Patient/client-1/_history/", 404, "route-unknown"},
		{"GET", "/fhir/Patient//client-1", 404, "route-unknown"},
		{"GET", "/fhir//Patient", 404, "route-unknown"},
		{"GET", "/fhir/Patient/client-1//_history", 404, "route-unknown"},
		{"GET", "/fhir/Patient/client-1/Observation/x", 404, "route-unknown"},
		{"GET", "/fhir/Patient/client-1/", 404, "route-unknown"},
		{"PUT", "/fhir/Patient//client-1", 404, "route-unknown"},
		{"DELETE", "/fhir/Patient//client-1", 404, "route-unknown"},
		{"GET", "/fhir/metadata/x", 404, "route-unknown"},
		{"GET", "/fhir/Patient/client-1/_history/01", 404, "version-unknown"},
		{"GET", "/fhir/Patient/client-1/_history/+1", 404, "version-unknown"},
		{"GET", "/fhir/Patient/client-1/_history/0", 404, "version-unknown"},
		{"HEAD", "/fhir/Patient/client-1/_history/01", 404, ""},
		// What is a FHIR URL still answers.
		{"GET", "/fhir/Patient/client-1/_history/1", 200, ""},
		{"GET", "/fhir/Patient/client-1", 200, ""},
		{"GET", "/fhir/Patient/client-1/_history", 200, ""},
		{"GET", "/fhir/Patient/client-1/Observation", 200, ""},
		{"GET", "/fhir/Patient/client-1/_history/2", 404, "version-unknown"},
		{"GET", "/fhir/Patient/nope", 404, "resource-unknown"},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			body := ""
			if tc.method == "PUT" {
				body = `{"resourceType":"Patient","id":"client-1"}`
			}
			rec := req(h, tc.method, tc.path, body)
			switch {
			case tc.rule != "":
				assertOutcome(t, rec, tc.status, tc.rule, "")
			case rec.Code != tc.status:
				t.Errorf("%s %s = %d %s, want %d", tc.method, tc.path, rec.Code, rec.Body, tc.status)
			}
		})
	}
	// A vread of 01 answers no version, not version 1 as if it were "01".
	if rec := req(h, "GET", "/fhir/Patient/client-1/_history/01", ""); strings.Contains(rec.Body.String(), `"versionId"`) {
		t.Errorf("vread of 01 answered a version: %s", rec.Body)
	}
}

// TestHistoryLinks: a history Bundle pages with a searchset's links
// (self, previous, next; _count and _offset in each, the other parameters
// kept, those a lenient history ignored left out) and no dangling "?".
func TestHistoryLinks(t *testing.T) {
	h := fhirServer(t)
	id := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	upd := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	for i := range 4 { // each a change: an unchanged update writes no version
		if rec := req(h, "PUT", "/fhir/Patient/"+id, strings.Replace(upd, `"Ann"`, fmt.Sprintf(`"Ann%d"`, i), 1)); rec.Code != 200 {
			t.Fatal(rec.Body)
		}
	}
	inst := "/fhir/Patient/" + id + "/_history"
	base := "http://example.com"
	for _, tc := range []struct {
		name, target, prefer string
		links                map[string]string // relation: URL below base
	}{
		{"no parameters", inst, "", map[string]string{"self": inst + "?_count=50"}},
		{"first page", inst + "?_count=2", "", map[string]string{
			"self": inst + "?_count=2", "next": inst + "?_count=2&_offset=2"}},
		{"middle page", inst + "?_count=2&_offset=2", "", map[string]string{
			"self": inst + "?_count=2&_offset=2", "previous": inst + "?_count=2", "next": inst + "?_count=2&_offset=4"}},
		{"last page", inst + "?_offset=4&_count=2", "", map[string]string{
			"self": inst + "?_count=2&_offset=4", "previous": inst + "?_count=2&_offset=2"}},
		{"previous from an odd offset", inst + "?_count=2&_offset=1", "", map[string]string{
			"self": inst + "?_count=2&_offset=1", "previous": inst + "?_count=2", "next": inst + "?_count=2&_offset=3"}},
		{"_since is kept", inst + "?_since=2000-01-01T00:00:00Z&_count=2&_offset=2", "", map[string]string{
			"self":     inst + "?_count=2&_offset=2&_since=2000-01-01T00%3A00%3A00Z",
			"previous": inst + "?_count=2&_since=2000-01-01T00%3A00%3A00Z",
			"next":     inst + "?_count=2&_offset=4&_since=2000-01-01T00%3A00%3A00Z"}},
		{"_count=0: the total only", inst + "?_count=0", "", map[string]string{"self": inst + "?_count=0"}},
		{"lenient: the ignored ones left out, _format kept", inst + "?_at=2000-01-01T00:00:00Z&_count=2&_offset=2&_format=json", "handling=lenient",
			map[string]string{"self": inst + "?_count=2&_format=json&_offset=2", "previous": inst + "?_count=2&_format=json",
				"next": inst + "?_count=2&_format=json&_offset=4"}},
		{"type", "/fhir/Patient/_history?_count=1&_offset=1", "", map[string]string{
			"self": "/fhir/Patient/_history?_count=1&_offset=1", "previous": "/fhir/Patient/_history?_count=1",
			"next": "/fhir/Patient/_history?_count=1&_offset=2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var headers []string
			if tc.prefer != "" {
				headers = append(headers, "Prefer: "+tc.prefer)
			}
			rec := req(h, "GET", tc.target, "", headers...)
			if rec.Code != 200 {
				t.Fatalf("GET %s = %d %s", tc.target, rec.Code, rec.Body)
			}
			got := map[string]string{}
			for _, l := range decode(t, rec)["link"].([]any) {
				l := l.(map[string]any)
				got[l["relation"].(string)] = l["url"].(string)
			}
			want := map[string]string{}
			for rel, u := range tc.links {
				want[rel] = base + u
			}
			if !maps.Equal(got, want) {
				t.Errorf("GET %s links:\n got  %v\n want %v", tc.target, got, want)
			}
		})
	}
}

// TestHistoryRequest: each history entry says how its version was made
// (Bundle.entry.request: "for history, it shows how the entry was processed
// to create the version"): the method and url of the interaction and the
// status it answered, whether it came alone, in a transaction or batch, or
// from a native ingest; not a guess from the version number.
func TestHistoryRequest(t *testing.T) {
	h := fhirServer(t)
	pat := func(id string) string {
		return strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"`+id+`"`, 1)
	}
	entry := func(method, url, resource string) string {
		if resource == "" {
			return `{"request":{"method":"` + method + `","url":"` + url + `"}}`
		}
		return `{"resource":` + resource + `,"request":{"method":"` + method + `","url":"` + url + `"}}`
	}
	batch := func(entries ...string) string {
		return strings.Replace(txBundle(entries...), `"transaction"`, `"batch"`, 1)
	}
	created := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	patch := `[{"op":"replace","path":"/gender","value":"male"}]`
	tests := []struct {
		name             string
		method, target   string // the write ("POST /fhir" for a Bundle)
		body             string
		headers          []string
		id               string // whose history's newest entry is checked
		wantMethod       string
		wantURL          string
		wantStatus       string
		wantResource     bool
		wantCode         int // of the write
		historyHasNoBody bool
	}{
		{name: "create", id: created, wantMethod: "POST", wantURL: "Patient", wantStatus: "201", wantResource: true},
		{name: "update-as-create", method: "PUT", target: "/fhir/Patient/h-put", body: pat("h-put"), id: "h-put",
			wantMethod: "PUT", wantURL: "Patient/h-put", wantStatus: "201", wantResource: true, wantCode: 201},
		{name: "update", method: "PUT", target: "/fhir/Patient/h-put", body: strings.Replace(pat("h-put"), `"Ann"`, `"Anne"`, 1), id: "h-put",
			wantMethod: "PUT", wantURL: "Patient/h-put", wantStatus: "200", wantResource: true, wantCode: 200},
		{name: "patch", method: "PATCH", target: "/fhir/Patient/h-put", body: patch, headers: []string{"Content-Type: application/json-patch+json"},
			id: "h-put", wantMethod: "PATCH", wantURL: "Patient/h-put", wantStatus: "200", wantResource: true, wantCode: 200},
		{name: "delete", method: "DELETE", target: "/fhir/Patient/h-put", id: "h-put",
			wantMethod: "DELETE", wantURL: "Patient/h-put", wantStatus: "204", wantCode: 204},
		{name: "update after a delete creates", method: "PUT", target: "/fhir/Patient/h-put", body: pat("h-put"), id: "h-put",
			wantMethod: "PUT", wantURL: "Patient/h-put", wantStatus: "201", wantResource: true, wantCode: 201},
		{name: "delete again", method: "DELETE", target: "/fhir/Patient/h-put", id: "h-put",
			wantMethod: "DELETE", wantURL: "Patient/h-put", wantStatus: "204", wantCode: 204},
		{name: "conditional create naming a deleted id brings it back", method: "POST", target: "/fhir/Patient", body: patientJSON,
			headers: []string{"If-None-Exist: _id=h-put"}, id: "h-put",
			wantMethod: "POST", wantURL: "Patient", wantStatus: "201", wantResource: true, wantCode: 201},
		{name: "conditional update that creates", method: "PUT", target: "/fhir/Patient?_id=h-cu", body: pat("h-cu"), id: "h-cu",
			wantMethod: "PUT", wantURL: "Patient/h-cu", wantStatus: "201", wantResource: true, wantCode: 201},
		{name: "conditional update", method: "PUT", target: "/fhir/Patient?_id=h-cu", body: strings.Replace(pat("h-cu"), `"Ann"`, `"Anne"`, 1), id: "h-cu",
			wantMethod: "PUT", wantURL: "Patient/h-cu", wantStatus: "200", wantResource: true, wantCode: 200},
		{name: "conditional create naming the id", method: "POST", target: "/fhir/Patient", body: patientJSON,
			headers: []string{"If-None-Exist: _id=h-ine"}, id: "h-ine",
			wantMethod: "POST", wantURL: "Patient", wantStatus: "201", wantResource: true, wantCode: 201},
		{name: "transaction PUT", method: "POST", target: "/fhir", body: txBundle(entry("PUT", "Patient/h-tx", pat("h-tx"))),
			id: "h-tx", wantMethod: "PUT", wantURL: "Patient/h-tx", wantStatus: "201", wantResource: true, wantCode: 200},
		{name: "transaction PATCH", method: "POST", target: "/fhir", body: txBundle(jsonPatchEntry("Patient/h-tx", patch)),
			id: "h-tx", wantMethod: "PATCH", wantURL: "Patient/h-tx", wantStatus: "200", wantResource: true, wantCode: 200},
		{name: "batch PUT", method: "POST", target: "/fhir", body: batch(entry("PUT", "Patient/h-tx", pat("h-tx"))),
			id: "h-tx", wantMethod: "PUT", wantURL: "Patient/h-tx", wantStatus: "200", wantResource: true, wantCode: 200},
		{name: "batch DELETE", method: "POST", target: "/fhir", body: batch(entry("DELETE", "Patient/h-tx", "")),
			id: "h-tx", wantMethod: "DELETE", wantURL: "Patient/h-tx", wantStatus: "204", wantCode: 200},
		{name: "transaction POST naming the id by If-None-Exist", method: "POST", target: "/fhir",
			body: txBundle(`{"resource":` + patientJSON + `,"request":{"method":"POST","url":"Patient","ifNoneExist":"_id=h-tx"}}`),
			id:   "h-tx", wantMethod: "POST", wantURL: "Patient", wantStatus: "201", wantResource: true, wantCode: 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.method != "" {
				if rec := req(h, tc.method, tc.target, tc.body, tc.headers...); rec.Code != tc.wantCode {
					t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.target, rec.Code, rec.Body, tc.wantCode)
				}
			}
			rec := req(h, "GET", "/fhir/Patient/"+tc.id+"/_history?_count=1", "")
			b := decode(t, rec)
			entries, _ := b["entry"].([]any)
			if rec.Code != 200 || len(entries) != 1 {
				t.Fatalf("history = %d %s", rec.Code, rec.Body)
			}
			e := entries[0].(map[string]any)
			rq, _ := e["request"].(map[string]any)
			rs, _ := e["response"].(map[string]any)
			if rq["method"] != tc.wantMethod || rq["url"] != tc.wantURL || rs["status"] != tc.wantStatus {
				t.Errorf("history entry request %v, response status %v; want %s %s, %s", rq, rs["status"], tc.wantMethod, tc.wantURL, tc.wantStatus)
			}
			if _, has := e["resource"]; has != tc.wantResource {
				t.Errorf("history entry has a resource: %v, want %v", has, tc.wantResource)
			}
		})
	}
	// A native record's resources: each version the ingest wrote shows the
	// status its entry answered, and the method of that entry.
	rec := example(t, "session/routine-ketamine-iv-session.json")
	r := req(h, "POST", "/ingest/session", string(rec))
	if r.Code != 200 && r.Code != 201 {
		t.Fatalf("ingest = %d %s", r.Code, r.Body)
	}
	dry := decode(t, req(h, "POST", "/ingest/session?dryRun=true", string(rec)))["entry"].([]any)
	checked := 0
	for i, x := range decode(t, r)["entry"].([]any) {
		rs := x.(map[string]any)["response"].(map[string]any)
		loc, _ := rs["location"].(string)
		inst, _, ok := strings.Cut(loc, "/_history/")
		if !ok {
			continue
		}
		hist := decode(t, req(h, "GET", "/fhir/"+inst+"/_history?_count=1", ""))["entry"].([]any)[0].(map[string]any)
		method := dry[i].(map[string]any)["request"].(map[string]any)["method"]
		got := hist["request"].(map[string]any)["method"]
		status := hist["response"].(map[string]any)["status"].(string)
		if got != method || !strings.HasPrefix(rs["status"].(string), status) {
			t.Errorf("ingest entry %d (%s): history says %v %s, the ingest answered %s for a %v", i, inst, got, status, rs["status"], method)
		}
		checked++
	}
	if checked < 5 {
		t.Errorf("the ingest's answer located %d versions, want its resources'", checked)
	}
}

// TestTransactionConditionalReferences: a conditional reference is resolved
// against the state the transaction leaves (http.html#trules step 5): the
// stored resources it does not delete or rewrite, and the resources it
// writes, whether by a conditional create of the same (or equivalent)
// criteria or by any entry whose resource the criteria select. Exactly one
// match is the target; none and several fail the transaction whole.
func TestTransactionConditionalReferences(t *testing.T) {
	h := fhirServer(t)
	pat := func(fields string) string { return `{"resourceType":"Patient",` + fields + `}` }
	ident := func(v string) string { return `"identifier":[{"system":"http://ex.org/mrn","value":"` + v + `"}]` }
	post := func(full, res, ifNoneExist string) string {
		e := `{"resource":` + res + `,"request":{"method":"POST","url":"Patient"`
		if ifNoneExist != "" {
			e += `,"ifNoneExist":"` + ifNoneExist + `"`
		}
		e += `}}`
		if full != "" {
			e = `{"fullUrl":"` + full + `",` + e[1:]
		}
		return e
	}
	obs := func(ref string) string {
		return `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"` + ref +
			`"}},"request":{"method":"POST","url":"Observation"}}`
	}
	store := func(res string) string {
		rec := req(h, "POST", "/fhir/Patient", res)
		if rec.Code != 201 {
			t.Fatalf("create = %d %s", rec.Code, rec.Body)
		}
		return decode(t, rec)["id"].(string)
	}
	kept := store(pat(ident("KEEP")))
	store(pat(ident("TWICE")))
	gone := store(pat(ident("GONE")))
	renamed := store(pat(ident("OLD")))
	rec := req(h, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)
	if rec.Code != 201 {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	patched := decode(t, rec)["id"].(string)
	patchSubject := func(ref string) string {
		return jsonPatchEntry("Observation/"+patched, `[{"op":"add","path":"/subject","value":{"reference":"`+ref+`"}}]`)
	}
	for _, c := range []struct {
		name    string
		entries []string
		// want is the subject the Observation gets: the resource of entry
		// #n, or Patient/ and a stored id; or the rule of the failure.
		want string
	}{
		{"created by ifNoneExist with the same criteria",
			[]string{post("urn:uuid:11111111-1111-4111-8111-111111111111", pat(ident("TX-1")), "identifier=http://ex.org/mrn|TX-1"),
				obs("Patient?identifier=http://ex.org/mrn|TX-1")}, "#0"},
		{"created by ifNoneExist in the Type?criteria form, referenced percent-encoded",
			[]string{post("", pat(ident("TX-2")), "Patient?identifier=http://ex.org/mrn|TX-2"),
				obs("Patient?identifier=http%3A%2F%2Fex.org%2Fmrn%7CTX-2")}, "#0"},
		{"reference before the entry that creates it",
			[]string{obs("Patient?identifier=http://ex.org/mrn|TX-3"), post("", pat(ident("TX-3")), "identifier=http://ex.org/mrn|TX-3")}, "#1"},
		{"created by a plain POST the token criteria select",
			[]string{post("", pat(ident("TX-4")), ""), obs("Patient?identifier=http://ex.org/mrn|TX-4")}, "#0"},
		{"created by a plain POST string criteria select",
			[]string{post("", pat(`"name":[{"family":"Quillfeather"}]`), ""), obs("Patient?family=quillfeather")}, "#0"},
		{"two created, string criteria select one",
			[]string{post("", pat(`"name":[{"family":"Alphafeather"}]`), ""), post("", pat(`"name":[{"family":"Betafeather"}]`), ""),
				obs("Patient?family:exact=Betafeather&_id:not=x")}, "#1"},
		{"created by a plain POST date criteria select (confirmed after the writes)",
			[]string{post("", pat(`"birthDate":"1911-11-11"`), ""), obs("Patient?birthdate=1911-11-11")}, "#0"},
		{"stored and not touched",
			[]string{post("", pat(ident("TX-5")), ""), obs("Patient?identifier=http://ex.org/mrn|KEEP")}, kept},
		{"matched by a conditional create",
			[]string{post("", pat(ident("KEEP")), "identifier=http://ex.org/mrn|KEEP"), obs("Patient?identifier=http://ex.org/mrn|KEEP")}, kept},
		{"stored and created again: several",
			[]string{post("", pat(ident("TWICE")), ""), obs("Patient?identifier=http://ex.org/mrn|TWICE")}, "conditional-multiple-matches"},
		{"two plain POSTs the criteria select: several",
			[]string{post("", pat(ident("TX-6")), ""), post("", pat(ident("TX-6")), ""), obs("Patient?identifier=http://ex.org/mrn|TX-6")},
			"conditional-multiple-matches"},
		{"deleted by the transaction: none",
			[]string{`{"request":{"method":"DELETE","url":"Patient/` + gone + `"}}`, obs("Patient?identifier=http://ex.org/mrn|GONE")},
			"conditional-reference-unresolved"},
		{"rewritten by the transaction: its new content counts",
			[]string{`{"resource":{"resourceType":"Patient","id":"` + renamed + `",` + ident("NEW") + `},"request":{"method":"PUT","url":"Patient/` + renamed + `"}}`,
				obs("Patient?identifier=http://ex.org/mrn|NEW")}, renamed},
		{"rewritten by the transaction: its old content no longer counts",
			[]string{`{"resource":{"resourceType":"Patient","id":"` + renamed + `",` + ident("NEWER") + `},"request":{"method":"PUT","url":"Patient/` + renamed + `"}}`,
				obs("Patient?identifier=http://ex.org/mrn|NEW")}, "conditional-reference-unresolved"},
		{"written, but the string criteria do not select it",
			[]string{post("", pat(`"name":[{"family":"Otherwise"}]`), ""), obs("Patient?family=Nobodyhere")}, "conditional-reference-unresolved"},
		{"written, but the date criteria do not select it (found out after the writes)",
			[]string{post("", pat(`"birthDate":"1912-12-12"`), ""), obs("Patient?birthdate=1913")}, "conditional-reference-unresolved"},
		{"two written, the date criteria select both (found out after the writes)",
			[]string{post("", pat(`"birthDate":"1914-01-01"`), ""), post("", pat(`"birthDate":"1914-02-02"`), ""), obs("Patient?birthdate=1914")},
			"conditional-multiple-matches"},
		{"two written, the date criteria select the other one (found out after the writes)",
			[]string{post("", pat(`"birthDate":"1915-01-01"`), ""), post("", pat(`"birthDate":"1916-01-01"`), ""), obs("Patient?birthdate=1916")},
			"conditional-reference-undecided"},
		{"added by a patch, created by a plain POST",
			[]string{post("", pat(ident("TX-7")), ""), patchSubject("Patient?identifier=http://ex.org/mrn|TX-7")}, "#0"},
		{"nothing anywhere",
			[]string{obs("Patient?identifier=http://ex.org/mrn|NOWHERE")}, "conditional-reference-unresolved"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, "POST", "/fhir", txBundle(c.entries...))
			if strings.HasPrefix(c.want, "conditional-") {
				assertOutcome(t, rec, map[bool]int{true: 412, false: 400}[c.want == "conditional-multiple-matches"], c.want, "")
				return
			}
			if rec.Code != 200 {
				t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
			}
			entries := decode(t, rec)["entry"].([]any)
			loc := func(i int) string {
				return strings.Join(strings.Split(entries[i].(map[string]any)["response"].(map[string]any)["location"].(string), "/")[:2], "/")
			}
			want := "Patient/" + c.want
			if n, ok := strings.CutPrefix(c.want, "#"); ok {
				want = loc(int(n[0] - '0'))
			}
			obsIdx := len(c.entries) - 1
			if strings.Contains(c.entries[0], `"Observation"`) {
				obsIdx = 0
			}
			got := decode(t, req(h, "GET", "/fhir/"+loc(obsIdx), ""))["subject"].(map[string]any)["reference"]
			if got != want {
				t.Errorf("subject = %v, want %v", got, want)
			}
		})
	}
	// A failed transaction wrote nothing.
	if n := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://ex.org/mrn|TX-6", ""))["total"].(float64); n != 0 {
		t.Errorf("the failed transaction stored %v patients", n)
	}
}

// TestTransactionIdentityOverlap: two entries of a transaction that change
// the same resource (conditional ones as resolved) fail it whole with a 400
// naming both (http.html#trules); conditional creates that resolve to one
// resource and GETs do not count. A batch's entries stay independent.
func TestTransactionIdentityOverlap(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "PUT", "/fhir/Patient/ov-1", `{"resourceType":"Patient","id":"ov-1",`+`"identifier":[{"system":"http://ex.org/mrn","value":"OV-1"}]}`)
	if rec.Code != 201 {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	put := func(id, family string) string {
		return `{"resource":{"resourceType":"Patient","id":"` + id + `","name":[{"family":"` + family + `"}]},"request":{"method":"PUT","url":"Patient/` + id + `"}}`
	}
	condPut := func(mrn, family string) string {
		return `{"resource":{"resourceType":"Patient","identifier":[{"system":"http://ex.org/mrn","value":"` + mrn + `"}],"name":[{"family":"` + family +
			`"}]},"request":{"method":"PUT","url":"Patient?identifier=http://ex.org/mrn|` + mrn + `"}}`
	}
	condPost := func(mrn string) string {
		return `{"resource":{"resourceType":"Patient","identifier":[{"system":"http://ex.org/mrn","value":"` + mrn +
			`"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=http://ex.org/mrn|` + mrn + `"}}`
	}
	del := func(id string) string { return `{"request":{"method":"DELETE","url":"Patient/` + id + `"}}` }
	get := func(id string) string { return `{"request":{"method":"GET","url":"Patient/` + id + `"}}` }
	patch := func(id string) string {
		return jsonPatchEntry("Patient/"+id, `[{"op":"add","path":"/gender","value":"other"}]`)
	}
	for _, c := range []struct {
		name    string
		entries []string
		fail    bool
	}{
		{"two PUTs of one id", []string{put("ov-2", "One"), put("ov-2", "Two")}, true},
		{"PUT and DELETE of one id", []string{put("ov-1", "One"), del("ov-1")}, true},
		{"two DELETEs of one id", []string{del("ov-1"), del("ov-1")}, true},
		{"PATCH and PUT of one id", []string{patch("ov-1"), put("ov-1", "Two")}, true},
		{"two conditional PUTs selecting one resource", []string{condPut("OV-1", "One"), condPut("OV-1", "Two")}, true},
		{"two conditional PUTs creating one resource", []string{condPut("OV-3", "One"), condPut("OV-3", "Two")}, true},
		{"conditional PUT and PUT of the resource it selects", []string{condPut("OV-1", "One"), put("ov-1", "Two")}, true},
		{"conditional create matched, and a DELETE of it", []string{condPost("OV-1"), del("ov-1")}, true},
		{"conditional create, and a conditional PUT of the same criteria", []string{condPost("OV-4"), condPut("OV-4", "Two")}, true},
		{"two conditional creates of the same criteria", []string{condPost("OV-5"), condPost("OV-5")}, false},
		{"two conditional creates matching one stored resource", []string{condPost("OV-1"), condPost("OV-1")}, false},
		{"GET and PUT of one id", []string{get("ov-1"), put("ov-1", "Three")}, false},
		{"PUTs of different ids", []string{put("ov-6", "One"), put("ov-7", "Two")}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := decode(t, req(h, "GET", "/fhir/Patient/_history?_count=0", ""))["total"]
			rec := req(h, "POST", "/fhir", txBundle(c.entries...))
			if !c.fail {
				if rec.Code != 200 {
					t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
				}
				return
			}
			assertOutcome(t, rec, 400, "bundle-entry-identity-overlap", "")
			body := rec.Body.String()
			if !strings.Contains(body, "Bundle.entry[1].request") || !strings.Contains(body, "entry 0") {
				t.Errorf("the outcome does not name both entries: %s", body)
			}
			if after := decode(t, req(h, "GET", "/fhir/Patient/_history?_count=0", ""))["total"]; after != before {
				t.Errorf("the failed transaction wrote: %v versions before, %v after", before, after)
			}
		})
	}
	// A batch runs each entry on its own: both PUTs of one id succeed.
	rec = req(h, "POST", "/fhir", strings.Replace(txBundle(put("ov-8", "One"), put("ov-8", "Two")), `"transaction"`, `"batch"`, 1))
	var got []string
	for _, e := range decode(t, rec)["entry"].([]any) {
		got = append(got, e.(map[string]any)["response"].(map[string]any)["status"].(string))
	}
	if want := []string{"201 Created", "200 OK"}; !slices.Equal(got, want) {
		t.Errorf("batch statuses = %q, want %q", got, want)
	}
}

// TestPagingCursor: the next link of a search in an order of _lastUpdated
// and _id carries _cursor, so that what is written between two pages
// neither skips nor repeats a match: oldest first, two matches of page 1
// updated (moved to the end) do not push C out of page 2 (with offsets
// page 2 would be D, E and C never returned); newest first, a resource
// created between pages does not push D into page 2 again.
func TestPagingCursor(t *testing.T) {
	h := fhirServer(t)
	ids := make([]string, 5)
	for i := range ids {
		rec := req(h, "POST", "/fhir/Patient", fmt.Sprintf(`{"resourceType":"Patient","name":[{"family":"Cursor","given":["%c"]}]}`, 'A'+i))
		if rec.Code != 201 {
			t.Fatal(rec.Body)
		}
		ids[i] = decode(t, rec)["id"].(string)
		time.Sleep(2 * time.Millisecond) // distinct lastUpdated, so that creation order is the order
	}
	page := func(target string) (got []string, next string) {
		t.Helper()
		rec := req(h, "GET", target, "")
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		b := decode(t, rec)
		for _, e := range b["entry"].([]any) {
			r := e.(map[string]any)["resource"].(map[string]any)
			got = append(got, r["name"].([]any)[0].(map[string]any)["given"].([]any)[0].(string))
		}
		for _, l := range b["link"].([]any) {
			if l := l.(map[string]any); l["relation"] == "next" {
				u := l["url"].(string)
				next = u[strings.Index(u, "/fhir/"):]
			}
		}
		return got, next
	}
	walk := func(first string, between func()) []string {
		var all []string
		got, next := page(first)
		all = append(all, got...)
		between()
		for next != "" {
			got, next = page(next)
			all = append(all, got...)
		}
		return all
	}
	update := func(i int) {
		body := fmt.Sprintf(`{"resourceType":"Patient","id":"%s","gender":"other","name":[{"family":"Cursor","given":["%c"]}]}`, ids[i], 'A'+i)
		if rec := req(h, "PUT", "/fhir/Patient/"+ids[i], body); rec.Code != 200 {
			t.Fatalf("update = %d %s", rec.Code, rec.Body)
		}
	}
	got := walk("/fhir/Patient?family=cursor&_count=2", func() {
		update(0)
		time.Sleep(2 * time.Millisecond) // B updated after A, not in the same millisecond
		update(1)
	})
	if want := "A B C D E A B"; strings.Join(got, " ") != want {
		t.Errorf("oldest first, A and B updated after page 1: pages gave %v, want %s", got, want)
	}
	got = walk("/fhir/Patient?family=cursor&_count=2&_sort=-_lastUpdated", func() {
		if rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","name":[{"family":"Cursor","given":["F"]}]}`); rec.Code != 201 {
			t.Fatal(rec.Body)
		}
	})
	if want := "B A E D C"; strings.Join(got, " ") != want {
		t.Errorf("newest first, F created after page 1: pages gave %v, want %s", got, want)
	}
	// In the order of a date parameter too: birth dates newest first, a
	// Patient born later than the cursor's created between the pages
	// sorts before it and does not push the next page down.
	for i := range ids {
		body := fmt.Sprintf(`{"resourceType":"Patient","id":"%s","birthDate":"199%d-01-01","name":[{"family":"Cursor","given":["%c"]}]}`, ids[i], i, 'A'+i)
		if rec := req(h, "PUT", "/fhir/Patient/"+ids[i], body); rec.Code != 200 {
			t.Fatalf("update = %d %s", rec.Code, rec.Body)
		}
	}
	got = walk("/fhir/Patient?family=cursor&_count=2&_sort=-birthdate", func() {
		if rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","birthDate":"2001-01-01","name":[{"family":"Cursor","given":["G"]}]}`); rec.Code != 201 {
			t.Fatal(rec.Body)
		}
	})
	if want := "E D C B A F"; strings.Join(got, " ") != want {
		t.Errorf("by birth date newest first, G born later created after page 1: pages gave %v, want %s", got, want)
	}
	for _, target := range []string{
		"/fhir/Patient?_cursor=birthdate!631152000000~1.Patient.x&_sort=birthdate",
		"/fhir/Patient?_cursor=-_lastUpdated!1.Patient.x&_sort=-_lastUpdated",
		"/fhir/Patient?_cursor=1.Patient.x&_sort=-_lastUpdated", // a link made before cursors named their order
	} {
		if rec := req(h, "GET", target, ""); rec.Code != 200 {
			t.Errorf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
	}
	for _, target := range []string{
		"/fhir/Patient?_cursor=yesterday",
		"/fhir/Patient?_cursor=1.Nope.x",
		"/fhir/Patient?_cursor=1.Patient.a%20b",
		"/fhir/Patient?_cursor=1.Patient.x&_sort=birthdate",
		"/fhir/Patient?_cursor=5~1.Patient.x",
		"/fhir/Patient?_cursor=x~1.Patient.x&_sort=birthdate",
		// A cursor of another order, or of another type's search, is
		// refused, not taken for a position in this one (p36 F1).
		"/fhir/Patient?_cursor=631152000000~1.Patient.x&_sort=birthdate",
		"/fhir/Patient?_cursor=-birthdate!631152000000~1.Patient.x&_sort=birthdate",
		"/fhir/Patient?_cursor=birthdate!631152000000~1.Patient.x&_sort=birthdate,-_lastUpdated",
		"/fhir/Patient?_cursor=-_lastUpdated!1.Patient.x&_sort=_lastUpdated",
		"/fhir/Patient?_cursor=1.Observation.x",
		"/fhir/Patient?_cursor=bad%20order!1.Patient.x",
	} {
		assertOutcome(t, req(h, "GET", target, ""), 400, "search-value-invalid", "")
	}
}

// TestSummaryCountSelfLink: a search for the total alone links to itself
// with the parameters it was sent, not with a page size it did not ask for.
func TestSummaryCountSelfLink(t *testing.T) {
	h := fhirServer(t)
	tests := []struct{ target, want string }{
		{"/fhir/Observation?_summary=count", "/fhir/Observation?_summary=count"},
		{"/fhir/Observation?_count=0", "/fhir/Observation?_count=0"},
		{"/fhir/Observation?_count=0&_summary=count&status=final", "/fhir/Observation?_count=0&_summary=count&status=final"},
		{"/fhir/Observation?_summary=count&_offset=20", "/fhir/Observation?_summary=count"},
		{"/fhir/Observation?status=final", "/fhir/Observation?_count=50&status=final"},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			b := decode(t, req(h, "GET", tc.target, ""))
			links, _ := b["link"].([]any)
			if len(links) == 0 {
				t.Fatalf("no links: %v", b)
			}
			l := links[0].(map[string]any)
			if l["relation"] != "self" || !strings.HasSuffix(l["url"].(string), tc.want) {
				t.Errorf("self link %v, want ...%s", l, tc.want)
			}
		})
	}
}

// TestBatchShellIssues: a batch Bundle that breaks a rule of its own is
// told that rule only; its entries are not told they lack the resource
// the shell's check had set aside (a conformance review: bdl-5 "must
// have a resource, a request or a response", or "an object must not be
// empty", beside the right bdl-3).
func TestBatchShellIssues(t *testing.T) {
	h := fhirServer(t)
	for _, tc := range []struct{ name, entry string }{
		{"with fullUrl", `{"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222223","resource":{"resourceType":"Patient","active":true}}`},
		{"without fullUrl", `{"resource":{"resourceType":"Patient","active":true}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+tc.entry+`]}`)
			b := decode(t, rec)
			var rules []string
			for _, is := range b["issue"].([]any) {
				for _, c := range is.(map[string]any)["details"].(map[string]any)["coding"].([]any) {
					rules = append(rules, c.(map[string]any)["code"].(string))
				}
			}
			if rec.Code != http.StatusBadRequest || len(rules) != 1 || rules[0] != "bdl-3" {
				t.Errorf("= %d with rules %v, want 400 with bdl-3 alone", rec.Code, rules)
			}
		})
	}
	// A batch whose shell is sound runs each entry, the bad one failing
	// alone.
	rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[
		{"resource":{"resourceType":"Patient","active":true},"request":{"method":"POST","url":"Patient"}},
		{"resource":{"resourceType":"Observation"},"request":{"method":"POST","url":"Observation"}}]}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"201 Created"`) || !strings.Contains(rec.Body.String(), `"400 Bad Request"`) {
		t.Errorf("batch = %d %s, want 200 with a 201 and a 400 entry", rec.Code, rec.Body)
	}
}

// TestWriteMediaTypes: a FHIR JSON body is taken with every JSON media
// type the gateway answers in, text/json included (a conformance review:
// a create with text/json was 415 while Accept: text/json was served),
// and the refusal of another type names them all.
func TestWriteMediaTypes(t *testing.T) {
	h := fhirServer(t)
	for _, tc := range []struct {
		contentType string
		status      int
	}{
		{"application/fhir+json", 201}, {"application/json", 201}, {"application/json+fhir", 201},
		{"text/json", 201}, {"text/json; charset=utf-8", 201}, {"text/plain", 415}, {"application/fhir+xml", 415},
	} {
		rec := req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient","active":true}`, "Content-Type: "+tc.contentType)
		if rec.Code != tc.status {
			t.Errorf("%s: = %d %s, want %d", tc.contentType, rec.Code, rec.Body, tc.status)
		}
		if tc.status == 415 && !strings.Contains(rec.Body.String(), "text/json") {
			t.Errorf("%s: the refusal does not name the types taken: %s", tc.contentType, rec.Body)
		}
	}
}

// TestInstanceHistorySinceNothingNew: the history of a resource that
// exists, asked with a _since after its last change, is an empty history
// (a client polling for changes), not 404; a resource never written is
// 404 with or without _since (a conformance review).
func TestInstanceHistorySinceNothingNew(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient", patientJSON)
	if rec.Code != http.StatusCreated {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	id := decode(t, rec)["id"].(string)
	for _, tc := range []struct {
		target string
		code   int
		total  float64
	}{
		{"/fhir/Patient/" + id + "/_history?_since=2030-01-01T00:00:00Z", 200, 0},
		{"/fhir/Patient/" + id + "/_history?_since=2000-01-01T00:00:00Z", 200, 1},
		{"/fhir/Patient/nobody/_history?_since=2000-01-01T00:00:00Z", 404, 0},
		{"/fhir/Patient/nobody/_history", 404, 0},
	} {
		rec := req(h, "GET", tc.target, "")
		if rec.Code != tc.code {
			t.Errorf("GET %s = %d %s, want %d", tc.target, rec.Code, rec.Body, tc.code)
			continue
		}
		if tc.code == 200 {
			if b := decode(t, rec); b["type"] != "history" || b["total"].(float64) != tc.total {
				t.Errorf("GET %s = %s, want a history of %v", tc.target, rec.Body, tc.total)
			}
		}
	}
}

// TestReadOnlyTypesAllow: a write to a type clients may not write is 405
// with Allow naming what the target supports (GET, HEAD), not the other
// write methods it refuses too, and OPTIONS says the same; $validate of a
// create of one reports the refusal (a conformance review).
func TestReadOnlyTypesAllow(t *testing.T) {
	h := fhirServer(t)
	for _, tc := range []struct{ method, target string }{
		{"POST", "/fhir/ValueSet"}, {"PUT", "/fhir/ValueSet/kg-drugs"}, {"PATCH", "/fhir/ValueSet/kg-drugs"},
		{"DELETE", "/fhir/ValueSet/kg-drugs"}, {"POST", "/fhir/StructureDefinition"}, {"POST", "/fhir/AuditEvent"},
	} {
		rec := req(h, tc.method, tc.target, `{"resourceType":"`+strings.Split(tc.target, "/")[2]+`"}`)
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s %s = %d Allow %q, want 405 Allow GET, HEAD", tc.method, tc.target, rec.Code, rec.Header().Get("Allow"))
		}
	}
	for _, target := range []string{"/fhir/ValueSet/kg-drugs", "/fhir/ValueSet", "/fhir/AuditEvent/x"} {
		rec := req(h, "OPTIONS", target, "")
		if allow := rec.Header().Get("Allow"); allow != "OPTIONS, GET, HEAD" {
			t.Errorf("OPTIONS %s = %d Allow %q, want OPTIONS, GET, HEAD", target, rec.Code, allow)
		}
	}
	if allow := req(h, "OPTIONS", "/fhir/Patient/x", "").Header().Get("Allow"); !strings.Contains(allow, "PUT") {
		t.Errorf("OPTIONS of a writable type's instance: Allow %q, want its write methods", allow)
	}
	rec := req(h, "POST", "/fhir/ValueSet/$validate?mode=create", `{"resourceType":"ValueSet","status":"draft"}`)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "conformance-read-only") {
		t.Errorf("$validate of a ValueSet create = %d %s, want the conformance-read-only error", rec.Code, rec.Body)
	}
}

// TestSearchFormFormat: _format in a POST _search's form body means what
// it means in the URL (search.html): honoured, or refused alike; given in
// both, it is 400 (a conformance review: it was ignored, and the paging
// links repeated it).
func TestSearchFormFormat(t *testing.T) {
	h := fhirServer(t)
	form := func(body string) *httptest.ResponseRecorder {
		return req(h, "POST", "/fhir/Patient/_search", body, "Content-Type: application/x-www-form-urlencoded")
	}
	if rec := form("_format=xml&_count=2"); rec.Code != http.StatusNotAcceptable {
		t.Errorf("_format=xml in the form = %d %s, want 406 as in the URL", rec.Code, rec.Body)
	}
	if rec := form("_format=application/json"); rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		t.Errorf("_format=application/json in the form = %d %q, want 200 application/json", rec.Code, rec.Header().Get("Content-Type"))
	}
	if rec := req(h, "POST", "/fhir/Patient/_search?_format=json", "_format=json", "Content-Type: application/x-www-form-urlencoded"); rec.Code != http.StatusBadRequest {
		t.Errorf("_format in the URL and the form = %d %s, want 400", rec.Code, rec.Body)
	}
}

// TestVReadUnknownBoth: a vread naming neither a resource nor a version is
// resource-unknown; a version that is not one of a resource that exists
// is version-unknown (a conformance review).
func TestVReadUnknownBoth(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient", patientJSON)
	id := decode(t, rec)["id"].(string)
	for target, rule := range map[string]string{
		"/fhir/Patient/JohnSmith/_history/JohnSmith":  "resource-unknown",
		"/fhir/Patient/JohnSmith/_history/7":          "resource-unknown",
		"/fhir/Patient/" + id + "/_history/JohnSmith": "version-unknown",
		"/fhir/Patient/" + id + "/_history/7":         "version-unknown",
	} {
		assertOutcome(t, req(h, "GET", target, ""), http.StatusNotFound, rule, "")
	}
}
