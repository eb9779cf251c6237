package r4

import (
	"bytes"
	"maps"
	"slices"
	"strings"
)

// value validates one (non-array, non-null) value.
func (w *walker) value(e *elemDef, a *altDef, v int32) {
	switch {
	case a.prim != pNone:
		w.primitive(a.prim, v, e.vs)
	case a.resource:
		w.nested(v, e.name == "contained")
	default:
		w.object(a.def, v)
		if e.vs != nil && !w.full {
			w.codingBinding(a.typeName, e.vs, v)
		}
		if e.targets != nil && a.typeName == "Reference" && !w.full && w.nodes[v].kind == kObject {
			w.referenceTarget(e.targets, v)
		}
	}
}

// nested validates a resource held in a Resource-typed element.
func (w *walker) nested(v int32, contained bool) {
	n := &w.nodes[v]
	if n.kind != kObject {
		w.errorf("element-type", "a resource must be a JSON object")
		return
	}
	if n.count == 0 {
		w.errorf("value-empty", "an object must not be empty")
		return
	}
	rt := w.member(v, "resourceType")
	var def *typeDef
	switch {
	case rt < 0:
		w.errorf("element-required", "the nested resource has no resourceType")
	case w.nodes[rt].kind != kString:
		w.errorf("element-type", "resourceType must be a JSON string")
	default:
		if def = w.s.resources[string(w.str(rt))]; def == nil {
			w.errorf("resource-type-unknown", w.s.unknownTypeMessage(w.str(rt)))
		}
	}
	if def == nil {
		w.dupsWithin(v)
		return
	}
	w.path = append(w.path, seg{ofType: def.name, index: -1})
	w.resource(def, v, contained)
	w.pop()
}

// resource validates a resource object; contained resources share the
// reference context of their container.
func (w *walker) resource(def *typeDef, v int32, contained bool) {
	if def.name == "Bundle" {
		w.bundles++
		defer func() { w.bundles-- }()
	}
	if contained && len(w.res) > 0 {
		c := w.res[len(w.res)-1]
		prev := c.cur
		c.cur = w.containedRules(v)
		w.object(def, v)
		c.cur = prev
		return
	}
	w.pushCtx()
	w.object(def, v)
	w.popCtx()
}

// decimalRangeMessage explains the rule decimal-out-of-range.
const decimalRangeMessage = "the decimal cannot be stored and searched exactly: the gateway keeps decimals as IEEE 754 " +
	"double precision numbers, so a decimal must be 0 or between 1e-300 and 1e300 in magnitude and have no more " +
	"significant digits than a double keeps (15 always fit)"

// primitive validates a primitive value node against its type.
func (w *walker) primitive(p prim, v int32, vs *valueSet) {
	n := &w.nodes[v]
	switch p {
	case pBoolean:
		if n.kind != kTrue && n.kind != kFalse {
			w.errorf("element-type", "expected a JSON boolean")
		}
		return
	case pInteger, pUnsignedInt, pPositiveInt, pDecimal:
		if p == pDecimal && n.kind == kString {
			// The HL7 validator accepts a decimal written as a JSON string
			// (case cs-order-prop-r4), so this is a warning when the text
			// is a valid decimal, except for a document to be stored
			// (strict): FHIR JSON writes decimals as numbers, and a stored
			// string would be served as such and not indexed.
			switch s := w.str(v); {
			case isDecimal(s) && !ExactDecimal(s):
				w.errorf("decimal-out-of-range", decimalRangeMessage)
			case isDecimal(s) && w.strict:
				w.errorf("element-type", "a decimal must be a JSON number, not a string: write the value without quotes")
			case isDecimal(s):
				w.warnf("element-type", "a decimal should be a JSON number, not a string")
			default:
				w.errorf("element-type", "expected a JSON number for FHIR type decimal")
			}
			return
		}
		if n.kind != kNumber {
			w.errorf("element-type", "expected a JSON number for FHIR type "+primName(p))
			return
		}
		if !checkNumber(p, w.raw(v)) {
			w.errorf("primitive-format", "the number is not a valid FHIR "+primName(p))
		} else if p == pDecimal && !ExactDecimal(w.raw(v)) {
			w.errorf("decimal-out-of-range", decimalRangeMessage)
		}
		return
	}
	if n.kind != kString {
		w.errorf("element-type", "expected a JSON string for FHIR type "+primName(p))
		return
	}
	s := w.str(v)
	if len(s) == 0 {
		w.errorf("value-empty", article(primName(p))+" "+primName(p)+" must not be empty: leave the element out when it has no value")
		return
	}
	if p == pXHTML {
		w.xhtml(s)
		return
	}
	if !checkString(p, s) {
		w.errorf("primitive-format", "the value is not a valid FHIR "+primName(p)+": "+formatReason(p, s))
		return
	}
	if s[0] == '#' && (p == pCanonical || p == pURI) {
		w.localRef(s, false)
	}
	if vs != nil {
		if _, ok := vs.codes[string(s)]; !ok {
			w.errorf("binding-required", vs.notIn(s))
		}
	}
}

