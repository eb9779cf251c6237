package audit

import "testing"

// TestVersioned: a Provenance's versioned target splits into the
// resource and its version; anything else is not versioned.
func TestVersioned(t *testing.T) {
	for _, tc := range []struct {
		ref, want string
		version   int64
		ok        bool
	}{
		{"Observation/x/_history/3", "Observation/x", 3, true},
		{"Observation/x", "Observation/x", 0, false},
		{"Observation/x/_history/", "Observation/x/_history/", 0, false},
		{"Observation/x/_history/three", "Observation/x/_history/three", 0, false},
	} {
		got, v, ok := Versioned(tc.ref)
		if got != tc.want || v != tc.version || ok != tc.ok {
			t.Errorf("Versioned(%q) = %q, %d, %v; want %q, %d, %v", tc.ref, got, v, ok, tc.want, tc.version, tc.ok)
		}
	}
}
