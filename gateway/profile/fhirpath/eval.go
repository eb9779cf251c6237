package fhirpath

import (
	"encoding/json"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Item is one value of a collection: decoded JSON and, when known, its
// type ("Quantity", "dateTime", or a System type: "String", "Boolean",
// "Integer", "Decimal").
type Item struct {
	V any
	T string
}

// Env is what an evaluation sees besides its focus.
type Env struct {
	// Resource is %resource (and %rootResource).
	Resource Item
}

// Eval evaluates e with focus as the input collection (and $this).
// Returns an error for a type mismatch the expression cannot recover from
// (an operator on a collection of several items).
func (e *Expr) Eval(env Env, focus ...Item) ([]Item, error) {
	ev := &evaluator{env: env}
	return ev.eval(e.root, focus, focus)
}

// Holds evaluates a constraint on focus: it holds unless the result is
// false. An empty result holds (the constraint does not apply).
func (e *Expr) Holds(env Env, focus Item) (bool, error) {
	out, err := e.Eval(env, focus)
	if err != nil {
		return false, err
	}
	b, ok, err := toBool(out)
	if err != nil {
		return false, err
	}
	return !ok || b, nil
}

type evaluator struct{ env Env }

// eval evaluates n with input collection in; this is $this.
func (ev *evaluator) eval(n node, in, this []Item) ([]Item, error) {
	switch n := n.(type) {
	case literal:
		return n.items, nil
	case thisRef:
		return this, nil
	case envRef:
		return []Item{ev.env.Resource}, nil
	case member:
		from := in
		if n.from != nil {
			var err error
			if from, err = ev.eval(n.from, in, this); err != nil {
				return nil, err
			}
		} else if len(from) == 1 && isResourceType(from[0], n.name) {
			// A path may start with the resource type: Observation.code.
			return from, nil
		}
		var out []Item
		for _, it := range from {
			out = append(out, children(it, n.name)...)
		}
		return out, nil
	case call:
		from := in
		if n.from != nil {
			var err error
			if from, err = ev.eval(n.from, in, this); err != nil {
				return nil, err
			}
		}
		return n.fn.fn(ev, from, n.args, this)
	case index:
		from, err := ev.eval(n.from, in, this)
		if err != nil {
			return nil, err
		}
		at, err := ev.eval(n.at, in, this)
		if err != nil || len(at) != 1 {
			return nil, err
		}
		i, ok := toInt(at[0].V)
		if !ok || i < 0 || i >= len(from) {
			return nil, nil
		}
		return from[i : i+1], nil
	case negate:
		v, err := ev.eval(n.of, in, this)
		if err != nil || len(v) != 1 {
			return nil, err
		}
		f, ok := toFloat(v[0].V)
		if !ok {
			return nil, fmt.Errorf("fhirpath: unary minus on a non-number")
		}
		return []Item{{V: -f, T: v[0].T}}, nil
	case typeOp:
		from, err := ev.eval(n.from, in, this)
		if err != nil {
			return nil, err
		}
		if n.op == "is" {
			if len(from) != 1 {
				return nil, nil
			}
			return boolean(isType(from[0], n.typ)), nil
		}
		return ofType(from, n.typ), nil
	case binary:
		return ev.binary(n, in, this)
	}
	return nil, fmt.Errorf("fhirpath: unknown node %T", n)
}

func (ev *evaluator) binary(n binary, in, this []Item) ([]Item, error) {
	l, err := ev.eval(n.left, in, this)
	if err != nil {
		return nil, err
	}
	r, err := ev.eval(n.right, in, this)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "and", "or", "xor", "implies":
		lb, lok, err := toBool(l)
		if err != nil {
			return nil, err
		}
		rb, rok, err := toBool(r)
		if err != nil {
			return nil, err
		}
		return logic(n.op, lb, lok, rb, rok), nil
	case "|":
		out := append([]Item(nil), l...)
		for _, it := range r {
			if !containsItem(out, it) {
				out = append(out, it)
			}
		}
		return out, nil
	case "=", "!=":
		if len(l) == 0 || len(r) == 0 {
			return nil, nil
		}
		eq := len(l) == len(r)
		for i := 0; eq && i < len(l); i++ {
			eq = equal(l[i].V, r[i].V)
		}
		return boolean(eq == (n.op == "=")), nil
	case "<", ">", "<=", ">=":
		if len(l) != 1 || len(r) != 1 {
			if len(l) == 0 || len(r) == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("fhirpath: %s on a collection of several items", n.op)
		}
		c, ok := compare(l[0].V, r[0].V)
		if !ok {
			return nil, nil
		}
		return boolean(map[string]bool{"<": c < 0, ">": c > 0, "<=": c <= 0, ">=": c >= 0}[n.op]), nil
	case "+", "-", "&":
		return arithmetic(n.op, l, r)
	}
	return nil, fmt.Errorf("fhirpath: operator %s is not supported", n.op)
}

