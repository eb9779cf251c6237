package fhirwire

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// Rewriter rewrites the links inside one Bundle entry's resource to the
// identities the other entries were given (bundle.html#references,
// http.html#trules: "Servers SHALL replace all matching links in the
// bundle, whether they are found in the resource ids, resource references,
// elements of type uri, url, oid, uuid, and <a href="" & <img src="" in the
// narrative"). It knows each element's type from the R4 definitions
// (schemas/r4): a string, markdown, code or id element (Identifier.value,
// CodeableConcept.text, valueString) is data, never a link, and is left as
// it is whatever it holds. canonical, a uri, is rewritten with uri.
type Rewriter struct {
	// IDs maps entry fullUrls to the identity each was given ("Type/id" at
	// the gateway, the EHR's Location in delivery).
	IDs map[string]string
	// Conditional resolves a conditional reference (Type?criteria in
	// Reference.reference) to "Type/id"; nil leaves such references alone.
	Conditional func(typ, query string) (string, error)
	// Local, when set, returns a reference relative to the server's own
	// base when it is an absolute URL below it (and the reference as it is
	// otherwise): a literal reference written [base]/Type/id becomes
	// Type/id (the search index takes an absolute URL for another
	// server's), and a conditional one written [base]/Type?criteria is
	// resolved as Type?criteria.
	Local func(ref string) string
	// FullURL is the fullUrl of the entry whose resource is rewritten, and
	// Base the server's own FHIR base URL: a relative Reference.reference
	// (Type/id) is resolved against FullURL's base when FullURL is a
	// RESTful URL ([base]/Type/id), against Base otherwise (a urn:, or no
	// fullUrl: in a transaction a relative reference is relative to the
	// server), and rewritten when the absolute URL it makes is a fullUrl of
	// IDs (bundle.html#references). Both empty: relative references are
	// left alone.
	FullURL, Base string
	// Unresolved, when set, is returned for a Reference.reference that is
	// a urn: naming no entry of IDs; nil leaves such references alone.
	Unresolved error
	// Versioned, when set, is returned for a version-specific
	// Reference.reference ([fullUrl]/_history/v, or a relative
	// Type/id/_history/v that makes one) naming an entry of IDs whose
	// identity is not the Type/id its fullUrl names (a urn:, or a RESTful
	// fullUrl of a resource given another id): the version would be one
	// of a resource that does not exist. One naming an entry that keeps
	// its Type/id is rewritten to that identity and version. nil leaves
	// version-specific references alone.
	Versioned error
	// Refused, when set, are fullUrls a Reference.reference may not name
	// (the other entries of a batch, between which nothing is resolved):
	// one naming one, as written or made absolute as for IDs, fails with
	// RefusedErr; FullURL's own is not refused (it names the entry's own
	// resource), so one map serves every entry of a batch.
	Refused    map[string]bool
	RefusedErr error
	// Changes, when set, records every string Rewrite replaces, so that
	// Changes.Restore can put the document back as it was.
	Changes *Changes
}

// Changes records the strings a Rewriter replaced in a document.
type Changes struct{ list []change }

// change is one replaced string: m[k] or a[i] held old.
type change struct {
	m       map[string]any
	k       string
	a       []any
	i       int
	old, to string
}

// Restore puts back every string recorded, latest first, and forgets them:
// the document is again as it was before the Rewrites that recorded them.
func (c *Changes) Restore() {
	for i := len(c.list) - 1; i >= 0; i-- {
		ch := c.list[i]
		if ch.m != nil {
			ch.m[ch.k] = ch.old
		} else {
			ch.a[ch.i] = ch.old
		}
	}
	c.list = c.list[:0]
}

// Clone returns a copy of what c records, which c's Restore leaves as it
// is: what a Rewrite did, kept after the document was put back.
func (c *Changes) Clone() *Changes { return &Changes{list: slices.Clone(c.list)} }

// Same reports whether c and o record the same replacements: the same
// strings replaced by the same values at the same places (the same maps
// and slices of one document), in any order (a document's maps are walked
// in no fixed order). A document rewritten so and one rewritten as o
// records, from the same document as it was, are then the same.
func (c *Changes) Same(o *Changes) bool {
	if len(c.list) != len(o.list) {
		return false
	}
	type place struct {
		p unsafe.Pointer
		k string
		i int
	}
	at := func(ch change) place {
		if ch.m != nil {
			return place{p: reflect.ValueOf(ch.m).UnsafePointer(), k: ch.k}
		}
		return place{p: unsafe.Pointer(unsafe.SliceData(ch.a)), i: ch.i}
	}
	want := make(map[place]change, len(c.list))
	for _, ch := range c.list {
		want[at(ch)] = ch
	}
	for _, ch := range o.list {
		w, ok := want[at(ch)]
		if !ok || w.old != ch.old || w.to != ch.to {
			return false
		}
		delete(want, at(ch))
	}
	return len(want) == 0
}

