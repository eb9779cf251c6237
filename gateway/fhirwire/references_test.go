package fhirwire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestRewriter(t *testing.T) {
	errUnresolved := errors.New("unresolved")
	rw := Rewriter{
		IDs: map[string]string{"urn:uuid:a": "Patient/1", "http://x/Obs/2": "Observation/9"},
		Conditional: func(typ, query string) (string, error) {
			if query == "identifier=s|v" {
				return typ + "/c1", nil
			}
			return "", errors.New("no match")
		},
		Unresolved: errUnresolved,
		Local:      func(ref string) string { return strings.TrimPrefix(ref, "http://own/fhir/") },
	}
	tests := []struct {
		name, in, want string
		err            error
	}{
		{"reference", `{"subject":{"reference":"urn:uuid:a"}}`, `{"subject":{"reference":"Patient/1"}}`, nil},
		{"absolute fullUrl", `{"hasMember":[{"reference":"http://x/Obs/2"}]}`, `{"hasMember":[{"reference":"Observation/9"}]}`, nil},
		{"uri element", `{"focus":[{"reference":"Patient/7"}],"instantiatesUri":["urn:uuid:a"],"source":"urn:uuid:a"}`,
			`{"focus":[{"reference":"Patient/7"}],"instantiatesUri":["Patient/1"],"source":"Patient/1"}`, nil},
		{"conditional", `{"subject":{"reference":"Patient?identifier=s|v"}}`, `{"subject":{"reference":"Patient/c1"}}`, nil},
		{"conditional on the own base", `{"subject":{"reference":"http://own/fhir/Patient?identifier=s|v"}}`, `{"subject":{"reference":"Patient/c1"}}`, nil},
		{"conditional on another base stays", `{"subject":{"reference":"http://other/fhir/Patient?identifier=s|v"}}`,
			`{"subject":{"reference":"http://other/fhir/Patient?identifier=s|v"}}`, nil},
		{"literal on the own base stays", `{"subject":{"reference":"http://own/fhir/Patient/3"}}`, `{"subject":{"reference":"http://own/fhir/Patient/3"}}`, nil},
		{"narrative", `{"text":{"div":"<div><a href=\"urn:uuid:a\">p</a><img src=\"urn:uuid:b\"/></div>"}}`,
			`{"text":{"div":"<div><a href=\"Patient/1\">p</a><img src=\"urn:uuid:b\"/></div>"}}`, nil},
		{"unknown urn", `{"subject":{"reference":"urn:uuid:zz"}}`, "", errUnresolved},
		{"other strings stay", `{"status":"final","code":{"text":"urn:uuid:a is a fullUrl"}}`,
			`{"status":"final","code":{"text":"urn:uuid:a is a fullUrl"}}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc any
			if err := json.Unmarshal([]byte(tc.in), &doc); err != nil {
				t.Fatal(err)
			}
			err := rw.Rewrite(doc)
			if !errors.Is(err, tc.err) {
				t.Fatalf("Rewrite(%s) error = %v, want %v", tc.in, err, tc.err)
			}
			if tc.err != nil {
				return
			}
			// With Changes, the same rewrite, and Restore puts the input back.
			var again, orig any
			_ = json.Unmarshal([]byte(tc.in), &again)
			_ = json.Unmarshal([]byte(tc.in), &orig)
			var ch Changes
			logged := rw
			logged.Changes = &ch
			if err := logged.Rewrite(again); err != nil || !reflect.DeepEqual(again, doc) {
				t.Fatalf("Rewrite with Changes = %v, %v; want the same as without", again, err)
			}
			ch.Restore()
			if !reflect.DeepEqual(again, orig) {
				got, _ := json.Marshal(again)
				t.Errorf("Restore after Rewrite(%s) = %s, want the input", tc.in, got)
			}
			var want any
			_ = json.Unmarshal([]byte(tc.want), &want)
			if !reflect.DeepEqual(doc, want) {
				got, _ := json.Marshal(doc)
				t.Errorf("Rewrite(%s) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
	// Without Conditional and Unresolved (delivery), such references stay.
	var doc any
	_ = json.Unmarshal([]byte(`{"a":{"reference":"urn:uuid:zz"},"b":{"reference":"Patient?identifier=s|v"}}`), &doc)
	if err := (Rewriter{IDs: rw.IDs}).Rewrite(doc); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(doc)
	if string(got) != `{"a":{"reference":"urn:uuid:zz"},"b":{"reference":"Patient?identifier=s|v"}}` {
		t.Errorf("a lenient Rewriter changed %s", got)
	}
}

func TestStatusLine(t *testing.T) {
	for code, want := range map[int]string{201: "201 Created", 422: "422 Unprocessable Entity", 299: "299"} {
		if got := StatusLine(code); got != want {
			t.Errorf("StatusLine(%d) = %q, want %q", code, got, want)
		}
		if got := StatusCode(want); got != code {
			t.Errorf("StatusCode(%q) = %d, want %d", want, got, code)
		}
	}
}
