package fhirwire

import (
	"fmt"
	"strconv"
	"strings"
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
		{"a weak bare number is no entity tag", `W/3`, Since{}, true, false},
		{"leading zeros name another tag", `W/"03"`, Since{}, true, false},
		{"a sign names another tag", `W/"+3"`, Since{}, true, false},
		{"a malformed list is no match", `W/"3", abc`, Since{}, true, false},
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

// TestParseTags: If-Match and If-None-Match values are "*" or a list of
// entity-tags (RFC 9110 8.8.3), and a tag names a version only when its
// opaque-tag is the version's number as the gateway writes it (the weak
// comparison of 8.8.3.2 compares the opaque-tags as strings): W/"05",
// W/"+5" and "005" do not name version 5, and a bare 5 is no tag at all.
func TestParseTags(t *testing.T) {
	tests := []struct {
		name  string
		value string
		ok    bool
		names []int64 // versions 1..6 the value names
	}{
		{"weak tag", `W/"5"`, true, []int64{5}},
		{"strong tag", `"5"`, true, []int64{5}},
		{"list", `W/"1", "5"`, true, []int64{1, 5}},
		{"list without spaces", `W/"1","5"`, true, []int64{1, 5}},
		{"empty list elements", `, W/"2",,`, true, []int64{2}},
		{"star", ` * `, true, []int64{1, 2, 3, 4, 5, 6}},
		{"leading zero", `W/"05"`, true, nil},
		{"leading zeros", `W/"003"`, true, nil},
		{"a sign", `W/"+4"`, true, nil},
		{"a negative number", `W/"-4"`, true, nil},
		{"a word", `"abc"`, true, nil},
		{"an empty opaque tag", `W/""`, true, nil},
		{"a space inside", `W/" 5"`, false, nil},
		{"a bare number", `3`, false, nil},
		{"a weak bare number", `W/3`, false, nil},
		{"an unquoted word", `abc`, false, nil},
		{"an unterminated tag", `W/"1`, false, nil},
		{"a quote inside a tag", `"1"2"`, false, nil},
		{"a lower-case weak prefix", `w/"5"`, false, nil},
		{"star in a list", `*, W/"1"`, false, nil},
		{"only commas", `,,`, false, nil},
		{"empty", ``, false, nil},
		{"one good, one bad", `W/"5", 5`, false, nil},
		{"a control character", "\"5\x01\"", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tags, ok := ParseTags(tt.value)
			if ok != tt.ok {
				t.Fatalf("ParseTags(%q) ok = %v, want %v", tt.value, ok, tt.ok)
			}
			var names []int64
			for v := int64(1); v <= 6; v++ {
				if tags.Names(v) {
					names = append(names, v)
				}
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.names) {
				t.Errorf("ParseTags(%q) names versions %v, want %v", tt.value, names, tt.names)
			}
		})
	}
}

// FuzzParseTags: any header value parses or is refused without panic; a
// value that parses names a version only as one of its tags' text, and
// the gateway's own ETag of a version always names it.
func FuzzParseTags(f *testing.F) {
	for _, s := range []string{`W/"1"`, `"2", W/"3"`, `*`, `3`, `W/"+4"`, `W/"05"`, `, ,W/"x"`, `W/"`} {
		f.Add(s, int64(3))
	}
	f.Fuzz(func(t *testing.T, v string, version int64) {
		if version < 1 {
			return
		}
		if tags, ok := ParseTags(ETag(version)); !ok || !tags.Names(version) || tags.Names(version+1) {
			t.Fatalf("ParseTags(ETag(%d)) = %v, %v", version, tags, ok)
		}
		tags, ok := ParseTags(v)
		if !ok && (tags.Any || tags.Names(version)) {
			t.Errorf("ParseTags(%q) refused the value but names version %d", v, version)
		}
		if ok && !tags.Any && tags.Names(version) && !strings.Contains(v, `"`+strconv.FormatInt(version, 10)+`"`) {
			t.Errorf("ParseTags(%q) names version %d, which none of its tags is", v, version)
		}
	})
}
