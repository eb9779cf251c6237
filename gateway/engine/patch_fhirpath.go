package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// FHIRPath Patch (fhirpatch.html): a Parameters resource whose operation
// parameters add, insert, delete, replace or move. The paths the gateway
// resolves select elements by position and by value (patch_path.go:
// Patient.name[0].given, Patient.identifier.where(system='...').value);
// other FHIRPath is refused (patch-path-unsupported), and so is any
// operation on id, meta or resourceType. An operation that needs one
// element (add, replace, delete; the list of insert and move) and whose
// path selects several is refused (patch-path-multiple): fhirpatch.html
// deletes and replaces a single element.

// fpOp is one FHIRPath Patch operation.
type fpOp struct {
	index                     int // the parameter's index in the Parameters
	pathPart                  int // the index of the path part in it
	typ, path, name           string
	value                     any    // the JSON value of value[x] or of the value part
	vtype                     string // the type of value[x] ("Quantity"), "" for an anonymous value
	hasValue                  bool
	at, source, destination   int
	hasAt, hasSource, hasDest bool
	given                     []string // the names of its parts, each once
}

// fpParts are the parts each operation type takes (fhirpatch.html, each
// 0..1 or 1..1).
var fpParts = map[string][]string{
	"add":     {"type", "path", "name", "value"},
	"insert":  {"type", "path", "value", "index"},
	"delete":  {"type", "path"},
	"replace": {"type", "path", "value"},
	"move":    {"type", "path", "source", "destination"},
}

// fhirpathPatch is a parsed FHIRPath Patch.
type fhirpathPatch []fpOp

// fpError is an Invalid error about operation parameter i.
func fpError(i int, rule, msg string) error {
	return outcome.New(outcome.Invalid, "invalid", rule, fmt.Sprintf("FHIRPath Patch operation %d: %s", i, msg)).
		At(fmt.Sprintf("Parameters.parameter[%d]", i))
}

// pathError is an Invalid error about the path of op: the expression
// names its path part.
func (op *fpOp) pathError(rule, msg string) error {
	return outcome.New(outcome.Invalid, "invalid", rule, fmt.Sprintf("FHIRPath Patch operation %d: %s", op.index, msg)).
		At(fmt.Sprintf("Parameters.parameter[%d].part[%d]", op.index, op.pathPart))
}

// selects is the error for a path that selects n elements (n != 1) where
// the operation needs one: patch-path-unresolved for none,
// patch-path-multiple for several.
func (op *fpOp) selects(n int, what string) error {
	if n == 0 {
		return op.pathError("patch-path-unresolved", fmt.Sprintf("%s needs a path to %s; the path selects none", op.typ, what))
	}
	return op.pathError("patch-path-multiple", fmt.Sprintf("%s needs a path to %s; the path selects %d: narrow it with "+
		"where(...), [n], first() or last()", op.typ, what, n))
}

// parseFHIRPathPatch reads a Parameters resource (already valid R4).
func parseFHIRPathPatch(doc map[string]any) (fhirpathPatch, error) {
	if rt, _ := doc["resourceType"].(string); rt != "Parameters" {
		return nil, outcome.New(outcome.Invalid, "invalid", "patch-invalid",
			"a FHIRPath Patch is a Parameters resource; a JSON Patch is sent as application/json-patch+json")
	}
	params, _ := doc["parameter"].([]any)
	var out fhirpathPatch
	for i, p := range params {
		pm, _ := p.(map[string]any)
		if pm["name"] != "operation" {
			return nil, fpError(i, "patch-invalid", "every parameter of a FHIRPath Patch is an operation")
		}
		op := fpOp{index: i}
		parts, _ := pm["part"].([]any)
		for j, part := range parts {
			pp, _ := part.(map[string]any)
			name, _ := pp["name"].(string)
			if slices.Contains(op.given, name) {
				return nil, fpError(i, "patch-invalid", "an operation gives each of its parts once; "+name+" is given twice")
			}
			switch name {
			case "type":
				op.typ, _ = pp["valueCode"].(string)
			case "path":
				op.path, _ = pp["valueString"].(string)
				op.pathPart = j
			case "name":
				op.name, _ = pp["valueString"].(string)
			case "value":
				v, vtype, ok := partValue(pp)
				if !ok {
					return nil, fpError(i, "patch-invalid", "the value part has no value")
				}
				op.value, op.vtype, op.hasValue = v, vtype, true
			case "index", "source", "destination":
				n, ok := intValue(pp)
				if !ok {
					return nil, fpError(i, "patch-invalid", "index, source and destination are non-negative integers")
				}
				switch name {
				case "index":
					op.at, op.hasAt = n, true
				case "source":
					op.source, op.hasSource = n, true
				default:
					op.destination, op.hasDest = n, true
				}
			default:
				return nil, fpError(i, "patch-invalid", "an operation's parts are type, path, name, value, index, source and destination")
			}
			op.given = append(op.given, name)
		}
		if err := op.check(); err != nil {
			return nil, err
		}
		out = append(out, op)
	}
	if len(out) == 0 {
		return nil, outcome.New(outcome.Invalid, "invalid", "patch-empty", "the FHIRPath Patch has no operations")
	}
	return out, nil
}

