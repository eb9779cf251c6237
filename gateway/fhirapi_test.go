package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// The FHIR API features of issue 13 items 5-7, through the real handler.

// TestConditionalTypeForm: ifNoneExist, If-None-Exist and conditional
// update criteria are accepted as Type?criteria when Type is the entry's
// type (HL7's Bundle-xds writes them so); another type is 400 naming the
// entry, and nothing is written.
func TestConditionalTypeForm(t *testing.T) {
	h := fhirServer(t)
	entry := strings.Replace(patEntry, `"ifNoneExist":"identifier=`, `"ifNoneExist":"Patient?identifier=`, 1)
	if rec := req(h, "POST", "/fhir", txBundle(entry)); rec.Code != 200 {
		t.Fatalf("transaction with ifNoneExist Patient?identifier= = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "POST", "/fhir", txBundle(entry))
	st := decode(t, rec)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["status"]
	if st != "200 OK" {
		t.Errorf("the same Type?criteria again = %v, want 200 OK (matched)", st)
	}
	rec = req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: Patient?identifier=http://hospital.example/mrn|M1")
	if rec.Code != http.StatusOK {
		t.Errorf("If-None-Exist: Patient?identifier= = %d, want 200 (matched)", rec.Code)
	}
	rec = req(h, "PUT", "/fhir/Patient?identifier=http://hospital.example/mrn|M1", strings.Replace(patientJSON, "Ann", "Anne", 1))
	if rec.Code != http.StatusOK {
		t.Errorf("conditional update = %d %s", rec.Code, rec.Body)
	}

	// Another type: 400 naming the entry, nothing written.
	other := strings.Replace(patEntry, `"ifNoneExist":"identifier=http://hospital.example/mrn|M1`,
		`"ifNoneExist":"Observation?identifier=http://hospital.example/mrn|NEW`, 1)
	other = strings.Replace(other, `"value":"M1"`, `"value":"NEW"`, 1)
	other = strings.Replace(other, "urn:uuid:11111111-1111-4111-8111-111111111111", "urn:uuid:55555555-5555-4555-8555-555555555555", 1)
	rec = req(h, "POST", "/fhir", txBundle(patEntry, other))
	assertOutcome(t, rec, 400, "search-type-mismatch", "")
	if !strings.Contains(rec.Body.String(), "Bundle entry 1") {
		t.Errorf("the outcome does not name the entry: %s", rec.Body)
	}
	rec = req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: Observation?identifier=http://hospital.example/mrn|M1")
	assertOutcome(t, rec, 400, "search-type-mismatch", "")
	if n := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|NEW", ""))["total"].(float64); n != 0 {
		t.Errorf("a refused Type?criteria wrote %v patients", n)
	}
}

// seedChain stores two patients with an Observation each, in one
// transaction, and returns the first patient's id.
func seedChain(t *testing.T, h http.Handler) string {
	t.Helper()
	p2 := strings.NewReplacer("M1", "M2", "Testpatient", "Otherpatient", "11111111-1111", "33333333-3333").Replace(patEntry)
	body := txBundle(patEntry, p2,
		fmt.Sprintf(obsTmpl, "22222222-2222-4222-8222-222222222222", "urn:uuid:11111111-1111-4111-8111-111111111111"),
		strings.Replace(fmt.Sprintf(obsTmpl, "44444444-4444-4444-8444-444444444444", "urn:uuid:33333333-3333-4111-8111-111111111111"),
			"8867-4", "8480-6", 1))
	rec := req(h, "POST", "/fhir", body)
	if rec.Code != 200 {
		t.Fatalf("seed = %d %s", rec.Code, rec.Body)
	}
	loc := decode(t, rec)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	return strings.Split(loc, "/")[1]
}

// TestChainedSearch: chains and _has through the handler, and the 400s
// that name the parameter without quoting what the client made up.
func TestChainedSearch(t *testing.T) {
	h := fhirServer(t)
	seedChain(t, h)
	for _, tc := range []struct {
		target string
		total  float64
	}{
		{"/fhir/Observation?patient.identifier=http://hospital.example/mrn|M1", 1},
		{"/fhir/Observation?subject:Patient.identifier=M2", 1},
		{"/fhir/Observation?subject.name=testpat", 1},
		{"/fhir/Observation?patient.family=Otherpatient&code=8480-6", 1},
		{"/fhir/Observation?patient.family=Otherpatient&code=8867-4", 0},
		{"/fhir/Observation?patient.gender=female", 2},
		{"/fhir/Patient?_has:Observation:patient:code=8867-4", 1},
		{"/fhir/Patient?_has:Observation:subject:code=http://loinc.org|8480-6&family=Other", 1},
		{"/fhir/Patient?_has:Observation:patient:code=nope", 0},
	} {
		wantTotal(t, h, tc.target, tc.total)
	}
	for _, tc := range []struct{ target, rule, expr string }{
		{"/fhir/Observation?subject.SECRET7=x", "search-param-unknown", "subject"},
		{"/fhir/Observation?subject:SECRET7.name=x", "search-chain-unsupported", "subject"},
		{"/fhir/Observation?subject.organization.name=x", "search-limit-exceeded", "subject"},
		{"/fhir/Patient?_has:Observation:patient:_has:AuditEvent:entity:type=x", "search-limit-exceeded", "_has:Observation:patient"},
		{"/fhir/Patient?_has:SECRET7:patient:code=x", "search-chain-unsupported", "_has"},
	} {
		rec := req(h, "GET", tc.target, "")
		assertOutcome(t, rec, 400, tc.rule, "")
		if strings.Contains(rec.Body.String(), "SECRET7") {
			t.Errorf("GET %s quotes the made-up name: %s", tc.target, rec.Body)
		}
		if !strings.Contains(rec.Body.String(), `"expression":["`+tc.expr+`"]`) {
			t.Errorf("GET %s does not name %s: %s", tc.target, tc.expr, rec.Body)
		}
	}
}

// TestOwnBaseURLs: the server's own absolute URLs (the fullUrls it
// answers with, on the base the request was served at) name the same
// resources as relative references: in a reference search, a chained one,
// a Bundle's GET entry, and as the base of conditional criteria
// ([base]/Type?criteria). Another server's URL is not this server's
// resource; as conditional criteria it is refused, saying why.
func TestOwnBaseURLs(t *testing.T) {
	h := fhirServer(t)
	seedChain(t, h)
	found := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|M1", ""))
	full := found["entry"].([]any)[0].(map[string]any)["fullUrl"].(string) // http://example.com/fhir/Patient/<id>
	id := full[strings.LastIndexByte(full, '/')+1:]
	other := "http://other.example/fhir/Patient/" + id
	q := url.QueryEscape
	for _, tc := range []struct {
		target string
		total  float64
	}{
		{"/fhir/Observation?subject=Patient/" + id, 1},
		{"/fhir/Observation?subject=" + q(full), 1},
		{"/fhir/Observation?patient=" + q(full+"/_history/1"), 1},
		{"/fhir/Observation?subject:Patient=" + q(full), 1},
		{"/fhir/Observation?subject=" + q(other), 0},
		{"/fhir/Patient?_has:Observation:subject:subject=" + q(full), 1},
	} {
		wantTotal(t, h, tc.target, tc.total)
	}
	rec := req(h, "POST", "/fhir", txBundle(`{"request":{"method":"GET","url":"Observation?subject=`+q(full)+`"}}`))
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	if got := decode(t, rec)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["total"]; got != 1.0 {
		t.Errorf("GET entry with the own absolute URL: total %v, want 1", got)
	}

	// If-None-Exist (and conditional criteria in general) on the own base.
	base := strings.TrimSuffix(full, "/Patient/"+id)
	rec = req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: "+base+"/Patient?identifier=http://hospital.example/mrn|M1")
	if rec.Code != 200 || decode(t, rec)["id"] != id {
		t.Errorf("If-None-Exist on the own base = %d %s, want 200 with Patient/%s", rec.Code, rec.Body, id)
	}
	rec = req(h, "POST", "/fhir", txBundle(`{"resource":`+patientJSON+`,"request":{"method":"POST","url":"Patient","ifNoneExist":"`+base+`/Patient?identifier=http://hospital.example/mrn|M1"}}`))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"200 OK"`) {
		t.Errorf("ifNoneExist on the own base = %d %s", rec.Code, rec.Body)
	}
	// A conditional reference on the own base is resolved like Patient?criteria.
	rec = req(h, "POST", "/fhir", txBundle(`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},`+
		`"subject":{"reference":"`+base+`/Patient?identifier=http://hospital.example/mrn|M1"}},"request":{"method":"POST","url":"Observation"}}`))
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	loc := decode(t, rec)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["location"].(string)
	if got := decode(t, req(h, "GET", "/fhir/"+strings.Join(strings.Split(loc, "/")[:2], "/"), ""))["subject"]; got.(map[string]any)["reference"] != "Patient/"+id {
		t.Errorf("conditional reference on the own base: subject %v, want Patient/%s", got, id)
	}
	rec = req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: http://other.example/fhir/Patient?identifier=http://hospital.example/mrn|M1")
	assertOutcome(t, rec, 400, "search-value-invalid", "")
	if !strings.Contains(rec.Body.String(), "absolute URL") {
		t.Errorf("If-None-Exist on another base: %s; want the absolute URL named as the problem", rec.Body)
	}
}

// TestAuditChainFromTheAPI: an auditor can check the hash chain with the
// AuditEvents the API answers, as docs/audit.md says: hash(n) =
// SHA-256(hex hash(n-1) || 0x00 || GET /fhir/AuditEvent/{id}'s body), from
// the empty string.
func TestAuditChainFromTheAPI(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	h := newServer(t, app.Config{Store: st}, gateway.Config{})
	for range 3 {
		req(h, "POST", "/fhir/Patient", patientJSON)
	}
	prev, n := "", 0
	err := st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		rec := req(h, "GET", "/fhir/AuditEvent/"+e.ID, "")
		if rec.Code != 200 {
			t.Fatalf("GET AuditEvent/%s = %d", e.ID, rec.Code)
		}
		sum := sha256.Sum256(append(append([]byte(prev), 0), rec.Body.Bytes()...))
		if got := hex.EncodeToString(sum[:]); got != e.Hash {
			t.Errorf("record %d: SHA-256 of the API's body = %s, the chain holds %s", e.Seq, got, e.Hash)
		}
		prev, n = e.Hash, n+1
		return nil
	})
	if err != nil || n < 3 {
		t.Fatalf("chain: %d records, %v", n, err)
	}
}

// TestEscapedOperation: an operation's "$" sent escaped (%24, as clients
// that escape every reserved character send it) names the operation;
// "%2524" is a literal "%24": an id.
func TestEscapedOperation(t *testing.T) {
	h := fhirServer(t)
	for _, tc := range []struct {
		target string
		want   int
	}{
		{"/fhir/Patient/%24validate", 200},
		{"/fhir/%24validate", 200},
		{"/fhir/Patient/$validate", 200},
		{"/fhir/Patient/%2524validate", 405}, // an id, which takes no POST
	} {
		if rec := req(h, "POST", tc.target, patientJSON); rec.Code != tc.want {
			t.Errorf("POST %s = %d %s, want %d", tc.target, rec.Code, rec.Body, tc.want)
		}
	}
}

// TestUnknownOperation: an operation the gateway does not have is 404
// operation-unknown naming the ones it has (never the name sent), not "no
// such resource" or "not a resource type"; the capability statement takes
// GET (and HEAD) only.
func TestUnknownOperation(t *testing.T) {
	h := fhirServer(t)
	for _, target := range []string{"/fhir/$nope", "/fhir/Patient/$nope", "/fhir/Patient/p1/$nope", "/fhir/Patient/%24nope"} {
		rec := req(h, "GET", target, "")
		assertOutcome(t, rec, 404, "operation-unknown", "")
		if strings.Contains(rec.Body.String(), "nope") {
			t.Errorf("GET %s repeats the name sent: %s", target, rec.Body)
		}
	}
	// Every other method: one Allow, the one OPTIONS gives, and a text
	// about the capability statement (DELETE was answered as a
	// conditional delete of a type "metadata": a conformance review).
	options := req(h, "OPTIONS", "/fhir/metadata", "").Header().Get("Allow")
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE"} {
		rec := req(h, m, "/fhir/metadata", patientJSON)
		assertOutcome(t, rec, 405, "method-not-allowed", "")
		if got := rec.Header().Get("Allow"); got != "OPTIONS, GET, HEAD" || got != options {
			t.Errorf("%s /fhir/metadata: Allow %q, want OPTIONS, GET, HEAD (OPTIONS says %q)", m, got, options)
		}
		if !strings.Contains(rec.Body.String(), "capability statement") {
			t.Errorf("%s /fhir/metadata = %s, want it to name the capability statement", m, rec.Body)
		}
	}
	if rec := req(h, "GET", "/fhir/metadata", ""); rec.Code != 200 {
		t.Errorf("GET /fhir/metadata = %d", rec.Code)
	}
}

// TestOtherServersReferences: a reference to another server's resource
// is not one to this server's resource of the same type and id: it is found
// by its URL only, never in the local resource's compartment, chains,
// _has, includes or searches by Type/id (another hospital's Patient/77 is
// not this one's). A reference written on the gateway's own base is stored
// relative and is the local resource's.
func TestOtherServersReferences(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/p77", `{"resourceType":"Patient","id":"p77","identifier":[{"system":"http://ex/mrn","value":"x"}]}`); rec.Code != 201 {
		t.Fatalf("PUT Patient/p77 = %d %s", rec.Code, rec.Body)
	}
	const foreign = "https://hospital-b.example.org/fhir/Patient/p77"
	obs := func(ref, code string) string {
		return `{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"` + code +
			`"}]},"subject":{"reference":"` + ref + `"}}`
	}
	foreignID := decode(t, req(h, "POST", "/fhir/Observation", obs(foreign, "1-1")))["id"].(string)
	rec := req(h, "POST", "/fhir/Observation", obs("http://example.com/fhir/Patient/p77", "2-2"))
	own := decode(t, rec)
	if got := own["subject"].(map[string]any)["reference"]; got != "Patient/p77" {
		t.Errorf("a reference on the own base is stored as %v, want Patient/p77", got)
	}
	q := url.QueryEscape
	for _, tc := range []struct {
		target string
		want   []string // Observation codes, or the Patient for _has
	}{
		{"/fhir/Observation?subject=Patient/p77", []string{"2-2"}},
		{"/fhir/Observation?subject=p77", []string{"2-2"}},
		{"/fhir/Observation?patient=Patient/p77", []string{"2-2"}},
		{"/fhir/Observation?subject=" + q(foreign), []string{"1-1"}},
		{"/fhir/Observation?subject:Patient=" + q(foreign), []string{"1-1"}},
		{"/fhir/Patient/p77/Observation", []string{"2-2"}},
		{"/fhir/Observation?subject.identifier=x", []string{"2-2"}},
		{"/fhir/Observation?subject:Patient._id=p77", []string{"2-2"}},
		{"/fhir/Patient?_has:Observation:subject:code=1-1", nil},
		{"/fhir/Patient?_has:Observation:subject:code=2-2", []string{"p77"}},
	} {
		rec := req(h, "GET", tc.target, "")
		if rec.Code != 200 {
			t.Errorf("GET %s = %d %s", tc.target, rec.Code, rec.Body)
			continue
		}
		var got []string
		for _, e := range entriesOf(decode(t, rec)) {
			r := e["resource"].(map[string]any)
			if r["resourceType"] == "Patient" {
				got = append(got, r["id"].(string))
			} else {
				got = append(got, r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string))
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("GET %s = %v, want %v", tc.target, got, tc.want)
		}
	}
	// _include of the foreign reference includes nothing; $everything of
	// the local Patient does not hold the foreign Observation.
	page := decode(t, req(h, "GET", "/fhir/Observation?_id="+foreignID+"&_include=Observation:subject", ""))
	if n := len(entriesOf(page)); n != 1 {
		t.Errorf("_include of another server's Patient: %d entries, want the Observation only", n)
	}
	everything := req(h, "GET", "/fhir/Patient/p77/$everything", "")
	if everything.Code != 200 {
		t.Fatalf("$everything of Patient/p77 = %d %s", everything.Code, everything.Body)
	}
	if strings.Contains(everything.Body.String(), foreignID) {
		t.Errorf("$everything of Patient/p77 holds the Observation of another server's Patient/p77")
	}
}

