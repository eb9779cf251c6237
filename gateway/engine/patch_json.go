package engine

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// JSON Patch (RFC 6902) on a decoded resource: add, remove, replace,
// move, copy and test, applied in order, all or nothing. The gateway's
// rule on top: no operation may change id, meta or resourceType (the
// server owns them), nor replace the whole document.

// jsonOp is one JSON Patch operation.
type jsonOp struct {
	Op    string          `json:"op"`
	Path  *string         `json:"path"`
	From  *string         `json:"from"`
	Value json.RawMessage `json:"value"`
}

// jsonPatch is a parsed JSON Patch document.
type jsonPatch []jsonOp

// patchError is an Invalid error about operation i of a patch; field is
// the member at fault ("path", "value"; "" for the operation).
func jsonPatchError(i int, field, rule, msg string) error {
	ptr, expr := fmt.Sprintf("/%d", i), fmt.Sprintf("Patch.operation[%d]", i)
	if field != "" {
		ptr, expr = ptr+"/"+field, expr+"."+field
	}
	e := outcome.New(outcome.Invalid, "invalid", rule, fmt.Sprintf("JSON Patch operation %d: %s", i, msg))
	e.Issues[0].Pointer, e.Issues[0].Expression = ptr, expr
	return e
}

// parseJSONPatch reads a JSON Patch document.
func parseJSONPatch(body []byte) (jsonPatch, error) {
	if off := tooDeep(body, r4.DefaultMaxDepth); off >= 0 {
		// Before decoding: Go's decoder stops at 10,000 levels with an
		// error that would say the patch is not an array of operations.
		return nil, outcome.New(outcome.Invalid, "too-costly", "json-depth", fmt.Sprintf(
			"the JSON Patch nests arrays and objects deeper than %d levels (at byte offset %d)", r4.DefaultMaxDepth, off))
	}
	var ops jsonPatch
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&ops); err != nil || d.More() {
		return nil, outcome.New(outcome.Invalid, "structure", "patch-invalid", "a JSON Patch is a JSON array of operations (RFC 6902)")
	}
	if len(ops) == 0 {
		return nil, outcome.New(outcome.Invalid, "invalid", "patch-empty", "the JSON Patch has no operations")
	}
	for i, op := range ops {
		switch op.Op {
		case "add", "replace", "test":
			if op.Value == nil {
				return nil, jsonPatchError(i, "value", "patch-invalid", "the operation needs a value")
			}
		case "move", "copy":
			if op.From == nil {
				return nil, jsonPatchError(i, "from", "patch-invalid", "the operation needs from")
			}
		case "remove":
		default:
			return nil, jsonPatchError(i, "op", "patch-invalid", "op must be add, remove, replace, move, copy or test")
		}
		if op.Path == nil {
			return nil, jsonPatchError(i, "path", "patch-invalid", "the operation needs a path")
		}
		if _, err := pointer(*op.Path); err != nil {
			return nil, jsonPatchError(i, "path", "patch-invalid", "path is not a JSON Pointer")
		}
		if op.From != nil {
			if _, err := pointer(*op.From); err != nil {
				return nil, jsonPatchError(i, "from", "patch-invalid", "from is not a JSON Pointer")
			}
		}
		if op.Op != "test" && serverOwned(*op.Path) {
			return nil, jsonPatchError(i, "path", "patch-server-owned", "the patch may not change id, meta or resourceType (the server owns them)")
		}
		if op.Op == "move" && serverOwned(*op.From) {
			return nil, jsonPatchError(i, "from", "patch-server-owned", "the patch may not move id, meta or resourceType")
		}
	}
	return ops, nil
}