// Replay makes in the document c was recorded on the replacements c
// records, recording them in into, and reports whether it did: false,
// with the document left as it was, when a place no longer holds the
// string c replaced there.
func (c *Changes) Replay(into *Changes) bool {
	for _, ch := range c.list {
		var now any
		if ch.m != nil {
			now = ch.m[ch.k]
		} else if ch.i < len(ch.a) {
			now = ch.a[ch.i]
		}
		if s, ok := now.(string); !ok || s != ch.old {
			return false
		}
	}
	for _, ch := range c.list {
		if ch.m != nil {
			ch.m[ch.k] = ch.to
		} else {
			ch.a[ch.i] = ch.to
		}
	}
	into.list = append(into.list, c.list...)
	return true
}

// set replaces m[k], which holds old, with to (recorded in Changes).
func (rw Rewriter) set(m map[string]any, k, old, to string) {
	if to == old {
		return
	}
	rw.record(change{m: m, k: k, old: old, to: to})
	m[k] = to
}

// setAt replaces a[i], which holds old, with to (recorded in Changes).
func (rw Rewriter) setAt(a []any, i int, old, to string) {
	if to == old {
		return
	}
	rw.record(change{a: a, i: i, old: old, to: to})
	a[i] = to
}

func (rw Rewriter) record(c change) {
	if rw.Changes != nil {
		rw.Changes.list = append(rw.Changes.list, c)
	}
}

// Rewrite rewrites doc, a resource decoded by encoding/json, in place,
// contained and nested resources (Parameters.parameter.resource) included,
// but not a Bundle resource, whose links are its own (see resource): every element of type uri, url,
// canonical, oid or uuid equal to a fullUrl in IDs (an extension's valueUri
// and a choice element's too), every Reference.reference per IDs,
// Conditional and Unresolved, and the href and src attributes of the
// narrative (xhtml) that name a fullUrl. Elements R4 does not define, and
// a document whose resourceType is not an R4 resource type, are left
// alone. The first error of Conditional (or Unresolved, Versioned,
// RefusedErr) stops it.
//
// The error is a *LinkError naming the element at fault.
func (rw Rewriter) Rewrite(doc any) error {
	m, ok := doc.(map[string]any)
	if !ok {
		return nil
	}
	err := rw.resource(m)
	if le, ok := err.(*LinkError); ok {
		rt, _ := m["resourceType"].(string)
		var b strings.Builder
		b.WriteString(rt)
		for i := len(le.rev) - 1; i >= 0; i-- {
			b.WriteString(le.rev[i])
		}
		le.Path, le.rev = b.String(), nil
	}
	return err
}

// LinkError is the failure of Rewrite at one element: Path is the element's
// FHIRPath from the resource type, with array indexes and ofType for a
// nested resource, as schemas/r4 writes issue expressions
// (Observation.contained[0].ofType(Provenance).target[0].reference); Err is
// what Conditional returned, or Unresolved, Versioned, RefusedErr.
type LinkError struct {
	Path string
	Err  error
	rev  []string // Path's steps, innermost first, while Rewrite returns
}

func (e *LinkError) Error() string { return "link at " + e.Path + ": " + e.Err.Error() }
func (e *LinkError) Unwrap() error { return e.Err }

// at adds the step of an enclosing element (".name", ".name[i]",
// ".ofType(T)") to the path of err, a failure inside it.
func at(err error, step string) error {
	le, ok := err.(*LinkError)
	if !ok {
		le = &LinkError{Err: err}
	}
	le.rev = append(le.rev, step)
	return le
}

// step is the path step of element k, item i of it when i >= 0.
func step(k string, i int) string {
	if i < 0 {
		return "." + k
	}
	return "." + k + "[" + strconv.Itoa(i) + "]"
}

// resource rewrites a resource's object. A Bundle resource (a document, a
// collection, a message stored or carried as one resource) is left as it
// is: its references resolve against the fullUrls of its own entries
// (bundle.html#references), which are its content, not identities of the
// Bundle being processed, so they are neither rewritten nor refused.
func (rw Rewriter) resource(m map[string]any) error {
	rt, _ := m["resourceType"].(string)
	if rt == "Bundle" {
		return nil
	}
	return rw.object(m, r4.ResourceNode(rt))
}

