package r4

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// FuzzValidate checks that Validate never panics, that Valid agrees with
// the issues, and that the JSON syntax verdict agrees with encoding/json.
// Seeds come from the rule table and, when present, the shared test data.
func FuzzValidate(f *testing.F) {
	for _, c := range ruleCases {
		f.Add([]byte(c.doc))
	}
	if dir := sharedTestdataDir(); dir != "" {
		var files []string
		for _, pattern := range []string{
			"fhir-test-cases/cases/*.json",
			"fhir-test-cases/cases/*/*.json",
			"fhir-primitives/jsonformat/*.json",
		} {
			m, _ := filepath.Glob(filepath.Join(dir, pattern))
			files = append(files, m...)
		}
		for _, name := range files {
			if b, err := os.ReadFile(name); err == nil && len(b) < 256<<10 {
				f.Add(b)
			}
		}
		prims, _ := filepath.Glob(filepath.Join(dir, "fhir-primitives/r4-validation-primitives/*.ndjson"))
		for _, name := range prims {
			b, _ := os.ReadFile(name)
			for line := range bytes.Lines(b) {
				f.Add(primitiveDoc("string", bytes.TrimSpace(line)))
			}
		}
	}
	v := New(Options{})
	f.Fuzz(func(t *testing.T, doc []byte) {
		res := v.Validate(doc)
		hasError := false
		syntax := false
		for _, is := range res.Issues {
			if is.Rule == "" || is.Code == "" || is.Message == "" {
				t.Fatalf("incomplete issue %+v", is)
			}
			if is.Severity == SeverityError {
				hasError = true
			}
			switch is.Rule {
			case "json-syntax", "json-empty", "json-depth":
				syntax = true
			}
		}
		if res.Valid() == hasError {
			t.Fatalf("Valid()=%v but error issues present=%v", res.Valid(), hasError)
		}
		if len(res.Issues) > MaxIssues+1 {
			t.Fatalf("%d issues exceed the cap", len(res.Issues))
		}
		plain := bytes.TrimPrefix(doc, []byte("\xef\xbb\xbf"))
		if !syntax && !json.Valid(plain) {
			t.Fatalf("syntax accepted but encoding/json rejects the document")
		}
		if syntax && !hasDepthIssue(res) && len(bytes.TrimSpace(plain)) > 0 && json.Valid(plain) &&
			utf8.Valid(plain) && !surrogateEscape(plain) {
			t.Fatalf("syntax rejected but encoding/json accepts the document: %+v", res.Issues)
		}
	})
}

func hasDepthIssue(r *Result) bool {
	for _, is := range r.Issues {
		if is.Rule == "json-depth" {
			return true
		}
	}
	return false
}

// surrogateEscape reports whether b may hold a \uD800-\uDFFF escape, which
// encoding/json tolerates unpaired and this package rejects.
func surrogateEscape(b []byte) bool {
	for i := bytes.Index(b, []byte(`\u`)); i >= 0 && i+3 < len(b); {
		if c := b[i+2] | 0x20; c == 'd' {
			if h := b[i+3] | 0x20; h == '8' || h == '9' || (h >= 'a' && h <= 'f') {
				return true
			}
		}
		j := bytes.Index(b[i+2:], []byte(`\u`))
		if j < 0 {
			break
		}
		i += 2 + j
	}
	return false
}
