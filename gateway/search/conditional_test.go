package search

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseConditional(t *testing.T) {
	tests := []struct {
		rt, query string
		want      []Clause
	}{
		{"Patient", "identifier=http://x|123", []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "http://x", Code: "123", HasSystem: true}}}}},
		{"Patient", "?identifier=http%3A%2F%2Fx%7C123", []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "http://x", Code: "123", HasSystem: true}}}}},
		// DECISIONS 4: escaped \| in If-None-Exist.
		{"Patient", `identifier=https://ketamine-gateway.org/fhir/sid/x|a\|b`, []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "https://ketamine-gateway.org/fhir/sid/x", Code: "a|b", HasSystem: true}}}}},
		{"Patient", `identifier=http://x|a%5C%7Cb`, []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "http://x", Code: "a|b", HasSystem: true}}}}},
		// Issue 13 item 7: the Type?criteria form, as HAPI accepts it.
		{"Patient", "Patient?identifier=http://x|123", []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "http://x", Code: "123", HasSystem: true}}}}},
		{"Patient", "identifier=http://x|a?b", []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "http://x", Code: "a?b", HasSystem: true}}}}},
		// #18: the server's own absolute URL of the search.
		{"Patient", "http://gw.example/fhir/Patient?identifier=http://x|123", []Clause{{Param: "identifier", Type: TypeToken,
			Values: []Value{{System: "http://x", Code: "123", HasSystem: true}}}}},
		{"Observation", "_id=o1&subject=http://gw.example/fhir/Patient/p1", []Clause{
			{Param: "_id", Type: TypeToken, Values: []Value{{Code: "o1"}}},
			{Param: "subject", Type: TypeReference, Values: []Value{{RefType: "Patient", RefID: "p1"}}}}},
		{"Observation", "_id=o1&subject=Patient/p1", []Clause{
			{Param: "_id", Type: TypeToken, Values: []Value{{Code: "o1"}}},
			{Param: "subject", Type: TypeReference, Values: []Value{{RefType: "Patient", RefID: "p1"}}}}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := Limits{Base: testBase}.ParseConditional(tt.rt, tt.query)
			if err != nil {
				t.Fatalf("ParseConditional(%s, %q): %v", tt.rt, tt.query, err)
			}
			if !reflect.DeepEqual(q.Clauses, tt.want) {
				t.Errorf("ParseConditional(%s, %q) = %+v, want %+v", tt.rt, tt.query, q.Clauses, tt.want)
			}
		})
	}
}

func TestParseConditionalErrors(t *testing.T) {
	tests := []struct{ query, rule string }{
		{"", RuleValueInvalid},
		{"?", RuleValueInvalid},
		{"identifier=", RuleValueInvalid},
		{"family=-", RuleValueInvalid},
		{"family=-&given=*", RuleValueInvalid},
		{"identifier=x&family=,", RuleValueInvalid},
		{"identifier=x&name:contains=%E2%80%8B", RuleValueInvalid},
		{"identifier=%zz", RuleValueInvalid},
		{"identifier=SECRET7%", RuleValueInvalid},
		{"family=%FF", RuleValueInvalid},
		{"family=SECRET7%C3%28", RuleValueInvalid},
		{"fam%FFily=SECRET7", RuleValueInvalid},
		{"identifier=x;y=z", RuleValueInvalid},
		{"_count=1&identifier=x", RuleParamUnsupported},
		{"identifier=x&_sort=_id", RuleParamUnsupported},
		{"identifier=x&_include=Patient:link", RuleParamUnsupported},
		{"identifier=x&_format=json", RuleParamUnsupported},
		{"identifier=x&foo=SECRET7", RuleParamUnknown},
		{"name.family=SECRET7", RuleChainUnsupported},
		{"identifier=a|b|SECRET7", RuleValueInvalid},
		{"Observation?identifier=x", RuleTypeMismatch},
		{"SECRET7?identifier=x", RuleTypeMismatch},
		{"http://gw.example/fhir/Observation?identifier=x", RuleTypeMismatch},
		{"http://SECRET7/fhir/Patient?identifier=x", RuleValueInvalid},
		{"http://gw.example/fhir2/Patient?identifier=x", RuleValueInvalid},
		{"http://gw.example/fhir/SECRET7/Patient?identifier=x", RuleValueInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			q, err := Limits{Base: testBase}.ParseConditional("Patient", tt.query)
			var se *Error
			if !errors.As(err, &se) || q != nil {
				t.Fatalf("ParseConditional(%q) = %+v, %v; want *Error %s", tt.query, q, err, tt.rule)
			}
			if se.Rule != tt.rule {
				t.Errorf("ParseConditional(%q) rule = %s, want %s (%s)", tt.query, se.Rule, tt.rule, se.Message)
			}
			if strings.Contains(se.Message, "SECRET7") {
				t.Errorf("ParseConditional(%q) message quotes the value: %s", tt.query, se.Message)
			}
		})
	}
	if _, err := ParseConditional("Nope", "identifier=x"); err == nil {
		t.Error("ParseConditional of an unknown type succeeded")
	}
}

