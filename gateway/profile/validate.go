package profile

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile/fhirpath"
)

// checker checks resources against one StructureDefinition by
// interpreting its snapshot. It checks what the profile adds to R4 (the R4
// structural validator checks the rest): cardinalities narrower than R4's,
// choice types, fixed and pattern values, slices and their cardinality,
// required bindings to ValueSets the gateway holds (extensible ones give
// warnings), and the constraints R4 does not define, as FHIRPath.
type checker struct {
	sd   *StructureDefinition
	root *node
}

// node is one element of the snapshot with the checks it adds.
type node struct {
	def      *ElementDefinition
	name     string // the JSON name; a choice element's base name ("value")
	choice   bool
	children []*node
	slices   []*node
	// rule and msg are the rule the element's failures report (its own or
	// inherited), "" for none.
	rule, msg string

	checkMin, checkMax bool
	min, max           int
	types              []string // the allowed types of a choice narrower than R4's
	fixed, pattern     any
	required, extended *ValueSet
	constraints        []invariantCheck
	// discriminators tell a slice's items apart (set on slices).
	discriminators []discriminator
	live           bool
}

type invariantCheck struct {
	c    Constraint
	expr *fhirpath.Expr
}

// discriminator is what one slicing discriminator expects of a slice's
// items: a fixed value (equal), a pattern (match) or a type at path.
type discriminator struct {
	kind, path string
	want       any
	pattern    bool
}

// compile builds the checker of sd. Returns an error when the snapshot is
// inconsistent (an element whose parent or sliced element is missing), a
// slice cannot be told apart, or a constraint is outside the FHIRPath
// subset.
func compile(lib *library, sd *StructureDefinition, vsets map[string]*ValueSet) (*checker, error) {
	els := sd.Snapshot.Element
	if len(els) == 0 || els[0].ID != sd.Type {
		return nil, fmt.Errorf("%s: the snapshot does not start with %s", sd.URL, sd.Type)
	}
	byID := map[string]*node{}
	var all []*node
	for _, e := range els {
		n := &node{def: e, name: e.Path}
		if e.Path != pathOf(e.ID) {
			return nil, fmt.Errorf("%s: element %s has path %s", sd.URL, e.ID, e.Path)
		}
		if byID[e.ID] != nil {
			return nil, fmt.Errorf("%s: element %s twice", sd.URL, e.ID)
		}
		parentID, name, slice := splitID(e.ID)
		var up *node
		switch {
		case parentID == "" && len(all) == 0:
		case slice != "":
			up = byID[parentID+"."+name]
			if up == nil {
				return nil, fmt.Errorf("%s: slice %s before its element", sd.URL, e.ID)
			}
			if up.def.Slicing == nil {
				return nil, fmt.Errorf("%s: slice %s of an element without slicing", sd.URL, e.ID)
			}
			up.slices = append(up.slices, n)
		default:
			up = byID[parentID]
			if up == nil {
				return nil, fmt.Errorf("%s: element %s before its parent", sd.URL, e.ID)
			}
			up.children = append(up.children, n)
		}
		if up != nil {
			n.name = name
			if base, ok := strings.CutSuffix(name, "[x]"); ok {
				n.name, n.choice = base, true
			}
		}
		byID[e.ID] = n
		all = append(all, n)
		n.rule, n.msg = e.rule()
		if n.rule == "" && up != nil {
			n.rule, n.msg = up.rule, up.msg
		}
		if err := n.compileChecks(lib, vsets, slice != ""); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", sd.URL, e.ID, err)
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		n := all[i]
		for _, s := range n.slices {
			if err := s.compileDiscriminators(n); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", sd.URL, s.def.ID, err)
			}
			n.live = n.live || s.live || s.checkMin || s.checkMax
		}
		for _, c := range n.children {
			n.live = n.live || c.live
		}
	}
	return &checker{sd: sd, root: all[0]}, nil
}