// logic is FHIRPath's three-valued logic; ok false is the empty value.
func logic(op string, l, lok, r, rok bool) []Item {
	switch op {
	case "and":
		switch {
		case lok && !l, rok && !r:
			return boolean(false)
		case lok && rok:
			return boolean(true)
		}
	case "or":
		switch {
		case lok && l, rok && r:
			return boolean(true)
		case lok && rok:
			return boolean(false)
		}
	case "xor":
		if lok && rok {
			return boolean(l != r)
		}
	case "implies":
		switch {
		case lok && l:
			if rok {
				return boolean(r)
			}
		case lok:
			return boolean(true)
		case rok && r:
			return boolean(true)
		}
	}
	return nil
}

func arithmetic(op string, l, r []Item) ([]Item, error) {
	if op == "&" {
		return []Item{{V: str(l) + str(r), T: "String"}}, nil
	}
	if len(l) != 1 || len(r) != 1 {
		return nil, nil
	}
	if ls, ok := l[0].V.(string); ok && op == "+" {
		if rs, ok := r[0].V.(string); ok {
			return []Item{{V: ls + rs, T: "String"}}, nil
		}
	}
	a, aok := toFloat(l[0].V)
	b, bok := toFloat(r[0].V)
	if !aok || !bok {
		return nil, fmt.Errorf("fhirpath: %s on a non-number", op)
	}
	if op == "-" {
		b = -b
	}
	return []Item{{V: a + b, T: "Decimal"}}, nil
}

func str(c []Item) string {
	if len(c) == 1 {
		if s, ok := toString(c[0].V); ok {
			return s
		}
	}
	return ""
}

// toBool converts a collection to a boolean: ok false for the empty
// collection; a single non-boolean item is true (FHIRPath §4.5).
func toBool(c []Item) (b, ok bool, err error) {
	switch len(c) {
	case 0:
		return false, false, nil
	case 1:
		if v, isBool := c[0].V.(bool); isBool {
			return v, true, nil
		}
		return true, true, nil
	}
	return false, false, fmt.Errorf("fhirpath: a collection of %d items where a boolean is expected", len(c))
}

func boolean(b bool) []Item { return []Item{{V: b, T: "Boolean"}} }

// children returns the child elements called name of it, flattening
// arrays. A choice element is found by its base name (value ->
// valueQuantity) and typed by its suffix.
func children(it Item, name string) []Item {
	m, ok := it.V.(map[string]any)
	if !ok {
		return nil
	}
	if v, ok := m[name]; ok {
		return flatten(v, "")
	}
	for k, v := range m {
		if suffix, ok := strings.CutPrefix(k, name); ok && suffix != "" && unicode.IsUpper(rune(suffix[0])) {
			return flatten(v, ChoiceType(suffix))
		}
	}
	return nil
}

func flatten(v any, typ string) []Item {
	if list, ok := v.([]any); ok {
		out := make([]Item, 0, len(list))
		for _, x := range list {
			out = append(out, Item{V: x, T: typ})
		}
		return out
	}
	return []Item{{V: v, T: typ}}
}

// primitives are the FHIR primitive types, which choice suffixes spell
// with a capital (valueDateTime is a dateTime).
var primitives = []string{"base64Binary", "boolean", "canonical", "code", "date", "dateTime", "decimal", "id",
	"instant", "integer", "markdown", "oid", "positiveInt", "string", "time", "unsignedInt", "uri", "url", "uuid"}

