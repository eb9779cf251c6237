package mapping_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestDocsInstrumentTable: the instrument table of docs/mapping.md §2.2,
// where a reader looks up an instrument's codes, says what
// mapping.Instruments and the code table say: one row per instrument, its
// panel, item, difficulty and total codes, its total's range, its highest
// score and its bands (p20 F5: a wrong panel code there passed every test).
func TestDocsInstrumentTable(t *testing.T) {
	b, err := os.ReadFile(docsMapping)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := instrumentRows(string(b))
	if err != nil {
		t.Fatal(err)
	}
	concepts := map[string]mapping.Concept{}
	for _, c := range mapping.Concepts() {
		concepts[c.Key] = c
	}
	code := func(key string) string { return "`" + concepts[key].Code + "`" }
	for _, in := range mapping.Instruments() {
		cells, ok := rows[in.Name]
		if !ok {
			t.Errorf("docs/mapping.md §2.2's instrument table has no row for %s", in.Name)
			continue
		}
		delete(rows, in.Name)
		wrong := func(column, want string) {
			t.Errorf("docs/mapping.md §2.2, instrument %s, column %s = %q, want it to give %s (mapping/instruments.go, mapping/codes.go)",
				in.Name, column, cells[columnIndex[column]], want)
		}
		cell := func(column string) string { return cells[columnIndex[column]] }
		if in.Items > 0 && !strings.Contains(cell("panel"), code(in.Key+".panel")) {
			wrong("panel", code(in.Key+".panel"))
		}
		if in.Items == 0 && !strings.HasPrefix(cell("panel"), "—") {
			wrong("panel", "— (no panel)")
		}
		var items []string
		for n := 1; n <= in.Items; n++ {
			items = append(items, code(in.Key+"."+strconv.Itoa(n)))
		}
		if len(items) > 0 {
			listed := true
			for _, c := range items {
				listed = listed && strings.Contains(cell("items"), c)
			}
			if !listed && !strings.Contains(cell("items"), items[0]+" .. "+items[len(items)-1]) {
				wrong("items", strings.Join(items, ", ")+" (or the first .. the last)")
			}
		}
		if in.Difficulty != "" && !strings.Contains(cell("items"), "difficulty (item "+strconv.Itoa(in.Items+1)+") "+code(in.Difficulty)) {
			wrong("items", "difficulty (item "+strconv.Itoa(in.Items+1)+") "+code(in.Difficulty))
		}
		if in.Difficulty == "" && strings.Contains(cell("items"), "difficulty") {
			wrong("items", "no difficulty item")
		}
		total := code(in.Key + ".total")
		if in.MaxTotal > 0 {
			total += " (0-" + strconv.Itoa(in.MaxTotal) + ")"
		}
		if !strings.Contains(cell("total"), total) {
			wrong("total", total)
		}
		if in.MaxScore > 0 {
			m := strconv.Itoa(in.MaxScore)
			if c := cell("answers"); !strings.Contains(c, "`score-"+m+"`") && !strings.Contains(c, "(0-"+m+")") && !strings.Contains(c, m+" `") {
				wrong("answers", "scores up to "+m)
			}
		}
		if want := bandsCell(in.Bands); cell("bands") != want {
			wrong("bands", want)
		}
	}
	for name := range rows {
		t.Errorf("docs/mapping.md §2.2's instrument table has a row for %s, which mapping.Instruments() does not define", name)
	}
}

// columnIndex are the columns of the instrument table by what they hold.
var columnIndex = map[string]int{"panel": 1, "items": 2, "total": 3, "answers": 4, "scoring": 5, "bands": 6}

// instrumentRows returns the cells of the instrument table's rows by
// instrument name: the table after the "instruments" anchor.
func instrumentRows(doc string) (map[string][]string, error) {
	i := strings.Index(doc, `<a id="instruments"></a>`)
	if i < 0 {
		return nil, fmt.Errorf(`%s has no <a id="instruments"></a>`, docsMapping)
	}
	rows := map[string][]string{}
	inTable := false
	for _, line := range strings.Split(doc[i:], "\n") {
		switch {
		case strings.HasPrefix(line, "|"):
			inTable = true
			cells := strings.Split(strings.Trim(line, "|"), " | ")
			for j := range cells {
				cells[j] = strings.TrimSpace(cells[j])
			}
			name, ok := strings.CutPrefix(cells[0], "`")
			if !ok || len(cells) != len(columnIndex)+1 {
				continue // the header and its rule
			}
			rows[strings.TrimSuffix(name, "`")] = cells
		case inTable:
			return rows, nil
		}
	}
	return rows, nil
}

// bandsCell is the bands column for bands: "0-4 minimal, 5-9 mild, ...",
// or "—".
func bandsCell(bands []mapping.Band) string {
	if len(bands) == 0 {
		return "—"
	}
	var parts []string
	lo := 0
	for _, b := range bands {
		name := strings.ReplaceAll(strings.TrimPrefix(b.Key, "band."), "-", " ")
		parts = append(parts, fmt.Sprintf("%d-%d %s", lo, b.Max, name))
		lo = b.Max + 1
	}
	return strings.Join(parts, ", ")
}
