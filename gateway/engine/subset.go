package engine

import (
	"net/url"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// _summary and _elements (search.html#summary, #elements) shape what the
// engine returns, never what is stored: a read's resource and a search's
// matches (included resources stay whole). Every resource shaped so is
// tagged SUBSETTED, so nobody writes it back as if it were whole.
//
//	_summary=true   the elements R4 marks isSummary (schemas/r4.SummaryElements),
//	                below backbone elements too; data types whole
//	_summary=text   text, id, meta and the top-level mandatory elements
//	_summary=data   everything but text
//	_elements=a,b   the named top-level elements, with id, meta, the
//	                mandatory elements, implicitRules and modifierExtension;
//	                a choice element named by one of its JSON keys
//	                ("valueQuantity") is the element (value[x]), kept
//	                whichever type the resource has

// subsettedTag is the meta.tag of a subsetted resource.
var subsettedTag = map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
	"code": "SUBSETTED", "display": "subsetted"}

// MarkSubsetted adds to doc, a decoded resource, the meta.tag SUBSETTED
// (v3-ObservationValue) that says it is not the whole resource: whoever
// reads it knows elements were left out, and nobody writes it back as if
// it were whole.
func MarkSubsetted(doc map[string]any) {
	meta, _ := doc["meta"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		doc["meta"] = meta
	}
	tags, _ := meta["tag"].([]any)
	meta["tag"] = append(tags, subsettedTag)
}

// checkSubset checks that elements (the _elements) name elements of typ.
func (e *Engine) checkSubset(typ string, elements []string) error {
	for _, name := range elements {
		if _, ok := e.v.r4.Element(typ, name); !ok {
			return outcome.New(outcome.Invalid, "invalid", search.RuleValueInvalid,
				"_elements names an element that "+typ+" does not have").At("_elements")
		}
	}
	return nil
}

// subsetAll shapes the resources rs as q asks (copies; rs itself is left
// alone).
func (e *Engine) subsetAll(q *search.Query, rs []*store.Resource) []*store.Resource {
	if q.Summary == "" && q.Elements == nil {
		return rs
	}
	out := make([]*store.Resource, len(rs))
	for i, r := range rs {
		out[i] = e.subset(r, q.Summary, q.Elements)
	}
	return out
}

// Subset shapes a read's resource r as params' _summary and _elements ask
// (r itself when they ask for the whole resource). Returns an Invalid
// error for a bad value, naming the parameter.
func (e *Engine) Subset(r *store.Resource, params url.Values) (*store.Resource, error) {
	summary, elements, err := search.ParseSubset(r.Type, params)
	if err != nil {
		return nil, searchError(err)
	}
	if err := e.checkSubset(r.Type, elements); err != nil {
		return nil, err
	}
	if summary == "" && elements == nil {
		return r, nil
	}
	return e.subset(r, summary, elements), nil
}

// subset returns a copy of r shaped by summary or elements.
func (e *Engine) subset(r *store.Resource, summary string, elements []string) *store.Resource {
	doc, err := decodeJSON(r.Body)
	if err != nil || r.Deleted {
		return r
	}
	els := e.v.r4.Elements(r.Type)
	var keep func(name string) bool
	switch summary {
	case "data":
		keep = func(name string) bool { return name != "text" }
	case "text":
		keep = func(name string) bool {
			return name == "resourceType" || name == "id" || name == "meta" || name == "text" || required(els, name)
		}
	case "true":
		paths := r4.SummaryElements(r.Type)
		filterSummary(doc, "", paths, els, e.v.r4, r.Type)
		keep = func(string) bool { return true }
	default:
		// A JSON key of a choice names its element: the keys of the
		// resource are compared as elements below.
		named := make([]string, len(elements))
		for i, name := range elements {
			named[i] = elementOf(els, name)
		}
		keep = func(name string) bool {
			return name == "resourceType" || name == "id" || name == "meta" || name == "implicitRules" ||
				name == "modifierExtension" || slices.Contains(named, name) || required(els, name)
		}
	}
	for k := range doc {
		if !keep(elementOf(els, strings.TrimPrefix(k, "_"))) {
			delete(doc, k)
		}
	}
	MarkSubsetted(doc)
	body, err := fhirwire.Marshal(doc)
	if err != nil {
		return r
	}
	cp := *r
	cp.Body = body
	return &cp
}

// elementOf is the element name a JSON key of a resource stands for (the
// base name of a choice element: "valueQuantity" is "value").
func elementOf(els []r4.Element, key string) string {
	for _, el := range els {
		if el.Name == key {
			return key
		}
		if _, ok := choiceSuffix(key, el.Name); el.Choice && ok {
			return el.Name
		}
	}
	return key
}

// required reports whether the element name is mandatory (min >= 1).
func required(els []r4.Element, name string) bool {
	return slices.ContainsFunc(els, func(el r4.Element) bool { return el.Name == name && el.Required })
}

// filterSummary keeps in obj, an object at path prefix ("" for the
// resource, "component." inside a backbone element) of resource type typ,
// the elements paths lists (resourceType always), descending into backbone
// elements whose children paths lists.
func filterSummary(obj map[string]any, prefix string, paths []string, els []r4.Element, v *r4.Validator, typ string) {
	for k, val := range obj {
		if prefix == "" && k == "resourceType" {
			continue
		}
		name := elementOf(els, strings.TrimPrefix(k, "_"))
		path := prefix + name
		if !slices.Contains(paths, path) {
			delete(obj, k)
			continue
		}
		if !slices.ContainsFunc(paths, func(p string) bool { return strings.HasPrefix(p, path+".") }) {
			continue // a data type, or a backbone element kept whole
		}
		var sub []r4.Element
		steps := strings.Split(path, ".")
		if el, ok := v.Element(typ, steps...); ok && len(el.Types) == 1 && strings.Contains(el.Types[0], ".") {
			sub = backboneElements(v, typ, steps, paths)
		}
		items := []any{val}
		if arr, ok := val.([]any); ok {
			items = arr
		}
		for _, it := range items {
			if m, ok := it.(map[string]any); ok {
				filterSummary(m, path+".", paths, sub, v, typ)
			}
		}
	}
}

// backboneElements are the elements of the backbone element at path of
// typ that summary (typ's SummaryElements) lists, and its id and
// extensions, looked up one by one (r4 knows them by path).
func backboneElements(v *r4.Validator, typ string, path, summary []string) []r4.Element {
	var out []r4.Element
	for _, name := range []string{"id", "extension", "modifierExtension"} {
		if el, ok := v.Element(typ, append(slices.Clone(path), name)...); ok {
			out = append(out, el)
		}
	}
	prefix := strings.Join(path, ".") + "."
	for _, p := range summary {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || strings.Contains(rest, ".") {
			continue
		}
		if el, ok := v.Element(typ, append(slices.Clone(path), rest)...); ok {
			out = append(out, el)
		}
	}
	return out
}
