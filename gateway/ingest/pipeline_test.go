package ingest_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// edgeValues are values at the edges of what FHIR can hold, put in turn
// into every scalar of every example record: control characters, years and
// time-zone offsets outside a FHIR instant's range, leap seconds, malformed
// urn:uuid: and urn:oid: URIs, whitespace, long text, extreme numbers.
var edgeValues = []any{
	"\u0000", "a\u0001b", "\u001f", "a\tb\r\nc", "a\u007fb", "\u00a0", "x\u2028y", " a ", "a  b", "é",
	"urn:uuid:zz", "urn:uuid:0F8FAD5B-D9CB-469F-A165-70867728950E", "urn:oid:x", "urn:oid:1.02", "urn:oid:2.16.840.1",
	"http://a b", "urn:x", "http://x",
	"0000-01-01", "0001-01-01", "9999-12-31", "2026-02-29", "2024-02-29",
	"0000-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
	"2026-01-01T00:00:00+14:00", "2026-01-01T00:00:00-14:00", "2026-01-01T00:00:00+14:01",
	"2026-01-01T00:00:00-14:30", "2026-01-01T00:00:00+23:59", "2026-01-01T00:00:00-00:00",
	"2026-12-31T23:59:60Z", "2026-06-30T23:59:59.999999999Z",
	strings.Repeat("x", 1100),
	1e300, -1e300, 1e-300, 0.0, -1.0, 1.5, 3.0000000000000004, 2147483648.0, 9007199254740993.0, true, false,
	1e301, 1.7976931348623157e308, 1e-301, 5e-324, json.Number("0.1000000000000000000001"), json.Number("12345678901234567890"),
}

// TestSchemaAdmitsOnlyValidFHIR: a record its schema admits and whose
// clinical rules hold maps to resources that pass the R4 definitions and
// the gateway's profiles. Anything else would be a client's mistake
// answered as the gateway's failure (a 500). Each example record gets each
// edge value in each of its scalars in turn; every outcome must be a
// schema issue, a broken rule, or valid FHIR.
func TestSchemaAdmitsOnlyValidFHIR(t *testing.T) {
	p, err := ingest.NewPipeline(mapping.Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := engine.NewValidator()
	var cases, mapped int
	err = fs.WalkDir(schemas.Examples(), "examples", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		kind := mapping.Kind(strings.Split(path, "/")[1])
		orig, err := fs.ReadFile(schemas.Examples(), path)
		if err != nil {
			return err
		}
		var doc any
		if err := json.Unmarshal(orig, &doc); err != nil {
			return err
		}
		for _, l := range scalars(doc, nil) {
			ptr := "/" + strings.Join(l.path, "/")
			for _, val := range edgeValues {
				if !fits(l.value, val) {
					continue
				}
				var mut any
				_ = json.Unmarshal(orig, &mut)
				body, _ := json.Marshal(replace(mut, l.path, val))
				cases++
				if err := p.ValidateRecord(kind, body); err != nil {
					var ve *schemas.ValidationError
					if !errors.As(err, &ve) {
						t.Errorf("%s %s = %#v: schema check failed with %v, not a ValidationError", path, ptr, val, err)
					}
					continue
				}
				res, err := mapValid(kind, body)
				if err != nil {
					var re *mapping.RuleError
					if !errors.As(err, &re) {
						t.Errorf("%s %s = %#v: schema-valid record failed to map: %v", path, ptr, val, err)
					}
					continue
				}
				mapped++
				_, docs, err := p.MarshalDecoded(res)
				if err != nil {
					t.Errorf("%s %s = %#v: admitted record maps to invalid FHIR: %v", path, ptr, val, err)
					continue
				}
				for i, d := range docs {
					if d == nil {
						continue
					}
					if err := v.Profiles(d, fmt.Sprintf("Bundle.entry[%d].resource", i)); err != nil {
						t.Errorf("%s %s = %#v: admitted record breaks a profile: %v", path, ptr, val, err)
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The test means something only if many mutations get through to the
	// mapping (not all rejected by the schema).
	if cases == 0 || mapped < cases/10 {
		t.Fatalf("%d of %d mutated records mapped; the test exercises too little", mapped, cases)
	}
	t.Logf("%d mutated records, %d mapped", cases, mapped)
}

// leaf is a scalar of a document and where it is (its JSON pointer's
// tokens, array indexes in decimal).
type leaf struct {
	path  []string
	value any
}

// scalars lists doc's strings, numbers and booleans (in an array, those of
// its first item: the others have its shape).
func scalars(doc any, path []string) []leaf {
	switch x := doc.(type) {
	case map[string]any:
		var out []leaf
		for k, c := range x {
			out = append(out, scalars(c, append(path[:len(path):len(path)], k))...)
		}
		return out
	case []any:
		if len(x) > 0 {
			return scalars(x[0], append(path[:len(path):len(path)], "0"))
		}
		return nil
	case nil:
		return nil
	}
	return []leaf{{path, doc}}
}

// fits reports whether val is worth putting in place of orig: a value of
// another JSON type is only ever a schema.type issue, and a date-time
// goes only where the example has a date or date-time, text elsewhere.
func fits(orig, val any) bool {
	if _, ok := val.(json.Number); ok {
		val = 0.0 // a number literal fits where a number does
	}
	o, ok1 := orig.(string)
	v, ok2 := val.(string)
	if !ok1 || !ok2 {
		return fmt.Sprintf("%T", orig) == fmt.Sprintf("%T", val)
	}
	return dateLike.MatchString(o) == dateLike.MatchString(v)
}

// dateLike matches dates and date-times.
var dateLike = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}`)

// replace sets the value at path (as scalars names it) in doc to val.
func replace(doc any, parts []string, val any) any {
	if len(parts) == 0 {
		return val
	}
	switch x := doc.(type) {
	case map[string]any:
		x[parts[0]] = replace(x[parts[0]], parts[1:], val)
	case []any:
		var i int
		_, _ = fmt.Sscan(parts[0], &i)
		x[i] = replace(x[i], parts[1:], val)
	}
	return doc
}

// mapValid checks the clinical rules of a record ValidateRecord accepted
// and maps it with the default options, as ingest does after the schema
// (*mapping.RuleError for a broken rule).
func mapValid(kind mapping.Kind, doc []byte) (*mapping.Result, error) {
	rec, err := ingest.Decode(kind, doc)
	if err != nil {
		return nil, err
	}
	return mapping.Map(rec, mapping.Options{})
}
