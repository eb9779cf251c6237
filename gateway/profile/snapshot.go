package profile

import (
	"fmt"
	"slices"
	"strings"
)

// deriveSnapshot applies a differential to its base's snapshot
// (profiling.html#snapshot): each differential element constrains the base
// element with the same id, or a new slice of one; an element inside a
// data type (Observation.code.text) first expands the type's elements from
// its R4 definition, an element inside a slice the sliced element's. The
// base is not changed. Returns an error for an element the base does not
// have, or one that loosens what the base requires.
func deriveSnapshot(lib *library, base *StructureDefinition, diff []*ElementDefinition, source string) ([]*ElementDefinition, error) {
	s := &snapshot{lib: lib}
	for _, e := range base.Snapshot.Element {
		s.els = append(s.els, e.clone())
	}
	for _, d := range diff {
		i, err := s.ensure(d.ID)
		if err != nil {
			return nil, err
		}
		if err := constrain(s.els[i], d, source); err != nil {
			return nil, fmt.Errorf("%s: %w", d.ID, err)
		}
	}
	return s.els, nil
}

// snapshot is a snapshot being derived.
type snapshot struct {
	lib *library
	els []*ElementDefinition
}

func (s *snapshot) index(id string) int {
	return slices.IndexFunc(s.els, func(e *ElementDefinition) bool { return e.ID == id })
}

// end returns the index after element i and everything below it (its
// children and slices).
func (s *snapshot) end(i int) int {
	id := s.els[i].ID
	j := i + 1
	for j < len(s.els) && (strings.HasPrefix(s.els[j].ID, id+".") || strings.HasPrefix(s.els[j].ID, id+":")) {
		j++
	}
	return j
}

func (s *snapshot) insert(at int, els ...*ElementDefinition) {
	s.els = slices.Insert(s.els, at, els...)
}

// ensure returns the index of the element with id, creating it (a new
// slice, or a data type's elements) when the snapshot has none yet.
func (s *snapshot) ensure(id string) (int, error) {
	if i := s.index(id); i >= 0 {
		return i, nil
	}
	parent, name, slice := splitID(id)
	if parent == "" {
		return 0, fmt.Errorf("%s: not an element of the base", id)
	}
	if slice != "" {
		si, err := s.ensure(parent + "." + name)
		if err != nil {
			return 0, err
		}
		sliced := s.els[si]
		if sliced.Slicing == nil {
			return 0, fmt.Errorf("%s: %s is not sliced", id, sliced.ID)
		}
		el := sliced.clone()
		el.ID, el.SliceName, el.Slicing, el.Min = id, slice, nil, ptr(0)
		if base, ok := strings.CutSuffix(name, "[x]"); ok && len(el.Type) > 1 {
			// A type slice (value[x]:valueQuantity) has the type it names.
			el.Type = slices.DeleteFunc(el.Type, func(t TypeRef) bool { return base+upper(t.Code) != slice })
		}
		at := s.end(si)
		s.insert(at, el)
		return at, nil
	}
	pi, err := s.ensure(parent)
	if err != nil {
		return 0, err
	}
	if pi+1 >= len(s.els) || !strings.HasPrefix(s.els[pi+1].ID, parent+".") {
		if err := s.expand(pi); err != nil {
			return 0, err
		}
	}
	if i := s.index(id); i >= 0 {
		return i, nil
	}
	return 0, fmt.Errorf("%s: not an element of the base", id)
}

// expand inserts the elements below element i: a slice's are copies of the
// sliced element's, an element of a data type gets the type's elements.
func (s *snapshot) expand(i int) error {
	p := s.els[i]
	var children []*ElementDefinition
	if p.SliceName != "" {
		parent, name, _ := splitID(p.ID)
		sliced := parent + "." + name
		if si := s.index(sliced); si >= 0 && si+1 < len(s.els) && strings.HasPrefix(s.els[si+1].ID, sliced+".") {
			for _, c := range s.els[si+1 : s.end(si)] {
				if strings.HasPrefix(c.ID, sliced+".") {
					el := c.clone()
					el.ID = p.ID + strings.TrimPrefix(c.ID, sliced)
					children = append(children, el)
				}
			}
		}
	}
	if children == nil {
		if len(p.Type) != 1 {
			return fmt.Errorf("%s: cannot expand an element of %d types", p.ID, len(p.Type))
		}
		sd := s.lib.typeSD(p.Type[0].Code)
		if sd == nil {
			return fmt.Errorf("%s: no R4 definition of %s", p.ID, p.Type[0].Code)
		}
		root := sd.Snapshot.Element[0].ID
		for _, c := range sd.Snapshot.Element[1:] {
			el := c.clone()
			el.ID = p.ID + strings.TrimPrefix(c.ID, root)
			el.Path = p.Path + strings.TrimPrefix(c.Path, root)
			children = append(children, el)
		}
	}
	s.insert(i+1, children...)
	return nil
}

// constrain applies differential element d to snapshot element e.
func constrain(e, d *ElementDefinition, source string) error {
	if d.Min != nil {
		if *d.Min < e.min() && e.SliceName == "" {
			return fmt.Errorf("min %d is below the base's %d", *d.Min, e.min())
		}
		e.Min = ptr(*d.Min)
	}
	if d.Max != "" {
		if m := maxInt(e.Max); m >= 0 && (maxInt(d.Max) < 0 || maxInt(d.Max) > m) {
			return fmt.Errorf("max %s is above the base's %s", d.Max, e.Max)
		}
		e.Max = d.Max
	}
	if d.Type != nil {
		for _, t := range d.Type {
			if !slices.Contains(e.typeCodes(), t.Code) {
				return fmt.Errorf("type %s is not one of the base's %v", t.Code, e.typeCodes())
			}
		}
		e.Type = slices.Clone(d.Type)
	}
	if d.Short != "" {
		e.Short = d.Short
	}
	if d.Definition != "" {
		e.Definition = d.Definition
	}
	if d.Slicing != nil {
		sl := *d.Slicing
		e.Slicing = &sl
	}
	if d.Fixed != nil {
		e.Fixed = d.Fixed
	}
	if d.Pattern != nil {
		e.Pattern = d.Pattern
	}
	if d.Binding != nil {
		b := *d.Binding
		e.Binding = &b
	}
	for _, c := range d.Constraint {
		c.Source = source
		e.Constraint = append(e.Constraint, c)
	}
	e.Condition = append(e.Condition, d.Condition...)
	for _, x := range d.Extension {
		if x.URL == RuleExtension {
			// The element's own rule replaces the one its slice copied.
			e.Extension = slices.DeleteFunc(e.Extension, func(y Extension) bool { return y.URL == RuleExtension })
		}
		e.Extension = append(e.Extension, x)
	}
	if d.MustSupport {
		e.MustSupport = true
	}
	return nil
}

// upper returns s with its first letter upper-cased.
func upper(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
