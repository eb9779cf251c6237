package r4

import (
	"iter"
	"maps"
	"slices"
	"strings"
)

// walker validates one parsed document against the schema. Walkers are
// pooled; a walker is used by one goroutine at a time.
type walker struct {
	s       *schema
	p       parser
	doc     []byte
	nodes   []node
	root    string // resource type of the document, first step of paths
	path    []seg
	issues  []Issue
	full    bool    // MaxIssues reached: stop walking
	strict  bool    // a decimal as a JSON string is an error (ValidateDecoded)
	slots   []int32 // per-object element bookkeeping, used as a stack
	buf     []byte  // scratch for unescaped string values
	bundles int     // number of enclosing Bundles
	res     []*resCtx
	ctxPool []*resCtx
	view    objView // handed to invariants
}

// start prepares the walker for the document whose tape p holds.
func (w *walker) start(doc []byte) {
	w.doc, w.nodes = doc, w.p.nodes
	w.root, w.full, w.bundles = "", false, 0
	w.path, w.issues, w.slots, w.res = w.path[:0], nil, w.slots[:0], w.res[:0]
}

// finish returns the issues, appending the too-costly notice if needed.
func (w *walker) finish() []Issue {
	if w.full {
		w.issues = append(w.issues, newIssue(SeverityError, "too-costly", "",
			"validation stopped after the maximum number of issues; further issues were suppressed"))
	}
	return w.issues
}

// add records an issue with an explicit expression.
func (w *walker) add(sev Severity, rule, expr, msg string) {
	if w.full {
		return
	}
	if len(w.issues) >= MaxIssues {
		w.full = true
		return
	}
	w.issues = append(w.issues, newIssue(sev, rule, expr, msg))
}

// errorf records an error at the current path.
func (w *walker) errorf(rule, msg string) {
	if w.full {
		return
	}
	w.add(SeverityError, rule, pathString(w.root, w.path), msg)
}

// warnf records a warning at the current path.
func (w *walker) warnf(rule, msg string) {
	if w.full {
		return
	}
	w.add(SeverityWarning, rule, pathString(w.root, w.path), msg)
}

// errorAt records an error at the current path extended by one element.
func (w *walker) errorAt(name string, rule, msg string) {
	w.push(name)
	w.errorf(rule, msg)
	w.pop()
}

func (w *walker) push(name string) { w.path = append(w.path, seg{name: name, index: -1}) }
func (w *walker) pop()             { w.path = w.path[:len(w.path)-1] }

// str returns the decoded content of string node i. The result is only
// valid until the next call.
func (w *walker) str(i int32) []byte {
	n := &w.nodes[i]
	raw := w.doc[n.start+1 : n.end-1]
	if !n.esc {
		return raw
	}
	w.buf = unescape(w.buf[:0], raw)
	return w.buf
}

// strCopy is str for callers that keep the value across other calls.
func (w *walker) strCopy(i int32) string { return string(w.str(i)) }

// raw returns the source bytes of node i.
func (w *walker) raw(i int32) []byte {
	n := &w.nodes[i]
	return w.doc[n.start:n.end]
}

// member returns the value node of property name in object node obj, or -1.
func (w *walker) member(obj int32, name string) int32 {
	if obj < 0 || w.nodes[obj].kind != kObject {
		return -1
	}
	end := w.nodes[obj].next
	for i := obj + 1; i < end; i = w.nodes[i+1].next {
		n := &w.nodes[i]
		k := w.doc[n.start+1 : n.end-1]
		if n.esc {
			k = w.str(i)
		}
		if string(k) == name {
			return i + 1
		}
	}
	return -1
}

// memberBytes returns the decoded string of property name, if it is a
// string; like str, the result is only valid until the next call.
func (w *walker) memberBytes(obj int32, name string) ([]byte, bool) {
	v := w.member(obj, name)
	if v < 0 || w.nodes[v].kind != kString {
		return nil, false
	}
	return w.str(v), true
}

// memberStr returns the decoded string of property name, if it is a string.
func (w *walker) memberStr(obj int32, name string) (string, bool) {
	v := w.member(obj, name)
	if v < 0 || w.nodes[v].kind != kString {
		return "", false
	}
	return w.strCopy(v), true
}

