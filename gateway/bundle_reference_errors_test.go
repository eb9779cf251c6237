package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
)

// issueAt returns the rule and the expressions of the first issue of an
// OperationOutcome response.
func issueAt(t *testing.T, rec *httptest.ResponseRecorder) (rule string, expr []string) {
	t.Helper()
	var oo outcome
	if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil || len(oo.Issue) == 0 {
		t.Fatalf("body is not an OperationOutcome with issues: %s", rec.Body)
	}
	if c := oo.Issue[0].Details.Coding; len(c) > 0 {
		rule = c[0].Code
	}
	return rule, oo.Issue[0].Expression
}

// TestTransactionReferenceErrorsNameElement: a reference a transaction
// cannot resolve (a urn no entry has, a conditional reference with no or
// several matches, or criteria the gateway cannot search) fails it with an
// OperationOutcome whose expression is the FHIRPath of that reference
// element, inside contained resources and extensions too, not just the
// entry (LinuxForHealth/FHIR#2556 asked the same of its server), also
// when the match is judged by a search after the writes (criteria of a
// date over a resource the transaction writes), and nothing is written.
func TestTransactionReferenceErrorsNameElement(t *testing.T) {
	h := fhirServer(t)
	for _, id := range []string{"dupA", "dupB"} {
		if rec := req(h, "PUT", "/fhir/Patient/"+id, `{"resourceType":"Patient","id":"`+id+`","identifier":[{"system":"http://ex.org/mrn","value":"DUP"}]}`); rec.Code != 201 {
			t.Fatalf("PUT Patient/%s = %d %s", id, rec.Code, rec.Body)
		}
	}
	const patient = `{"fullUrl":"urn:uuid:90000000-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","name":[{"family":"Errpath"}]},"request":{"method":"POST","url":"Patient"}}`
	obs := func(members string) string {
		return `{"fullUrl":"urn:uuid:90000000-0000-4000-8000-000000000002","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},` +
			members + `},"request":{"method":"POST","url":"Observation"}}`
	}
	const at = "Bundle.entry[1].resource.ofType(Observation)."
	for _, tc := range []struct {
		name, members string
		status        int
		rule, expr    string
	}{
		{"urn naming no entry", `"subject":{"reference":"urn:uuid:90000000-0000-4000-8000-00000000dead"}`,
			400, "reference-unresolved", at + "subject.reference"},
		{"urn in a contained resource", `"focus":[{"reference":"#p"}],"contained":[{"resourceType":"Provenance","id":"p","recorded":"2020-01-01T00:00:00Z",` +
			`"agent":[{"who":{"reference":"urn:uuid:90000000-0000-4000-8000-000000000001"}}],"target":[{"reference":"urn:uuid:90000000-0000-4000-8000-00000000dead"}]}]`,
			400, "reference-unresolved", at + "contained[0].ofType(Provenance).target[0].reference"},
		{"conditional reference matching nothing, in an extension", `"extension":[{"url":"http://ex.org/e","valueString":"s"},` +
			`{"url":"http://ex.org/f","valueReference":{"reference":"Patient?identifier=http://ex.org/mrn|NOBODY"}}]`,
			400, "conditional-reference-unresolved", at + "extension[1].valueReference.reference"},
		{"conditional reference matching several", `"subject":{"reference":"urn:uuid:90000000-0000-4000-8000-000000000001"},` +
			`"performer":[{"reference":"Patient?identifier=http://ex.org/mrn|DUP"}]`,
			412, "conditional-multiple-matches", at + "performer[0].reference"},
		{"conditional reference found to match nothing once written", `"focus":[{"reference":"urn:uuid:90000000-0000-4000-8000-000000000001"},` +
			`{"reference":"Patient?birthdate=1913"}]`, 400, "conditional-reference-unresolved", at + "focus[1].reference"},
		{"conditional reference with a parameter the type lacks", `"subject":{"reference":"Patient?nope=1"}`,
			400, "", at + "subject.reference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count := func() any {
				return decode(t, req(h, "GET", "/fhir/Patient?family=Errpath&_summary=count", ""))["total"]
			}
			before := count()
			rec := req(h, "POST", "/fhir", txBundle(patient, obs(tc.members)))
			if rec.Code != tc.status {
				t.Fatalf("transaction = %d %s, want %d", rec.Code, rec.Body, tc.status)
			}
			rule, expr := issueAt(t, rec)
			if tc.rule != "" && rule != tc.rule {
				t.Errorf("rule = %s, want %s", rule, tc.rule)
			}
			if len(expr) != 1 || expr[0] != tc.expr {
				t.Errorf("expression = %v, want [%s]", expr, tc.expr)
			}
			if after := count(); after != before {
				t.Errorf("a failed transaction wrote its Patient: %v Patients, then %v", before, after)
			}
		})
	}
}

