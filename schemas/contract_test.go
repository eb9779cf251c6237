package schemas_test

// Contract tests between the schemas and the Go types in package mapping:
// the schemas must describe exactly the JSON those types read, and every
// example must decode strictly into its type.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// schemaDocs holds the decoded schema files by name ("common", "vitals", ...).
type schemaDocs map[string]any

func loadSchemaDocs(t *testing.T) schemaDocs {
	t.Helper()
	s, err := schemas.New()
	if err != nil {
		t.Fatal(err)
	}
	docs := schemaDocs{}
	for _, name := range append(schemas.Kinds(), "common") {
		b, ok := s.Schema(name)
		if !ok {
			t.Fatalf("no schema %q", name)
		}
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatal(err)
		}
		docs[name] = v
	}
	return docs
}

// resolve follows $ref until it reaches a schema without one. It returns the
// file the schema is in and the schema.
func (d schemaDocs) resolve(t *testing.T, file string, node any) (string, map[string]any) {
	t.Helper()
	for i := 0; i < 10; i++ {
		m, ok := node.(map[string]any)
		if !ok {
			t.Fatalf("%s: schema %v is not an object", file, node)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return file, m
		}
		target, frag, _ := strings.Cut(ref, "#")
		if target != "" {
			file = strings.TrimSuffix(target, ".schema.json")
		}
		node = d[file]
		for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
			if tok == "" {
				continue
			}
			node = node.(map[string]any)[tok]
		}
	}
	t.Fatalf("%s: $ref loop", file)
	return "", nil
}

// goField is one JSON property of a Go struct (embedded structs flattened).
type goField struct {
	name      string
	omitempty bool
	typ       reflect.Type
}

func goFields(typ reflect.Type) []goField {
	var out []goField
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			out = append(out, goFields(f.Type)...)
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		out = append(out, goField{name: name, omitempty: strings.Contains(opts, "omitempty"), typ: f.Type})
	}
	return out
}

// nestedBodies lists the body types that differ from their Go struct when
// nested in a session: their own recordId is required and sessionId is
// forbidden.
var nestedBodies = map[reflect.Type]bool{
	reflect.TypeFor[mapping.VitalsBody]():       true,
	reflect.TypeFor[mapping.AssessmentBody]():   true,
	reflect.TypeFor[mapping.AdverseEventBody](): true,
}

