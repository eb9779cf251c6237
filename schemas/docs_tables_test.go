package schemas

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsTablesWhole checks that no table in the docs is cut in two by a
// blank line: in GitHub-flavoured markdown the rows after the blank line,
// without a header and delimiter row of their own, render as a paragraph of
// pipes. A table that follows a blank line must start with a header row and
// a delimiter row.
func TestDocsTablesWhole(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "docs", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("docs/*.md (part of the repository) not found: %v", err)
	}
	files = append(files, filepath.Join("..", "README.md"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range splitTables(string(b)) {
			t.Errorf("%s:%d: a table row after a blank line with no header and delimiter row (a table cut in two by a blank line?)", f, n)
		}
	}
}

// splitTables returns the 1-based line numbers of table rows that follow a
// blank line but do not start a table (the next line is not a delimiter
// row), outside fenced code blocks.
func splitTables(doc string) []int {
	var bad []int
	lines := strings.Split(doc, "\n")
	fenced := false
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if fenced || !strings.HasPrefix(l, "|") || i == 0 || strings.TrimSpace(lines[i-1]) != "" {
			continue
		}
		if i+1 < len(lines) && delimiterRow(lines[i+1]) {
			continue
		}
		bad = append(bad, i+1)
	}
	return bad
}

// delimiterRow reports whether l is a table's delimiter row (|---|:--:|).
func delimiterRow(l string) bool {
	l = strings.TrimSpace(l)
	return strings.HasPrefix(l, "|") && strings.Contains(l, "-") && strings.Trim(l, "|-: ") == ""
}

func TestSplitTables(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []int
	}{
		{"whole", "| a | b |\n|---|---|\n| 1 | 2 |\n", nil},
		{"two tables", "| a |\n|---|\n| 1 |\n\n| b |\n|:--|\n| 2 |\n", nil},
		{"cut", "| a |\n|---|\n| 1 |\n\n| 2 |\n| 3 |\n", []int{5}},
		{"in code", "```\n| a |\n\n| 2 |\n```\n", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := splitTables(tc.doc)
			if len(got) != len(tc.want) || len(got) > 0 && got[0] != tc.want[0] {
				t.Errorf("splitTables(%q) = %v, want %v", tc.doc, got, tc.want)
			}
		})
	}
}
