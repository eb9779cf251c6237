package engine

import (
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// A chained parameter or _has matches resources by what another resource
// says (Observation?patient.identifier=MRN tells which Observations belong
// to the Patient with that MRN), so it needs the right to see that other
// type too: read or search, as Visible asks of a resource shown. Without
// it the search is refused (403 naming the scope), never answered.

// linkedTypes are the types the chains and _has of q look into.
func linkedTypes(q *search.Query) []string {
	var out []string
	for _, c := range q.Clauses {
		switch {
		case c.Chain != nil:
			out = append(out, c.Chain.TargetType)
		case c.Has != nil:
			out = append(out, c.Has.Type)
		}
	}
	return out
}

// allowLinked checks that the caller may see every type q's chains and
// _has look into (an *auth.Failure otherwise).
func allowLinked(sc *auditlog.Scope, q *search.Query) error {
	if q == nil {
		return nil
	}
	for _, typ := range linkedTypes(q) {
		if err := allowSee(sc, typ); err != nil {
			return err
		}
	}
	return nil
}

// allowSee checks that the caller may read or search typ.
func allowSee(sc *auditlog.Scope, typ string) error {
	if p := sc.Principal; p != nil && (p.Scopes.Allows(typ, 'r') || p.Scopes.Allows(typ, 's')) {
		return nil
	}
	if sc.Principal == nil {
		return allow(sc, typ, 's')
	}
	return auth.InsufficientScope(sc.Principal.ClientID, "system/"+typ+".s")
}

// allowCriteria checks the chains and _has of conditional criteria (or a
// Bundle entry's search) of typ; criteria that do not parse are left to the
// interaction, which refuses them with the parser's error.
func (e *Engine) allowCriteria(sc *auditlog.Scope, typ, criteria string, searchQuery bool) error {
	if criteria == "" {
		return nil
	}
	var q *search.Query
	if searchQuery {
		vals, err := search.ParseQuery(typ, criteria)
		if err != nil {
			return nil
		}
		q, _, _ = e.limitsFor(sc).Parse(typ, vals, false)
	} else {
		q, _ = e.limitsFor(sc).ParseConditional(typ, criteria)
	}
	return allowLinked(sc, q)
}

// allowEntry checks what an entry's criteria or search look into.
func (e *Engine) allowEntry(sc *auditlog.Scope, en *Entry) error {
	if err := e.allowCriteria(sc, en.typ, en.ifNoneExist, false); err != nil {
		return err
	}
	switch {
	case en.method != "GET":
		return e.allowCriteria(sc, en.typ, en.query, false)
	case en.get == getSearch:
		return e.allowCriteria(sc, en.typ, en.query, true)
	case en.get == getCompartment:
		return e.allowCriteria(sc, en.compType, en.query, true)
	}
	return nil
}