// compare checks an object schema against a Go struct: the allowed
// properties (those not set to false) are exactly the struct's JSON names
// minus exclude, the required ones are exactly the non-omitempty names plus
// alsoRequired, every object sets additionalProperties to false, and nested
// structs are compared recursively.
func compare(t *testing.T, d schemaDocs, where, file string, node any, typ reflect.Type, exclude, alsoRequired []string) {
	t.Helper()
	file, m := d.resolve(t, file, node)
	if m["type"] != "object" || m["additionalProperties"] != false {
		t.Errorf("%s: want type object with additionalProperties false", where)
	}
	props, _ := m["properties"].(map[string]any)
	var allowed, forbidden []string
	for name, p := range props {
		if p == false {
			forbidden = append(forbidden, name)
		} else {
			allowed = append(allowed, name)
		}
	}
	var required []string
	reqList, _ := m["required"].([]any)
	for _, r := range reqList {
		required = append(required, r.(string))
	}

	var wantAllowed, wantRequired []string
	for _, f := range goFields(typ) {
		if slices.Contains(exclude, f.name) {
			continue
		}
		wantAllowed = append(wantAllowed, f.name)
		if !f.omitempty {
			wantRequired = append(wantRequired, f.name)
		}
	}
	wantRequired = append(wantRequired, alsoRequired...)
	sort.Strings(allowed)
	sort.Strings(required)
	sort.Strings(wantAllowed)
	sort.Strings(wantRequired)
	if !slices.Equal(allowed, wantAllowed) {
		t.Errorf("%s: schema properties %v, Go %s has %v", where, allowed, typ, wantAllowed)
	}
	if !slices.Equal(required, wantRequired) {
		t.Errorf("%s: schema requires %v, want %v", where, required, wantRequired)
	}
	for _, name := range forbidden {
		if !slices.Contains(exclude, name) {
			t.Errorf("%s: %s is forbidden but not excluded", where, name)
		}
	}

	for _, f := range goFields(typ) {
		p, ok := props[f.name]
		if !ok || p == false {
			continue
		}
		ft := f.typ
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice {
			_, arr := d.resolve(t, file, p)
			if arr["type"] != "array" {
				t.Errorf("%s.%s: Go slice but schema type %v", where, f.name, arr["type"])
				continue
			}
			p = arr["items"]
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Struct {
			continue
		}
		var ex, req []string
		if nestedBodies[ft] {
			ex, req = []string{"sessionId"}, []string{"recordId"}
		}
		if ft == reflect.TypeFor[mapping.InfusionBody]() {
			ex = []string{"recordId", "sessionId"}
		}
		compare(t, d, where+"."+f.name, file, p, ft, ex, req)
	}
}

func TestSchemasMatchMappingTypes(t *testing.T) {
	d := loadSchemaDocs(t)
	standalone := []string{"recordId"} // the record id is source.recordId
	compare(t, d, "assessment", "assessment", d["assessment"], reflect.TypeFor[mapping.Assessment](), standalone, nil)
	compare(t, d, "vitals", "vitals", d["vitals"], reflect.TypeFor[mapping.Vitals](), standalone, nil)
	compare(t, d, "infusion", "infusion", d["infusion"], reflect.TypeFor[mapping.Infusion](), standalone, nil)
	compare(t, d, "adverse-event", "adverse-event", d["adverse-event"], reflect.TypeFor[mapping.AdverseEvent](), standalone, nil)
	compare(t, d, "session", "session", d["session"], reflect.TypeFor[mapping.Session](), standalone, nil)

	var kinds []string
	for _, k := range mapping.Kinds() {
		kinds = append(kinds, string(k))
	}
	if !slices.Equal(kinds, schemas.Kinds()) {
		t.Errorf("mapping.Kinds() = %v, schemas.Kinds() = %v", kinds, schemas.Kinds())
	}
}

func init() {
	// FuzzValidate: whatever the schemas accept, the pipeline can decode.
	schemas.DecodeCheck = func(kind string, doc []byte) error {
		_, err := mapping.Decode(mapping.Kind(kind), doc)
		return err
	}
}

// recordType returns a new value of the Go type a kind decodes into.
func recordType(kind string) any {
	switch kind {
	case "assessment":
		return new(mapping.Assessment)
	case "vitals":
		return new(mapping.Vitals)
	case "infusion":
		return new(mapping.Infusion)
	case "adverse-event":
		return new(mapping.AdverseEvent)
	case "session":
		return new(mapping.Session)
	}
	return nil
}

func forEachExample(t *testing.T, fn func(t *testing.T, kind, name string, doc []byte)) {
	err := fs.WalkDir(schemas.Examples(), "examples", func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		b, err := fs.ReadFile(schemas.Examples(), p)
		if err != nil {
			return err
		}
		kind := path.Base(path.Dir(p))
		t.Run(kind+"/"+path.Base(p), func(t *testing.T) { fn(t, kind, path.Base(p), b) })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestExamplesDecodeStrictly decodes every example into its mapping type,
// rejecting unknown fields, and checks that re-encoding loses nothing.
func TestExamplesDecodeStrictly(t *testing.T) {
	forEachExample(t, func(t *testing.T, kind, _ string, doc []byte) {
		v := recordType(kind)
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Fatalf("decode into %T: %v", v, err)
		}
		back, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		_ = json.Unmarshal(doc, &a)
		_ = json.Unmarshal(back, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("round trip through %T changes the document:\n%s", v, back)
		}
	})
}

// TestDocsClinicalRules checks that the rule catalogue in docs/records.md
// lists exactly the clinical rules mapping.Check enforces.
func TestDocsClinicalRules(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "docs", "records.md"))
	if err != nil {
		t.Skipf("docs/records.md: %v", err)
	}
	doc := string(b)
	start := strings.Index(doc, "### Clinical rules")
	if start < 0 {
		t.Fatal("docs/records.md has no clinical rules section")
	}
	section := doc[start:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	// The rules of the request (parameters, media types, sizes) are the
	// HTTP edge's, not mapping.Check's.
	if end := strings.Index(section, "\n### Rules of the request"); end >= 0 {
		section = section[:end]
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9.-]+)` \\|").FindAllStringSubmatch(section, -1) {
		documented[m[1]] = true
	}
	for _, r := range mapping.Rules() {
		if !documented[r.ID] {
			t.Errorf("rule %s is enforced by mapping.Check but not documented", r.ID)
		}
		delete(documented, r.ID)
	}
	for id := range documented {
		t.Errorf("rule %s is documented but not in mapping.Rules()", id)
	}
}

// TestInstrumentsAgree: the schema accepts exactly the instruments the
// mapping defines, and difficulty exactly for those whose definition has
// a difficulty item (p20 F2: the schema's list of instruments without
// difficulty had to be extended by hand for a new instrument).
func TestInstrumentsAgree(t *testing.T) {
	d := loadSchemaDocs(t)
	var enum []string
	for _, v := range d["assessment"].(map[string]any)["properties"].(map[string]any)["instrument"].(map[string]any)["enum"].([]any) {
		enum = append(enum, v.(string))
	}
	var names []string
	for _, in := range mapping.Instruments() {
		names = append(names, in.Name)
	}
	slices.Sort(enum)
	if !slices.Equal(enum, names) {
		t.Errorf("assessment.schema.json's instrument enum = %v, mapping.Instruments() = %v: an instrument is added to both "+
			"(docs/architecture.md, where to add things)", enum, names)
	}
	s, err := schemas.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range mapping.Instruments() {
		doc, _ := json.Marshal(map[string]any{
			"source": map[string]any{"system": "clinic", "recordId": "A-1", "version": "1"}, "patient": map[string]any{"id": "P-1"},
			"instrument": in.Name, "takenAt": "2026-03-02T08:45:00-05:00", "difficulty": "very-difficult",
		})
		refused := false
		if ve := (*schemas.ValidationError)(nil); errors.As(s.Validate("assessment", doc), &ve) {
			for _, is := range ve.Issues {
				refused = refused || is.Pointer == "/difficulty"
			}
		}
		if refused != (in.Difficulty == "") {
			t.Errorf("the schema refuses difficulty for %s: %v, want %v (mapping/instruments.go difficulty %q): list exactly the "+
				"instruments without a difficulty item in the enum of the if of \"difficulty is PHQ-9's item 10\" in "+
				"schemas/assessment.schema.json", in.Name, refused, in.Difficulty == "", in.Difficulty)
		}
	}
}
