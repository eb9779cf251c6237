package schemas

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/xeipuuv/gojsonschema"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// summaryErrors are gojsonschema error types that only say that a combinator
// failed; the specific errors of the failing branch are reported alongside
// them, so they are dropped.
var summaryErrors = map[string]bool{
	"number_any_of":  true,
	"number_one_of":  true,
	"number_all_of":  true,
	"condition_then": true,
	"condition_else": true,
}

// patternInfo describes a pattern used in the schemas in words. Patterns
// that implement a format (instants, dates) are reported as schema.format so
// that a malformed instant gives the same rule whichever check caught it.
type patternInfo struct {
	rule string
	what string // completes "<field> must be ..."
}

const (
	instantWhat = "an RFC 3339 date-time with seconds and a time zone (YYYY-MM-DDThh:mm:ss followed by Z or an offset ±hh:mm between -14:00 and +14:00), in the years 0001-9999" +
		", with at most 9 fraction digits and no leap second (:60): RFC 3339 allows both, the gateway's clock cannot hold them"
	dateWhat = "a calendar date YYYY-MM-DD in the years 0001-9999"

	// mrnPattern: an MRN value neither starts nor ends with white space,
	// ASCII or Unicode (no-break and other spaces; JSON Schema patterns
	// disagree on what \s covers, so they are listed).
	mrnPattern = "^[^" + spaces + "]([\\s\\S]*[^" + spaces + "])?$"
	spaces     = "\\s\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
	// notBlankPattern is text with a visible character: not only white
	// space (Go's \S, the pattern's engine here, is ASCII only: a no-break
	// or ideographic space passed it), nor invisible characters (DEL and
	// the C1 controls, the soft hyphen, zero-width spaces and joiners,
	// direction marks and overrides, word joiners, variation selectors, the
	// Hangul fillers, the Braille blank, the tag characters and the other
	// default-ignorable ones beyond the BMP), which a chart would show as a
	// blank name.
	notBlankPattern = "^$|[^" + spaces + invisible + "]"
	invisible       = "\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e" +
		"\u2060-\u206f\u3164\ufe00-\ufe0f\uffa0\u2800\U000E0000-\U000E0FFF\U0001BCA0-\U0001BCA3\U0001D173-\U0001D17A"

	// year is 0001-9999, the years a FHIR date can hold.
	year = `(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})`
)

var patterns = map[string]patternInfo{
	`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`: {RulePattern, "an identifier of 1-64 characters (letters, digits, '.', '_', '-'), starting with a letter or digit"},
	`^[a-z0-9][a-z0-9-]{0,62}$`:         {RulePattern, "a system name of 1-63 characters (lowercase letters, digits, '-'), starting with a letter or digit"},
	`^[A-Za-z0-9._-]{1,64}$`:            {RulePattern, "a version label of 1-64 characters (letters, digits, '.', '_', '-')"},
	`^` + year + `-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9]|[+-]14:00)$`: {RuleFormat, instantWhat},
	`^` + year + `-[0-9]{2}-[0-9]{2}$`:                                        {RuleFormat, dateWhat},
	`^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`: {RuleFormat, "a urn:uuid: URI with a lowercase UUID (urn:uuid:xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)"},
	`^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$`:                                     {RuleFormat, "a urn:oid: URI with an OID (digits separated by dots, such as urn:oid:2.16.840.1.113883)"},
	notBlankPattern:                                                           {RulePattern, "text that is not blank (not only spaces, tabs, line breaks or invisible characters such as a zero-width space)"},
	`^\S+$`:                                                                   {RuleFormat, "an absolute URI without spaces (FHIR's uri holds no whitespace)"},
	mrnPattern:                                                                {RulePattern, "an identifier value without spaces at its start or end (a padded number is not the hospital's number)"},
}

var formats = map[string]string{
	"date-time": instantWhat,
	"date":      dateWhat,
	"uri":       "an absolute URI (with a scheme such as https: or urn:)",
}

// forbidden explains properties that a schema sets to false: known
// properties that are not allowed in this place or for this instrument.
//
// Messages here and below describe conditions in words rather than with the
// codes involved: a message must not repeat anything the document contains,
// and the codes are document values too.
var forbidden = map[string]string{
	"recordId":   "recordId is not allowed here: the record's id is source.recordId",
	"sessionId":  "sessionId is not allowed on a record nested in a session: the enclosing session is implied",
	"score":      "score is not allowed for the C-SSRS screener: its items are yes/no questions, answered with answer",
	"answer":     "answer is only allowed for the C-SSRS screener: the items of scored instruments have a score",
	"difficulty": "difficulty is not allowed for this instrument: it is the Patient Health Questionnaire's functional-difficulty question",
}

