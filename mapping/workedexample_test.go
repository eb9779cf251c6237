package mapping_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// docs/mapping.md §5 is a worked example: an input from testdata, the
// number of entries its Bundle has, the panel entry verbatim, and item 1
// and the total with the elements they share with the panel left out.
// TestDocsWorkedExample checks it against the mapping of that input, and
// go test ./mapping -update rewrites the entry count and the three entries
// (with the goldens and the code table), so a change of a code or display
// needs no hand edit of §5.
const (
	workedExampleInput   = "testdata/assessment/phq9-complete-with-total.input.json"
	workedExampleSection = "## 5. Worked example"
	workedExampleNext    = "## 6. "
)

// workedExampleEntries are the three entries §5 shows after the input:
// which entry of the Bundle and the members of its resource left out.
var workedExampleEntries = []struct {
	name    string
	entry   int
	leftOut []string
}{
	{"panel", 1, nil},
	{"item 1", 2, []string{"meta", "partOf", "category", "subject", "effectiveDateTime", "performer"}},
	{"total", 12, []string{"meta", "partOf", "category", "subject", "effectiveDateTime", "performer"}},
}

var entryCountRE = regexp.MustCompile(`\) has (\d+) entries:`)

// workedExample is §5 as the mapping of input has it: the entry count and
// the text of each of workedExampleEntries (json.Indent, two spaces).
func workedExample(bundle []byte) (count int, blocks []string, err error) {
	var b struct{ Entry []json.RawMessage }
	if err := json.Unmarshal(bundle, &b); err != nil {
		return 0, nil, err
	}
	for _, e := range workedExampleEntries {
		if e.entry >= len(b.Entry) {
			return 0, nil, fmt.Errorf("the Bundle has %d entries, §5 shows entry %d (%s)", len(b.Entry), e.entry, e.name)
		}
		raw, err := withoutMembers(b.Entry[e.entry], e.leftOut)
		if err != nil {
			return 0, nil, err
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, raw, "", "  "); err != nil {
			return 0, nil, err
		}
		blocks = append(blocks, ind.String())
	}
	return len(b.Entry), blocks, nil
}

// mdSection returns the part of doc from the heading start to the heading
// next, and where it starts.
func mdSection(doc, start, next string) (section string, at int, err error) {
	i := strings.Index(doc, start)
	if i < 0 {
		return "", 0, fmt.Errorf("no %q", start)
	}
	j := strings.Index(doc[i:], next)
	if j < 0 {
		return "", 0, fmt.Errorf("no %q after %q", next, start)
	}
	return doc[i : i+j], i, nil
}

// jsonBlock is a ```json block of a Markdown text: its content is
// text[start:end].
type jsonBlock struct{ start, end int }

// jsonBlocks finds the ```json blocks of a Markdown text.
func jsonBlocks(md string) []jsonBlock {
	var out []jsonBlock
	for off := 0; ; {
		i := strings.Index(md[off:], "```json\n")
		if i < 0 {
			return out
		}
		start := off + i + len("```json\n")
		j := strings.Index(md[start:], "\n```")
		if j < 0 {
			return out
		}
		out = append(out, jsonBlock{start, start + j})
		off = start + j + len("\n```")
	}
}

// rewriteWorkedExample returns doc with §5's entry count and its last
// three JSON blocks replaced by count and blocks; the input (the first
// block, reformatted by hand) is left as it is.
func rewriteWorkedExample(doc string, count int, blocks []string) (string, error) {
	sec, at, err := mdSection(doc, workedExampleSection, workedExampleNext)
	if err != nil {
		return "", err
	}
	found := jsonBlocks(sec)
	if len(found) != 1+len(blocks) {
		return "", fmt.Errorf("§5 has %d JSON blocks, want %d (the input, then %d entries)", len(found), 1+len(blocks), len(blocks))
	}
	m := entryCountRE.FindStringSubmatchIndex(sec)
	if m == nil {
		return "", fmt.Errorf("§5 does not say how many entries the Bundle has (%q)", entryCountRE)
	}
	end := at + len(sec)
	// Replace from the end, so the earlier offsets stay right.
	for i := len(blocks) - 1; i >= 0; i-- {
		b := found[i+1]
		sec = sec[:b.start] + blocks[i] + sec[b.end:]
	}
	sec = sec[:m[2]] + strconv.Itoa(count) + sec[m[3]:]
	return doc[:at] + sec + doc[end:], nil
}

