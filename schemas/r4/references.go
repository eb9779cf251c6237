package r4

import (
	"bytes"
	"slices"
	"strings"
)

// resCtx gathers, for one resource and the resources it contains, the
// contained ids and local ("#id") references, to check ref-1 and dom-3 once
// the resource has been walked.
type resCtx struct {
	contained []containedRes
	refs      []localRef
	cur       int // index in contained of the resource being walked, or -1
}

type containedRes struct {
	id      string
	path    string
	selfRef bool // refers to its container with "#"
}

type localRef struct {
	target string // the part after '#'
	path   string // set for Reference.reference (ref-1 applies)
}

func (w *walker) pushCtx() {
	var c *resCtx
	if n := len(w.ctxPool); n > 0 {
		c, w.ctxPool = w.ctxPool[n-1], w.ctxPool[:n-1]
	} else {
		c = &resCtx{}
	}
	c.contained, c.refs, c.cur = c.contained[:0], c.refs[:0], -1
	w.res = append(w.res, c)
}

// popCtx evaluates ref-1 and dom-3 for the resource just walked.
func (w *walker) popCtx() {
	c := w.res[len(w.res)-1]
	w.res = w.res[:len(w.res)-1]
	defer func() { w.ctxPool = append(w.ctxPool, c) }()
	if len(c.refs) == 0 && len(c.contained) == 0 {
		return
	}
	for _, r := range c.refs {
		if r.path == "" || r.target == "" {
			continue
		}
		found := false
		for _, cr := range c.contained {
			if cr.id == r.target {
				found = true
				break
			}
		}
		if !found {
			w.add(SeverityError, "ref-1", r.path, "a local reference must point to a contained resource of this resource (ref-1)")
		}
	}
	for _, cr := range c.contained {
		if cr.id == "" || cr.selfRef {
			continue
		}
		if !slices.ContainsFunc(c.refs, func(r localRef) bool { return r.target == cr.id }) {
			w.add(SeverityError, "dom-3", cr.path, "a contained resource must be referenced from elsewhere in the resource or refer to its container (dom-3)")
		}
	}
}

// localRef records a "#..." reference (s includes the '#').
func (w *walker) localRef(s []byte, isReference bool) {
	if len(w.res) == 0 {
		return
	}
	c := w.res[len(w.res)-1]
	if len(s) == 1 {
		if c.cur >= 0 {
			c.contained[c.cur].selfRef = true
		}
		return
	}
	r := localRef{target: string(s[1:])}
	if isReference {
		r.path = pathString(w.root, w.path)
	}
	c.refs = append(c.refs, r)
}

// containedRules checks dom-2, dom-4 and dom-5 on contained resource v and
// registers it in the reference context. The path already ends with the
// ofType step of the contained resource.
func (w *walker) containedRules(v int32) int {
	c := w.res[len(w.res)-1]
	id, _ := w.memberStr(v, "id")
	c.contained = append(c.contained, containedRes{id: id, path: pathString(w.root, w.path)})
	if w.member(v, "contained") >= 0 {
		w.errorAt("contained", "dom-2", "a contained resource must not contain other resources (dom-2)")
	}
	if meta := w.member(v, "meta"); meta >= 0 {
		if w.member(meta, "versionId") >= 0 || w.member(meta, "lastUpdated") >= 0 {
			w.errorAt("meta", "dom-4", "a contained resource must not have meta.versionId or meta.lastUpdated (dom-4)")
		}
		if w.member(meta, "security") >= 0 {
			w.errorAt("meta", "dom-5", "a contained resource must not have a security label (dom-5)")
		}
	}
	return len(c.contained) - 1
}

// checkReference validates Reference.reference (rule reference-format) and
// records local references for ref-1.
func checkReference(o *objView, _ *invariant) {
	w := o.w
	v := o.val("reference")
	if v < 0 || w.nodes[v].kind != kString {
		return
	}
	s := w.str(v)
	if len(s) == 0 {
		return // reported as value-empty
	}
	w.push("reference")
	defer w.pop()
	if s[0] == '#' {
		if len(s) > 1 && !isID(s[1:]) {
			w.errorf("reference-format", "a local reference must be '#' followed by a contained resource id")
			return
		}
		w.localRef(s, true)
		return
	}
	switch w.s.referenceKind(s) {
	case refBad:
		msg := "the reference is not a relative, absolute, urn:uuid, urn:oid, local or conditional reference to an R4 resource type"
		if i := bytes.IndexAny(s, "/?"); i > 0 {
			msg += w.s.typeHint(s[:i]) // (an EHR engineer's review: "Patinet/123" got no hint)
		}
		w.errorf("reference-format", msg)
	case refBadUUID:
		// The HL7 validator accepts these (case ref-policy-r4); flag them.
		w.warnf("reference-format", "a urn:uuid reference should hold a lowercase UUID")
	case refConditional:
		if w.bundles == 0 {
			w.errorf("reference-format", "a conditional reference is resolved only in a Bundle's entry (transaction or batch): a resource on its own must reference another by its id")
		}
	}
}

