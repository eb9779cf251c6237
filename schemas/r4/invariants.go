package r4

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// invariant is a FHIR constraint (or a structural post-check) evaluated on
// every instance of the listed types, after the instance's elements have
// been validated.
type invariant struct {
	key   string   // FHIR constraint key, reported as the Issue rule
	types []string // resources, data types or backbone paths
	human string   // message for violations reported by fail
	check func(o *objView, inv *invariant)
}

// holds adapts a predicate: the invariant fails where pred is false.
func holds(pred func(o *objView) bool) func(*objView, *invariant) {
	return func(o *objView, inv *invariant) {
		if !pred(o) {
			o.fail(inv)
		}
	}
}

// holdsAt is holds for a predicate about one element of the object: the
// invariant fails at that element (Bundle.entry[2].fullUrl, not the entry).
func holdsAt(name string, pred func(o *objView) bool) func(*objView, *invariant) {
	return func(o *objView, inv *invariant) {
		if !pred(o) {
			o.failAt(inv.key, name, -1, inv.human)
		}
	}
}

var quantityTypes = []string{"Quantity", "Age", "Count", "Distance", "Duration", "MoneyQuantity", "SimpleQuantity"}

// invariants is the table of checked constraints of resources and data
// types in general, Bundles and a few more; keys are the FHIR R4
// constraint keys. It is read-only. The data types' and clinical
// resources' invariants are in invariants_clinical.go.
var invariants = []*invariant{
	{key: "reference-format", types: []string{"Reference"}, check: checkReference},
	{key: "ext-1", types: []string{"Extension"}, human: "an extension must have a value[x] or extensions: one of them, not both (ext-1)",
		check: holds(func(o *objView) bool { return o.has("extension") != o.has("value") })},
	{key: "qty-3", types: quantityTypes, human: "if a code for the unit is present, the system must also be present (qty-3)",
		check: holds(func(o *objView) bool { return !o.has("code") || o.has("system") })},
	{key: "cpt-2", types: []string{"ContactPoint"}, human: "a system is required if a value is provided (cpt-2)",
		check: holds(func(o *objView) bool { return !o.has("value") || o.has("system") })},
	{key: "att-1", types: []string{"Attachment"}, human: "if the attachment has data, it must have a contentType (att-1)",
		check: holds(func(o *objView) bool { return !o.has("data") || o.has("contentType") })},
	{key: "rat-1", types: []string{"Ratio"}, human: "numerator and denominator must both be present, or both absent with an extension present (rat-1)",
		check: holds(func(o *objView) bool {
			return o.has("numerator") == o.has("denominator") && (o.has("numerator") || o.has("extension"))
		})},
	{key: "per-1", types: []string{"Period"}, human: "if present, start must not be after end (per-1)", check: holds(periodOrdered)},
	{key: "obs-3", types: []string{"Observation.referenceRange"}, human: "a reference range must have at least a low, a high or a text (obs-3)",
		check: holds(func(o *objView) bool { return o.has("low") || o.has("high") || o.has("text") })},
	{key: "obs-6", types: []string{"Observation"}, human: "dataAbsentReason must only be present if value[x] is not (obs-6)",
		check: holds(func(o *objView) bool { return !o.has("dataAbsentReason") || !o.has("value") })},
	{key: "obs-7", types: []string{"Observation"}, human: "a component with the same code as the observation must not coexist with an observation value (obs-7)",
		check: checkObs7},
	{key: "pat-1", types: []string{"Patient.contact"}, human: "a contact must have a name, telecom, address or organization (pat-1)",
		check: holds(func(o *objView) bool {
			return o.has("name") || o.has("telecom") || o.has("address") || o.has("organization")
		})},
	{key: "que-12", types: []string{"Questionnaire.item"}, human: "if there is more than one enableWhen, enableBehavior must be specified (que-12)",
		check: holds(func(o *objView) bool { return o.count("enableWhen") <= 1 || o.has("enableBehavior") })},
	{key: "ras-2", types: []string{"RiskAssessment.prediction"}, human: "probabilityDecimal must be at most 100 (ras-2)",
		check: holds(func(o *objView) bool {
			v := o.choice("probability", "decimal")
			if v < 0 || o.w.nodes[v].kind != kNumber {
				return true
			}
			f, err := strconv.ParseFloat(string(o.w.raw(v)), 64)
			return err != nil || f <= 100
		})},
	{key: "bdl-5", types: []string{"Bundle.entry"}, human: "an entry must have a resource, a request or a response (bdl-5)",
		check: holds(func(o *objView) bool { return o.has("resource") || o.has("request") || o.has("response") })},
	{key: "bdl-8", types: []string{"Bundle.entry"}, human: "fullUrl must not be a version-specific URL (bdl-8)",
		check: holdsAt("fullUrl", func(o *objView) bool {
			v := o.val("fullUrl")
			return v < 0 || o.w.nodes[v].kind != kString || !bytes.Contains(o.w.str(v), []byte("/_history/"))
		})},
	{key: "reference-format", types: []string{"Bundle.entry"}, human: "fullUrl must be an absolute URL (or a urn:uuid / urn:oid)",
		check: holdsAt("fullUrl", func(o *objView) bool {
			v := o.val("fullUrl")
			return v < 0 || o.w.nodes[v].kind != kString || isAbsoluteURI(o.w.str(v))
		})},
	{key: "attachment-size", types: []string{"Attachment"}, human: "size does not match the size of the data",
		check: holds(func(o *objView) bool {
			d, n := o.val("data"), o.val("size")
			if d < 0 || n < 0 || o.w.nodes[d].kind != kString || o.w.nodes[n].kind != kNumber {
				return true
			}
			size, err := strconv.ParseInt(string(o.w.raw(n)), 10, 64)
			return err != nil || size == int64(base64Len(o.w.str(d)))
		})},
	// The Bundle-wide constraints report under their own keys (bdl-1...).
	{key: "bdl-*", types: []string{"Bundle"}, check: checkBundle},
}