func TestKey(t *testing.T) {
	key := func(rt, query string) string {
		t.Helper()
		q, err := ParseConditional(rt, query)
		if err != nil {
			t.Fatalf("ParseConditional(%s, %q): %v", rt, query, err)
		}
		return Key(rt, q)
	}
	exact := []struct{ rt, query, want string }{
		{"Patient", "identifier=http://x|123", "Patient?identifier=http://x|123"},
		{"Patient", `identifier=sys|a\|b`, `Patient?identifier=sys|a\|b`},
		{"Patient", `identifier=a\,b`, `Patient?identifier=a\,b`},
		{"Patient", "family=M%C3%BCller&identifier=|x", "Patient?family=muller&identifier=|x"},
		{"Patient", "birthdate=2026", "Patient?birthdate=eq2026-01-01T00:00:00.000Z/2026-12-31T23:59:59.999Z"},
		{"Observation", "subject:Patient=1", "Observation?subject=Patient/1"},
		{"Observation", "subject:Patient=urn:uuid:1", "Observation?subject=Patient|urn:uuid:1"},
		{"Observation", "value-quantity=5.4|http://u|mg", "Observation?value-quantity=eq5.4~0.05|http://u|mg"},
		{"Observation", "code:missing=true", "Observation?code:missing=true"},
	}
	for _, tt := range exact {
		if got := key(tt.rt, tt.query); got != tt.want {
			t.Errorf("Key(%s?%s) = %q, want %q", tt.rt, tt.query, got, tt.want)
		}
	}
	same := []struct{ rt, a, b string }{
		{"Patient", "identifier=http://x|123", "?identifier=http%3A%2F%2Fx%7C123"},
		{"Patient", "identifier=b,a", "identifier=a,b,a"},
		{"Patient", "identifier=x&family=Smith", "family=SMITH&identifier=x"},
		{"Patient", "family=Jos%C3%A9", "family=jose"},
		{"Patient", "identifier=x&identifier=x", "identifier=x"},
		{"Patient", "birthdate=2026", "birthdate=eq2026"},
		{"Patient", `identifier=sys|a\|b`, `identifier=sys|a%5C%7Cb`},
		{"Observation", "subject=Patient/1", "subject:Patient=1"},
		{"Observation", "patient=1", "patient=Patient/1/_history/3"},
		{"Observation", "date=ge2026&date=le2027", "date=le2027&date=ge2026"},
		{"Observation", "value-quantity=5.4|http://u|mg", "value-quantity=eq5.4|http://u|mg"},
		{"Observation", "code:text=Blood%20Pressure", "code:text=blood+pressure"},
	}
	for _, tt := range same {
		if ka, kb := key(tt.rt, tt.a), key(tt.rt, tt.b); ka != kb {
			t.Errorf("Key(%s) = %q != Key(%s) = %q", tt.a, ka, tt.b, kb)
		}
	}
	differ := []struct{ rt, a, b string }{
		{"Patient", "identifier=a|b", `identifier=a\|b`},
		{"Patient", "identifier=x", "identifier=|x"},
		{"Patient", "family:exact=Smith", "family:exact=SMITH"},
		{"Patient", "family:exact=Smith", "family=Smith"},
		{"Patient", "birthdate=2026", "birthdate=2026-01"},
		{"Patient", "birthdate=ge2026", "birthdate=2026"},
		{"Patient", "identifier=a,b", "identifier=a&identifier=b"},
		{"Observation", "value-quantity=5.4", "value-quantity=5.40"},
		{"Observation", "subject=1", "subject=Patient/1"},
		{"Patient", "identifier=x", "_id=x"},
		// A URL's :Type is in its value's key.
		{"Observation", "subject:Patient=urn:uuid:1", "subject:Group=urn:uuid:1"},
		{"Observation", "subject:Patient=urn:uuid:1", "subject=urn:uuid:1"},
	}
	for _, tt := range differ {
		if ka, kb := key(tt.rt, tt.a), key(tt.rt, tt.b); ka == kb {
			t.Errorf("Key(%s) == Key(%s) = %q, want different", tt.a, tt.b, ka)
		}
	}
	if got := Key("Patient", nil); got != "Patient?" {
		t.Errorf("Key(nil) = %q", got)
	}
}

