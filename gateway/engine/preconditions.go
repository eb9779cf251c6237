package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Preconditions are the conditional request headers of an update, patch
// or delete (RFC 9110 13.1), as the client sent them ("" for a header it
// did not send; several lines of one header joined with commas). The
// engine evaluates them inside the write's database transaction, against
// the version the write would replace, so that two writers cannot both
// pass them. If-Modified-Since and If-Range apply to GET and HEAD only
// (RFC 9110 13.1.3, 13.1.5) and are not among them.
type Preconditions struct {
	// IfMatch is "*" or a list of entity tags (W/"3"): the write goes
	// ahead only when one names the resource's latest version (a deletion
	// included, so a deleted resource is restored only when nothing
	// happened since its deletion); "*" when a current version exists.
	IfMatch string
	// IfNoneMatch is "*" (the write goes ahead only when no current
	// version exists: create only) or a list of entity tags, none of
	// which may name the latest version.
	IfNoneMatch string
	// IfUnmodifiedSince is an HTTP-date: the write goes ahead only when
	// the resource was not modified after it (ignored with IfMatch, and
	// for a resource that never existed: RFC 9110 13.1.4).
	IfUnmodifiedSince string
	// IfNoneExist is the If-None-Exist header: the criteria of a
	// conditional create (Create takes them as an argument of their own).
	// An update, patch or delete has no use for it, and a client that sent
	// it meant a guard the write would not apply: Invalid
	// precondition-unsupported.
	IfNoneExist string
	// Empty names the headers among these the client sent with no value
	// ("If-Match", several separated by ", "). An empty header is not one
	// left out: If-Match with no entity tag names no version, If-None-Exist
	// no criteria, and a client whose ETag or criteria variable came out
	// empty would otherwise get the lost update or the duplicate the header
	// was sent to prevent. Invalid precondition-invalid, naming them.
	Empty string
}

// empty fails a request that sent a conditional header with no value
// (Preconditions.Empty).
func (p Preconditions) empty() error {
	if p.Empty == "" {
		return nil
	}
	return outcome.New(outcome.Invalid, "value", "precondition-invalid",
		"the "+p.Empty+" header is sent with no value, which names no version or criteria (RFC 9110 13.1; "+
			"http.html#ccreate); send the value, or leave the header out; nothing was written")
}

// conditions are Preconditions parsed: ifMatch and ifNoneMatch are
// well-formed lists (nil for none), unmodifiedSince is zero for none.
type conditions struct {
	ifMatch, ifNoneMatch *fhirwire.Tags
	unmodifiedSince      fhirwire.Since
	// versionAlways has the write make a version even when it changes
	// nothing (Entry.VersionAlways).
	versionAlways bool
	// blind is set for a client's write whose caller may not read the
	// type (mayRead: a client with u or d alone): its answers disclose no
	// version it did not write. A failed precondition says which failed
	// but not what the latest version is (or that it is a deletion); an
	// update writes a version even when it changes nothing (the
	// "unchanged" answer would carry the stored version, and tell the
	// client that what it sent is what is stored); a delete of a deleted
	// resource answers without the deletion's version (Result.Gone).
	blind bool
}

// parse checks and reads p. In a Bundle entry (entry) the fields are the
// entry's request.ifMatch and request.ifNoneMatch (R4 has no
// ifUnmodifiedSince), which a problem names. A header or field that is
// not well-formed is Invalid precondition-invalid: a write the client
// meant to guard goes ahead only with a guard the gateway understood.
func (p Preconditions) parse(entry bool) (conditions, error) {
	fail := func(header, field, want string) error {
		if entry {
			return outcome.New(outcome.Invalid, "value", "precondition-invalid",
				"request."+field+" is not "+want+"; nothing was written").At("request." + field)
		}
		return outcome.New(outcome.Invalid, "value", "precondition-invalid",
			"the "+header+" header is not "+want+" (RFC 9110 13.1); nothing was written")
	}
	const tags = `"*" or a list of entity tags such as W/"3"`
	var c conditions
	if err := p.empty(); err != nil {
		return c, err
	}
	if strings.TrimSpace(p.IfNoneExist) != "" {
		return c, outcome.New(outcome.Invalid, "not-supported", "precondition-unsupported",
			"If-None-Exist makes a POST a conditional create (http.html#ccreate); an update, patch or delete takes "+
				"none and nothing was written: for a conditional update PUT /fhir/{type}?criteria, to create only "+
				"when the resource does not exist PUT it at its id with If-None-Match: *")
	}
	if strings.TrimSpace(p.IfMatch) != "" {
		t, ok := fhirwire.ParseTags(p.IfMatch)
		if !ok {
			return c, fail("If-Match", "ifMatch", tags)
		}
		c.ifMatch = &t
	}
	if strings.TrimSpace(p.IfNoneMatch) != "" {
		t, ok := fhirwire.ParseTags(p.IfNoneMatch)
		if !ok {
			return c, fail("If-None-Match", "ifNoneMatch", tags)
		}
		c.ifNoneMatch = &t
	}
	if v := strings.TrimSpace(p.IfUnmodifiedSince); v != "" {
		t, ok := parseHTTPDate(v)
		if !ok {
			return c, fail("If-Unmodified-Since", "ifUnmodifiedSince", "one HTTP-date such as Sun, 06 Nov 1994 08:49:37 GMT")
		}
		c.unmodifiedSince = fhirwire.HTTPDate(t)
	}
	return c, nil
}

// httpDateLayouts are the forms of an HTTP-date (RFC 9110 5.6.7): IMF-fixdate
// and the two obsolete ones a recipient must accept.
var httpDateLayouts = []string{"Mon, 02 Jan 2006 15:04:05 GMT", "Monday, 02-Jan-06 15:04:05 GMT", "Mon Jan _2 15:04:05 2006"}

