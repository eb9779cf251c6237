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
