package fhirpath_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile/fhirpath"
)

const obs = `{"resourceType": "Observation", "status": "final",
	"identifier": [{"system": "urn:x", "value": "1"}, {"value": "2"}],
	"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": "Heart rate"},
	"effectiveDateTime": "2026-03-02T09:00:00Z",
	"valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
	"component": [{"code": {"text": "a"}, "valueQuantity": {"value": 1}}, {"code": {"text": "b"}, "dataAbsentReason": {"text": "x"}}]}`

func decode(t *testing.T, s string) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader([]byte(s)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestEval: the subset's operators and functions give FHIRPath's answers,
// including its three-valued logic on empty collections.
func TestEval(t *testing.T) {
	res := fhirpath.Item{V: decode(t, obs), T: "Observation"}
	tests := []struct {
		expr string
		want string // the result as JSON of the values
	}{
		{"status", `["final"]`},
		{"Observation.status", `["final"]`},
		{"identifier.value", `["1","2"]`},
		{"identifier.where(system.exists() and value.exists()).exists()", `[true]`},
		{"identifier.all(system.exists())", `[false]`},
		{"identifier.count()", `[2]`},
		{"identifier[1].value", `["2"]`},
		{"identifier.first().system = 'urn:x'", `[true]`},
		{"value.ofType(Quantity).code", `["/min"]`},
		{"value is Quantity", `[true]`},
		{"value.exists() and dataAbsentReason.empty()", `[true]`},
		{"(component.empty() and hasMember.empty()) implies (dataAbsentReason.exists() or value.exists())", `[true]`},
		{"component.all(value.exists() or dataAbsentReason.exists())", `[true]`},
		{"effective.toString().length() >= 8", `[true]`},
		{"(effective as dateTime).toString().length() >= 8", `[true]`},
		{"(effective as Period).exists()", `[false]`},
		{"nothing and true", `[]`},
		{"nothing and false", `[false]`},
		{"nothing or true", `[true]`},
		{"false implies nothing", `[true]`},
		{"nothing implies true", `[true]`},
		{"true xor false", `[true]`},
		{"valueQuantity.value > 70 and valueQuantity.value < 80", `[true]`},
		{"code.coding.code | code.coding.code", `["8867-4"]`},
		{"code.text.startsWith('Heart')", `[true]`},
		{"code.text.matches('^H.*e$')", `[true]`},
		{"iif(status = 'final', 'y', 'n')", `["y"]`},
		{"%resource.status != 'amended'", `[true]`},
		{"status.not()", `[false]`},
		{"{}.empty()", `[true]`},
		{"code.text & '!'", `["Heart rate!"]`},
	}
	for _, tc := range tests {
		t.Run(tc.expr, func(t *testing.T) {
			e, err := fhirpath.Parse(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			out, err := e.Eval(fhirpath.Env{Resource: res}, res)
			if err != nil {
				t.Fatal(err)
			}
			vals := make([]any, 0, len(out))
			for _, it := range out {
				vals = append(vals, it.V)
			}
			got, _ := json.Marshal(vals)
			if string(got) != tc.want {
				t.Errorf("Eval(%s) = %s, want %s", tc.expr, got, tc.want)
			}
		})
	}
}

// TestParseRefusesTheUnsupported: what the subset cannot evaluate fails
// to compile rather than being skipped.
func TestParseRefusesTheUnsupported(t *testing.T) {
	for _, expr := range []string{"descendants()", "a in b", "resolve() is Patient", "$index", "%ucum", "status = ", "'open"} {
		if _, err := fhirpath.Parse(expr); err == nil {
			t.Errorf("Parse(%q) = nil error, want one", expr)
		}
	}
}

// TestHolds: a constraint holds unless it evaluates to false.
func TestHolds(t *testing.T) {
	res := fhirpath.Item{V: decode(t, obs)}
	for expr, want := range map[string]bool{"status = 'final'": true, "status = 'amended'": false, "nothing = 1": true} {
		x, err := fhirpath.Parse(expr)
		if err != nil {
			t.Fatalf("Parse(%q): %v", expr, err)
		}
		ok, err := x.Holds(fhirpath.Env{Resource: res}, res)
		if err != nil || ok != want {
			t.Errorf("Holds(%s) = %v, %v, want %v", expr, ok, err, want)
		}
	}
}