// parseHTTPDate reads an HTTP-date (UTC).
func parseHTTPDate(v string) (time.Time, bool) {
	for _, layout := range httpDateLayouts {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// versionReader reads one version of a resource (store.Tx).
type versionReader interface {
	VRead(typ, id string, version int64) (*store.Resource, error)
}

// check evaluates the conditions in RFC 9110 13.2.2's order against
// latest, the resource's latest version as the write's transaction sees
// it: nil when the tenant holds none, Deleted when it is a deletion;
// versions reads the version before it when If-Unmodified-Since names
// latest's second. A false condition is PreconditionFailed, saying which
// and why.
func (c conditions) check(latest *store.Resource, versions versionReader) error {
	current := latest != nil && !latest.Deleted
	if c.ifMatch != nil {
		if !ifMatch(*c.ifMatch, latest) {
			if c.blind {
				return outcome.New(outcome.PreconditionFailed, "conflict", "version-mismatch",
					"If-Match does not name the resource's latest version (or the resource does not exist); "+
						"the access token's scopes do not allow reading it, so its version is not told")
			}
			return errIfMatch(*c.ifMatch, latest)
		}
	} else if !c.unmodifiedSince.IsZero() && latest != nil &&
		!c.unmodifiedSince.Unmodified(latest.LastUpdated, func() bool {
			return soleIn(c.unmodifiedSince, latest, func(v int64) (*store.Resource, error) {
				return versions.VRead(latest.Type, latest.ID, v)
			})
		}) {
		return outcome.New(outcome.PreconditionFailed, "conflict", "modified-since",
			"the resource was modified after the If-Unmodified-Since date"+c.deletedNote(latest)+" (or more than one "+
				"of its versions was written in the date's second, which the date cannot tell apart); read it again, "+
				"and send its ETag in If-Match")
	}
	if c.ifNoneMatch != nil {
		if c.ifNoneMatch.Any {
			if current {
				return outcome.New(outcome.PreconditionFailed, "duplicate", "resource-exists",
					"If-None-Match: * writes only a resource that does not exist, and this one does; "+
						"to change it, send If-Match with its ETag instead")
			}
		} else if latest != nil && c.ifNoneMatch.Names(latest.Version) {
			if c.blind {
				return outcome.New(outcome.PreconditionFailed, "conflict", "version-matched",
					"If-None-Match names the resource's latest version, so nothing was written")
			}
			return outcome.New(outcome.PreconditionFailed, "conflict", "version-matched",
				fmt.Sprintf("If-None-Match names the resource's latest version (%d)%s, so nothing was written",
					latest.Version, c.deletedNote(latest)))
		}
	}
	return nil
}

// soleIn reports whether r is the only version of its resource written
// within since's span (fhirwire.Since.Unmodified): version 1, or the
// version before it (read by vread) was written before the span. A version
// before it that cannot be read counts as written within the span: the
// conservative answer (a conditional read sends the resource, a guarded
// write is 412).
func soleIn(since fhirwire.Since, r *store.Resource, vread func(version int64) (*store.Resource, error)) bool {
	if r.Version <= 1 {
		return true
	}
	prev, err := vread(r.Version - 1)
	return err == nil && prev != nil && since.Compare(prev.LastUpdated) < 0
}

// SoleIn reports whether r, the current version of a resource the caller
// of sc read, is the only version of it written within since's span, for
// fhirwire.NotModified: a conditional read whose If-Modified-Since names
// the second r was written in is 304 only then (the date cannot have come
// from an earlier version). An error reading the version before r is
// false: the resource is sent again.
func (e *Engine) SoleIn(ctx context.Context, sc *auditlog.Scope, r *store.Resource, since fhirwire.Since) bool {
	st := e.reader(sc, reads{})
	return soleIn(since, r, func(v int64) (*store.Resource, error) { return st.VRead(ctx, r.Type, r.ID, v) })
}

// ifMatch reports whether an If-Match list holds for latest (see
// Preconditions.IfMatch).
func ifMatch(list fhirwire.Tags, latest *store.Resource) bool {
	if latest == nil {
		return false
	}
	if list.Any {
		return !latest.Deleted
	}
	return list.Names(latest.Version)
}

// deletedNote says, for a 412, that latest is a deletion (not to a blind
// caller).
func (c conditions) deletedNote(latest *store.Resource) string {
	if latest != nil && latest.Deleted && !c.blind {
		return fmt.Sprintf(" (the resource is deleted: its deletion is version %d)", latest.Version)
	}
	return ""
}

// errIfMatch is the version-mismatch failure of an If-Match list for
// latest (http.html#concurrency), saying what the latest version is.
func errIfMatch(list fhirwire.Tags, latest *store.Resource) error {
	var msg string
	switch {
	case latest == nil:
		msg = "If-Match names a version, but the resource does not exist; leave If-Match out to create it " +
			"(with If-None-Match: * to create it only if it still does not exist)"
	case latest.Deleted && list.Any:
		msg = fmt.Sprintf("If-Match: * holds only for a resource that exists, and this one is deleted (its deletion is "+
			"version %d); to restore it only if nothing changed since, send If-Match: W/\"%d\"", latest.Version, latest.Version)
	case latest.Deleted:
		msg = fmt.Sprintf("If-Match does not name the resource's latest version: it is deleted, and its deletion is "+
			"version %d (If-Match: W/\"%d\" restores it if nothing changed since)", latest.Version, latest.Version)
	default:
		msg = fmt.Sprintf("If-Match does not name the current version (%d); read the resource again and send its ETag",
			latest.Version)
	}
	return outcome.New(outcome.PreconditionFailed, "conflict", "version-mismatch", msg)
}
