package search

import (
	"net/url"
	"strings"
	"unicode/utf8"
)

// ParseQuery decodes a raw query string of a search or an operation on
// resourceType (a URL's query, an application/x-www-form-urlencoded search
// form, a Bundle entry's search, conditional criteria) into its parameters.
// It is the one rule every entry point applies, strict where url.ParseQuery
// and echo are lenient: a name or value whose percent-encoding is malformed
// (a lone %, %ZZ), whose decoded bytes are not UTF-8 (%FF), or that holds a
// ';' (which some servers and proxies take as a separator) fails the whole
// query instead of being dropped or read as empty, since a criterion that
// silently vanished widens a search to records nobody asked for. "+" is a
// space, as in HTML forms. Returns an *Error search-value-invalid whose
// Param is the parameter's shown name (ShownName) when the name decodes.
func ParseQuery(resourceType, raw string) (url.Values, error) {
	vals := url.Values{}
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		if part == "" {
			continue
		}
		rk, rv, _ := strings.Cut(part, "=")
		k, ok := decodeComponent(rk)
		if !ok {
			return nil, &Error{Rule: RuleValueInvalid, Message: "a parameter name is not percent-encoded UTF-8 " +
				"(RFC 3986): write a literal %, & or ; as %25, %26 or %3B"}
		}
		v, ok := decodeComponent(rv)
		if !ok {
			return nil, &Error{Param: ShownName(resourceType, k), Rule: RuleValueInvalid,
				Message: "the value of " + shownOrSome(resourceType, k) + " is not percent-encoded UTF-8 (RFC 3986): " +
					"write a literal %, & or ; as %25, %26 or %3B"}
		}
		vals[k] = append(vals[k], v)
	}
	return vals, nil
}

// decodeComponent decodes one name or value of a query string.
func decodeComponent(s string) (string, bool) {
	if strings.IndexByte(s, ';') >= 0 {
		return "", false
	}
	d, err := url.QueryUnescape(s)
	if err != nil || !utf8.ValidString(d) {
		return "", false
	}
	return d, true
}

// shownOrSome is the parameter key's shown name for a message, or "a
// parameter" when the gateway does not know it.
func shownOrSome(resourceType, key string) string {
	if n := ShownName(resourceType, key); n != "" {
		return "the parameter " + n
	}
	return "a parameter"
}
