package engine

import (
	"fmt"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// allow checks that the caller's scopes grant perm ('c', 'r', 'u', 'd',
// 's') on typ ("*" for the whole system): an *auth.Failure (401 without a
// caller, 403 insufficient_scope) otherwise.
func allow(sc *auditlog.Scope, typ string, perm byte) error {
	p := sc.Principal
	if p == nil {
		return &auth.Failure{Status: 401, Reason: "unauthenticated", Description: "authentication required"}
	}
	if !p.Scopes.Allows(typ, perm) {
		return auth.InsufficientScope(p.ClientID, "system/"+typ+"."+string(perm))
	}
	return nil
}

// mayRead reports whether the caller of sc may read (r) or search (s)
// resources of typ, which Visible asks of every resource shown: a write
// of a caller that may not must disclose nothing of what is stored beyond
// what the write itself sent (a PATCH is refused, allowPatch; a 412 names
// no version, conditions.blind).
func mayRead(sc *auditlog.Scope, typ string) bool {
	if sc == nil || sc.Principal == nil {
		return false
	}
	p := sc.Principal
	return p.Scopes.Allows(typ, 'r') || p.Scopes.Allows(typ, 's')
}

// blindTo reports whether a write of typ by the caller of sc must disclose
// nothing stored beyond what it sends (conditions.blind): a caller that may
// not read typ, or reads it through granular scopes only, whose restriction
// may hide the very resource written (a 412 must not name its version).
func blindTo(sc *auditlog.Scope, typ string) bool {
	return !mayRead(sc, typ) || restrictedFor(sc, typ, "rs")
}

// Visible reports whether the caller of sc may be shown r: it is the one
// decision for every resource that leaves the server, whatever the way
// (read, search match, _include, _revinclude, history, a Bundle's GET entry
// or a conditional create's match, and later $everything, bulk export and
// the console). The caller must be authenticated, r must belong to its
// tenant (or be a shared conformance resource, or the caller an all-tenant
// client), and its scopes must allow reading (r) or searching (s) r's type:
// either lets it fetch the resource directly (a search by _id), so either
// lets it see the resource by any other way. When the scopes that grant r
// or s on the type are all granular (system/Observation.rs?category=...),
// r must be one their restriction selects, by the index entries the
// stores keep of it (grants): a deletion, which has none, is not. A version
// the request itself just wrote is the caller's own content and is not
// passed through here.
func (e *Engine) Visible(sc *auditlog.Scope, r *store.Resource) bool {
	p := sc.Principal
	if p == nil || r == nil {
		return false
	}
	if !visible(p.Tenant, r.Type, r.Tenant) {
		return false
	}
	return grants(p.Scopes, "rs", r)
}

// grants reports whether scopes grant one of perms on the stored version
// r: an unrestricted scope on its type, or a granular one whose restriction
// selects r's index entries (search.Extract of its body decoded as the
// stores decode it to index it, storedContent, tested with
// search.Satisfies, so that a scope selects exactly what its search
// would). Several scopes are ORed.
func grants(scopes auth.Scopes, perms string, r *store.Resource) bool {
	restrictions, unrestricted := scopes.Restriction(r.Type, perms)
	if unrestricted {
		return true
	}
	if len(restrictions) == 0 {
		return false
	}
	doc, err := storedContent(r)
	if err != nil || doc == nil {
		return false
	}
	entries := search.Extract(r.Type, doc)
	return slices.ContainsFunc(restrictions, func(cs []search.Clause) bool {
		return search.Satisfies(&search.Query{Type: r.Type, Clauses: cs}, entries)
	})
}

// restrictedFor reports whether the caller's scopes grant perms on typ only
// through granular scopes (some do, none unrestricted).
func restrictedFor(sc *auditlog.Scope, typ, perms string) bool {
	if sc == nil || sc.Principal == nil {
		return false
	}
	restrictions, unrestricted := sc.Principal.Scopes.Restriction(typ, perms)
	return !unrestricted && len(restrictions) > 0
}

// Disclose returns the resources of rs the caller may be shown (Visible),
// in order, and how many it left out. Every list of resources that leaves
// the server goes through it (or Visible, one at a time). A resource of a
// type the caller reads through granular scopes only, which their
// restriction does not select, is left out and not counted: the count
// would tell that such resources exist (docs/security.md).
func (e *Engine) Disclose(sc *auditlog.Scope, rs []*store.Resource) (shown []*store.Resource, withheld int) {
	shown = rs[:0:0]
	for _, r := range rs {
		switch {
		case e.Visible(sc, r):
			shown = append(shown, r)
		case sc.Principal != nil && visible(sc.Principal.Tenant, r.Type, r.Tenant) && restrictedFor(sc, r.Type, "rs"):
		default:
			withheld++
		}
	}
	return shown, withheld
}

// WithheldEntry is the searchset entry (search.mode outcome) that tells the
// caller n resources were left out because its scopes do not allow reading
// them. It says how many, never which: their types and ids are what the
// caller may not learn.
func WithheldEntry(n int) fhirwire.Entry {
	msg := fmt.Sprintf("%d resources were left out: the access token's scopes do not allow reading them", n)
	if n == 1 {
		msg = "1 resource was left out: the access token's scopes do not allow reading it"
	}
	oo, _ := fhirwire.Marshal(outcome.Resource([]outcome.Issue{{Severity: "warning", Code: "suppressed",
		Rule: "results-withheld", Message: msg}}))
	return fhirwire.Entry{Resource: oo, Search: &fhirwire.Search{Mode: fhirwire.ModeOutcome}}
}