// TestConditionalReferencePlaceholders: a conditional reference's criteria
// may name an entry's fullUrl where a link would stand (a reference or uri
// parameter's value), as conditional create and update criteria and GET
// entries may: they search for the id that entry was given
// (http.html#trules: "Servers SHALL replace all matching links in the
// bundle"), so a reference by criteria finds a resource linked to another
// the same transaction creates. A urn no entry has is searched as written.
func TestConditionalReferencePlaceholders(t *testing.T) {
	h := fhirServer(t)
	const (
		pat = "urn:uuid:91000000-0000-4000-8000-000000000001"
		obs = "urn:uuid:91000000-0000-4000-8000-000000000002"
	)
	entries := func(criteria string) string {
		return txBundle(
			`{"fullUrl":"`+pat+`","resource":{"resourceType":"Patient","name":[{"family":"Condplace"}]},"request":{"method":"POST","url":"Patient"}}`,
			`{"fullUrl":"`+obs+`","resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},`+
				`"subject":{"reference":"`+pat+`"}},"request":{"method":"POST","url":"Observation"}}`,
			`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"panel"},"hasMember":[{"reference":"`+criteria+`"}]},`+
				`"request":{"method":"POST","url":"Observation"}}`)
	}
	rec := req(h, "POST", "/fhir", entries("Observation?subject="+pat+"&code=http://loinc.org|8867-4"))
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	b := decode(t, rec)
	panel := decode(t, req(h, "GET", "/fhir/"+entryLocation(t, b, 2), ""))
	if got, want := panel["hasMember"].([]any)[0].(map[string]any)["reference"], entryLocation(t, b, 1); got != want {
		t.Errorf("hasMember = %v, want %s", got, want)
	}

	rec = req(h, "POST", "/fhir", entries("Observation?subject=urn:uuid:91000000-0000-4000-8000-0000000000ff"))
	assertOutcome(t, rec, 400, "conditional-reference-unresolved", "")
}

// TestTransactionVersionedReferences: a version-specific reference
// ([fullUrl]/_history/n, or a relative Type/id/_history/n that makes one)
// names an entry with that fullUrl (bundle.html#references: the version
// is matched apart). When the entry keeps the id its fullUrl names (a PUT),
// the reference is stored as that id and version; when the server gives
// the entry's resource its id (a POST, a urn: fullUrl) the reference would
// name a version of a resource that does not exist, so the transaction is
// refused with 400 reference-version-placeholder at the reference, and
// nothing is written. A version-specific reference naming no entry is kept.
func TestTransactionVersionedReferences(t *testing.T) {
	h := fhirServer(t)
	const base = "http://example.com/fhir" // httptest's Host
	obs := func(ref string) string {
		return `{"fullUrl":"urn:uuid:92000000-0000-4000-8000-000000000002","resource":{"resourceType":"Observation","status":"final","code":{"text":"v"},` +
			`"subject":{"reference":"` + ref + `"}},"request":{"method":"POST","url":"Observation"}}`
	}
	post := func(fullURL string) string {
		return `{"fullUrl":"` + fullURL + `","resource":{"resourceType":"Patient","name":[{"family":"Versioned"}]},"request":{"method":"POST","url":"Patient"}}`
	}
	put := func(fullURL, id string) string {
		return `{"fullUrl":"` + fullURL + `","resource":{"resourceType":"Patient","id":"` + id + `"},"request":{"method":"PUT","url":"Patient/` + id + `"}}`
	}
	for _, tc := range []struct {
		name, patient, ref string
		want               string // the stored reference, or "" for the refusal
	}{
		{"relative, to a POST's RESTful fullUrl", post(base + "/Patient/tempV"), "Patient/tempV/_history/1", ""},
		{"absolute, to a POST's RESTful fullUrl", post(base + "/Patient/tempV"), base + "/Patient/tempV/_history/1", ""},
		{"to a urn fullUrl", post("urn:uuid:92000000-0000-4000-8000-000000000001"), "urn:uuid:92000000-0000-4000-8000-000000000001/_history/1", ""},
		{"relative, to a PUT's fullUrl", put(base+"/Patient/keepV", "keepV"), "Patient/keepV/_history/1", "Patient/keepV/_history/1"},
		{"absolute, to a PUT's fullUrl on another base", put("http://other.example/r4/Patient/keepW", "keepW"),
			"http://other.example/r4/Patient/keepW/_history/1", "Patient/keepW/_history/1"},
		{"naming no entry", post(base + "/Patient/tempV"), "Patient/elsewhere/_history/3", "Patient/elsewhere/_history/3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count := func() any {
				return decode(t, req(h, "GET", "/fhir/Patient?family=Versioned&_summary=count", ""))["total"]
			}
			before := count()
			rec := req(h, "POST", "/fhir", txBundle(tc.patient, obs(tc.ref)))
			if tc.want == "" {
				if rec.Code != 400 {
					t.Fatalf("transaction = %d %s, want 400", rec.Code, rec.Body)
				}
				rule, expr := issueAt(t, rec)
				if want := "Bundle.entry[1].resource.ofType(Observation).subject.reference"; rule != "reference-version-placeholder" || len(expr) != 1 || expr[0] != want {
					t.Errorf("issue = %s at %v, want reference-version-placeholder at %s", rule, expr, want)
				}
				if after := count(); after != before {
					t.Errorf("a failed transaction wrote its Patient: %v Patients, then %v", before, after)
				}
				return
			}
			if rec.Code != 200 {
				t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
			}
			o := decode(t, req(h, "GET", "/fhir/"+entryLocation(t, decode(t, rec), 1), ""))
			if got := o["subject"].(map[string]any)["reference"]; got != tc.want {
				t.Errorf("stored subject = %v, want %s", got, tc.want)
			}
		})
	}
}

