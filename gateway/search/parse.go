package search

import (
	"fmt"
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
// search-chain-unsupported, search-include-unsupported or
// search-sort-unsupported; in lenient mode only search-value-invalid and
// search-type-unknown remain errors.
//
// Control parameters: _count (default 50, above 1000 taken as 1000, 0 means
// only the total: SummaryCount), _offset (the paging cursor, >= 0), _sort
// (comma list of _id, _lastUpdated and date parameters, "-" = descending),
// _summary (count or false), _total (none | estimate | accurate; the total
// is counted unless none), _include and _revinclude (Type:param[:Target],
// :iterate tolerated), _format and _pretty (ignored here); each at most
// once, except the includes. _elements and the other FHIR parameters the
// gateway lacks (_tag, _profile, _text, _has, ...) are unsupported.
//
// Search parameters: each occurrence is a Clause (occurrences are ANDed);
// its value splits into ORed Values at unescaped commas, and token and
// quantity values into parts at unescaped "|"; \, \| \$ \\ are unescaped.
// An empty value is ignored, as search.html says. Clauses come in the
// order of sorted parameter names, then occurrence. Chained parameters
// (subject.name, subject:Patient.name) are unsupported.
func Parse(resourceType string, params url.Values, lenient bool) (*Query, error) {
	q, _, err := parse(resourceType, params, lenient, false)
	if err != nil {
		return nil, err
	}
	return q, nil
}

// ParseLenient parses like Parse in lenient mode and also returns the names
// (keys, with modifiers, sorted) of the parameters it ignored, for the
// self link / an OperationOutcome warning. Its errors are Parse's.
func ParseLenient(resourceType string, params url.Values) (*Query, []string, error) {
	q, ignored, err := parse(resourceType, params, true, false)
	if err != nil {
		return nil, nil, err
	}
	return q, ignored, nil
}

// parse runs a parser; it returns a nil error interface on success.
func parse(rt string, params url.Values, lenient, conditional bool) (*Query, []string, error) {
	if !isResourceType(rt) {
		return nil, nil, &Error{Rule: RuleTypeUnknown, Message: "the resource type is not an R4 resource type"}
	}
	ps := &parser{rt: rt, lenient: lenient, conditional: conditional,
		q: &Query{Type: rt, Count: DefaultCount, Total: true}}
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		nc, ns, ni, nr := len(ps.q.Clauses), len(ps.q.Sort), len(ps.q.Includes), len(ps.q.RevIncludes)
		err := ps.param(key, params[key])
		if err == nil {
			continue
		}
		if !lenient || !ignorable(err.Rule) {
			return nil, nil, err
		}
		// Drop whatever the key added before it failed.
		ps.q.Clauses, ps.q.Sort = ps.q.Clauses[:nc], ps.q.Sort[:ns]
		ps.q.Includes, ps.q.RevIncludes = ps.q.Includes[:ni], ps.q.RevIncludes[:nr]
		ps.ignored = append(ps.ignored, shownName(key))
	}
	return ps.q, ps.ignored, nil
}

// parser holds the state of one Parse.
type parser struct {
	rt                   string
	lenient, conditional bool
	q                    *Query
	ignored              []string
}

// errorf builds an *Error. The parameter name comes from the client: a
// name that does not look like a search parameter (it might be a value,
// or PHI, put where a name belongs) is neither quoted in the message nor
// reported as Param.
func errorf(key, rule, format string, args ...any) *Error {
	for i, a := range args {
		if s, ok := a.(string); ok && s != "" && strings.Contains(key, s) && !safeName(s) {
			args[i] = "(not shown)"
		}
	}
	if !safeName(key) {
		key = ""
	}
	return &Error{Param: key, Rule: rule, Message: fmt.Sprintf(format, args...)}
}

// safeName reports whether s looks like a search parameter name (with
// modifier or chain): letters, digits and _ . : - only, at most 64.
func safeName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == ':' || c == '-') {
			return false
		}
	}
	return true
}

// unsupportedParam reports whether name is a FHIR parameter for all
// resources, or a special one, that the gateway does not implement.
func unsupportedParam(name string) bool {
	switch name {
	case "_contained", "_containedType", "_content", "_elements", "_filter", "_list",
		"_profile", "_query", "_security", "_source", "_tag", "_text", "_type":
		return true
	}
	return false
}

