package r4

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"sync"
)

// prim identifies a FHIR primitive type; pNone marks complex types.
type prim uint8

const (
	pNone prim = iota
	pBoolean
	pInteger
	pUnsignedInt
	pPositiveInt
	pDecimal
	pString
	pMarkdown
	pCode
	pID
	pURI
	pURL
	pCanonical
	pUUID
	pOID
	pBase64Binary
	pInstant
	pDate
	pDateTime
	pTime
	pXHTML
)

// primByName maps FHIR primitive type codes to their kind. Read-only.
var primByName = map[string]prim{
	"boolean": pBoolean, "integer": pInteger, "unsignedInt": pUnsignedInt,
	"positiveInt": pPositiveInt, "decimal": pDecimal, "string": pString,
	"markdown": pMarkdown, "code": pCode, "id": pID, "uri": pURI, "url": pURL,
	"canonical": pCanonical, "uuid": pUUID, "oid": pOID,
	"base64Binary": pBase64Binary, "instant": pInstant, "date": pDate,
	"dateTime": pDateTime, "time": pTime, "xhtml": pXHTML,
}

// typeKind distinguishes the kinds of structured types.
type typeKind uint8

const (
	kindResource typeKind = iota + 1
	kindComplex
	kindBackbone
)

// typeDef is a resource, complex data type or backbone element.
type typeDef struct {
	name     string // "Observation", "Quantity", "Observation.component"
	kind     typeKind
	elems    []elemDef
	keys     map[string]keyRef // JSON property name -> element
	byName   map[string]int    // element (choice base) name -> index in elems
	required []int             // indices of elements with min >= 1
	bound    []int             // indices of elements with a checked required binding
	checks   []*invariant      // invariants evaluated on every instance
}

// elemDef is one element of a typeDef.
type elemDef struct {
	name   string // JSON name, or the choice base name ("value" for value[x])
	choice bool
	multi  bool // max > 1: the JSON value is an array
	min    int
	alts   []altDef  // one per allowed type; exactly one unless choice
	vs     *valueSet // required binding, if expandable
	// targets are the resource types its Reference alternative may point
	// to (R4's type.targetProfile), nil when any may.
	targets []string
}

// altDef is one allowed type of an element.
type altDef struct {
	key      string // JSON property name ("valueQuantity", "status")
	typeName string // FHIR type code ("Quantity", "code", "Observation.component")
	prim     prim
	def      *typeDef // complex and backbone types
	resource bool     // the abstract Resource type: a nested resource
}

// keyRef resolves a JSON property name to an element and alternative.
type keyRef struct {
	elem uint16
	alt  uint8
	ext  bool // the "_name" sibling carrying a primitive's id/extensions
}

// valueSet is the expansion of a required value set.
type valueSet struct {
	url      string
	codes    map[string]struct{}            // every code, whatever its system
	bySystem map[string]map[string]struct{} // system -> codes
}

// schema is the loaded model. It is immutable once built.
type schema struct {
	types     map[string]*typeDef
	resources map[string]*typeDef
	element   *typeDef // shape of "_name" primitive extension objects
}

// Serialized shape written by internal/gen.
type defFile struct {
	FHIRVersion string   `json:"fhirVersion"`
	Resources   []string `json:"resources"`
	Types       []struct {
		Name  string `json:"n"`
		Kind  string `json:"k"`
		Elems []struct {
			Name    string   `json:"n"`
			Types   []string `json:"t"`
			Min     int      `json:"r"`
			Multi   bool     `json:"m"`
			Choice  bool     `json:"c"`
			Binding int      `json:"b"`
			Targets []string `json:"g"`
		} `json:"e"`
	} `json:"types"`
	ValueSets []struct {
		URL     string `json:"u"`
		Systems []struct {
			System string   `json:"s"`
			Codes  []string `json:"c"`
		} `json:"s"`
	} `json:"valueSets"`
}

var (
	schemaOnce sync.Once
	schemaVal  *schema
	schemaErr  error
)

// loadSchema decodes the embedded definitions once per process.
func loadSchema() (*schema, error) {
	schemaOnce.Do(func() { schemaVal, schemaErr = buildSchema(definitionsGz) })
	return schemaVal, schemaErr
}

