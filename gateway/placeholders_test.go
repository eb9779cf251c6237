package gateway_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// docBundle is a FHIR document as it is written: a Bundle of type document
// whose entries have urn:uuid fullUrls and reference each other by them
// (the Composition's subject is the Patient entry).
const docBundle = `{"resourceType":"Bundle","identifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"},` +
	`"type":"document","timestamp":"2026-12-01T10:00:00Z","entry":[` +
	`{"fullUrl":"urn:uuid:11111111-aaaa-4aaa-8aaa-111111111111","resource":{"resourceType":"Composition","status":"final",` +
	`"type":{"coding":[{"system":"http://loinc.org","code":"60591-5"}]},"subject":{"reference":"urn:uuid:22222222-aaaa-4aaa-8aaa-222222222222"},` +
	`"date":"2026-12-01T10:00:00Z","author":[{"display":"Dr X"}],"title":"Patient summary"}},` +
	`{"fullUrl":"urn:uuid:22222222-aaaa-4aaa-8aaa-222222222222","resource":{"resourceType":"Patient","name":[{"family":"Docpatient"}]}}]}`

// docSubject is the subject of the Composition of a stored document.
func docSubject(t *testing.T, doc map[string]any) (subject, fullURL string) {
	t.Helper()
	entries, _ := doc["entry"].([]any)
	if len(entries) != 2 {
		t.Fatalf("stored Bundle has %d entries, want 2: %v", len(entries), doc)
	}
	first := entries[0].(map[string]any)
	subject, _ = first["resource"].(map[string]any)["subject"].(map[string]any)["reference"].(string)
	fullURL, _ = entries[1].(map[string]any)["fullUrl"].(string)
	return subject, fullURL
}

// TestBundleResourceKeptAsWritten: a Bundle stored as a resource (a FHIR
// document) keeps its entries' fullUrls and the urn:uuid references between
// them as written, whatever interaction stores it: a create, an update, a
// patch, and a transaction's or batch's entry (bundle.html#references: they
// resolve against its own entries, not against the Bundle being processed),
// also when the transaction has an entry of the same fullUrl.
func TestBundleResourceKeptAsWritten(t *testing.T) {
	h := fhirServer(t)
	const patientURN = "urn:uuid:22222222-aaaa-4aaa-8aaa-222222222222"
	withID := func(id string) string {
		return strings.Replace(docBundle, `"resourceType":"Bundle",`, `"resourceType":"Bundle","id":"`+id+`",`, 1)
	}
	if rec := req(h, "PUT", "/fhir/Bundle/doc-patched", withID("doc-patched")); rec.Code != 201 {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	outerPatient := `{"fullUrl":"` + patientURN + `","resource":{"resourceType":"Patient","name":[{"family":"Outer"}]},"request":{"method":"POST","url":"Patient"}}`
	postDoc := `{"resource":` + docBundle + `,"request":{"method":"POST","url":"Bundle"}}`
	for _, c := range []struct {
		name                 string
		method, target, body string
		headers              []string
		status               int
		entry                int // the entry of a Bundle's response that stored the document; -1 for a REST write
	}{
		{"create", "POST", "/fhir/Bundle", docBundle, nil, 201, -1},
		{"update", "PUT", "/fhir/Bundle/doc-put", withID("doc-put"), nil, 201, -1},
		{"patch", "PATCH", "/fhir/Bundle/doc-patched", `[{"op":"replace","path":"/timestamp","value":"2026-12-03T10:00:00Z"}]`,
			[]string{"Content-Type: application/json-patch+json"}, 200, -1},
		{"transaction entry", "POST", "/fhir", txBundle(postDoc), nil, 200, 0},
		{"transaction entry beside an entry of the same fullUrl", "POST", "/fhir", txBundle(outerPatient, postDoc), nil, 200, 1},
		{"batch entry", "POST", "/fhir", strings.Replace(txBundle(postDoc), `"transaction"`, `"batch"`, 1), nil, 200, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, c.method, c.target, c.body, c.headers...)
			if rec.Code != c.status {
				t.Fatalf("%s %s = %d %s", c.method, c.target, rec.Code, rec.Body)
			}
			loc := rec.Header().Get("Location")
			if c.entry >= 0 {
				resp := decode(t, rec)["entry"].([]any)[c.entry].(map[string]any)["response"].(map[string]any)
				if resp["status"] != "201 Created" {
					t.Fatalf("entry %d: %v", c.entry, resp)
				}
				loc, _ = resp["location"].(string)
			}
			parts := strings.Split(loc, "/")
			i := strings.Index(loc, "Bundle/")
			if i < 0 || len(parts) < 2 {
				t.Fatalf("location %q names no Bundle", loc)
			}
			id := strings.Split(loc[i:], "/")[1]
			subject, full := docSubject(t, decode(t, req(h, "GET", "/fhir/Bundle/"+id, "")))
			if subject != patientURN || full != patientURN {
				t.Errorf("stored document: Composition.subject %q, Patient fullUrl %q; want both %q", subject, full, patientURN)
			}
		})
	}
}

