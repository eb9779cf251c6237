package search

import "testing"

func TestPlusAsSpace(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{"2026-12-06T14:25:13 13:00", true},
		{"ge2026-12-06T14:25:13.5 05:45", true},
		{"2026-12-06T14:25 13:00", true},
		{"2026-12-06T14:25:13+13:00", false},
		{"2026-12-06T14:25:13-03:30", false},
		{"2026-12-06 14:25", false}, // a date and a time: no T before the space
		{"2026-12-06T14:25:13 13", false},
		{"2026-12-06T14:25:13 13:00:00", false},
		{"yesterday", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := PlusAsSpace(tt.v); got != tt.want {
			t.Errorf("PlusAsSpace(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}