func TestSatisfies(t *testing.T) {
	doc := map[string]any{"resourceType": "Patient", "id": "p1", "gender": "female",
		"identifier": []any{map[string]any{"system": "http://x", "value": "1"}, map[string]any{"value": "bare"}}}
	entries := Extract("Patient", doc)
	tests := []struct {
		criteria string
		want     bool
	}{
		{"identifier=http://x|1", true},
		{"identifier=1", true},
		{"identifier=|bare", true},
		{"identifier=http://x|", true},
		{"identifier=http://x|2,http://x|1", true},
		{"identifier=http://x|1&_id=p1", true},
		{"identifier=http://x|1&gender=female", true},
		{"identifier=http://y|1", false},
		{"identifier=|1", false},
		{"identifier=http://x|1&_id=p2", false},
		{"identifier:not=http://y|1", false}, // a modifier: not known here
		{"name=a", false},                    // a string: not known here
		{"_lastUpdated=ge2026", false},
	}
	for _, tt := range tests {
		q, err := ParseConditional("Patient", tt.criteria)
		if err != nil {
			t.Fatalf("ParseConditional(%s): %v", tt.criteria, err)
		}
		if got := Satisfies(q, entries); got != tt.want {
			t.Errorf("Satisfies(%s) = %v, want %v", tt.criteria, got, tt.want)
		}
	}
}

func TestSelects(t *testing.T) {
	doc := map[string]any{"resourceType": "Patient", "gender": "female", "birthDate": "1980-02-03",
		"identifier": []any{map[string]any{"system": "http://x", "value": "1"}},
		"name":       []any{map[string]any{"family": "Müller-Lüdenscheidt", "given": []any{"Ann"}}}}
	entries := Extract("Patient", doc)
	const yes, no, unknown = "yes", "no", "unknown"
	tests := []struct{ criteria, want string }{
		{"identifier=http://x|1", yes},
		{"identifier=http://x|2", no},
		{"_id=p1", yes},
		{"_id=p2,p1", yes},
		{"_id=p2", no},
		{"family=muller", yes},
		{"family=MÜLLER-L", yes},
		{"family=ludenscheidt", no},
		{"family:contains=ludensch", yes},
		{"family:exact=Müller-Lüdenscheidt", yes},
		{"family:exact=muller-ludenscheidt", no},
		{"name=ann&gender=female", yes},
		{"name=ann&gender=male", no},
		{"birthdate=1980", unknown},
		{"birthdate=1980&gender=male", no}, // a failing clause decides
		{"birthdate=1980&gender=female", unknown},
		{"identifier:not=http://x|2", unknown},
		{"family:missing=false", unknown},
		{"_lastUpdated=ge2026", unknown},
	}
	for _, tt := range tests {
		q, err := ParseConditional("Patient", tt.criteria)
		if err != nil {
			t.Fatalf("ParseConditional(%s): %v", tt.criteria, err)
		}
		got := unknown
		if sel, known := Selects(q, "p1", entries); known {
			got = map[bool]string{true: yes, false: no}[sel]
		}
		if got != tt.want {
			t.Errorf("Selects(%s) = %s, want %s", tt.criteria, got, tt.want)
		}
	}
	// A value with nothing to compare (which Parse refuses) selects
	// nothing, rather than every string.
	for _, mod := range []string{"", "contains"} {
		q := &Query{Type: "Patient", Clauses: []Clause{{Param: "family", Type: TypeString, Modifier: mod, Values: []Value{{Str: "-"}}}}}
		if sel, known := Selects(q, "p1", entries); sel || !known {
			t.Errorf("Selects(family:%s=-) = %v, %v; want false, true", mod, sel, known)
		}
	}
}

