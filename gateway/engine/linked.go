package engine

import (
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// A chained parameter or _has matches resources by what another resource
// says (Observation?patient.identifier=MRN tells which Observations belong
// to the Patient with that MRN), so it needs the right to see that other
// type too: read or search, as Visible asks of a resource shown. Without
// it the search is refused (403 naming the scope), never answered; so is
// one whose other type the caller reads through granular scopes only
// (403 scope-restriction-unenforceable).

// linkedTypes are the types the chains and _has of q look into, at every
// link of them.
func linkedTypes(q *search.Query) []string {
	var out []string
	var walk func(c search.Clause)
	walk = func(c search.Clause) {
		switch {
		case c.Chain != nil:
			out = append(out, c.Chain.Types()...)
			walk(c.Chain.Clause)
			for _, o := range c.Chain.Or {
				walk(o.Clause)
			}
		case c.Has != nil:
			out = append(out, c.Has.Type)
			walk(c.Has.Clause)
		}
	}
	for _, c := range q.Clauses {
		walk(c)
	}
	return out
}

// allowLinked checks that the caller may see every type q's chains and
// _has look into (an *auth.Failure otherwise).
func allowLinked(sc *auditlog.Scope, q *search.Query) error {
	if q == nil {
		return nil
	}
	var missing []string // the scopes of every type the caller may not see: one 403 names them all
	for _, typ := range linkedTypes(q) {
		if err := allowSee(sc, typ); err != nil {
			if sc.Principal == nil {
				return err
			}
			missing = append(missing, "system/"+typ+".s")
			continue
		}
		if restrictedFor(sc, typ, "rs") {
			// A chain or _has tests resources of typ by their content: one
			// the restriction hides would still select (or not) what the
			// caller sees. The store's chains take one clause per link,
			// where the restriction would add its own: refused.
			return unenforceable("the access token reads " + typ + " through granular scopes only (restricted by " +
				"search parameters), and a chain or _has into " + typ + " cannot be confined to them: search " + typ +
				" itself, or ask for a token without the restriction")
		}
	}
	if len(missing) > 0 {
		// A chain without a :Type goes into every type its reference
		// may target: a client told of one would meet the next 403.
		return auth.InsufficientScope(sc.Principal.ClientID, strings.Join(missing, " "))
	}
	return nil
}

// AllowLinked checks that the caller of sc may see every type the chains
// and _has of q look into (read or search on each, as a search asks): an
// *auth.Failure (403 insufficient_scope naming the scope) otherwise. Other
// ways that run a search for a client (a bulk export's _typeFilter) call it
// so that they ask what the search would.
func AllowLinked(sc *auditlog.Scope, q *search.Query) error { return allowLinked(sc, q) }

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

// allowCriteria checks what resolving criteria of typ looks into.
// Conditional criteria (searchQuery false: If-None-Exist, a conditional
// update, patch or delete) are a search of typ, whose answer (the match's
// id, or whether there is one) the caller learns: they need search (s) on
// typ, as the search itself does, besides the interaction's own scope. A
// Bundle entry's search (searchQuery) has had its s checked as the entry's
// need. Then the chains and _has of either (allowLinked). Criteria that do
// not parse are left to the interaction, which refuses them with the
// parser's error.
func (e *Engine) allowCriteria(sc *auditlog.Scope, typ, criteria string, searchQuery bool) error {
	if criteria == "" {
		return nil
	}
	if !searchQuery {
		if err := allow(sc, typ, 's'); err != nil {
			return err
		}
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
