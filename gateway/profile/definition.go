package profile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// StructureDefinition is the part of an R4 StructureDefinition the gateway
// writes and reads (structuredefinition.html).
type StructureDefinition struct {
	ResourceType   string    `json:"resourceType"`
	ID             string    `json:"id"`
	URL            string    `json:"url"`
	Version        string    `json:"version,omitempty"`
	Name           string    `json:"name"`
	Title          string    `json:"title,omitempty"`
	Status         string    `json:"status"`
	Experimental   *bool     `json:"experimental,omitempty"`
	Date           string    `json:"date,omitempty"`
	Publisher      string    `json:"publisher,omitempty"`
	Description    string    `json:"description,omitempty"`
	FHIRVersion    string    `json:"fhirVersion,omitempty"`
	Kind           string    `json:"kind"`
	Abstract       bool      `json:"abstract"`
	Context        []Context `json:"context,omitempty"`
	Type           string    `json:"type"`
	BaseDefinition string    `json:"baseDefinition,omitempty"`
	Derivation     string    `json:"derivation,omitempty"`
	Snapshot       *Elements `json:"snapshot,omitempty"`
	Differential   *Elements `json:"differential,omitempty"`
}

// Context is where an extension may be used.
type Context struct {
	Type       string `json:"type"`
	Expression string `json:"expression"`
}

// Elements is a snapshot or a differential.
type Elements struct {
	Element []*ElementDefinition `json:"element"`
}

// ElementDefinition is one element of a StructureDefinition
// (elementdefinition.html): the members the gateway uses. Fixed and
// Pattern hold a fixed[x] or pattern[x] value.
type ElementDefinition struct {
	ID                 string       `json:"id"`
	Extension          []Extension  `json:"extension,omitempty"`
	Path               string       `json:"path"`
	SliceName          string       `json:"sliceName,omitempty"`
	Slicing            *Slicing     `json:"slicing,omitempty"`
	Short              string       `json:"short,omitempty"`
	Definition         string       `json:"definition,omitempty"`
	Min                *int         `json:"min,omitempty"`
	Max                string       `json:"max,omitempty"`
	Base               *Base        `json:"base,omitempty"`
	ContentReference   string       `json:"contentReference,omitempty"`
	Type               []TypeRef    `json:"type,omitempty"`
	MeaningWhenMissing string       `json:"meaningWhenMissing,omitempty"`
	MaxLength          *int         `json:"maxLength,omitempty"`
	Condition          []string     `json:"condition,omitempty"`
	Constraint         []Constraint `json:"constraint,omitempty"`
	MustSupport        bool         `json:"mustSupport,omitempty"`
	IsModifier         *bool        `json:"isModifier,omitempty"`
	IsModifierReason   string       `json:"isModifierReason,omitempty"`
	IsSummary          *bool        `json:"isSummary,omitempty"`
	Binding            *Binding     `json:"binding,omitempty"`

	Fixed   *Value `json:"-"`
	Pattern *Value `json:"-"`
}

// Value is a fixed[x] or pattern[x]: its type suffix ("Uri", "Code",
// "CodeableConcept") and its JSON.
type Value struct {
	Type string
	JSON json.RawMessage
}

// Decoded returns the value decoded (numbers kept exact).
func (v *Value) Decoded() any {
	d := json.NewDecoder(bytes.NewReader(v.JSON))
	d.UseNumber()
	var out any
	_ = d.Decode(&out) // the JSON was valid when it was read or made
	return out
}

// Extension is an extension with a Coding value (the only kind the
// gateway puts on elements: the validation rule).
type Extension struct {
	URL         string  `json:"url"`
	ValueCoding *Coding `json:"valueCoding,omitempty"`
}

