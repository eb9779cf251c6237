package fhirwire

import (
	"strings"
	"time"
)

// Since is the date of a conditional request (If-Modified-Since,
// If-Unmodified-Since, a Bundle entry's ifModifiedSince) as the span of
// time it names: an HTTP-date names a whole second (RFC 9110 5.6.7), an
// instant with a fraction a millisecond (the resolution of
// meta.lastUpdated). A version's lastUpdated (milliseconds) is compared
// with the span, not with its first instant: the Last-Modified date of a
// version written at 12:00:00.600 is 12:00:00, and a version written at
// 12:00:00.900 is later than that copy although it is within the date's
// second. The zero Since is no date.
type Since struct {
	Start time.Time     // the span's first instant, UTC
	Span  time.Duration // time.Second or time.Millisecond
}

// HTTPDate is the Since of an HTTP-date (zero for the zero time).
func HTTPDate(t time.Time) Since {
	if t.IsZero() {
		return Since{}
	}
	return Since{Start: t.UTC().Truncate(time.Second), Span: time.Second}
}

// InstantSince is the Since of an FHIR instant as the client wrote it
// (raw) and parsed (t): a millisecond when raw has a fraction of a second,
// else a second.
func InstantSince(raw string, t time.Time) Since {
	if t.IsZero() {
		return Since{}
	}
	if i := strings.IndexByte(raw, 'T'); i >= 0 && strings.Contains(raw[i:], ".") {
		return Since{Start: t.UTC().Truncate(time.Millisecond), Span: time.Millisecond}
	}
	return Since{Start: t.UTC().Truncate(time.Second), Span: time.Second}
}

// IsZero reports whether s is no date.
func (s Since) IsZero() bool { return s.Span == 0 }

// Compare places lastUpdated against the span: -1 before it (the version
// is not modified since the date), +1 after it (modified), 0 within it.
// Within it the answer depends on the resource's other versions: the
// client's date came from this version only when no other version of the
// resource was written in the span (Within).
func (s Since) Compare(lastUpdated time.Time) int {
	switch {
	case lastUpdated.Before(s.Start):
		return -1
	case lastUpdated.Before(s.Start.Add(s.Span)):
		return 0
	default:
		return 1
	}
}

// Unmodified reports whether a version last updated at lastUpdated is
// unmodified since s: written before the span, or within it when sole
// says that it is the only version of its resource written in the span
// (the version before it, if any, was written before the span), so the
// client's date can only have come from it. sole is called only for a
// version within the span; a version written within it after another is
// taken as modified: of the two, the client's date may be the older's.
func (s Since) Unmodified(lastUpdated time.Time, sole func() bool) bool {
	switch s.Compare(lastUpdated) {
	case -1:
		return true
	case 0:
		return sole()
	default:
		return false
	}
}

// NotModified reports whether a conditional read of a version (its number
// and last update) is answered 304 Not Modified (RFC 9110 13.1.2,
// 13.1.3; http.html#cread). ifNoneMatch is the If-None-Match value ("" for
// none): "*", or a comma-separated list of entity tags, each compared
// weakly with the version's ETag (W/"3" and "3" both name version 3).
// since is the If-Modified-Since date (zero for none), considered only
// without ifNoneMatch: the version is not modified when it is unmodified
// since the date (Since.Unmodified, with sole): a version written in the
// date's second after another is sent again, whose copy the client's
// date may name.
func NotModified(ifNoneMatch string, since Since, version int64, lastUpdated time.Time, sole func() bool) bool {
	if strings.TrimSpace(ifNoneMatch) != "" {
		for _, tag := range strings.Split(ifNoneMatch, ",") {
			tag = strings.TrimSpace(tag)
			if tag == "*" {
				return true
			}
			if v, ok := ParseETag(tag); ok && v == version && strings.HasSuffix(tag, `"`) {
				return true
			}
		}
		return false
	}
	if since.IsZero() {
		return false
	}
	return since.Unmodified(lastUpdated, sole)
}

// IfMatch reports whether an If-Match precondition holds for a resource
// whose current version is version (exists false when there is none: never
// created, or deleted). ifMatch is the header's (or a Bundle entry's
// ifMatch) value, not empty: "*" holds when a current version exists (RFC
// 9110 13.1.1); otherwise a comma-separated list of entity tags, one of
// which must name the current version (W/"3" and "3" alike, as the
// gateway's ETags are weak).
func IfMatch(ifMatch string, version int64, exists bool) bool {
	if !exists {
		return false
	}
	for _, tag := range strings.Split(ifMatch, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" {
			return true
		}
		if v, ok := ParseETag(tag); ok && v == version {
			return true
		}
	}
	return false
}
