package engine

import (
	"context"
	"errors"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Granular scopes (system/Observation.rs?category=...) restrict a type to
// the resources their search parameters select. Visible decides one
// resource; a search of a restricted type gets the restriction added to
// its criteria (ANDed with the client's), so that its total and its pages
// are those of the resources the caller may see, never telling how many
// others there are. What cannot be confined that way exactly is refused
// (403 scope-restriction-unenforceable), never answered with a count or a
// link that tells of resources the scope does not grant (docs/security.md).

// Rules of the granular scopes' refusals (gateway/conformance/rules.go).
const (
	ruleRestrictionUnenforceable = "scope-restriction-unenforceable"
	ruleRestrictionWrite         = "scope-restriction-write"
)

// restrictionClauses returns the clauses to add to a search of typ by the
// caller of sc that needs perms (some of 'r', 's'): none when a scope
// grants them unrestricted. Several granular scopes on typ are ORed, as
// one set of clauses when they can be (auth.Scopes.SearchRestriction);
// otherwise the search is refused (scope-restriction-unenforceable).
func restrictionClauses(sc *auditlog.Scope, typ, perms string) ([]search.Clause, error) {
	if sc == nil || sc.Principal == nil {
		return nil, nil
	}
	cs, conflict := sc.Principal.Scopes.SearchRestriction(typ, perms)
	if conflict != "" {
		return nil, unenforceable("the access token's scopes restrict " + typ + " by different search parameters (" +
			conflict + "), which the gateway cannot apply together to one search exactly: ask " +
			"for a token with one of them, or with restrictions of one parameter each")
	}
	return cs, nil
}

// Restriction returns the clauses that confine a search of typ by the
// caller of sc to what its granular scopes grant (none when a scope grants
// search on typ unrestricted): other ways that search for a client (a bulk
// export, as an implicit _typeFilter) add them as a search does. Returns
// an *outcome.Error (403 scope-restriction-unenforceable) when the scopes'
// restrictions cannot be one set of clauses.
func Restriction(sc *auditlog.Scope, typ string) ([]search.Clause, error) {
	return restrictionClauses(sc, typ, "s")
}

func unenforceable(msg string) error {
	return outcome.New(outcome.Forbidden, "forbidden", ruleRestrictionUnenforceable, msg)
}

// restrict adds to q, a search of q.Type by the caller of sc, the
// restriction of its granular scopes (restrictionClauses with s, the
// permission a search needs).
func restrict(sc *auditlog.Scope, q *search.Query) error {
	if q == nil || q.Type == "" {
		return nil
	}
	cs, err := restrictionClauses(sc, q.Type, "s")
	if err != nil {
		return err
	}
	q.Clauses = append(q.Clauses, cs...)
	return nil
}

// restrictedHistory is the history q of one resource of a type the caller
// reads through granular scopes only: every version is read, those the
// restriction does not select (Visible) are left out, and the total and
// the page are of those shown, so that neither tells how many versions
// were left out. A deletion, which has no content to select, is shown when
// the version before it is (deletionShown): a client syncing by history
// learns that a resource it could read was deleted. What it returns has
// been decided here: the caller does not Disclose it again.
func restrictedHistory(ctx context.Context, e *Engine, sc *auditlog.Scope, st reader, q store.HistoryQuery) ([]*store.Resource, int, error) {
	all := q
	all.Offset, all.Count = 0, search.MaxCount
	var page []*store.Resource
	total := 0 // the versions shown
	budget := store.PageBudget{Max: q.MaxBytes}
	for {
		vs, n, err := st.History(ctx, all)
		if err != nil {
			return nil, 0, err
		}
		for _, v := range vs {
			if v.Deleted && e.deletionShown(sc, readsAt{ctx, st}, v) || !v.Deleted && e.Visible(sc, v) {
				// The page: from q.Offset, at most q.Count versions, and
				// as the store's, at most q.MaxBytes of them but the first.
				if total >= q.Offset && len(page) < q.Count && total == q.Offset+len(page) && budget.Take(len(v.Body)) {
					page = append(page, v)
				}
				total++
			}
		}
		// (A store page may end early at q.MaxBytes: the versions' count
		// tells where they end.)
		if all.Offset += len(vs); len(vs) == 0 || all.Offset >= n {
			break
		}
	}
	return page, total, nil
}

// writePerm is the permission a write of method needs (0 for a read).
func writePerm(method string) byte {
	switch method {
	case "POST":
		return 'c'
	case "PUT", "PATCH":
		return 'u'
	case "DELETE":
		return 'd'
	}
	return 0
}

// checkStored checks, for an update, patch or delete (perm 'u' or 'd') of
// typ/id by the caller of sc, that granular scopes granting perm on typ
// select its stored version: a resource outside the restriction that the
// caller may read is not changed through it (403 scope-restriction-write).
// One it may not read (not Visible) is, to it, as a resource of another
// tenant: errForeign, which the caller answers as the write answers a
// foreign id (a 403 would tell that it exists). That holds as well when
// only its reading is restricted (system/Observation.rs?... with an
// unrestricted system/Observation.ud): a write must not overwrite, delete
// or revive what the client's reads hide, nor answer otherwise than for
// an id nobody holds. A deletion has no content:
// the version before it decides, as it decides whether a read tells of the
// deletion (deletionShown), so that an update never revives a hidden
// resource's id and history; deleting a deletion the caller may see
// changes nothing and passes. Nothing stored (or of another tenant, which
// the write itself answers) passes. st is the write's transaction, or the
// engine's reads for $validate (readsAt).
func (e *Engine) checkStored(st storedReader, sc *auditlog.Scope, typ, id string, perm byte) error {
	permRestricted, readRestricted := restrictedFor(sc, typ, string(perm)), restrictedFor(sc, typ, "rs")
	if !permRestricted && !readRestricted {
		return nil
	}
	cur, err := st.Read(typ, id)
	deleted := errors.Is(err, store.ErrGone) && cur != nil
	switch {
	case deleted:
		if cur = lastContent(st, cur); cur == nil {
			return errForeign
		}
	case err != nil || cur == nil || cur.Deleted:
		return nil
	}
	switch {
	case readRestricted && !e.Visible(sc, cur):
		return errForeign
	case !permRestricted || grants(sc.Principal.Scopes, string(perm), cur):
		return nil
	case !e.Visible(sc, cur):
		return errForeign
	case deleted && perm == 'd':
		return nil
	}
	return restrictionWriteError(typ, perm, true)
}

// hiddenAt reports whether typ/id is a resource of the caller's tenant
// that the caller of sc may not read (not Visible; a deletion by the
// version before it, as deletionShown decides): to a write that would
// create it (a conditional create whose _id criterion names it), it is a
// resource of another tenant, since a 412 conditional-id-taken would tell
// that it exists.
func (e *Engine) hiddenAt(tx store.Tx, sc *auditlog.Scope, typ, id string) bool {
	if sc == nil || sc.Principal == nil {
		return false
	}
	if _, unrestricted := sc.Principal.Scopes.Restriction(typ, "rs"); unrestricted {
		return false // it reads every resource of typ its tenant holds: nothing to read
	}
	cur, err := tx.Read(typ, id)
	switch {
	case err == nil && cur != nil && owns(tx, cur):
		return !e.Visible(sc, cur)
	case errors.Is(err, store.ErrGone) && cur != nil && owns(tx, cur):
		return !e.deletionShown(sc, tx, cur)
	}
	return false
}

// lastContent returns the version before the deletion del (the resource's
// last content), nil when there is none.
func lastContent(st storedReader, del *store.Resource) *store.Resource {
	if del.Version < 2 {
		return nil
	}
	prev, err := st.VRead(del.Type, del.ID, del.Version-1)
	if err != nil || prev == nil || prev.Deleted {
		return nil
	}
	return prev
}

// storedReader is what checkStored reads: a store.Tx, or readsAt.
type storedReader interface {
	Read(typ, id string) (*store.Resource, error)
	VRead(typ, id string, version int64) (*store.Resource, error)
}

// readsAt is a reader's reads with ctx, as a storedReader.
type readsAt struct {
	ctx context.Context
	r   reader
}

func (a readsAt) Read(typ, id string) (*store.Resource, error) { return a.r.Read(a.ctx, typ, id) }

func (a readsAt) VRead(typ, id string, version int64) (*store.Resource, error) {
	return a.r.VRead(a.ctx, typ, id, version)
}

// choosesIDs reports whether the caller of sc may create a resource of typ
// at an id it chooses (update-as-create, a conditional create or update
// by _id), by a write needing perm ('c' or 'u'): when Config.UpdateCreate
// lets clients, and neither its reading of typ nor perm on it is granted
// through granular scopes only. A client whose scopes hide some resources
// of typ would otherwise tell an id they hide (404 id-unavailable, as a
// foreign id) from one nobody holds (created), so to it every id it does
// not hold answers alike, as with several tenants (docs/security.md).
func (e *Engine) choosesIDs(sc *auditlog.Scope, typ string, perm byte) bool {
	return e.updateCreate && !restrictedFor(sc, typ, "rs") && !restrictedFor(sc, typ, string(perm))
}

// hiding is tx with typ/id read as a resource of another tenant
// (errForeign): a write through it answers as for a foreign id.
type hiding struct {
	store.Tx
	typ, id string
}

func (h hiding) Read(typ, id string) (*store.Resource, error) {
	if typ == h.typ && id == h.id {
		return nil, errForeign
	}
	return h.Tx.Read(typ, id)
}

// checkWritten checks that the version r a create, update or patch (perm
// 'c' or 'u') of the caller of sc wrote is one granular scopes granting
// perm on its type select, by its own index entries: else 403
// scope-restriction-write, and the write is undone with its transaction.
func checkWritten(sc *auditlog.Scope, r *store.Resource, perm byte) error {
	if !restrictedFor(sc, r.Type, string(perm)) || grants(sc.Principal.Scopes, string(perm), r) {
		return nil
	}
	return restrictionWriteError(r.Type, perm, false)
}

func restrictionWriteError(typ string, perm byte, stored bool) error {
	verb := map[byte]string{'c': "create", 'u': "update", 'd': "delete"}[perm]
	what := "the resource written is"
	if stored {
		what = "the stored version of the resource is"
	}
	return outcome.New(outcome.Forbidden, "forbidden", ruleRestrictionWrite, "the access token's scopes grant "+verb+
		" ("+string(perm)+") of "+typ+" only through granular scopes (system/"+typ+"."+string(perm)+"?..., restricted "+
		"by search parameters), and "+what+" not one their search parameters select").At(typ)
}

// mayPatch reports whether the caller of sc may patch typ/id as far as
// reading goes: a patch answers (and a JSON Patch test tests) stored
// content the client did not send, so a caller that reads typ through
// granular scopes only may patch what their restriction selects, and a
// resource it hides is not found, as its read is (allowPatch checks the
// type).
func (e *Engine) mayPatch(tx store.Tx, sc *auditlog.Scope, typ, id string) bool {
	if !restrictedFor(sc, typ, "rs") {
		return true
	}
	cur, err := tx.Read(typ, id)
	if errors.Is(err, store.ErrGone) && cur != nil && owns(tx, cur) {
		return e.deletionShown(sc, tx, cur) // a 410 tells of the deletion
	}
	if err != nil || cur == nil || cur.Deleted {
		return true // the patch answers these itself
	}
	return grants(sc.Principal.Scopes, "rs", cur)
}

// deletionShown reports whether the caller of sc may be told that the
// deletion del happened (410): a deletion has no content for a granular
// scope's restriction to select, so a caller that reads its type through
// granular scopes only is told of it when the version before it (the
// resource's last content) is one it may see; otherwise the resource is
// as one of another tenant (404), since a 410 would tell that a hidden
// resource existed.
// st is a write's transaction, or a reader's reads with ctx (readsAt).
func (e *Engine) deletionShown(sc *auditlog.Scope, st storedReader, del *store.Resource) bool {
	if del == nil || !restrictedFor(sc, del.Type, "rs") {
		return true
	}
	prev := lastContent(st, del)
	return prev != nil && e.Visible(sc, prev)
}
