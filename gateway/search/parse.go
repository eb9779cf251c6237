package search

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Page sizes (_count).
const (
	// DefaultCount is the page size without _count.
	DefaultCount = 50
	// MaxCount is the largest page size; a larger _count is taken as it.
	MaxCount = 1000
)

// Parse parses the parameters of a search of resourceType (the query string
// or form body, decoded by net/url). With lenient (Prefer:
// handling=lenient) unknown and unsupported parameters are dropped silently;
// use ParseLenient to learn which. Returns an *Error for a client mistake:
// rule search-type-unknown, search-param-unknown, search-param-unsupported,
// search-value-invalid, search-modifier-unsupported,
// search-chain-unsupported (a chain or _has the gateway cannot run),
// search-include-unsupported or
// search-sort-unsupported, or search-limit-exceeded beyond the default
// Limits; in lenient mode search-param-unknown, search-param-unsupported,
// search-include-unsupported and search-sort-unsupported drop their
// parameter, and so does an unsupported modifier of a result parameter
// (_count:x, _include:x), while a known search parameter with an unsupported modifier or chain
// stays an error (dropping it would widen the search). An error names (Param) and quotes
// only parameters and modifiers the gateway knows (ShownName): a name the
// client made up may be a value, or PHI, put where a name belongs.
//
// Control parameters: _count (default 50, above 1000 taken as 1000, 0 means
// only the total: SummaryCount), _offset (the paging cursor, >= 0), _sort
// (comma list of _id, _lastUpdated and date parameters, "-" = descending),
// _summary (true, text, data, count or false: Query.Summary), _elements (top-level
// element names: Query.Elements), _total (none | estimate | accurate; the total
// is counted unless none), _include and _revinclude (Type:param[:Target],
// :iterate tolerated), _format and _pretty (ignored here); each at most
// once, except the includes. The other FHIR parameters the gateway lacks
// (_tag, _profile, _text, ...) are unsupported.
//
// Search parameters: each occurrence is a Clause (occurrences are ANDed);
// its value splits into ORed Values at unescaped commas, and token and
// quantity values into parts at unescaped "|"; \, \| \$ \\ are unescaped.
// An empty value (name=) is ignored, as search.html says; a value that
// lists only empty values (name=,) is search-value-invalid, and so is a
// string (or token :text) value that normalises to nothing (name=-), since
// either would match everything. Clauses come in the
// order of sorted parameter names, then occurrence. A chained parameter
// (subject.name, subject:Patient.name) or _has is one Clause per occurrence
// with Chain or Has set (see chain.go).
func Parse(resourceType string, params url.Values, lenient bool) (*Query, error) {
	q, _, err := parse(resourceType, params, lenient, false, Limits{})
	if err != nil {
		return nil, err
	}
	return q, nil
}

// ParseLenient parses like Parse in lenient mode and also returns the keys
// (with modifiers, sorted, as the client sent them) of the parameters it
// ignored, for the self link; an OperationOutcome warning names only those
// ShownName allows. Its errors are Parse's.
func ParseLenient(resourceType string, params url.Values) (*Query, []string, error) {
	q, ignored, err := parse(resourceType, params, true, false, Limits{})
	if err != nil {
		return nil, nil, err
	}
	return q, ignored, nil
}

// parse runs a parser within limits; it returns a nil error interface on
// success.
func parse(rt string, params url.Values, lenient, conditional bool, limits Limits) (*Query, []string, error) {
	if !isResourceType(rt) {
		return nil, nil, &Error{Rule: RuleTypeUnknown, Message: "the resource type is not an R4 resource type"}
	}
	ps := &parser{rt: rt, lenient: lenient, conditional: conditional, base: limits.Base,
		q: &Query{Type: rt, Count: DefaultCount, Total: true}}
	if err := ps.checkLimits(params, limits.withDefaults()); err != nil {
		return nil, nil, err
	}
	for _, key := range slices.Sorted(maps.Keys(params)) {
		nc, ns, ni, nr := len(ps.q.Clauses), len(ps.q.Sort), len(ps.q.Includes), len(ps.q.RevIncludes)
		err := ps.param(key, params[key])
		if err == nil {
			continue
		}
		if !lenient || !ignorable(key, err.Rule) {
			return nil, nil, err
		}
		// Drop whatever the key added before it failed.
		ps.q.Clauses, ps.q.Sort = ps.q.Clauses[:nc], ps.q.Sort[:ns]
		ps.q.Includes, ps.q.RevIncludes = ps.q.Includes[:ni], ps.q.RevIncludes[:nr]
		ps.ignored = append(ps.ignored, key)
	}
	if a := ps.q.After; a != nil && !a.fits(ps.q) {
		return nil, nil, ps.errorf("_cursor", RuleValueInvalid,
			"_cursor is the position of a next link of another search (another _sort or type): keep the link's _sort, or start again from the first page")
	}
	return ps.q, ps.ignored, nil
}

