package auth

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// A granular scope (SMART App Launch v2, "Finer-grained resource
// constraints using search parameters") restricts a resource scope to the
// resources a search selects: system/Observation.rs?category=http://
// terminology.hl7.org/CodeSystem/observation-category|vital-signs grants
// reading and searching vital-sign Observations only. The gateway accepts
// the part of that grammar it can enforce exactly, on every way a resource
// is read, searched or written: one or more param=value joined by "&"
// (ANDed), each param a token search parameter of the scope's type that
// the gateway indexes (search.Lookup), without modifier or chain, each
// value system|code, code or system| (commas separate values ORed within a
// param). A scope of any other query (other parameter types, modifiers,
// chains, _id and the other parameters of every resource, "|code", a "*"
// type, v1 permissions) is refused: a restriction the gateway cannot
// enforce must not be granted as if it were.

// errGranular is why a granular scope is not of the grammar the gateway
// enforces; its text names no value of the scope (which may name a
// patient), only the gateway's own words and parameter names it knows.
type errGranular struct{ msg string }

func (e *errGranular) Error() string { return e.msg }

func granularErr(msg string) error { return &errGranular{msg: msg} }

// parseGranular parses base?query, a granular scope. The error says why it
// is not one the gateway enforces (granularErr).
func parseGranular(s string) (scope, error) {
	base, query, _ := strings.Cut(s, "?")
	sc, ok := parseScope(base)
	if !ok || sc.resourceType == "" {
		return scope{}, granularErr("only a system/ resource scope may be restricted by search parameters")
	}
	if sc.resourceType == "*" {
		return scope{}, granularErr("a restriction by search parameters needs a resource type, not *: the parameters " +
			"are those of one type")
	}
	if _, p, _ := strings.Cut(base, "."); p == "read" || p == "write" || p == "*" {
		return scope{}, granularErr("a restricted scope takes SMART v2 permissions (c r u d s, in that order), not " +
			"the v1 ." + p)
	}
	if query == "" {
		return scope{}, granularErr("the restriction after ? is empty")
	}
	q, err := restrictionQuery(sc.resourceType, query)
	if err != nil {
		return scope{}, err
	}
	sc.text = s
	sc.query = query
	sc.key = search.Key(sc.resourceType, q)
	sc.clauses = q.Clauses
	return sc, nil
}

// restrictionQuery parses the query of a granular scope of typ.
func restrictionQuery(typ, query string) (*search.Query, error) {
	values, err := search.ParseQuery(typ, query)
	if err != nil {
		return nil, granularErr("the restriction is not a query string of percent-encoded UTF-8 param=value pairs " +
			"joined by &")
	}
	for name, vs := range values {
		if slices.Contains(vs, "") {
			return nil, granularErr("the restriction has a parameter without a value")
		}
		if name == "" || strings.HasPrefix(name, "_") || strings.ContainsAny(name, ":.") {
			return nil, granularErr("the restriction may name only token search parameters of " + typ +
				", without modifiers or chains: not _id, _has, modifiers (:), chains (.) or result parameters")
		}
		p, ok := search.Lookup(typ, name)
		if !ok {
			return nil, granularErr("the restriction names a parameter that is not a search parameter of " + typ)
		}
		if p.Type != search.TypeToken {
			return nil, granularErr("the restriction's parameter " + name + " of " + typ + " is a " + string(p.Type) +
				" parameter: only token parameters may restrict a scope")
		}
	}
	q, err := search.Parse(typ, values, false)
	if err != nil {
		var se *search.Error
		if errors.As(err, &se) && se.Message != "" {
			return nil, granularErr("the restriction is not a valid search of " + typ + ": " + se.Message)
		}
		return nil, granularErr("the restriction is not a valid search of " + typ)
	}
	for _, c := range q.Clauses {
		if c.Type != search.TypeToken || c.Modifier != "" || c.Missing != nil || c.Chain != nil || c.Has != nil {
			return nil, granularErr("the restriction's parameter " + c.Param + " is not a plain token parameter")
		}
		if slices.ContainsFunc(c.Values, func(v search.Value) bool { return v.HasSystem && v.System == "" }) {
			return nil, granularErr("the restriction's values are system|code, code or system|; |code (no " +
				"system) is not accepted")
		}
	}
	if len(q.Clauses) == 0 {
		return nil, granularErr("the restriction after ? names no parameter")
	}
	return q, nil
}

// Restriction returns how the scopes restrict the permissions perms (some
// of 'c', 'r', 'u', 'd', 's') on resources of typ: unrestricted true when
// a scope without restriction grants one of them (on typ or *); else the
// restrictions of the granular scopes that grant one of them, each the
// token clauses of one scope (ANDed; the restrictions are ORed: a resource
// any of them selects is granted). Unrestricted false with no restriction
// means nothing grants perms on typ.
func (s Scopes) Restriction(typ, perms string) (restrictions [][]search.Clause, unrestricted bool) {
	var bits uint8
	for i := 0; i < len(perms); i++ {
		bits |= permBit(perms[i])
	}
	if bits == 0 || typ == "" {
		return nil, false
	}
	for _, sc := range s.list {
		if sc.resourceType == "" || (sc.resourceType != "*" && sc.resourceType != typ) || sc.perms&bits == 0 {
			continue
		}
		if sc.query == "" {
			return nil, true
		}
		restrictions = append(restrictions, sc.clauses)
	}
	return restrictions, false
}

