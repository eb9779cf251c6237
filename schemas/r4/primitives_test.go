package r4

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// primitiveFiles maps the file name stems of
// fhir-primitives/r4-validation-primitives to FHIR types.
var primitiveFiles = map[string]string{
	"base64_binary": "base64Binary", "boolean": "boolean", "canonical": "canonical",
	"code": "code", "date": "date", "date_time": "dateTime", "decimal": "decimal",
	"id": "id", "instant": "instant", "integer": "integer", "markdown": "markdown",
	"oid": "oid", "positive_int": "positiveInt", "reference": "Reference",
	"string": "string", "time": "time", "unsigned_int": "unsignedInt",
	"uri": "uri", "url": "url", "uuid": "uuid", "xhtml": "xhtml",
}

// primitiveExceptions lists values whose expectation in the source data
// (Google's FHIR test data) differs from this package, with the reason.
var primitiveExceptions = map[string]string{
	// JSON null stands for "no value" in the source harness; in FHIR JSON
	// an element set to null is an error (nulls are only allowed inside
	// arrays aligned with an "_element" array).
	"*:null": "null is not a value in FHIR JSON",
	// An empty narrative is rejected: FHIR JSON forbids empty strings and
	// Narrative.div must be a <div> element (txt-1).
	`xhtml:""`: "empty narrative",
	// The harness checks the value alone; in a resource the div declares
	// the XHTML namespace (R4 narrative.html, json.html), as the HL7
	// validator requires.
	`xhtml:"<div>text</div>"`: "a narrative div without xmlns",
}

// primitiveDoc embeds a raw JSON value as the value of an element of the
// given type, inside a Bundle (where conditional references are allowed)
// and a Basic resource with a contained Practitioner "p1" (for "#p1").
func primitiveDoc(typ string, raw []byte) []byte {
	if typ == "xhtml" {
		return []byte(`{"resourceType":"Basic","code":{"text":"x"},"text":{"status":"generated","div":` + string(raw) + `}}`)
	}
	return []byte(`{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:4e6a2f0c-7f0e-4c3f-9a7a-0b7c2d1e5f60","resource":` +
		`{"resourceType":"Basic","contained":[{"resourceType":"Practitioner","id":"p1"}],"code":{"text":"x"},"author":{"reference":"#p1"},` +
		`"extension":[{"url":"http://example.org/ext","value` + upperFirst(typ) + `":` + string(raw) + `}]}}]}`)
}

func TestPrimitiveFiles(t *testing.T) {
	dir := sharedTestdata(t, "fhir-primitives", "r4-validation-primitives")
	files, _ := filepath.Glob(filepath.Join(dir, "*.ndjson"))
	if len(files) == 0 {
		t.Skip("no primitive files")
	}
	v := testValidator()
	counts := map[string][2]int{}
	skipped := 0
	for _, f := range files {
		base := filepath.Base(f)
		stem, wantValid := strings.TrimSuffix(base, ".valid.ndjson"), true
		if stem == base {
			stem, wantValid = strings.TrimSuffix(base, ".invalid.ndjson"), false
		}
		typ, ok := primitiveFiles[stem]
		if !ok {
			t.Errorf("%s: unmapped primitive file", base)
			continue
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			why, ok := primitiveExceptions[typ+":"+string(line)]
			if !ok && wantValid {
				why, ok = primitiveExceptions["*:"+string(line)]
			}
			if ok {
				t.Logf("%s %s: exception (%s)", base, line, why)
				skipped++
				continue
			}
			res := v.Validate(primitiveDoc(typ, line))
			c := counts[typ]
			if res.Valid() != wantValid {
				t.Errorf("%s: value %s: valid=%v, want %v (issues %+v)", base, line, res.Valid(), wantValid, res.Issues)
			} else if wantValid {
				c[0]++
			} else {
				c[1]++
			}
			counts[typ] = c
		}
	}
	total := [2]int{}
	for _, c := range counts {
		total[0] += c[0]
		total[1] += c[1]
	}
	t.Logf("primitive cases: %d valid accepted, %d invalid rejected, over %d types (%d exceptions skipped)",
		total[0], total[1], len(counts), skipped)
}