// param parses all occurrences of one parameter key.
func (ps *parser) param(key string, vals []string) *Error {
	name, mod, _ := strings.Cut(key, ":")
	if name == "_has" {
		return errorf(key, RuleChainUnsupported, "reverse chaining (_has) is not supported")
	}
	if ps.conditional && strings.HasPrefix(name, "_") && name != "_id" && name != "_lastUpdated" {
		return errorf(key, RuleParamUnsupported, "parameter %q is not allowed in conditional criteria", key)
	}
	switch name {
	case "_format", "_pretty":
		return nil // the HTTP layer's business
	case "_count", "_offset", "_sort", "_summary", "_total":
		if mod != "" {
			return errorf(key, RuleModifierUnsupported, "parameter %q takes no modifier", name)
		}
		if len(vals) > 1 {
			return errorf(key, RuleValueInvalid, "parameter %q is given more than once", key)
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
			case ps.lenient && ignorable(err.Rule):
				ignored = true
			default:
				return err
			}
		}
		if ignored {
			ps.ignored = append(ps.ignored, shownName(key))
		}
		return nil
	}
	if unsupportedParam(name) {
		return errorf(key, RuleParamUnsupported, "parameter %q is not supported", name)
	}
	if strings.Contains(key, ".") {
		return errorf(key, RuleChainUnsupported, "chained parameter %q is not supported", key)
	}
	p, ok := Lookup(ps.rt, name)
	if !ok {
		return errorf(key, RuleParamUnknown, "unknown search parameter %q for %s", name, ps.rt)
	}
	if mod != "missing" && !modifierAllowed(p, mod) {
		return errorf(key, RuleModifierUnsupported, "modifier %q is not supported for %s parameter %q", mod, p.Type, name)
	}
	for _, raw := range vals {
		if raw == "" {
			continue
		}
		c := Clause{Param: p.Name, Type: p.Type, Modifier: mod}
		if mod == "missing" {
			if raw != "true" && raw != "false" {
				return errorf(key, RuleValueInvalid, "the value of %q must be %s", key, valueFormat(p.Type, mod))
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
			v, ok := parseValue(p, mod, piece)
			if !ok {
				return errorf(key, RuleValueInvalid, "a value of %q is not a valid %s", key, valueFormat(p.Type, mod))
			}
			c.Values = append(c.Values, v)
		}
		if len(c.Values) > 0 {
			ps.q.Clauses = append(ps.q.Clauses, c)
		}
	}
	return nil
}

// control parses a result parameter given once.
func (ps *parser) control(key, name, v string) *Error {
	if v == "" {
		return nil // an empty parameter is ignored
	}
	switch name {
	case "_count":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(key, RuleValueInvalid, "_count must be a non-negative integer")
		}
		ps.q.Count = min(n, MaxCount)
		if n == 0 {
			ps.q.SummaryCount = true
		}
	case "_offset":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(key, RuleValueInvalid, "_offset must be a non-negative integer")
		}
		ps.q.Offset = n
	case "_summary":
		switch v {
		case "count":
			ps.q.SummaryCount = true
		case "false":
		default:
			return errorf(key, RuleValueInvalid, "_summary supports only count and false")
		}
	case "_total":
		switch v {
		case "none":
			ps.q.Total = false
		case "estimate", "accurate":
			ps.q.Total = true
		default:
			return errorf(key, RuleValueInvalid, "_total must be none, estimate or accurate")
		}
	case "_sort":
		return ps.sort(key, v)
	}
	return nil
}

// sort parses _sort.
func (ps *parser) sort(key, v string) *Error {
	for item := range strings.SplitSeq(v, ",") {
		desc := strings.HasPrefix(item, "-")
		name := strings.TrimPrefix(item, "-")
		if name == "" {
			return errorf(key, RuleValueInvalid, "_sort has an empty item")
		}
		p, ok := Lookup(ps.rt, name)
		if !ok {
			return errorf(key, RuleParamUnknown, "_sort names a parameter unknown for %s", ps.rt)
		}
		if p.Type != TypeDate && name != "_id" {
			return errorf(key, RuleSortUnsupported, "_sort supports only _id, _lastUpdated and the date parameters of %s", ps.rt)
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
		return errorf(key, RuleModifierUnsupported, "%s supports only the :iterate modifier", key)
	}
	parts := strings.Split(v, ":")
	if v == "*" || len(parts) >= 2 && parts[1] == "*" {
		return errorf(key, RuleIncludeUnsupported, "wildcard %s is not supported", key)
	}
	if len(parts) < 2 || len(parts) > 3 || !isResourceType(parts[0]) {
		return errorf(key, RuleValueInvalid, "%s must be SourceType:parameter[:TargetType]", key)
	}
	inc := Include{SourceType: parts[0], Param: parts[1], Iterate: iterate}
	if len(parts) == 3 {
		inc.TargetType = parts[2]
	}
	p, ok := Lookup(inc.SourceType, inc.Param)
	if !ok {
		return errorf(key, RuleParamUnknown, "%s names a parameter unknown for %s", key, inc.SourceType)
	}
	if p.Type != TypeReference {
		return errorf(key, RuleIncludeUnsupported, "%s needs a reference parameter", key)
	}
	if inc.TargetType != "" && (!isResourceType(inc.TargetType) ||
		len(p.Targets) > 0 && !slices.Contains(p.Targets, inc.TargetType)) {
		return errorf(key, RuleValueInvalid, "%s names a target type the parameter cannot point to", key)
	}
	if !iterate {
		switch {
		case !rev && inc.SourceType != ps.rt:
			return errorf(key, RuleValueInvalid, "_include must start with the searched type %s (or use :iterate)", ps.rt)
		case rev && (inc.TargetType != "" && inc.TargetType != ps.rt ||
			len(p.Targets) > 0 && !slices.Contains(p.Targets, ps.rt)):
			return errorf(key, RuleValueInvalid, "_revinclude names a parameter that cannot point to %s", ps.rt)
		}
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

// shownName is key if it is safe to echo, else a placeholder.
func shownName(key string) string {
	if safeName(key) {
		return key
	}
	return "(not shown)"
}