// attachInvariants links the invariant tables to the schema types.
func attachInvariants(s *schema) error {
	for _, inv := range slices.Concat(invariants, dataTypeInvariants, clinicalInvariants) {
		for _, name := range inv.types {
			td := s.types[name]
			if td == nil {
				return fmt.Errorf("invariant %s: unknown type %s", inv.key, name)
			}
			td.checks = append(td.checks, inv)
		}
	}
	return nil
}

// objView gives invariants access to the elements of the object just
// validated.
type objView struct {
	w   *walker
	def *typeDef
	obj int32
	sl  []int32 // value node+1, extension node+1, choice alternative+1 per element
}

// has reports whether element name (a choice base name for value[x]) is
// present, with a value or with only extensions.
func (o *objView) has(name string) bool {
	i, ok := o.def.byName[name]
	return ok && (o.sl[i] != 0 || o.sl[len(o.def.elems)+i] != 0)
}

// val returns the value node of element name, or -1.
func (o *objView) val(name string) int32 {
	if i, ok := o.def.byName[name]; ok {
		return o.sl[i] - 1
	}
	return -1
}

// choice returns the value node of choice element name when its type is
// typeName, or -1.
func (o *objView) choice(name, typeName string) int32 {
	i, ok := o.def.byName[name]
	if !ok {
		return -1
	}
	alt := o.sl[2*len(o.def.elems)+i] - 1
	if alt < 0 || o.def.elems[i].alts[alt].typeName != typeName {
		return -1
	}
	return o.sl[i] - 1
}

// count returns the number of items of array element name.
func (o *objView) count(name string) int {
	v := o.val(name)
	if v < 0 || o.w.nodes[v].kind != kArray {
		return 0
	}
	return int(o.w.nodes[v].count)
}

// fail reports inv at the object's path.
func (o *objView) fail(inv *invariant) {
	o.w.errorf(inv.key, inv.human)
}

// failAt reports rule at the object's path extended by name[index].
func (o *objView) failAt(rule, name string, index int, msg string) {
	o.w.path = append(o.w.path, seg{name: name, index: int32(index)})
	o.w.errorf(rule, msg)
	o.w.pop()
}

// periodOrdered implements per-1 (start <= end) like the HL7 validator:
// values are compared at their common precision, and values that are
// equal there but differ in precision (the FHIRPath comparison is empty)
// fail the constraint.
func periodOrdered(o *objView) bool {
	s, e := o.val("start"), o.val("end")
	if s < 0 || e < 0 || o.w.nodes[s].kind != kString || o.w.nodes[e].kind != kString {
		return true
	}
	a := o.w.strCopy(s)
	ordered, ok := boundariesOrdered([]byte(a), o.w.str(e))
	return !ok || ordered
}