// buildSchema decodes gzipped definitions into a linked schema.
func buildSchema(gz []byte) (*schema, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, err
	}
	var f defFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, err
	}
	if f.FHIRVersion != "4.0.1" {
		return nil, fmt.Errorf("definitions are for FHIR %q, want 4.0.1", f.FHIRVersion)
	}
	vsets := make([]*valueSet, len(f.ValueSets))
	for i, src := range f.ValueSets {
		vs := &valueSet{url: src.URL, codes: map[string]struct{}{}, bySystem: map[string]map[string]struct{}{}}
		for _, s := range src.Systems {
			set := vs.bySystem[s.System]
			if set == nil {
				set = map[string]struct{}{}
				vs.bySystem[s.System] = set
			}
			for _, c := range s.Codes {
				set[c] = struct{}{}
				vs.codes[c] = struct{}{}
			}
		}
		vsets[i] = vs
	}

	s := &schema{types: map[string]*typeDef{}, resources: map[string]*typeDef{}}
	for _, t := range f.Types {
		td := &typeDef{name: t.Name, byName: map[string]int{}, keys: map[string]keyRef{}}
		switch t.Kind {
		case "r":
			td.kind = kindResource
		case "c":
			td.kind = kindComplex
		case "b":
			td.kind = kindBackbone
		default:
			return nil, fmt.Errorf("type %s: unknown kind %q", t.Name, t.Kind)
		}
		for _, e := range t.Elems {
			ed := elemDef{name: e.Name, choice: e.Choice, multi: e.Multi, min: e.Min, targets: e.Targets}
			if e.Binding > 0 {
				if e.Binding > len(vsets) {
					return nil, fmt.Errorf("%s.%s: bad binding index", t.Name, e.Name)
				}
				ed.vs = vsets[e.Binding-1]
			}
			for _, tn := range e.Types {
				ed.alts = append(ed.alts, altDef{typeName: tn, prim: primByName[tn], resource: tn == "Resource"})
			}
			td.elems = append(td.elems, ed)
		}
		s.types[t.Name] = td
	}
	for _, name := range f.Resources {
		td := s.types[name]
		if td == nil || td.kind != kindResource {
			return nil, fmt.Errorf("resource %s has no definition", name)
		}
		s.resources[name] = td
	}
	// The shape of "_name" objects: an Element (id and extensions only).
	s.element = &typeDef{name: "Element", kind: kindComplex, byName: map[string]int{}, keys: map[string]keyRef{},
		elems: []elemDef{
			{name: "id", alts: []altDef{{typeName: "string", prim: pString}}},
			{name: "extension", multi: true, alts: []altDef{{typeName: "Extension"}}},
		}}
	all := append(make([]*typeDef, 0, len(s.types)+1), s.element)
	for _, td := range s.types {
		all = append(all, td)
	}
	for _, td := range all {
		if err := s.link(td); err != nil {
			return nil, err
		}
	}
	if err := attachInvariants(s); err != nil {
		return nil, err
	}
	return s, nil
}

// link resolves element types and builds the property-name index of td.
func (s *schema) link(td *typeDef) error {
	for i := range td.elems {
		e := &td.elems[i]
		if len(e.alts) == 0 || len(e.alts) > 255 || i > 65535 {
			return fmt.Errorf("%s.%s: bad type list", td.name, e.name)
		}
		td.byName[e.name] = i
		if e.min > 0 {
			td.required = append(td.required, i)
		}
		if e.vs != nil {
			td.bound = append(td.bound, i)
		}
		for j := range e.alts {
			a := &e.alts[j]
			a.key = e.name
			if e.choice {
				a.key = e.name + upperFirst(a.typeName)
			}
			if a.prim == pNone && !a.resource {
				a.def = s.types[a.typeName]
				if a.def == nil {
					return fmt.Errorf("%s.%s: unknown type %s", td.name, e.name, a.typeName)
				}
			}
			td.keys[a.key] = keyRef{elem: uint16(i), alt: uint8(j)}
			if a.prim != pNone && a.prim != pXHTML { // xhtml takes no extensions
				td.keys["_"+a.key] = keyRef{elem: uint16(i), alt: uint8(j), ext: true}
			}
		}
	}
	return nil
}

// upperFirst upper-cases an ASCII first letter ("dateTime" -> "DateTime").
func upperFirst(s string) string {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return s
	}
	return string(s[0]-'a'+'A') + s[1:]
}