// compileChecks finds what the element adds to its R4 definition.
func (n *node) compileChecks(lib *library, vsets map[string]*ValueSet, isSlice bool) error {
	e := n.def
	core := lib.coreOf(e)
	if e.Base != nil {
		n.min, n.max = e.min(), maxInt(e.Max)
		n.checkMin = n.min > e.Base.Min || isSlice && n.min > 0
		n.checkMax = n.max >= 0 && (maxInt(e.Base.Max) < 0 || n.max < maxInt(e.Base.Max))
	}
	if n.choice && !isSlice && core != nil && len(e.Type) < len(core.Type) {
		n.types = e.typeCodes()
	}
	if e.Fixed != nil {
		n.fixed = e.Fixed.Decoded()
	}
	if e.Pattern != nil {
		n.pattern = e.Pattern.Decoded()
	}
	if b := e.Binding; b != nil && (core == nil || core.Binding == nil || canonical(core.Binding.ValueSet) != canonical(b.ValueSet)) {
		if vs := vsets[canonical(b.ValueSet)]; vs != nil {
			switch b.Strength {
			case "required":
				n.required = vs
			case "extensible":
				n.extended = vs
			}
		}
	}
	for _, c := range e.Constraint {
		if core != nil && slices.ContainsFunc(core.Constraint, func(x Constraint) bool { return x.Key == c.Key }) {
			continue
		}
		x, err := fhirpath.Parse(c.Expression)
		if err != nil {
			return fmt.Errorf("constraint %s: %w", c.Key, err)
		}
		n.constraints = append(n.constraints, invariantCheck{c: c, expr: x})
	}
	n.live = n.checkMin || n.checkMax || n.types != nil || n.fixed != nil || n.pattern != nil ||
		n.required != nil || n.extended != nil || len(n.constraints) > 0
	return nil
}

// compileDiscriminators finds what each discriminator of the sliced
// element expects of slice s.
func (s *node) compileDiscriminators(sliced *node) error {
	for _, d := range sliced.def.Slicing.Discriminator {
		x := discriminator{kind: d.Type, path: d.Path}
		switch d.Type {
		case "type":
			if d.Path != "$this" || len(s.def.Type) != 1 {
				return fmt.Errorf("type discriminator %s is not supported", d.Path)
			}
			x.want = s.def.Type[0].Code
		case "value", "pattern":
			at := s
			if d.Path != "$this" {
				at = valueAt([]*node{s}, strings.Split(d.Path, "."))
			}
			switch {
			case at != nil && at.fixed != nil:
				x.want = at.fixed
			case at != nil && at.pattern != nil:
				x.want, x.pattern = at.pattern, true
			case d.Path == "url" && len(s.def.Type) == 1 && len(s.def.Type[0].Profile) == 1:
				x.want = s.def.Type[0].Profile[0] // an extension slice
			default:
				return fmt.Errorf("no fixed or pattern value at discriminator path %s", d.Path)
			}
		default:
			return fmt.Errorf("discriminator type %s is not supported", d.Type)
		}
		s.discriminators = append(s.discriminators, x)
	}
	return nil
}

// valueAt finds the element at a discriminator path below one of nodes
// that fixes a value or a pattern, looking into slices on the way (the
// code of bp's component:SystolicBP is fixed in code.coding:SBPCode.code).
func valueAt(nodes []*node, steps []string) *node {
	for _, n := range nodes {
		for _, c := range n.children {
			if c.name != steps[0] {
				continue
			}
			cands := append([]*node{c}, c.slices...)
			if len(steps) > 1 {
				if at := valueAt(cands, steps[1:]); at != nil {
					return at
				}
				continue
			}
			for _, x := range cands {
				if x.fixed != nil || x.pattern != nil {
					return x
				}
			}
		}
	}
	return nil
}

// item is one value in the instance: decoded JSON, its FHIR type when
// known, its FHIRPath.
type item struct {
	v    any
	t    string
	path string
}

// run checks one resource.
type run struct {
	c        *checker
	resource fhirpath.Item
	warnings bool
	issues   []outcome.Issue
}

// check returns the issues of doc (rooted at expr) against the checker's
// profile; warnings adds those of extensible bindings.
func (c *checker) check(doc map[string]any, expr string, warnings bool) []outcome.Issue {
	r := &run{c: c, resource: fhirpath.Item{V: doc, T: c.sd.Type}, warnings: warnings}
	r.item(c.root, item{v: doc, t: c.sd.Type, path: expr})
	return r.issues
}