// narrower reports whether the restriction of r selects only what that of
// a selects: every clause of a has a clause of r of its parameter whose
// values a's values all cover (system|code by itself, system| by any code
// of the system, code by itself in any system). r may add parameters.
func narrower(r, a scope) bool {
	if r.query == "" || a.query == "" {
		return false
	}
	return !slices.ContainsFunc(a.clauses, func(ac search.Clause) bool {
		return !slices.ContainsFunc(r.clauses, func(rc search.Clause) bool {
			return rc.Param == ac.Param && !slices.ContainsFunc(rc.Values, func(rv search.Value) bool {
				return !slices.ContainsFunc(ac.Values, func(av search.Value) bool { return covers(av, rv) })
			})
		})
	})
}

// covers reports whether the token value av selects everything rv does.
func covers(av, rv search.Value) bool {
	switch {
	case !av.HasSystem:
		return av.Code == rv.Code
	case av.Code == "":
		return rv.HasSystem && rv.System == av.System
	}
	return rv.HasSystem && rv.System == av.System && rv.Code == av.Code
}

// SearchRestriction returns the clauses that confine a search needing
// perms (some of 'r', 's') on typ to what the scopes grant: none when a
// scope grants perms on typ unrestricted (or nothing grants them).
// Several granular scopes are ORed, expressed as one set of clauses when
// each is a single clause of the same parameter (their values then ORed
// in one clause). Otherwise conflict names their parameters, each
// restriction's joined by & and the restrictions by " or " (never a
// value), and clauses is nil: no one search applies them exactly.
func (s Scopes) SearchRestriction(typ, perms string) (clauses []search.Clause, conflict string) {
	restrictions, unrestricted := s.Restriction(typ, perms)
	if unrestricted || len(restrictions) == 0 {
		return nil, ""
	}
	keys := map[string]bool{}
	var distinct [][]search.Clause
	for _, cs := range restrictions {
		if k := search.Key(typ, &search.Query{Clauses: cs}); !keys[k] {
			keys[k] = true
			distinct = append(distinct, cs)
		}
	}
	if len(distinct) == 1 {
		return slices.Clone(distinct[0]), ""
	}
	merged := search.Clause{Param: distinct[0][0].Param, Type: search.TypeToken}
	for _, cs := range distinct {
		if len(cs) != 1 || cs[0].Param != merged.Param {
			return nil, restrictionParams(distinct)
		}
		merged.Values = append(merged.Values, cs[0].Values...)
	}
	return []search.Clause{merged}, ""
}

// restrictionParams names the parameters of restrictions, each
// restriction's joined by &, the restrictions by " or ", each name once:
// never a value.
func restrictionParams(restrictions [][]search.Clause) string {
	var names []string
	for _, cs := range restrictions {
		var ps []string
		for _, c := range cs {
			ps = append(ps, c.Param)
		}
		if n := strings.Join(ps, "&"); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, " or ")
}

// searchConflict returns a type whose searches the scopes restrict only
// through restrictions the engine cannot apply to one search (every search
// of the type is 403 scope-restriction-unenforceable), and the parameters
// (SearchRestriction's conflict); "" when there is none.
func (s Scopes) searchConflict() (typ, params string) {
	var types []string
	for _, sc := range s.list {
		if sc.query != "" && sc.perms&permSearch != 0 && !slices.Contains(types, sc.resourceType) {
			types = append(types, sc.resourceType)
		}
	}
	for _, typ := range types {
		if _, conflict := s.SearchRestriction(typ, "s"); conflict != "" {
			return typ, conflict
		}
	}
	return "", ""
}

// named names the restricted scopes of s by their parameters, without
// values, told apart as far as parameters tell them:
// "system/Observation.c?category=... (2 scopes), system/Observation.c?code=...".
func (s Scopes) named() string {
	var order []string
	count := map[string]int{}
	for _, sc := range s.list {
		n := sc.shown()
		if sc.query != "" {
			var ps []string
			for _, c := range sc.clauses {
				ps = append(ps, c.Param+"=...")
			}
			base, _, _ := strings.Cut(sc.text, "?")
			n = base + "?" + strings.Join(ps, "&")
		}
		if count[n] == 0 {
			order = append(order, n)
		}
		count[n]++
	}
	for i, n := range order {
		if count[n] > 1 {
			order[i] = n + " (" + strconv.Itoa(count[n]) + " scopes)"
		}
	}
	return strings.Join(order, ", ")
}

// restricted reports whether some scope of s is granular.
func (s Scopes) restricted() bool {
	return slices.ContainsFunc(s.list, func(sc scope) bool { return sc.query != "" })
}
