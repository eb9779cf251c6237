package schemas

import (
	"encoding/json"
	"slices"
	"strings"
)

// A property name the schema of a kind does not define is the sender's
// text, and may be data (a patient's name or MRN used as a key by a
// faulty export): like a value, it is never repeated in an issue. An
// issue located under such a key is located at the object that holds it
// instead, and an unknown property (RuleAdditionalProperty) says which
// properties its object may have, so that a developer still finds the
// stray key by comparing (docs/records.md). The FHIR validator names the
// element's parent likewise ("the property name is not shown").

// schemaNode is a schema (in the embedded file that holds it) reached by
// following a document's path.
type schemaNode struct {
	file string
	sch  any
	// applies: the node was reached through the then (or else) of an if
	// the document was found to meet (or not): its false properties are
	// forbidden for this document.
	applies bool
}

// shield relocates every issue whose location passes through a property
// the kind's schema does not define to the object holding that property,
// and lists the defined properties in the message of RuleAdditionalProperty
// issues. The issues' rules and order are kept.
func (s *Set) shield(kind string, doc any, issues []Issue) []Issue {
	for i := range issues {
		is := &issues[i]
		path, props, cut := s.knownPrefix(kind, doc, is.path)
		if cut {
			is.path = path
			is.Pointer, is.Expression = pointer(path), expression(path)
		}
		if is.Rule == RuleAdditionalProperty && len(props) > 0 {
			is.Message += "; the properties " + where(path) + " may have are " + strings.Join(props, ", ")
		}
	}
	return issues
}

// where names a location in a message: its expression, or "the record".
func where(path []pathElem) string {
	if len(path) == 0 {
		return "the record"
	}
	return expression(path)
}

// knownPrefix follows path through kind's schema and doc (the decoded
// document, nil when it could not be decoded) and returns its longest
// prefix whose keys the schema defines (array indices are no text of the
// sender's), the properties the schema allows for the object there
// (sorted; nil when it is no object the schema describes), and whether
// path was cut. The properties are those allowed for this document where
// the schema's if/then/else can be decided on it (an instrument's own
// items: C-SSRS answers, PHQ-9 scores), else those of every branch.
func (s *Set) knownPrefix(kind string, doc any, path []pathElem) ([]pathElem, []string, bool) {
	nodes := []schemaNode{{file: kind, sch: s.parsed[kind]}}
	inst := doc
	for i, e := range path {
		if e.isIndex {
			nodes = s.items(nodes, inst)
			inst = elem(inst, e)
			continue
		}
		props := s.properties(nodes, inst)
		sub, ok := props[e.key]
		if !ok {
			return path[:i:i], propertyNames(props), true
		}
		nodes = sub
		inst = elem(inst, e)
	}
	return path, propertyNames(s.properties(nodes, inst)), false
}

// elem is the value at e in the decoded value v (nil when there is none).
func elem(v any, e pathElem) any {
	switch x := v.(type) {
	case map[string]any:
		if !e.isIndex {
			return x[e.key]
		}
	case []any:
		if e.isIndex && e.index >= 0 && e.index < len(x) {
			return x[e.index]
		}
	}
	return nil
}

// properties gathers the properties the schemas nodes define for an
// object, with those of the schemas they combine (allOf, anyOf, oneOf,
// if, then, else), through $ref: every name one of them allows.
func (s *Set) properties(nodes []schemaNode, inst any) map[string][]schemaNode {
	out := map[string][]schemaNode{}
	s.combined(nodes, inst, func(file string, m map[string]any, applies bool) {
		if ps, ok := m["properties"].(map[string]any); ok {
			for name, p := range ps {
				out[name] = append(out[name], schemaNode{file: file, sch: p, applies: applies})
			}
		}
	})
	return out
}

// items gathers the item schemas of the array schemas among nodes (and
// of the schemas they combine).
func (s *Set) items(nodes []schemaNode, inst any) []schemaNode {
	var out []schemaNode
	s.combined(nodes, inst, func(file string, m map[string]any, applies bool) {
		if it, ok := m["items"]; ok {
			out = append(out, schemaNode{file: file, sch: it, applies: applies})
		}
	})
	return out
}