// element checks n against the members of parent (at path at).
func (r *run) element(n *node, parent map[string]any, at string) {
	items := members(parent, n, at)
	path := at + "." + n.name
	if n.checkMin && len(items) < n.min {
		r.fail(n, "required", "profile.cardinality", path, fmt.Sprintf("at least %d required, %d present", n.min, len(items)))
	}
	if n.checkMax && len(items) > n.max {
		r.fail(n, "structure", "profile.cardinality", path, fmt.Sprintf("at most %d allowed, %d present", n.max, len(items)))
	}
	if len(n.types) > 0 {
		for _, it := range items {
			if !slices.Contains(n.types, it.t) {
				r.fail(n, "structure", "profile.type", it.path, "the type must be one of "+strings.Join(n.types, ", "))
			}
		}
	}
	if len(n.slices) == 0 {
		for _, it := range items {
			r.item(n, it)
		}
		return
	}
	matched := make([][]item, len(n.slices))
	for _, it := range items {
		i := slices.IndexFunc(n.slices, func(s *node) bool { return s.matches(it) })
		if i < 0 {
			if n.def.Slicing.Rules == "closed" {
				r.fail(n, "structure", "profile.slice", it.path, "the slicing is closed: the element matches none of its slices")
			}
			r.item(n, it)
			continue
		}
		matched[i] = append(matched[i], it)
	}
	for i, s := range n.slices {
		if s.checkMin && len(matched[i]) < s.min {
			r.fail(s, "required", "profile.slice", path, fmt.Sprintf("at least %d matching slice %s (%s) required, %d present",
				s.min, s.def.SliceName, s.describe(), len(matched[i])))
		}
		if s.checkMax && len(matched[i]) > s.max {
			r.fail(s, "structure", "profile.slice", path, fmt.Sprintf("at most %d matching slice %s (%s) allowed, %d present",
				s.max, s.def.SliceName, s.describe(), len(matched[i])))
		}
		for _, it := range matched[i] {
			r.item(s, it)
		}
	}
}

// item checks one value against n and its children.
func (r *run) item(n *node, it item) {
	if !n.live {
		return
	}
	if n.fixed != nil && !equal(it.v, n.fixed) {
		r.fail(n, "value", "profile.fixed-value", it.path, "the value must be "+jsonText(n.fixed))
	}
	if n.pattern != nil && !matchPattern(it.v, n.pattern) {
		r.fail(n, "value", "profile.pattern", it.path, "the value must match "+jsonText(n.pattern))
	}
	if n.required != nil {
		if codes, ok := codesOf(it); ok && !anyIn(n.required, codes) {
			r.fail(n, "code-invalid", "profile.binding", it.path, "the code must be from ValueSet "+n.required.URL+" (required binding)")
		}
	}
	if n.extended != nil && r.warnings {
		if codes, ok := codesOf(it); ok && len(codes) > 0 && !anyIn(n.extended, codes) {
			r.issue(outcome.Issue{Severity: "warning", Code: "code-invalid", Rule: "profile.binding-extensible", Expression: it.path,
				Message: "no code is from ValueSet " + n.extended.URL + " (extensible binding of " + r.c.sd.URL + ")"})
		}
	}
	for _, ic := range n.constraints {
		ok, err := ic.expr.Holds(fhirpath.Env{Resource: r.resource}, fhirpath.Item{V: it.v, T: it.t})
		if err == nil && ok {
			continue
		}
		sev := ic.c.Severity
		if sev != "warning" {
			sev = "error"
		}
		if sev == "warning" && !r.warnings {
			continue
		}
		msg := ic.c.Human
		if !strings.HasPrefix(ic.c.Key, "profile.") {
			msg += " (" + ic.c.Key + ", " + r.c.sd.URL + ")"
		}
		r.issue(outcome.Issue{Severity: sev, Code: "invariant", Rule: ic.c.Key, Expression: it.path, Message: msg})
	}
	m, ok := it.v.(map[string]any)
	if !ok {
		return
	}
	for _, c := range n.children {
		if c.live {
			r.element(c, m, it.path)
		}
	}
}

// fail reports a failed check of n: its rule and text when the profile
// names one, else the generic rule and a text saying what the profile
// requires.
func (r *run) fail(n *node, code, generic, path, detail string) {
	if n.rule != "" {
		r.issue(outcome.Issue{Severity: "error", Code: code, Rule: n.rule, Expression: path, Message: n.msg})
		return
	}
	r.issue(outcome.Issue{Severity: "error", Code: code, Rule: generic, Expression: path,
		Message: fmt.Sprintf("%s (%s, %s)", detail, n.def.ID, r.c.sd.URL)})
}

// issue adds an issue unless one with the same rule and path is there.
func (r *run) issue(i outcome.Issue) {
	if !slices.ContainsFunc(r.issues, func(x outcome.Issue) bool { return x.Rule == i.Rule && x.Expression == i.Expression }) {
		r.issues = append(r.issues, i)
	}
}