// ChoiceType is the FHIR type a choice element's suffix names
// (DateTime: dateTime, Quantity: Quantity).
func ChoiceType(suffix string) string {
	for _, p := range primitives {
		if strings.EqualFold(p, suffix) {
			return p
		}
	}
	return suffix
}

// isResourceType reports whether name is it's resourceType (a path's
// leading type name).
func isResourceType(it Item, name string) bool {
	m, ok := it.V.(map[string]any)
	return ok && m["resourceType"] == name && unicode.IsUpper(rune(name[0]))
}

// isType reports whether it is of type typ ("FHIR." or "System."
// qualified or not).
func isType(it Item, typ string) bool {
	typ = strings.TrimPrefix(strings.TrimPrefix(typ, "FHIR."), "System.")
	if it.T != "" {
		return it.T == typ || systemType(it.T) == typ
	}
	if m, ok := it.V.(map[string]any); ok {
		return m["resourceType"] == typ
	}
	switch it.V.(type) {
	case string:
		return typ == "String"
	case bool:
		return typ == "Boolean"
	case json.Number, float64:
		return typ == "Decimal"
	}
	return false
}

// systemType is the System type of a FHIR primitive type.
func systemType(t string) string {
	switch t {
	case "boolean":
		return "Boolean"
	case "integer", "positiveInt", "unsignedInt":
		return "Integer"
	case "decimal":
		return "Decimal"
	case "date":
		return "Date"
	case "dateTime", "instant":
		return "DateTime"
	case "time":
		return "Time"
	case "string", "code", "id", "markdown", "uri", "url", "canonical", "oid", "uuid", "base64Binary":
		return "String"
	}
	return ""
}

func ofType(c []Item, typ string) []Item {
	var out []Item
	for _, it := range c {
		if isType(it, typ) {
			out = append(out, it)
		}
	}
	return out
}

func containsItem(c []Item, it Item) bool {
	for _, x := range c {
		if equal(x.V, it.V) {
			return true
		}
	}
	return false
}

// Equal is FHIRPath equality of two decoded JSON values: numbers by
// value, the rest structurally.
func Equal(a, b any) bool { return equal(a, b) }

func equal(a, b any) bool {
	if x, ok := toFloat(a); ok {
		y, ok := toFloat(b)
		return ok && x == y
	}
	return reflect.DeepEqual(normalize(a), normalize(b))
}

// normalize turns numbers into float64 so structures compare by value.
func normalize(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, _ := x.Float64()
		return f
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}

func compare(a, b any) (int, bool) {
	if x, ok := toFloat(a); ok {
		y, ok := toFloat(b)
		switch {
		case !ok:
			return 0, false
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	}
	x, ok1 := a.(string)
	y, ok2 := b.(string)
	if !ok1 || !ok2 {
		return 0, false
	}
	return strings.Compare(x, y), true
}

func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case float64:
		return x, true
	case int:
		return float64(x), true
	}
	return 0, false
}

func toInt(v any) (int, bool) {
	f, ok := toFloat(v)
	return int(f), ok && f == float64(int(f))
}

