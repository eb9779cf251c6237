package fhirwire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// appendJSON appends the JSON encoding of v, a decoded JSON value (maps
// of string to any, []any, string, json.Number, bool, nil), to dst,
// byte for byte as json.Marshal encodes it (object keys sorted, <, > and
// & escaped, invalid UTF-8 replaced), without reflection: NewVersion
// marshals every stored version. Values of other types are encoded by
// json.Marshal. It fails only where json.Marshal fails (an invalid
// json.Number, an unsupported value).
func appendJSON(dst []byte, v any) ([]byte, error) { return appendValue(dst, v, true, false) }

// marshalDoc encodes a decoded resource (Marshal's map case) without
// reflection: resourceType first, the other members in key order (nested
// objects' members all in key order), <, > and & not escaped; otherwise
// byte for byte as encoding/json with SetEscapeHTML(false). NewVersion
// marshals every stored version through it.
func marshalDoc(doc map[string]any) ([]byte, error) {
	return appendValue(make([]byte, 0, 1024), doc, false, true)
}

// appendValue appends v's JSON: html escapes <, > and &; top writes an
// object's resourceType member first (its nested objects' in key order).
func appendValue(dst []byte, v any, html, top bool) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case string:
		return appendString(dst, x, html), nil
	case json.Number:
		s := string(x)
		if s == "" {
			s = "0" // as json.Marshal
		}
		if !validNumber(s) {
			return dst, fmt.Errorf("json: invalid number literal %q", s)
		}
		return append(dst, s...), nil
	case bool:
		return strconv.AppendBool(dst, x), nil
	case map[string]any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		var buf [16]member
		members := buf[:0]
		for k, e := range x {
			members = append(members, member{k, e})
		}
		slices.SortFunc(members, func(a, b member) int {
			switch {
			case top && a.k == "resourceType":
				return -1
			case top && b.k == "resourceType":
				return 1
			}
			return strings.Compare(a.k, b.k)
		})
		dst = append(dst, '{')
		var err error
		for i, m := range members {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, m.k, html)
			dst = append(dst, ':')
			if dst, err = appendValue(dst, m.v, html, false); err != nil {
				return dst, err
			}
		}
		return append(dst, '}'), nil
	case []any:
		if x == nil {
			return append(dst, "null"...), nil
		}
		dst = append(dst, '[')
		var err error
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = appendValue(dst, e, html, false); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(html)
	if err := enc.Encode(v); err != nil {
		return dst, err
	}
	return append(dst, bytes.TrimSuffix(b.Bytes(), []byte("\n"))...), nil
}

// member is an object member being encoded.
type member struct {
	k string
	v any
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaped as json.Marshal does
// (<, > and & only when html).
func appendString(dst []byte, s string, html bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && (!html || b != '<' && b != '>' && b != '&') {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				// Other control characters and the HTML ones <, > and &.
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// validNumber reports whether s is a JSON number (RFC 8259).
func validNumber(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '-' {
		s = s[1:]
		if s == "" {
			return false
		}
	}
	switch {
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = s[1:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && '0' <= s[1] && s[1] <= '9' {
		s = s[2:]
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
			if s == "" {
				return false
			}
		}
		for len(s) > 0 && '0' <= s[0] && s[0] <= '9' {
			s = s[1:]
		}
	}
	return s == ""
}

// AppendString appends s as a JSON string the way Marshal writes a string
// inside a resource (<, > and & not escaped, invalid UTF-8 replaced), for
// encoders that write a resource's bytes directly.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s, false) }

// R4Version reports whether v, the fhirVersion parameter of a FHIR media
// type (http.html#version-parameter, versioning.html#mt-version), names
// FHIR R4: 4.0, or its releases 4.0.0 and 4.0.1. The gateway reads and
// writes R4 only.
func R4Version(v string) bool {
	switch strings.Trim(strings.TrimSpace(v), `"`) {
	case "4.0", "4.0.0", "4.0.1":
		return true
	}
	return false
}

// FHIRVersion returns the fhirVersion parameter of a media type, an
// Accept element or a _format value ("application/fhir+json;
// fhirVersion=4.0"; the name matched case-insensitively, the value
// unquoted), and whether it has one.
func FHIRVersion(mediaType string) (string, bool) {
	_, params, _ := strings.Cut(mediaType, ";")
	for p := range strings.SplitSeq(params, ";") {
		name, v, _ := strings.Cut(p, "=")
		if strings.EqualFold(strings.TrimSpace(name), "fhirVersion") {
			return strings.Trim(strings.TrimSpace(v), `"`), true
		}
	}
	return "", false
}

// JSONFormat reports whether a _format value asks for JSON: json, or a
// JSON media type with or without parameters ("application/fhir+json;
// fhirVersion=4.0"), also with its "+" left unencoded and so read as a
// space. JSON is the only format the gateway writes. (Whether its
// fhirVersion is R4 is FHIRVersion's and R4Version's to tell.)
func JSONFormat(f string) bool {
	_, ok := FormatMediaType(f)
	return ok
}

// FormatMediaType is the media type of an answer asked for with the
// _format value f, when f asks for JSON (JSONFormat): the generic JSON
// type the client named (application/json, text/json: http.html#mime,
// "the server SHOULD respond with the requested mime type"), else
// application/fhir+json (json, application/fhir+json and the older
// application/json+fhir).
func FormatMediaType(f string) (string, bool) {
	mt, _, _ := strings.Cut(f, ";")
	mt = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(mt)), " ", "+")
	switch mt {
	case "json", "application/fhir+json", "application/json+fhir":
		return "application/fhir+json", true
	case "application/json", "text/json":
		return mt, true
	}
	return "", false
}