// check checks an operation has the parts its type needs.
func (op *fpOp) check() error {
	i := op.index
	if op.path == "" {
		return fpError(i, "patch-invalid", "the operation needs a path")
	}
	need := func(ok bool, what string) error {
		if !ok {
			return fpError(i, "patch-invalid", "a "+op.typ+" operation needs "+what)
		}
		return nil
	}
	switch op.typ {
	case "add":
		if err := need(op.name != "" && op.hasValue, "name and value"); err != nil {
			return err
		}
	case "insert":
		if err := need(op.hasValue && op.hasAt, "value and index"); err != nil {
			return err
		}
	case "replace":
		if err := need(op.hasValue, "a value"); err != nil {
			return err
		}
	case "move":
		if err := need(op.hasSource && op.hasDest, "source and destination"); err != nil {
			return err
		}
	case "delete":
	default:
		return fpError(i, "patch-invalid", "type must be add, insert, delete, replace or move")
	}
	for _, name := range op.given {
		if !slices.Contains(fpParts[op.typ], name) {
			return fpError(i, "patch-invalid", "a "+op.typ+" operation takes only "+strings.Join(fpParts[op.typ], ", ")+"; not "+name)
		}
	}
	return nil
}

// partValue is the JSON value of a part and its FHIR type: its value[x]
// ("Quantity" for valueQuantity), or an object built from its parts (an
// anonymous type, such as a backbone element: type "").
func partValue(pp map[string]any) (any, string, bool) {
	for k, v := range pp {
		if suffix, ok := choiceSuffix(k, "value"); ok {
			return v, suffix, true
		}
	}
	parts, ok := pp["part"].([]any)
	if !ok {
		return nil, "", false
	}
	obj := map[string]any{}
	for _, p := range parts {
		sub, _ := p.(map[string]any)
		name, _ := sub["name"].(string)
		v, _, ok := partValue(sub)
		if name == "" || !ok {
			return nil, "", false
		}
		obj[name] = v
	}
	return obj, "", true
}

// intValue reads valueInteger.
func intValue(pp map[string]any) (int, bool) {
	n, ok := pp["valueInteger"].(json.Number)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(string(n))
	return i, err == nil && i >= 0
}

// node is where a node of the resource lives: container[key], or item i of
// the array container[key].
type node struct {
	container map[string]any
	key       string
	item      int // -1: the member itself
}

func (s node) get() any {
	if s.item < 0 {
		return s.container[s.key]
	}
	return s.container[s.key].([]any)[s.item]
}

// memberKey is the JSON key of element name in m: name itself, or the
// typed key of a choice element (valueQuantity for value).
func memberKey(m map[string]any, name string) string {
	if _, ok := m[name]; ok {
		return name
	}
	for k := range m {
		if _, ok := choiceSuffix(k, name); ok {
			return k
		}
	}
	return name
}

// choiceSuffix reports whether key is a typed key of the choice element
// name (valueQuantity of value) and returns the type's part ("Quantity").
func choiceSuffix(key, name string) (string, bool) {
	suffix, ok := strings.CutPrefix(key, name)
	return suffix, ok && suffix != "" && unicode.IsUpper(rune(suffix[0]))
}

// apply applies the patch to doc, a resource of typ; v tells the shape of
// an element (the R4 definitions).
// A FHIRPath Patch has no copy: it adds no more than the values it holds,
// so room is left to the check of the result.
func (p fhirpathPatch) apply(typ string, doc map[string]any, v *Validator, _ int64) (map[string]any, error) {
	for _, op := range p {
		path, err := parsePatchPath(typ, op.path)
		if err != nil {
			var pe *pathError
			if !errors.As(err, &pe) {
				return nil, err
			}
			return nil, op.pathError("patch-path-unsupported", "the path is outside the FHIRPath the gateway resolves ("+
				pe.Error()+"): "+strings.Replace(patchPathSubset, "the resource type", typ, 1))
		}
		if (len(path) > 0 && (path[0].name == "id" || path[0].name == "meta" || path[0].name == "resourceType")) ||
			(len(path) == 0 && (op.name == "id" || op.name == "meta" || op.name == "resourceType")) ||
			(len(path) == 0 && op.typ != "add") {
			return nil, fpError(op.index, "patch-server-owned", "the patch may not change id, meta or resourceType (the server owns them), nor the whole resource")
		}
		if err := op.run(typ, doc, path, v); err != nil {
			return nil, err
		}
	}
	return doc, nil
}