// conditionallyRequired explains properties that are required only in some
// cases (if/then in the schemas).
var conditionallyRequired = map[string]string{
	"statusReason":  "statusReason is required when the infusion was stopped early or not done",
	"infusionStart": "infusionStart is required when the infusion was given, even if stopped early",
	"timepointText": "timepointText is required when the time point is not one of the standard time points",
	"eventText":     "eventText is required when the event is not one of the coded events",
}

// convertErrors turns gojsonschema errors into issues. Locations come from
// the error's context, which only ever contains property names defined by
// the schema and array indices; the offending value is never quoted (a
// date's is read to tell an impossible day, root's instrument to give its
// bound: see instrumentBound).
func convertErrors(errs []gojsonschema.ResultError, root any) []Issue {
	issues := make([]Issue, 0, len(errs))
	var summaries []Issue
	for _, e := range errs {
		is := convertError(e, root)
		if summaryErrors[e.Type()] {
			summaries = append(summaries, is)
			continue
		}
		issues = append(issues, is)
	}
	if len(issues) == 0 {
		// Cannot happen with gojsonschema 1.2 (a failing branch always
		// reports its own errors), but never return an empty list.
		issues = summaries
	}
	return issues
}

// instrumentBound is the bound of the record's instrument on the item
// score or total at path in root (the decoded document), if path is one
// and the instrument is known (mapping.InstrumentLimits: the bounds of the clinical
// rules). An assessment's schema bounds them by the highest of any
// instrument; beyond that bound the message gives the record's own
// instrument's bound (without naming it: a code is document text), so
// that the sender does not fix the value to the schema's bound and then
// again to the instrument's.
func instrumentBound(root any, path []pathElem) (int, bool) {
	n := len(path)
	var at []pathElem // the assessment's path
	score := false
	switch {
	case n >= 3 && path[n-1].key == "score" && !path[n-1].isIndex && path[n-2].isIndex && path[n-3].key == "items":
		at, score = path[:n-3], true
	case n >= 1 && path[n-1].key == "total" && !path[n-1].isIndex:
		at = path[:n-1]
	default:
		return 0, false
	}
	v := root
	for _, e := range at {
		switch {
		case e.isIndex:
			arr, ok := v.([]any)
			if !ok || e.index < 0 || e.index >= len(arr) {
				return 0, false
			}
			v = arr[e.index]
		default:
			obj, ok := v.(map[string]any)
			if !ok {
				return 0, false
			}
			v = obj[e.key]
		}
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return 0, false
	}
	in, _ := obj["instrument"].(string)
	maxScore, maxTotal, ok := mapping.InstrumentLimits(in)
	bound := maxTotal
	if score {
		bound = maxScore
	}
	return bound, ok && bound > 0
}

// impossibleDay reports whether v is a date or date-time whose date part is
// well-formed (YYYY-MM-DD) with a day its month does not have (2026-02-30,
// 2026-04-31) or a month 00 or past 12.
func impossibleDay(v any) bool {
	s, ok := v.(string)
	if !ok || len(s) < 10 || s[4] != '-' || s[7] != '-' || len(s) > 10 && s[10] != 'T' {
		return false
	}
	y, err1 := strconv.Atoi(s[0:4])
	m, err2 := strconv.Atoi(s[5:7])
	d, err3 := strconv.Atoi(s[8:10])
	if err1 != nil || err2 != nil || err3 != nil || y < 1 {
		return false
	}
	if m < 1 || m > 12 {
		return true
	}
	return d < 1 || d > time.Date(y, time.Month(m)+1, 0, 0, 0, 0, 0, time.UTC).Day()
}

