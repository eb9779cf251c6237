package schemas

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/xeipuuv/gojsonreference"
	"github.com/xeipuuv/gojsonschema"
)

//go:embed *.schema.json
var schemaFiles embed.FS

//go:embed examples
var exampleFiles embed.FS

// schemaBaseURL is the base of every schema's $id. Nothing is ever fetched
// from it: all references resolve to the embedded files.
const schemaBaseURL = "https://ketamine-gateway.org/schemas/"

// kinds lists the record kinds in a stable order (the same as mapping.Kinds).
var kinds = []string{"assessment", "vitals", "infusion", "adverse-event", "session"}

// Kinds returns the native record kinds in a stable order: assessment,
// vitals, infusion, adverse-event, session.
func Kinds() []string {
	return append([]string(nil), kinds...)
}

// Examples returns the embedded example records. Paths have the form
// "examples/<kind>/<name>.json"; every example is valid for its kind.
func Examples() fs.FS {
	return exampleFiles
}

// Set holds the compiled schemas of every kind. It is safe for concurrent
// use.
type Set struct {
	compiled map[string]*gojsonschema.Schema
	raw      map[string][]byte
	// parsed holds the decoded schema files by name, for the integer
	// literal check (see integerLiterals).
	parsed map[string]any
}

// New compiles every embedded schema once. It never accesses the network or
// the file system.
func New() (*Set, error) {
	raw := make(map[string][]byte)
	byURL := make(map[string][]byte)
	entries, err := fs.Glob(schemaFiles, "*.schema.json")
	if err != nil {
		return nil, err
	}
	for _, file := range entries {
		b, err := schemaFiles.ReadFile(file)
		if err != nil {
			return nil, err
		}
		var head struct {
			ID string `json:"$id"`
		}
		if err := json.Unmarshal(b, &head); err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", file, err)
		}
		if head.ID != schemaBaseURL+file {
			return nil, fmt.Errorf("schemas: %s: $id must be %q", file, schemaBaseURL+file)
		}
		raw[strings.TrimSuffix(file, ".schema.json")] = b
		byURL[head.ID] = b
	}

	s := &Set{compiled: make(map[string]*gojsonschema.Schema), raw: raw, parsed: make(map[string]any)}
	for name, b := range raw {
		var v any
		if err := json.Unmarshal(b, &v); err != nil {
			return nil, fmt.Errorf("schemas: %s: %w", name, err)
		}
		s.parsed[name] = v
	}
	for _, kind := range kinds {
		if _, ok := raw[kind]; !ok {
			return nil, fmt.Errorf("schemas: no schema for kind %q", kind)
		}
		sl := gojsonschema.NewSchemaLoader()
		sl.Draft = gojsonschema.Draft7
		// Register every file by its $id so that all references are
		// resolved from memory.
		for url, b := range byURL {
			if url == schemaBaseURL+kind+".schema.json" {
				continue
			}
			if err := sl.AddSchemas(gojsonschema.NewBytesLoader(b)); err != nil {
				return nil, fmt.Errorf("schemas: %s: %w", url, err)
			}
		}
		sch, err := sl.Compile(embeddedLoader{url: schemaBaseURL + kind + ".schema.json", files: byURL})
		if err != nil {
			return nil, fmt.Errorf("schemas: compiling %s: %w", kind, err)
		}
		s.compiled[kind] = sch
	}
	return s, nil
}

// Schema returns the raw text of a kind's schema, or of "common" (the shared
// definitions the kinds reference as common.schema.json).
func (s *Set) Schema(kind string) ([]byte, bool) {
	b, ok := s.raw[kind]
	if !ok {
		return nil, false
	}
	return append([]byte(nil), b...), true
}

