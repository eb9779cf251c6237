package engine

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
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
		{"a tag with leading zeros", Preconditions{IfMatch: `W/"003"`}, true},
		// An entity-tag is quoted (RFC 9110 8.8.3): a bare number is none (p43 F1).
		{"a bare version number", Preconditions{IfMatch: "3"}, false},
		{"a weak bare version number", Preconditions{IfNoneMatch: "W/3"}, false},
		{"a bare number in a list", Preconditions{IfMatch: `W/"1", 3`}, false},
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
		// A header sent with no value is not one left out (p27 F3).
		{"an empty If-Match", Preconditions{Empty: "If-Match"}, false},
		{"an empty If-None-Match", Preconditions{Empty: "If-None-Match"}, false},
		{"an empty If-Unmodified-Since", Preconditions{Empty: "If-Unmodified-Since"}, false},
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

// TestEmptyPreconditionHeader: a conditional header sent with no value
// (If-None-Exist: on a create, If-Match: on an update) is Invalid
// precondition-invalid naming the header, never taken as absent: an
// empty criteria or ETag variable would otherwise make the duplicate or
// the lost update the header was sent to prevent.
func TestEmptyPreconditionHeader(t *testing.T) {
	e := New(Config{})
	sc := auditlog.NewScope("create", &auth.Principal{ClientID: "c", Tenant: "t", Scopes: auth.ParseScopes("system/*.cruds")})
	unread := func() ([]byte, error) { t.Fatal("the body was read"); return nil, nil }
	for _, tc := range []struct {
		name   string
		header string
		call   func(pre Preconditions) error
	}{
		{"create, If-None-Exist", "If-None-Exist", func(pre Preconditions) error {
			_, err := e.Create(context.Background(), sc, "Patient", unread, pre)
			return err
		}},
		{"update, If-Match", "If-Match", func(pre Preconditions) error {
			_, err := e.Update(context.Background(), sc, "Patient", "p1", unread, pre)
			return err
		}},
		{"conditional update, If-Match", "If-Match", func(pre Preconditions) error {
			_, err := e.ConditionalUpdate(context.Background(), sc, "Patient", "identifier=s|v", unread, pre)
			return err
		}},
		{"delete, If-Match", "If-Match", func(pre Preconditions) error {
			_, err := e.Delete(context.Background(), sc, "Patient", "p1", pre)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call(Preconditions{Empty: tc.header})
			var oe *outcome.Error
			if !errors.As(err, &oe) || oe.Kind != outcome.Invalid || oe.Issues[0].Rule != "precondition-invalid" ||
				!strings.Contains(oe.Issues[0].Message, tc.header) {
				t.Fatalf("%s with an empty %s = %v, want Invalid precondition-invalid naming the header", tc.name, tc.header, err)
			}
		})
	}
}

// versionsAt is a versionReader of one resource whose versions were
// written at the times given (version 1 first).
type versionsAt []time.Time

func (vs versionsAt) VRead(typ, id string, v int64) (*store.Resource, error) {
	if v < 1 || int(v) > len(vs) {
		return nil, store.ErrNotFound
	}
	return &store.Resource{Type: typ, ID: id, Version: v, LastUpdated: vs[v-1]}, nil
}

// TestPreconditionsCheck: the conditions against a resource's latest
// version (none, current, deleted). If-Unmodified-Since names a second:
// the latest version written in it holds only when the version before it
// was written in an earlier second (else the date may be that version's,
// and the write would overwrite a change the client never saw).
func TestPreconditionsCheck(t *testing.T) {
	updated := time.Date(2026, 3, 2, 9, 0, 0, 500e6, time.UTC)
	current := &store.Resource{Type: "Patient", ID: "p", Version: 3, LastUpdated: updated}
	deleted := &store.Resource{Type: "Patient", ID: "p", Version: 4, LastUpdated: updated, Deleted: true}
	first := &store.Resource{Type: "Patient", ID: "p", Version: 1, LastUpdated: updated}
	earlier := versionsAt{updated.Add(-time.Hour), updated.Add(-time.Second), updated, updated}
	sameSecond := versionsAt{updated.Add(-time.Hour), updated.Add(-400 * time.Millisecond), updated, updated}
	for _, tc := range []struct {
		name     string
		pre      Preconditions
		latest   *store.Resource
		versions versionsAt // nil: earlier
		rule     string     // "" holds
	}{
		{"If-Match current", Preconditions{IfMatch: `W/"3"`}, current, nil, ""},
		{"If-Match older", Preconditions{IfMatch: `W/"2"`}, current, nil, "version-mismatch"},
		// Tags compare as strings (RFC 9110 8.8.3.2; p43 F1).
		{"If-Match with a leading zero", Preconditions{IfMatch: `W/"03"`}, current, nil, "version-mismatch"},
		{"If-Match with a sign", Preconditions{IfMatch: `W/"+3"`}, current, nil, "version-mismatch"},
		{"If-None-Match with leading zeros", Preconditions{IfNoneMatch: `"003"`}, current, nil, ""},
		{"If-Match star current", Preconditions{IfMatch: "*"}, current, nil, ""},
		{"If-Match star deleted", Preconditions{IfMatch: "*"}, deleted, nil, "version-mismatch"},
		{"If-Match the deletion", Preconditions{IfMatch: `W/"4"`}, deleted, nil, ""},
		{"If-Match none", Preconditions{IfMatch: `W/"1"`}, nil, nil, "version-mismatch"},
		{"If-None-Match star current", Preconditions{IfNoneMatch: "*"}, current, nil, "resource-exists"},
		{"If-None-Match star deleted", Preconditions{IfNoneMatch: "*"}, deleted, nil, ""},
		{"If-None-Match star none", Preconditions{IfNoneMatch: "*"}, nil, nil, ""},
		{"If-None-Match current", Preconditions{IfNoneMatch: `"3"`}, current, nil, "version-matched"},
		{"If-None-Match other", Preconditions{IfNoneMatch: `W/"2", W/"5"`}, current, nil, ""},
		{"If-Unmodified-Since the same second, the only version in it", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 09:00:00 GMT"}, current, nil, ""},
		{"If-Unmodified-Since a second before", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, current, nil, "modified-since"},
		{"If-Unmodified-Since before a deletion", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, deleted, nil, "modified-since"},
		{"If-Unmodified-Since the same second, another version in it", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 09:00:00 GMT"}, current, sameSecond, "modified-since"},
		{"If-Unmodified-Since the same second, a deletion after another version in it", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 09:00:00 GMT"}, deleted, versionsAt{updated, updated, updated, updated}, "modified-since"},
		{"If-Unmodified-Since the same second, version 1", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 09:00:00 GMT"}, first, versionsAt{}, ""},
		{"If-Unmodified-Since the same second, the version before unreadable", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 09:00:00 GMT"}, current, versionsAt{}, "modified-since"},
		{"If-Unmodified-Since a later second", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 09:00:01 GMT"}, current, sameSecond, ""},
		{"If-Unmodified-Since none", Preconditions{IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, nil, nil, ""},
		{"If-Unmodified-Since with If-Match", Preconditions{IfMatch: `W/"3"`, IfUnmodifiedSince: "Mon, 02 Mar 2026 08:59:59 GMT"}, current, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.pre.parse(false)
			if err != nil {
				t.Fatal(err)
			}
			versions := tc.versions
			if versions == nil {
				versions = earlier
			}
			err = c.check(tc.latest, versions)
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
			_ = c.check(latest, versionsAt{time.Now(), time.Now()})
		}
	})
}