// referenceTarget checks that Reference v points to a resource of a type
// its element allows (targets, R4's type.targetProfile): by the type its
// literal reference names and by its type element, which must agree (rule
// reference-target). A reference whose type cannot be told (a contained
// "#id", a urn:uuid or urn:oid, an absolute URL not ending in Type/id, a
// type that is not an R4 resource type) is not checked.
func (w *walker) referenceTarget(targets []string, v int32) {
	var lit, named string
	if r, ok := w.memberBytes(v, "reference"); ok {
		lit = w.s.referencedType(r)
	}
	if t, ok := w.memberBytes(v, "type"); ok {
		t = bytes.TrimPrefix(t, []byte("http://hl7.org/fhir/StructureDefinition/"))
		if _, known := w.s.resources[string(t)]; known {
			named = string(t)
		}
	}
	allowed := func(at, typ string) bool {
		if typ == "" || slices.Contains(targets, typ) {
			return true
		}
		w.push(at)
		w.errorf("reference-target", "a reference to "+withArticle(typ)+" is not allowed here: it must point to "+oneOf(targets))
		w.pop()
		return false
	}
	if !allowed("reference", lit) || !allowed("type", named) {
		return
	}
	if lit != "" && named != "" && lit != named {
		w.push("type")
		w.errorf("reference-target", "the type ("+named+") is not the type the reference names ("+lit+")")
		w.pop()
	}
}

// oneOf lists types as "a Patient", "a Patient or a Group", "a Patient, a
// Group or an Observation".
func oneOf(types []string) string {
	var b strings.Builder
	for i, t := range types {
		switch {
		case i == 0:
		case i == len(types)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(withArticle(t))
	}
	return b.String()
}

// withArticle is a type name with its indefinite article: "a Patient", "an
// Observation".
func withArticle(typ string) string {
	if typ != "" && strings.IndexByte("AEIOU", typ[0]) >= 0 {
		return "an " + typ
	}
	return "a " + typ
}

// referencedType is the resource type a literal reference names: Type/id
// (Type/id/_history/vid), Type?query, or an absolute URL ending so; "" for
// a local, urn:uuid or urn:oid reference and when it names no R4 type.
func (s *schema) referencedType(r []byte) string {
	if len(r) == 0 || r[0] == '#' || bytes.HasPrefix(r, []byte("urn:")) {
		return ""
	}
	known := func(t []byte) string {
		if _, ok := s.resources[string(t)]; ok {
			return string(t)
		}
		return ""
	}
	if q := bytes.IndexByte(r, '?'); q > 0 && !bytes.Contains(r[:q], []byte("/")) {
		return known(r[:q])
	}
	if i := bytes.Index(r, []byte("://")); i > 0 {
		r, _, _ = bytes.Cut(r[i+3:], []byte("?"))
		segs := bytes.Split(r, []byte("/"))
		n := len(segs)
		if n >= 5 && string(segs[n-2]) == "_history" {
			n -= 2
		}
		if n >= 3 { // host, Type, id at least
			return known(segs[n-2])
		}
		return ""
	}
	typ, _, found := bytes.Cut(r, []byte("/"))
	if !found {
		return ""
	}
	return known(typ)
}

// Kinds of literal references.
const (
	refOK = iota
	refBad
	refBadUUID
	refConditional
)

// referenceKind classifies a non-local literal reference: Type/id or
// Type/id/_history/vid (Type an R4 resource type), an absolute URL
// (scheme://host/...; any path, since it may point to a non-FHIR or
// service base as in the HL7 examples), urn:uuid, urn:oid, or a
// conditional reference Type?query.
func (s *schema) referenceKind(r []byte) int {
	switch {
	case bytes.HasPrefix(r, []byte("urn:uuid:")):
		if isUUID(r[9:]) {
			return refOK
		}
		if noSpace(r) {
			return refBadUUID
		}
		return refBad
	case bytes.HasPrefix(r, []byte("urn:oid:")):
		return ok(isOID(r[8:]))
	}
	if q := bytes.IndexByte(r, '?'); q > 0 {
		if _, known := s.resources[string(r[:q])]; known {
			if q+1 < len(r) && noSpace(r[q+1:]) {
				return refConditional
			}
			return refBad
		}
	}
	if i := bytes.Index(r, []byte("://")); i > 0 {
		return ok(isScheme(r[:i]) && i+3 < len(r) && r[i+3] != '/' && noSpace(r))
	}
	return ok(s.typeIDPath(r))
}

func ok(b bool) int {
	if b {
		return refOK
	}
	return refBad
}

// isScheme implements the URI scheme grammar ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func isScheme(s []byte) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return len(s) > 0
}

// typeIDPath checks Type/id[/_history/vid].
func (s *schema) typeIDPath(p []byte) bool {
	typ, rest, found := bytes.Cut(p, []byte("/"))
	if !found {
		return false
	}
	if _, known := s.resources[string(typ)]; !known {
		return false
	}
	id, hist, found := bytes.Cut(rest, []byte("/"))
	if !found {
		return isID(id)
	}
	vid, found := bytes.CutPrefix(hist, []byte("_history/"))
	return found && isID(id) && isID(vid)
}