// TestConditionalRead: If-None-Match naming the current version and
// If-Modified-Since at or after the last update answer 304 with the
// version headers and no body, on read, vread and a Bundle's GET entry.
func TestConditionalRead(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "POST", "/fhir/Patient", patientJSON)
	id := decode(t, rec)["id"].(string)
	lm := rec.Header().Get("Last-Modified")
	for _, tc := range []struct {
		name, target, header string
		want                 int
	}{
		{"matching ETag", "/fhir/Patient/" + id, `If-None-Match: W/"1"`, 304},
		{"ETag of another version", "/fhir/Patient/" + id, `If-None-Match: W/"2"`, 200},
		// Tags compare as strings; a bare number is no tag (p43 F1).
		{"ETag with a leading zero", "/fhir/Patient/" + id, `If-None-Match: W/"01"`, 200},
		{"a bare number", "/fhir/Patient/" + id, `If-None-Match: 1`, 200},
		{"vread, matching ETag", "/fhir/Patient/" + id + "/_history/1", `If-None-Match: W/"1"`, 304},
		{"not modified since", "/fhir/Patient/" + id, "If-Modified-Since: " + lm, 304},
		{"modified since", "/fhir/Patient/" + id, "If-Modified-Since: Mon, 02 Jan 2006 15:04:05 GMT", 200},
		{"an unreadable date is ignored", "/fhir/Patient/" + id, "If-Modified-Since: yesterday", 200},
	} {
		rec := req(h, "GET", tc.target, "", tc.header)
		if rec.Code != tc.want {
			t.Errorf("%s: GET = %d, want %d", tc.name, rec.Code, tc.want)
		}
		if tc.want == 304 && (rec.Body.Len() != 0 || rec.Header().Get("ETag") != `W/"1"` || rec.Header().Get("Last-Modified") == "") {
			t.Errorf("%s: 304 with body %q and headers %v", tc.name, rec.Body, rec.Header())
		}
	}
	body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/` + id + `","ifNoneMatch":"W/\"1\""}},` +
		`{"request":{"method":"GET","url":"Patient/` + id + `","ifNoneMatch":"W/\"9\""}}]}`
	entries := decode(t, req(h, "POST", "/fhir", body))["entry"].([]any)
	first, second := entries[0].(map[string]any), entries[1].(map[string]any)
	if first["response"].(map[string]any)["status"] != "304 Not Modified" || first["resource"] != nil {
		t.Errorf("batch GET with a matching ifNoneMatch = %v", first)
	}
	if second["response"].(map[string]any)["status"] != "200 OK" || second["resource"] == nil {
		t.Errorf("batch GET with another ifNoneMatch = %v", second)
	}
}

// TestDatePreconditionsWithinASecond: an HTTP-date names a second, and a
// resource may get several versions in one. A read whose If-Modified-Since
// is the Last-Modified of a version that a later version of the same
// second replaced is 200 with the resource, not 304 (the client's copy is
// stale); a write guarded by If-Unmodified-Since with that date is 412
// modified-since, not a lost update. Where the date's second holds the
// current version only, the date is that version's: 304, and the write
// goes ahead. A Bundle GET entry's ifModifiedSince is an instant: with
// milliseconds it names a millisecond.
func TestDatePreconditionsWithinASecond(t *testing.T) {
	var mu sync.Mutex
	clock := time.Date(2026, 12, 5, 12, 53, 29, 100e6, time.UTC)
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	setClock := func(t time.Time) { mu.Lock(); defer mu.Unlock(); clock = t }
	h := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{}), UpdateCreate: true, Now: now}, gateway.Config{})

	rec := req(h, "PUT", "/fhir/Patient/same-second", `{"resourceType":"Patient","id":"same-second","gender":"male"}`)
	if rec.Code != 201 {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	lm1 := rec.Header().Get("Last-Modified") // Sat, 05 Dec 2026 12:53:29 GMT
	if rec := req(h, "GET", "/fhir/Patient/same-second", "", "If-Modified-Since: "+lm1); rec.Code != 304 {
		t.Errorf("read with the only version's own date = %d, want 304", rec.Code)
	}

	// Another writer, 500 ms later: version 2 in the same second.
	setClock(clock.Add(500 * time.Millisecond))
	rec = req(h, "PUT", "/fhir/Patient/same-second", `{"resourceType":"Patient","id":"same-second","gender":"female"}`)
	if rec.Code != 200 || rec.Header().Get("Last-Modified") != lm1 {
		t.Fatalf("update = %d, Last-Modified %q, want 200 and %q", rec.Code, rec.Header().Get("Last-Modified"), lm1)
	}
	bundleGet := func(ifModifiedSince string) string {
		t.Helper()
		body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient/same-second",` +
			`"ifModifiedSince":"` + ifModifiedSince + `"}}]}`
		rec := req(h, "POST", "/fhir", body)
		if rec.Code != 200 {
			t.Fatalf("batch = %d %s", rec.Code, rec.Body)
		}
		return decode(t, rec)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["status"].(string)
	}
	for _, tc := range []struct {
		name string
		got  func() int
		want int
	}{
		{"read with version 1's date", func() int {
			return req(h, "GET", "/fhir/Patient/same-second", "", "If-Modified-Since: "+lm1).Code
		}, 200},
		{"vread of version 2 with its date", func() int {
			return req(h, "GET", "/fhir/Patient/same-second/_history/2", "", "If-Modified-Since: "+lm1).Code
		}, 304},
		{"batch GET with the second", func() int {
			return statusCode(bundleGet("2026-12-05T12:53:29Z"))
		}, 200},
		{"batch GET with version 1's millisecond", func() int {
			return statusCode(bundleGet("2026-12-05T12:53:29.100Z"))
		}, 200},
		{"batch GET with version 2's millisecond", func() int {
			return statusCode(bundleGet("2026-12-05T12:53:29.600Z"))
		}, 304},
		{"update guarded by version 1's date", func() int {
			rec := req(h, "PUT", "/fhir/Patient/same-second", `{"resourceType":"Patient","id":"same-second","gender":"other"}`,
				"If-Unmodified-Since: "+lm1)
			if rec.Code == 412 && !strings.Contains(rec.Body.String(), "modified-since") {
				t.Errorf("412 without modified-since: %s", rec.Body)
			}
			return rec.Code
		}, 412},
	} {
		if got := tc.got(); got != tc.want {
			t.Errorf("%s = %d, want %d", tc.name, got, tc.want)
		}
	}
	if g := decode(t, req(h, "GET", "/fhir/Patient/same-second", ""))["gender"]; g != "female" {
		t.Errorf("gender = %v after the guarded update, want the other writer's female", g)
	}

	// Version 3 a second later is the only version of its second: its
	// date names it.
	setClock(clock.Add(time.Second))
	rec = req(h, "PUT", "/fhir/Patient/same-second", `{"resourceType":"Patient","id":"same-second","gender":"unknown"}`)
	lm3 := rec.Header().Get("Last-Modified")
	if rec := req(h, "GET", "/fhir/Patient/same-second", "", "If-Modified-Since: "+lm3); rec.Code != 304 {
		t.Errorf("read with the date of version 3, alone in its second = %d, want 304", rec.Code)
	}
	if rec := req(h, "PUT", "/fhir/Patient/same-second", `{"resourceType":"Patient","id":"same-second","gender":"other"}`,
		"If-Unmodified-Since: "+lm3); rec.Code != 200 {
		t.Errorf("update guarded by the date of version 3, alone in its second = %d %s, want 200", rec.Code, rec.Body)
	}
}

