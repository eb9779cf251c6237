package fhirwire

import (
	"testing"
	"time"
)

// TestNotModified: If-None-Match, else If-Modified-Since as the span of
// time the date names, against version 3 last updated at 10:00:00.500;
// sole says whether version 3 is the only one written in the span.
func TestNotModified(t *testing.T) {
	lu := time.Date(2026, 3, 2, 10, 0, 0, 500e6, time.UTC)
	tests := []struct {
		name        string
		ifNoneMatch string
		since       Since
		sole        bool
		want        bool
	}{
		{"no validators", "", Since{}, true, false},
		{"weak tag of the version", `W/"3"`, Since{}, true, true},
		{"strong form of the tag", `"3"`, Since{}, true, true},
		{"another version", `W/"2"`, Since{}, true, false},
		{"one of a list", `W/"1", W/"3"`, Since{}, true, true},
		{"any", `*`, Since{}, true, true},
		{"a bare number is no entity tag", `3`, Since{}, true, false},
		{"modified since", "", HTTPDate(lu.Add(-time.Second)), true, false},
		{"the version's own second, the only version in it", "", HTTPDate(lu), true, true},
		{"the version's own second, another version in it", "", HTTPDate(lu), false, false},
		{"not modified since (later)", "", HTTPDate(lu.Add(time.Hour)), false, true},
		{"If-None-Match wins over If-Modified-Since", `W/"2"`, HTTPDate(lu.Add(time.Hour)), true, false},
		{"an instant's millisecond, the version's", "", InstantSince("2026-03-02T10:00:00.500Z", lu), false, false},
		{"an instant's millisecond, the version's, the only one", "", InstantSince("2026-03-02T10:00:00.500Z", lu), true, true},
		{"an instant's millisecond before the version", "", InstantSince("2026-03-02T10:00:00.499Z", lu.Add(-time.Millisecond)), true, false},
		{"an instant's millisecond after the version", "", InstantSince("2026-03-02T10:00:00.501Z", lu.Add(time.Millisecond)), false, true},
		{"an instant without a fraction names its second", "", InstantSince("2026-03-02T10:00:00Z", lu.Truncate(time.Second)), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asked := false
			sole := func() bool { asked = true; return tt.sole }
			if got := NotModified(tt.ifNoneMatch, tt.since, 3, lu, sole); got != tt.want {
				t.Errorf("NotModified(%q, %v, 3, %v) = %v, want %v", tt.ifNoneMatch, tt.since, lu, got, tt.want)
			}
			if asked && tt.since.Compare(lu) != 0 {
				t.Errorf("NotModified(%q, %v, 3, %v) asked whether the version is the only one in a span it is not in",
					tt.ifNoneMatch, tt.since, lu)
			}
		})
	}
}

func TestIfMatch(t *testing.T) {
	tests := []struct {
		name, ifMatch string
		exists        bool
		want          bool
	}{
		{"weak tag of the version", `W/"3"`, true, true},
		{"strong form of the tag", `"3"`, true, true},
		{"another version", `W/"2"`, true, false},
		{"one of a list", `W/"1", W/"3"`, true, true},
		{"any, existing", `*`, true, true},
		{"any, none current", `*`, false, false},
		{"a tag, none current", `W/"3"`, false, false},
		{"not a tag", `W/"x"`, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IfMatch(tt.ifMatch, 3, tt.exists); got != tt.want {
				t.Errorf("IfMatch(%q, 3, %v) = %v, want %v", tt.ifMatch, tt.exists, got, tt.want)
			}
		})
	}
}