// object rewrites the members of an object that n defines.
func (rw Rewriter) object(m map[string]any, n r4.Node) error {
	for k, v := range m {
		typ, child, ok := n.Member(k)
		if !ok {
			continue // resourceType, or not an element of n
		}
		ref := k == "reference" && n.Type() == "Reference"
		switch v := v.(type) {
		case string:
			to, err := rw.str(v, typ, ref)
			if err != nil {
				return at(err, step(k, -1))
			}
			rw.set(m, k, v, to)
		case []any:
			for i, item := range v {
				if s, ok := item.(string); ok {
					to, err := rw.str(s, typ, ref)
					if err != nil {
						return at(err, step(k, i))
					}
					rw.setAt(v, i, s, to)
					continue
				}
				if err := rw.nested(item, typ, child); err != nil {
					return at(err, step(k, i))
				}
			}
		default:
			if err := rw.nested(v, typ, child); err != nil {
				return at(err, step(k, -1))
			}
		}
	}
	return nil
}

// nested rewrites the object v of an element of type typ (a resource's
// for typ Resource); anything else is left alone.
func (rw Rewriter) nested(v any, typ string, n r4.Node) error {
	m, ok := v.(map[string]any)
	if !ok {
		return nil
	}
	if typ == "Resource" {
		if err := rw.resource(m); err != nil {
			rt, _ := m["resourceType"].(string)
			return at(err, ".ofType("+rt+")")
		}
		return nil
	}
	return rw.object(m, n)
}

// str returns what the string s of an element of type typ becomes; ref
// marks a Reference.reference.
func (rw Rewriter) str(s, typ string, ref bool) (string, error) {
	switch {
	case ref:
		return rw.reference(s)
	case typ == "xhtml":
		return rw.narrative(s), nil
	case linkType[typ]:
		if to, ok := rw.IDs[s]; ok {
			return to, nil
		}
	}
	return s, nil
}

// linkType are the primitive types whose values are links (http.html#trules:
// uri, url, oid, uuid; canonical is a uri).
var linkType = map[string]bool{"uri": true, "url": true, "canonical": true, "oid": true, "uuid": true}

// reference rewrites one Reference.reference.
func (rw Rewriter) reference(ref string) (string, error) {
	if len(rw.Refused) > 0 {
		abs, ok := rw.absolute(ref)
		if rw.Refused[ref] && ref != rw.FullURL || ok && rw.Refused[abs] && abs != rw.FullURL {
			return "", rw.RefusedErr
		}
	}
	if to, ok := rw.IDs[ref]; ok {
		return to, nil
	}
	if to, ok := rw.relative(ref); ok {
		return to, nil
	}
	if to, ok, err := rw.versioned(ref); ok || err != nil {
		return to, err
	}
	if rw.Unresolved != nil && (strings.HasPrefix(ref, "urn:uuid:") || strings.HasPrefix(ref, "urn:oid:")) {
		return "", rw.Unresolved
	}
	local := ref
	if rw.Local != nil {
		local = rw.Local(ref)
	}
	if typ, query, cond := strings.Cut(local, "?"); cond && typ != "" && !strings.Contains(typ, "/") {
		if rw.Conditional != nil {
			return rw.Conditional(typ, query)
		}
		return ref, nil
	}
	return local, nil
}

// relative resolves a relative literal reference (Type/id) to the
// identity of the entry whose fullUrl it names once made absolute
// (bundle.html#references: the base of the holding entry's fullUrl when
// that is a RESTful URL, else the server's base); ok is false for any
// other reference, and for one that names no fullUrl of IDs.
func (rw Rewriter) relative(ref string) (string, bool) {
	if len(rw.IDs) == 0 { // a write of its own: no entry to name
		return "", false
	}
	abs, ok := rw.absolute(ref)
	if !ok {
		return "", false
	}
	to, ok := rw.IDs[abs]
	return to, ok
}

// absolute returns the absolute URL a relative literal reference (Type/id)
// makes as bundle.html#references says: on the base of the holding entry's
// fullUrl when that is a RESTful URL, else on the server's base; ok is
// false for any other reference, and without a base.
func (rw Rewriter) absolute(ref string) (string, bool) {
	typ, id, ok := strings.Cut(ref, "/")
	if !ok || !resourceType(typ) || !ValidID(id) {
		return "", false
	}
	base := rw.Base
	if strings.HasPrefix(rw.FullURL, "http://") || strings.HasPrefix(rw.FullURL, "https://") {
		if base, _, _, ok = RESTfulURL(rw.FullURL); !ok {
			return "", false // a URL, but not [base]/Type/id: no base to resolve against
		}
	}
	if base == "" {
		return "", false
	}
	return strings.TrimRight(base, "/") + "/" + ref, true
}