// TestDocsWorkedExample checks docs/mapping.md §5 against the mapping of
// its input: the input block is the input file (reformatted), the entry
// count and the three entries are the mapping's (go test ./mapping -update
// rewrites them).
func TestDocsWorkedExample(t *testing.T) {
	raw, err := os.ReadFile(docsMapping)
	if err != nil {
		t.Fatalf("read %s: %v", docsMapping, err)
	}
	doc := string(raw)
	input, err := os.ReadFile(workedExampleInput)
	if err != nil {
		t.Fatal(err)
	}
	count, blocks, err := workedExample(mapJSON(t, mapping.KindAssessment, input, mapping.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	sec, _, err := mdSection(doc, workedExampleSection, workedExampleNext)
	if err != nil {
		t.Fatalf("%s: %v", docsMapping, err)
	}
	found := jsonBlocks(sec)
	if len(found) != 1+len(blocks) {
		t.Fatalf("%s §5 has %d JSON blocks, want %d (the input, then %d entries)", docsMapping, len(found), 1+len(blocks), len(blocks))
	}
	var docIn, fileIn any
	if json.Unmarshal([]byte(sec[found[0].start:found[0].end]), &docIn) != nil || json.Unmarshal(input, &fileIn) != nil || !reflect.DeepEqual(docIn, fileIn) {
		t.Errorf("%s §5: the input block is not %s (reformatted); copy it there by hand", docsMapping, workedExampleInput)
	}
	var stale []string
	if m := entryCountRE.FindStringSubmatch(sec); m == nil || m[1] != strconv.Itoa(count) {
		stale = append(stale, fmt.Sprintf("the entry count (the Bundle has %d)", count))
	}
	for i, e := range workedExampleEntries {
		if got := strings.TrimSpace(sec[found[i+1].start:found[i+1].end]); got != blocks[i] {
			stale = append(stale, fmt.Sprintf("the %s (entry %d): %s", e.name, e.entry, firstDifference(got, blocks[i])))
		}
	}
	if len(stale) == 0 {
		return
	}
	if *update {
		info, err := os.Stat(docsMapping)
		if err != nil {
			t.Fatal(err)
		}
		out, err := rewriteWorkedExample(doc, count, blocks)
		if err != nil {
			t.Fatalf("%s: %v", docsMapping, err)
		}
		if err := os.WriteFile(docsMapping, []byte(out), info.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("%s §5 differs from the mapping of %s in %s\nrun go test ./mapping -update and review the diff",
		docsMapping, workedExampleInput, strings.Join(stale, "; "))
}

// TestRewriteWorkedExample: the rewrite replaces the entry count and the
// entries' blocks, keeps the input block and the text around them, and
// what it writes passes the check.
func TestRewriteWorkedExample(t *testing.T) {
	doc := "# x\n\n## 5. Worked example: a PHQ-9\n\nInput:\n\n```json\n{\"in\": 1}\n```\n\n" +
		"The golden Bundle (`g.json`) has 3 entries: a, b.\n\n```json\n{\"old\": 1}\n```\n\ntext\n\n```json\n{}\n```\n\n```json\n{\n  \"old\": 3\n}\n```\n\nafter\n\n## 6. Next\n\n```json\n{\"keep\": 6}\n```\n"
	got, err := rewriteWorkedExample(doc, 14, []string{"{\n  \"a\": 1\n}", "{\n  \"b\": 2\n}", "{\n  \"c\": 3\n}"})
	if err != nil {
		t.Fatal(err)
	}
	want := "# x\n\n## 5. Worked example: a PHQ-9\n\nInput:\n\n```json\n{\"in\": 1}\n```\n\n" +
		"The golden Bundle (`g.json`) has 14 entries: a, b.\n\n```json\n{\n  \"a\": 1\n}\n```\n\ntext\n\n```json\n{\n  \"b\": 2\n}\n```\n\n```json\n{\n  \"c\": 3\n}\n```\n\nafter\n\n## 6. Next\n\n```json\n{\"keep\": 6}\n```\n"
	if got != want {
		t.Errorf("rewriteWorkedExample() = %q, want %q", got, want)
	}
	if _, err := rewriteWorkedExample("## 5. Worked example\n```json\n{}\n```\n## 6. ", 1, []string{"{}", "{}", "{}"}); err == nil {
		t.Error("rewriteWorkedExample of a §5 with one block: no error")
	}
}

// withoutMembers is a Bundle entry with the named members of its resource
// left out, the other members in their order.
func withoutMembers(entry json.RawMessage, names []string) ([]byte, error) {
	if len(names) == 0 {
		return entry, nil
	}
	var e struct {
		FullURL  string          `json:"fullUrl"`
		Resource json.RawMessage `json:"resource"`
		Request  json.RawMessage `json:"request"`
	}
	if err := json.Unmarshal(entry, &e); err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(e.Resource))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	var res bytes.Buffer
	res.WriteByte('{')
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		name := k.(string)
		if slices.Contains(names, name) {
			continue
		}
		if res.Len() > 1 {
			res.WriteByte(',')
		}
		kb, _ := json.Marshal(name)
		res.Write(kb)
		res.WriteByte(':')
		res.Write(v)
	}
	res.WriteByte('}')
	fu, _ := json.Marshal(e.FullURL)
	return []byte(`{"fullUrl":` + string(fu) + `,"resource":` + res.String() + `,"request":` + string(e.Request) + `}`), nil
}