// TestSingleWriteURNReference: a urn: reference in a single create,
// update or patch (no Bundle, so no entry it could name) is kept as
// written by each of them alike, as any reference to a resource the
// gateway does not hold; in a transaction it must name an entry.
func TestSingleWriteURNReference(t *testing.T) {
	h := fhirServer(t)
	const urn = "urn:uuid:33333333-aaaa-4aaa-8aaa-333333333333"
	obs := func(id string) string {
		s := `{"resourceType":"Observation",`
		if id != "" {
			s += `"id":"` + id + `",`
		}
		return s + `"status":"final","code":{"text":"x"},"subject":{"reference":"` + urn + `"}}`
	}
	rec := req(h, "POST", "/fhir/Observation", `{"resourceType":"Observation","status":"final","code":{"text":"x"}}`)
	if rec.Code != 201 {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	patched := decode(t, rec)["id"].(string)
	for _, c := range []struct {
		name                 string
		method, target, body string
		headers              []string
		status               int
	}{
		{"create", "POST", "/fhir/Observation", obs(""), nil, 201},
		{"conditional create", "POST", "/fhir/Observation", obs(""), []string{"If-None-Exist: _id=urn-create"}, 201},
		{"update", "PUT", "/fhir/Observation/urn-put", obs("urn-put"), nil, 201},
		{"conditional update", "PUT", "/fhir/Observation?_id=urn-cond", obs("urn-cond"), nil, 201},
		{"patch", "PATCH", "/fhir/Observation/" + patched, `[{"op":"add","path":"/subject","value":{"reference":"` + urn + `"}}]`,
			[]string{"Content-Type: application/json-patch+json"}, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, c.method, c.target, c.body, c.headers...)
			if rec.Code != c.status {
				t.Fatalf("%s %s = %d %s", c.method, c.target, rec.Code, rec.Body)
			}
			got := decode(t, rec)["subject"].(map[string]any)["reference"]
			if got != urn {
				t.Errorf("stored subject = %v, want %v as written", got, urn)
			}
		})
	}
	// In a transaction the urn names no entry: 400.
	assertOutcome(t, req(h, "POST", "/fhir", txBundle(`{"resource":`+obs("")+`,"request":{"method":"POST","url":"Observation"}}`)),
		400, "reference-unresolved", "")
}

// TestUpdateOwnBaseReference: an update makes a reference on the
// gateway's own base relative, as a create and a patch do, so that the
// same body is stored the same way whichever interaction writes it.
func TestUpdateOwnBaseReference(t *testing.T) {
	h := fhirServer(t)
	body := `{"resourceType":"Observation","id":"own-base","status":"final","code":{"text":"x"},` +
		`"subject":{"reference":"http://example.com/fhir/Patient/p1"}}`
	for _, c := range []struct{ name, method, target, body string }{
		{"create", "POST", "/fhir/Observation", body},
		{"update", "PUT", "/fhir/Observation/own-base", body},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, c.method, c.target, c.body)
			if rec.Code != 201 {
				t.Fatalf("%s = %d %s", c.method, rec.Code, rec.Body)
			}
			if got := decode(t, rec)["subject"].(map[string]any)["reference"]; got != "Patient/p1" {
				t.Errorf("subject = %v, want Patient/p1", got)
			}
		})
	}
}