// TestOutcomeDiagnostics: every issue of an OperationOutcome the gateway
// answers carries its message in diagnostics as well as in details.text
// (clients built on HAPI FHIR show only diagnostics), errors and
// information alike; an id-mismatch names the resource's id element.
func TestOutcomeDiagnostics(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/diag", `{"resourceType":"Patient","id":"diag"}`); rec.Code != 201 {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	for _, tc := range []struct {
		name, method, target, body string
		headers                    []string
		status                     int
		expression                 string // of the first issue, "" for any
	}{
		{"stale If-Match", "PUT", "/fhir/Patient/diag", `{"resourceType":"Patient","id":"diag","gender":"male"}`,
			[]string{`If-Match: W/"9"`}, 412, ""},
		{"id-mismatch", "PUT", "/fhir/Patient/diag", `{"resourceType":"Patient","id":"other"}`, nil, 400, "Patient.id"},
		{"id-mismatch in a Bundle entry", "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[` +
			`{"resource":{"resourceType":"Patient","id":"other"},"request":{"method":"PUT","url":"Patient/diag"}}]}`, nil, 400,
			"Bundle.entry[0].resource.ofType(Patient).id"},
		{"id-mismatch against an _id criterion", "PUT", "/fhir/Patient?_id=diag2", `{"resourceType":"Patient","id":"other"}`,
			nil, 400, "Patient.id"},
		{"unknown resource", "GET", "/fhir/Patient/nope", "", nil, 404, ""},
		{"invalid resource", "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"nope"}`, nil, 400, ""},
		{"information", "PUT", "/fhir/Patient/diag", `{"resourceType":"Patient","id":"diag","gender":"male"}`,
			[]string{"Prefer: return=OperationOutcome"}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, tc.method, tc.target, tc.body, tc.headers...)
			if rec.Code != tc.status {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.target, rec.Code, rec.Body, tc.status)
			}
			var oo struct {
				ResourceType string
				Issue        []struct {
					Diagnostics string
					Details     struct{ Text string }
					Expression  []string
				}
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) == 0 {
				t.Fatalf("%s %s = %s, want an OperationOutcome", tc.method, tc.target, rec.Body)
			}
			for i, is := range oo.Issue {
				if is.Diagnostics == "" || is.Diagnostics != is.Details.Text {
					t.Errorf("issue %d: diagnostics %q, want details.text %q", i, is.Diagnostics, is.Details.Text)
				}
			}
			if tc.expression != "" && !slices.Equal(oo.Issue[0].Expression, []string{tc.expression}) {
				t.Errorf("expression = %q, want [%q]", oo.Issue[0].Expression, tc.expression)
			}
		})
	}
}

// statusCode is the code of a Bundle entry's response.status.
func statusCode(status string) int {
	code, _, _ := strings.Cut(status, " ")
	n, _ := strconv.Atoi(code)
	return n
}

// TestBundleGetEntries: a batch or transaction GET (or HEAD) entry may ask
// for what a client can GET at the top level (instance, type and system
// history, a vread of any version, a compartment search, $everything,
// metadata, an absolute URL on the server's base), and is answered what
// the top-level GET answers; any other url is a 400 of that entry.
func TestBundleGetEntries(t *testing.T) {
	h := fhirServer(t)
	pat := strings.Replace(patientJSON, `"resourceType":"Patient"`, `"resourceType":"Patient","id":"bg-p"`, 1)
	for range 2 {
		if rec := req(h, "PUT", "/fhir/Patient/bg-p", pat); rec.Code/100 != 2 {
			t.Fatal(rec.Body)
		}
	}
	obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/bg-p"}}`
	if rec := req(h, "POST", "/fhir/Observation", obs); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	// The top-level answer and the entry's, without what differs by
	// construction (the Bundle's id and the time it was made).
	norm := func(v any) string {
		m, _ := v.(map[string]any)
		delete(m, "id")
		delete(m, "meta")
		delete(m, "date")
		b, _ := json.Marshal(m)
		return string(b)
	}
	const base = "http://example.com/fhir"
	tests := []struct {
		name, method, url string
		top               string // the top-level GET whose answer the entry's resource equals ("": url)
		status            string // of the entry
		rule              string // of a failed entry
		loose             bool   // the top-level answer differs by the AuditEvents recorded in between: the type only
		head              bool   // no resource, as a top-level HEAD
	}{
		{name: "instance history", url: "Patient/bg-p/_history"},
		{name: "instance history, HEAD", method: "HEAD", url: "Patient/bg-p/_history", head: true},
		{name: "type history", url: "Patient/_history?_count=1"},
		{name: "system history", url: "_history?_count=2", loose: true},
		{name: "vread of an older version", url: "Patient/bg-p/_history/1"},
		{name: "read with _elements", url: "Patient/bg-p?_elements=gender"},
		{name: "compartment search", url: "Patient/bg-p/Observation?status=final"},
		{name: "$everything", url: "Patient/bg-p/$everything?_type=Patient,Observation"},
		{name: "metadata", url: "metadata"},
		{name: "search with _include", url: "Observation?subject=Patient/bg-p&_include=Observation:subject"},
		{name: "absolute URL on the base", url: base + "/Patient/bg-p/_history", top: "Patient/bg-p/_history"},
		{name: "absolute URL on another server", url: "http://other.example/fhir/Patient/bg-p", status: "400", rule: "bundle-entry-url-invalid"},
		{name: "unknown operation", url: "Patient/bg-p/$foo", status: "400", rule: "bundle-entry-url-invalid"},
		{name: "too long", url: "Patient/bg-p/_history/1/x", status: "400", rule: "bundle-entry-url-invalid"},
		{name: "not a type", url: "Nothing/x/_history", status: "400", rule: "bundle-entry-url-invalid"},
		{name: "history of nothing", url: "Patient/nope/_history", status: "404", rule: "resource-unknown"},
		{name: "version the resource does not have", url: "Patient/bg-p/_history/9", status: "404", rule: "version-unknown"},
		{name: "history parameter unsupported", url: "Patient/bg-p/_history?_at=2020-01-01", status: "400", rule: "search-param-unsupported"},
		{name: "compartment of another type", url: "Observation/x/Patient", status: "404", rule: "compartment-unknown"},
		{name: "absolute URL on the base, scheme and host in capitals", url: "HTTP://EXAMPLE.COM/fhir/Patient/bg-p", top: "Patient/bg-p"},
		{name: "an empty segment after the base", url: base + "//Patient/bg-p", status: "400", rule: "bundle-entry-url-invalid"},
		{name: "a fragment", url: "Patient?gender=female#x", status: "400", rule: "bundle-entry-url-invalid"},
		{name: "_format not JSON", url: "Patient/bg-p?_format=xml", status: "406", rule: "format-unsupported"},
		{name: "_format JSON", url: "Patient/bg-p?_format=json", top: "Patient/bg-p"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "GET"
			}
			body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"` + method + `","url":"` + tc.url + `"}}]}`
			rec := req(h, "POST", "/fhir", body)
			if rec.Code != 200 {
				t.Fatalf("batch = %d %s", rec.Code, rec.Body)
			}
			e := decode(t, rec)["entry"].([]any)[0].(map[string]any)
			rs := e["response"].(map[string]any)
			status, _ := rs["status"].(string)
			if tc.status != "" {
				oo, _ := rs["outcome"].(map[string]any)
				if !strings.HasPrefix(status, tc.status) || !strings.Contains(fmt.Sprint(oo), tc.rule) {
					t.Errorf("entry = %s %v, want %s %s", status, oo, tc.status, tc.rule)
				}
				return
			}
			top := tc.top
			if top == "" {
				top = tc.url
			}
			want := req(h, "GET", "/fhir/"+top, "")
			if want.Code != 200 || !strings.HasPrefix(status, "200") {
				t.Fatalf("entry %s, top-level GET %d %s", status, want.Code, want.Body)
			}
			if tc.head {
				if e["resource"] != nil {
					t.Errorf("HEAD entry carries a resource")
				}
				return
			}
			if got := e["resource"].(map[string]any); tc.loose {
				if w := decode(t, want); got["type"] != w["type"] || len(got["entry"].([]any)) != len(w["entry"].([]any)) {
					t.Errorf("entry resource %v, want a %v Bundle of as many entries", got["type"], w["type"])
				}
				return
			}
			if got, w := norm(e["resource"]), norm(decode(t, want)); got != w {
				t.Errorf("entry resource\n%s\nwant the top-level answer\n%s", got, w)
			}
		})
	}
	// A search of AuditEvents finds those recorded just before, as a
	// top-level search does (they are indexed after their commit).
	count := func() float64 {
		body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"AuditEvent?patient=Patient/bg-p&_summary=count"}}]}`
		e := decode(t, req(h, "POST", "/fhir", body))["entry"].([]any)[0].(map[string]any)
		n, _ := e["resource"].(map[string]any)["total"].(float64)
		return n
	}
	n0 := count()
	req(h, "GET", "/fhir/Patient/bg-p", "")
	if n1 := count(); n1 <= n0 {
		t.Errorf("AuditEvents of the patient found by a batch GET: %v after a read, %v before", n1, n0)
	}
	// In a transaction the GETs run last, inside it: they see what it wrote.
	tpat := strings.ReplaceAll(pat, "bg-p", "bg-t")
	tx := txBundle(`{"request":{"method":"GET","url":"Patient/bg-t/_history"}}`,
		`{"resource":`+tpat+`,"request":{"method":"PUT","url":"Patient/bg-t"}}`)
	rec := req(h, "POST", "/fhir", tx)
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	hist := decode(t, rec)["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if hist["total"] != float64(1) || !strings.Contains(fmt.Sprint(hist["entry"]), "method:PUT") {
		t.Errorf("the transaction's history entry = %v, want the version it wrote", hist)
	}
	// A GET that fails fails the transaction whole: nothing is written.
	tx = txBundle(`{"resource":`+strings.ReplaceAll(pat, "bg-p", "bg-u")+`,"request":{"method":"PUT","url":"Patient/bg-u"}}`,
		`{"request":{"method":"GET","url":"Patient/nope/_history"}}`)
	assertOutcome(t, req(h, "POST", "/fhir", tx), 404, "resource-unknown", "")
	if rec := req(h, "GET", "/fhir/Patient/bg-u", ""); rec.Code != 404 {
		t.Errorf("after a failed transaction, its PUT's resource = %d, want 404", rec.Code)
	}
}