// Validate checks doc against the schema of kind. It returns nil if the
// document is valid, or a *ValidationError with at least one issue. It runs
// CheckJSON (with MaxDepth, and at most MaxValues values) first and validates
// against the schema only if the raw document is sound.
//
// A valid document may still break a clinical rule; those are checked by
// the mapping rule engine after decoding.
func (s *Set) Validate(kind string, doc []byte) error {
	sch, ok := s.compiled[kind]
	if !ok {
		return &ValidationError{Kind: kind, Issues: []Issue{newIssue(RuleKindUnknown, CodeNotFound, nil,
			"unknown record kind; the kinds are "+strings.Join(kinds, ", "))}}
	}
	if issues := checkJSON(doc, MaxDepth, MaxValues); len(issues) > 0 {
		return &ValidationError{Kind: kind, Issues: normalize(s.shield(kind, nil, issues))}
	}
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		// Not expected after CheckJSON; never quote err, it may contain
		// document text.
		return &ValidationError{Kind: kind, Issues: []Issue{newIssue(RuleJSONSyntax, CodeStructure, nil,
			"invalid JSON: the document could not be decoded")}}
	}
	res, err := sch.Validate(decodedLoader{v})
	if err != nil {
		return &ValidationError{Kind: kind, Issues: []Issue{newIssue(RuleJSONSyntax, CodeStructure, nil,
			"invalid JSON: the document could not be decoded")}}
	}
	var issues []Issue
	if !res.Valid() {
		issues = convertErrors(res.Errors(), v)
	}
	issues = append(issues, s.integerLiterals(kind, v)...)
	if len(issues) == 0 {
		return nil
	}
	issues = s.shield(kind, v, issues)
	if !res.Valid() {
		if obj, ok := v.(map[string]any); ok && obj["resourceType"] != nil {
			// A FHIR resource sent where a native record goes (a
			// beginner's review: four schema errors, no hint where it
			// belongs).
			issues = append(issues, newIssue(RuleKindMismatch, CodeStructure, nil, "this looks like a FHIR resource "+
				"(it has resourceType), not a clinic's native record: send FHIR resources to the FHIR API (POST /fhir/{type}, "+
				"or a transaction or batch Bundle to POST /fhir); POST /ingest/{kind} takes native records (see schemas/examples)"))
		} else if other := s.validAs(kind, v); other != "" {
			// Sent as the wrong kind: say which it is, first (normalize),
			// then the issues of the kind it was sent as.
			issues = append(issues, newIssue(RuleKindMismatch, CodeStructure, nil, fmt.Sprintf(
				"this is a valid %s record, not a valid %s record: send it as kind %s (POST /ingest/%s, or --kind %s); "+
					"the issues after this one are what the %s schema finds", other, kind, other, other, other, kind)))
		}
	}
	return &ValidationError{Kind: kind, Issues: normalize(issues)}
}

// validAs is the first kind other than kind whose schema accepts the
// decoded document v, "" for none: a record sent as the wrong kind.
func (s *Set) validAs(kind string, v any) string {
	for _, k := range kinds {
		sch, ok := s.compiled[k]
		if k == kind || !ok {
			continue
		}
		if res, err := sch.Validate(decodedLoader{v}); err == nil && res.Valid() && len(s.integerLiterals(k, v)) == 0 {
			return k
		}
	}
	return ""
}

// integerLiterals reports integer-typed values written with a fraction or an
// exponent (1.0, 1e0), and instants whose UTC time falls outside the years
// 0001-9999 (instantInRange). JSON Schema counts them as integers, but Go's
// encoding/json cannot decode them into an int, so the contract requires
// plain digits. It follows the schema's properties and items (through
// $ref); the conditional parts of the schemas declare no integers.
func (s *Set) integerLiterals(kind string, doc any) []Issue {
	var issues []Issue
	var walk func(file string, sch any, v any, path []pathElem)
	walk = func(file string, sch any, v any, path []pathElem) {
		file, m := s.resolve(file, sch)
		if m == nil {
			return
		}
		switch x := v.(type) {
		case json.Number:
			if m["type"] == "integer" && !plainInteger(string(x)) {
				issues = append(issues, newIssue(RuleType, CodeStructure, path,
					labelOf(path)+" must be an integer written with digits only (no fraction or exponent)"))
			}
		case string:
			if m["format"] == "date-time" && !instantInRange(x) {
				issues = append(issues, newIssue(RuleFormat, CodeValue, path,
					labelOf(path)+" must be an instant whose UTC time lies in the years 0001-9999: with its offset it falls outside, where no date search finds it"))
			}
		case map[string]any:
			props, _ := m["properties"].(map[string]any)
			for k, pv := range x {
				if ps, ok := props[k]; ok {
					walk(file, ps, pv, append(path, keyElem(k)))
				}
			}
		case []any:
			if items, ok := m["items"]; ok {
				for i, e := range x {
					walk(file, items, e, append(path, indexElem(i)))
				}
			}
		}
	}
	walk(kind, s.parsed[kind], doc, nil)
	return issues
}

