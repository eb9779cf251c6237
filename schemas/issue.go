package schemas

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Issue is one problem in a native record.
//
// Rule is a stable rule id: "json-syntax", "json-duplicate-key", "json-depth",
// "json-empty", "json-not-object", "json-number", "json-too-large",
// "json-control-character",
// "kind-unknown", or
// "schema.<keyword>" (see the Rule* constants).
//
// Code is the FHIR issue-type code: "structure" (syntax, type, unknown or
// forbidden property), "required", "value" (range, pattern, format, length,
// item count, uniqueness), "code-invalid" (enum), "too-costly" (a document
// too large to validate) or "not-found" (unknown kind, as the gateway answers
// it).
//
// Pointer is an RFC 6901 JSON pointer to the offending element. For a missing
// required property it is the pointer of the missing property (for example
// "/patient/id"); for an unknown or duplicate property it is the pointer of
// that property; "" is the whole document.
//
// Expression is the same location in FHIRPath-like dotted form over the
// native JSON ("patient.id", "items[2].score"); "" is the whole document.
//
// Message is a short human-readable explanation. It never contains a value
// from the document.
type Issue struct {
	Rule       string
	Code       string
	Pointer    string
	Expression string
	Message    string

	path []pathElem // the location Pointer and Expression render
}

// Rule ids reported by this package. The list is part of the gateway's
// public contract (docs/records.md); ids are never renamed.
const (
	RuleJSONSyntax           = "json-syntax"            // not well-formed JSON, or not UTF-8
	RuleJSONDuplicateKey     = "json-duplicate-key"     // a key appears twice in one object
	RuleJSONDepth            = "json-depth"             // nesting deeper than MaxDepth
	RuleJSONEmpty            = "json-empty"             // empty or whitespace-only body
	RuleJSONNotObject        = "json-not-object"        // top-level value is not an object
	RuleJSONNumber           = "json-number"            // number a stored FHIR decimal cannot hold exactly (r4.ExactDecimal)
	RuleJSONTooLarge         = "json-too-large"         // more than MaxValues values
	RuleJSONControlCharacter = "json-control-character" // a string holds a control character (C0 other than tab, LF, CR; DEL; C1)
	RuleKindUnknown          = "kind-unknown"           // no schema for the requested kind
	RuleIssuesCut            = "issues-cut"             // more issues than a response lists: the last says how many more

	RuleRequired           = "schema.required"            // a required property is missing
	RuleAdditionalProperty = "schema.additional-property" // a property the schema does not define
	RuleFalse              = "schema.false"               // a known property that is not allowed here
	RuleType               = "schema.type"                // wrong JSON type
	RuleEnum               = "schema.enum"                // not one of the allowed codes
	RuleConst              = "schema.const"               // not the required constant
	RuleFormat             = "schema.format"              // not a valid date-time, date or URI
	RulePattern            = "schema.pattern"             // does not match the identifier pattern
	RuleRange              = "schema.range"               // number below minimum or above maximum
	RuleLength             = "schema.length"              // string too short or too long
	RuleItemsCount         = "schema.items-count"         // array has too few or too many items
	RuleUniqueItems        = "schema.unique-items"        // array item repeats an earlier one
	RuleEmptyObject        = "schema.empty-object"        // an object with no properties where one needs some
	RuleKindMismatch       = "schema.kind-mismatch"       // a valid record of another kind, sent as this one
)

// RuleInfo describes one rule id of this package.
type RuleInfo struct{ ID, Description string }

// Rules lists the rule ids this package reports, with what each checks,
// for the gateway's catalogue of rules (the validation-rule CodeSystem,
// the console's rules page): every id above, once (the test checks).
func Rules() []RuleInfo {
	return []RuleInfo{
		{RuleJSONEmpty, "A record is a non-empty JSON document."},
		{RuleJSONSyntax, "A record is well-formed JSON in UTF-8: no byte order mark, no \\u escape of half a UTF-16 surrogate pair, nothing after the top-level object."},
		{RuleJSONNotObject, "A record is a JSON object."},
		{RuleJSONDuplicateKey, "No key appears twice in one object."},
		{RuleJSONDepth, "Objects and arrays nest no deeper than a record ever needs."},
		{RuleJSONNumber, "A number is one a FHIR decimal stored by the gateway holds exactly (0, or 1e-300 to 1e300 in magnitude, at most the digits of a 64-bit float) and at most 100 characters long."},
		{RuleJSONTooLarge, "A record has no more JSON values than any valid record comes close to."},
		{RuleJSONControlCharacter, "A string holds no control character other than tab, line feed and carriage return: none of U+0000-U+001F (FHIR strings cannot carry them), U+007F (DEL) or U+0080-U+009F (C1)."},
		{RuleKindUnknown, "The record kind is one the gateway maps (assessment, vitals, infusion, adverse-event, session)."},
		{RuleIssuesCut, "Not a rule of the record: the last issue of a response that found more than it lists (at most 50), saying how many more there are."},
		{RuleRequired, "A property the record's schema requires is present."},
		{RuleAdditionalProperty, "Every property is one the record's schema defines."},
		{RuleFalse, "A property the schema knows is not used where it is not allowed."},
		{RuleType, "A value has the JSON type its schema gives."},
		{RuleEnum, "A coded value is one of the schema's codes."},
		{RuleConst, "A value is the constant its schema requires."},
		{RuleFormat, "A date-time, date or URI is valid (a date-time with its time zone)."},
		{RulePattern, "An identifier matches its schema's pattern."},
		{RuleRange, "A number lies within its schema's minimum and maximum."},
		{RuleLength, "A string is neither shorter nor longer than its schema allows."},
		{RuleItemsCount, "An array has neither fewer nor more items than its schema allows."},
		{RuleUniqueItems, "No array item repeats an earlier one where the schema requires unique items."},
		{RuleEmptyObject, "An optional object is left out rather than sent empty ({}): an empty patient name or indication says nothing."},
		{RuleKindMismatch, "Not a rule of the record: the first issue of a record that its kind's schema refuses and another kind's accepts, naming that kind; or of a FHIR resource (it has resourceType) sent as a record, pointing to the FHIR API."},
	}
}

