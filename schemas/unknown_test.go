package schemas

import (
	"slices"
	"testing"
)

// TestUnknownProperties: the stray keys of a record, by JSON pointer, for
// the sender's own tools (the CLI's map: probe p42 F6); the issues never
// name them.
func TestUnknownProperties(t *testing.T) {
	s := set(t)
	tests := []struct {
		name, kind, doc string
		want            []string
	}{
		{"none", "vitals", `{"source": {}, "heartRate": 1}`, nil},
		{"top level", "vitals", `{"source": {}, "newField": 1, "heartRate": 1}`, []string{"/newField"}},
		{"nested, escaped", "vitals", `{"patient": {"id": "x", "a/b": 1}}`, []string{"/patient/a~1b"}},
		{"in an array", "session", `{"vitals": [{"heartRate": 1}, {"pulse": 2}]}`, []string{"/vitals/1/pulse"}},
		{"not JSON", "vitals", `{`, nil},
		{"unknown kind", "lab", `{"a": 1}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.UnknownProperties(tt.kind, []byte(tt.doc)); !slices.Equal(got, tt.want) {
				t.Errorf("UnknownProperties(%s) = %v, want %v", tt.doc, got, tt.want)
			}
		})
	}
}
