package gateway_test

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
)

// entryLocation returns "Type/id" of entry i of a Bundle response.
func entryLocation(t *testing.T, b map[string]any, i int) string {
	t.Helper()
	loc, _ := b["entry"].([]any)[i].(map[string]any)["response"].(map[string]any)["location"].(string)
	parts := strings.Split(loc, "/")
	if len(parts) < 2 {
		t.Fatalf("entry %d: location %q", i, loc)
	}
	return parts[0] + "/" + parts[1]
}

// TestTransactionRelativeReferences: a relative reference Patient/tempA
// in a transaction names the entry whose fullUrl is [base]/Patient/tempA,
// the base being that of the holding entry's RESTful fullUrl, or the
// server's own for an entry with a urn:uuid fullUrl (bundle.html#references),
// and is stored as the id the POST gave it (http.html#trules: "Servers
// SHALL replace all matching links in the bundle"), in a POSTed and a PUT
// entry, nested elements included; a relative reference naming no entry
// is stored as written.
func TestTransactionRelativeReferences(t *testing.T) {
	h := fhirServer(t)
	const base = "http://example.com/fhir" // httptest's Host
	body := txBundle(
		`{"fullUrl":"`+base+`/Patient/tempA","resource":{"resourceType":"Patient","name":[{"family":"Relative"}]},"request":{"method":"POST","url":"Patient"}}`,
		`{"fullUrl":"urn:uuid:44444444-0000-4000-8000-000000000001","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},`+
			`"subject":{"reference":"Patient/tempA"},"focus":[{"reference":"`+base+`/Patient/tempA"}],"performer":[{"reference":"Patient/nowhere"}],`+
			`"extension":[{"url":"http://example.org/e","valueReference":{"reference":"Patient/tempA"}}]},"request":{"method":"POST","url":"Observation"}}`,
		`{"fullUrl":"`+base+`/Patient/putB","resource":{"resourceType":"Patient","id":"putB","link":[{"other":{"reference":"Patient/tempA"},"type":"seealso"}]},`+
			`"request":{"method":"PUT","url":"Patient/putB"}}`,
		`{"fullUrl":"`+base+`/Observation/tempC","resource":{"resourceType":"Observation","status":"final","code":{"text":"y"},`+
			`"performer":[{"reference":"Patient/putB"}],"derivedFrom":[{"reference":"Observation/tempD"}],"subject":{"reference":"Patient/tempA"}},"request":{"method":"POST","url":"Observation"}}`,
	)
	rec := req(h, "POST", "/fhir", body)
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	b := decode(t, rec)
	patient := entryLocation(t, b, 0)
	if patient == "Patient/tempA" {
		t.Fatalf("the POSTed Patient kept its fullUrl's id")
	}
	if got := entryLocation(t, b, 2); got != "Patient/putB" {
		t.Fatalf("the PUT entry is at %s, want Patient/putB", got)
	}
	read := func(loc string) map[string]any {
		rec := req(h, "GET", "/fhir/"+loc, "")
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %s", loc, rec.Code, rec.Body)
		}
		return decode(t, rec)
	}
	refAt := func(doc map[string]any, path ...any) string {
		var v any = doc
		for _, p := range path {
			switch p := p.(type) {
			case string:
				v = v.(map[string]any)[p]
			case int:
				v = v.([]any)[p]
			}
		}
		s, _ := v.(string)
		return s
	}
	obs, putB, obsC := read(entryLocation(t, b, 1)), read("Patient/putB"), read(entryLocation(t, b, 3))
	for _, c := range []struct{ name, got, want string }{
		{"urn entry's subject", refAt(obs, "subject", "reference"), patient},
		{"urn entry's absolute focus", refAt(obs, "focus", 0, "reference"), patient},
		{"urn entry's extension valueReference", refAt(obs, "extension", 0, "valueReference", "reference"), patient},
		{"a reference naming no entry", refAt(obs, "performer", 0, "reference"), "Patient/nowhere"},
		{"PUT entry's link.other", refAt(putB, "link", 0, "other", "reference"), patient},
		{"RESTful entry's subject", refAt(obsC, "subject", "reference"), patient},
		{"RESTful entry's reference to a PUT entry", refAt(obsC, "performer", 0, "reference"), "Patient/putB"},
		{"RESTful entry's reference naming no entry", refAt(obsC, "derivedFrom", 0, "reference"), "Observation/tempD"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
}

// TestTransactionNarrativeLinks: a narrative link to an entry is rewritten
// whatever well-formed XHTML attribute syntax it is written in: single
// quotes, whitespace around = (http.html#trules; p27 F2).
func TestTransactionNarrativeLinks(t *testing.T) {
	h := fhirServer(t)
	const urn = "urn:uuid:77777777-0000-4000-8000-000000000001"
	div := `<div xmlns=\"http://www.w3.org/1999/xhtml\"><a href='` + urn + `'>single</a> <a  href = \"` + urn + `\">spaced</a></div>`
	rec := req(h, "POST", "/fhir", txBundle(
		`{"fullUrl":"`+urn+`","resource":{"resourceType":"Patient","name":[{"family":"Narrative"}]},"request":{"method":"POST","url":"Patient"}}`,
		`{"fullUrl":"urn:uuid:77777777-0000-4000-8000-000000000002","resource":{"resourceType":"Observation",`+
			`"text":{"status":"generated","div":"`+div+`"},"status":"final","code":{"text":"x"},"subject":{"reference":"`+urn+`"}},`+
			`"request":{"method":"POST","url":"Observation"}}`))
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	b := decode(t, rec)
	patient := entryLocation(t, b, 0)
	obs := decode(t, req(h, "GET", "/fhir/"+entryLocation(t, b, 1), ""))
	got := obs["text"].(map[string]any)["div"].(string)
	want := `<div xmlns="http://www.w3.org/1999/xhtml"><a href='` + patient + `'>single</a> <a  href = "` + patient + `">spaced</a></div>`
	if got != want {
		t.Errorf("stored narrative = %s, want %s", got, want)
	}
}

// TestEntryFullURLDisagrees: a transaction entry whose fullUrl names
// another id than its resource (fullUrl .../Patient/zzX, PUT Patient/zzY)
// is refused with 400 naming Bundle.entry[n].fullUrl, and nothing is
// written (R4 Bundle.entry.fullUrl: "The fullUrl SHALL NOT disagree with
// the id in the resource"; p27 F5). In a batch the entry fails alone.
func TestEntryFullURLDisagrees(t *testing.T) {
	h := fhirServer(t)
	const base = "http://example.com/fhir"
	ok := `{"fullUrl":"` + base + `/Patient/zzA","resource":{"resourceType":"Patient","id":"zzA"},"request":{"method":"PUT","url":"Patient/zzA"}}`
	bad := `{"fullUrl":"` + base + `/Patient/zzX","resource":{"resourceType":"Patient","id":"zzY"},"request":{"method":"PUT","url":"Patient/zzY"}}`
	rec := req(h, "POST", "/fhir", txBundle(ok, bad))
	if s := rec.Body.String(); rec.Code != 400 || !strings.Contains(s, "bundle-entry-fullurl-mismatch") || !strings.Contains(s, `"Bundle.entry[1].fullUrl"`) {
		t.Fatalf("transaction = %d %s; want 400 bundle-entry-fullurl-mismatch at Bundle.entry[1].fullUrl", rec.Code, s)
	}
	for _, id := range []string{"zzA", "zzY"} {
		if rec := req(h, "GET", "/fhir/Patient/"+id, ""); rec.Code != 404 {
			t.Errorf("GET Patient/%s = %d, want 404: the failed transaction wrote nothing", id, rec.Code)
		}
	}
	rec = req(h, "POST", "/fhir", strings.Replace(txBundle(ok, bad), `"transaction"`, `"batch"`, 1))
	if rec.Code != 200 {
		t.Fatalf("batch = %d %s", rec.Code, rec.Body)
	}
	entries := decode(t, rec)["entry"].([]any)
	if s := entries[0].(map[string]any)["response"].(map[string]any)["status"]; !strings.HasPrefix(s.(string), "201") {
		t.Errorf("batch entry 0 = %v, want 201", s)
	}
	resp := entries[1].(map[string]any)["response"].(map[string]any)
	if s, _ := json.Marshal(resp); !strings.HasPrefix(resp["status"].(string), "400") || !strings.Contains(string(s), "Bundle.entry[1].fullUrl") {
		t.Errorf("batch entry 1 = %s, want 400 naming Bundle.entry[1].fullUrl", s)
	}
}

// TestTransactionGetEntryPlaceholder: a GET entry's search naming the
// urn:uuid of a POST entry finds what that entry created (GETs run after
// the writes, and criteria resolve placeholders the same way), and its
// self link names the id, not the urn (p27 F4).
func TestTransactionGetEntryPlaceholder(t *testing.T) {
	h := fhirServer(t)
	const urn = "urn:uuid:55555555-0000-4000-8000-000000000001"
	rec := req(h, "POST", "/fhir", txBundle(
		`{"fullUrl":"`+urn+`","resource":{"resourceType":"Patient","name":[{"family":"Placeholder"}]},"request":{"method":"POST","url":"Patient"}}`,
		`{"fullUrl":"urn:uuid:55555555-0000-4000-8000-000000000002","resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},`+
			`"subject":{"reference":"`+urn+`"}},"request":{"method":"POST","url":"Observation"}}`,
		`{"request":{"method":"GET","url":"Observation?subject=`+urn+`"}}`))
	if rec.Code != 200 {
		t.Fatalf("transaction = %d %s", rec.Code, rec.Body)
	}
	b := decode(t, rec)
	patient := entryLocation(t, b, 0)
	got := b["entry"].([]any)[2].(map[string]any)["resource"].(map[string]any)
	if got["total"] != float64(1) {
		t.Errorf("GET entry's search total = %v, want 1: %v", got["total"], got)
	}
	links, _ := json.Marshal(got["link"])
	self, _ := url.QueryUnescape(string(links))
	if strings.Contains(self, "urn:uuid") || !strings.Contains(self, "subject="+patient) {
		t.Errorf("GET entry's links %s, want the search of %s", self, patient)
	}
}
