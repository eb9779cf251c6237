package search

import (
	"slices"
	"strconv"
	"strings"
)

// ParseConditional parses the criteria of a conditional interaction of
// resourceType: If-None-Exist, conditional update, patch and delete, and
// conditional references ("Patient?identifier=http://x|123" minus the
// "Patient?"; a leading "?" is tolerated, and so is the "Type?" form
// itself, as HAPI and HL7's Bundle-xds example write it, when Type is
// resourceType: search-type-mismatch otherwise; and [l.Base]/Type?criteria,
// this server's own absolute URL of that search, while any other absolute
// URL is search-value-invalid). query is a raw, still
// percent-encoded query string. Parsing is strict, and result and other
// control parameters (_count, _sort, _include, ...) are refused; only
// search parameters, _id and _lastUpdated remain. The query asks for two
// matches at most and no total (a caller that pages sets Count itself).
// Returns an *Error: the
// rules of Parse, plus search-value-invalid when the query string does not
// decode or has no criteria left (empty criteria would match everything).
func ParseConditional(resourceType, query string) (*Query, error) {
	return Limits{}.ParseConditional(resourceType, query)
}

// ParseConditional is the package's ParseConditional within l.
func (l Limits) ParseConditional(resourceType, query string) (*Query, error) {
	query = LocalReference(l.Base, query)
	if typ, rest, ok := strings.Cut(query, "?"); ok && typ != "" && !strings.ContainsAny(typ, "=&") {
		if strings.Contains(typ, "/") {
			return nil, &Error{Rule: RuleValueInvalid, Message: "the conditional criteria are an absolute URL, and only " +
				"this server's own FHIR base is accepted there ([base]/" + resourceType + "?criteria); write them as " +
				resourceType + "?criteria or as the criteria alone"}
		}
		if typ != resourceType {
			return nil, &Error{Rule: RuleTypeMismatch, Message: "the conditional criteria name a resource type other than " +
				resourceType + "; write them as " + resourceType + "?criteria or as the criteria alone"}
		}
		query = rest
	}
	query = strings.TrimPrefix(query, "?")
	values, err := ParseQuery(resourceType, query)
	if err != nil {
		return nil, err
	}
	q, _, perr := parse(resourceType, values, false, true, l)
	if perr != nil {
		return nil, perr
	}
	if len(q.Clauses) == 0 {
		return nil, &Error{Rule: RuleValueInvalid, Message: "the conditional criteria are empty"}
	}
	// A conditional interaction tells no match, one and several apart:
	// two matches are enough, in any order, and nothing is counted.
	q.Count, q.Total, q.Unordered = 2, false, true
	return q, nil
}

// Key returns a canonical text of the criteria of q, a search of
// resourceType, equal for equivalent criteria: "Type?" then the clauses
// "param[:modifier]=v1,v2" joined by "&", clauses and their values sorted
// and de-duplicated; values re-escaped and normalised (strings and token
// :text by Normalize, dates as their UTC range with the prefix, eq made
// explicit, numbers by value and precision). For example
// Key("Patient", q) of "identifier=http://x|123" is
// "Patient?identifier=http://x|123". Paging, sorting and includes are not
// part of it. The key holds the criteria values, which may be PHI: store a
// hash of it where it should not be readable.
func Key(resourceType string, q *Query) string {
	var clauses []string
	if q != nil {
		for _, c := range q.Clauses {
			clauses = append(clauses, clauseKey(c))
		}
	}
	slices.Sort(clauses)
	clauses = slices.Compact(clauses)
	return resourceType + "?" + strings.Join(clauses, "&")
}

// clauseKey renders one clause canonically.
func clauseKey(c Clause) string {
	name := c.Param
	// A :Type modifier of a reference is already in the values' RefType.
	if c.Modifier != "" && !(c.Type == TypeReference && isResourceType(c.Modifier)) {
		name += ":" + c.Modifier
	}
	if c.Missing != nil {
		return name + "=" + strconv.FormatBool(*c.Missing)
	}
	if c.Chain != nil {
		k := name + "." + c.Chain.TargetType + "(" + clauseKey(c.Chain.Clause) + ")"
		for _, o := range c.Chain.Or {
			k += "|" + o.TargetType + "(" + clauseKey(o.Clause) + ")"
		}
		return k
	}
	if c.Has != nil {
		return "_has:" + c.Has.Type + ":" + c.Has.Param + "(" + clauseKey(c.Has.Clause) + ")"
	}
	vals := make([]string, 0, len(c.Values))
	for _, v := range c.Values {
		vals = append(vals, valueKey(c, v))
	}
	slices.Sort(vals)
	vals = slices.Compact(vals)
	return name + "=" + strings.Join(vals, ",")
}

