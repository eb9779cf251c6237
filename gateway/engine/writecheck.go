package engine

import (
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// Checks of what a client writes that the R4 structure allows but the
// gateway refuses: ids that are dot-segments, and resources tagged as
// incomplete copies.

// writableID reports whether a client may write a resource at id: a FHIR
// id (datatypes.html#id) other than "." and "..", which R4's id pattern
// allows but which are dot-segments in a URL (RFC 3986 5.2.4): the
// resource's URL, Location and references to it would resolve elsewhere
// (Patient/.. to the FHIR base), and every client and proxy normalises
// them away.
func writableID(id string) bool {
	return fhirwire.ValidID(id) && id != "." && id != ".."
}

// errIDInvalid answers a write at an id that is not writableID, at expr.
func errIDInvalid(expr string) error {
	return outcome.New(outcome.Invalid, "value", "id-invalid", "the id is not one the gateway accepts: a FHIR id, "+
		"1 to 64 characters A-Z, a-z, 0-9, - and . (datatypes.html#id), other than . and .., which are "+
		"dot-segments in a URL (RFC 3986 5.2.4) and name no resource").At(expr)
}

// subsettedSystem and subsettedCode are the meta.tag the gateway puts on
// a resource it shaped by _summary or _elements (subset.go): an incomplete
// copy.
const (
	subsettedSystem = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
	subsettedCode   = "SUBSETTED"
)

// subsettedAt returns the index of doc's meta.tag that marks it an
// incomplete copy (SUBSETTED), or -1.
func subsettedAt(doc map[string]any) int {
	meta, _ := doc["meta"].(map[string]any)
	tags, _ := meta["tag"].([]any)
	for i, t := range tags {
		tag, _ := t.(map[string]any)
		if tag["system"] == subsettedSystem && tag["code"] == subsettedCode {
			return i
		}
	}
	return -1
}

// checkClientDoc checks a resource of typ a client sent to be stored (a
// create, update or Bundle entry; expr is where it is in the request, ""
// for the request body): a resource tagged SUBSETTED is an incomplete copy
// (search.html#summary: the tag is there "to ensure that the incomplete
// resource is not accidentally used to overwrite a complete resource"),
// and storing it would drop every element the copy left out, so it is
// refused; so is an id that is not writableID when checkID (a POST's id
// is ignored: http.html#create).
func checkClientDoc(doc map[string]any, typ, expr string, checkID bool) error {
	at := func(path string) string {
		if expr == "" {
			return typ + path
		}
		return nestedExpr(expr, typ, typ+path)
	}
	if i := subsettedAt(doc); i >= 0 {
		return outcome.New(outcome.Invalid, "business-rule", "resource-subsetted",
			"the resource is tagged SUBSETTED: it is an incomplete copy (a read or search with _summary or _elements), "+
				"and storing it would remove every element the copy left out; read the whole resource (without "+
				"_summary and _elements), change it, and send that").At(at(fmt.Sprintf(".meta.tag[%d]", i)))
	}
	if id, ok := doc["id"].(string); ok && checkID && !writableID(id) {
		return errIDInvalid(at(".id"))
	}
	return checkBundleType(doc, typ, at(".type"))
}

// checkBundleType refuses a Bundle (doc of typ) of a type not stored as a
// resource (storableBundleTypes), at expr, its type element.
func checkBundleType(doc map[string]any, typ, expr string) error {
	if typ != "Bundle" {
		return nil
	}
	if bt, _ := doc["type"].(string); !storableBundleTypes[bt] {
		return outcome.New(outcome.Unprocessable, "business-rule", "bundle-type-not-storable",
			fmt.Sprintf("a Bundle of type %s is not stored as a resource: only document, message and collection "+
				"Bundles are; to have a transaction or batch carried out, POST it to the FHIR base (/fhir), "+
				"not to /fhir/Bundle", bt)).At(expr)
	}
	return nil
}

// storableBundleTypes are the Bundle types a client may store as a
// resource (HAPI FHIR's default too): a transaction or batch posted to
// /fhir/Bundle by mistake was stored unprocessed, a 201 for writes that
// never happened (a conformance review); a search or history result, or
// a response, is an answer, not a record.
var storableBundleTypes = map[string]bool{"document": true, "message": true, "collection": true}

// errPatchSubsetted answers a patch of a stored resource tagged SUBSETTED
// (written from an incomplete copy before the gateway refused that): the
// patched version would keep the tag and claim to be incomplete.
func errPatchSubsetted(typ string, i int) error {
	return outcome.New(outcome.Invalid, "business-rule", "resource-subsetted",
		"the stored resource is tagged SUBSETTED: it was written from an incomplete copy (a read or search with "+
			"_summary or _elements), and a patch cannot change meta; update it instead with the whole resource, "+
			"without the tag").At(fmt.Sprintf("%s.meta.tag[%d]", typ, i))
}
