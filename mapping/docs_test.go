package mapping_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The code table in docs/mapping.md is generated from mapping.Concepts():
// TestDocsCodeTable fails when the two disagree, and go test ./mapping -update
// rewrites the section between these markers (and nothing else).
const (
	docsMapping    = "../docs/mapping.md"
	codeTableBegin = "<!-- BEGIN GENERATED CODE TABLE -->"
	codeTableEnd   = "<!-- END GENERATED CODE TABLE -->"
)

// codeTableMarkdown renders the code table as docs/mapping.md carries it: one
// row per concept, in the table's order, with ✓ marking codes to review.
func codeTableMarkdown(concepts []mapping.Concept) string {
	var b strings.Builder
	b.WriteString("| Key | System | Code | Display | Check |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, c := range concepts {
		check := ""
		if c.Check {
			check = "✓"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | `%s` | %s | %s |\n",
			mdCell(c.Key), mdCell(c.System), mdCell(c.Code), mdCell(c.Display), check)
	}
	return b.String()
}

// mdCell keeps a value inside its table cell: '|' would end the cell and a
// line break the row.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\r", " ", "\n", " ").Replace(s)
}

// splitCodeTable returns the document before the generated section (up to
// and including the begin marker), the section, and the rest (from the end
// marker on). Each marker must appear exactly once, begin before end.
func splitCodeTable(doc string) (before, section, after string, err error) {
	if n := strings.Count(doc, codeTableBegin); n != 1 {
		return "", "", "", fmt.Errorf("%s appears %d times, want once", codeTableBegin, n)
	}
	if n := strings.Count(doc, codeTableEnd); n != 1 {
		return "", "", "", fmt.Errorf("%s appears %d times, want once", codeTableEnd, n)
	}
	i := strings.Index(doc, codeTableBegin) + len(codeTableBegin)
	j := strings.Index(doc, codeTableEnd)
	if j < i {
		return "", "", "", fmt.Errorf("%s comes before %s", codeTableEnd, codeTableBegin)
	}
	return doc[:i], doc[i:j], doc[j:], nil
}

// firstDifference describes the first line where got and want differ.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return fmt.Sprintf("line %d of the section:\n  doc:  %q\n  code: %q", i+1, gl, wl)
		}
	}
	return "no line differs"
}

// TestDocsCodeTable checks that docs/mapping.md carries the code table exactly
// as mapping.Concepts() has it (go test ./mapping -update rewrites it).
func TestDocsCodeTable(t *testing.T) {
	raw, err := os.ReadFile(docsMapping)
	if err != nil {
		t.Fatalf("read %s: %v", docsMapping, err)
	}
	doc := string(raw)
	before, section, after, err := splitCodeTable(doc)
	if err != nil {
		t.Fatalf("%s: %v", docsMapping, err)
	}
	want := "\n" + codeTableMarkdown(mapping.Concepts())
	if section == want {
		return
	}
	if *update {
		info, err := os.Stat(docsMapping)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(docsMapping, []byte(before+want+after), info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the code table in %s differs from mapping.Concepts() at %s\nrun go test ./mapping -run TestDocsCodeTable -update and review the diff",
		docsMapping, firstDifference(section, want))
}

// TestCodeTableMarkdown checks the rendering the docs rely on: one row per
// concept, cells escaped, the check mark only where Check is set.
func TestCodeTableMarkdown(t *testing.T) {
	got := codeTableMarkdown([]mapping.Concept{
		{Key: "a.b", System: "http://x", Code: "1", Display: "One | two", Check: true},
		{Key: "c", System: "http://y", Code: "2", Display: "Two"},
	})
	want := "| Key | System | Code | Display | Check |\n" +
		"|---|---|---|---|---|\n" +
		"| `a.b` | `http://x` | `1` | One \\| two | ✓ |\n" +
		"| `c` | `http://y` | `2` | Two |  |\n"
	if got != want {
		t.Errorf("codeTableMarkdown() = %q, want %q", got, want)
	}
	if n := strings.Count(codeTableMarkdown(mapping.Concepts()), "\n"); n != len(mapping.Concepts())+2 {
		t.Errorf("codeTableMarkdown(Concepts()) has %d lines, want %d", n, len(mapping.Concepts())+2)
	}
}