// TestPlaceholderCriteria: a transaction entry's conditional criteria
// (ifNoneExist, a conditional update's or patch's url) may name the fullUrl
// of an entry processed before it; they search for the id that entry was
// given, as its resource's references are rewritten (http.html#trules), so
// the same Bundle sent again matches what the first one made. Criteria
// naming an entry processed later are 400 criteria-placeholder-later at
// the entry; an identifier (a token) equal to a fullUrl is data and stays.
func TestPlaceholderCriteria(t *testing.T) {
	h := fhirServer(t)
	const pURN = "urn:uuid:eeeeeeee-1111-4111-8111-111111111111"
	patient := func(mrn string) string {
		return `{"fullUrl":"` + pURN + `","resource":{"resourceType":"Patient","identifier":[{"system":"urn:p6","value":"` + mrn +
			`"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:p6|` + mrn + `"}}`
	}
	obs := func(code, request string) string {
		return `{"fullUrl":"urn:uuid:eeeeeeee-2222-4111-8111-` + fmt.Sprintf("%012d", len(code)) + `","resource":{"resourceType":"Observation","status":"final",` +
			`"code":{"coding":[{"system":"urn:p6","code":"` + code + `"}]},"subject":{"reference":"` + pURN + `"}},"request":` + request + `}`
	}
	createObs := func(code string) string {
		return obs(code, `{"method":"POST","url":"Observation","ifNoneExist":"patient=`+pURN+`&code=urn:p6|`+code+`"}`)
	}
	updateObs := func(code string) string {
		return obs(code, `{"method":"PUT","url":"Observation?subject=`+pURN+`&code=urn:p6|`+code+`"}`)
	}
	selfIdent := `{"fullUrl":"urn:uuid:eeeeeeee-3333-4111-8111-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"urn:ietf:rfc:3986",` +
		`"value":"urn:uuid:eeeeeeee-3333-4111-8111-111111111111"}]},"request":{"method":"POST","url":"Patient",` +
		`"ifNoneExist":"identifier=urn:ietf:rfc:3986|urn:uuid:eeeeeeee-3333-4111-8111-111111111111"}}`
	patchObs := jsonPatchEntry("Observation?patient="+pURN+"&code=urn:p6|uc1", `[{"op":"add","path":"/valueString","value":"patched"}]`)
	putPatient := `{"fullUrl":"urn:uuid:eeeeeeee-4444-4111-8111-111111111111","resource":{"resourceType":"Patient","id":"later-p"},"request":{"method":"PUT","url":"Patient/later-p"}}`
	laterObs := `{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:eeeeeeee-4444-4111-8111-111111111111"}},` +
		`"request":{"method":"POST","url":"Observation","ifNoneExist":"patient=urn:uuid:eeeeeeee-4444-4111-8111-111111111111"}}`

	count := func(query string) float64 {
		return decode(t, req(h, "GET", "/fhir/"+query+"&_summary=count", ""))["total"].(float64)
	}
	for _, c := range []struct {
		name    string
		entries []string
		want    []string // each entry's status
	}{
		{"conditional creates of a Patient and its Observation", []string{patient("URNCOND"), createObs("uc1")}, []string{"201 Created", "201 Created"}},
		{"the same again matches both", []string{patient("URNCOND"), createObs("uc1")}, []string{"200 OK", "200 OK"}},
		{"conditional update naming the Patient", []string{updateObs("uc22"), patient("URNCOND")}, []string{"201 Created", "200 OK"}},
		{"the same update again", []string{updateObs("uc22"), patient("URNCOND")}, []string{"200 OK", "200 OK"}},
		{"conditional update naming a new Patient", []string{patient("URNNEW"), updateObs("uc22")}, []string{"201 Created", "201 Created"}},
		{"conditional patch naming the Patient", []string{patchObs, patient("URNCOND")}, []string{"200 OK", "200 OK"}},
		{"an identifier equal to the fullUrl is not rewritten", []string{selfIdent}, []string{"201 Created"}},
		{"the same identifier again", []string{selfIdent}, []string{"200 OK"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := req(h, "POST", "/fhir", txBundle(c.entries...))
			if rec.Code != 200 {
				t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
			}
			var got []string
			for _, e := range decode(t, rec)["entry"].([]any) {
				got = append(got, e.(map[string]any)["response"].(map[string]any)["status"].(string))
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("statuses = %q, want %q", got, c.want)
			}
		})
	}
	for query, want := range map[string]float64{
		"Patient?identifier=urn:p6|URNCOND": 1,
		"Observation?code=urn:p6|uc1":       1,
		"Observation?code=urn:p6|uc22":      2, // one per Patient
	} {
		if got := count(query); got != want {
			t.Errorf("%s: %v resources, want %v", query, got, want)
		}
	}
	if got := count("Patient?identifier=urn:ietf:rfc:3986|urn:uuid:eeeeeeee-3333-4111-8111-111111111111"); got != 1 {
		t.Errorf("Patients with the identifier: %v, want 1", got)
	}

	if obs := decode(t, req(h, "GET", "/fhir/Observation?code=urn:p6|uc1", ""))["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any); obs["valueString"] != "patched" {
		t.Errorf("the conditional patch did not patch the Observation: %v", obs)
	}

	// Criteria naming an entry processed later (a PUT runs after the
	// POSTs; a POST after the POSTs before it in the Bundle): its id is
	// not decided when they are searched.
	for _, c := range []struct {
		name    string
		entries []string
		at      string
	}{
		{"a PUT's", []string{putPatient, laterObs}, "Bundle.entry[1].request.ifNoneExist"},
		{"a POST later in the Bundle", []string{createObs("uc1"), patient("URNCOND")}, "Bundle.entry[0].request.ifNoneExist"},
	} {
		t.Run("naming "+c.name, func(t *testing.T) {
			rec := req(h, "POST", "/fhir", txBundle(c.entries...))
			assertOutcome(t, rec, 400, "criteria-placeholder-later", "")
			if !strings.Contains(rec.Body.String(), c.at) {
				t.Errorf("the outcome does not name %s: %s", c.at, rec.Body)
			}
		})
	}
}

