package engine

import (
	"encoding/json"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// TestTransactionRelativeReferences: in a transaction, a relative
// reference (Type/id) names the entry whose fullUrl it makes once resolved
// as bundle.html#references says, against the base of the holding entry's
// RESTful fullUrl or, for a urn: fullUrl, against the server's base, and
// is rewritten to the id that entry's POST was given (http.html#trules).
// A relative reference naming no fullUrl is left as it is.
func TestTransactionRelativeReferences(t *testing.T) {
	const base = "http://own.example/fhir"
	e := New(Config{})
	mk := func(i int, fullURL string, doc string) *Entry {
		var m map[string]any
		if err := json.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatal(err)
		}
		en, err := e.NewEntry(i, "POST", m["resourceType"].(string), fullURL, m, "")
		if err != nil {
			t.Fatal(err)
		}
		return en
	}
	entries := []*Entry{
		mk(0, base+"/Patient/tempA", `{"resourceType":"Patient"}`),
		mk(1, "urn:uuid:44444444-0000-4000-8000-000000000001",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/tempA"},"performer":[{"reference":"Patient/other"}]}`),
		mk(2, "http://elsewhere.example/r4/Observation/o2",
			`{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/tempB"},"focus":[{"reference":"Patient/tempA"}]}`),
		mk(3, "http://elsewhere.example/r4/Patient/tempB", `{"resourceType":"Patient"}`),
	}
	sc := &auditlog.Scope{Base: base}
	if err := e.runTransaction(&recordingTx{}, sc, entries, time.Now(), nil, nil); err != nil {
		t.Fatal(err)
	}
	ref := func(en *Entry, path ...string) string {
		var v any = en.doc
		for _, p := range path {
			switch x := v.(type) {
			case map[string]any:
				v = x[p]
			case []any:
				v = x[0].(map[string]any)[p]
			}
		}
		s, _ := v.(string)
		return s
	}
	for _, c := range []struct {
		name, got, want string
	}{
		{"urn entry's relative reference, on the server's base", ref(entries[1], "subject", "reference"), "Patient/" + entries[0].id},
		{"a relative reference naming no fullUrl", ref(entries[1], "performer", "reference"), "Patient/other"},
		{"RESTful entry's relative reference, on its own base", ref(entries[2], "subject", "reference"), "Patient/" + entries[3].id},
		{"RESTful entry's relative reference of another base", ref(entries[2], "focus", "reference"), "Patient/tempA"},
	} {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if entries[0].id == "tempA" || entries[3].id == "tempB" {
		t.Errorf("POST entries kept their fullUrl ids: %s, %s", entries[0].id, entries[3].id)
	}
}

// TestEntryFullURLAgreesWithID: a Bundle entry whose RESTful fullUrl
// names another type or id than its resource is Invalid
// bundle-entry-fullurl-mismatch at Bundle.entry[i].fullUrl (R4
// Bundle.entry.fullUrl: "The fullUrl SHALL NOT disagree with the id in the
// resource"), in a Bundle validated whole and in a batch's entry alike; a
// POST's resource may have no id, and a urn: fullUrl names no id.
func TestEntryFullURLAgreesWithID(t *testing.T) {
	e := New(Config{})
	const base = "http://own.example/fhir"
	for _, tc := range []struct {
		name, fullURL, method, url, resource string
		ok                                   bool
	}{
		{"PUT, another id", base + "/Patient/zzX", "PUT", "Patient/zzY", `{"resourceType":"Patient","id":"zzY"}`, false},
		{"PUT, another server's base, another id", "https://other.example/r4/Patient/zzX", "PUT", "Patient/zzY", `{"resourceType":"Patient","id":"zzY"}`, false},
		{"PUT, another type", base + "/Observation/zzY", "PUT", "Patient/zzY", `{"resourceType":"Patient","id":"zzY"}`, false},
		{"POST, another id", base + "/Patient/zzX", "POST", "Patient", `{"resourceType":"Patient","id":"zzY"}`, false},
		{"conditional PUT, another id", base + "/Patient/zzX", "PUT", "Patient?identifier=s|v", `{"resourceType":"Patient","id":"zzY"}`, false},
		{"PUT, the same id", base + "/Patient/zzY", "PUT", "Patient/zzY", `{"resourceType":"Patient","id":"zzY"}`, true},
		{"POST, no id", base + "/Patient/tempA", "POST", "Patient", `{"resourceType":"Patient"}`, true},
		{"conditional PUT, no id", base + "/Patient/zzX", "PUT", "Patient?identifier=s|v", `{"resourceType":"Patient"}`, true},
		{"urn fullUrl", "urn:uuid:44444444-0000-4000-8000-000000000001", "PUT", "Patient/zzY", `{"resourceType":"Patient","id":"zzY"}`, true},
		{"a URL that is not RESTful", "http://own.example/patients?id=zzX", "PUT", "Patient/zzY", `{"resourceType":"Patient","id":"zzY"}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res map[string]any
			if err := json.Unmarshal([]byte(tc.resource), &res); err != nil {
				t.Fatal(err)
			}
			m := map[string]any{"fullUrl": tc.fullURL, "resource": res, "request": map[string]any{"method": tc.method, "url": tc.url}}
			raw, _ := json.Marshal(m)
			var w fhirwire.Entry
			if err := json.Unmarshal(raw, &w); err != nil {
				t.Fatal(err)
			}
			for name, en := range map[string]*Entry{"decoded": e.decodedEntry(2, m, []string{base}), "batch": e.parseEntry(2, &w, []string{base})} {
				var oe *outcome.Error
				switch {
				case tc.ok && en.perr != nil:
					t.Errorf("%s entry: %v, want no problem", name, en.perr)
				case !tc.ok && (!errors.As(en.perr, &oe) || oe.Issues[0].Rule != "bundle-entry-fullurl-mismatch" ||
					oe.Issues[0].Expression != "Bundle.entry[2].fullUrl"):
					t.Errorf("%s entry: %v, want bundle-entry-fullurl-mismatch at Bundle.entry[2].fullUrl", name, en.perr)
				}
			}
		})
	}
}

// TestGetEntryPlaceholders: a transaction's GET entry runs after its
// writes, so a reference or uri value of its search naming an entry's
// fullUrl is the identity that entry was given, as in conditional
// criteria; a token or string value equal to a fullUrl is data, and a
// urn no entry has stays as written.
func TestGetEntryPlaceholders(t *testing.T) {
	e := New(Config{})
	ids := map[string]string{"urn:uuid:5555": "Patient/p1", "http://own.example/fhir/Patient/tempA": "Patient/p2",
		"urn:uuid:6666": "Questionnaire/q1"}
	for _, tc := range []struct{ url, want string }{
		{"Observation?subject=urn:uuid:5555", "subject=Patient/p1"},
		{"Observation?subject:Patient=urn:uuid:5555,urn:uuid:zz&code=urn:uuid:5555", "code=urn:uuid:5555&subject:Patient=Patient/p1,urn:uuid:zz"},
		{"Observation?subject=http://own.example/fhir/Patient/tempA", "subject=Patient/p2"},
		{"ValueSet?url=urn:uuid:6666", "url=Questionnaire/q1"},
		{"Patient?identifier=urn:ietf:rfc:3986|urn:uuid:5555&name=urn:uuid:5555", "identifier=urn:ietf:rfc:3986|urn:uuid:5555&name=urn:uuid:5555"},
		{"Patient/p9/Observation?subject=urn:uuid:5555", "subject=Patient/p1"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			en, err := e.NewEntry(3, "GET", tc.url, "", nil, "")
			if err != nil {
				t.Fatal(err)
			}
			if en.params, err = ParseQuery(en.queryType(), en.query); err != nil {
				t.Fatal(err)
			}
			e.getPlaceholders(e.Limits(), en, ids)
			if got, _ := url.QueryUnescape(en.params.Encode()); got != tc.want {
				t.Errorf("GET %s searches %s, want %s", tc.url, got, tc.want)
			}
		})
	}
}