// valueKey renders one value canonically.
func valueKey(c Clause, v Value) string {
	num := func() string {
		p := v.Prefix
		if p == "" {
			p = PrefixEq
		}
		return string(p) + strconv.FormatFloat(v.Number, 'g', -1, 64) + "~" + strconv.FormatFloat(v.Precision, 'g', -1, 64)
	}
	tok := func() string {
		if v.HasSystem {
			return Token(v.System, v.Code)
		}
		return escape(v.Code)
	}
	switch c.Type {
	case TypeToken:
		if c.Modifier == "text" {
			return escape(Normalize(v.Str))
		}
		return tok()
	case TypeString:
		if c.Modifier == "exact" {
			return escape(v.Str)
		}
		return escape(Normalize(v.Str))
	case TypeURI:
		return escape(v.Str)
	case TypeDate:
		p := v.Prefix
		if p == "" {
			p = PrefixEq
		}
		const layout = "2006-01-02T15:04:05.000Z"
		return string(p) + v.Low.UTC().Format(layout) + "/" + v.High.UTC().Format(layout)
	case TypeNumber:
		return num()
	case TypeQuantity:
		return num() + "|" + escape(v.System) + "|" + escape(v.Code)
	case TypeReference:
		switch {
		case c.Modifier == "identifier":
			return tok()
		case v.RefURL != "" && v.RefType != "":
			return escape(v.RefType) + "|" + escape(v.RefURL) // an unescaped | is no URL's
		case v.RefURL != "":
			return escape(v.RefURL)
		case v.RefType != "":
			return escape(v.RefType + "/" + v.RefID)
		}
		return escape(v.RefID)
	}
	return escape(v.Str)
}

// Satisfies reports whether a resource whose index entries are entries is
// certainly selected by the clauses of q, without asking a store: true only
// when every clause is a token clause without modifier (identifier, _id,
// codes) one of whose values equals an entry of that parameter, compared as
// the stores compare tokens (code alone, |code, system|code, system|).
// false means "not known here": ask the store. It spares a query for the
// common conditional create, by identifier, of a resource that carries it.
func Satisfies(q *Query, entries []Entry) bool {
	if q == nil || len(q.Clauses) == 0 {
		return false
	}
	for _, c := range q.Clauses {
		if c.Type != TypeToken || c.Modifier != "" || c.Missing != nil || c.Chain != nil || c.Has != nil {
			return false
		}
		params := TokenRows(q.Type, c.Param) // combo-code: the code and component-code entries
		if !slices.ContainsFunc(entries, func(e Entry) bool {
			return slices.Contains(params, e.Param) && e.Type == TypeToken && slices.ContainsFunc(c.Values, func(v Value) bool {
				return tokenMatches(e, v)
			})
		}) {
			return false
		}
	}
	return true
}

// Selects reports whether the clauses of q select the resource typ/id
// whose index entries are entries, without asking a store, where that can
// be told here: known is false when some clause is of a kind only the
// store decides (dates, numbers, quantities, references, uris, chains,
// _has, :missing, :not, :text, and the parameters the server sets, such
// as _lastUpdated and _tag). It decides _id, token clauses without
// modifier (as Satisfies) and string clauses (default starts-with and
// :contains on the normalised value, :exact on the original), compared as
// the stores compare them. A clause that certainly fails decides the
// query (selected false, known true) whatever the others are.
func Selects(q *Query, id string, entries []Entry) (selected, known bool) {
	return selects(q, id, entries, false)
}

// SelectsStored is Selects for the entries of a stored resource, whose
// references are resolved (those of a resource a transaction is about
// to write may still name its other entries' fullUrls): it also decides
// :missing and references to a resource by type and id, where a
// reference parameter's literal references are where the stores keep
// them (ReferenceRows: an Observation's patient is its subject of type
// Patient). A reference by URL or by bare id stays the store's.
func SelectsStored(q *Query, id string, entries []Entry) (selected, known bool) {
	return selects(q, id, entries, true)
}