// parser holds the state of one Parse.
type parser struct {
	rt                   string
	lenient, conditional bool
	base                 string // Limits.Base
	q                    *Query
	ignored              []string
}

// errorf builds an *Error about the parameter key. msg must quote no part
// of key except through ps.named or ps.shown.
func (ps *parser) errorf(key, rule, format string, args ...any) *Error {
	return &Error{Param: ps.shown(key), Rule: rule, Message: fmt.Sprintf(format, args...)}
}

// unknown is the error about key, a parameter that is not a search
// parameter of the searched type: it does not repeat the name (ShownName
// knows none for it) but lists the type's parameters (KnownParams).
// Conditional criteria take no result parameters: only the search
// parameters are listed there.
func (ps *parser) unknown(key string) *Error {
	known := KnownParams(ps.rt)
	if ps.conditional {
		known = searchParams(ps.rt)
	}
	return ps.errorf(key, RuleParamUnknown, "a parameter is not a search parameter of %s (its name is not repeated): %s",
		ps.rt, known)
}

// shown is ShownName for the searched type.
func (ps *parser) shown(key string) string { return ShownName(ps.rt, key) }

// named is the parameter key for a message: `parameter "name"` when it may
// be shown, else "this parameter".
func (ps *parser) named(key string) string {
	if n := ps.shown(key); n != "" {
		return fmt.Sprintf("parameter %q", n)
	}
	return "this parameter"
}

// ShownName returns what of a parameter key (name[:modifier][.chain]) an
// answer may repeat: the name if it is a parameter the gateway knows for
// resourceType (one of its search parameters, a result parameter, a FHIR
// parameter the gateway does not implement), with the modifier if that is
// a FHIR modifier or a resource type; "" for a name the client made up.
func ShownName(resourceType, key string) string {
	if strings.HasPrefix(key, "_has:") || strings.Contains(key, ".") {
		return shownLinked(resourceType, key)
	}
	name, mod, hasMod := strings.Cut(key, ":")
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name, mod, hasMod = name[:i], "", false // a chain: the first link only
	}
	if !knownName(resourceType, name) {
		return ""
	}
	if mod, _, _ = strings.Cut(mod, "."); hasMod && knownModifier(mod) {
		return name + ":" + mod
	}
	return name
}

// knownName reports whether name is a parameter the gateway knows for rt.
func knownName(rt, name string) bool {
	if _, ok := Lookup(rt, name); ok {
		return true
	}
	switch name {
	case "_count", "_offset", "_cursor", "_sort", "_summary", "_total", "_include", "_revinclude", "_format", "_pretty", "_has", "_elements",
		"_since", "_at":
		return true
	}
	// A parameter FHIR R4 defines for rt (clinical-status of Condition)
	// is a name the client did not make up, even if the gateway does not
	// support it.
	return unsupportedParam(name) || R4Definition(rt, name) != ""
}

// knownModifier reports whether mod is a FHIR search modifier (or a
// resource type, as a reference's modifier).
func knownModifier(mod string) bool {
	switch mod {
	case "missing", "exact", "contains", "text", "not", "above", "below", "in", "not-in", "of-type",
		"identifier", "iterate", "recurse", "code-text", "text-advanced":
		return true
	}
	return isResourceType(mod)
}

// unsupportedParam reports whether name is a FHIR parameter for all
// resources, or a special one, that the gateway does not implement.
func unsupportedParam(name string) bool {
	switch name {
	case "_contained", "_containedType", "_content", "_filter", "_list",
		"_profile", "_query", "_security", "_source", "_tag", "_text", "_type":
		return true
	}
	return false
}