// TestSelectsStored: for a stored resource's entries, references by type
// and id and :missing are decided too; what Selects decides is decided
// the same; references by URL or bare id stay the store's.
func TestSelectsStored(t *testing.T) {
	doc := map[string]any{"resourceType": "Observation", "status": "final",
		"code":    map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8867-4"}}},
		"subject": map[string]any{"reference": "Patient/p1"}}
	entries := Extract("Observation", doc)
	const yes, no, unknown = "yes", "no", "unknown"
	tests := []struct{ criteria, want, selects string }{
		{"patient=Patient/p1", yes, unknown},
		{"patient=Patient/p2", no, unknown},
		{"subject=Patient/p1", yes, unknown},
		{"subject=Group/p1", no, unknown},
		{"subject=Patient/p1&code=8867-4", yes, unknown},
		{"subject=Patient/p1&code=1234-5", no, no},
		{"patient=p1", yes, unknown},     // of type Patient: its one target
		{"subject=p1", unknown, unknown}, // of any type
		{"patient=http://other.example/fhir/Patient/p1", unknown, unknown},
		{"has-member:missing=true", yes, unknown},
		{"has-member:missing=false", no, unknown},
		{"patient:missing=false", yes, unknown},
		{"patient:missing=true", no, unknown},
		{"code:missing=false&status=final", yes, unknown},
		{"patient.name=ann", unknown, unknown},
	}
	for _, tt := range tests {
		q, err := ParseConditional("Observation", tt.criteria)
		if err != nil {
			t.Fatalf("ParseConditional(%s): %v", tt.criteria, err)
		}
		for _, f := range []struct {
			name string
			fn   func(*Query, string, []Entry) (bool, bool)
			want string
		}{{"SelectsStored", SelectsStored, tt.want}, {"Selects", Selects, tt.selects}} {
			got := unknown
			if sel, known := f.fn(q, "o1", entries); known {
				got = map[bool]string{true: yes, false: no}[sel]
			}
			if got != f.want {
				t.Errorf("%s(%s) = %s, want %s", f.name, tt.criteria, got, f.want)
			}
		}
	}
}

// TestSelectsComboCode: combo-code, answered from the code and
// component-code entries (TokenRows), selects and satisfies by either; it
// has no entries of its own, so matching its own name would say
// "certainly not" (and a granular scope restricted by it would grant
// nothing its search finds).
func TestSelectsComboCode(t *testing.T) {
	entries := Extract("Observation", map[string]any{"resourceType": "Observation",
		"code":      map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "85354-9"}}},
		"component": []any{map[string]any{"code": map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "8480-6"}}}}}})
	for _, tc := range []struct {
		query          string
		selected, know bool
	}{
		{"combo-code=http://loinc.org|8480-6", true, true},
		{"combo-code=85354-9", true, true},
		{"combo-code=8462-4", false, true},
	} {
		q, err := Parse("Observation", mustQuery(t, tc.query), false)
		if err != nil {
			t.Fatal(err)
		}
		// Satisfies decides a granular scope's restriction (engine
		// authz): combo-code=... must grant what the search finds.
		if got := Satisfies(q, entries); got != tc.selected {
			t.Errorf("Satisfies(Observation?%s) = %v, want %v", tc.query, got, tc.selected)
		}
		for name, f := range map[string]func(*Query, string, []Entry) (bool, bool){"Selects": Selects, "SelectsStored": SelectsStored} {
			if sel, known := f(q, "o1", entries); sel != tc.selected || known != tc.know {
				t.Errorf("%s(Observation?%s) = %v, %v; want %v, %v", name, tc.query, sel, known, tc.selected, tc.know)
			}
		}
	}
}