func toString(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func number(s string) json.Number { return json.Number(s) }

func numberType(s string) string {
	if strings.Contains(s, ".") {
		return "Decimal"
	}
	return "Integer"
}

// function is a FHIRPath function: fn gets the input collection, the
// unevaluated arguments and $this of the call site.
type function struct {
	minArgs, maxArgs int
	fn               func(ev *evaluator, in []Item, args []node, this []Item) ([]Item, error)
}

// builtin returns the function called name (ok false for one outside
// the subset).
func builtin(name string) (function, bool) {
	f, ok := map[string]function{
		"empty":  {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) { return boolean(len(in) == 0), nil }},
		"exists": {0, 1, fnExists},
		"not": {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) {
			b, ok, err := toBool(in)
			if err != nil || !ok {
				return nil, err
			}
			return boolean(!b), nil
		}},
		"where": {1, 1, fnWhere},
		"all":   {1, 1, fnAll},
		"count": {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) {
			return []Item{{V: json.Number(strconv.Itoa(len(in))), T: "Integer"}}, nil
		}},
		"first": {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) {
			if len(in) == 0 {
				return nil, nil
			}
			return in[:1], nil
		}},
		"last": {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) {
			if len(in) == 0 {
				return nil, nil
			}
			return in[len(in)-1:], nil
		}},
		"hasValue": {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) {
			if len(in) != 1 {
				return boolean(false), nil
			}
			_, isObj := in[0].V.(map[string]any)
			return boolean(!isObj && in[0].V != nil), nil
		}},
		"toString": {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) {
			if len(in) != 1 {
				return nil, nil
			}
			if s, ok := toString(in[0].V); ok {
				return []Item{{V: s, T: "String"}}, nil
			}
			return nil, nil
		}},
		"length": {0, 0, func(_ *evaluator, in []Item, _ []node, _ []Item) ([]Item, error) {
			if len(in) != 1 {
				return nil, nil
			}
			s, ok := in[0].V.(string)
			if !ok {
				return nil, nil
			}
			return []Item{{V: json.Number(strconv.Itoa(len([]rune(s)))), T: "Integer"}}, nil
		}},
		"ofType":     {1, 1, fnOfType},
		"as":         {1, 1, fnOfType},
		"is":         {1, 1, fnIs},
		"startsWith": {1, 1, stringFn(strings.HasPrefix)},
		"endsWith":   {1, 1, stringFn(strings.HasSuffix)},
		"matches": {1, 1, stringFn(func(s, pattern string) bool {
			re, err := regexp.Compile(pattern)
			return err == nil && re.MatchString(s)
		})},
		"iif": {2, 3, fnIif},
	}[name]
	return f, ok
}

func fnExists(ev *evaluator, in []Item, args []node, _ []Item) ([]Item, error) {
	if len(args) == 0 {
		return boolean(len(in) > 0), nil
	}
	out, err := fnWhere(ev, in, args, nil)
	return boolean(len(out) > 0), err
}

// criterion evaluates a where/all criterion with it as $this: true only
// for a single true.
func criterion(ev *evaluator, it Item, arg node) (bool, error) {
	one := []Item{it}
	r, err := ev.eval(arg, one, one)
	if err != nil {
		return false, err
	}
	b, ok, err := toBool(r)
	return ok && b, err
}

func fnWhere(ev *evaluator, in []Item, args []node, _ []Item) ([]Item, error) {
	var out []Item
	for _, it := range in {
		ok, err := criterion(ev, it, args[0])
		if err != nil {
			return nil, err
		}
		if ok {
			out = append(out, it)
		}
	}
	return out, nil
}

func fnAll(ev *evaluator, in []Item, args []node, _ []Item) ([]Item, error) {
	for _, it := range in {
		ok, err := criterion(ev, it, args[0])
		if err != nil || !ok {
			return boolean(false), err
		}
	}
	return boolean(true), nil
}

func fnOfType(_ *evaluator, in []Item, args []node, _ []Item) ([]Item, error) {
	return ofType(in, args[0].(literal).items[0].V.(string)), nil
}

func fnIs(_ *evaluator, in []Item, args []node, _ []Item) ([]Item, error) {
	if len(in) != 1 {
		return nil, nil
	}
	return boolean(isType(in[0], args[0].(literal).items[0].V.(string))), nil
}

func stringFn(f func(s, arg string) bool) func(*evaluator, []Item, []node, []Item) ([]Item, error) {
	return func(ev *evaluator, in []Item, args []node, this []Item) ([]Item, error) {
		if len(in) != 1 {
			return nil, nil
		}
		s, ok := in[0].V.(string)
		if !ok {
			return nil, nil
		}
		a, err := ev.eval(args[0], this, this)
		if err != nil || len(a) != 1 {
			return nil, err
		}
		arg, ok := a[0].V.(string)
		if !ok {
			return nil, nil
		}
		return boolean(f(s, arg)), nil
	}
}

func fnIif(ev *evaluator, in []Item, args []node, this []Item) ([]Item, error) {
	c, err := ev.eval(args[0], in, this)
	if err != nil {
		return nil, err
	}
	b, ok, err := toBool(c)
	if err != nil {
		return nil, err
	}
	if ok && b {
		return ev.eval(args[1], in, this)
	}
	if len(args) == 3 {
		return ev.eval(args[2], in, this)
	}
	return nil, nil
}
