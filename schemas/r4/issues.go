package r4

import (
	"strconv"
	"strings"
)

// Severity of an Issue.
type Severity string

// Issue severities.
const (
	SeverityError   Severity = "error"
	SeverityWarning Severity = "warning"
)

// Issue is one problem found in a document.
//
// Rule is a stable identifier: "json-syntax", "json-duplicate-key",
// "json-depth", "json-empty", "resource-type-unknown",
// "resource-type-mismatch", "element-unknown", "element-type",
// "element-array", "element-required", "choice-multiple", "value-empty",
// "primitive-format", "decimal-out-of-range", "binding-required", "reference-format",
// "xhtml-unsafe", "attachment-size", "too-costly", or the key of a FHIR
// invariant such as "ext-1", "bdl-7" or "ref-1".
//
// Most issues are errors. Warnings flag what the HL7 reference validator
// tolerates but is dubious: a decimal written as a JSON string, a urn:uuid
// reference with a malformed UUID, a required-bound code given only as
// extensions. ValidateDecoded makes the first an error.
//
// Code is the FHIR issue-type code ("structure", "required", "value",
// "code-invalid", "invariant", "security", "too-costly").
//
// Expression is the FHIRPath of the element, with array indexes, e.g.
// "Observation.component[1].valueQuantity.value". Inside a nested resource
// (contained, Bundle.entry.resource, Parameters.parameter.resource) the path
// names the resource type with ofType, e.g.
// "Bundle.entry[3].resource.ofType(Observation).status". Primitive
// extension siblings ("_birthDate") are reported under the element's own
// name. Problems found before the resource type is known (JSON syntax)
// have an empty Expression and give the byte offset in Message.
//
// Message is human-readable text. It never quotes a value from the
// document.
type Issue struct {
	Severity   Severity
	Code       string
	Rule       string
	Expression string
	Message    string
}

// Result of a validation.
type Result struct {
	// ResourceType is the resourceType of the document, when it could be
	// read and is a known R4 resource type.
	ResourceType string
	// Issues lists the problems found, in document order, capped at
	// MaxIssues (then a final "too-costly" issue says that more were
	// suppressed).
	Issues []Issue
}

// Valid reports whether the result holds no error-severity issue.
func (r *Result) Valid() bool {
	for i := range r.Issues {
		if r.Issues[i].Severity == SeverityError {
			return false
		}
	}
	return true
}

// MaxIssues is the number of issues reported before validation stops.
const MaxIssues = 100

// seg is one step of the FHIRPath of the element being validated.
type seg struct {
	name   string // element name (empty for a pure ofType step)
	index  int32  // array index, or -1
	ofType string // nested resource type: renders ".ofType(T)"
}

// pathString renders the FHIRPath of the path stack.
func pathString(root string, path []seg) string {
	var b strings.Builder
	b.WriteString(root)
	for _, s := range path {
		if s.ofType != "" {
			b.WriteString(".ofType(")
			b.WriteString(s.ofType)
			b.WriteByte(')')
			continue
		}
		b.WriteByte('.')
		b.WriteString(s.name)
		if s.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(int(s.index)))
			b.WriteByte(']')
		}
	}
	return b.String()
}

// ruleCode gives the FHIR issue-type code of each built-in rule.
var ruleCode = map[string]string{
	"json-syntax":            "structure",
	"json-duplicate-key":     "structure",
	"json-depth":             "too-costly",
	"json-empty":             "structure",
	"resource-type-unknown":  "code-invalid",
	"resource-type-mismatch": "structure",
	"element-unknown":        "structure",
	"element-type":           "structure",
	"element-array":          "structure",
	"element-required":       "required",
	"choice-multiple":        "structure",
	"value-empty":            "value",
	"primitive-format":       "value",
	"decimal-out-of-range":   "value",
	"binding-required":       "code-invalid",
	"reference-format":       "value",
	"xhtml-unsafe":           "security",
	"attachment-size":        "value",
	"too-costly":             "too-costly",
}
