package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// The identifier systems the mappings mint for native records
// (<identifier base>/<source>/<namespace>: docs/mapping.md §1.5) are the
// gateway's. A native record's resources are conditional creates on them
// (If-None-Exist: identifier=<system>|<value>), and the values are
// predictable (the record id, the LOINC code), so a client that could
// write a resource carrying one before the record arrives would have the
// ingest match it and store nothing of its own (the record's measurement
// lost, its answer 200). A client's write (a create, an update, a patch,
// a Bundle entry) may therefore not add an identifier in a reserved
// system: 403 identifier-reserved naming it. It may keep one the resource
// already carries (a clinic's correction of a resource a record made
// sends it back with its identifiers), and conditional criteria may name
// one (a search). The application's own entries (ingest, import, replay:
// NewEntry) are not clients' and are not checked, nor are the writes of a
// client that may send native records (gateway/ingest, mayMint): it can
// have the gateway mint any of those identifiers by sending a record, so
// writing one gives it nothing new (and a gateway that is another
// gateway's destination receives them from its delivery client, or in
// development mode, whose caller has every scope).

// mayMint reports whether the caller of sc may write identifiers in the
// reserved systems: it holds gateway/ingest.
func mayMint(sc *auditlog.Scope) bool {
	return sc != nil && sc.Principal != nil && sc.Principal.Scopes.Has(auth.ScopeIngest)
}

// reservedSystems is the prefix of the reserved identifier systems of an
// identifier base ("" the default).
func reservedSystems(base string) string {
	if base == "" {
		base = mapping.DefaultIdentifierBase
	}
	return strings.TrimRight(base, "/") + "/"
}

// clientIdentifiers checks, before a client's POST or PUT entry runs, that
// its resource adds no identifier in a reserved system: a POST has no
// current version (one that matched writes nothing and is not checked), a
// PUT's is read only when the resource carries a reserved identifier.
func (e *Engine) clientIdentifiers(tx store.Tx, en *Entry) error {
	switch {
	case en.mints:
		return nil
	case en.method == "POST" && en.matched == nil:
		return e.reservedIdentifier(en, en.doc, nil)
	case en.method != "PUT" || firstReserved(e.reservedSys, en.doc, nil) < 0:
		return nil
	}
	cur, err := tx.Read(en.typ, en.id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone), errors.Is(err, errForeign):
		cur = nil
	case err != nil:
		return err
	case !owns(tx, cur):
		cur = nil
	}
	return e.reservedIdentifier(en, en.doc, cur)
}

// reservedIdentifier refuses doc, the new content of en's resource, when
// it carries an identifier in a reserved system that cur (the version it
// replaces; nil for none, or a deletion) does not carry.
func (e *Engine) reservedIdentifier(en *Entry, doc map[string]any, cur *store.Resource) error {
	if !en.client || en.mints {
		return nil
	}
	had, err := storedContent(cur)
	if err != nil {
		return err
	}
	i := firstReserved(e.reservedSys, doc, had)
	if i < 0 {
		return nil
	}
	expr := fmt.Sprintf("%s.identifier[%d].system", en.typ, i)
	if !en.rest && en.method != "PATCH" { // a Bundle entry's resource (a patch's result is in none)
		expr = nestedExpr(fmt.Sprintf("Bundle.entry[%d].resource", en.index), en.typ, expr)
	}
	return e.errReserved(expr)
}

// storedContent decodes the body of cur, the version a write replaces:
// nil for none (cur nil, or a deletion).
func storedContent(cur *store.Resource) (map[string]any, error) {
	if cur == nil || cur.Deleted || cur.Body == nil {
		return nil, nil
	}
	doc, err := decodeJSON(cur.Body)
	if err != nil {
		return nil, fmt.Errorf("%s/%s: stored body: %w", cur.Type, cur.ID, err)
	}
	return doc, nil
}

// errReserved is identifier-reserved at expr, the system of the
// identifier a client's write may not add.
func (e *Engine) errReserved(expr string) error {
	return outcome.New(outcome.Forbidden, "forbidden", "identifier-reserved",
		"this identifier's system is one the gateway mints for the resources of native records (under "+
			strings.TrimSuffix(e.reservedSys, "/")+"): a client may not give a resource one it does not carry "+
			"already; use your own identifier system").At(expr)
}

// reservedIssues is identifier-reserved as $validate reports it, an
// error issue of the verdict: the resource raw, of type rt, validated as
// a create (id "") or as an update of id, adds an identifier in a
// reserved system that the version it would replace (id's current one in
// the caller's tenant) does not carry, as the write would refuse it
// (clientIdentifiers). Nothing for a caller that may mint (mayMint).
func (e *Engine) reservedIssues(ctx context.Context, sc *auditlog.Scope, rt, id string, raw []byte) ([]outcome.Issue, error) {
	if mayMint(sc) || !e.v.KnownType(rt) {
		return nil, nil
	}
	doc, err := decodeJSON(raw)
	if err != nil || firstReserved(e.reservedSys, doc, nil) < 0 {
		return nil, nil // the structural issues say what is wrong with a body that does not decode
	}
	var had map[string]any
	if id != "" && fhirwire.ValidID(id) {
		cur, err := e.reader(sc, reads{}).Read(ctx, rt, id)
		switch {
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone), errors.Is(err, errForeign):
		case err != nil:
			return nil, err
		case cur.Tenant == sc.TenantOf():
			if had, err = storedContent(cur); err != nil {
				return nil, err
			}
		}
	}
	i := firstReserved(e.reservedSys, doc, had)
	if i < 0 {
		return nil, nil
	}
	_, issues := outcome.From(e.errReserved(fmt.Sprintf("%s.identifier[%d].system", rt, i)))
	return issues, nil
}

// firstReserved returns the index of the first identifier of doc whose
// system begins with prefix and which had (the version replaced; nil for
// none) does not carry, system and value alike; -1 for none.
func firstReserved(prefix string, doc, had map[string]any) int {
	list, _ := doc["identifier"].([]any)
	for i, x := range list {
		id, _ := x.(map[string]any)
		sys, _ := id["system"].(string)
		if !strings.HasPrefix(sys, prefix) {
			continue
		}
		val, _ := id["value"].(string)
		if !carries(had, sys, val) {
			return i
		}
	}
	return -1
}

// carries reports whether doc has the identifier system|value.
func carries(doc map[string]any, sys, val string) bool {
	list, _ := doc["identifier"].([]any)
	for _, x := range list {
		id, _ := x.(map[string]any)
		if s, _ := id["system"].(string); s == sys {
			if v, _ := id["value"].(string); v == val {
				return true
			}
		}
	}
	return false
}
