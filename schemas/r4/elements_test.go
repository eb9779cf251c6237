package r4

import (
	"slices"
	"testing"
)

func TestElement(t *testing.T) {
	v := New(Options{})
	tests := []struct {
		path        []string
		ok          bool
		multi, choi bool
	}{
		{[]string{"name"}, true, true, false},
		{[]string{"name", "given"}, true, true, false},
		{[]string{"name", "family"}, true, false, false},
		{[]string{"birthDate"}, true, false, false},
		{[]string{"deceased"}, true, false, true},
		{[]string{"contact", "name", "family"}, true, false, false},
		{[]string{"nope"}, false, false, false},
		{[]string{"deceased", "x"}, false, false, false},
	}
	for _, tt := range tests {
		e, ok := v.Element("Patient", tt.path...)
		if ok != tt.ok || e.Multi != tt.multi || e.Choice != tt.choi {
			t.Errorf("Element(Patient, %v) = %+v, %v; want multi %v, choice %v, ok %v", tt.path, e, ok, tt.multi, tt.choi, tt.ok)
		}
	}
	names := []string{}
	for _, e := range v.Elements("Observation") {
		if e.Required {
			names = append(names, e.Name)
		}
	}
	if !slices.Equal(names, []string{"status", "code"}) {
		t.Errorf("required elements of Observation = %v, want status, code", names)
	}
}

func TestNodeMember(t *testing.T) {
	tests := []struct {
		path     []string // resource type, then JSON keys
		typ, obj string   // the last key's type code, and its object's type
		ok       bool
	}{
		{[]string{"Observation", "valueString"}, "string", "", true},
		{[]string{"Observation", "extension", "valueReference"}, "Reference", "Reference", true},
		{[]string{"Observation", "valueReference"}, "", "", false},
		{[]string{"Observation", "subject", "reference"}, "string", "", true},
		{[]string{"Observation", "identifier", "value"}, "string", "", true},
		{[]string{"Observation", "identifier", "system"}, "uri", "", true},
		{[]string{"Observation", "code", "text"}, "string", "", true},
		{[]string{"Observation", "text", "div"}, "xhtml", "", true},
		{[]string{"Observation", "component", "valueQuantity", "unit"}, "string", "", true},
		{[]string{"Observation", "extension", "valueUrl"}, "url", "", true},
		{[]string{"Observation", "_status"}, "Element", "Element", true},
		{[]string{"Observation", "_status", "extension", "valueUuid"}, "uuid", "", true},
		{[]string{"Observation", "contained"}, "Resource", "", true},
		{[]string{"Bundle", "entry", "resource"}, "Resource", "", true},
		{[]string{"Questionnaire", "derivedFrom"}, "canonical", "", true},
		{[]string{"Observation", "value"}, "", "", false},
		{[]string{"Observation", "nope"}, "", "", false},
		{[]string{"Nope", "id"}, "", "", false},
	}
	for _, tt := range tests {
		n := ResourceNode(tt.path[0])
		var typ string
		ok := true
		for _, k := range tt.path[1:] {
			typ, n, ok = n.Member(k)
		}
		if typ != tt.typ || n.Type() != tt.obj || ok != tt.ok {
			t.Errorf("Member along %v = %q, node %q, %v; want %q, node %q, %v", tt.path, typ, n.Type(), ok, tt.typ, tt.obj, tt.ok)
		}
	}
}

func TestNodeCodeSystem(t *testing.T) {
	tests := []struct {
		path []string // resource type, then JSON keys; the last one's code
		code string
		want string
	}{
		{[]string{"Patient", "gender"}, "female", "http://hl7.org/fhir/administrative-gender"},
		{[]string{"Observation", "status"}, "final", "http://hl7.org/fhir/observation-status"},
		{[]string{"Procedure", "status"}, "completed", "http://hl7.org/fhir/event-status"},
		{[]string{"MedicationRequest", "intent"}, "order", "http://hl7.org/fhir/CodeSystem/medicationrequest-intent"},
		{[]string{"MedicationRequest", "status"}, "active", "http://hl7.org/fhir/CodeSystem/medicationrequest-status"},
		{[]string{"AuditEvent", "action"}, "R", "http://hl7.org/fhir/audit-event-action"},
		{[]string{"AuditEvent", "outcome"}, "0", "http://hl7.org/fhir/audit-event-outcome"},
		{[]string{"ValueSet", "status"}, "active", "http://hl7.org/fhir/publication-status"},
		{[]string{"Observation", "valueQuantity", "comparator"}, "<", "http://hl7.org/fhir/quantity-comparator"},
		{[]string{"Patient", "gender"}, "nope", ""},          // not in the value set
		{[]string{"Patient", "id"}, "female", ""},            // no binding
		{[]string{"AuditEvent", "source", "site"}, "x", ""},  // a string
		{[]string{"Patient", "_gender"}, "female", ""},       // the primitive's sibling
		{[]string{"Patient", "nope"}, "female", ""},          // no such element
		{[]string{"Observation", "code", "coding"}, "x", ""}, // a Coding, not a code
	}
	for _, tt := range tests {
		n := ResourceNode(tt.path[0])
		keys := tt.path[1:]
		for _, k := range keys[:len(keys)-1] {
			_, n, _ = n.Member(k)
		}
		if got := n.CodeSystem(keys[len(keys)-1], tt.code); got != tt.want {
			t.Errorf("CodeSystem along %v of %q = %q, want %q", tt.path, tt.code, got, tt.want)
		}
	}
	for _, tt := range []struct {
		rt, key string
		want    []string
	}{
		{"Patient", "gender", []string{"http://hl7.org/fhir/administrative-gender"}},
		{"Observation", "status", []string{"http://hl7.org/fhir/observation-status"}},
		{"Patient", "id", nil},
		{"Patient", "_gender", nil},
	} {
		if got := ResourceNode(tt.rt).CodeSystems(tt.key); !slices.Equal(got, tt.want) {
			t.Errorf("CodeSystems of %s.%s = %q, want %q", tt.rt, tt.key, got, tt.want)
		}
	}
	if got := (Node{}).CodeSystem("gender", "female"); got != "" {
		t.Errorf("the zero Node's CodeSystem = %q, want none", got)
	}
}
