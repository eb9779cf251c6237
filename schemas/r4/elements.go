package r4

import (
	"slices"
	"strings"
)

// Element describes one element of an R4 type as its JSON carries it, for
// code that edits resources (FHIRPath Patch, _elements).
type Element struct {
	// Name is the JSON name; for a choice element (value[x]) the base
	// name ("value"), whose JSON keys are Name plus a type ("valueQuantity").
	Name string
	// Multi is set when the JSON value is an array (max > 1).
	Multi bool
	// Choice marks a value[x] element.
	Choice bool
	// Required is set for an element with min >= 1.
	Required bool
	// Types are the FHIR type codes allowed ("Quantity", "string",
	// "Observation.component" for a backbone element).
	Types []string
}

// Element returns the element of resourceType reached by the element
// names path ("name", "given"; a choice element by its name only as the
// last, or by its JSON key anywhere: "valueQuantity", "comparator"), and
// whether there is one.
func (v *Validator) Element(resourceType string, path ...string) (Element, bool) {
	td := v.s.resources[resourceType]
	if td == nil || len(path) == 0 {
		return Element{}, false
	}
	for i, name := range path {
		idx, ok := td.byName[name]
		alt := 0
		if !ok {
			// A JSON key ("valueQuantity"): one alternative of a choice.
			ref, found := td.keys[name]
			if !found || ref.ext {
				return Element{}, false
			}
			idx, alt = int(ref.elem), int(ref.alt)
		}
		e := &td.elems[idx]
		if i == len(path)-1 {
			return element(e), true
		}
		if (e.choice && ok) || alt >= len(e.alts) || e.alts[alt].def == nil {
			return Element{}, false
		}
		td = e.alts[alt].def
	}
	return Element{}, false
}

// Elements returns the elements of resourceType in definition order (nil
// for an unknown type).
func (v *Validator) Elements(resourceType string) []Element {
	td := v.s.resources[resourceType]
	if td == nil {
		return nil
	}
	out := make([]Element, len(td.elems))
	for i := range td.elems {
		out[i] = element(&td.elems[i])
	}
	return out
}

func element(e *elemDef) Element {
	out := Element{Name: e.name, Multi: e.multi, Choice: e.choice, Required: e.min > 0}
	for _, a := range e.alts {
		out.Types = append(out.Types, a.typeName)
	}
	return out
}

// SummaryElements returns the element paths of resourceType that the R4
// definitions mark isSummary (what _summary=true keeps): names below the
// resource, dotted below backbone elements ("component.code"), a choice
// element by its base name ("value"). Nil for an unknown type.
func SummaryElements(resourceType string) []string {
	s, ok := summaryElements[resourceType]
	if !ok {
		return nil
	}
	return strings.Fields(s)
}

// Node is the R4 definition of one JSON object of a decoded resource: a
// resource, a complex data type, a backbone element, or the "_name"
// sibling of a primitive (its id and extensions). It lets code that works
// on decoded JSON (the rewriting of a Bundle's links) know each member's
// FHIR type. The zero Node is the definition of nothing: it has no members.
type Node struct{ td *typeDef }

// ResourceNode returns the Node of a resourceType's JSON object, the zero
// Node for a name that is not an R4 resource type. It loads the embedded
// definitions on first use, as New does (and panics as New does).
func ResourceNode(resourceType string) Node {
	s, err := loadSchema()
	if err != nil {
		panic("r4: embedded FHIR definitions are corrupt: " + err.Error())
	}
	return Node{s.resources[resourceType]}
}

// Type returns the FHIR type code of n ("Observation", "Reference",
// "Observation.component", "Element" for a primitive's sibling), "" for
// the zero Node.
func (n Node) Type() string {
	if n.td == nil {
		return ""
	}
	return n.td.name
}

// Member returns the FHIR type code of the JSON property key of an object
// n describes ("uri", "string", "Reference", "Resource" for a nested
// resource, whose own Node is that of its resourceType) and, for a complex
// or backbone type or a primitive's "_name" sibling, the Node of its
// object(s). A choice element's key names its type ("valueUri": "uri").
// ok is false for a key R4 does not define there.
func (n Node) Member(key string) (typ string, child Node, ok bool) {
	if n.td == nil {
		return "", Node{}, false
	}
	ref, ok := n.td.keys[key]
	if !ok {
		return "", Node{}, false
	}
	a := &n.td.elems[ref.elem].alts[ref.alt]
	if ref.ext {
		s, _ := loadSchema() // loaded: n came from it
		return s.element.name, Node{s.element}, true
	}
	return a.typeName, Node{a.def}, true
}

// CodeSystems returns, sorted, the code systems of the expansion of the
// required binding of the element at the JSON property key of an object n
// describes: those CodeSystem can return for it (nil when it has none).
func (n Node) CodeSystems(key string) []string {
	if n.td == nil {
		return nil
	}
	ref, ok := n.td.keys[key]
	if !ok || ref.ext || n.td.elems[ref.elem].vs == nil {
		return nil
	}
	var out []string
	for sys := range n.td.elems[ref.elem].vs.bySystem {
		out = append(out, sys)
	}
	slices.Sort(out)
	return out
}

// CodeSystem returns the code system that defines code in the required
// binding of the element at the JSON property key of an object n
// describes, as the R4 definitions expand its value set: the system a
// code element ("gender" of a Patient, "status" of an Observation)
// implies for its value, which carries none. "" when the element has no
// required binding with an expansion (a string, an extensible binding, a
// value set the definitions do not expand), or when code is in none of
// the expansion's systems or in more than one.
func (n Node) CodeSystem(key, code string) string {
	if n.td == nil {
		return ""
	}
	ref, ok := n.td.keys[key]
	if !ok || ref.ext {
		return ""
	}
	vs := n.td.elems[ref.elem].vs
	if vs == nil {
		return ""
	}
	if _, ok := vs.codes[code]; !ok {
		return ""
	}
	found := ""
	for sys, codes := range vs.bySystem {
		if _, ok := codes[code]; ok {
			if found != "" {
				return ""
			}
			found = sys
		}
	}
	return found
}