// TestConditionalCreatesOneResource: a resource a transaction's
// conditional create or update makes must be the only one the transaction
// leaves that its criteria select, else every later request with them
// finds several. Two conditional creates of different criteria selecting
// each other's new resource, or a plain POST, a PUT or a patch writing a
// resource the criteria select, fail the transaction with 412
// conditional-create-duplicate naming both entries, and nothing is
// written; the same criteria twice make one resource.
func TestConditionalCreatesOneResource(t *testing.T) {
	h := fhirServer(t)
	rec := req(h, "PUT", "/fhir/Patient/dup-stored", `{"resourceType":"Patient","id":"dup-stored"}`)
	if rec.Code != 201 {
		t.Fatalf("create = %d %s", rec.Code, rec.Body)
	}
	ident := func(values ...string) string {
		var ids []string
		for i, v := range values {
			ids = append(ids, fmt.Sprintf(`{"system":"http://probe.example/mrn%d","value":"%s"}`, i+1, v))
		}
		return `"identifier":[` + strings.Join(ids, ",") + `]`
	}
	patient := func(fields string) string { return `{"resourceType":"Patient",` + fields + `}` }
	post := func(res, ifNoneExist string) string {
		e := `{"resource":` + res + `,"request":{"method":"POST","url":"Patient"`
		if ifNoneExist != "" {
			e += `,"ifNoneExist":"` + ifNoneExist + `"`
		}
		return e + `}}`
	}
	put := func(url, res string) string {
		return `{"resource":` + res + `,"request":{"method":"PUT","url":"` + url + `"}}`
	}
	for _, c := range []struct {
		name    string
		entries []string
		fail    bool
	}{
		{"two criteria selecting each other's new Patient",
			[]string{post(patient(ident("TWO1", "TWO2")), "identifier=http://probe.example/mrn1|TWO1"),
				post(patient(ident("TWO1", "TWO2")), "identifier=http://probe.example/mrn2|TWO2")}, true},
		{"a plain POST the criteria select",
			[]string{post(patient(ident("DUP3")), ""), post(patient(ident("DUP3")), "identifier=http://probe.example/mrn1|DUP3")}, true},
		{"a conditional update selecting a conditional create's Patient",
			[]string{post(patient(ident("DUP4", "DUP4B")), "identifier=http://probe.example/mrn1|DUP4"),
				put("Patient?identifier=http://probe.example/mrn2|DUP4B", patient(ident("DUP4", "DUP4B")))}, true},
		{"a PUT making a stored Patient one the criteria select",
			[]string{post(patient(ident("DUP5")), "identifier=http://probe.example/mrn1|DUP5"),
				put("Patient/dup-stored", `{"resourceType":"Patient","id":"dup-stored",`+ident("DUP5")+`}`)}, true},
		{"date criteria, found out by a search after the writes",
			[]string{post(patient(`"birthDate":"1931-01-01"`), "birthdate=1931-01-01"), post(patient(`"birthDate":"1931-01-01"`), "")}, true},
		{"the same criteria twice make one Patient",
			[]string{post(patient(ident("ONE6")), "identifier=http://probe.example/mrn1|ONE6"),
				post(patient(ident("ONE6")), "identifier=http://probe.example/mrn1|ONE6")}, false},
		{"criteria selecting only their own Patient",
			[]string{post(patient(ident("OWN7")), "identifier=http://probe.example/mrn1|OWN7"),
				post(patient(ident("OWN8")), "identifier=http://probe.example/mrn1|OWN8"), post(patient(ident("OWN9")), "")}, false},
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
			assertOutcome(t, rec, 412, "conditional-create-duplicate", "")
			body := rec.Body.String()
			if !strings.Contains(body, `"Bundle.entry[1].request"`) || !strings.Contains(body, "Bundle.entry[0]") {
				t.Errorf("the outcome does not name both entries: %s", body)
			}
			if after := decode(t, req(h, "GET", "/fhir/Patient/_history?_count=0", ""))["total"]; after != before {
				t.Errorf("the failed transaction wrote: %v versions before, %v after", before, after)
			}
		})
	}
	if n := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://probe.example/mrn1|ONE6&_summary=count", ""))["total"]; n != 1.0 {
		t.Errorf("the same criteria twice stored %v Patients, want 1", n)
	}
}

