package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/xeipuuv/gojsonschema"
)

var (
	testSetOnce sync.Once
	testSet     *Set
	testSetErr  error
)

// set returns the compiled schemas, shared by all tests.
func set(t testing.TB) *Set {
	t.Helper()
	testSetOnce.Do(func() { testSet, testSetErr = New() })
	if testSetErr != nil {
		t.Fatalf("New: %v", testSetErr)
	}
	return testSet
}

// example returns the bytes of examples/<kind>/<name>.
func example(t testing.TB, kind, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(Examples(), path.Join("examples", kind, name))
	if err != nil {
		t.Fatalf("example %s/%s: %v", kind, name, err)
	}
	return b
}

// exampleFiles lists every example as kind -> file paths.
func allExamples(t testing.TB) map[string][]string {
	t.Helper()
	out := make(map[string][]string)
	err := fs.WalkDir(Examples(), "examples", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		parts := strings.Split(p, "/")
		if len(parts) != 3 || !strings.HasSuffix(p, ".json") {
			t.Errorf("unexpected file in examples: %s", p)
			return nil
		}
		out[parts[1]] = append(out[parts[1]], p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// edit is one change to a decoded document: set the value at a JSON pointer
// (creating the last object key or replacing an array element) or delete it.
type edit struct {
	ptr    string
	value  any
	delete bool
}

func put(ptr string, v any) edit { return edit{ptr: ptr, value: v} }
func del(ptr string) edit        { return edit{ptr: ptr, delete: true} }

// mutate applies edits to a copy of an example and returns the new document.
func mutate(t testing.TB, kind, name string, edits ...edit) []byte {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(example(t, kind, name)))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		t.Fatal(err)
	}
	for _, e := range edits {
		toks := strings.Split(e.ptr, "/")[1:]
		for i, tok := range toks {
			toks[i] = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		}
		parent := doc
		for _, tok := range toks[:len(toks)-1] {
			parent = child(t, parent, tok, e.ptr)
		}
		last := toks[len(toks)-1]
		switch p := parent.(type) {
		case map[string]any:
			if e.delete {
				if _, ok := p[last]; !ok {
					t.Fatalf("%s: nothing to delete", e.ptr)
				}
				delete(p, last)
			} else {
				p[last] = e.value
			}
		case []any:
			i, err := strconv.Atoi(last)
			if err != nil || i >= len(p) || e.delete {
				t.Fatalf("%s: bad array edit", e.ptr)
			}
			p[i] = e.value
		default:
			t.Fatalf("%s: parent is not a container", e.ptr)
		}
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func child(t testing.TB, v any, tok, ptr string) any {
	t.Helper()
	switch c := v.(type) {
	case map[string]any:
		if x, ok := c[tok]; ok {
			return x
		}
	case []any:
		if i, err := strconv.Atoi(tok); err == nil && i < len(c) {
			return c[i]
		}
	}
	t.Fatalf("%s: no %q", ptr, tok)
	return nil
}

// stringValues returns the string values (not keys) in a document. For a
// document that is not JSON it returns the contents of its string literals
// that are not followed by ':'.
func stringValues(doc []byte) []string {
	var v any
	if json.Unmarshal(doc, &v) == nil {
		var out []string
		var walk func(any)
		walk = func(v any) {
			switch x := v.(type) {
			case string:
				out = append(out, x)
			case []any:
				for _, e := range x {
					walk(e)
				}
			case map[string]any:
				for _, e := range x {
					walk(e)
				}
			}
		}
		walk(v)
		return out
	}
	var out []string
	for _, m := range stringLiteral.FindAllSubmatch(doc, -1) {
		if !bytes.HasPrefix(bytes.TrimLeft(m[2], " \t\r\n"), []byte(":")) {
			out = append(out, string(m[1]))
		}
	}
	return out
}

var stringLiteral = regexp.MustCompile(`"([^"\\]*)"(\s*:?)`)

// assertNoValues fails if any message quotes a string value of the document.
// Values shorter than 3 characters are ignored (they could only be matched
// by accident, e.g. a "1" inside "1 character").
func assertNoValues(t *testing.T, doc []byte, issues []Issue) {
	t.Helper()
	values := stringValues(doc)
	for _, is := range issues {
		for _, v := range values {
			if len(v) >= 3 && strings.Contains(is.Message, v) {
				t.Errorf("message of %s at %q quotes a document value %q: %s", is.Rule, is.Pointer, v, is.Message)
			}
		}
	}
}

// issuesOf validates and returns the issues; it fails if the document is
// valid or the error is not a *ValidationError.
func issuesOf(t *testing.T, kind string, doc []byte) []Issue {
	t.Helper()
	err := set(t).Validate(kind, doc)
	if err == nil {
		t.Fatalf("document is valid, want an error")
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %T is not a *ValidationError", err)
	}
	if len(ve.Issues) == 0 {
		t.Fatal("ValidationError without issues")
	}
	checkIssueList(t, ve.Issues)
	return ve.Issues
}

// checkIssueList checks the invariants every issue list satisfies.
func checkIssueList(t testing.TB, issues []Issue) {
	t.Helper()
	if len(issues) > MaxIssues {
		t.Errorf("%d issues, more than MaxIssues", len(issues))
	}
	for i, is := range issues {
		if is.Rule == RuleIssuesCut && i != len(issues)-1 {
			t.Errorf("issue %d of %d says issues were cut: only the last may", i, len(issues))
		}
	}
	if n := len(issues); issues[n-1].Rule == RuleIssuesCut {
		issues = issues[:n-1] // the notice comes after the sorted issues
	}
	for i, is := range issues {
		if is.Rule == RuleKindMismatch && i != 0 {
			t.Errorf("issue %d of %d names the record's kind: only the first may", i, len(issues))
		}
	}
	if len(issues) > 0 && issues[0].Rule == RuleKindMismatch {
		issues = issues[1:] // the record's kind is said before the sorted issues
	}
	if !sort.SliceIsSorted(issues, func(i, j int) bool {
		if c := comparePointers(issues[i].Pointer, issues[j].Pointer); c != 0 {
			return c < 0
		}
		return issues[i].Rule < issues[j].Rule
	}) {
		t.Errorf("issues not sorted: %+v", issues)
	}
	for _, is := range issues {
		if is.Rule == "" || is.Code == "" || is.Message == "" {
			t.Errorf("incomplete issue %+v", is)
		}
		if is.Pointer != "" && !strings.HasPrefix(is.Pointer, "/") {
			t.Errorf("bad pointer %q", is.Pointer)
		}
		if (is.Pointer == "") != (is.Expression == "") {
			t.Errorf("pointer %q and expression %q disagree", is.Pointer, is.Expression)
		}
		if strings.HasPrefix(is.Rule, "schema.") && strings.ContainsAny(is.Rule, "_ ") {
			t.Errorf("rule %q is not a stable id", is.Rule)
		}
	}
}

func dump(issues []Issue) string {
	var b strings.Builder
	for _, is := range issues {
		b.WriteString("\n\t" + is.Rule + " " + is.Code + " " + strconv.Quote(is.Pointer) + " " + strconv.Quote(is.Expression) + " " + is.Message)
	}
	return b.String()
}

// validateAgainstMeta validates a schema document against the draft-07
// meta-schema bundled with gojsonschema (no network access).
func validateAgainstMeta(t *testing.T, schema []byte) []string {
	t.Helper()
	meta, err := gojsonschema.NewSchema(gojsonschema.NewReferenceLoader("http://json-schema.org/draft-07/schema#"))
	if err != nil {
		t.Fatalf("meta-schema: %v", err)
	}
	res, err := meta.Validate(gojsonschema.NewBytesLoader(schema))
	if err != nil {
		t.Fatalf("meta-schema validation: %v", err)
	}
	var out []string
	for _, e := range res.Errors() {
		out = append(out, e.String())
	}
	return out
}

var (
	codesOnce sync.Once
	codes     []string
)

// assertNoCodes fails if a message contains a code from any schema's enum:
// codes are document values, and a message that contains one could repeat
// what the document says.
func assertNoCodes(t *testing.T, issues []Issue) {
	t.Helper()
	codesOnce.Do(func() {
		files, _ := fs.Glob(schemaFiles, "*.schema.json")
		for _, f := range files {
			b, _ := schemaFiles.ReadFile(f)
			var doc any
			_ = json.Unmarshal(b, &doc)
			var walk func(any)
			walk = func(v any) {
				switch x := v.(type) {
				case map[string]any:
					for k, e := range x {
						if k == "enum" || k == "const" {
							if list, ok := e.([]any); ok {
								for _, c := range list {
									if s, ok := c.(string); ok {
										codes = append(codes, s)
									}
								}
							} else if s, ok := e.(string); ok {
								codes = append(codes, s)
							}
							continue
						}
						walk(e)
					}
				case []any:
					for _, e := range x {
						walk(e)
					}
				}
			}
			walk(doc)
		}
	})
	for _, is := range issues {
		if is.Rule == RuleKindUnknown {
			continue // the document is not read; the message lists the kinds
		}
		msg := is.Message
		if is.Rule == RuleAdditionalProperty {
			// The property names listed are no codes (administeredDoseMg
			// holds "min").
			msg, _, _ = strings.Cut(msg, "; the properties ")
		}
		if is.Rule == RuleEnum {
			// The allowed codes listed are the schema's constants, the
			// same list whatever the document holds (never its value,
			// which is none of them).
			msg, _, _ = strings.Cut(msg, " for this field: ")
		}
		for _, c := range codes {
			if len(c) >= 3 && strings.Contains(msg, c) {
				t.Errorf("message of %s at %q contains the code %q: %s", is.Rule, is.Pointer, c, is.Message)
			}
		}
	}
}