// tooDeep returns the byte offset of the first array or object of doc
// nested deeper than maxDepth levels, -1 when none is. It only counts
// brackets outside strings (whatever else is wrong with doc is the
// decoder's to say): no recursion, whatever the depth.
func tooDeep(doc []byte, maxDepth int) int {
	depth, inString := 0, false
	for i := 0; i < len(doc); i++ {
		c := doc[i]
		switch {
		case inString && c == '\\':
			i++
		case inString:
			inString = c != '"'
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			if depth++; depth > maxDepth {
				return i
			}
		case c == ']' || c == '}':
			depth--
		}
	}
	return -1
}

// serverOwned reports whether a JSON Pointer is (or is inside) id, meta or
// resourceType, or the whole document.
func serverOwned(ptr string) bool {
	toks, _ := pointer(ptr)
	return len(toks) == 0 || toks[0] == "id" || toks[0] == "meta" || toks[0] == "resourceType"
}

// pointer splits a JSON Pointer (RFC 6901) into its unescaped tokens.
func pointer(p string) ([]string, error) {
	if p == "" {
		return nil, nil
	}
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("not a JSON Pointer")
	}
	parts := strings.Split(p[1:], "/")
	for i, s := range parts {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(s, "~0", ""), "~1", ""), "~") {
			return nil, fmt.Errorf("bad escape")
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(s, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// apply applies the patch to doc; it returns the new document (doc itself
// may be changed too). room is how many bytes the document may grow by:
// an operation after which it would have grown by more is refused
// (errPatchTooLarge). The growth is counted as operations apply, from the
// sizes of the values each adds, copies, replaces or removes, so that a
// few copy operations, each doubling the resource, are refused before
// they take the memory, not after.
func (p jsonPatch) apply(_ string, doc map[string]any, _ *Validator, room int64) (map[string]any, error) {
	var root any = doc
	var grown int64
	// size is the encoded size of v, counted up to room+1 (beyond that
	// the patch is refused anyway): cheap for the small values of most
	// patches, never more than the copy it measures.
	size := func(v any) int64 { return jsonSize(v, max(room, 0)+1) }
	// displaced is the size of the member an add at path replaces (an
	// object's existing member; an array insert replaces nothing).
	displaced := func(path []string) int64 {
		if len(path) == 0 {
			return 0
		}
		parent, err := getAt(root, path[:len(path)-1])
		if m, ok := parent.(map[string]any); ok && err == nil {
			if old, ok := m[path[len(path)-1]]; ok {
				return size(old)
			}
		}
		return 0
	}
	for i, op := range p {
		path, _ := pointer(*op.Path)
		var err error
		switch op.Op {
		case "add", "replace":
			var v any
			if v, err = decodeValue(op.Value); err != nil {
				return nil, jsonPatchError(i, "value", "patch-invalid", "value is not JSON")
			}
			if op.Op == "add" {
				grown -= displaced(path)
			} else if old, gerr := getAt(root, path); gerr == nil {
				grown -= size(old)
			}
			grown += size(v)
			if grown > room {
				return nil, errPatchTooLarge(i)
			}
			root, err = setAt(root, path, v, op.Op == "add")
		case "remove":
			var v any
			if root, v, err = removeAt(root, path); err == nil {
				grown -= size(v)
			}
		case "move", "copy":
			from, _ := pointer(*op.From)
			var v any
			if op.Op == "move" {
				if isPrefix(from, path) && len(from) < len(path) {
					return nil, jsonPatchError(i, "from", "patch-invalid", "a value cannot be moved into itself")
				}
				root, v, err = removeAt(root, from)
			} else if v, err = getAt(root, from); err == nil {
				// Measured before it is copied: a copy of a large value
				// is refused without being made.
				if grown += size(v) - displaced(path); grown > room {
					return nil, errPatchTooLarge(i)
				}
				v = fhirwire.Copy(v)
			}
			if err == nil {
				root, err = setAt(root, path, v, true)
			}
		case "test":
			var want, got any
			if want, err = decodeValue(op.Value); err != nil {
				return nil, jsonPatchError(i, "value", "patch-invalid", "value is not JSON")
			}
			if got, err = getAt(root, path); err == nil && !jsonEqual(got, want) {
				return nil, jsonPatchError(i, "", "patch-test-failed", "the test operation failed: the value differs")
			}
		}
		if err != nil {
			return nil, jsonPatchError(i, "path", "patch-path-unresolved", err.Error())
		}
	}
	m, ok := root.(map[string]any)
	if !ok {
		return nil, outcome.New(outcome.Invalid, "invalid", "patch-invalid", "the patched document is not a resource")
	}
	return m, nil
}

// decodeValue decodes a JSON value keeping numbers exact.
func decodeValue(raw json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	err := d.Decode(&v)
	return v, err
}

func isPrefix(a, b []string) bool {
	if len(a) > len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// index reads an array index token; end allows "-" (one past the end).
func index(tok string, n int, end bool) (int, error) {
	if tok == "-" && end {
		return n, nil
	}
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, fmt.Errorf("an array index is not a number")
	}
	i, err := strconv.Atoi(tok)
	if err != nil || i < 0 || i > n || (!end && i == n) {
		return 0, fmt.Errorf("an array index is out of range")
	}
	return i, nil
}

// getAt returns the value at path.
func getAt(root any, path []string) (any, error) {
	cur := root
	for _, tok := range path {
		switch c := cur.(type) {
		case map[string]any:
			v, ok := c[tok]
			if !ok {
				return nil, fmt.Errorf("the path names no member of the resource")
			}
			cur = v
		case []any:
			i, err := index(tok, len(c), false)
			if err != nil {
				return nil, err
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("the path goes below a primitive value")
		}
	}
	return cur, nil
}

// setAt adds (insert: arrays grow, members may be new) or replaces (the
// member or item must exist) v at path and returns the new root.
func setAt(root any, path []string, v any, insert bool) (any, error) {
	if len(path) == 0 {
		return v, nil
	}
	parent, err := getAt(root, path[:len(path)-1])
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	switch c := parent.(type) {
	case map[string]any:
		if _, ok := c[last]; !ok && !insert {
			return nil, fmt.Errorf("replace names no member of the resource")
		}
		c[last] = v
	case []any:
		i, err := index(last, len(c), insert)
		if err != nil {
			return nil, err
		}
		if insert {
			c = append(c[:i], append([]any{v}, c[i:]...)...)
		} else {
			c[i] = v
		}
		return setAt(root, path[:len(path)-1], c, false)
	default:
		return nil, fmt.Errorf("the path goes below a primitive value")
	}
	return root, nil
}

// removeAt removes the value at path and returns the new root and it.
func removeAt(root any, path []string) (any, any, error) {
	if len(path) == 0 {
		return nil, nil, fmt.Errorf("the whole resource cannot be removed")
	}
	parent, err := getAt(root, path[:len(path)-1])
	if err != nil {
		return nil, nil, err
	}
	last := path[len(path)-1]
	switch c := parent.(type) {
	case map[string]any:
		v, ok := c[last]
		if !ok {
			return nil, nil, fmt.Errorf("remove names no member of the resource")
		}
		delete(c, last)
		return root, v, nil
	case []any:
		i, err := index(last, len(c), false)
		if err != nil {
			return nil, nil, err
		}
		v := c[i]
		c = append(c[:i:i], c[i+1:]...)
		root, err = setAt(root, path[:len(path)-1], c, false)
		return root, v, err
	}
	return nil, nil, fmt.Errorf("the path goes below a primitive value")
}

// jsonEqual compares decoded JSON values as RFC 6902 test does: numbers
// by value, objects by members, arrays item by item.
func jsonEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if w, ok := y[k]; !ok || !jsonEqual(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !jsonEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case json.Number:
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		fx, _, ex := big.ParseFloat(string(x), 10, 200, big.ToNearestEven)
		fy, _, ey := big.ParseFloat(string(y), 10, 200, big.ToNearestEven)
		return ex == nil && ey == nil && fx.Cmp(fy) == 0
	}
	return a == b
}
