package fhirwire

import (
	"bytes"
	"encoding/json"
)

// How the gateway writes FHIR JSON, everywhere it writes it (stored
// resources, responses, mapped resources, Bundles to EHRs): compact,
// resourceType first (as the spec's examples, HAPI and Medplum write it),
// the other members of a decoded resource in key order, and no HTML escaping
// (a URL's & stays &, not \u0026: JSON does not need it and FHIR servers
// write it plain).

// Marshal renders v as compact FHIR JSON: no HTML escaping, and when v's
// JSON is an object with a resourceType member, that member first. A
// map[string]any (a decoded resource) has its other members in key order.
func Marshal(v any) ([]byte, error) {
	switch x := v.(type) {
	case map[string]any:
		return marshalDoc(x)
	case json.Marshaler:
		// Its own JSON (samply's resources), compact and HTML-escaped,
		// resourceType last: taken as it is, without encoding/json's
		// second pass over it.
		raw, err := x.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return ResourceTypeFirst(UnescapeHTML(raw)), nil
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	out := bytes.TrimSuffix(b.Bytes(), []byte("\n"))
	// Types that marshal themselves (samply's resources) escape HTML and
	// write resourceType last: undo both.
	return ResourceTypeFirst(UnescapeHTML(out)), nil
}

// MarshalIndent is Marshal indented by two spaces (for _pretty and the CLI).
func MarshalIndent(v any) ([]byte, error) {
	raw, err := Marshal(v)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// UnescapeHTML turns the \u0026, \u003c and \u003e escapes encoding/json
// writes into &, < and >, leaving every other escape as it is.
func UnescapeHTML(raw []byte) []byte {
	if !bytes.Contains(raw, []byte(`\u00`)) {
		return raw
	}
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			out = append(out, c)
			continue
		}
		if raw[i+1] == 'u' && i+5 < len(raw) {
			switch string(raw[i+2 : i+6]) {
			case "0026":
				out, i = append(out, '&'), i+5
				continue
			case "003c":
				out, i = append(out, '<'), i+5
				continue
			case "003e":
				out, i = append(out, '>'), i+5
				continue
			}
		}
		// Any other escape: both bytes as they are (so an escaped
		// backslash is never taken for the start of an escape).
		out = append(out, c, raw[i+1])
		i++
	}
	return out
}

// ResourceTypeFirst moves a compact JSON object's top-level resourceType
// member to the front (it returns raw unchanged when it is already first,
// absent, or raw is no object).
func ResourceTypeFirst(raw []byte) []byte {
	if len(raw) < 2 || raw[0] != '{' || bytes.HasPrefix(raw, []byte(`{"resourceType":`)) {
		return raw
	}
	// Find the top-level members' boundaries.
	start, depth, inStr := 1, 0, false
	for i := 1; i < len(raw)-1; i++ {
		c := raw[i]
		switch {
		case inStr:
			if c == '\\' {
				i++
			} else if c == '"' {
				inStr = false
			}
		case c == '"':
			inStr = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
		case c == ',' && depth == 0:
			if m := raw[start:i]; bytes.HasPrefix(m, []byte(`"resourceType":`)) {
				return moveFirst(raw, start, i+1)
			}
			start = i + 1
		}
	}
	if m := raw[start : len(raw)-1]; bytes.HasPrefix(m, []byte(`"resourceType":`)) && start > 1 {
		// The last member: drop the comma before it.
		out := make([]byte, 0, len(raw))
		out = append(out, '{')
		out = append(out, m...)
		out = append(out, ',')
		out = append(out, raw[1:start-1]...)
		return append(out, '}')
	}
	return raw
}

// moveFirst moves raw[from:to] (a member and its comma) to the front.
func moveFirst(raw []byte, from, to int) []byte {
	out := make([]byte, 0, len(raw))
	out = append(out, '{')
	out = append(out, raw[from:to]...)
	out = append(out, raw[1:from]...)
	out = append(out, raw[to:]...)
	return out
}

// Decode decodes a resource as the gateway works on it: a map, numbers
// kept exact (json.Number, so a decimal's digits survive to the bytes
// stored).
func Decode(raw []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, err
	}
	return m, nil
}

// Copy copies decoded JSON (objects, arrays and the values in them; a
// json.Number stays the same number), deeply enough to change the copy.
func Copy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = Copy(e)
		}
		return m
	case []any:
		a := make([]any, len(x))
		for i, e := range x {
			a[i] = Copy(e)
		}
		return a
	}
	return v
}