func selects(q *Query, id string, entries []Entry, stored bool) (selected, known bool) {
	if q == nil || len(q.Clauses) == 0 {
		return false, false
	}
	known = true
	for _, c := range q.Clauses {
		ok, k := false, false
		if stored && (c.Missing != nil || c.Type == TypeReference) {
			ok, k = selectsStoredClause(q.Type, c, entries)
		} else {
			ok, k = selectsClause(q.Type, c, id, entries)
		}
		if k && !ok {
			return false, true
		}
		known = known && k
	}
	return known, known
}

// selectsStoredClause is SelectsStored for a :missing clause or a
// reference clause of a resource of typ.
func selectsStoredClause(typ string, c Clause, entries []Entry) (ok, known bool) {
	if c.Chain != nil || c.Has != nil {
		return false, false
	}
	param, refType := c.Param, ""
	if c.Type == TypeReference {
		param, refType = ReferenceRows(typ, c.Param)
	}
	isRef := func(e Entry) bool {
		return e.Param == param && e.Type == TypeReference && (refType == "" || e.RefType == refType)
	}
	params := TokenRows(typ, c.Param) // [c.Param] but for combo-code: the code and component-code rows
	switch {
	case c.Missing != nil:
		present := slices.ContainsFunc(entries, func(e Entry) bool {
			return isRef(e) || slices.Contains(params, e.Param) && (c.Type != TypeReference || e.Type == TypeToken)
		})
		return present == !*c.Missing, true
	case c.Modifier == "":
		if slices.ContainsFunc(c.Values, func(v Value) bool { return v.RefID == "" || v.RefType == "" }) {
			return false, false // a URL, or a bare id (of any type)
		}
		return slices.ContainsFunc(entries, func(e Entry) bool {
			return isRef(e) && slices.ContainsFunc(c.Values, func(v Value) bool {
				return e.RefType == v.RefType && e.RefID == v.RefID
			})
		}), true
	}
	return false, false
}

// selectsClause is Selects for one clause (its values ORed).
func selectsClause(typ string, c Clause, id string, entries []Entry) (ok, known bool) {
	if c.Missing != nil || c.Chain != nil || c.Has != nil {
		return false, false
	}
	if c.Param == "_id" && c.Type == TypeToken && c.Modifier == "" {
		if slices.ContainsFunc(c.Values, func(v Value) bool { return v.HasSystem }) {
			return false, false
		}
		return slices.ContainsFunc(c.Values, func(v Value) bool { return v.Code == id }), true
	}
	if strings.HasPrefix(c.Param, "_") {
		return false, false
	}
	var match func(e Entry, v Value) bool
	switch {
	case c.Type == TypeToken && c.Modifier == "":
		match = tokenMatches
	// A value that normalises to "" (Parse refuses it) matches nothing
	// here rather than every string.
	case c.Type == TypeString && c.Modifier == "":
		match = func(e Entry, v Value) bool { n := Normalize(v.Str); return n != "" && strings.HasPrefix(e.Norm, n) }
	case c.Type == TypeString && c.Modifier == "contains":
		match = func(e Entry, v Value) bool { n := Normalize(v.Str); return n != "" && strings.Contains(e.Norm, n) }
	case c.Type == TypeString && c.Modifier == "exact":
		match = func(e Entry, v Value) bool { return e.Exact == v.Str }
	default:
		return false, false
	}
	params := TokenRows(typ, c.Param) // [c.Param] but for combo-code: the code and component-code rows
	for _, e := range entries {
		if e.Type != c.Type || !slices.Contains(params, e.Param) {
			continue
		}
		if slices.ContainsFunc(c.Values, func(v Value) bool { return match(e, v) }) {
			return true, true
		}
	}
	return false, true
}

// tokenMatches reports whether a token entry holds a token value without
// modifier: code alone, system| alone, or system|code (compared as the
// stores compare them).
func tokenMatches(e Entry, v Value) bool {
	switch {
	case !v.HasSystem:
		return e.Code == v.Code
	case v.Code == "":
		return e.System == v.System
	default:
		return e.System == v.System && e.Code == v.Code
	}
}