func convertError(e gojsonschema.ResultError, root any) Issue {
	path := contextPath(e.Context())
	d := e.Details()
	label := labelOf(path)
	switch e.Type() {
	case "required":
		prop := detailString(d, "property")
		path = append(path, keyElem(prop))
		msg, ok := conditionallyRequired[prop]
		switch {
		case ok:
		case prop == "recordId" && len(path) >= 2 && path[len(path)-2].isIndex:
			msg = "recordId is required on a record nested in a session: the record's own id in the source system"
		default:
			msg = labelOf(path) + " is required"
		}
		return newIssue(RuleRequired, CodeRequired, path, msg)

	case "additional_property_not_allowed":
		where := "at the top level of the record"
		if len(path) > 0 {
			where = "in " + label
		}
		// The property name is the sender's text and may be data: the
		// issue is located at the object that holds it, and never names it
		// (Set.shield adds the properties the object may have).
		return newIssue(RuleAdditionalProperty, CodeStructure, path,
			"a property not allowed "+where+": the schema of this record kind does not define it (its name is not repeated: a name may be data)")

	case "false":
		name := ""
		if n := len(path); n > 0 && !path[n-1].isIndex {
			name = path[n-1].key
		}
		msg, ok := forbidden[name]
		if !ok {
			msg = label + " is not allowed here"
		}
		return newIssue(RuleFalse, CodeStructure, path, msg)

	case "invalid_type":
		return newIssue(RuleType, CodeStructure, path, fmt.Sprintf("%s must be %s, not %s",
			label, withArticle(detailString(d, "expected")), withArticle(detailString(d, "given"))))

	case "enum":
		// The allowed codes are the schema's constants, the same whatever
		// was sent: listing them says nothing of the value (which is never
		// repeated), and tells the sender what to send (Cel, [degF]).
		return newIssue(RuleEnum, CodeCodeInvalid, path,
			label+" is not one of the allowed codes for this field: "+detailString(d, "allowed"))

	case "const":
		return newIssue(RuleConst, CodeValue, path, label+" does not have the value the schema requires")

	case "pattern":
		p := detailString(d, "pattern")
		if info, ok := patterns[p]; ok {
			if info.what == instantWhat {
				return newIssue(info.rule, CodeValue, path, instantMessage(label, e.Value()))
			}
			return newIssue(info.rule, CodeValue, path, label+" must be "+info.what)
		}
		return newIssue(RulePattern, CodeValue, path, label+" must match the pattern "+p)

	case "format":
		f := detailString(d, "format")
		if (f == "date-time" || f == "date") && impossibleDay(e.Value()) {
			// Well-formed, but the day does not exist: say that, not the
			// format it already has.
			return newIssue(RuleFormat, CodeValue, path, label+" is not a real calendar date: that month has no such day")
		}
		if f == "date-time" {
			return newIssue(RuleFormat, CodeValue, path, instantMessage(label, e.Value()))
		}
		what, ok := formats[f]
		if !ok {
			what = "in the format " + f
		}
		return newIssue(RuleFormat, CodeValue, path, label+" must be "+what)

	case "string_gte":
		return newIssue(RuleLength, CodeValue, path, label+" must be at least "+plural(detailString(d, "min"), "character"))
	case "string_lte":
		return newIssue(RuleLength, CodeValue, path, label+" must be at most "+plural(detailString(d, "max"), "character"))

	case "number_gte":
		return newIssue(RuleRange, CodeValue, path, label+" must be at least "+detailString(d, "min"))
	case "number_gt":
		return newIssue(RuleRange, CodeValue, path, label+" must be greater than "+detailString(d, "min"))
	case "number_lte":
		if bound, ok := instrumentBound(root, path); ok {
			return newIssue(RuleRange, CodeValue, path, fmt.Sprintf("%s must be at most %d: the record's instrument allows 0-%d", label, bound, bound))
		}
		return newIssue(RuleRange, CodeValue, path, label+" must be at most "+detailString(d, "max"))
	case "number_lt":
		return newIssue(RuleRange, CodeValue, path, label+" must be less than "+detailString(d, "max"))

	case "array_min_items":
		return newIssue(RuleItemsCount, CodeValue, path, label+" must have at least "+plural(detailString(d, "min"), "item"))
	case "array_max_items":
		return newIssue(RuleItemsCount, CodeValue, path, label+" must have at most "+plural(detailString(d, "max"), "item"))

	case "array_min_properties":
		return newIssue(RuleEmptyObject, CodeValue, path, label+" must not be empty: leave it out instead")

	case "unique":
		first := detailString(d, "i")
		if j, err := strconv.Atoi(detailString(d, "j")); err == nil {
			path = append(path, indexElem(j))
		}
		return newIssue(RuleUniqueItems, CodeValue, path,
			"the items of "+label+" must be unique; this one repeats item ["+first+"]")
	}
	// Keywords the schemas do not use (multipleOf, contains, ...).
	rule := "schema." + strings.ReplaceAll(e.Type(), "_", "-")
	return newIssue(rule, CodeValue, path, label+" does not satisfy the schema keyword "+strings.ReplaceAll(e.Type(), "_", "-"))
}