// param parses all occurrences of one parameter key.
func (ps *parser) param(key string, vals []string) *Error {
	name, mod, _ := strings.Cut(key, ":")
	if name == "_has" {
		return ps.has(key, vals)
	}
	if ps.conditional && strings.HasPrefix(name, "_") && name != "_id" && name != "_lastUpdated" {
		return ps.errorf(key, RuleParamUnsupported, "%s is not allowed in conditional criteria", ps.named(key))
	}
	switch name {
	case "_format", "_pretty":
		return nil // the HTTP layer's business
	case "_count", "_offset", "_cursor", "_sort", "_summary", "_total", "_elements":
		if mod != "" {
			return ps.errorf(key, RuleModifierUnsupported, "%s takes no modifier", ps.named(name))
		}
		if len(vals) > 1 {
			return ps.errorf(key, RuleValueInvalid, "%s is given more than once", ps.named(key))
		}
		v := ""
		if len(vals) == 1 {
			v = vals[0]
		}
		return ps.control(key, name, v)
	case "_include", "_revinclude":
		// In lenient mode a bad include drops only itself, not its siblings.
		ignored := false
		for _, v := range vals {
			err := ps.include(key, mod, name == "_revinclude", v)
			switch {
			case err == nil:
			case ps.lenient && ignorable(key, err.Rule):
				ignored = true
			default:
				return err
			}
		}
		if ignored {
			ps.ignored = append(ps.ignored, key)
		}
		return nil
	}
	if unsupportedParam(name) {
		return ps.errorf(key, RuleParamUnsupported, "%s is not supported", ps.named(name))
	}
	if strings.Contains(key, ".") {
		return ps.chain(key, vals)
	}
	p, ok := Lookup(ps.rt, name)
	if !ok {
		if R4Definition(ps.rt, name) != "" {
			return ps.errorf(key, RuleParamUnsupported, "%s is a search parameter FHIR R4 defines for %s that the gateway does not support (its CapabilityStatement lists those it does)",
				ps.named(name), ps.rt)
		}
		return ps.unknown(key)
	}
	if mod != "missing" && !modifierAllowed(p, mod) {
		m := "this modifier"
		if knownModifier(mod) {
			m = fmt.Sprintf("modifier %q", mod)
		}
		return ps.errorf(key, RuleModifierUnsupported, "%s is not supported for %s parameter %q", m, p.Type, p.Name)
	}
	for _, raw := range vals {
		if raw == "" {
			continue
		}
		c := Clause{Param: p.Name, Type: p.Type, Modifier: mod}
		if mod == "missing" {
			if raw != "true" && raw != "false" {
				return ps.errorf(key, RuleValueInvalid, "the value of %s must be %s", ps.named(key), valueFormat(p.Type, mod))
			}
			b := raw == "true"
			c.Missing = &b
			ps.q.Clauses = append(ps.q.Clauses, c)
			continue
		}
		for _, piece := range splitEscaped(raw, ',') {
			if piece == "" {
				continue
			}
			v, ok := parseValue(p, mod, piece, ps.base)
			if !ok && p.Type == TypeDate && PlusAsSpace(piece) {
				return ps.errorf(key, RuleValueInvalid, "a value of %s holds a space where its time zone's + was: %s",
					ps.named(key), PlusAdvice)
			}
			if !ok {
				return ps.errorf(key, RuleValueInvalid, "a value of %s is not a valid %s", ps.named(key), valueFormat(p.Type, mod))
			}
			if foldsToNothing(p, mod, v) {
				return ps.errorf(key, RuleValueInvalid, "a value of %s has no letters or digits to match (punctuation, "+
					"symbols and invisible characters are not compared)%s", ps.named(key), exactHint(p))
			}
			c.Values = append(c.Values, v)
		}
		if len(c.Values) == 0 {
			// "family=," is not "family=": it lists values, all empty.
			// Dropping it would widen the search.
			return ps.errorf(key, RuleValueInvalid, "the value of %s lists only empty values (between commas); "+
				"give at least one, or leave the parameter out", ps.named(key))
		}
		ps.q.Clauses = append(ps.q.Clauses, c)
	}
	return nil
}