// TestPatch: JSON Patch and FHIRPath Patch on an instance, If-Match,
// conditional PATCH and PATCH entries of a transaction; patches touching
// id or meta, producing an invalid resource or failing a test are 4xx
// naming the operation, and write nothing.
func TestPatch(t *testing.T) {
	h := fhirServer(t)
	id := decode(t, req(h, "POST", "/fhir/Patient", patientJSON))["id"].(string)
	jsonPatch := func(target, body string, headers ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("PATCH", target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json-patch+json")
		for _, hv := range headers {
			k, v, _ := strings.Cut(hv, ":")
			r.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec
	}
	rec := jsonPatch("/fhir/Patient/"+id, `[{"op":"test","path":"/gender","value":"female"},{"op":"replace","path":"/birthDate","value":"1981-02-03"},`+
		`{"op":"add","path":"/name/0/given/-","value":"Beth"},{"op":"copy","from":"/name/0","path":"/name/-"},{"op":"remove","path":"/name/1/given/0"}]`,
		`If-Match: W/"1"`)
	if rec.Code != 200 || rec.Header().Get("ETag") != `W/"2"` {
		t.Fatalf("JSON Patch = %d %s", rec.Code, rec.Body)
	}
	p := decode(t, rec)
	if p["birthDate"] != "1981-02-03" || fmt.Sprint(p["name"]) != "[map[family:Testpatient given:[Ann Beth]] map[family:Testpatient given:[Beth]]]" {
		t.Errorf("patched = %v", p)
	}
	fp := `{"resourceType":"Parameters","parameter":[` +
		`{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.name[1].family"},{"name":"value","valueString":"Other"}]},` +
		`{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"telecom"},` +
		`{"name":"value","valueContactPoint":{"system":"phone","value":"555-0100"}}]},` +
		`{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"deceased"},{"name":"value","valueBoolean":false}]},` +
		`{"name":"operation","part":[{"name":"type","valueCode":"insert"},{"name":"path","valueString":"Patient.name[0].given"},{"name":"index","valueInteger":0},{"name":"value","valueString":"Zoe"}]},` +
		`{"name":"operation","part":[{"name":"type","valueCode":"move"},{"name":"path","valueString":"Patient.name"},{"name":"source","valueInteger":1},{"name":"destination","valueInteger":0}]},` +
		`{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.name.last().given[0]"}]},` +
		`{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.telecom.where(system = 'phone').value"},{"name":"value","valueString":"555-0199"}]}]}`
	rec = req(h, "PATCH", "/fhir/Patient/"+id, fp)
	if rec.Code != 200 {
		t.Fatalf("FHIRPath Patch = %d %s", rec.Code, rec.Body)
	}
	p = decode(t, rec)
	if fmt.Sprint(p["name"]) != "[map[family:Other given:[Beth]] map[family:Testpatient given:[Ann Beth]]]" ||
		p["deceasedBoolean"] != false || fmt.Sprint(p["telecom"]) != "[map[system:phone value:555-0199]]" {
		t.Errorf("FHIRPath-patched = %v", p)
	}

	// Conditional PATCH, by identifier in the Type?criteria form too.
	rec = jsonPatch("/fhir/Patient?identifier=http://hospital.example/mrn|M1", `[{"op":"replace","path":"/gender","value":"other"}]`)
	if rec.Code != 200 || decode(t, rec)["gender"] != "other" {
		t.Errorf("conditional PATCH = %d %s", rec.Code, rec.Body)
	}
	assertOutcome(t, jsonPatch("/fhir/Patient?identifier=http://hospital.example/mrn|NONE", `[{"op":"remove","path":"/gender"}]`),
		404, "conditional-patch-unmatched", "")

	// A PATCH body of another media type: 415 naming the two it may be.
	r := httptest.NewRequest("PATCH", "/fhir/Patient/"+id, strings.NewReader(`[{"op":"remove","path":"/gender"}]`))
	r.Header.Set("Content-Type", "text/plain")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	assertOutcome(t, rec, 415, "content-type-unsupported", "")
	if !strings.Contains(rec.Body.String(), "application/json-patch+json") {
		t.Errorf("PATCH as text/plain: %s; want the JSON Patch media type named", rec.Body)
	}

	// A PATCH entry of a transaction: a Binary with a JSON Patch, and a
	// Parameters with a FHIRPath Patch (in two transactions: one may
	// change a resource only once).
	for _, tx := range []string{
		txBundle(jsonPatchEntry("Patient/"+id, `[{"op":"replace","path":"/gender","value":"female"}]`)),
		txBundle(`{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.telecom"}]}]},"request":{"method":"PATCH","url":"Patient?identifier=http://hospital.example/mrn|M1"}}`),
	} {
		if rec = req(h, "POST", "/fhir", tx); rec.Code != 200 {
			t.Fatalf("transaction with a PATCH entry = %d %s", rec.Code, rec.Body)
		}
	}
	// A PATCH entry's Binary of another contentType, or no resource: the
	// answer says what the entry has and needs, at the entry's resource,
	// in a transaction and in a batch alike.
	wrongType := `{"resource":{"resourceType":"Binary","contentType":"text/plain","data":"W10="},"request":{"method":"PATCH","url":"Patient/` + id + `"}}`
	for _, tc := range []struct{ name, entry, expr, says string }{
		{"Binary of another contentType", wrongType, "Bundle.entry[0].resource.ofType(Binary).contentType",
			"has contentType text/plain; a JSON Patch in a Binary needs contentType application/json-patch+json"},
		{"no resource", `{"request":{"method":"PATCH","url":"Patient/` + id + `"}}`, "Bundle.entry[0].resource", "needs a resource"},
		{"FHIRPath Patch selecting several", `{"resource":{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},` +
			`{"name":"path","valueString":"Patient.name.given"}]}]},"request":{"method":"PATCH","url":"Patient/` + id + `"}}`,
			"Bundle.entry[0].resource.ofType(Parameters).parameter[0].part[1]", "the path selects 3"},
	} {
		rec = req(h, "POST", "/fhir", txBundle(tc.entry))
		if rec.Code != 400 || !strings.Contains(rec.Body.String(), `"expression":["`+tc.expr+`"]`) || !strings.Contains(rec.Body.String(), tc.says) {
			t.Errorf("transaction, %s = %d %s; want 400 at %s saying %q", tc.name, rec.Code, rec.Body, tc.expr, tc.says)
		}
		rec = req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+tc.entry+`]}`)
		if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"expression":["`+tc.expr+`"]`) || !strings.Contains(rec.Body.String(), tc.says) {
			t.Errorf("batch, %s = %d %s; want an entry outcome at %s saying %q", tc.name, rec.Code, rec.Body, tc.expr, tc.says)
		}
	}
	cur := decode(t, req(h, "GET", "/fhir/Patient/"+id, ""))
	if cur["gender"] != "female" || cur["telecom"] != nil || cur["meta"].(map[string]any)["versionId"] != "6" {
		t.Errorf("after the transaction = %v", cur)
	}

	// Bad patches: 4xx naming the operation, nothing written.
	for _, tc := range []struct {
		name, body, json string
		status           int
		rule, expr       string
	}{
		{"replace id", "", `[{"op":"replace","path":"/id","value":"x"}]`, 400, "patch-server-owned", "Patch.operation[0].path"},
		{"add to meta", "", `[{"op":"test","path":"/gender","value":"female"},{"op":"add","path":"/meta/tag","value":[]}]`, 400, "patch-server-owned", "Patch.operation[1].path"},
		{"move id away", "", `[{"op":"move","from":"/id","path":"/text"}]`, 400, "patch-server-owned", "Patch.operation[0].from"},
		{"failing test", "", `[{"op":"replace","path":"/gender","value":"male"},{"op":"test","path":"/gender","value":"female"}]`, 400, "patch-test-failed", "Patch.operation[1]"},
		{"invalid result", "", `[{"op":"replace","path":"/gender","value":"SECRET7"}]`, 400, "", ""},
		{"unknown element", "", `[{"op":"add","path":"/nope","value":1}]`, 400, "", ""},
		{"missing member", "", `[{"op":"remove","path":"/address"}]`, 400, "patch-path-unresolved", "Patch.operation[0].path"},
		{"FHIRPath on meta", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.meta.versionId"},{"name":"value","valueId":"9"}]}]}`,
			"", 400, "patch-server-owned", "Parameters.parameter[0]"},
		{"FHIRPath add id", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"male"}]},{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"id"},{"name":"value","valueId":"x"}]}]}`,
			"", 400, "patch-server-owned", "Parameters.parameter[1]"},
		{"FHIRPath function outside the subset", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.name.where(family.startsWith('x'))"}]}]}`,
			"", 400, "patch-path-unsupported", "Parameters.parameter[0].part[1]"},
		{"FHIRPath delete of several", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.name.given"}]}]}`,
			"", 400, "patch-path-multiple", "Parameters.parameter[0].part[1]"},
		{"FHIRPath replace of several", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"path","valueString":"Patient.name.where(given.last() = 'Beth').family"},{"name":"value","valueString":"SECRET7"}]}]}`,
			"", 400, "patch-path-multiple", "Parameters.parameter[0].part[1]"},
		{"FHIRPath type given twice", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"replace"},{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"other"}]}]}`,
			"", 400, "patch-invalid", "Parameters.parameter[0]"},
		{"FHIRPath value given twice", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"add"},{"name":"path","valueString":"Patient"},{"name":"name","valueString":"gender"},{"name":"value","valueCode":"male"},{"name":"value","valueCode":"female"}]}]}`,
			"", 400, "patch-invalid", "Parameters.parameter[0]"},
		{"FHIRPath delete with a value", `{"resourceType":"Parameters","parameter":[{"name":"operation","part":[{"name":"type","valueCode":"delete"},{"name":"path","valueString":"Patient.gender"},{"name":"value","valueCode":"male"}]}]}`,
			"", 400, "patch-invalid", "Parameters.parameter[0]"},
		{"not a patch", `{"resourceType":"Patient"}`, "", 400, "patch-invalid", ""},
	} {
		var rec *httptest.ResponseRecorder
		if tc.json != "" {
			rec = jsonPatch("/fhir/Patient/"+id, tc.json)
		} else {
			rec = req(h, "PATCH", "/fhir/Patient/"+id, tc.body)
		}
		if rec.Code != tc.status {
			t.Errorf("%s: PATCH = %d, want %d: %s", tc.name, rec.Code, tc.status, rec.Body)
			continue
		}
		if tc.rule != "" {
			assertOutcome(t, rec, tc.status, tc.rule, "")
		}
		if tc.expr != "" && !strings.Contains(rec.Body.String(), `"expression":["`+tc.expr+`"]`) {
			t.Errorf("%s: the outcome does not name %s: %s", tc.name, tc.expr, rec.Body)
		}
		if strings.Contains(rec.Body.String(), "SECRET7") {
			t.Errorf("%s: the outcome quotes the patch: %s", tc.name, rec.Body)
		}
	}
	if v := decode(t, req(h, "GET", "/fhir/Patient/"+id, ""))["meta"].(map[string]any)["versionId"]; v != "6" {
		t.Errorf("refused patches wrote: version %v, want 6", v)
	}
	assertOutcome(t, jsonPatch("/fhir/Patient/"+id, `[{"op":"remove","path":"/gender"}]`, `If-Match: W/"1"`), 412, "version-mismatch", "")
	assertOutcome(t, jsonPatch("/fhir/Patient/nope", `[{"op":"remove","path":"/gender"}]`), 404, "resource-unknown", "")
	assertOutcome(t, jsonPatch("/fhir/AuditEvent/x", `[{"op":"remove","path":"/type"}]`), 405, "audit-read-only", "")
}

// TestSummaryElements: _summary and _elements on read and search, tagged
// SUBSETTED; included resources stay whole.
func TestSummaryElements(t *testing.T) {
	h := fhirServer(t)
	pid := seedChain(t, h)
	tagged := func(r map[string]any) bool { return strings.Contains(fmt.Sprint(r["meta"]), "SUBSETTED") }
	p := decode(t, req(h, "GET", "/fhir/Patient/"+pid+"?_elements=name", ""))
	if p["name"] == nil || p["gender"] != nil || p["birthDate"] != nil || p["id"] != pid || !tagged(p) {
		t.Errorf("_elements=name = %v", p)
	}
	p = decode(t, req(h, "GET", "/fhir/Patient/"+pid+"?_summary=true", ""))
	if p["name"] == nil || p["gender"] == nil || !tagged(p) {
		t.Errorf("_summary=true of a Patient = %v", p)
	}
	p = decode(t, req(h, "GET", "/fhir/Patient/"+pid+"?_summary=false", ""))
	if tagged(p) {
		t.Errorf("_summary=false is tagged SUBSETTED: %v", p)
	}
	b := decode(t, req(h, "GET", "/fhir/Observation?_summary=true&_include=Observation:subject", ""))
	for _, e := range b["entry"].([]any) {
		r := e.(map[string]any)["resource"].(map[string]any)
		switch r["resourceType"] {
		case "Observation":
			// status, code, subject, effective and value are summary elements.
			if r["status"] == nil || r["valueQuantity"] == nil || r["effectiveDateTime"] == nil || !tagged(r) {
				t.Errorf("_summary=true match = %v", r)
			}
		case "Patient":
			if tagged(r) {
				t.Errorf("an included resource was subsetted: %v", r)
			}
		}
	}
	b = decode(t, req(h, "GET", "/fhir/Observation?_summary=text", ""))
	r := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if r["status"] == nil || r["code"] == nil || r["subject"] != nil || r["valueQuantity"] != nil {
		t.Errorf("_summary=text match = %v (want the mandatory status and code only)", r)
	}
	b = decode(t, req(h, "GET", "/fhir/Observation?_elements=Observation.value,subject", ""))
	r = b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
	if r["valueQuantity"] == nil || r["subject"] == nil || r["effectiveDateTime"] != nil || r["status"] == nil {
		t.Errorf("_elements=value,subject match = %v", r)
	}
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+pid+"?_elements=SECRET7", ""), 400, "search-value-invalid", "")
	assertOutcome(t, req(h, "GET", "/fhir/Observation?_elements=nope", ""), 400, "search-value-invalid", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+pid+"?_summary=count", ""), 400, "search-value-invalid", "")
}

// TestElementsChoiceKey: _elements naming a choice element by one of its
// JSON keys (valueQuantity, Observation.effectiveDateTime) keeps that
// element, on a read and on a search's matches, whichever type it has.
func TestElementsChoiceKey(t *testing.T) {
	h := fhirServer(t)
	seedChain(t, h)
	b := decode(t, req(h, "GET", "/fhir/Observation?code=8867-4", ""))
	oid := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["id"].(string)
	for _, tc := range []struct {
		elements   string
		keep, drop []string
	}{
		{"valueQuantity", []string{"valueQuantity"}, []string{"effectiveDateTime", "subject"}},
		{"effectiveDateTime", []string{"effectiveDateTime"}, []string{"valueQuantity", "subject"}},
		{"Observation.valueQuantity,subject", []string{"valueQuantity", "subject"}, []string{"effectiveDateTime"}},
		{"code,valueQuantity,effectiveDateTime", []string{"valueQuantity", "effectiveDateTime", "code"}, []string{"subject"}},
		// The element the client named, whichever type the resource has.
		{"valueString", []string{"valueQuantity"}, []string{"effectiveDateTime"}},
		{"effectivePeriod", []string{"effectiveDateTime"}, []string{"valueQuantity"}},
	} {
		check := func(how string, r map[string]any) {
			for _, k := range tc.keep {
				if r[k] == nil {
					t.Errorf("%s _elements=%s: %s is missing: %v", how, tc.elements, k, r)
				}
			}
			for _, k := range tc.drop {
				if r[k] != nil {
					t.Errorf("%s _elements=%s: %s is kept: %v", how, tc.elements, k, r)
				}
			}
			if !strings.Contains(fmt.Sprint(r["meta"]), "SUBSETTED") {
				t.Errorf("%s _elements=%s is not tagged SUBSETTED: %v", how, tc.elements, r)
			}
		}
		check("read", decode(t, req(h, "GET", "/fhir/Observation/"+oid+"?_elements="+tc.elements, "")))
		b := decode(t, req(h, "GET", "/fhir/Observation?_id="+oid+"&_elements="+tc.elements, ""))
		check("search", b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any))
	}
	assertOutcome(t, req(h, "GET", "/fhir/Observation/"+oid+"?_elements=valueNope", ""), 400, "search-value-invalid", "")
}

// TestEverythingLeavesOutAudit: $everything without _type is the chart,
// not the audit trail of reading it: the patient's AuditEvents (which
// each read of it adds) come only when _type names AuditEvent.
func TestEverythingLeavesOutAudit(t *testing.T) {
	h := fhirServer(t)
	pid := seedChain(t, h)
	for range 3 {
		if rec := req(h, "GET", "/fhir/Patient/"+pid+"/$everything", ""); rec.Code != 200 {
			t.Fatalf("$everything = %d %s", rec.Code, rec.Body)
		}
	}
	if n := decode(t, req(h, "GET", "/fhir/AuditEvent?patient="+pid+"&_summary=count", ""))["total"]; n == nil || n.(float64) < 3 {
		t.Fatalf("AuditEvent?patient= total %v: the reads above left no AuditEvents to leave out", n)
	}
	types := func(target string) map[string]int {
		b := decode(t, req(h, "GET", target, ""))
		out := map[string]int{}
		for _, e := range b["entry"].([]any) {
			out[e.(map[string]any)["resource"].(map[string]any)["resourceType"].(string)]++
		}
		return out
	}
	for _, tc := range []struct {
		query      string
		audit, obs bool
	}{
		{"", false, true},
		{"?_count=1000", false, true},
		{"?_type=AuditEvent&_count=1000", true, false},
		{"?_type=Observation,AuditEvent&_count=1000", true, true},
		{"?_type=Observation", false, true},
	} {
		got := types("/fhir/Patient/" + pid + "/$everything" + tc.query)
		if (got["AuditEvent"] > 0) != tc.audit || (got["Observation"] > 0) != tc.obs || got["Patient"] != 1 {
			t.Errorf("$everything%s = %v, want AuditEvents %v, Observations %v, the Patient", tc.query, got, tc.audit, tc.obs)
		}
	}
}

// TestCompartmentAndEverything: Patient/{id}/{type} searches one patient's
// resources; $everything pages through the patient and its compartment,
// with _type and _since; the routes of _history still answer.
func TestCompartmentAndEverything(t *testing.T) {
	h := fhirServer(t)
	pid := seedChain(t, h)
	b := decode(t, req(h, "GET", "/fhir/Patient/"+pid+"/Observation?code=8867-4", ""))
	if b["total"] != 1.0 || !strings.Contains(b["link"].([]any)[0].(map[string]any)["url"].(string), "/fhir/Patient/"+pid+"/Observation?") {
		t.Errorf("compartment search = %v", b)
	}
	if n := decode(t, req(h, "GET", "/fhir/Patient/"+pid+"/Observation?code=8480-6", ""))["total"]; n != 0.0 {
		t.Errorf("another patient's Observation in the compartment search: total %v", n)
	}
	if n := decode(t, req(h, "GET", "/fhir/Patient/"+pid+"/Patient", ""))["total"]; n != 1.0 {
		t.Errorf("Patient/id/Patient total = %v, want 1", n)
	}
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+pid+"/Practitioner", ""), 400, "compartment-type-unsupported", "")
	assertOutcome(t, req(h, "GET", "/fhir/Encounter/"+pid+"/Observation", ""), 404, "compartment-unknown", "")
	// R4's search across all types of a compartment (Patient/id/*) is not
	// supported: the answer says so and names what is (not "an unknown
	// type"), at the top level and in a Bundle's GET entry alike.
	rec := req(h, "GET", "/fhir/Patient/"+pid+"/*?_count=5", "")
	assertOutcome(t, rec, 404, "search-system-unsupported", "")
	if !strings.Contains(rec.Body.String(), "$everything") || !strings.Contains(rec.Body.String(), "/fhir/Patient/{id}/{type}") {
		t.Errorf("Patient/id/* = %s, want $everything and Patient/{id}/{type} named", rec.Body)
	}
	rec = req(h, "POST", "/fhir", batchBundle(`{"request":{"method":"GET","url":"Patient/`+pid+`/*"}}`))
	if status, rule, _ := batchEntryOutcome(t, rec, 0); !strings.HasPrefix(status, "404") || rule != "search-system-unsupported" {
		t.Errorf("batch GET Patient/id/* = %s %s, want 404 search-system-unsupported", status, rule)
	}
	if rec := req(h, "GET", "/fhir/Patient/"+pid+"/_history", ""); rec.Code != 200 {
		t.Errorf("instance history beside the compartment route = %d", rec.Code)
	}

	// The Patient, its Observation, and the Provenance naming it (in R4's
	// patient compartment); not the AuditEvents without _type
	// (TestEverythingLeavesOutAudit).
	b = decode(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything", ""))
	types := map[string]int{}
	for _, e := range b["entry"].([]any) {
		types[e.(map[string]any)["resource"].(map[string]any)["resourceType"].(string)]++
	}
	if types["Patient"] != 1 || types["Observation"] != 1 || types["Provenance"] != 1 || types["AuditEvent"] != 0 {
		t.Fatalf("$everything carried %v", types)
	}
	// The Patient comes first, whatever _type and _since say (clients take
	// it from entry[0]).
	first := func(b map[string]any) string {
		r := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)
		return r["resourceType"].(string) + "/" + r["id"].(string)
	}
	if got := first(b); got != "Patient/"+pid {
		t.Errorf("$everything entry[0] = %s, want Patient/%s", got, pid)
	}
	if n := decode(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything?_type=Patient,Observation", ""))["total"]; n != 2.0 {
		t.Fatalf("$everything?_type=Patient,Observation total = %v, want 2", n)
	}
	b = decode(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything?_count=1&_type=Patient,Observation", ""))
	var next string
	for _, l := range b["link"].([]any) {
		if l.(map[string]any)["relation"] == "next" {
			next = l.(map[string]any)["url"].(string)
		}
	}
	if len(b["entry"].([]any)) != 1 || !strings.Contains(next, "/fhir/Patient/"+pid+"/$everything?") {
		t.Fatalf("$everything?_count=1 = %v", b)
	}
	if got := first(b); got != "Patient/"+pid {
		t.Errorf("$everything?_count=1 entry[0] = %s, want the Patient", got)
	}
	_, rest, _ := strings.Cut(next, "/fhir/")
	if b2 := decode(t, req(h, "GET", "/fhir/"+rest, "")); len(b2["entry"].([]any)) != 1 || !strings.HasPrefix(first(b2), "Observation/") {
		t.Errorf("the next page = %v, want the Observation", b2)
	}
	for _, tc := range []struct {
		query string
		total float64
	}{
		{"_type=Observation", 2},
		{"_type=Patient", 1},
		{"_since=2999-01-01T00:00:00Z", 1},
		{"_type=Observation&_count=1", 2},
	} {
		b := decode(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything?"+tc.query, ""))
		if b["total"] != tc.total || first(b) != "Patient/"+pid {
			t.Errorf("$everything?%s: total %v, entry[0] %s; want total %v, the Patient first", tc.query, b["total"], first(b), tc.total)
		}
	}
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything?_type=Practitioner", ""), 400, "search-value-invalid", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything?start=2020-02-30", ""), 400, "search-value-invalid", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything?end=2020-01-01T10:00:00+13:00", ""), 400, "search-value-invalid", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/"+pid+"/$everything?start=2021&end=2020", ""), 400, "search-value-invalid", "")
	assertOutcome(t, req(h, "GET", "/fhir/Patient/nope/$everything", ""), 404, "resource-unknown", "")
}

// TestSearchValueRanges: a code element is found by the code system its
// R4 binding implies (system|code, system|, code) and not as a code
// without system (|code); a Quantity with a comparator is the range it
// states ("<5 mg" is below 5); ge and le take in the precision eq does.
func TestSearchValueRanges(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "POST", "/fhir/Patient", patientJSON); rec.Code != 201 {
		t.Fatalf("create Patient = %d %s", rec.Code, rec.Body)
	}
	obs := func(id, quantity string) {
		t.Helper()
		body := `{"resourceType":"Observation","status":"final","identifier":[{"system":"http://ex/q","value":"` + id + `"}],` +
			`"code":{"text":"x"},"valueQuantity":` + quantity + `}`
		if rec := req(h, "POST", "/fhir/Observation", body); rec.Code != 201 {
			t.Fatalf("create Observation %s = %d %s", id, rec.Code, rec.Body)
		}
	}
	obs("lt5", `{"value":5,"comparator":"<","unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}`)
	for _, v := range []string{"99.95", "100", "100.5"} {
		obs(v, `{"value":`+v+`,"unit":"kg","system":"http://unitsofmeasure.org","code":"kg"}`)
	}
	const gender = "http://hl7.org/fhir/administrative-gender"
	q := url.QueryEscape
	for _, tc := range []struct {
		target string
		total  float64
	}{
		{"/fhir/Patient?gender=female", 1},
		{"/fhir/Patient?gender=" + q(gender+"|female"), 1},
		{"/fhir/Patient?gender=" + q(gender+"|"), 1},
		{"/fhir/Patient?gender=" + q(gender+"|male"), 0},
		{"/fhir/Patient?gender=" + q("|female"), 0}, // the code has a system: the binding's
		{"/fhir/Patient?gender:not=" + q(gender+"|male"), 1},
		{"/fhir/Observation?status=" + q("http://hl7.org/fhir/observation-status|final"), 4},
		{"/fhir/Observation?identifier=" + q("http://ex/q|lt5") + "&value-quantity=lt5", 1},
		{"/fhir/Observation?identifier=" + q("http://ex/q|lt5") + "&value-quantity=le4", 1},
		{"/fhir/Observation?identifier=" + q("http://ex/q|lt5") + "&value-quantity=" + q("lt4|http://unitsofmeasure.org|mg"), 1},
		{"/fhir/Observation?identifier=" + q("http://ex/q|lt5") + "&value-quantity=5", 0},
		{"/fhir/Observation?identifier=" + q("http://ex/q|lt5") + "&value-quantity=gt5", 0},
		{"/fhir/Observation?identifier=" + q("http://ex/q|lt5") + "&value-quantity=ge5.0", 0},
		{"/fhir/Observation?identifier=" + q("http://ex/q|lt5") + "&value-quantity=sa4", 0},
		{"/fhir/Observation?value-quantity=" + q("100||kg"), 2},   // 99.95, 100
		{"/fhir/Observation?value-quantity=" + q("ge100||kg"), 3}, // 99.95 too
		{"/fhir/Observation?value-quantity=" + q("le100||kg"), 2}, // not 100.5
		{"/fhir/Observation?value-quantity=" + q("gt100||kg"), 1},
		{"/fhir/Observation?value-quantity=" + q("sa100||kg"), 1},
		{"/fhir/Observation?value-quantity=" + q("eb100.00||kg"), 1},
	} {
		wantTotal(t, h, tc.target, tc.total)
	}
}