// contextPath converts a gojsonschema context "(root).a.0.b" into a path.
// Context elements are property names defined by the schemas (none of which
// contains '.' or is a number) and array indices.
func contextPath(ctx *gojsonschema.JsonContext) []pathElem {
	if ctx == nil {
		return nil
	}
	const sep = "\x00"
	parts := strings.Split(ctx.String(sep), sep)
	path := make([]pathElem, 0, len(parts))
	for i, p := range parts {
		if i == 0 && p == "(root)" {
			continue
		}
		if n, err := strconv.Atoi(p); err == nil && n >= 0 && p == strconv.Itoa(n) {
			path = append(path, indexElem(n))
		} else {
			path = append(path, keyElem(p))
		}
	}
	return path
}

// labelOf names a location for a message: its expression, or "the record"
// for the document itself.
func labelOf(path []pathElem) string {
	if len(path) == 0 {
		return "the record"
	}
	return expression(path)
}

// detailString renders an error detail that comes from the schema (limits,
// allowed codes, patterns, types, schema property names).
func detailString(d gojsonschema.ErrorDetails, key string) string {
	switch v := d[key].(type) {
	case nil:
		return ""
	case string:
		return v
	case *big.Float:
		return v.Text('g', -1)
	case *big.Rat:
		return v.RatString()
	case *regexp.Regexp:
		return v.String()
	case int:
		return strconv.Itoa(v)
	default:
		return fmt.Sprint(v)
	}
}

func plural(n, noun string) string {
	if n == "1" {
		return n + " " + noun
	}
	return n + " " + noun + "s"
}

func withArticle(typ string) string {
	switch typ {
	case "":
		return "of another type"
	case "array", "object", "integer":
		return "an " + typ
	case "null":
		return "null"
	}
	return "a " + typ
}

// instantMistakes name the common mistakes in an instant, most specific
// first: each a shape the value has, and what is wrong with it (never the
// value itself).
//
// Each shape is anchored on a date at the start and a time after it, so
// that what it names is the instant's part it names: a day-first date
// (10-03-2026) ends in "-2026", which an unanchored "offset without a
// colon" took for an offset and told the sender to add a colon to (p45
// F1); it has no date YYYY-MM-DD, and gets the format.
var instantMistakes = []struct {
	shape *regexp.Regexp
	what  string
}{
	{regexp.MustCompile(`^` + isoDate + `$`), "has a date but no time: an instant needs the time of day and a time zone"},
	{regexp.MustCompile(`^` + isoDate + ` \d`), "separates the date and the time with a space: use T"},
	{regexp.MustCompile(`^` + isoDate + `(t|T` + clock + `z$)`), "has a lowercase t or z: use T and Z"},
	{regexp.MustCompile(`^` + isoDate + `T\d{2}:\d{2}([Z+-]|$)`), "has no seconds: write the time as hh:mm:ss"},
	{regexp.MustCompile(`^` + isoDate + `T` + clock + `$`), "has no time zone: add Z or an offset such as -05:00 (without one the instant is ambiguous)"},
	{regexp.MustCompile(`^` + isoDate + `T` + clock + `[+-]\d{4}$`), "writes its offset without a colon: use \u00b1hh:mm, such as -05:00"},
	{regexp.MustCompile(`^` + isoDate + `T\d{2}:\d{2}:\d{2}\.\d{10,}`), "has more than 9 fraction digits"},
	{regexp.MustCompile(`^` + isoDate + `T\d{2}:\d{2}:60`), "has a leap second (:60), which the gateway's clock cannot hold"},
	{regexp.MustCompile(`^` + isoDate + `T` + clock + `([+-](1[5-9]|[2-9]\d):\d{2}|[+-]14:(0[1-9]|[1-5]\d))$`), "has an offset beyond \u00b114:00"},
}

// isoDate and clock are an instant's date and its time of day (seconds
// and a fraction), as instantMistakes read them.
const (
	isoDate = `\d{4}-\d{2}-\d{2}`
	clock   = `\d{2}:\d{2}:\d{2}(\.\d+)?`
)

// instantMessage is the message of a malformed instant in field label:
// what is wrong with value when it is a common mistake, and the format.
func instantMessage(label string, value any) string {
	if v, ok := value.(string); ok {
		for _, m := range instantMistakes {
			if m.shape.MatchString(v) {
				return label + " " + m.what + " (an instant is YYYY-MM-DDThh:mm:ss followed by Z or an offset \u00b1hh:mm)"
			}
		}
	}
	return label + " must be " + instantWhat
}