// TestBatchReferencesToOtherEntries: a batch resolves no reference between
// its entries, and a reference from one entry to the resource another
// creates is non-conformant (http.html#transaction: "references within a
// Bundle.entry.resource to another Bundle.entry.resource that is being
// created within the batch are considered to be non-conformant"). So an
// entry that references another POST entry's fullUrl (a urn, or a RESTful
// fullUrl whose resource gets a new id, named absolutely or by a relative
// reference that makes it as bundle.html#references says) fails alone with
// 400 batch-interdependent at the reference, instead of being stored with
// a reference to a resource that does not exist; the others are processed.
// A reference to a PUT entry's resource names its id, which exists once
// the batch ran, and is kept.
func TestBatchReferencesToOtherEntries(t *testing.T) {
	h := fhirServer(t)
	const base = "http://example.com/fhir" // httptest's Host
	obs := func(fullURL, members string) string {
		return `{"fullUrl":"` + fullURL + `","resource":{"resourceType":"Observation","status":"final","code":{"text":"b"},` + members +
			`},"request":{"method":"POST","url":"Observation"}}`
	}
	rec := req(h, "POST", "/fhir", batchBundle(
		`{"fullUrl":"`+base+`/Patient/tmpB","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}`,
		obs("urn:uuid:93000000-0000-4000-8000-000000000001", `"subject":{"reference":"Patient/tmpB"}`),
		obs("urn:uuid:93000000-0000-4000-8000-000000000002", `"subject":{"reference":"`+base+`/Patient/tmpB"}`),
		obs("urn:uuid:93000000-0000-4000-8000-000000000003", `"focus":[{"reference":"#p"}],"contained":[{"resourceType":"Patient","id":"p",`+
			`"link":[{"type":"seealso","other":{"reference":"urn:uuid:93000000-0000-4000-8000-000000000009"}}]}]`),
		obs("http://other.example/r4/Observation/o4", `"subject":{"reference":"Patient/tmpB"}`),
		`{"fullUrl":"`+base+`/Patient/keepB","resource":{"resourceType":"Patient","id":"keepB"},"request":{"method":"PUT","url":"Patient/keepB"}}`,
		obs("urn:uuid:93000000-0000-4000-8000-000000000006", `"subject":{"reference":"Patient/keepB"}`),
		`{"fullUrl":"urn:uuid:93000000-0000-4000-8000-000000000009","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}`,
	))
	if rec.Code != 200 {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	const at = ".resource.ofType(Observation)."
	want := []string{"201", "subject.reference", "subject.reference", "contained[0].ofType(Patient).link[0].other.reference", "201", "201", "201", "201"}
	for i, e := range decode(t, rec)["entry"].([]any) {
		r := e.(map[string]any)["response"].(map[string]any)
		status, _ := r["status"].(string)
		if len(want[i]) == 3 {
			if status[:3] != want[i] {
				t.Errorf("entry %d: %s %v, want %s", i, status, r["outcome"], want[i])
			}
			continue
		}
		oo, _ := r["outcome"].(map[string]any)
		raw, _ := json.Marshal(oo)
		var o outcome
		_ = json.Unmarshal(raw, &o)
		wantExpr := fmt.Sprintf("Bundle.entry[%d]%s%s", i, at, want[i])
		if status[:3] != "400" || len(o.Issue) == 0 || len(o.Issue[0].Details.Coding) == 0 || o.Issue[0].Details.Coding[0].Code != "batch-interdependent" ||
			len(o.Issue[0].Expression) != 1 || o.Issue[0].Expression[0] != wantExpr {
			t.Errorf("entry %d: %s %s, want 400 batch-interdependent at %s", i, status, raw, wantExpr)
		}
	}
}

// TestBatchConditionalReference (an EHR engineer's review): a batch entry
// is validated alone when the batch is not valid as a whole, and its
// conditional reference must then not be refused as outside a Bundle: a
// batch resolves conditional references as a transaction does.
func TestBatchConditionalReference(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/tx1", `{"resourceType":"Patient","id":"tx1","identifier":[{"system":"urn:test:mrn","value":"TX-1"}]}`); rec.Code != 201 {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "POST", "/fhir", `{"resourceType":"Bundle","type":"batch","entry":[`+
		`{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?identifier=urn:test:mrn|TX-1"}},"request":{"method":"POST","url":"Observation"}},`+
		`{"resource":{"resourceType":"Observation","status":"bogus","code":{"text":"x"}},"request":{"method":"POST","url":"Observation"}}]}`)
	if rec.Code != 200 {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	if status, rule, _ := batchEntryOutcome(t, rec, 0); !strings.HasPrefix(status, "201") {
		t.Errorf("entry 0 (valid, a conditional reference): %s %s, want 201", status, rule)
	}
	if status, rule, _ := batchEntryOutcome(t, rec, 1); !strings.HasPrefix(status, "400") || rule != "binding-required" {
		t.Errorf("entry 1 (invalid): %s %s, want 400 binding-required", status, rule)
	}
	obs := decode(t, req(h, "GET", "/fhir/Observation?subject=Patient/tx1", ""))
	if obs["total"] != float64(1) {
		t.Errorf("Observations of Patient/tx1: %v, want the one the reference resolved to it", obs["total"])
	}
}

// TestTransactionDuplicateFullURL: in a transaction a fullUrl names one
// entry, the one references to it resolve to (bundle.html#references). Two
// entries with the same fullUrl (which bdl-7 lets through when their
// resources' meta.versionId differ, as a history Bundle's versions do)
// would leave it to chance which one a reference names: the transaction is
// refused with 400 bundle-entry-fullurl-duplicate at the later entry's
// fullUrl, and nothing is written.
func TestTransactionDuplicateFullURL(t *testing.T) {
	h := fhirServer(t)
	const urn = "urn:uuid:94000000-0000-4000-8000-000000000001"
	patient := func(fullURL, version, method, url string) string {
		return `{"fullUrl":"` + fullURL + `","resource":{"resourceType":"Patient","meta":{"versionId":"` + version + `"},"name":[{"family":"Dupfull"}]},` +
			`"request":{"method":"` + method + `","url":"` + url + `"}}`
	}
	const observation = `{"fullUrl":"urn:uuid:94000000-0000-4000-8000-000000000002","resource":{"resourceType":"Observation","status":"final","code":{"text":"d"},` +
		`"subject":{"reference":"` + urn + `"}},"request":{"method":"POST","url":"Observation"}}`
	for _, tc := range []struct {
		name    string
		entries []string
	}{
		{"two POSTs", []string{patient(urn, "1", "POST", "Patient"), observation, patient(urn, "2", "POST", "Patient")}},
		{"a DELETE and a POST", []string{`{"fullUrl":"` + urn + `","request":{"method":"DELETE","url":"Patient/dupGone"}}`, observation,
			patient(urn, "2", "POST", "Patient")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			count := func() any {
				return decode(t, req(h, "GET", "/fhir/Patient?family=Dupfull&_summary=count", ""))["total"]
			}
			before := count()
			rec := req(h, "POST", "/fhir", txBundle(tc.entries...))
			if rec.Code != 400 {
				t.Fatalf("transaction = %d %s, want 400", rec.Code, rec.Body)
			}
			if rule, expr := issueAt(t, rec); rule != "bundle-entry-fullurl-duplicate" || len(expr) != 1 || expr[0] != "Bundle.entry[2].fullUrl" {
				t.Errorf("issue = %s at %v, want bundle-entry-fullurl-duplicate at Bundle.entry[2].fullUrl", rule, expr)
			}
			if after := count(); after != before {
				t.Errorf("a failed transaction wrote its Patient: %v Patients, then %v", before, after)
			}
		})
	}
}