// foldsToNothing reports whether v, a value of p with modifier mod, is
// compared after Normalize (a string without modifier or with :contains, a
// token's :text) and normalises to "": a value of only punctuation,
// symbols or invisible characters ("-", "*", ZWSP) would then be a prefix
// and a substring of every indexed string and match them all.
func foldsToNothing(p Param, mod string, v Value) bool {
	switch {
	case p.Type == TypeString && (mod == "" || mod == "contains"),
		p.Type == TypeToken && mod == "text":
		return Normalize(v.Str) == ""
	}
	return false
}

// exactHint is the advice to match a value of p as written, where :exact
// can.
func exactHint(p Param) string {
	if p.Type == TypeString {
		return "; use the :exact modifier to match it as written"
	}
	return ""
}

// control parses a result parameter given once.
// MaxPaging bounds what NonNegative returns: a larger _count is taken
// as MaxCount anyway, and no result has as many matches as a larger
// _offset skips.
const MaxPaging = 1 << 40

// NonNegative parses a paging parameter's value (_count, _offset): an
// integer of at least 0, optionally with a leading +. A value too large
// for an int is a valid one, taken as MaxPaging, as is any value above
// it (ok false only for what is not such an integer).
func NonNegative(v string) (n int, ok bool) {
	n, err := strconv.Atoi(v)
	var ne *strconv.NumError
	switch {
	case errors.As(err, &ne) && ne.Err == strconv.ErrRange && v != "" && v[0] != '-':
		return MaxPaging, true
	case err != nil || n < 0:
		return 0, false
	}
	return min(n, MaxPaging), true
}

func (ps *parser) control(key, name, v string) *Error {
	if v == "" {
		return nil // an empty parameter is ignored
	}
	switch name {
	case "_count":
		n, ok := NonNegative(v)
		if !ok {
			return ps.errorf(key, RuleValueInvalid, "_count must be a non-negative integer")
		}
		ps.q.Count = min(n, MaxCount)
		if n == 0 {
			ps.q.SummaryCount = true
		}
	case "_offset":
		n, ok := NonNegative(v)
		if !ok {
			return ps.errorf(key, RuleValueInvalid, "_offset must be a non-negative integer")
		}
		ps.q.Offset = n
	case "_cursor":
		c, err := ParseCursor(v)
		if err != nil {
			return ps.errorf(key, RuleValueInvalid, "_cursor must be the value a next link of the gateway's gave (%v)", err)
		}
		ps.q.After = &c
	case "_summary":
		switch v {
		case "count":
			ps.q.SummaryCount = true
		case "true", "text", "data":
			ps.q.Summary = v
		case "false":
		default:
			return ps.errorf(key, RuleValueInvalid, "_summary must be true, text, data, count or false")
		}
		if ps.q.Summary != "" && ps.q.Elements != nil {
			return ps.errorf(key, RuleValueInvalid, "give _summary or _elements, not both")
		}
	case "_elements":
		for _, el := range strings.Split(v, ",") {
			el = strings.TrimSpace(el)
			if t, rest, ok := strings.Cut(el, "."); ok && t == ps.rt {
				el = rest
			}
			if el == "" || !isElementName(el) {
				return ps.errorf(key, RuleValueInvalid, "_elements lists top-level element names of %s (name, or %s.name)", ps.rt, ps.rt)
			}
			ps.q.Elements = append(ps.q.Elements, el)
		}
		if ps.q.Summary != "" {
			return ps.errorf(key, RuleValueInvalid, "give _summary or _elements, not both")
		}
	case "_total":
		switch v {
		case "none":
			ps.q.Total = false
		case "estimate", "accurate":
			ps.q.Total = true
		default:
			return ps.errorf(key, RuleValueInvalid, "_total must be none, estimate or accurate")
		}
	case "_sort":
		return ps.sort(key, v)
	}
	return nil
}