// entriesOf is a Bundle's entries.
func entriesOf(b map[string]any) []map[string]any {
	var out []map[string]any
	es, _ := b["entry"].([]any)
	for _, e := range es {
		out = append(out, e.(map[string]any))
	}
	return out
}

// wantTotal checks that a search answers 200 with total.
func wantTotal(t *testing.T, h http.Handler, target string, total float64) {
	t.Helper()
	rec := req(h, "GET", target, "")
	if rec.Code != 200 {
		t.Errorf("GET %s = %d %s", target, rec.Code, rec.Body)
		return
	}
	if got := decode(t, rec)["total"]; got != total {
		t.Errorf("GET %s total = %v, want %v", target, got, total)
	}
}

// TestBundleAnswerBound: the resources a Bundle's GET entries answer are
// bounded in all (app.Config.MaxBundleAnswer): in a batch the entry that
// passes the bound fails with bundle-answer-too-large and the others are
// answered; a transaction that passes it fails whole. The batch's
// AuditEvent names each resource once however many entries read it.
func TestBundleAnswerBound(t *testing.T) {
	h := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{}), UpdateCreate: true, MaxBundleAnswer: 5}, gateway.Config{})
	for i := range 3 {
		if rec := req(h, "PUT", fmt.Sprintf("/fhir/Patient/ab-%d", i), fmt.Sprintf(`{"resourceType":"Patient","id":"ab-%d"}`, i)); rec.Code != 201 {
			t.Fatal(rec.Body)
		}
	}
	gets := func(typ string, urls ...string) string {
		var es []string
		for _, u := range urls {
			es = append(es, `{"request":{"method":"GET","url":"`+u+`"}}`)
		}
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(es, ",") + `]}`
	}
	// 3 + 1 + 3 > 5: the third entry fails, the fourth (1 more) is answered.
	rec := req(h, "POST", "/fhir", gets("batch", "Patient", "Patient/ab-0", "Patient?_count=3", "Patient/ab-1"))
	if rec.Code != 200 {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage
			Response struct {
				Status  string
				Outcome json.RawMessage
			}
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Entry) != 4 {
		t.Fatalf("batch answer: %v %s", err, rec.Body)
	}
	for i, want := range []string{"200", "200", "400", "200"} {
		if !strings.HasPrefix(b.Entry[i].Response.Status, want) {
			t.Errorf("entry %d: status %s, want %s", i, b.Entry[i].Response.Status, want)
		}
	}
	if !strings.Contains(string(b.Entry[2].Response.Outcome), "bundle-answer-too-large") || b.Entry[2].Resource != nil {
		t.Errorf("entry 2 = %s %s, want bundle-answer-too-large and no resource", b.Entry[2].Response.Outcome, b.Entry[2].Resource)
	}
	rec = req(h, "POST", "/fhir", gets("transaction", "Patient", "Patient?_count=3"))
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "bundle-answer-too-large") {
		t.Errorf("transaction = %d %s, want 400 bundle-answer-too-large", rec.Code, rec.Body)
	}
	rec = req(h, "POST", "/fhir", gets("transaction", "Patient", "Patient/ab-0", "Patient/ab-0"))
	if rec.Code != 200 {
		t.Errorf("transaction within the bound = %d %s", rec.Code, rec.Body)
	}
	// That transaction read Patient/ab-0 three times: its AuditEvent names
	// the three Patients once each.
	rec = req(h, "GET", "/fhir/AuditEvent?subtype=transaction&_sort=-date&_count=1", "")
	var ae struct {
		Entry []struct {
			Resource struct {
				Entity []struct{ What struct{ Reference string } }
			}
		}
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &ae); err != nil || len(ae.Entry) != 1 {
		t.Fatalf("AuditEvent search: %v %s", err, rec.Body)
	}
	seen := map[string]int{}
	for _, e := range ae.Entry[0].Resource.Entity {
		seen[e.What.Reference]++
	}
	for ref, n := range seen {
		if n > 1 {
			t.Errorf("the AuditEvent names %s %d times", ref, n)
		}
	}
	if seen["Patient/ab-0/_history/1"] != 1 {
		t.Errorf("the AuditEvent's entities %v do not name Patient/ab-0 version 1", seen)
	}

	// The bytes are bounded too, at four pages (an attacker's review: a
	// 26 KB batch reading one 3 MB Observation 300 times was a 900 MB
	// answer): reads of a 3 KB resource under a 2 KB page bound (8 KB in
	// all) answer two and refuse the others.
	h2 := newServer(t, app.Config{Store: tempSQLite(t, sqlite.Options{}), UpdateCreate: true,
		SearchLimits: search.Limits{PageBytes: 2048}}, gateway.Config{})
	big := `{"resourceType":"Patient","id":"big","name":[{"text":"` + strings.Repeat("x", 3000) + `"}]}`
	if rec := req(h2, "PUT", "/fhir/Patient/big", big); rec.Code != 201 {
		t.Fatal(rec.Body)
	}
	rec = req(h2, "POST", "/fhir", gets("batch", "Patient/big", "Patient/big", "Patient/big", "Patient/big"))
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || len(b.Entry) != 4 {
		t.Fatalf("batch answer: %v %s", err, rec.Body)
	}
	for i, want := range []string{"200", "200", "400", "400"} {
		if !strings.HasPrefix(b.Entry[i].Response.Status, want) {
			t.Errorf("reads of 3 KB: entry %d: status %s, want %s", i, b.Entry[i].Response.Status, want)
		}
	}
	if !strings.Contains(string(b.Entry[3].Response.Outcome), "or 8 KiB of them") {
		t.Errorf("entry 3 = %s, want bundle-answer-too-large naming 8 KiB", b.Entry[3].Response.Outcome)
	}
}

