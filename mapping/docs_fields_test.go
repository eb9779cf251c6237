package mapping_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsFieldTextsMapped: a text docs/mapping.md §2's field tables quote
// ("Oxygen saturation by pulse oximetry", a coding's display) is one the
// mapping writes, in some golden output. The tables are written by hand;
// without this a changed text left them stale while go test ./mapping
// passed (p34 F7). Templates ("over N min", a <placeholder>) are not
// checked.
func TestDocsFieldTextsMapped(t *testing.T) {
	b, err := os.ReadFile("../docs/mapping.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## 2. Mappings by kind")
	if !ok {
		t.Fatal(`docs/mapping.md has no "## 2. Mappings by kind"`)
	}
	sec, _, _ = strings.Cut(sec, "\n## 3.")
	goldens, _ := filepath.Glob("testdata/*/*.golden.json")
	nested, _ := filepath.Glob("testdata/*/*/*.golden.json") // testdata/examples/<kind>/
	goldens = append(goldens, nested...)
	if len(goldens) == 0 {
		t.Fatal("no golden files in testdata")
	}
	var out strings.Builder
	for _, g := range goldens {
		gb, err := os.ReadFile(g)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(gb)
	}
	quoted := regexp.MustCompile(`"([^"]{6,})"`)
	template := regexp.MustCompile(`\b[A-Z]\b|<`)
	checked := 0
	for _, line := range strings.Split(sec, "\n") {
		if !strings.HasPrefix(line, "|") {
			continue
		}
		for _, m := range quoted.FindAllStringSubmatch(line, -1) {
			if template.MatchString(m[1]) {
				continue
			}
			checked++
			if !strings.Contains(out.String(), `"`+m[1]+`"`) {
				t.Errorf("docs/mapping.md §2 quotes %q, which no golden output (mapping/testdata) holds: "+
					"update the table's row to what the mapping writes now", m[1])
			}
		}
	}
	if checked < 3 {
		t.Errorf("only %d quoted texts found in docs/mapping.md §2's tables: the check found nothing to check", checked)
	}
}