// instantInRange reports whether an instant, converted to UTC, still lies
// in the years 0001-9999: a FHIR instant (and the gateway's date index)
// holds no other. 9999-12-31T23:00:00-05:00 is in the year 10000 in UTC. A
// value that is no instant at all is the pattern's to report.
func instantInRange(v string) bool {
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return true
	}
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// resolve follows $ref (within the embedded files) to an object schema. It
// returns nil for boolean schemas and unresolvable references.
func (s *Set) resolve(file string, sch any) (string, map[string]any) {
	for range 16 {
		m, ok := sch.(map[string]any)
		if !ok {
			return file, nil
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return file, m
		}
		target, frag, _ := strings.Cut(ref, "#")
		if target != "" {
			file = strings.TrimSuffix(target, ".schema.json")
		}
		sch = s.parsed[file]
		for _, tok := range strings.Split(strings.TrimPrefix(frag, "/"), "/") {
			if tok == "" {
				continue
			}
			if mm, ok := sch.(map[string]any); ok {
				sch = mm[tok]
			} else {
				return file, nil
			}
		}
	}
	return file, nil
}

func plainInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// decodedLoader hands an already decoded document (with json.Number) to
// gojsonschema, so that the document is decoded only once.
type decodedLoader struct{ doc any }

func (l decodedLoader) JsonSource() interface{}                       { return nil }
func (l decodedLoader) LoadJSON() (interface{}, error)                { return l.doc, nil }
func (l decodedLoader) LoaderFactory() gojsonschema.JSONLoaderFactory { return embeddedFactory{} }
func (l decodedLoader) JsonReference() (gojsonreference.JsonReference, error) {
	return gojsonreference.NewJsonReference("#")
}

// embeddedLoader is a gojsonschema.JSONLoader for a schema identified by its
// $id. Its loader factory serves only the embedded schema files, so a
// reference that does not resolve fails instead of being fetched over HTTP.
type embeddedLoader struct {
	url   string
	files map[string][]byte
}

func (l embeddedLoader) JsonSource() interface{} { return l.url }

func (l embeddedLoader) LoadJSON() (interface{}, error) {
	base, _, _ := strings.Cut(l.url, "#")
	b, ok := l.files[base]
	if !ok {
		return nil, errors.New("schemas: reference to a schema that is not embedded: " + l.url)
	}
	return gojsonschema.NewBytesLoader(b).LoadJSON()
}

func (l embeddedLoader) JsonReference() (gojsonreference.JsonReference, error) {
	return gojsonreference.NewJsonReference(l.url)
}

func (l embeddedLoader) LoaderFactory() gojsonschema.JSONLoaderFactory {
	return embeddedFactory{files: l.files}
}

type embeddedFactory struct{ files map[string][]byte }

func (f embeddedFactory) New(source string) gojsonschema.JSONLoader {
	return embeddedLoader{url: source, files: f.files}
}

// Renumbered returns the record doc (JSON) made a record of its own for
// load tests, benchmarks and bulk imports: every recordId in it and the
// patient's id and MRN value with suffix appended. The record is otherwise
// unchanged (it stays valid when doc is).
func Renumbered(doc []byte, suffix string) ([]byte, error) {
	var v map[string]any
	if err := json.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	var walk func(any)
	walk = func(x any) {
		switch n := x.(type) {
		case map[string]any:
			for k, y := range n {
				if s, ok := y.(string); ok && k == "recordId" {
					n[k] = s + suffix
					continue
				}
				walk(y)
			}
		case []any:
			for _, y := range n {
				walk(y)
			}
		}
	}
	walk(v)
	if p, ok := v["patient"].(map[string]any); ok {
		if id, ok := p["id"].(string); ok {
			p["id"] = id + suffix
		}
		if m, ok := p["mrn"].(map[string]any); ok {
			if s, ok := m["value"].(string); ok {
				m["value"] = s + suffix
			}
		}
	}
	return json.Marshal(v)
}