// items calls f with the index and node of each item of array node arr.
func (w *walker) items(arr int32, f func(i int, item int32)) {
	if arr < 0 || w.nodes[arr].kind != kArray {
		return
	}
	end := w.nodes[arr].next
	i := 0
	for j := arr + 1; j < end; j = w.nodes[j].next {
		f(i, j)
		i++
	}
}

// isDup reports whether key node k repeats an earlier key of its object.
func (w *walker) isDup(k int32) bool {
	if len(w.p.dups) == 0 {
		return false
	}
	_, found := slices.BinarySearch(w.p.dups, k)
	return found
}

// dupsWithin reports duplicate keys inside a subtree that is not walked
// (unknown elements, unusable nested resources).
func (w *walker) dupsWithin(v int32) {
	if len(w.p.dups) == 0 {
		return
	}
	i, _ := slices.BinarySearch(w.p.dups, v)
	if i < len(w.p.dups) && w.p.dups[i] < w.nodes[v].next {
		w.errorf("json-duplicate-key", "a property name is repeated in an object inside this element")
	}
}

// object validates object node obj as an instance of def.
func (w *walker) object(def *typeDef, obj int32) {
	n := &w.nodes[obj]
	if n.kind != kObject {
		w.errorf("element-type", "expected a JSON object for type "+def.name)
		return
	}
	if n.count == 0 {
		w.errorf("value-empty", "an object must not be empty")
		return
	}
	if n.count == 1 && def != w.s.element && def.kind != kindResource && w.member(obj, "id") >= 0 {
		w.errorf("ele-1", eleOne)
	}
	ne := len(def.elems)
	base := len(w.slots)
	w.slots = slices.Grow(w.slots, 3*ne)[:base+3*ne]
	sl := w.slots[base : base+3*ne : base+3*ne]
	clear(sl)
	align := false
	for k := obj + 1; k < n.next && !w.full; {
		v := k + 1
		next := w.nodes[v].next
		if w.member1(def, sl, k, v) {
			align = true
		}
		k = next
	}
	// ele-1 for a primitive's "_name" object holding only an id beside no
	// value: neither a value nor children (a repeating primitive's items
	// are checked by align's rules).
	for i := range ne {
		e := &def.elems[i]
		if x := sl[ne+i] - 1; x >= 0 && sl[i] == 0 && !e.multi {
			if xn := &w.nodes[x]; xn.kind == kObject && xn.count == 1 && w.member(x, "id") >= 0 {
				w.push(e.name)
				w.errorf("ele-1", eleOne)
				w.pop()
			}
		}
	}
	for _, i := range def.bound {
		// A required code given only as extensions ("_status") has no code.
		// The HL7 validator rejects this (case allergy) unless an extension
		// supplies the value (case xver-valueset-4_5): warn only.
		if e := &def.elems[i]; sl[i] == 0 && sl[ne+i] != 0 {
			w.push(e.name)
			w.warnf("binding-required", "no code is provided, and one is required from the value set "+e.vs.url)
			w.pop()
		}
	}
	for _, ri := range def.required {
		if sl[ri] == 0 && sl[ne+ri] == 0 {
			e := &def.elems[ri]
			name := e.name
			if e.choice {
				name += "[x]"
			}
			w.errorAt(name, "element-required", "required element is missing (min cardinality 1)")
		}
	}
	if align {
		for i := range def.elems {
			if e := &def.elems[i]; e.multi && (sl[i] != 0 || sl[ne+i] != 0) && e.alts[0].prim != pNone {
				w.align(e, sl[i]-1, sl[ne+i]-1)
			}
		}
	}
	if len(def.checks) > 0 && !w.full {
		// Checks do not walk nested objects, so one view per walker suffices.
		w.view = objView{w: w, def: def, obj: obj, sl: sl}
		for _, inv := range def.checks {
			inv.check(&w.view, inv)
		}
		w.view = objView{}
	}
	w.slots = w.slots[:base]
}