// run applies one operation.
func (op *fpOp) run(typ string, doc map[string]any, path patchPath, v *Validator) error {
	fail := func(rule, msg string) error { return fpError(op.index, rule, msg) }
	switch op.typ {
	case "add":
		var target map[string]any
		if len(path) == 0 {
			target = doc
		} else {
			slots := resolvePath(doc, path)
			if len(slots) != 1 {
				return op.selects(len(slots), "one element")
			}
			m, ok := slots[0].get().(map[string]any)
			if !ok {
				return op.pathError("patch-path-unresolved", "add needs a path to an element that has elements")
			}
			target = m
		}
		el, ok := v.r4.Element(typ, append(path.keys(doc), op.name)...)
		if !ok {
			return fail("patch-name-unknown", "name is not an element at the path")
		}
		key := op.name
		if el.Choice {
			vt := op.vtype
			if vt == "" {
				return fail("patch-invalid", "a choice element is added with a typed value (valueQuantity, valueString, ...)")
			}
			key = op.name + vt
			for k := range target {
				if k != key && memberKey(map[string]any{k: nil}, op.name) == k {
					return fail("patch-add-exists", "the element already has a value; use replace")
				}
			}
		}
		switch cur, exists := target[key]; {
		case el.Multi && exists:
			arr, _ := cur.([]any)
			target[key] = append(arr, op.value)
		case el.Multi:
			target[key] = []any{op.value}
		case exists:
			return fail("patch-add-exists", "the element already has a value; use replace")
		default:
			target[key] = op.value
		}
	case "insert", "move":
		parent, key, arr, err := op.list(doc, path)
		if err != nil {
			return err
		}
		if op.typ == "insert" {
			if op.at > len(arr) {
				return fail("patch-index-invalid", "index is beyond the end of the list")
			}
			arr = append(arr[:op.at:op.at], append([]any{op.value}, arr[op.at:]...)...)
		} else {
			if op.source >= len(arr) || op.destination >= len(arr) {
				return fail("patch-index-invalid", "source and destination must be positions in the list")
			}
			item := arr[op.source]
			arr = append(arr[:op.source:op.source], arr[op.source+1:]...)
			arr = append(arr[:op.destination:op.destination], append([]any{item}, arr[op.destination:]...)...)
		}
		parent[key] = arr
	case "delete", "replace":
		slots := resolvePath(doc, path)
		switch {
		case len(slots) == 0 && op.typ == "delete":
			return nil // nothing there: nothing to delete
		case len(slots) != 1:
			return op.selects(len(slots), "exactly one element")
		}
		s := slots[0]
		if op.typ == "replace" {
			if s.item >= 0 {
				s.container[s.key].([]any)[s.item] = op.value
			} else {
				members := path.members()
				if last := members[len(members)-1]; op.vtype != "" && s.key != last {
					// A choice element takes the type of its new value.
					delete(s.container, s.key)
					s.key = last + op.vtype
				}
				s.container[s.key] = op.value
			}
			return nil
		}
		if s.item < 0 {
			delete(s.container, s.key)
			return nil
		}
		arr := s.container[s.key].([]any)
		arr = append(arr[:s.item:s.item], arr[s.item+1:]...)
		if len(arr) == 0 {
			delete(s.container, s.key)
		} else {
			s.container[s.key] = arr
		}
	}
	return nil
}

// list resolves the path of an insert or move to the list it names: the
// one element holding it and its key.
func (op *fpOp) list(doc map[string]any, path patchPath) (map[string]any, string, []any, error) {
	fail := func(msg string) (map[string]any, string, []any, error) {
		return nil, "", nil, op.pathError("patch-path-unresolved", msg)
	}
	last := path[len(path)-1]
	if last.kind != opMember {
		return fail(op.typ + " needs a path to a list, not to items of it")
	}
	parent := doc
	if len(path) > 1 {
		slots := resolvePath(doc, path[:len(path)-1])
		if len(slots) != 1 {
			return nil, "", nil, op.selects(len(slots), "one list (the element holding it)")
		}
		m, ok := slots[0].get().(map[string]any)
		if !ok {
			return fail(op.typ + " needs a path to a list")
		}
		parent = m
	}
	cur, exists := parent[last.name]
	arr, ok := cur.([]any)
	if exists && !ok {
		return fail(op.typ + " needs a path to a list")
	}
	if !exists && op.typ == "move" {
		return fail("move needs a path to a list that has items")
	}
	return parent, last.name, arr, nil
}
