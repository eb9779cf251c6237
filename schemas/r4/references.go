package r4

import (
	"bytes"
	"slices"
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
		w.errorf("reference-format", "the reference is not a relative, absolute, urn:uuid, urn:oid, local or conditional reference to an R4 resource type")
	case refBadUUID:
		// The HL7 validator accepts these (case ref-policy-r4); flag them.
		w.warnf("reference-format", "a urn:uuid reference should hold a lowercase UUID")
	case refConditional:
		if w.bundles == 0 {
			w.errorf("reference-format", "conditional references are only allowed inside a Bundle")
		}
	}
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