// TestBundleTypesStored: only document, message and collection Bundles
// are stored as resources (HAPI's default); a transaction posted to
// /fhir/Bundle by mistake was stored unprocessed, a 201 for writes that
// never happened (a conformance review). It is 422 at Bundle.type, by
// create, update and as a transaction's entry, and nothing is written.
func TestBundleTypesStored(t *testing.T) {
	h := fhirServer(t)
	bundle := func(typ string) string {
		return `{"resourceType":"Bundle","type":"` + typ + `","entry":[{"fullUrl":"urn:uuid:1f2e3d4c-0000-4000-8000-000000000001",` +
			`"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`
	}
	for _, typ := range []string{"transaction", "batch"} {
		rec := req(h, "POST", "/fhir/Bundle", bundle(typ))
		assertIssue(t, rec, 422, "bundle-type-not-storable", "Bundle.type")
		if !strings.Contains(rec.Body.String(), "POST it to the FHIR base") {
			t.Errorf("POST /fhir/Bundle of a %s = %s, want it to say where to send it", typ, rec.Body)
		}
		assertIssue(t, req(h, "PUT", "/fhir/Bundle/b-"+typ, strings.Replace(bundle(typ), `"Bundle",`, `"Bundle","id":"b-`+typ+`",`, 1)),
			422, "bundle-type-not-storable", "Bundle.type")
	}
	tx := `{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Bundle","type":"searchset"},` +
		`"request":{"method":"POST","url":"Bundle"}}]}`
	assertIssue(t, req(h, "POST", "/fhir", tx), 422, "bundle-type-not-storable", "Bundle.entry[0].resource.ofType(Bundle).type")
	if rec := req(h, "GET", "/fhir/Bundle?_summary=count", ""); !strings.Contains(rec.Body.String(), `"total":0`) {
		t.Errorf("Bundles stored after the refusals: %s", rec.Body)
	}
	collection := `{"resourceType":"Bundle","id":"c1","type":"collection"}`
	if rec := req(h, "PUT", "/fhir/Bundle/c1", collection); rec.Code != 201 {
		t.Fatalf("PUT /fhir/Bundle/c1 of a collection = %d %s, want 201", rec.Code, rec.Body)
	}
	// Nor is a stored collection patched into a transaction.
	patch := `[{"op":"replace","path":"/type","value":"transaction"}]`
	assertIssue(t, req(h, "PATCH", "/fhir/Bundle/c1", patch, "Content-Type: application/json-patch+json"),
		422, "bundle-type-not-storable", "Bundle.type")
}

