package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestPreconditionsParse: what If-Match, If-None-Match and
// If-Unmodified-Since the gateway reads, and what is precondition-invalid.
func TestPreconditionsParse(t *testing.T) {
	for _, tc := range []struct {
		name string
		pre  Preconditions
		ok   bool
	}{
		{"none", Preconditions{}, true},
		{"star", Preconditions{IfMatch: "*", IfNoneMatch: " * "}, true},
		{"weak and strong tags", Preconditions{IfMatch: `W/"1", "2"`, IfNoneMatch: `"abc"`}, true},
		{"empty list elements", Preconditions{IfNoneMatch: `, W/"1",,`}, true},
		{"a bare version number", Preconditions{IfMatch: "3"}, true},
		{"IMF-fixdate", Preconditions{IfUnmodifiedSince: "Sun, 06 Nov 1994 08:49:37 GMT"}, true},
		{"RFC 850 date", Preconditions{IfUnmodifiedSince: "Sunday, 06-Nov-94 08:49:37 GMT"}, true},
		{"asctime date", Preconditions{IfUnmodifiedSince: "Sun Nov  6 08:49:37 1994"}, true},
		{"an unquoted word", Preconditions{IfNoneMatch: "abc"}, false},
		{"an unterminated tag", Preconditions{IfMatch: `W/"1`}, false},
		{"a quote inside a tag", Preconditions{IfMatch: `"1"2"`}, false},
		{"star in a list", Preconditions{IfNoneMatch: `*, W/"1"`}, false},
		{"only commas", Preconditions{IfMatch: ",,"}, false},
		{"an RFC 3339 date", Preconditions{IfUnmodifiedSince: "2001-01-01T00:00:00Z"}, false},
		{"two dates", Preconditions{IfUnmodifiedSince: "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.pre.parse(false)
			var oe *outcome.Error
			switch {
			case tc.ok && err != nil:
				t.Errorf("parse(%+v) = %v, want no error", tc.pre, err)
			case !tc.ok && (!errors.As(err, &oe) || oe.Kind != outcome.Invalid || oe.Issues[0].Rule != "precondition-invalid"):
				t.Errorf("parse(%+v) = %v, want Invalid precondition-invalid", tc.pre, err)
			}
		})
	}
}

// TestPreconditionsCheck: the conditions against a resource's latest
// version (none, current, deleted).
func TestPreconditionsCheck(t *testing.T) {
	updated := time.Date(2026, 3, 2, 9, 0, 0, 500e6, time.UTC)
	current := &store.Resource{Version: 3, LastUpdated: updated}
	deleted := &store.Resource{Version: 4, LastUpdated: updated, Deleted: true}
	for _, tc := range []struct {
		name   string
		pre    Preconditions
		latest *store.Resource
		rule   string // "" holds
	}{
		{"If-Match current", Preconditions{IfMatch: `W/"3"`}, current, ""},
		{"If-Match older", Preconditions{IfMatch: `W/"2"`}, current, "version-mismatch"},
		{"If-Match star current", Preconditions{IfMatch: "*"}, current, ""},
		{"If-Match star deleted", Preconditions{IfMatch: "*"}, deleted, "version-mismatch"},
		{"If-Match the deletion", Preconditions{IfMatch: `W/"4"`}, deleted, ""},
		{"If-Match none", Preconditions{IfMatch: `W/"1"`}, nil, "version-mismatch"},
		{"If-None-Match star current", Preconditions{IfNoneMatch: "*"}, current, "resource-exists"},
		{"If-None-Match star deleted", Preconditions{IfNoneMatch: "*"}, deleted, ""},
		{"If-None-Match star none", Preconditions{IfNoneMatch: "*"}, nil, ""},
		{"If-None-Match current", Preconditions{IfNoneMatch: `"3"`}, current, "version-matched"},
		{"If-None-Match other", Preconditions{IfNoneMatch: `W/"2", W/"5"`}, current, ""},
		{"If-Unmodified-Since the same second", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 09:00:00 GMT"}, current, ""},
		{"If-Unmodified-Since a second before", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, current, "modified-since"},
		{"If-Unmodified-Since before a deletion", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, deleted, "modified-since"},
		{"If-Unmodified-Since none", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, nil, ""},
		{"If-Unmodified-Since with If-Match", Preconditions{IfMatch: `W/"3"`, IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, current, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.pre.parse(false)
			if err != nil {
				t.Fatal(err)
			}
			err = c.check(tc.latest)
			var oe *outcome.Error
			switch {
			case tc.rule == "" && err != nil:
				t.Errorf("check = %v, want it to hold", err)
			case tc.rule != "" && (!errors.As(err, &oe) || oe.Kind != outcome.PreconditionFailed || oe.Issues[0].Rule != tc.rule):
				t.Errorf("check = %v, want PreconditionFailed %s", err, tc.rule)
			}
		})
	}
}

// FuzzPreconditions: any header values parse to a condition or
// precondition-invalid, and a parsed condition is checked without panic.
func FuzzPreconditions(f *testing.F) {
	f.Add(`W/"1", "2"`, "*", "Sun, 06 Nov 1994 08:49:37 GMT")
	f.Add("3", `W/"`, "Sunday, 06-Nov-94 08:49:37 GMT")
	f.Fuzz(func(t *testing.T, ifMatch, ifNoneMatch, since string) {
		c, err := Preconditions{IfMatch: ifMatch, IfNoneMatch: ifNoneMatch, IfUnmodifiedSince: since}.parse(true)
		if err != nil {
			var oe *outcome.Error
			if !errors.As(err, &oe) || oe.Kind != outcome.Invalid {
				t.Fatalf("parse = %v, want Invalid", err)
			}
			return
		}
		for _, latest := range []*store.Resource{nil, {Version: 2, LastUpdated: time.Now()}, {Version: 3, Deleted: true}} {
			_ = c.check(latest)
		}
	})
}
