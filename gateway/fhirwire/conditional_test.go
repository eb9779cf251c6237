package fhirwire

import (
	"testing"
	"time"
)

func TestNotModified(t *testing.T) {
	lu := time.Date(2026, 3, 2, 10, 0, 0, 500e6, time.UTC)
	tests := []struct {
		name        string
		ifNoneMatch string
		since       time.Time
		want        bool
	}{
		{"no validators", "", time.Time{}, false},
		{"weak tag of the version", `W/"3"`, time.Time{}, true},
		{"strong form of the tag", `"3"`, time.Time{}, true},
		{"another version", `W/"2"`, time.Time{}, false},
		{"one of a list", `W/"1", W/"3"`, time.Time{}, true},
		{"any", `*`, time.Time{}, true},
		{"a bare number is no entity tag", `3`, time.Time{}, false},
		{"modified since", "", lu.Add(-time.Second), false},
		{"not modified since (same second)", "", lu.Truncate(time.Second), true},
		{"not modified since (later)", "", lu.Add(time.Hour), true},
		{"If-None-Match wins over If-Modified-Since", `W/"2"`, lu.Add(time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NotModified(tt.ifNoneMatch, tt.since, 3, lu); got != tt.want {
				t.Errorf("NotModified(%q, %v, 3, %v) = %v, want %v", tt.ifNoneMatch, tt.since, lu, got, tt.want)
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