// versioned resolves a version-specific reference to the entry whose
// fullUrl its versionless part names (bundle.html#references matches a
// version-specific reference by its URL without the version, and the
// version apart); ok is false for a reference naming no entry, and
// for every reference without Versioned (see there).
func (rw Rewriter) versioned(ref string) (to string, ok bool, err error) {
	const hist = "/_history/"
	i := strings.LastIndex(ref, hist)
	if rw.Versioned == nil || i < 0 {
		return "", false, nil
	}
	full, v := ref[:i], ref[i+len(hist):]
	if !ValidID(v) {
		return "", false, nil
	}
	var same bool
	if to, ok = rw.IDs[full]; ok {
		_, typ, id, restful := RESTfulURL(full)
		same = restful && to == typ+"/"+id
	} else if to, ok = rw.relative(full); ok {
		same = to == full
	}
	switch {
	case !ok:
		return "", false, nil
	case !same:
		return "", false, rw.Versioned
	}
	return to + hist + v, true, nil
}

// RESTfulURL splits a RESTful URL, http(s)://.../[base]/Type/id with Type
// an R4 resource type and id a FHIR id, into its base, type and id; ok is
// false for any other string (a urn:, a version-specific URL, a URL that
// does not end in Type/id).
func RESTfulURL(u string) (base, typ, id string, ok bool) {
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return "", "", "", false
	}
	rest, id, ok := cutLast(u)
	if !ok || !ValidID(id) {
		return "", "", "", false
	}
	base, typ, ok = cutLast(rest)
	if !ok || !resourceType(typ) || strings.HasSuffix(base, ":/") {
		return "", "", "", false
	}
	return base, typ, id, true
}

// cutLast cuts s around its last "/".
func cutLast(s string) (before, after string, ok bool) {
	i := strings.LastIndexByte(s, '/')
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+1:], true
}

// resourceType reports whether typ is an R4 resource type.
func resourceType(typ string) bool { return r4.ResourceNode(typ).Type() != "" }

// narrativeLinks are the attributes of the narrative that are links
// (http.html#trules: <a href=""> and <img src="">), by element.
var narrativeLinks = map[string]string{"a": "href", "img": "src"}

// narrative rewrites the href attributes of a elements and the src
// attributes of img elements of an XHTML div that name an entry's fullUrl.
// It reads the markup as XML does (XHTML attribute syntax: a name,
// optional whitespace, =, optional whitespace, a value in single or double
// quotes), so that text, comments and other attributes are never taken
// for a link, whatever they hold.
func (rw Rewriter) narrative(div string) string {
	if len(rw.IDs) == 0 {
		return div
	}
	var b strings.Builder
	last := 0
	for i := 0; i < len(div); {
		lt := strings.IndexByte(div[i:], '<')
		if lt < 0 {
			break
		}
		i += lt
		switch rest := div[i:]; {
		case strings.HasPrefix(rest, "<!--"):
			i = skipPast(div, i+4, "-->")
			continue
		case strings.HasPrefix(rest, "<![CDATA["):
			i = skipPast(div, i+9, "]]>")
			continue
		case strings.HasPrefix(rest, "<!"), strings.HasPrefix(rest, "<?"), strings.HasPrefix(rest, "</"):
			i = skipPast(div, i+2, ">")
			continue
		}
		name := xmlName(div[i+1:])
		link := narrativeLinks[name]
		j := i + 1 + len(name)
		for {
			j = skipSpace(div, j)
			attr := xmlName(div[j:])
			if attr == "" {
				break // the tag's end (> or />), or markup that is not an attribute
			}
			j = skipSpace(div, j+len(attr))
			if j >= len(div) || div[j] != '=' {
				break
			}
			j = skipSpace(div, j+1)
			if j >= len(div) || (div[j] != '"' && div[j] != '\'') {
				break
			}
			end := strings.IndexByte(div[j+1:], div[j])
			if end < 0 {
				break
			}
			from, to := j+1, j+1+end
			if attr == link {
				if id, ok := rw.IDs[div[from:to]]; ok {
					b.WriteString(div[last:from])
					b.WriteString(id)
					last = to
				}
			}
			j = to + 1
		}
		i = j
	}
	if last == 0 {
		return div
	}
	b.WriteString(div[last:])
	return b.String()
}

// skipPast returns the offset in s after the first end at or after i, or
// len(s).
func skipPast(s string, i int, end string) int {
	if k := strings.Index(s[i:], end); k >= 0 {
		return i + k + len(end)
	}
	return len(s)
}

// skipSpace returns the offset of the first byte at or after i in s that
// is not XML whitespace.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// xmlName returns the XML name (ASCII letters, digits, -, _, ., :; not
// starting with a digit, - or .) that s starts with, or "".
func xmlName(s string) string {
	n := 0
	for n < len(s) {
		c := s[n]
		letter := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':'
		if !letter && (n == 0 || !(c >= '0' && c <= '9' || c == '-' || c == '.')) {
			break
		}
		n++
	}
	return s[:n]
}