// TestBatchReadsHoldNoWrite: a batch that only reads runs outside the
// write transaction: while one of its searches runs, a write of another
// client commits (an attacker's review: 8,000 searches in one batch held
// every tenant's writes, 7 s, since its entries ran inside the batch's
// write transaction), and it is audited as a search is. Once the answer's
// bound is reached, later entries are refused without running (one that
// would answer nothing included).
func TestBatchReadsHoldNoWrite(t *testing.T) {
	st := &blockingSearch{Store: tempSQLite(t, sqlite.Options{}), entered: make(chan struct{}), release: make(chan struct{})}
	h := newServer(t, app.Config{Store: st, UpdateCreate: true, MaxBundleAnswer: 2}, gateway.Config{})
	for i := range 2 {
		if rec := req(h, "PUT", fmt.Sprintf("/fhir/Patient/rb-%d", i), fmt.Sprintf(`{"resourceType":"Patient","id":"rb-%d"}`, i)); rec.Code != 201 {
			t.Fatal(rec.Body)
		}
	}
	st.armed.Store(true)
	batch := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?_count=2"}},` +
		`{"request":{"method":"GET","url":"Patient?_id=none"}},{"request":{"method":"GET","url":"Patient/rb-0"}}]}`
	answered := make(chan *httptest.ResponseRecorder, 1)
	go func() { answered <- req(h, "POST", "/fhir", batch) }()
	select {
	case <-st.entered:
	case <-time.After(20 * time.Second): // a guard, not a measurement
		close(st.release)
		t.Fatal("the batch's search never ran as a search of the store's (it ran inside a write transaction)")
	}
	// The batch is in its first search: a write commits meanwhile.
	wrote := make(chan int, 1)
	go func() { wrote <- req(h, "PUT", "/fhir/Patient/rb-9", `{"resourceType":"Patient","id":"rb-9"}`).Code }()
	select {
	case code := <-wrote:
		if code != 201 {
			t.Errorf("the write during the batch = %d", code)
		}
	case <-time.After(20 * time.Second): // a guard, not a measurement
		t.Error("the write waited for the read-only batch")
	}
	close(st.release)
	rec := <-answered
	if rec.Code != 200 {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	for i, want := range []string{"200", "400", "400"} {
		status, rule, _ := batchEntryOutcome(t, rec, i)
		if !strings.HasPrefix(status, want) || (want == "400" && rule != "bundle-answer-too-large") {
			t.Errorf("entry %d: %s %s, want %s", i, status, rule, want)
		}
	}
	ae := decode(t, req(h, "GET", "/fhir/AuditEvent?subtype=batch&entity=Patient/rb-1", ""))
	if ae["total"] != float64(1) {
		t.Errorf("AuditEvents of the batch naming Patient/rb-1: %v, want 1", ae["total"])
	}
}

// slowFirstSearch is a store whose Patient searches once armed take
// delay (searches that run long), and which counts them.
type slowFirstSearch struct {
	store.Store
	armed    atomic.Bool
	delay    time.Duration
	searches atomic.Int64
}

func (s *slowFirstSearch) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	s.slow(q)
	return s.Store.Search(ctx, q)
}