// isElementName reports whether s is an element name (letters and digits,
// starting with a letter).
func isElementName(s string) bool {
	for i, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// ParseSubset reads the _summary (true, text, data or false) and _elements
// parameters of a read of resourceType; other parameters are ignored.
// Returns an *Error (search-value-invalid) for a bad value.
func ParseSubset(resourceType string, params url.Values) (summary string, elements []string, err error) {
	ps := &parser{rt: resourceType, q: &Query{Type: resourceType}}
	for _, key := range []string{"_elements", "_summary"} {
		vals := params[key]
		if len(vals) > 1 {
			return "", nil, ps.errorf(key, RuleValueInvalid, "%s is given more than once", ps.named(key))
		}
		if len(vals) == 1 {
			if perr := ps.control(key, key, vals[0]); perr != nil {
				return "", nil, perr
			}
		}
	}
	if ps.q.SummaryCount {
		return "", nil, ps.errorf("_summary", RuleValueInvalid, "_summary=count is for searches; a read takes true, text, data or false")
	}
	return ps.q.Summary, ps.q.Elements, nil
}

// sort parses _sort.
func (ps *parser) sort(key, v string) *Error {
	for item := range strings.SplitSeq(v, ",") {
		desc := strings.HasPrefix(item, "-")
		name := strings.TrimPrefix(item, "-")
		if name == "" {
			return ps.errorf(key, RuleValueInvalid, "_sort has an empty item")
		}
		p, ok := Lookup(ps.rt, name)
		if !ok {
			return ps.errorf(key, RuleParamUnknown, "_sort names a parameter unknown for %s; it sorts %s by %s",
				ps.rt, ps.rt, sortableParams(ps.rt))
		}
		if p.Type != TypeDate && name != "_id" {
			return ps.errorf(key, RuleSortUnsupported, "_sort supports only _id, _lastUpdated and the date parameters of %s", ps.rt)
		}
		if slices.ContainsFunc(ps.q.Sort, func(k SortKey) bool { return k.Param == name }) {
			continue
		}
		ps.q.Sort = append(ps.q.Sort, SortKey{Param: name, Descending: desc})
	}
	return nil
}

// include parses one _include or _revinclude value.
func (ps *parser) include(key, mod string, rev bool, v string) *Error {
	iterate := mod == "iterate" || mod == "recurse"
	if mod != "" && !iterate {
		return ps.errorf(key, RuleModifierUnsupported, "%s supports only the :iterate modifier", ps.named(key))
	}
	parts := strings.Split(v, ":")
	if v == "*" || len(parts) >= 2 && parts[1] == "*" {
		return ps.errorf(key, RuleIncludeUnsupported, "a wildcard in %s is not supported", ps.named(key))
	}
	if len(parts) < 2 || len(parts) > 3 || !isResourceType(parts[0]) {
		return ps.errorf(key, RuleValueInvalid, "the value of %s must be SourceType:parameter[:TargetType]", ps.named(key))
	}
	inc := Include{SourceType: parts[0], Param: parts[1], Iterate: iterate}
	if len(parts) == 3 {
		inc.TargetType = parts[2]
	}
	// Without :iterate an _include starts from the searched type: say so
	// before judging the parameter against another type (Patient:subject
	// on an Observation search is the wrong source, not a missing
	// parameter of Patient).
	if !iterate && !rev && inc.SourceType != ps.rt {
		return ps.errorf(key, RuleValueInvalid, "without :iterate, the source type of _include must be the searched "+
			"type %s, not %s: use %s:<parameter> (its reference parameters are %s), or _include:iterate to include "+
			"from the resources already included", ps.rt, inc.SourceType, ps.rt, referenceParams(ps.rt))
	}
	p, ok := Lookup(inc.SourceType, inc.Param)
	if !ok {
		return ps.errorf(key, RuleParamUnknown, "%s names a parameter unknown for %s; the reference parameters of %s are %s",
			ps.named(key), inc.SourceType, inc.SourceType, referenceParams(inc.SourceType))
	}
	if p.Type != TypeReference {
		return ps.errorf(key, RuleIncludeUnsupported, "%s needs a reference parameter", ps.named(key))
	}
	if inc.TargetType != "" && (!isResourceType(inc.TargetType) ||
		len(p.Targets) > 0 && !slices.Contains(p.Targets, inc.TargetType)) {
		return ps.errorf(key, RuleValueInvalid, "%s names a target type the parameter cannot point to", ps.named(key))
	}
	if !iterate && rev && (inc.TargetType != "" && inc.TargetType != ps.rt || !pointsTo(p, ps.rt)) {
		return ps.errorf(key, RuleValueInvalid, "_revinclude names a parameter that cannot point to %s", ps.rt)
	}
	list := &ps.q.Includes
	if rev {
		list = &ps.q.RevIncludes
	}
	if !slices.Contains(*list, inc) {
		*list = append(*list, inc)
	}
	return nil
}
