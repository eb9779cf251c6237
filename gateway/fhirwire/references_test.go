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
	// Each case's input is a resource; only the elements whose R4 type is
	// a link (Reference.reference; uri, url, canonical, oid, uuid; the
	// narrative's href and src) change (http.html#trules).
	tests := []struct {
		name, in, want string
		err            error
	}{
		{"reference", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:a"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/1"}}`, nil},
		{"absolute fullUrl", `{"resourceType":"Observation","hasMember":[{"reference":"http://x/Obs/2"}]}`,
			`{"resourceType":"Observation","hasMember":[{"reference":"Observation/9"}]}`, nil},
		{"uri element", `{"resourceType":"ServiceRequest","subject":{"reference":"Patient/7"},"instantiatesUri":["urn:uuid:a"],"identifier":[{"system":"urn:uuid:a","value":"v"}]}`,
			`{"resourceType":"ServiceRequest","subject":{"reference":"Patient/7"},"instantiatesUri":["Patient/1"],"identifier":[{"system":"Patient/1","value":"v"}]}`, nil},
		{"url element", `{"resourceType":"DocumentReference","content":[{"attachment":{"url":"urn:uuid:a"}}]}`,
			`{"resourceType":"DocumentReference","content":[{"attachment":{"url":"Patient/1"}}]}`, nil},
		{"canonical element", `{"resourceType":"QuestionnaireResponse","questionnaire":"urn:uuid:a"}`,
			`{"resourceType":"QuestionnaireResponse","questionnaire":"Patient/1"}`, nil},
		{"oid and uuid choices", `{"resourceType":"Patient","extension":[{"url":"http://x/e","valueOid":"urn:uuid:a"},{"url":"http://x/f","valueUuid":"urn:uuid:a"}]}`,
			`{"resourceType":"Patient","extension":[{"url":"http://x/e","valueOid":"Patient/1"},{"url":"http://x/f","valueUuid":"Patient/1"}]}`, nil},
		{"extension values", `{"resourceType":"Observation","extension":[{"url":"http://x/e","valueUri":"urn:uuid:a"},{"url":"http://x/f","valueUrl":"urn:uuid:a"},{"url":"http://x/g","valueReference":{"reference":"urn:uuid:a"}},{"url":"http://x/h","valueString":"urn:uuid:a"}],"modifierExtension":[{"url":"http://x/m","valueUri":"urn:uuid:a"}]}`,
			`{"resourceType":"Observation","extension":[{"url":"http://x/e","valueUri":"Patient/1"},{"url":"http://x/f","valueUrl":"Patient/1"},{"url":"http://x/g","valueReference":{"reference":"Patient/1"}},{"url":"http://x/h","valueString":"urn:uuid:a"}],"modifierExtension":[{"url":"http://x/m","valueUri":"Patient/1"}]}`, nil},
		{"primitive extension", `{"resourceType":"Observation","status":"final","_status":{"extension":[{"url":"http://x/e","valueUri":"urn:uuid:a"},{"url":"http://x/f","valueCode":"urn:uuid:a"}]}}`,
			`{"resourceType":"Observation","status":"final","_status":{"extension":[{"url":"http://x/e","valueUri":"Patient/1"},{"url":"http://x/f","valueCode":"urn:uuid:a"}]}}`, nil},
		{"choice value[x]", `{"resourceType":"Observation","valueString":"urn:uuid:a","component":[{"code":{"text":"c"},"valueString":"urn:uuid:a"}]}`,
			`{"resourceType":"Observation","valueString":"urn:uuid:a","component":[{"code":{"text":"c"},"valueString":"urn:uuid:a"}]}`, nil},
		{"conditional", `{"resourceType":"Observation","subject":{"reference":"Patient?identifier=s|v"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/c1"}}`, nil},
		{"narrative", `{"resourceType":"Observation","text":{"div":"<div><a href=\"urn:uuid:a\">p</a><img src=\"urn:uuid:b\"/></div>"}}`,
			`{"resourceType":"Observation","text":{"div":"<div><a href=\"Patient/1\">p</a><img src=\"urn:uuid:b\"/></div>"}}`, nil},
		// XHTML attribute syntax: single or double quotes, whitespace
		// around =, other attributes before; only a's href and img's src
		// (http.html#trules), never text or another attribute's value.
		{"narrative attribute syntax", `{"resourceType":"Observation","text":{"div":"<div><a href='urn:uuid:a'>1</a><a  href = \"urn:uuid:a\">2</a><a class=\"x\" title='a > b'\nhref\t=\n'urn:uuid:a'>3</a><img alt=\"i\" src = 'urn:uuid:a' /></div>"}}`,
			`{"resourceType":"Observation","text":{"div":"<div><a href='Patient/1'>1</a><a  href = \"Patient/1\">2</a><a class=\"x\" title='a > b'\nhref\t=\n'Patient/1'>3</a><img alt=\"i\" src = 'Patient/1' /></div>"}}`, nil},
		{"narrative text and other attributes stay", `{"resourceType":"Observation","text":{"div":"<div>href=\"urn:uuid:a\" <a title=\"href='urn:uuid:a'\" href=\"urn:uuid:b\">x</a><img href=\"urn:uuid:a\" src=\"urn:uuid:b\"/><span src=\"urn:uuid:a\">y</span><!-- <a href=\"urn:uuid:a\"> --><ab href=\"urn:uuid:a\">z</ab></div>"}}`,
			`{"resourceType":"Observation","text":{"div":"<div>href=\"urn:uuid:a\" <a title=\"href='urn:uuid:a'\" href=\"urn:uuid:b\">x</a><img href=\"urn:uuid:a\" src=\"urn:uuid:b\"/><span src=\"urn:uuid:a\">y</span><!-- <a href=\"urn:uuid:a\"> --><ab href=\"urn:uuid:a\">z</ab></div>"}}`, nil},
		{"unknown urn", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:zz"}}`, "", errUnresolved},
		{"unknown urn in a contained resource", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p","generalPractitioner":[{"reference":"urn:uuid:zz"}]}]}`, "", errUnresolved},
		{"strings, markdown and codes stay",
			`{"resourceType":"Observation","status":"final","code":{"text":"urn:uuid:a","coding":[{"code":"urn:uuid:a","display":"urn:uuid:a"}]},"identifier":[{"system":"http://x/id","value":"urn:uuid:a"}],"note":[{"text":"urn:uuid:a"}],"valueString":"urn:uuid:a"}`,
			`{"resourceType":"Observation","status":"final","code":{"text":"urn:uuid:a","coding":[{"code":"urn:uuid:a","display":"urn:uuid:a"}]},"identifier":[{"system":"http://x/id","value":"urn:uuid:a"}],"note":[{"text":"urn:uuid:a"}],"valueString":"urn:uuid:a"}`, nil},
		{"masterIdentifier stays", `{"resourceType":"DocumentReference","masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:a"},"subject":{"reference":"urn:uuid:a"}}`,
			`{"resourceType":"DocumentReference","masterIdentifier":{"system":"urn:ietf:rfc:3986","value":"urn:uuid:a"},"subject":{"reference":"Patient/1"}}`, nil},
		{"a Reference's display stays", `{"resourceType":"Observation","subject":{"reference":"urn:uuid:a","display":"urn:uuid:a"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/1","display":"urn:uuid:a"}}`, nil},
		{"contained resource", `{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p","generalPractitioner":[{"reference":"urn:uuid:a"}],"identifier":[{"value":"urn:uuid:a"}]}],"subject":{"reference":"#p"}}`,
			`{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p","generalPractitioner":[{"reference":"Patient/1"}],"identifier":[{"value":"urn:uuid:a"}]}],"subject":{"reference":"#p"}}`, nil},
		// A Bundle resource's links are its own (bundle.html#references):
		// its fullUrls, the references between its entries, a urn no
		// entry of the processed Bundle has, a conditional or own-base
		// reference all stay as written.
		{"a Bundle resource stays", `{"resourceType":"Bundle","type":"document","identifier":{"system":"urn:uuid:a"},"entry":[{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Composition","subject":{"reference":"urn:uuid:zz"},"author":[{"reference":"urn:uuid:a"}],"section":[{"entry":[{"reference":"Patient?identifier=s|v"},{"reference":"http://own/fhir/Patient/3"}]}]}},{"fullUrl":"urn:uuid:zz","resource":{"resourceType":"Patient"}}]}`,
			`{"resourceType":"Bundle","type":"document","identifier":{"system":"urn:uuid:a"},"entry":[{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Composition","subject":{"reference":"urn:uuid:zz"},"author":[{"reference":"urn:uuid:a"}],"section":[{"entry":[{"reference":"Patient?identifier=s|v"},{"reference":"http://own/fhir/Patient/3"}]}]}},{"fullUrl":"urn:uuid:zz","resource":{"resourceType":"Patient"}}]}`, nil},
		{"a Bundle in Parameters stays", `{"resourceType":"Parameters","parameter":[{"name":"a","valueUri":"urn:uuid:a"},{"name":"b","resource":{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:zz"}}}]}}]}`,
			`{"resourceType":"Parameters","parameter":[{"name":"a","valueUri":"Patient/1"},{"name":"b","resource":{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:a","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:zz"}}}]}}]}`, nil},
		{"Parameters", `{"resourceType":"Parameters","parameter":[{"name":"a","valueUri":"urn:uuid:a"},{"name":"b","valueString":"urn:uuid:a"},{"name":"c","part":[{"name":"d","valueCanonical":"urn:uuid:a"},{"name":"e","valueId":"urn:uuid:a"}]},{"name":"f","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:a"}}}]}`,
			`{"resourceType":"Parameters","parameter":[{"name":"a","valueUri":"Patient/1"},{"name":"b","valueString":"urn:uuid:a"},{"name":"c","part":[{"name":"d","valueCanonical":"Patient/1"},{"name":"e","valueId":"urn:uuid:a"}]},{"name":"f","resource":{"resourceType":"Observation","subject":{"reference":"Patient/1"}}}]}`, nil},
		{"elements R4 does not define stay", `{"resourceType":"Observation","source":"urn:uuid:a","nope":{"reference":"urn:uuid:a"}}`,
			`{"resourceType":"Observation","source":"urn:uuid:a","nope":{"reference":"urn:uuid:a"}}`, nil},
		{"not a resource type", `{"resourceType":"Nope","subject":{"reference":"urn:uuid:zz"},"url":"urn:uuid:a"}`,
			`{"resourceType":"Nope","subject":{"reference":"urn:uuid:zz"},"url":"urn:uuid:a"}`, nil},
		{"conditional on the own base", `{"resourceType":"Observation","subject":{"reference":"http://own/fhir/Patient?identifier=s|v"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/c1"}}`, nil},
		{"conditional on another base stays", `{"resourceType":"Observation","subject":{"reference":"http://other/fhir/Patient?identifier=s|v"}}`,
			`{"resourceType":"Observation","subject":{"reference":"http://other/fhir/Patient?identifier=s|v"}}`, nil},
		{"literal on the own base is made relative", `{"resourceType":"Observation","subject":{"reference":"http://own/fhir/Patient/3"},"hasMember":[{"reference":"http://own/fhir/Observation/4/_history/2"}]}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/3"},"hasMember":[{"reference":"Observation/4/_history/2"}]}`, nil},
		{"literal on another base stays", `{"resourceType":"Observation","subject":{"reference":"http://other/fhir/Patient/3"}}`,
			`{"resourceType":"Observation","subject":{"reference":"http://other/fhir/Patient/3"}}`, nil},
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
	_ = json.Unmarshal([]byte(`{"resourceType":"Observation","subject":{"reference":"urn:uuid:zz"},"focus":[{"reference":"Patient?identifier=s|v"}]}`), &doc)
	if err := (Rewriter{IDs: rw.IDs}).Rewrite(doc); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(doc)
	if string(got) != `{"focus":[{"reference":"Patient?identifier=s|v"}],"resourceType":"Observation","subject":{"reference":"urn:uuid:zz"}}` {
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

// TestRewriterRelative: a relative reference (Type/id) is resolved as
// bundle.html#references says: against the base of the fullUrl of the
// entry that holds it when that is a RESTful URL, against the server's
// base (Rewriter.Base) otherwise (a urn: or no fullUrl), and the absolute
// URL found among the fullUrls is rewritten to that entry's identity
// (http.html#trules). One that names no fullUrl is left as it is.
func TestRewriterRelative(t *testing.T) {
	ids := map[string]string{
		"http://own/fhir/Patient/tempA":                 "Patient/new1",
		"http://other/r4/Patient/tempB":                 "Patient/new2",
		"http://own/fhir/Patient/putB":                  "Patient/putB",
		"urn:uuid:c0ffee00-0000-4000-8000-000000000001": "Patient/new3",
	}
	tests := []struct {
		name, fullURL, base, in, want string
	}{
		{"urn entry, server base", "urn:uuid:4444", "http://own/fhir",
			`{"resourceType":"Observation","subject":{"reference":"Patient/tempA"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/new1"}}`},
		{"no fullUrl, server base", "", "http://own/fhir",
			`{"resourceType":"Observation","subject":{"reference":"Patient/tempA"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/new1"}}`},
		{"RESTful entry, its own base", "http://other/r4/Observation/o1", "http://own/fhir",
			`{"resourceType":"Observation","subject":{"reference":"Patient/tempB"},"focus":[{"reference":"Patient/tempA"}]}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/new2"},"focus":[{"reference":"Patient/tempA"}]}`},
		{"PUT entry's fullUrl keeps its id", "http://own/fhir/Patient/putB", "http://own/fhir",
			`{"resourceType":"Patient","link":[{"other":{"reference":"Patient/tempA"},"type":"seealso"},{"other":{"reference":"Patient/putB"},"type":"seealso"}]}`,
			`{"resourceType":"Patient","link":[{"other":{"reference":"Patient/new1"},"type":"seealso"},{"other":{"reference":"Patient/putB"},"type":"seealso"}]}`},
		{"nested and contained", "http://own/fhir/Observation/o1", "",
			`{"resourceType":"Observation","contained":[{"resourceType":"Provenance","id":"p","target":[{"reference":"Patient/tempA"}],"agent":[{"who":{"reference":"Patient/tempA"}}]}],"extension":[{"url":"http://x/e","valueReference":{"reference":"Patient/tempA"}}]}`,
			`{"resourceType":"Observation","contained":[{"resourceType":"Provenance","id":"p","target":[{"reference":"Patient/new1"}],"agent":[{"who":{"reference":"Patient/new1"}}]}],"extension":[{"url":"http://x/e","valueReference":{"reference":"Patient/new1"}}]}`},
		{"no matching fullUrl stays", "urn:uuid:4444", "http://own/fhir",
			`{"resourceType":"Observation","subject":{"reference":"Patient/elsewhere"},"focus":[{"reference":"Patient/tempA/_history/1"},{"reference":"#x"},{"reference":"Patient"}]}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/elsewhere"},"focus":[{"reference":"Patient/tempA/_history/1"},{"reference":"#x"},{"reference":"Patient"}]}`},
		{"no base: relative references stay", "urn:uuid:4444", "",
			`{"resourceType":"Observation","subject":{"reference":"Patient/tempA"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/tempA"}}`},
		{"a fullUrl that is not RESTful names no base", "http://own/fhir/weird", "http://own/fhir",
			`{"resourceType":"Observation","subject":{"reference":"Patient/tempA"}}`,
			`{"resourceType":"Observation","subject":{"reference":"Patient/tempA"}}`},
		{"data and uri elements are not references", "urn:uuid:4444", "http://own/fhir",
			`{"resourceType":"Observation","identifier":[{"system":"Patient/tempA","value":"Patient/tempA"}],"code":{"text":"Patient/tempA"}}`,
			`{"resourceType":"Observation","identifier":[{"system":"Patient/tempA","value":"Patient/tempA"}],"code":{"text":"Patient/tempA"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc, want any
			if err := json.Unmarshal([]byte(tc.in), &doc); err != nil {
				t.Fatal(err)
			}
			_ = json.Unmarshal([]byte(tc.want), &want)
			rw := Rewriter{IDs: ids, FullURL: tc.fullURL, Base: tc.base}
			if err := rw.Rewrite(doc); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(doc, want) {
				got, _ := json.Marshal(doc)
				t.Errorf("Rewrite(%s) in entry %q on base %q = %s, want %s", tc.in, tc.fullURL, tc.base, got, tc.want)
			}
		})
	}
}

// FuzzNarrative: the narrative's links are read from any text without
// panicking, and text that names no fullUrl comes back as it was.
func FuzzNarrative(f *testing.F) {
	for _, s := range []string{`<div><a href='urn:uuid:a'>x</a></div>`, `<div><img  src = "urn:uuid:a"/></div>`,
		`<div><!-- <a href="urn:uuid:a"> --></div>`, `<a href=`, `<a href='`, `<![CDATA[`, `<img src="urn:uuid:a`, `<`} {
		f.Add(s)
	}
	rw := Rewriter{IDs: map[string]string{"urn:uuid:a": "Patient/1"}}
	f.Fuzz(func(t *testing.T, div string) {
		got := rw.narrative(div)
		if !strings.Contains(div, "urn:uuid:a") && got != div {
			t.Errorf("narrative(%q) = %q, want it unchanged", div, got)
		}
	})
}

// TestRewriterErrorPath: a link Rewrite cannot resolve fails it with a
// *LinkError whose Path is the FHIRPath of that element, as schemas/r4
// writes issue expressions: array indexes, ofType for a nested resource.
func TestRewriterErrorPath(t *testing.T) {
	errNo := errors.New("unresolved")
	rw := Rewriter{IDs: map[string]string{"urn:uuid:a": "Patient/1"}, Unresolved: errNo,
		Conditional: func(string, string) (string, error) { return "", errNo }}
	for _, tc := range []struct{ in, want string }{
		{`{"resourceType":"Observation","subject":{"reference":"urn:uuid:zz"}}`, "Observation.subject.reference"},
		{`{"resourceType":"Observation","focus":[{"reference":"urn:uuid:a"},{"reference":"Patient?identifier=s|v"}]}`, "Observation.focus[1].reference"},
		{`{"resourceType":"Observation","extension":[{"url":"http://x/e","valueString":"v"},{"url":"http://x/f","valueReference":{"reference":"urn:uuid:zz"}}]}`,
			"Observation.extension[1].valueReference.reference"},
		{`{"resourceType":"Observation","contained":[{"resourceType":"Patient","id":"p"},{"resourceType":"Provenance","id":"q","target":[{"reference":"urn:uuid:zz"}]}]}`,
			"Observation.contained[1].ofType(Provenance).target[0].reference"},
		{`{"resourceType":"Parameters","parameter":[{"name":"a","resource":{"resourceType":"Observation","subject":{"reference":"urn:uuid:zz"}}}]}`,
			"Parameters.parameter[0].resource.ofType(Observation).subject.reference"},
	} {
		var doc any
		if err := json.Unmarshal([]byte(tc.in), &doc); err != nil {
			t.Fatal(err)
		}
		var le *LinkError
		if err := rw.Rewrite(doc); !errors.As(err, &le) || le.Path != tc.want || !errors.Is(err, errNo) {
			t.Errorf("Rewrite(%s) = %v, want a LinkError at %s", tc.in, err, tc.want)
		}
	}
}

// TestRewriterVersionedAndRefused: a version-specific reference names the
// entry whose fullUrl its versionless part is: rewritten to that identity
// and version when the entry keeps the Type/id its fullUrl names, Versioned
// otherwise (a urn, a fullUrl whose resource got another id). A reference
// naming a fullUrl of Refused, as written or made absolute, is RefusedErr.
func TestRewriterVersionedAndRefused(t *testing.T) {
	errVersioned, errRefused := errors.New("versioned"), errors.New("refused")
	rw := Rewriter{
		IDs: map[string]string{"http://own/fhir/Patient/tempA": "Patient/new1", "http://other/r4/Patient/keep": "Patient/keep",
			"urn:uuid:a": "Patient/new2"},
		Base: "http://own/fhir", FullURL: "urn:uuid:holder", Versioned: errVersioned,
	}
	for _, tc := range []struct {
		ref, want string
		err       error
	}{
		{"Patient/tempA/_history/1", "", errVersioned},
		{"http://own/fhir/Patient/tempA/_history/2", "", errVersioned},
		{"urn:uuid:a/_history/1", "", errVersioned},
		{"http://other/r4/Patient/keep/_history/3", "Patient/keep/_history/3", nil},
		{"Patient/elsewhere/_history/3", "Patient/elsewhere/_history/3", nil},
		{"Patient/tempA/_history/", "Patient/tempA/_history/", nil},
	} {
		got, err := rw.reference(tc.ref)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("reference(%s) = %q, %v; want %q, %v", tc.ref, got, err, tc.want, tc.err)
		}
	}
	chk := Rewriter{Refused: map[string]bool{"http://own/fhir/Patient/tmpB": true, "urn:uuid:b": true}, RefusedErr: errRefused,
		Base: "http://own/fhir", FullURL: "urn:uuid:holder"}
	for _, tc := range []struct {
		fullURL, ref string
		err          error
	}{
		{"urn:uuid:holder", "Patient/tmpB", errRefused},
		{"urn:uuid:holder", "http://own/fhir/Patient/tmpB", errRefused},
		{"urn:uuid:holder", "urn:uuid:b", errRefused},
		{"http://other/r4/Observation/o", "Patient/tmpB", nil}, // relative to the other base
		{"urn:uuid:holder", "Patient/other", nil},
	} {
		chk.FullURL = tc.fullURL
		if got, err := chk.reference(tc.ref); !errors.Is(err, tc.err) || tc.err == nil && got != tc.ref {
			t.Errorf("reference(%s) from %s = %q, %v; want it kept or %v", tc.ref, tc.fullURL, got, err, tc.err)
		}
	}
}
