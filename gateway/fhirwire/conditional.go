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
