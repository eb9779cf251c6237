package fhirwire

import (
	"strings"
	"time"
)

// NotModified reports whether a conditional read of a version (its number
// and last update) is answered 304 Not Modified (RFC 9110 13.1.2,
// 13.1.3; http.html#cread). ifNoneMatch is the If-None-Match value ("" for
// none): "*", or a comma-separated list of entity tags, each compared
// weakly with the version's ETag (W/"3" and "3" both name version 3).
// since is the If-Modified-Since time (zero for none), considered only
// without ifNoneMatch: a version last updated at or before it, to the
// second as HTTP dates go, is not modified.
func NotModified(ifNoneMatch string, since time.Time, version int64, lastUpdated time.Time) bool {
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
	return !lastUpdated.Truncate(time.Second).After(since)
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
