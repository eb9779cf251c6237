package main

import (
	"bytes"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
)

// TestMappingDocWorkedExample: the JSON of docs/mapping.md §5 is the
// golden's: the panel entry, shown "verbatim", is the golden entry's text
// (json.Indent, two spaces), and item 1 and the total are the golden
// entries with the elements the text names left out, members in the
// golden's order (resourceType first: the page said last after 2.0.1 put
// it first).
func TestMappingDocWorkedExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/mapping.md")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile("../../mapping/testdata/assessment/phq9-complete-with-total.golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var golden struct{ Entry []json.RawMessage }
	if err := json.Unmarshal(raw, &golden); err != nil {
		t.Fatal(err)
	}
	sec := string(doc)
	start := strings.Index(sec, "## 5. Worked example")
	end := strings.Index(sec, "## 6. ")
	if start < 0 || end < start {
		t.Fatal("docs/mapping.md has no §5 before §6")
	}
	blocks := jsonBlocks(sec[start:end])
	if len(blocks) != 4 {
		t.Fatalf("§5 has %d JSON blocks, want 4 (input, panel, item 1, total)", len(blocks))
	}
	shared := []string{"meta", "partOf", "category", "subject", "effectiveDateTime", "performer"}
	for _, tc := range []struct {
		name    string
		block   string
		entry   int
		leftOut []string
	}{
		{"panel", blocks[1], 1, nil},
		{"item 1", blocks[2], 2, shared},
		{"total", blocks[3], 12, shared},
	} {
		want, err := withoutMembers(golden.Entry[tc.entry], tc.leftOut)
		if err != nil {
			t.Fatal(err)
		}
		var ind bytes.Buffer
		if err := json.Indent(&ind, want, "", "  "); err != nil {
			t.Fatal(err)
		}
		if got := strings.TrimSpace(tc.block); got != ind.String() {
			t.Errorf("§5 %s differs from golden entry %d; it should read:\n%s", tc.name, tc.entry, ind.String())
		}
	}
}

// jsonBlocks returns the contents of the ```json blocks of a Markdown text.
func jsonBlocks(md string) []string {
	var out []string
	for {
		i := strings.Index(md, "```json\n")
		if i < 0 {
			return out
		}
		md = md[i+len("```json\n"):]
		j := strings.Index(md, "\n```")
		if j < 0 {
			return out
		}
		out = append(out, md[:j])
		md = md[j+4:]
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