// checkObs7 implements obs-7: value.empty() or
// component.code.where(coding.intersect(%resource.code.coding).exists()).empty().
func checkObs7(o *objView, inv *invariant) {
	if !o.has("value") {
		return
	}
	w := o.w
	own := map[string]bool{}
	w.items(w.member(o.val("code"), "coding"), func(_ int, c int32) { own[w.codingKey(c)] = true })
	if len(own) == 0 {
		return
	}
	w.items(o.val("component"), func(i int, comp int32) {
		hit := false
		w.items(w.member(w.member(comp, "code"), "coding"), func(_ int, c int32) { hit = hit || own[w.codingKey(c)] })
		if hit {
			o.failAt(inv.key, "component", i, inv.human)
		}
	})
}

// codingKey renders the comparable content of a Coding for FHIRPath
// equality.
func (w *walker) codingKey(c int32) string {
	var b strings.Builder
	for _, f := range [...]string{"system", "version", "code", "display", "userSelected"} {
		if v := w.member(c, f); v >= 0 {
			b.Write(w.raw(v))
		}
		b.WriteByte(0)
	}
	return b.String()
}

// checkBundle implements the Bundle-level constraints bdl-1, 2, 3, 4, 7, 9,
// 10, 11 and 12.
func checkBundle(o *objView, _ *invariant) {
	w := o.w
	typ := ""
	if v := o.val("type"); v >= 0 && w.nodes[v].kind == kString {
		typ = w.strCopy(v)
	}
	if !bundleTypes[typ] {
		// Missing, malformed or not a Bundle type (binding-required says
		// so): the rules that depend on the type would blame the entries
		// (a beginner's review: "transacton" got one bdl-3 per entry).
		return
	}
	if o.has("total") && typ != "searchset" && typ != "history" {
		w.errorAt("total", "bdl-1", "total is only allowed in a search or history Bundle (bdl-1)")
	}
	needRequest := typ == "batch" || typ == "transaction" || typ == "history"
	needResponse := typ == "batch-response" || typ == "transaction-response" || typ == "history"
	entries := o.val("entry")
	seen := map[string]bool{}
	w.items(entries, func(i int, e int32) {
		if w.nodes[e].kind != kObject {
			return
		}
		if w.member(e, "search") >= 0 && typ != "searchset" {
			o.failAt("bdl-2", "entry", i, "entry.search is only allowed in a search Bundle (bdl-2)")
		}
		if (w.member(e, "request") >= 0) != needRequest {
			o.failAt("bdl-3", "entry", i, "entry.request is mandatory for batch, transaction and history Bundles and otherwise prohibited (bdl-3)")
		}
		if (w.member(e, "response") >= 0) != needResponse {
			o.failAt("bdl-4", "entry", i, "entry.response is mandatory for batch-response, transaction-response and history Bundles and otherwise prohibited (bdl-4)")
		}
		if typ == "history" {
			return
		}
		if full, ok := w.memberStr(e, "fullUrl"); ok {
			version, _ := w.memberStr(w.member(w.member(e, "resource"), "meta"), "versionId")
			key := full + "\x00" + version
			if seen[key] {
				o.failAt("bdl-7", "entry", i, "fullUrl must be unique in a Bundle, or entries with the same fullUrl must have different meta.versionId (bdl-7)")
			}
			seen[key] = true
		}
	})
	first := func() string {
		rt, _ := w.memberStr(w.member(w.first(entries), "resource"), "resourceType")
		return rt
	}
	switch typ {
	case "document":
		id := o.val("identifier")
		if w.member(id, "system") < 0 || w.member(id, "value") < 0 {
			w.errorf("bdl-9", "a document must have an identifier with a system and a value (bdl-9)")
		}
		if !o.has("timestamp") {
			w.errorf("bdl-10", "a document must have a date (timestamp) (bdl-10)")
		}
		if first() != "Composition" {
			w.errorf("bdl-11", "a document must have a Composition as the first resource (bdl-11)")
		}
	case "message":
		if first() != "MessageHeader" {
			w.errorf("bdl-12", "a message must have a MessageHeader as the first resource (bdl-12)")
		}
	}
}

// bundleTypes are the codes of Bundle.type (R4's bundle-type value set).
var bundleTypes = map[string]bool{"document": true, "message": true, "transaction": true, "transaction-response": true,
	"batch": true, "batch-response": true, "history": true, "searchset": true, "collection": true}

// first returns the first item of array node arr, or -1.
func (w *walker) first(arr int32) int32 {
	if arr < 0 || w.nodes[arr].kind != kArray || w.nodes[arr].count == 0 {
		return -1
	}
	return arr + 1
}
