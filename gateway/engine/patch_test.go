package engine

import (
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// patchPatient is the resource TestFHIRPathPatch patches.
const patchPatient = `{"resourceType":"Patient","id":"p1",` +
	`"identifier":[{"system":"http://hospital.example/mrn","value":"M1"},{"system":"http://clinic.example/id","value":"C1"},` +
	`{"system":"http://clinic.example/id","value":"C2","period":{"start":"2020-01-01"}}],` +
	`"active":true,` +
	`"name":[{"use":"official","family":"Doe","given":["Ann","Beth"]},{"use":"nickname","given":["Annie"]}],` +
	`"telecom":[{"system":"phone","use":"home","value":"555-0100","rank":1},{"system":"phone","use":"work","value":"555-0101","rank":2},` +
	`{"system":"email","use":"home","value":"a@example.org"}],` +
	`"multipleBirthInteger":2,` +
	`"communication":[{"language":{"text":"en"},"preferred":true},{"language":{"text":"fr"},"preferred":false}],` +
	`"contact":[{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"C"}]}],"name":{"family":"Roe"}},` +
	`{"relationship":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0131","code":"E"}]}],"name":{"family":"Poe"}}]}`

// fpOperation is one operation parameter of a FHIRPath Patch: its type,
// its path, then further parts as JSON.
func fpOperation(typ, path string, parts ...string) string {
	q, _ := fhirwire.Marshal(path)
	return `{"name":"operation","part":[{"name":"type","valueCode":"` + typ + `"},{"name":"path","valueString":` + string(q) + `}` +
		strings.Join(append([]string{""}, parts...), ",") + `]}`
}

// TestFHIRPathPatch: the paths of a FHIRPath Patch select elements by
// position and by value (where() with equalities joined by and); an
// operation that needs one element and is given a path selecting several
// is patch-path-multiple, a path outside the subset patch-path-unsupported
// naming the path part, and neither quotes the path.
func TestFHIRPathPatch(t *testing.T) {
	v := NewValidator()
	for _, tc := range []struct {
		name string
		ops  []string
		// want are substrings of the patched resource, gone substrings it
		// no longer has.
		want, gone []string
		rule, expr string
	}{
		{name: "replace the value of the identifier of a system",
			ops:  []string{fpOperation("replace", "Patient.identifier.where(system='http://hospital.example/mrn').value", `{"name":"value","valueString":"M9"}`)},
			want: []string{`{"system":"http://hospital.example/mrn","value":"M9"}`}, gone: []string{`"M1"`}},
		{name: "two criteria joined by and, whitespace around =",
			ops:  []string{fpOperation("delete", "Patient.telecom.where(system = 'phone' and use = 'home')")},
			want: []string{`"555-0101"`, `"a@example.org"`}, gone: []string{`"555-0100"`}},
		{name: "a nested path inside where",
			ops:  []string{fpOperation("replace", "Patient.contact.where(relationship.coding.code='E').name.family", `{"name":"value","valueString":"Zoe"}`)},
			want: []string{`"family":"Roe"`, `"family":"Zoe"`}, gone: []string{`"Poe"`}},
		{name: "$this selects a primitive",
			ops:  []string{fpOperation("delete", "Patient.name.given.where($this='Beth')")},
			want: []string{`"given":["Ann"]`, `"Annie"`}, gone: []string{`"Beth"`}},
		{name: "an integer literal",
			ops:  []string{fpOperation("replace", "Patient.telecom.where(rank=2).use", `{"name":"value","valueCode":"mobile"}`)},
			want: []string{`"use":"mobile","value":"555-0101"`}},
		{name: "a decimal literal equals an integer by value",
			ops:  []string{fpOperation("delete", "Patient.telecom.where(rank=1.0)")},
			gone: []string{`"555-0100"`}},
		{name: "a boolean literal",
			ops:  []string{fpOperation("delete", "Patient.communication.where(preferred=false)")},
			want: []string{`"en"`}, gone: []string{`"fr"`}},
		{name: "a code literal",
			ops:  []string{fpOperation("replace", "Patient.name.where(use='official').family", `{"name":"value","valueString":"Smith"}`)},
			want: []string{`"family":"Smith"`}},
		{name: "where then an index",
			ops:  []string{fpOperation("replace", "Patient.identifier.where(system='http://clinic.example/id')[1].value", `{"name":"value","valueString":"C3"}`)},
			want: []string{`"C1"`, `"C3"`}, gone: []string{`"C2"`}},
		{name: "where then first() and last()",
			ops: []string{fpOperation("delete", "Patient.identifier.where(system='http://clinic.example/id').last().period"),
				fpOperation("replace", "Patient.identifier.where(system='http://clinic.example/id').first().value", `{"name":"value","valueString":"C0"}`)},
			want: []string{`"C0"`, `"C2"`}, gone: []string{`"period"`, `"C1"`}},
		{name: "where inside where",
			ops:  []string{fpOperation("delete", "Patient.contact.where(relationship.where(coding.code='C').coding.system='http://terminology.hl7.org/CodeSystem/v2-0131')")},
			want: []string{`"Poe"`}, gone: []string{`"Roe"`}},
		{name: "a literal on the left, an escaped quote in a string",
			ops:  []string{fpOperation("delete", `Patient.name.where('O\'Hara' = family)`), fpOperation("delete", `Patient.name.where('nickname' = use)`)},
			want: []string{`"Ann"`}, gone: []string{`"Annie"`}},
		{name: "add below an element selected by value",
			ops:  []string{fpOperation("add", "Patient.identifier.where(value='M1')", `{"name":"name","valueString":"use"}`, `{"name":"value","valueCode":"official"}`)},
			want: []string{`"use":"official","value":"M1"`}},
		{name: "insert into a list below an element selected by value",
			ops:  []string{fpOperation("insert", "Patient.name.where(use='nickname').given", `{"name":"index","valueInteger":0}`, `{"name":"value","valueString":"Nan"}`)},
			want: []string{`"given":["Nan","Annie"]`}},
		{name: "a delete that selects nothing changes nothing",
			ops:  []string{fpOperation("delete", "Patient.telecom.where(system='fax')")},
			want: []string{`"555-0100"`, `"555-0101"`, `"a@example.org"`}},
		{name: "a path inside where that selects several values matches nothing (FHIRPath =)",
			ops:  []string{fpOperation("delete", "Patient.name.where(given='Ann')")},
			want: []string{`"Ann","Beth"`}},
		{name: "a string does not equal a number",
			ops:  []string{fpOperation("delete", "Patient.telecom.where(rank='1')")},
			want: []string{`"555-0100"`}},
		{name: "plain paths still resolve",
			ops:  []string{fpOperation("replace", "Patient.name[1].given[0]", `{"name":"value","valueString":"Anny"}`), fpOperation("delete", "Patient.name.first().given.last()")},
			want: []string{`"given":["Ann"]`, `"Anny"`}},

		{name: "delete of several", ops: []string{fpOperation("delete", "Patient.telecom.where(use='home')")},
			rule: "patch-path-multiple", expr: "Parameters.parameter[0].part[1]"},
		{name: "replace of several", ops: []string{fpOperation("replace", "Patient.identifier.where(system='http://clinic.example/id').value", `{"name":"value","valueString":"X"}`)},
			rule: "patch-path-multiple", expr: "Parameters.parameter[0].part[1]"},
		{name: "add below several", ops: []string{fpOperation("add", "Patient.telecom.where(system='phone')", `{"name":"name","valueString":"period"}`, `{"name":"value","valuePeriod":{"start":"2020"}}`)},
			rule: "patch-path-multiple", expr: "Parameters.parameter[0].part[1]"},
		{name: "insert below several", ops: []string{fpOperation("insert", "Patient.name.given", `{"name":"index","valueInteger":0}`, `{"name":"value","valueString":"X"}`)},
			rule: "patch-path-multiple", expr: "Parameters.parameter[0].part[1]"},
		{name: "replace of nothing", ops: []string{fpOperation("replace", "Patient.telecom.where(system='fax').value", `{"name":"value","valueString":"X"}`)},
			rule: "patch-path-unresolved", expr: "Parameters.parameter[0].part[1]"},
		{name: "or", ops: []string{fpOperation("delete", "Patient.telecom.where(system='fax' or use='work')")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "!=", ops: []string{fpOperation("delete", "Patient.telecom.where(system!='fax')")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "another function", ops: []string{fpOperation("delete", "Patient.telecom.where(value.startsWith('555'))")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "exists()", ops: []string{fpOperation("delete", "Patient.telecom.where(period.exists())")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "resolve()", ops: []string{fpOperation("delete", "Patient.managingOrganization.resolve().name")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "an unclosed string", ops: []string{fpOperation("delete", "Patient.telecom.where(system='phone)")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "an unclosed where", ops: []string{fpOperation("delete", "Patient.telecom.where(system='phone'")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "a criterion without =", ops: []string{fpOperation("delete", "Patient.telecom.where(system)")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "two literals", ops: []string{fpOperation("delete", "Patient.telecom.where('a'='a')")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "another resource type", ops: []string{fpOperation("delete", "Observation.status")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "where on the resource", ops: []string{fpOperation("delete", "Patient.where(active=true).name")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "a negative index", ops: []string{fpOperation("delete", "Patient.name[-1]")},
			rule: "patch-path-unsupported", expr: "Parameters.parameter[0].part[1]"},
		{name: "meta through where", ops: []string{fpOperation("delete", "Patient.meta.where(versionId='1')")},
			rule: "patch-server-owned", expr: "Parameters.parameter[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			params, err := decodeJSON([]byte(`{"resourceType":"Parameters","parameter":[` + strings.Join(tc.ops, ",") + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			p, err := parseFHIRPathPatch(params)
			if err != nil {
				t.Fatalf("parseFHIRPathPatch = %v", err)
			}
			doc, err := decodeJSON([]byte(patchPatient))
			if err != nil {
				t.Fatal(err)
			}
			doc, err = p.apply("Patient", doc, v, 1<<30)
			if tc.rule != "" {
				_, issues := outcome.From(err)
				if err == nil || len(issues) != 1 || issues[0].Rule != tc.rule || issues[0].Expression != tc.expr {
					t.Fatalf("apply = %v %+v, want %s at %s", err, issues, tc.rule, tc.expr)
				}
				for _, quoted := range []string{"phone", "clinic.example", "fax", "555", "Beth", "versionId"} {
					if strings.Contains(issues[0].Message, quoted) {
						t.Errorf("the message quotes the path (%s): %s", quoted, issues[0].Message)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("apply = %v", err)
			}
			raw, _ := fhirwire.Marshal(doc)
			for _, w := range tc.want {
				if !strings.Contains(string(raw), w) {
					t.Errorf("patched = %s, want %s in it", raw, w)
				}
			}
			for _, g := range tc.gone {
				if strings.Contains(string(raw), g) {
					t.Errorf("patched = %s, want no %s in it", raw, g)
				}
			}
		})
	}
}

// TestPatchPathUnsupportedSays: the refusal of a path outside the subset
// says where (a character offset) and what the subset is.
func TestPatchPathUnsupportedSays(t *testing.T) {
	params, _ := decodeJSON([]byte(`{"resourceType":"Parameters","parameter":[` + fpOperation("delete", "Patient.telecom.where(value.startsWith('555'))") + `]}`))
	p, err := parseFHIRPathPatch(params)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := decodeJSON([]byte(patchPatient))
	_, err = p.apply("Patient", doc, NewValidator(), 1<<30)
	_, issues := outcome.From(err)
	if len(issues) != 1 {
		t.Fatalf("apply = %v", err)
	}
	for _, want := range []string{"at character 29", "a function other than first(), last() and where()", "a path is Patient, then element names",
		"[n], first(), last() or where(criteria)", "joined by and", "$this", "'string', true, false, an integer or a decimal"} {
		if !strings.Contains(issues[0].Message, want) {
			t.Errorf("message %q does not say %q", issues[0].Message, want)
		}
	}
}

// FuzzPatchPath: any path parses to a path or to a pathError, never
// panics; a parsed path renders to one that parses to the same path; and
// resolving it, or deleting and replacing what it selects, never panics.
func FuzzPatchPath(f *testing.F) {
	for _, s := range []string{
		"Patient.name[0].given", "Patient.name.first().given.last()",
		"Patient.identifier.where(system='http://hospital.example/mrn').value",
		"Patient.telecom.where(system = 'phone' and use = 'home')",
		"Patient.contact.where(relationship.where(coding.code='C').coding.system='x')",
		`Patient.name.given.where($this='O\'Hara\u00e9')`, "Patient.telecom.where(rank=-1.50)[0]",
		"Patient.communication.where(true = preferred)", "Patient.telecom.where(value.startsWith('5'))",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		p, err := parsePatchPath("Patient", path)
		if err != nil {
			var pe *pathError
			if !errors.As(err, &pe) {
				t.Fatalf("parsePatchPath(%q) = %v, want a *pathError", path, err)
			}
			return
		}
		r1 := renderPath("Patient", p)
		p2, err := parsePatchPath("Patient", r1)
		if err != nil {
			t.Fatalf("parsePatchPath(%q) (rendered from %q) = %v", r1, path, err)
		}
		if r2 := renderPath("Patient", p2); r2 != r1 {
			t.Fatalf("%q renders as %q, which renders as %q", path, r1, r2)
		}
		doc, _ := decodeJSON([]byte(patchPatient))
		resolvePath(doc, p)
		if len(p) == 0 || p[0].name == "id" || p[0].name == "meta" {
			return
		}
		for _, op := range []string{fpOperation("delete", path), fpOperation("replace", path, `{"name":"value","valueString":"x"}`)} {
			params, _ := decodeJSON([]byte(`{"resourceType":"Parameters","parameter":[` + op + `]}`))
			fp, err := parseFHIRPathPatch(params)
			if err != nil {
				t.Fatal(err)
			}
			doc, _ := decodeJSON([]byte(patchPatient))
			if _, err := fp.apply("Patient", doc, fuzzValidator, 1<<30); err != nil {
				if kind, _ := outcome.From(err); kind != outcome.Invalid {
					t.Fatalf("apply %q = %v, want Invalid", path, err)
				}
			}
		}
	})
}

var fuzzValidator = NewValidator()

// renderPath writes a parsed path back as FHIRPath.
func renderPath(typ string, p []pathOp) string {
	var b strings.Builder
	b.WriteString(typ)
	renderOps(&b, p)
	return b.String()
}

func renderOps(b *strings.Builder, p []pathOp) {
	for _, op := range p {
		switch op.kind {
		case opMember:
			b.WriteString("." + op.name)
		case opIndex:
			fmt.Fprintf(b, "[%d]", op.n)
		case opFirst:
			b.WriteString(".first()")
		case opLast:
			b.WriteString(".last()")
		case opWhere:
			b.WriteString(".where(")
			for i, eq := range op.where {
				if i > 0 {
					b.WriteString(" and ")
				}
				if len(eq.path) == 0 {
					b.WriteString("$this")
				} else {
					var sub strings.Builder
					renderOps(&sub, eq.path)
					b.WriteString(strings.TrimPrefix(sub.String(), "."))
				}
				b.WriteString(" = ")
				switch l := eq.lit; {
				case l.str != nil:
					b.WriteString("'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(*l.str) + "'")
				case l.bool != nil:
					fmt.Fprint(b, *l.bool)
				default:
					for k := 0; k <= 64; k++ {
						if r, _ := new(big.Rat).SetString(l.num.FloatString(k)); r.Cmp(l.num) == 0 {
							b.WriteString(l.num.FloatString(k))
							break
						}
					}
				}
			}
			b.WriteString(")")
		}
	}
}

// TestEntryPatch: a PATCH entry's Binary must carry a JSON Patch
// (contentType application/json-patch+json, parameters allowed); a refusal
// says what the entry has and what it needs, at the entry's element.
func TestEntryPatch(t *testing.T) {
	data := `"W3sib3AiOiJyZW1vdmUiLCJwYXRoIjoiL2dlbmRlciJ9XQ=="` // [{"op":"remove","path":"/gender"}]
	for _, tc := range []struct {
		name, resource string
		expr           string
		says           []string
	}{
		{name: "json patch", resource: `{"resourceType":"Binary","contentType":"application/json-patch+json","data":` + data + `}`},
		{name: "json patch with a charset", resource: `{"resourceType":"Binary","contentType":"application/json-patch+json; charset=utf-8","data":` + data + `}`},
		{name: "fhirpath patch", resource: `{"resourceType":"Parameters","parameter":[` + fpOperation("delete", "Patient.gender") + `]}`},
		{name: "another media type", resource: `{"resourceType":"Binary","contentType":"text/plain","data":` + data + `}`,
			expr: "Bundle.entry[3].resource.ofType(Binary).contentType",
			says: []string{"has contentType text/plain", "needs contentType application/json-patch+json"}},
		{name: "a media type's parameters are not quoted", resource: `{"resourceType":"Binary","contentType":"application/json; x=SECRET7","data":` + data + `}`,
			expr: "Bundle.entry[3].resource.ofType(Binary).contentType",
			says: []string{"has contentType application/json;", "needs contentType application/json-patch+json"}},
		{name: "not a media type", resource: `{"resourceType":"Binary","contentType":"SECRET7","data":` + data + `}`,
			expr: "Bundle.entry[3].resource.ofType(Binary).contentType",
			says: []string{"has a contentType that is not a media type", "needs contentType application/json-patch+json"}},
		{name: "no data", resource: `{"resourceType":"Binary","contentType":"application/json-patch+json"}`,
			expr: "Bundle.entry[3].resource.ofType(Binary).data", says: []string{"has no data", "base64"}},
		{name: "data not base64", resource: `{"resourceType":"Binary","contentType":"application/json-patch+json","data":"SECRET7!"}`,
			expr: "Bundle.entry[3].resource.ofType(Binary).data", says: []string{"has data that is not base64"}},
		{name: "another resource", resource: `{"resourceType":"Patient"}`,
			expr: "Bundle.entry[3].resource", says: []string{"a Binary (JSON Patch) or a Parameters resource (FHIRPath Patch)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := decodeJSON([]byte(tc.resource))
			if err != nil {
				t.Fatal(err)
			}
			_, err = (&Engine{}).entryPatch(doc, "Bundle.entry[3].resource")
			if tc.expr == "" {
				if err != nil {
					t.Fatalf("entryPatch = %v", err)
				}
				return
			}
			_, issues := outcome.From(err)
			if len(issues) != 1 || issues[0].Rule != "patch-invalid" || issues[0].Expression != tc.expr {
				t.Fatalf("entryPatch = %+v, want patch-invalid at %s", issues, tc.expr)
			}
			for _, s := range tc.says {
				if !strings.Contains(issues[0].Message, s) {
					t.Errorf("message %q does not say %q", issues[0].Message, s)
				}
			}
			if strings.Contains(strings.ToLower(issues[0].Message), "secret7") {
				t.Errorf("message quotes the resource: %s", issues[0].Message)
			}
		})
	}
}

// TestFHIRPathPatchAddUnderChoice: add finds the element named below a
// choice element, whether the path names it by its base name (value) or
// by its JSON key (valueQuantity), in a backbone element too, and in an
// extension's value.
func TestFHIRPathPatchAddUnderChoice(t *testing.T) {
	v := NewValidator()
	const obs = `{"resourceType":"Observation","status":"final","code":{"text":"a"},"valueQuantity":{"value":5,"unit":"g"},` +
		`"effectivePeriod":{"start":"2024-01-01"},"component":[{"code":{"text":"c"},"valueQuantity":{"value":1}}],` +
		`"extension":[{"url":"http://ex/b","valueCodeableConcept":{"text":"B"}}]}`
	for _, tc := range []struct {
		path, name, value, want string
	}{
		{"Observation.valueQuantity", "comparator", `{"name":"value","valueCode":"<"}`, `"valueQuantity":{"comparator":"<","unit":"g","value":5}`},
		{"Observation.value", "code", `{"name":"value","valueCode":"g"}`, `"valueQuantity":{"code":"g","unit":"g","value":5}`},
		{"Observation.effectivePeriod", "end", `{"name":"value","valueDateTime":"2024-02-01"}`, `"effectivePeriod":{"end":"2024-02-01","start":"2024-01-01"}`},
		{"Observation.component[0].valueQuantity", "unit", `{"name":"value","valueString":"mg"}`, `"valueQuantity":{"unit":"mg","value":1}`},
		{"Observation.extension.where(url='http://ex/b').value", "coding", `{"name":"value","valueCoding":{"code":"y"}}`, `"valueCodeableConcept":{"coding":[{"code":"y"}],"text":"B"}`},
	} {
		t.Run(tc.path+" "+tc.name, func(t *testing.T) {
			params, err := decodeJSON([]byte(`{"resourceType":"Parameters","parameter":[` +
				fpOperation("add", tc.path, `{"name":"name","valueString":"`+tc.name+`"}`, tc.value) + `]}`))
			if err != nil {
				t.Fatal(err)
			}
			p, err := parseFHIRPathPatch(params)
			if err != nil {
				t.Fatal(err)
			}
			doc, err := decodeJSON([]byte(obs))
			if err != nil {
				t.Fatal(err)
			}
			if doc, err = p.apply("Observation", doc, v, 1<<30); err != nil {
				t.Fatalf("apply = %v", err)
			}
			b, _ := fhirwire.Marshal(doc)
			if !strings.Contains(string(b), tc.want) {
				t.Errorf("patched = %s, want it to hold %s", b, tc.want)
			}
		})
	}
}

// TestJSONPatchDepth: a JSON Patch nesting deeper than FHIR's 100 levels
// is refused as json-depth, as any other body is, at 150 levels and at
// 100,000 (where Go's decoder gives up first, and the patch was refused as
// "not a JSON array of operations": p14 F5); brackets inside strings do
// not count.
func TestJSONPatchDepth(t *testing.T) {
	nested := func(n int) string {
		return `[{"op":"add","path":"/extension","value":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}]`
	}
	for _, tc := range []struct {
		name, body, rule string
	}{
		{"100,000 levels", nested(100000), "json-depth"},
		{"150 levels", nested(150), "json-depth"},
		{"50 levels", nested(50), ""},
		{"brackets in a string", `[{"op":"add","path":"/x","value":"` + strings.Repeat(`[{\"`, 200) + `"}]`, ""},
		{"not an array", `{"op":"add"}`, "patch-invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseJSONPatch([]byte(tc.body))
			if got := rule(err); got != tc.rule {
				t.Errorf("parseJSONPatch = %v, want rule %q", err, tc.rule)
			}
		})
	}
}