// codingBinding checks a Coding or CodeableConcept against a required
// value set: codings of the value set's systems must use its codes, and a
// CodeableConcept must carry at least one such coding (as the HL7
// validator requires: text alone does not satisfy a required binding).
func (w *walker) codingBinding(typeName string, vs *valueSet, v int32) {
	switch typeName {
	case "Coding":
		if !w.codingIn(vs, v) {
			w.errorf("binding-required", vs.notIn(w.codeOf(v)))
		}
	case "CodeableConcept":
		found := false
		top := len(w.path)
		w.push("coding")
		w.items(w.member(v, "coding"), func(i int, c int32) {
			w.path[top].index = int32(i)
			sys, _ := w.memberBytes(c, "system")
			if _, ok := vs.bySystem[string(sys)]; !ok {
				return
			}
			found = true
			if !w.codingIn(vs, c) {
				w.errorf("binding-required", vs.notIn(w.codeOf(c)))
			}
		})
		w.pop()
		if !found {
			w.errorf("binding-required", "no coding from the required value set "+vs.url)
		}
	}
}

// codeOf is the code of Coding node c (nil when it has none).
func (w *walker) codeOf(c int32) []byte {
	code, _ := w.memberBytes(c, "code")
	return code
}

// maxListedCodes bounds the codes a binding-required message lists.
const maxListedCodes = 25

// notIn is the message of a code (nil: none) not in vs: the value set,
// its codes when they are few, and the code that differs from the one
// sent only in case (codes are case-sensitive: "Male" for male). The code
// sent is never repeated (an EHR engineer's review: the message said
// what was wrong, not what to write).
func (vs *valueSet) notIn(code []byte) string {
	msg := "the code is not in the required value set " + vs.url
	if len(vs.codes) <= maxListedCodes {
		msg += "; its codes are " + strings.Join(slices.Sorted(maps.Keys(vs.codes)), ", ")
	}
	if len(code) > 0 {
		for c := range vs.codes {
			if strings.EqualFold(c, string(code)) {
				msg += "; codes are case-sensitive: the code differs from '" + c + "' only in case"
				break
			}
		}
	}
	return msg
}

// codingIn reports whether Coding node c is consistent with vs: a coding
// of one of its systems must have one of its codes; others are not checked.
func (w *walker) codingIn(vs *valueSet, c int32) bool {
	if w.nodes[c].kind != kObject {
		return true // reported elsewhere
	}
	sys, _ := w.memberBytes(c, "system")
	set, ok := vs.bySystem[string(sys)]
	if !ok {
		return true
	}
	code := w.member(c, "code")
	if code < 0 || w.nodes[code].kind != kString {
		return false
	}
	_, ok = set[string(w.str(code))]
	return ok
}

// hasPrefixFold reports whether s begins with prefix, ASCII case-insensitively.
func hasPrefixFold(s []byte, prefix string) bool {
	return len(s) >= len(prefix) && bytes.EqualFold(s[:len(prefix)], []byte(prefix))
}