// Coding is a code with its system and display.
type Coding struct {
	System  string `json:"system,omitempty"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Slicing says how an element's repetitions divide into slices.
type Slicing struct {
	Discriminator []Discriminator `json:"discriminator,omitempty"`
	Description   string          `json:"description,omitempty"`
	Ordered       *bool           `json:"ordered,omitempty"`
	Rules         string          `json:"rules"`
}

// Discriminator tells slices apart: type value, pattern or type, at path.
type Discriminator struct {
	Type string `json:"type"`
	Path string `json:"path"`
}

// Base is the element's original definition.
type Base struct {
	Path string `json:"path"`
	Min  int    `json:"min"`
	Max  string `json:"max"`
}

// TypeRef is one allowed type of an element. Extension keeps the
// fhir-type extension R4 puts on primitive value types.
type TypeRef struct {
	Extension     json.RawMessage `json:"extension,omitempty"`
	Code          string          `json:"code"`
	Profile       []string        `json:"profile,omitempty"`
	TargetProfile []string        `json:"targetProfile,omitempty"`
	Aggregation   []string        `json:"aggregation,omitempty"`
	Versioning    string          `json:"versioning,omitempty"`
}

// Constraint is an invariant with its FHIRPath expression.
type Constraint struct {
	Key          string `json:"key"`
	Requirements string `json:"requirements,omitempty"`
	Severity     string `json:"severity"`
	Human        string `json:"human"`
	Expression   string `json:"expression,omitempty"`
	Source       string `json:"source,omitempty"`
}

// Binding binds a coded element to a ValueSet.
type Binding struct {
	Strength    string `json:"strength"`
	Description string `json:"description,omitempty"`
	ValueSet    string `json:"valueSet,omitempty"`
}

// plainElement marshals an ElementDefinition without fixed[x]/pattern[x].
type plainElement ElementDefinition

// UnmarshalJSON reads an element, with its fixed[x] or pattern[x].
func (e *ElementDefinition) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, (*plainElement)(e)); err != nil {
		return err
	}
	if !bytes.Contains(b, []byte(`"fixed`)) && !bytes.Contains(b, []byte(`"pattern`)) {
		return nil
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for k, v := range raw {
		if t, ok := strings.CutPrefix(k, "fixed"); ok && t != "" {
			e.Fixed = &Value{Type: t, JSON: v}
		}
		if t, ok := strings.CutPrefix(k, "pattern"); ok && t != "" {
			e.Pattern = &Value{Type: t, JSON: v}
		}
	}
	return nil
}

// MarshalJSON writes an element, with its fixed[x] or pattern[x].
func (e ElementDefinition) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(plainElement(e))
	if err != nil || e.Fixed == nil && e.Pattern == nil {
		return b, err
	}
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	for _, x := range []struct {
		prefix string
		v      *Value
	}{{"fixed", e.Fixed}, {"pattern", e.Pattern}} {
		if x.v != nil {
			fmt.Fprintf(&buf, `,"%s%s":`, x.prefix, x.v.Type)
			buf.Write(x.v.JSON)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// clone returns a deep copy of e.
func (e *ElementDefinition) clone() *ElementDefinition {
	c := *e
	c.Extension = slices.Clone(e.Extension)
	c.Type = slices.Clone(e.Type)
	c.Condition = slices.Clone(e.Condition)
	c.Constraint = slices.Clone(e.Constraint)
	if e.Min != nil {
		c.Min = ptr(*e.Min)
	}
	if e.MaxLength != nil {
		c.MaxLength = ptr(*e.MaxLength)
	}
	if e.Base != nil {
		b := *e.Base
		c.Base = &b
	}
	if e.Slicing != nil {
		s := *e.Slicing
		s.Discriminator = slices.Clone(e.Slicing.Discriminator)
		c.Slicing = &s
	}
	if e.Binding != nil {
		b := *e.Binding
		c.Binding = &b
	}
	return &c
}

// min returns the element's minimum cardinality (0 when unset).
func (e *ElementDefinition) min() int {
	if e.Min == nil {
		return 0
	}
	return *e.Min
}

// typeCodes lists the codes of the element's types.
func (e *ElementDefinition) typeCodes() []string {
	out := make([]string, 0, len(e.Type))
	for _, t := range e.Type {
		out = append(out, t.Code)
	}
	return out
}

// rule returns the validation rule the element names (an extension), or
// "" when it names none.
func (e *ElementDefinition) rule() (id, message string) {
	for _, x := range e.Extension {
		if x.URL == RuleExtension && x.ValueCoding != nil {
			return x.ValueCoding.Code, x.ValueCoding.Display
		}
	}
	return "", ""
}

// maxInt turns a max cardinality into a number (-1 for "*").
func maxInt(max string) int {
	if max == "*" || max == "" {
		return -1
	}
	n := 0
	for _, c := range max {
		n = n*10 + int(c-'0')
	}
	return n
}

// pathOf is the path of an element id: the id without its slice names.
func pathOf(id string) string {
	segs := strings.Split(id, ".")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ":")
	}
	return strings.Join(segs, ".")
}

// splitID splits an element id into its parent's id and its last
// segment's name and slice name ("Observation.category:vs" ->
// "Observation", "category", "vs").
func splitID(id string) (parent, name, slice string) {
	i := strings.LastIndexByte(id, '.')
	last := id
	if i >= 0 {
		parent, last = id[:i], id[i+1:]
	}
	name, slice, _ = strings.Cut(last, ":")
	return parent, name, slice
}

func ptr[T any](v T) *T { return &v }
