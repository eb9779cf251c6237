package fhirwire

import (
	"encoding/json"
	"testing"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

func TestMarshal(t *testing.T) {
	s := func(v string) *string { return &v }
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"decoded resource", map[string]any{"status": "final", "resourceType": "Observation", "id": "o1",
			"note": []any{map[string]any{"text": "a<b & c>d"}}, "valueQuantity": map[string]any{"value": json.Number("72.50")}},
			`{"resourceType":"Observation","id":"o1","note":[{"text":"a<b & c>d"}],"status":"final","valueQuantity":{"value":72.50}}`},
		{"samply resource", fhir.OperationOutcome{Issue: []fhir.OperationOutcomeIssue{{Severity: fhir.IssueSeverityError,
			Code: fhir.IssueTypeInvalid, Diagnostics: s(`x=1&y=2 "q" \u0026 <b>`)}}},
			`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid","diagnostics":"x=1&y=2 \"q\" \\u0026 <b>"}]}`},
		{"wire Bundle", Bundle{ResourceType: "Bundle", Type: "searchset", Link: []Link{{Relation: "self", URL: "http://x/fhir/Patient?a=1&b=2"}}},
			`{"resourceType":"Bundle","type":"searchset","link":[{"relation":"self","url":"http://x/fhir/Patient?a=1&b=2"}]}`},
		{"no resourceType", map[string]any{"b": 1, "a": "x"}, `{"a":"x","b":1}`},
	}
	for _, tc := range tests {
		got, err := Marshal(tc.v)
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: Marshal = %s, %v\nwant %s", tc.name, got, err, tc.want)
		}
		var any1, any2 any
		if json.Unmarshal(got, &any1) != nil || json.Unmarshal([]byte(tc.want), &any2) != nil {
			t.Errorf("%s: not JSON", tc.name)
		}
	}
}

func TestResourceTypeFirst(t *testing.T) {
	for in, want := range map[string]string{
		`{"a":1,"resourceType":"X"}`:                          `{"resourceType":"X","a":1}`,
		`{"a":{"resourceType":"Y"},"resourceType":"X","b":2}`: `{"resourceType":"X","a":{"resourceType":"Y"},"b":2}`,
		`{"a":"\",\"resourceType\":\"Z","resourceType":"X"}`:  `{"resourceType":"X","a":"\",\"resourceType\":\"Z"}`,
		`{"resourceType":"X","a":1}`:                          `{"resourceType":"X","a":1}`,
		`{"a":[1,{"b":"}"}]}`:                                 `{"a":[1,{"b":"}"}]}`,
		`[1,2]`:                                               `[1,2]`,
	} {
		if got := string(ResourceTypeFirst([]byte(in))); got != want {
			t.Errorf("ResourceTypeFirst(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestUnescapeHTML(t *testing.T) {
	for in, want := range map[string]string{
		`"a\u0026b\u003cc\u003ed"`: `"a&b<c>d"`,
		`"\\u0026"`:                `"\\u0026"`, // an escaped backslash, then the text u0026
		`"\\\u0026"`:               `"\\&"`,
		`"\u00e9\n"`:               `"\u00e9\n"`,
	} {
		if got := string(UnescapeHTML([]byte(in))); got != want {
			t.Errorf("UnescapeHTML(%s) = %s, want %s", in, got, want)
		}
		var a, b string
		if json.Unmarshal([]byte(in), &a) != nil || json.Unmarshal([]byte(want), &b) != nil || a != b {
			t.Errorf("UnescapeHTML(%s) changed the string: %q vs %q", in, a, b)
		}
	}
}