// FHIR issue-type codes used in Issue.Code.
const (
	CodeStructure   = "structure"
	CodeRequired    = "required"
	CodeValue       = "value"
	CodeCodeInvalid = "code-invalid"
	CodeNotFound    = "not-found"
	CodeTooCostly   = "too-costly"
)

// MaxIssues is the maximum number of issues in a ValidationError.
const MaxIssues = 50

// ValidationError is returned when a record is not valid. Issues is never
// empty, sorted by pointer then rule, and holds at most MaxIssues entries.
type ValidationError struct {
	Kind   string
	Issues []Issue
}

// Error returns "<kind>: N issues" ("1 issue" for one). It never contains a
// value from the document; a kind that is not one of Kinds() (which came
// from the caller, not from the schemas) is shown as "unknown kind".
func (e *ValidationError) Error() string {
	kind := "unknown kind"
	for _, k := range kinds {
		if e.Kind == k {
			kind = k
		}
	}
	if len(e.Issues) == 1 {
		return kind + ": 1 issue"
	}
	return fmt.Sprintf("%s: %d issues", kind, len(e.Issues))
}

// pathElem is one step of a location in a JSON document: an object key or an
// array index.
type pathElem struct {
	key     string
	index   int
	isIndex bool
}

func keyElem(k string) pathElem { return pathElem{key: k} }
func indexElem(i int) pathElem  { return pathElem{index: i, isIndex: true} }

var (
	pointerEscaper    = strings.NewReplacer("~", "~0", "/", "~1")
	expressionEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`")
)

// pointer renders a path as an RFC 6901 JSON pointer.
func pointer(path []pathElem) string {
	var b strings.Builder
	for _, e := range path {
		b.WriteByte('/')
		if e.isIndex {
			b.WriteString(strconv.Itoa(e.index))
			continue
		}
		b.WriteString(pointerEscaper.Replace(e.key))
	}
	return b.String()
}

// expression renders a path in FHIRPath-like form: keys joined by '.',
// indices as [n], keys that are not plain identifiers in backticks.
func expression(path []pathElem) string {
	var b strings.Builder
	for i, e := range path {
		if e.isIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
			continue
		}
		if i > 0 {
			b.WriteByte('.')
		}
		if isIdentifier(e.key) {
			b.WriteString(e.key)
		} else {
			b.WriteByte('`')
			b.WriteString(expressionEscaper.Replace(e.key))
			b.WriteByte('`')
		}
	}
	return b.String()
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && r >= '0' && r <= '9':
		default:
			return false
		}
	}
	return true
}

func newIssue(rule, code string, path []pathElem, msg string) Issue {
	return Issue{Rule: rule, Code: code, Pointer: pointer(path), Expression: expression(path), Message: msg,
		path: slices.Clone(path)}
}

// normalize sorts issues by pointer (array indices numerically), then rule,
// then message; drops exact duplicates of (pointer, rule); and caps the list
// at MaxIssues, the last of which then says how many more there were
// (RuleIssuesCut).
func normalize(issues []Issue) []Issue {
	sort.SliceStable(issues, func(i, j int) bool {
		// The kind the record is (RuleKindMismatch) is said first.
		if mi, mj := issues[i].Rule == RuleKindMismatch, issues[j].Rule == RuleKindMismatch; mi != mj {
			return mi
		}
		if c := comparePointers(issues[i].Pointer, issues[j].Pointer); c != 0 {
			return c < 0
		}
		if issues[i].Rule != issues[j].Rule {
			return issues[i].Rule < issues[j].Rule
		}
		return issues[i].Message < issues[j].Message
	})
	out := issues[:0]
	for i, is := range issues {
		if i > 0 && is.Pointer == issues[i-1].Pointer && is.Rule == issues[i-1].Rule {
			continue
		}
		out = append(out, is)
	}
	if len(out) > MaxIssues {
		cut := len(out) - (MaxIssues - 1)
		out = append(out[:MaxIssues-1], newIssue(RuleIssuesCut, CodeTooCostly, nil,
			fmt.Sprintf("%d more issues were found and are not listed (a response lists at most %d): fix these and "+
				"send the record again to see the rest", cut, MaxIssues)))
	}
	return out
}

// comparePointers orders JSON pointers token by token; tokens that are both
// decimal numbers compare numerically, so "/a/2" sorts before "/a/10", and a
// pointer sorts before the pointers below it.
func comparePointers(a, b string) int {
	if a == b {
		return 0
	}
	at, bt := splitPointer(a), splitPointer(b)
	for i := 0; i < len(at) && i < len(bt); i++ {
		if at[i] == bt[i] {
			continue
		}
		an, aerr := strconv.Atoi(at[i])
		bn, berr := strconv.Atoi(bt[i])
		if aerr == nil && berr == nil && an != bn {
			if an < bn {
				return -1
			}
			return 1
		}
		return strings.Compare(at[i], bt[i])
	}
	switch {
	case len(at) < len(bt):
		return -1
	case len(at) > len(bt):
		return 1
	}
	return 0
}

func splitPointer(p string) []string {
	if p == "" {
		return nil
	}
	return strings.Split(p[1:], "/")
}
