package text

import (
	"strings"
	"testing"
)

func TestOneLine(t *testing.T) {
	for _, tc := range []struct {
		s    string
		max  int
		want bool
	}{
		{"", 5, true},
		{"EHR rejects v1; v2 corrects it", 30, true},
		{"EHR rejects v1; v2 corrects it", 29, false},
		{strings.Repeat("é", 5), 5, true}, // characters, not bytes
		{strings.Repeat("é", 6), 5, false},
		{"two\nlines", 30, false},
		{"tab\there", 30, false},
		{"nul\x00", 30, false},
	} {
		if got := OneLine(tc.s, tc.max); got != tc.want {
			t.Errorf("OneLine(%q, %d) = %v, want %v", tc.s, tc.max, got, tc.want)
		}
	}
}

func TestJoinAnd(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{{nil, ""}, {[]string{"a"}, "a"}, {[]string{"a", "b"}, "a and b"}, {[]string{"a", "b", "c"}, "a, b and c"}} {
		if got := JoinAnd(tc.in); got != tc.want {
			t.Errorf("JoinAnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