// combined calls visit with each schema of nodes and each schema they
// combine (allOf, anyOf, oneOf, if, then, else), $refs resolved, to a
// depth of 8.
func (s *Set) combined(nodes []schemaNode, inst any, visit func(file string, m map[string]any, applies bool)) {
	var add func(file string, sch any, applies bool, depth int)
	add = func(file string, sch any, applies bool, depth int) {
		file, m := s.resolve(file, sch)
		if m == nil || depth > 8 {
			return
		}
		visit(file, m, applies)
		for _, k := range []string{"allOf", "anyOf", "oneOf"} {
			if list, ok := m[k].([]any); ok {
				for _, sub := range list {
					add(file, sub, applies, depth+1)
				}
			}
		}
		cond, hasIf := m["if"]
		met, decided := false, false
		if hasIf {
			met, decided = s.meets(file, cond, inst)
		}
		for _, k := range []string{"if", "then", "else"} {
			sub, ok := m[k]
			switch {
			case !ok:
			case decided && k == "then" && !met, decided && k == "else" && met:
				// The branch the document does not take.
			case decided && k != "if":
				add(file, sub, true, depth+1)
			default:
				add(file, sub, applies, depth+1)
			}
		}
	}
	for _, n := range nodes {
		add(n.file, n.sch, n.applies, 0)
	}
}

// meets decides whether inst meets the if-schema cond, when cond is of a
// form it reads (properties with const or enum, required); decided is
// false otherwise, and for a document it has not (nil).
func (s *Set) meets(file string, cond any, inst any) (met, decided bool) {
	_, m := s.resolve(file, cond)
	obj, isObj := inst.(map[string]any)
	if m == nil || !isObj {
		return false, false
	}
	met = true
	for k, v := range m {
		switch k {
		case "$comment", "description":
		case "required":
			list, ok := v.([]any)
			if !ok {
				return false, false
			}
			for _, name := range list {
				n, _ := name.(string)
				if _, ok := obj[n]; !ok {
					met = false
				}
			}
		case "properties":
			ps, ok := v.(map[string]any)
			if !ok {
				return false, false
			}
			for name, p := range ps {
				pm, ok := p.(map[string]any)
				if !ok {
					return false, false
				}
				val, present := obj[name]
				for pk, pv := range pm {
					switch pk {
					case "const":
						if present && !sameScalar(val, pv) {
							met = false
						}
					case "enum":
						list, _ := pv.([]any)
						if present && !slices.ContainsFunc(list, func(x any) bool { return sameScalar(val, x) }) {
							met = false
						}
					default:
						return false, false
					}
				}
			}
		default:
			return false, false
		}
	}
	return met, true
}

// sameScalar compares a document's value with a schema's string or
// boolean constant (other values are never the same).
func sameScalar(a, b any) bool {
	switch b.(type) {
	case string, bool:
		return a == b
	}
	return false
}

// propertyNames are props' names, sorted, but for those no schema allows
// (a property declared false, such as a nested record's own source) and
// those a branch that applies to the document forbids (false in the then
// of an if the document meets: score for the C-SSRS screener's items).
func propertyNames(props map[string][]schemaNode) []string {
	if len(props) == 0 {
		return nil
	}
	names := make([]string, 0, len(props))
	for name, nodes := range props {
		if slices.ContainsFunc(nodes, func(n schemaNode) bool { return n.sch == false && n.applies }) {
			continue
		}
		if slices.ContainsFunc(nodes, func(n schemaNode) bool { return n.sch != false }) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// UnknownProperties returns the JSON pointers of the properties of doc, a
// record of kind, that its schema does not define (the stray keys a
// RuleAdditionalProperty issue is about, which the issues never name). A
// pointer holds the sender's text: it is for the sender's own tools (the
// CLI's map, on the developer's file), never for an answer to a client or
// a log. None when doc is no JSON or the kind is unknown.
func (s *Set) UnknownProperties(kind string, doc []byte) []string {
	if _, ok := s.parsed[kind]; !ok {
		return nil
	}
	var v any
	if json.Unmarshal(doc, &v) != nil {
		return nil
	}
	var out []string
	var walk func(x any, path []pathElem)
	walk = func(x any, path []pathElem) {
		switch y := x.(type) {
		case map[string]any:
			keys := make([]string, 0, len(y))
			for k := range y {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				p := append(slices.Clip(path), keyElem(k))
				if _, _, cut := s.knownPrefix(kind, v, p); cut {
					out = append(out, pointer(p))
					continue
				}
				walk(y[k], p)
			}
		case []any:
			for i, e := range y {
				walk(e, append(slices.Clip(path), indexElem(i)))
			}
		}
	}
	walk(v, nil)
	return out
}
