package schemas

import (
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
}

// shield relocates every issue whose location passes through a property
// the kind's schema does not define to the object holding that property,
// and lists the defined properties in the message of RuleAdditionalProperty
// issues. The issues' rules and order are kept.
func (s *Set) shield(kind string, issues []Issue) []Issue {
	for i := range issues {
		is := &issues[i]
		path, props, cut := s.knownPrefix(kind, is.path)
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

// knownPrefix follows path through kind's schema and returns its longest
// prefix whose keys the schema defines (array indices are no text of the
// sender's), the properties the schema defines for the object there
// (sorted; nil when it is no object the schema describes), and whether
// path was cut.
func (s *Set) knownPrefix(kind string, path []pathElem) ([]pathElem, []string, bool) {
	nodes := []schemaNode{{kind, s.parsed[kind]}}
	for i, e := range path {
		if e.isIndex {
			nodes = s.items(nodes)
			continue
		}
		props := s.properties(nodes)
		sub, ok := props[e.key]
		if !ok {
			return path[:i:i], propertyNames(props), true
		}
		nodes = sub
	}
	return path, propertyNames(s.properties(nodes)), false
}

// properties gathers the properties the schemas nodes define for an
// object, with those of the schemas they combine (allOf, anyOf, oneOf,
// if, then, else), through $ref: every name one of them allows.
func (s *Set) properties(nodes []schemaNode) map[string][]schemaNode {
	out := map[string][]schemaNode{}
	s.combined(nodes, func(file string, m map[string]any) {
		if ps, ok := m["properties"].(map[string]any); ok {
			for name, p := range ps {
				out[name] = append(out[name], schemaNode{file, p})
			}
		}
	})
	return out
}

// items gathers the item schemas of the array schemas among nodes (and
// of the schemas they combine).
func (s *Set) items(nodes []schemaNode) []schemaNode {
	var out []schemaNode
	s.combined(nodes, func(file string, m map[string]any) {
		if it, ok := m["items"]; ok {
			out = append(out, schemaNode{file, it})
		}
	})
	return out
}

// combined calls visit with each schema of nodes and each schema they
// combine (allOf, anyOf, oneOf, if, then, else), $refs resolved, to a
// depth of 8.
func (s *Set) combined(nodes []schemaNode, visit func(file string, m map[string]any)) {
	var add func(file string, sch any, depth int)
	add = func(file string, sch any, depth int) {
		file, m := s.resolve(file, sch)
		if m == nil || depth > 8 {
			return
		}
		visit(file, m)
		for _, k := range []string{"allOf", "anyOf", "oneOf"} {
			if list, ok := m[k].([]any); ok {
				for _, sub := range list {
					add(file, sub, depth+1)
				}
			}
		}
		for _, k := range []string{"if", "then", "else"} {
			if sub, ok := m[k]; ok {
				add(file, sub, depth+1)
			}
		}
	}
	for _, n := range nodes {
		add(n.file, n.sch, 0)
	}
}

// propertyNames are props' names, sorted, but for those no schema allows
// (a property declared false, such as a nested record's own source).
func propertyNames(props map[string][]schemaNode) []string {
	if len(props) == 0 {
		return nil
	}
	names := make([]string, 0, len(props))
	for name, nodes := range props {
		if slices.ContainsFunc(nodes, func(n schemaNode) bool { return n.sch != false }) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}
