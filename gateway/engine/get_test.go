package engine

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// TestParseGetURL: a Bundle's GET entry may name what a client can GET at
// the top level; anything else is 400 bundle-entry-url-invalid.
func TestParseGetURL(t *testing.T) {
	e := New(Config{})
	tests := []struct {
		url                     string
		kind                    getKind
		typ, id, compType, rule string
		vid                     int64
	}{
		{url: "Patient", kind: getSearch, typ: "Patient"},
		{url: "Patient?name=x", kind: getSearch, typ: "Patient"},
		{url: "/Patient/p", kind: getRead, typ: "Patient", id: "p"},
		{url: "Patient/p?_elements=name", kind: getRead, typ: "Patient", id: "p"},
		{url: "Patient/p/_history/3", kind: getVRead, typ: "Patient", id: "p", vid: 3},
		{url: "Patient/p/_history", kind: getHistory, typ: "Patient", id: "p"},
		{url: "Patient/_history?_count=1", kind: getHistory, typ: "Patient"},
		{url: "_history", kind: getHistory},
		{url: "metadata", kind: getMetadata},
		{url: "Patient/p/Observation?code=x", kind: getCompartment, typ: "Patient", id: "p", compType: "Observation"},
		{url: "Patient/p/$everything", kind: getEverything, typ: "Patient", id: "p"},
		{url: "Patient/p/_history/x", rule: "bundle-entry-url-invalid"},
		{url: "Patient/p/_history/01", rule: "bundle-entry-url-invalid"},
		{url: "Patient/p/_history/+1", rule: "bundle-entry-url-invalid"},
		{url: "Patient/p/_history/0", rule: "bundle-entry-url-invalid"},
		{url: "Patient//p", rule: "bundle-entry-url-invalid"},
		{url: "Patient/p/$foo", rule: "bundle-entry-url-invalid"},
		{url: "Patient/$foo", rule: "bundle-entry-url-invalid"},
		{url: "Patient/p/Nothing", rule: "bundle-entry-url-invalid"},
		{url: "Nothing", rule: "bundle-entry-url-invalid"},
		{url: "Patient/p/_history/1/x", rule: "bundle-entry-url-invalid"},
		{url: "Patient/not an id", rule: "bundle-entry-url-invalid"},
		{url: "http://other.example/fhir/Patient/p", rule: "bundle-entry-url-invalid"},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			en, err := e.NewEntry(0, "GET", tc.url, "", nil, "")
			if tc.rule != "" {
				if _, issues := outcome.From(err); err == nil || issues[0].Rule != tc.rule {
					t.Errorf("NewEntry(GET %s) = %v, want %s", tc.url, err, tc.rule)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewEntry(GET %s) = %v", tc.url, err)
			}
			if en.get != tc.kind || en.typ != tc.typ || en.id != tc.id || en.compType != tc.compType || en.vid != tc.vid {
				t.Errorf("NewEntry(GET %s) = kind %d %s/%s %s v%d, want kind %d %s/%s %s v%d", tc.url, en.get, en.typ, en.id,
					en.compType, en.vid, tc.kind, tc.typ, tc.id, tc.compType, tc.vid)
			}
		})
	}
}

// TestRelativeURL: an entry's url on the server's own base is read
// relative to it; on another base it is kept (and then refused).
func TestRelativeURL(t *testing.T) {
	bases := []string{"https://gw.example/fhir", ""}
	for _, tc := range []struct{ in, want string }{
		{"https://gw.example/fhir/Patient/p", "Patient/p"},
		{"https://gw.example/fhir/metadata", "metadata"},
		{"https://gw.example/fhir/_history?_count=1", "_history?_count=1"},
		{"https://gw.example/fhirx/Patient", "https://gw.example/fhirx/Patient"},
		{"https://other.example/fhir/Patient", "https://other.example/fhir/Patient"},
		{"Patient/p", "Patient/p"},
		// Scheme and host compare without regard to case, the path exactly.
		{"HTTPS://GW.Example/fhir/Patient/p", "Patient/p"},
		{"https://gw.example/FHIR/Patient/p", "https://gw.example/FHIR/Patient/p"},
		// An empty segment after the base stays one, for parseURL to refuse.
		{"https://gw.example/fhir//Patient/p", "//Patient/p"},
	} {
		if got := relativeURL(tc.in, bases); got != tc.want {
			t.Errorf("relativeURL(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
