package mapping

import (
	"crypto/sha1"
	"fmt"
	"net/url"
	"strings"
)

// DefaultIdentifierBase is the identifier namespace used when a deployment
// does not configure its own (see Options.IdentifierBase).
const DefaultIdentifierBase = Canonical + "/sid"

// Identifier namespaces, one per kind of thing a source system numbers.
const (
	nsPatient      = "patient"
	nsPractitioner = "practitioner"
	nsAssessment   = "assessment"
	nsVitals       = "vitals"
	nsSession      = "infusion-session"
	nsAdverseEvent = "adverse-event"
)

// ident is an identifier system and value pair.
type ident struct{ System, Value string }

// identSystem returns the identifier system for things of namespace ns
// numbered by source system src: <base>/<src>/<ns>. Source system names are
// restricted by the schema to lowercase letters, digits and '-', so the URL
// needs no escaping.
func identSystem(base, src, ns string) string {
	return strings.TrimRight(base, "/") + "/" + src + "/" + ns
}

// child derives a child resource's identifier value from its parent's, e.g.
// "A778" + "44250-9" -> "A778-44250-9". Values never contain '|', ',' or '$'
// (record ids are restricted by the schema and suffixes are codes).
func (id ident) child(suffix string) ident {
	return ident{System: id.System, Value: id.Value + "-" + suffix}
}

// uuid derives a stable name-based UUID (RFC 4122 version 5 layout) from the
// identifier, so that the same record always maps to the same urn:uuid
// fullUrls and the same deterministic resource ids.
func (id ident) uuid() string {
	h := sha1.Sum([]byte(id.System + "|" + id.Value))
	h[6] = (h[6] & 0x0f) | 0x50
	h[8] = (h[8] & 0x3f) | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// fullURL is the urn:uuid fullUrl of the resource carrying this identifier.
func (id ident) fullURL() string { return "urn:uuid:" + id.uuid() }

// search is the identifier token for a conditional request, e.g.
// "identifier=https://...|A778". Values need no escaping (see child).
func (id ident) search() string { return "identifier=" + id.System + "|" + id.Value }

// token is system|value as a token search value of a conditional
// request's criteria, for values from outside (a hospital MRN) that may
// hold any character: FHIR's escapes (search.html#escaping: \ , | $) for
// what the token syntax gives a meaning, then percent-encoding for what a
// query string does (& + = # % ; space, \ and anything outside ASCII's
// visible characters). A receiver decodes the query, then splits it.
func token(system, value string) string {
	return queryEscape(searchEscape(system)) + "|" + queryEscape(searchEscape(value))
}

// searchEscape escapes \ , | and $ with a backslash (search.html#escaping).
func searchEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `,`, `\,`, `|`, `\|`, `$`, `\$`).Replace(s)
}

// queryEscape percent-encodes the bytes of s that a query string decoder
// would read as something else, and every byte outside ASCII's visible
// characters; a URL's ordinary characters (: / . - _ ~ and the like) and
// the token syntax's , | $ stay as they are, readable.
func queryEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`&+=#%;\"<>^{}[]`+"`", c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// RecordSystem is the identifier system of the source records of one kind
// from one clinic system, as the gateway's Provenance names them:
// <identifier base>/<source>/<kind>-record ("" base: DefaultIdentifierBase).
func RecordSystem(base, source string, kind Kind) string {
	if base == "" {
		base = DefaultIdentifierBase
	}
	return identSystem(base, source, string(kind)+"-record")
}

// PatientSystem is the identifier system of the Patients made from one
// clinic system's records (their clinic patient ids):
// <identifier base>/<source>/patient ("" base: DefaultIdentifierBase).
func PatientSystem(base, source string) string {
	if base == "" {
		base = DefaultIdentifierBase
	}
	return identSystem(base, source, nsPatient)
}

// CheckIdentifierBase reports why base cannot be an identifier base (nil
// when it can, "" included: the default): the identifier systems minted
// from it must be absolute http(s) URLs, without query or fragment, and
// with nothing a URL would need escaped (they are compared as text and
// written into search criteria as they are).
func CheckIdentifierBase(base string) error {
	if base == "" {
		return nil
	}
	u, err := url.Parse(base)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		return fmt.Errorf("the identifier base must be an absolute http or https URL, such as %s", DefaultIdentifierBase)
	case u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(base, "?#|, $\\\"<>{}`^"):
		return fmt.Errorf("the identifier base must be a plain URL: no query, fragment, spaces or any of |,$\\\"<>{}`^")
	}
	return nil
}

// ResourceUUID is the name-based UUID the mapping derives from an
// identifier: an AdverseEvent's deterministic id, and the urn:uuid
// fullUrl of the resource carrying that identifier.
func ResourceUUID(system, value string) string { return ident{System: system, Value: value}.uuid() }