// slow counts a Patient search (the Bundle's), and delays each: the
// first of an attempt spends the budget, also when the write transaction
// is retried (which runs its entries again, with a budget of its own).
// The gateway's own searches of other types (its audit index) run beside.
func (s *slowFirstSearch) slow(q *search.Query) {
	if q.Type == "Patient" && s.armed.Load() {
		s.searches.Add(1)
		time.Sleep(s.delay)
	}
}

// Write gives fn a transaction whose searches are slowFirstSearch's too.
func (s *slowFirstSearch) Write(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Write(ctx, func(tx store.Tx) error { return fn(slowTx{Tx: tx, s: s}) })
}

type slowTx struct {
	store.Tx
	s *slowFirstSearch
}

func (t slowTx) Search(q *search.Query) (*store.Page, error) {
	t.s.slow(q)
	return t.Tx.Search(q)
}

func (t slowTx) SearchEach(qs []*search.Query) ([]*store.Page, error) {
	for _, q := range qs {
		t.s.slow(q)
	}
	return t.Tx.SearchEach(qs)
}

// TestConditionalSearchesBudget (an attacker's review: a 140 KB
// transaction of 600 conditional PUTs, each criteria a slow search, held
// the write lane, every tenant's writes and audited reads, for 158 s): a
// Bundle's conditional criteria and conditional references are searches
// too, run in its write transaction, and share its GET entries' budget of
// the search timeout. Past it, a transaction fails whole with 400
// bundle-reads-too-costly and writes nothing; a batch's later conditional
// entries fail alone, the earlier ones written.
func TestConditionalSearchesBudget(t *testing.T) {
	const n = 20
	setup := func(t *testing.T) (http.Handler, *slowFirstSearch) {
		st := &slowFirstSearch{Store: tempSQLite(t, sqlite.Options{}), delay: 50 * time.Millisecond}
		h := newServer(t, app.Config{Store: st, SearchTimeout: 200 * time.Millisecond, UpdateCreate: true}, gateway.Config{})
		return h, st
	}
	patient := func(i int) string {
		return fmt.Sprintf(`{"resourceType":"Patient","identifier":[{"system":"urn:test:mrn","value":"c%d"}]}`, i)
	}
	count := func(t *testing.T, h http.Handler, target string) float64 {
		t.Helper()
		return decode(t, req(h, "GET", target+"&_summary=count", ""))["total"].(float64)
	}
	// refusedWhole posts a transaction of entry(i) for each i, with the
	// searches slowed, and checks it is refused past the budget, before
	// its n searches, writing nothing that stored finds.
	refusedWhole := func(t *testing.T, h http.Handler, st *slowFirstSearch, entry func(i int) string, stored string) {
		t.Helper()
		st.armed.Store(true)
		var es []string
		for i := range n {
			es = append(es, entry(i))
		}
		rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(es, ",")+`]}`)
		assertOutcome(t, rec, http.StatusBadRequest, "bundle-reads-too-costly", "")
		if got := st.searches.Load(); got >= n {
			t.Errorf("%d searches ran, want the budget to stop them before the %d", got, n)
		}
		st.armed.Store(false)
		if c := count(t, h, stored); c != 0 {
			t.Errorf("%v resources written, want none", c)
		}
	}
	t.Run("transaction of conditional updates", func(t *testing.T) {
		h, st := setup(t)
		refusedWhole(t, h, st, func(i int) string {
			return fmt.Sprintf(`{"resource":%s,"request":{"method":"PUT","url":"Patient?identifier=urn:test:mrn|c%d"}}`, patient(i), i)
		}, "/fhir/Patient?identifier=urn:test:mrn|")
	})
	t.Run("transaction of conditional references", func(t *testing.T) {
		h, st := setup(t)
		for i := range n {
			if rec := req(h, "POST", "/fhir/Patient", patient(i)); rec.Code != 201 {
				t.Fatalf("create = %d %s", rec.Code, rec.Body)
			}
		}
		refusedWhole(t, h, st, func(i int) string {
			return fmt.Sprintf(`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"cr"},`+
				`"subject":{"reference":"Patient?identifier=urn:test:mrn|c%d"}},"request":{"method":"POST","url":"Observation"}}`, i)
		}, "/fhir/Observation?code:text=cr")
	})
	t.Run("batch of conditional creates", func(t *testing.T) {
		h, st := setup(t)
		st.armed.Store(true)
		var es []string
		for i := range n {
			es = append(es, fmt.Sprintf(`{"resource":%s,"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:test:mrn|c%d"}}`, patient(i), i))
		}
		rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(es, ",")+`]}`)
		if rec.Code != 200 {
			t.Fatalf("batch = %d %s", rec.Code, rec.Body)
		}
		written, refused := 0, 0
		for i := range n {
			switch status, rule, _ := batchEntryOutcome(t, rec, i); {
			case strings.HasPrefix(status, "201") && refused == 0:
				written++
			case strings.HasPrefix(status, "400") && rule == "bundle-reads-too-costly":
				refused++
			default:
				t.Errorf("entry %d: %s %s, want 201 then, once the budget is spent, 400 bundle-reads-too-costly", i, status, rule)
			}
		}
		if written == 0 || refused == 0 {
			t.Errorf("%d written, %d refused: want the first written and the rest refused", written, refused)
		}
		st.armed.Store(false)
		if c := count(t, h, "/fhir/Patient?identifier=urn:test:mrn|"); c != float64(written) {
			t.Errorf("%v Patients stored, want the %d written", c, written)
		}
	})
}

// TestBatchReadsBudget: a batch's GET entries run for the search timeout
// in all; the later ones are refused without running
// (bundle-reads-too-costly), so one batch of many searches is not minutes
// of the database (an attacker's review), nor, in a batch that writes,
// of every tenant's writes; a transaction fails whole. The first search
// here takes longer than the timeout.
func TestBatchReadsBudget(t *testing.T) {
	for _, mixed := range []bool{false, true} {
		t.Run(map[bool]string{false: "reads only", true: "with a write"}[mixed], func(t *testing.T) {
			st := &slowFirstSearch{Store: tempSQLite(t, sqlite.Options{}), delay: 300 * time.Millisecond}
			h := newServer(t, app.Config{Store: st, SearchTimeout: 200 * time.Millisecond, UpdateCreate: true}, gateway.Config{})
			st.armed.Store(true)
			var es []string
			for range 5 {
				es = append(es, `{"request":{"method":"GET","url":"Patient?name=x"}}`)
			}
			if mixed {
				es = append(es, `{"resource":{"resourceType":"Patient","id":"bb-1"},"request":{"method":"PUT","url":"Patient/bb-1"}}`)
			}
			rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+strings.Join(es, ",")+`]}`)
			if rec.Code != 200 {
				t.Fatalf("batch = %d %s", rec.Code, rec.Body)
			}
			for i := 1; i < 5; i++ {
				if status, rule, _ := batchEntryOutcome(t, rec, i); !strings.HasPrefix(status, "400") || rule != "bundle-reads-too-costly" {
					t.Errorf("entry %d: %s %s, want 400 bundle-reads-too-costly", i, status, rule)
				}
			}
			if mixed {
				if status, _, _ := batchEntryOutcome(t, rec, 5); !strings.HasPrefix(status, "201") {
					t.Errorf("the write entry: %s, want 201", status)
				}
			}
			// The first search spends the budget; a batch that writes runs
			// its entries again when its transaction is retried, with a
			// budget of its own: never all five.
			if n := st.searches.Load(); n < 1 || n >= 5 || !mixed && n != 1 {
				t.Errorf("%d searches ran, want the first (of each attempt) only", n)
			}
		})
	}
	t.Run("transaction", func(t *testing.T) {
		st := &slowFirstSearch{Store: tempSQLite(t, sqlite.Options{}), delay: 300 * time.Millisecond}
		h := newServer(t, app.Config{Store: st, SearchTimeout: 200 * time.Millisecond}, gateway.Config{})
		st.armed.Store(true)
		var es []string
		for range 5 {
			es = append(es, `{"request":{"method":"GET","url":"Patient?name=x"}}`)
		}
		rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"transaction","entry":[`+strings.Join(es, ",")+`]}`)
		assertOutcome(t, rec, http.StatusBadRequest, "bundle-reads-too-costly", "")
		// One search an attempt of the transaction (a retried attempt
		// runs its entries again): never the five.
		if n := st.searches.Load(); n < 1 || n >= 5 {
			t.Errorf("%d searches ran, want the first of each attempt only", n)
		}
	})
}

// blockingSearch is a store whose first Patient search once armed waits
// for release, after telling entered.
type blockingSearch struct {
	store.Store
	armed            atomic.Bool
	once             sync.Once
	entered, release chan struct{}
}

func (b *blockingSearch) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	if q.Type == "Patient" && b.armed.Load() {
		b.once.Do(func() { close(b.entered); <-b.release })
	}
	return b.Store.Search(ctx, q)
}
