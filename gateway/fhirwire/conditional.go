package fhirwire

import (
	"strconv"
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

// Tags is an If-Match or If-None-Match value as ParseTags read it: "*"
// (Any) or a list of entity-tags.
type Tags struct {
	Any    bool
	opaque []string // the tags' opaque-tags, without quotes
}

// ParseTags reads an If-Match or If-None-Match header (or a Bundle entry's
// ifMatch, ifNoneMatch): "*", or a comma-separated list of entity-tags
// (RFC 9110 8.8.3: [W/]"etagc*"; empty list elements ignored). ok is false
// when v is neither: a bare number (3, W/3) is no entity-tag. Reads and
// writes parse the headers with it alike; a write refuses a value that is
// not well-formed, a read ignores it (the resource is sent).
func ParseTags(v string) (tags Tags, ok bool) {
	if strings.TrimSpace(v) == "*" {
		return Tags{Any: true}, true
	}
	for _, tag := range strings.Split(v, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "" {
			continue
		}
		t := strings.TrimPrefix(tag, "W/")
		if len(t) < 2 || t[0] != '"' || t[len(t)-1] != '"' {
			return Tags{}, false
		}
		t = t[1 : len(t)-1]
		for _, c := range []byte(t) {
			if c == '"' || c < 0x21 || c == 0x7f {
				return Tags{}, false
			}
		}
		tags.opaque = append(tags.opaque, t)
	}
	return tags, len(tags.opaque) > 0
}

// Names reports whether tags names version: "*", or a tag whose
// opaque-tag is the version's ETag's (weak comparison, RFC 9110 8.8.3.2:
// W/"3" and "3" alike). The opaque-tags are compared as strings, so
// "03" and "+3" do not name version 3.
func (t Tags) Names(version int64) bool {
	if t.Any {
		return true
	}
	s := strconv.FormatInt(version, 10)
	for _, o := range t.opaque {
		if o == s {
			return true
		}
	}
	return false
}

// NotModified reports whether a conditional read of a version (its number
// and last update) is answered 304 Not Modified (RFC 9110 13.1.2,
// 13.1.3; http.html#cread). ifNoneMatch is the If-None-Match value ("" for
// none): "*", or a comma-separated list of entity tags, each compared
// weakly with the version's ETag (W/"3" and "3" both name version 3;
// ParseTags), a value that is not well-formed naming none.
// since is the If-Modified-Since date (zero for none), considered only
// without ifNoneMatch: the version is not modified when it is unmodified
// since the date (Since.Unmodified, with sole): a version written in the
// date's second after another is sent again, whose copy the client's
// date may name.
func NotModified(ifNoneMatch string, since Since, version int64, lastUpdated time.Time, sole func() bool) bool {
	if strings.TrimSpace(ifNoneMatch) != "" {
		tags, _ := ParseTags(ifNoneMatch)
		return tags.Names(version)
	}
	if since.IsZero() {
		return false
	}
	return since.Unmodified(lastUpdated, sole)
}