// conflictOnce is a store whose first write transaction that would
// commit, once armed, fails with store.ErrConflict (rolled back), as after
// a concurrent writer: the engine then runs the transaction again.
type conflictOnce struct {
	store.Store
	armed, done atomic.Bool
}

func (c *conflictOnce) Write(ctx context.Context, fn func(store.Tx) error) error {
	return c.Store.Write(ctx, func(tx store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if c.armed.Load() && c.done.CompareAndSwap(false, true) {
			return store.ErrConflict
		}
		return nil
	})
}

// TestPlaceholdersSameOnRerun: a transaction run again after a conflict
// sees the placeholders its first run saw. A PATCH entry's fullUrl names
// no resource it carries (its document exists only once it ran), so
// criteria naming it are searched as written, in the first run and in the
// run after the conflict alike (the second run had taken it for a
// placeholder named by an entry processed before: criteria-placeholder-later).
func TestPlaceholdersSameOnRerun(t *testing.T) {
	st := &conflictOnce{Store: tempSQLite(t, sqlite.Options{})}
	h := newServer(t, app.Config{Store: st, UpdateCreate: true}, gateway.Config{})
	seed := `{"resourceType":"Observation","id":"rerun-o","status":"final","code":{"coding":[{"system":"urn:rerun","code":"a"}]}}`
	if rec := req(h, "PUT", "/fhir/Observation/rerun-o", seed); rec.Code != 201 {
		t.Fatalf("seed = %d %s", rec.Code, rec.Body)
	}
	const patchURN = "urn:uuid:eeeeeeee-5555-4111-8111-111111111111"
	patch := strings.Replace(jsonPatchEntry("Observation?code=urn:rerun|a", `[{"op":"add","path":"/valueString","value":"x"}]`),
		`{"resource"`, `{"fullUrl":"`+patchURN+`","resource"`, 1)
	create := `{"resource":{"resourceType":"ConceptMap","url":"` + patchURN + `","status":"draft"},` +
		`"request":{"method":"POST","url":"ConceptMap","ifNoneExist":"url=` + patchURN + `"}}`
	st.armed.Store(true)
	rec := req(h, "POST", "/fhir", txBundle(patch, create))
	if !st.done.Load() {
		t.Fatal("the store never made the transaction run again")
	}
	if rec.Code != 200 {
		t.Fatalf("transaction run again after a conflict = %d %s, want 200 as its first run would answer", rec.Code, rec.Body)
	}
}
