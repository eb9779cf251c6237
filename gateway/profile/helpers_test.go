package profile_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
)

// goldenResource is one resource of a golden Bundle the mappings produce.
type goldenResource struct {
	file string
	doc  map[string]any
}

// goldens returns every resource of the golden Bundles in
// mapping/testdata, decoded with exact numbers.
func goldens(t testing.TB) []goldenResource {
	t.Helper()
	var out []goldenResource
	err := filepath.WalkDir("../../mapping/testdata", func(path string, d os.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(path, ".golden.json") {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var bundle struct {
			Entry []struct {
				Resource json.RawMessage `json:"resource"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(b, &bundle); err != nil {
			return err
		}
		for _, e := range bundle.Entry {
			if e.Resource != nil {
				out = append(out, goldenResource{file: path, doc: decode(t, e.Resource)})
			}
		}
		return nil
	})
	if err != nil || len(out) < 100 {
		t.Fatalf("golden resources: %d, %v", len(out), err)
	}
	return out
}

func decode(t testing.TB, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// claims reports whether a resource claims a profile (a kg-* name or a
// full url).
func claims(doc map[string]any, name string) bool {
	url := "http://hl7.org/fhir/StructureDefinition/" + name
	if strings.HasPrefix(name, "kg-") {
		url = profile.Prefix + name
	}
	meta, _ := doc["meta"].(map[string]any)
	profiles, _ := meta["profile"].([]any)
	for _, p := range profiles {
		if p == url {
			return true
		}
	}
	return false
}

// golden returns a copy of the first golden resource that claims the
// profile and has code (a LOINC or local code of Observation.code, ""
// for any).
func golden(t testing.TB, all []goldenResource, name, code string) map[string]any {
	t.Helper()
	for _, g := range all {
		if !claims(g.doc, name) || code != "" && !hasCode(g.doc, code) {
			continue
		}
		b, _ := json.Marshal(g.doc)
		return decode(t, b)
	}
	t.Fatalf("no golden resource claims %s with code %q", name, code)
	return nil
}

func hasCode(doc map[string]any, code string) bool {
	c, _ := doc["code"].(map[string]any)
	codings, _ := c["coding"].([]any)
	for _, x := range codings {
		if m, _ := x.(map[string]any); m["code"] == code {
			return true
		}
	}
	return false
}

// at walks a path of member names and array indexes ("component", 0,
// "valueQuantity") to a map.
func at(doc map[string]any, path ...any) map[string]any {
	var cur any = doc
	for _, p := range path {
		switch k := p.(type) {
		case string:
			cur = cur.(map[string]any)[k]
		case int:
			cur = cur.([]any)[k]
		}
	}
	return cur.(map[string]any)
}

func set(t testing.TB) *profile.Set {
	t.Helper()
	s, err := profile.New()
	if err != nil {
		t.Fatal(err)
	}
	return s
}