// member1 validates one property (key node k, value node v) of an object
// of type def. It returns true when the property may need array alignment
// with its primitive-extension sibling.
func (w *walker) member1(def *typeDef, sl []int32, k, v int32) bool {
	name := w.str(k)
	if w.isDup(k) {
		msg := "the property appears more than once in the object"
		if knownName(def, name) {
			w.errorAt(string(name), "json-duplicate-key", msg)
		} else {
			w.errorf("json-duplicate-key", msg+" (the property name is not shown)")
		}
		return false
	}
	ref, ok := def.keys[string(name)]
	if !ok {
		if def.kind == kindResource && string(name) == "resourceType" {
			return false // checked by the caller
		}
		w.unknown(def, name, v)
		return false
	}
	e := &def.elems[ref.elem]
	a := &e.alts[ref.alt]
	ne := len(def.elems)
	if e.choice {
		sel := &sl[2*ne+int(ref.elem)]
		if *sel != 0 && *sel != int32(ref.alt)+1 {
			w.errorAt(a.key, "choice-multiple", "only one type of the choice element "+e.name+"[x] may be present")
			return false
		}
		*sel = int32(ref.alt) + 1
	}
	w.push(a.key)
	defer w.pop()
	if ref.ext {
		sl[ne+int(ref.elem)] = v + 1
		return w.primitiveExt(e, v)
	}
	sl[ref.elem] = v + 1
	return w.element(e, a, v)
}

// unknown reports a property that def does not define.
func (w *walker) unknown(def *typeDef, name []byte, v int32) {
	msg := "unknown element for type " + def.name
	if len(name) > 1 && name[0] == '_' {
		if i, ok := def.byName[string(name[1:])]; ok && def.elems[i].alts[0].prim == pNone {
			msg = "'_' extension siblings are only allowed for primitive elements"
		}
	}
	if knownName(def, name) {
		w.push(string(name))
		w.errorf("element-unknown", msg)
		w.dupsWithin(v)
		w.pop()
		return
	}
	msg += " (the property name is not shown)"
	if near := nearestKey(def, name); near != "" {
		msg += "; the nearest element of " + def.name + " is '" + near + "'"
	}
	w.errorf("element-unknown", msg)
	w.dupsWithin(v)
}

// eleOne is the message of R4's ele-1 broken by an element that holds
// only its id.
const eleOne = "an element must have a value or children other than its id (ele-1)"

// knownName reports whether a property name of an object of type def may
// appear in an issue: it is one of def's own element names (a JSON key,
// a choice's base name such as value), or one with a leading '_'. Any
// other name is the client's text, which may be anything (a person's name,
// an MRN used as a key, a misspelt element that is one): issues about it
// point at the object that holds it, and never repeat it
// (docs/security.md).
func knownName(def *typeDef, name []byte) bool {
	n := string(name)
	if n == "resourceType" && def.kind == kindResource {
		return true
	}
	if len(n) > 1 && n[0] == '_' {
		n = n[1:]
	}
	_, key := def.keys[n]
	_, elem := def.byName[n]
	return key || elem
}

// nearestKey is def's JSON property name nearest to name when it is a
// likely misspelling of one (at most two edits, one in a name of four
// characters or fewer, none under three; compared without case), ""
// otherwise: the issue then names the element meant, not what was sent.
func nearestKey(def *typeDef, name []byte) string {
	return nearest(name, maps.Keys(def.keys))
}

// nearest is the one of names nearest to name when name is a likely
// misspelling of it (nearestKey's thresholds), "" otherwise.
func nearest(name []byte, names iter.Seq[string]) string {
	if len(name) < 3 || len(name) > 64 {
		return ""
	}
	most := 2 // edits allowed: one in a name of four characters or fewer
	if len(name) <= 4 {
		most = 1
	}
	lower := strings.ToLower(string(name))
	best, bestD := "", most+1
	for k := range names {
		if d := editDistance(lower, strings.ToLower(k), bestD+1); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	if bestD > most {
		return ""
	}
	return best
}

// unknownTypeMessage is the message of resource-type-unknown for a
// resourceType of name: the nearest type when it looks misspelt, never
// the name sent.
func (s *schema) unknownTypeMessage(name []byte) string {
	return "resourceType is not an R4 resource type (the value is not shown)" + s.typeHint(name)
}

// typeHint is "; the nearest resource type is 'T'" for a name that is no
// resource type and looks like a misspelling of T, "" otherwise: every
// message about an unknown type (in a body, a reference, a URL) says it
// so, never repeating the name sent.
func (s *schema) typeHint(name []byte) string {
	if s.resources[string(name)] != nil {
		return ""
	}
	if near := nearest(name, maps.Keys(s.resources)); near != "" {
		return "; the nearest resource type is '" + near + "'"
	}
	return ""
}

// editDistance is the Levenshtein distance of a and b, or limit when it
// is limit or more.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d >= limit || -d >= limit {
		return limit
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		low := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			low = min(low, cur[j])
		}
		if low >= limit {
			return limit
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], limit)
}