// matches reports whether an item belongs to slice s.
func (s *node) matches(it item) bool {
	for _, d := range s.discriminators {
		if d.kind == "type" {
			if it.t != d.want {
				return false
			}
			continue
		}
		vals := []any{it.v}
		if d.path != "$this" {
			vals = navigate(it.v, d.path)
		}
		if !slices.ContainsFunc(vals, func(v any) bool {
			if d.pattern {
				return matchPattern(v, d.want)
			}
			return equal(v, d.want)
		}) {
			return false
		}
	}
	return true
}

// describe says what a slice's items look like.
func (s *node) describe() string {
	var parts []string
	for _, d := range s.discriminators {
		switch d.kind {
		case "type":
			parts = append(parts, fmt.Sprintf("type %v", d.want))
		default:
			parts = append(parts, d.path+" = "+jsonText(d.want))
		}
	}
	return strings.Join(parts, ", ")
}

// members returns the values of n's element in parent, with their paths.
func members(parent map[string]any, n *node, at string) []item {
	typ := ""
	if len(n.def.Type) == 1 {
		typ = n.def.Type[0].Code
	}
	if !n.choice {
		return values(parent[n.name], typ, at+"."+n.name)
	}
	var out []item
	keys := make([]string, 0, len(parent))
	for k := range parent {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if suffix, ok := strings.CutPrefix(k, n.name); ok && suffix != "" && unicode.IsUpper(rune(suffix[0])) {
			out = append(out, values(parent[k], fhirpath.ChoiceType(suffix), at+"."+k)...)
		}
	}
	return out
}

// values lists a member's values (an array's elements, indexed).
func values(v any, typ, path string) []item {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		out := make([]item, 0, len(x))
		for i, e := range x {
			out = append(out, item{v: e, t: typ, path: path + "[" + strconv.Itoa(i) + "]"})
		}
		return out
	}
	return []item{{v: v, t: typ, path: path}}
}

// navigate returns the values at a dotted path below v (arrays flattened).
func navigate(v any, path string) []any {
	cur := []any{v}
	for _, step := range strings.Split(path, ".") {
		var next []any
		for _, c := range cur {
			m, ok := c.(map[string]any)
			if !ok {
				continue
			}
			switch x := m[step].(type) {
			case nil:
			case []any:
				next = append(next, x...)
			default:
				next = append(next, x)
			}
		}
		cur = next
	}
	return cur
}

// codesOf returns the system|code pairs of a coded value (ok false for a
// value that is not coded or carries no code to check).
func codesOf(it item) ([][2]string, bool) {
	m, isMap := it.v.(map[string]any)
	switch it.t {
	case "code":
		s, ok := it.v.(string)
		return [][2]string{{"", s}}, ok
	case "Coding", "Quantity":
		if !isMap || str(m, "code") == "" {
			return nil, false
		}
		return [][2]string{{str(m, "system"), str(m, "code")}}, true
	case "CodeableConcept":
		if !isMap {
			return nil, false
		}
		var out [][2]string
		for _, c := range asList(m["coding"]) {
			cm, _ := c.(map[string]any)
			out = append(out, [2]string{str(cm, "system"), str(cm, "code")})
		}
		return out, true
	}
	return nil, false
}

func anyIn(vs *ValueSet, codes [][2]string) bool {
	return slices.ContainsFunc(codes, func(c [2]string) bool {
		if c[0] == "" {
			return slices.ContainsFunc(vs.Compose.Include, func(in Include) bool { return vs.Contains(in.System, c[1]) })
		}
		return vs.Contains(c[0], c[1])
	})
}

// equal compares two JSON values (numbers by value).
func equal(a, b any) bool { return fhirpath.Equal(a, b) }

// matchPattern reports whether v matches pattern p (profiling.html:
// every member of p is in v; every element of an array in p matches an
// element of v's array).
func matchPattern(v, p any) bool {
	switch pv := p.(type) {
	case map[string]any:
		m, ok := v.(map[string]any)
		if !ok {
			return false
		}
		for k, x := range pv {
			if !matchPattern(m[k], x) {
				return false
			}
		}
		return true
	case []any:
		list := asList(v)
		for _, x := range pv {
			if !slices.ContainsFunc(list, func(e any) bool { return matchPattern(e, x) }) {
				return false
			}
		}
		return true
	}
	return equal(v, p)
}

func asList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// canonical strips a |version from a canonical url.
func canonical(u string) string {
	u, _, _ = strings.Cut(u, "|")
	return u
}