// element validates the value node v of element e with type a. It returns
// true when a null item was seen in a primitive array.
func (w *walker) element(e *elemDef, a *altDef, v int32) bool {
	n := &w.nodes[v]
	if !e.multi {
		switch n.kind {
		case kArray:
			w.errorf("element-array", "the element must not be an array (max cardinality 1)")
			w.dupsWithin(v)
		case kNull:
			w.errorf("value-empty", "null is not allowed as an element value")
		default:
			w.value(e, a, v)
		}
		return false
	}
	if n.kind != kArray {
		w.errorf("element-array", "the element must be a JSON array (max cardinality > 1)")
		w.dupsWithin(v)
		return false
	}
	if n.count == 0 {
		w.errorf("value-empty", "an array must not be empty")
		return false
	}
	nulls := false
	top := len(w.path) - 1
	idx := int32(0)
	for j := v + 1; j < n.next && !w.full; j = w.nodes[j].next {
		w.path[top].index = idx
		if w.nodes[j].kind == kNull {
			if a.prim == pNone {
				w.errorf("value-empty", "null is not allowed in an array of complex values")
			}
			nulls = true
		} else {
			w.value(e, a, j)
		}
		idx++
	}
	w.path[top].index = -1
	return nulls
}

// primitiveExt validates a "_name" sibling: an Element (id, extension) or,
// for arrays, an array of Elements and nulls.
func (w *walker) primitiveExt(e *elemDef, v int32) bool {
	n := &w.nodes[v]
	if !e.multi {
		w.object(w.s.element, v)
		return false
	}
	if n.kind != kArray {
		w.errorf("element-array", "the extension sibling of a repeating element must be a JSON array")
		w.dupsWithin(v)
		return false
	}
	if n.count == 0 {
		w.errorf("value-empty", "an array must not be empty")
		return false
	}
	top := len(w.path) - 1
	idx := int32(0)
	for j := v + 1; j < n.next && !w.full; j = w.nodes[j].next {
		if w.nodes[j].kind != kNull {
			w.path[top].index = idx
			w.object(w.s.element, j)
		}
		idx++
	}
	w.path[top].index = -1
	return true
}

// align checks that a repeating primitive and its "_name" sibling line up:
// a null item must have a non-null counterpart at the same index. Trailing
// nulls of the longer array are tolerated (the HL7 validator accepts them);
// a value-less extension beyond the values is not.
func (w *walker) align(e *elemDef, vals, exts int32) {
	if vals >= 0 && w.nodes[vals].kind != kArray || exts >= 0 && w.nodes[exts].kind != kArray {
		return // already reported
	}
	w.push(e.name)
	defer w.pop()
	var a, b []bool // null flags per item
	collect := func(arr int32) []bool {
		out := make([]bool, 0, w.nodes[arr].count)
		w.items(arr, func(_ int, it int32) { out = append(out, w.nodes[it].kind == kNull) })
		return out
	}
	if vals >= 0 {
		a = collect(vals)
	}
	if exts >= 0 {
		b = collect(exts)
	}
	top := len(w.path) - 1
	for i := range max(len(a), len(b)) {
		w.path[top].index = int32(i)
		switch {
		case i < len(a) && i < len(b):
			if a[i] && b[i] {
				w.errorf("value-empty", "null is only allowed where the extension sibling array has a value")
			}
		case i < len(a):
			if a[i] {
				w.errorf("value-empty", "null is only allowed where the extension sibling array has a value")
			}
		case !b[i] && vals >= 0:
			w.errorf("element-array", "the extension sibling array has more items than the element array")
		case b[i] && vals < 0:
			// A null in the extension array with no element array beside
			// it stands for nothing: an empty element (ele-1; a
			// conformance review: "_given": [null] was stored).
			w.errorf("value-empty", "null is only allowed where the element sibling array has a value")
		}
	}
	w.path[top].index = -1
}
