package engine

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Tx is one write transaction as the request's tenant sees it: reads and
// searches confined to the tenant, writes stamped with it.
type Tx struct {
	e   *Engine
	raw store.Tx // the store's own transaction (the AuditEvent is written there)
	st  store.Tx // confined to the tenant
	sc  *auditlog.Scope
	now time.Time
}

// Store returns the transaction confined to the request's tenant (ledger,
// outbox, reads and searches).
func (t *Tx) Store() store.Tx { return t.st }

// Now is the time of the transaction's writes.
func (t *Tx) Now() time.Time { return t.now }

// Run processes entries atomically, as a transaction Bundle's (see
// runTransaction), and records the resources they touched in the request's
// audit scope. Any failure is an *outcome.EntryError naming the entry.
func (t *Tx) Run(entries []*Entry) error { return t.RunChecked(entries, nil) }

// RunChecked is Run with check called once every entry's target is
// decided and before anything is written: current[i] is the stored
// resource entry i matches or would replace or delete (nil when it makes a
// new one). An error of check aborts the transaction and is returned as it
// is (the application's rules about what it may overwrite).
func (t *Tx) RunChecked(entries []*Entry, check func(current []*store.Resource) error) error {
	if err := t.e.runTransaction(t.st, t.sc, entries, t.now, check, nil); err != nil {
		return err
	}
	t.e.touchEntries(t.sc, entries, nil)
	return nil
}

// Audited reports whether the gateway writes Provenance (the audit trail
// is not switched off): only then does a resource a record made have one.
func (t *Tx) Audited() bool { return t.e.audit.Enabled() }

// Provenance writes the Provenance p of the versions targets (nothing for
// none) and names it in the request's AuditEvent.
func (t *Tx) Provenance(p audit.Provenance, targets []*store.Resource) error {
	return t.e.audit.WriteProvenance(t.st, t.sc, p, targets, t.now)
}

// runTransaction processes entries atomically inside tx for the caller of
// sc: it resolves conditional creates and updates, assigns ids, rewrites
// references to Bundle entries and conditional references, then executes
// DELETE, POST, PUT, GET in that order (http.html#trules). Any failure
// aborts it with an *outcome.EntryError. Its searches (conditional
// criteria and references, GET entries) run for searches' time in all (a
// batch's entries share one budget; nil: a budget of the search timeout of
// its own): they hold the write lane, every tenant's writes and audited
// reads, while they run.
func (e *Engine) runTransaction(tx store.Tx, sc *auditlog.Scope, entries []*Entry, now time.Time, check func([]*store.Resource) error,
	searches *readBudget) error {
	if searches == nil {
		searches = newReadBudget(e.searchTimeout)
	}
	lim := e.limitsFor(sc)
	ids := map[string]string{}     // fullUrl -> Type/id
	claimed := map[string]string{} // conditional key -> Type/id decided in this transaction
	fail := func(en *Entry, err error) error { return &outcome.EntryError{Index: en.index, Err: err} }

	// 1. Decide every entry's target, in the order the entries are
	// processed (DELETE, POST, PUT and PATCH, GET; Bundle order within
	// each), so that criteria naming the fullUrl of an entry processed
	// before find the id it was given (placeholders). A run after a
	// failed one (the store runs a transaction again after a conflict, or
	// after another write of its batch failed) starts from the documents
	// as they came: the references the earlier run rewrote are put back,
	// since this run may decide other ids.
	full := map[string]bool{} // the fullUrls that name an entry's resource
	for _, en := range entries {
		en.rewrites.Restore()
		if en.fullURL != "" && en.namesResource() {
			full[en.fullURL] = true
		}
	}
	order := append([]*Entry(nil), entries...)
	sort.SliceStable(order, func(i, j int) bool {
		return fhirwire.MethodRank(order[i].method) < fhirwire.MethodRank(order[j].method)
	})
	looks := e.lookUp(tx, sc, lim, order, full, searches)
	for i, en := range order {
		en.matched, en.key, en.criteria, en.updating, en.res, en.again = nil, "", nil, nil, nil, false
		en.params, en.searched, en.hist = nil, nil, nil
		en.chosen, en.pinned = en.method == "PUT" && en.query == "", false // PUT Type/id: the client's id
		if l := looks[i]; l != nil {
			if l.placeholders && l.err == nil {
				l.err = searches.search(func() error { return searchPlaceholders(tx, en, l, ids, full, claimed) })
			}
			if err := resolveCriteria(en, l, claimed); err != nil {
				return fail(en, err)
			}
		}
		if en.method == "PATCH" && en.query != "" {
			if err := e.resolvePatchTarget(tx, sc, lim, en, ids, full); err != nil {
				return fail(en, err)
			}
		}
		if en.method == "POST" && en.id == "" {
			en.id = en.newID()
		}
		if en.fullURL != "" && en.namesResource() {
			ids[en.fullURL] = en.typ + "/" + en.id
		}
	}

	// A resource is changed once in a transaction (http.html#trules).
	if err := overlap(entries); err != nil {
		return err
	}

	if check != nil {
		current, err := currentTargets(tx, entries)
		if err != nil {
			return err
		}
		if err := check(current); err != nil {
			return err
		}
	}

	// 2. Rewrite references (one rule for the whole gateway: fhirwire);
	// conditional references as the transaction will leave the store.
	refs := &condRefs{e: e, sc: sc, tx: tx, lim: lim, entries: entries, ids: ids, full: full, memo: map[string]*condRef{}, searches: searches}
	rw := fhirwire.Rewriter{
		IDs:         ids,
		Conditional: refs.resolve,
		Local:       func(ref string) string { return search.LocalReference(lim.Base, ref) },
		Base:        lim.Base, // a relative reference in an entry with a urn: fullUrl
	}
	if len(entries) != 1 || !entries[0].rest {
		// In a Bundle (or the application's entries) a urn: names an
		// entry. A single create, update or patch has no entries: a urn
		// in it is a reference like any other the gateway does not hold,
		// kept as written (referential integrity is off).
		rw.Unresolved = outcome.New(outcome.Invalid, "not-found", "reference-unresolved",
			"a reference names a urn that is not the fullUrl of any entry of the Bundle")
		rw.Versioned = errVersionedPlaceholder
	}
	sp := agreed(entries, ids) // rewritten as ahead of the transaction (Speculate)
	for _, en := range entries {
		if en.doc == nil {
			continue
		}
		check := false
		if en.replay(sp) {
			if check = checkGuesses.Load(); !check {
				continue
			}
			en.rewrites.Restore() // rewritten again below, and compared
		}
		rw.Changes, refs.cur, rw.FullURL = &en.rewrites, en, en.fullURL
		if err := rw.Rewrite(en.doc); err != nil {
			return fail(en, en.linkAt(err))
		}
		if check && !en.guess.changes.Same(&en.rewrites) {
			panic(fmt.Sprintf("engine: entry %d (%s) was rewritten otherwise than its guess (GATEWAY_CHECK_SPECULATION)", en.index, en.typ))
		}
	}
	rw.Changes = nil

	// 3. Render the resources the POSTs create on every core (marshalling
	// and index extraction need no database), and execute in the spec's
	// order (where the store writes ahead, as they come); ties keep Bundle
	// order.
	defer render(entries, now, store.TxWritesAhead(tx))()
	shown := answered{}
	for _, en := range order {
		refs.cur, rw.FullURL = en, en.fullURL // a patch's references are rewritten as it runs
		exec := func() error { return e.execEntry(tx, sc, en, &rw, now) }
		if en.method == "GET" {
			if err := searches.search(exec); err != nil {
				return fail(en, err)
			}
		} else if err := exec(); err != nil {
			return fail(en, err)
		}
		if err := e.answerWithin(en, &shown); err != nil {
			return fail(en, err)
		}
	}

	// 4. A resource made by a conditional create or update is one its
	// criteria select, and the only one the transaction leaves that they
	// select.
	for _, en := range entries {
		if en.criteria == nil || en.res == nil || !en.res.Created {
			continue
		}
		if at, err := refs.createdAlone(en); err != nil {
			return fail(at, err)
		}
	}

	// 5. The conditional references whose match depended on what the
	// transaction wrote find exactly the resource they were resolved to.
	return refs.verify()
}

// errVersionedPlaceholder answers a version-specific reference
// ([fullUrl]/_history/n) to an entry whose resource the transaction gives
// an id of the server's choosing (fhirwire.Rewriter.Versioned).
var errVersionedPlaceholder = outcome.New(outcome.Invalid, "invalid", "reference-version-placeholder",
	"a version-specific reference (/_history/n) names an entry whose fullUrl is a placeholder (a urn, or the "+
		"RESTful fullUrl of a POST): the resource gets a new id from the server, so no version of the resource the "+
		"reference names will exist; reference the entry's fullUrl without /_history/n")

// overlap fails a transaction two of whose entries change the same
// resource (http.html#trules: "If any resource identities (including
// resolved identities from conditional update/delete) overlap in steps 1-3,
// then the transaction SHALL fail"): a DELETE, PUT or PATCH with any other
// entry of the same Type/id, and two POSTs that would both create it. A
// POST whose conditional create matched (a stored resource, or the one an
// earlier entry with the same criteria creates) changes nothing: it may
// share its resource with other such POSTs and with the POST that creates
// it. GET entries change nothing. The ids are the resolved ones, so
// conditional updates and patches that select one resource overlap too.
func overlap(entries []*Entry) error {
	type use struct {
		en      *Entry
		changes bool // DELETE, PUT, PATCH
		creates bool // a POST that creates the resource
	}
	seen := map[string][]use{}
	for _, en := range entries {
		if en.method == "GET" || en.id == "" {
			continue
		}
		u := use{en: en, changes: en.method != "POST", creates: en.method == "POST" && en.matched == nil && !en.again}
		k := en.typ + "/" + en.id
		for _, p := range seen[k] {
			if u.changes || p.changes || (u.creates && p.creates) {
				return &outcome.EntryError{Index: en.index, Err: outcome.New(outcome.Invalid, "invalid", "bundle-entry-identity-overlap",
					fmt.Sprintf("this entry and entry %d change the same resource (after resolving conditional "+
						"updates and patches), and a transaction may change a resource only once (http.html#trules); "+
						"merge them into one entry, or send them in separate transactions", p.en.index)).At("request")}
			}
		}
		seen[k] = append(seen[k], u)
	}
	return nil
}

// currentTargets returns, for each entry whose target is decided, the
// stored resource it matches (conditional create or update) or would
// replace or delete (PUT or DELETE Type/id); nil for the others.
func currentTargets(tx store.Tx, entries []*Entry) ([]*store.Resource, error) {
	current := make([]*store.Resource, len(entries))
	for i, en := range entries {
		switch {
		case en.matched != nil:
			current[i] = en.matched
		case (en.method == "PUT" || en.method == "DELETE") && en.query == "" && !en.pinned && en.id != "":
			r, err := tx.Read(en.typ, en.id)
			switch {
			case err == nil:
				current[i] = r
			case !errors.Is(err, store.ErrNotFound) && !errors.Is(err, store.ErrGone):
				return nil, err
			}
		}
	}
	return current, nil
}

// criteriaOf returns the conditional criteria of en: those of a
// conditional create (If-None-Exist) or update, or "".
func criteriaOf(en *Entry) string {
	switch {
	case en.method == "POST" && en.ifNoneExist != "":
		return en.ifNoneExist
	case en.method == "PUT" && en.query != "":
		return en.query
	}
	return ""
}

// lookup is what the store found for an entry's conditional criteria.
type lookup struct {
	q      *search.Query
	pinned string      // the id an _id criterion names
	key    string      // the criteria's conditional key
	page   *store.Page // the matches; nil when an earlier entry has the same key
	err    error       // the criteria are invalid, or their search failed
	// placeholders is set for criteria that name the fullUrl of an
	// entry (a reference or uri value): they are searched once the ids
	// are decided (searchPlaceholders), not with the others.
	placeholders bool
}

// lookUp parses the conditional criteria of entries (in the order their
// targets are decided) and searches them in one call, skipping criteria an
// earlier entry has (store.Tx.SearchEach: one round trip to PostgreSQL for
// all of them, where a search each took one each, 56 for a session
// record). Criteria naming a fullUrl of full are parsed but left to
// searchPlaceholders, as they need the ids of entries decided before
// theirs. It returns the lookup of each entry with criteria, by the index
// of entries (nil for the others). Nothing is written before the targets
// are decided, so each search finds what it would have found in its turn.
// An entry whose criteria are invalid holds the error, and the entries
// after it are not searched (they are never reached); so does the first
// entry whose criteria the store did not answer.
//
// A client's criteria of a type it searches through granular scopes get
// their restriction (restrictionClauses, after the key: the same criteria
// claim the same key whoever sends them): a conditional interaction finds
// only what a search of the caller would, never a resource the scopes do
// not grant.
func (e *Engine) lookUp(tx store.Tx, sc *auditlog.Scope, lim search.Limits, entries []*Entry, full map[string]bool, searches *readBudget) []*lookup {
	looks := make([]*lookup, len(entries))
	var qs []*search.Query
	var searched []*lookup
	clients := false // whether a client wrote some of the criteria
	seen := map[string]bool{}
	for i, en := range entries {
		c := criteriaOf(en)
		if c == "" {
			continue
		}
		l := &lookup{}
		looks[i] = l
		if l.q, l.err = lim.ParseConditional(en.typ, c); l.err != nil {
			l.err = searchError(l.err)
			break
		}
		if l.pinned, l.err = pinnedID(l.q); l.err != nil {
			break
		}
		var restriction []search.Clause
		if en.client {
			if restriction, l.err = restrictionClauses(sc, en.typ, "s"); l.err != nil {
				break
			}
		}
		if l.placeholders = namesPlaceholder(l.q, full); l.placeholders {
			l.q.Clauses = append(l.q.Clauses, restriction...)
			continue
		}
		l.key = search.Key(en.typ, l.q)
		l.q.Clauses = append(l.q.Clauses, restriction...)
		if !seen[l.key] {
			seen[l.key] = true
			qs, searched = append(qs, l.q), append(searched, l)
			clients = clients || en.client
		}
	}
	if len(qs) == 0 {
		return looks
	}
	// A client's criteria are searched in parts, so that the searches stop
	// soon after their budget is spent (an attacker's review: 600
	// conditional PUTs of 140 KB held the write lane for 158 s): first
	// lookUpChunk of them, then as many as their time so far says fit in
	// what is left of the budget. The gateway's own (a native record's
	// identifiers, one token each) are searched at once, in one call of
	// SearchEach (a round trip on PostgreSQL).
	pages := make([]*store.Page, len(qs))
	var err error
	size := len(qs)
	if clients {
		size = lookUpChunk
	}
	for start := 0; start < len(qs) && err == nil; {
		end := min(start+size, len(qs))
		left := searches.left
		err = searches.search(func() error {
			page, err := tx.SearchEach(qs[start:end])
			copy(pages[start:end], page)
			return err
		})
		if per := (left - searches.left) / time.Duration(end-start); per > 0 {
			size = max(1, int(searches.left/per))
		} else {
			size = len(qs)
		}
		start = end
	}
	for j, l := range searched {
		if l.page = pages[j]; l.page == nil {
			// The first entry whose criteria were not answered reports
			// the failure; the entries after it are never reached.
			l.err = err
			break
		}
	}
	return looks
}

// lookUpChunk is how many of a client's criteria lookUp searches for in
// its first call of the store's SearchEach.
const lookUpChunk = 8

// placeholderValues calls f with each value of q's clauses that can name
// an entry's fullUrl: a reference value written as a URL or urn (a
// Reference.reference the Bundle's rule rewrites) and a uri value (an
// element of type uri, rewritten too), as a pointer to change it. Token
// and string values (an identifier's value that equals a fullUrl) are
// data, as they are in the resources, and are not offered.
func placeholderValues(q *search.Query, f func(c search.Clause, v *search.Value, url string) error) error {
	for _, c := range q.Clauses {
		if c.Chain != nil || c.Has != nil || c.Missing != nil {
			continue
		}
		for i := range c.Values {
			v := &c.Values[i]
			switch {
			case c.Type == search.TypeReference && v.RefURL != "":
				if err := f(c, v, v.RefURL); err != nil {
					return err
				}
			case c.Type == search.TypeURI && c.Modifier == "":
				if err := f(c, v, v.Str); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// namesPlaceholder reports whether criteria q name a fullUrl of full.
func namesPlaceholder(q *search.Query, full map[string]bool) bool {
	found := errors.New("found")
	return placeholderValues(q, func(_ search.Clause, _ *search.Value, url string) error {
		if full[url] {
			return found
		}
		return nil
	}) != nil
}

// substitutePlaceholders replaces, in criteria q, each value naming a
// fullUrl of full by the identity ids gives that entry ("Type/id"): the
// criteria of a transaction's entry search for what the entry's resource
// will hold once its links are rewritten (http.html#trules). A fullUrl
// ids does not have yet is an entry processed after the one whose
// criteria these are (or that entry itself): Invalid
// criteria-placeholder-later, at the element expr of the entry.
func substitutePlaceholders(q *search.Query, ids map[string]string, full map[string]bool, expr string) error {
	// The values are changed in place: each run parses its criteria anew.
	return placeholderValues(q, func(c search.Clause, v *search.Value, url string) error {
		if !full[url] {
			return nil
		}
		to, ok := ids[url]
		if !ok {
			return outcome.New(outcome.Invalid, "invalid", "criteria-placeholder-later",
				"the criteria name the fullUrl of an entry processed after this one (or of this entry), whose id "+
					"is not decided when they are searched; entries are processed DELETEs first, then POSTs, then PUTs "+
					"and PATCHes, each in Bundle order: put this entry after the one it names, name a PUT's resource "+
					"by its Type/id, or send the two in separate transactions").At(expr)
		}
		if c.Type == search.TypeURI {
			v.Str = to
			return nil
		}
		typ, id, _ := strings.Cut(to, "/")
		v.RefType, v.RefID, v.RefURL = typ, id, ""
		return nil
	})
}

// searchPlaceholders searches the criteria of en's lookup l that name
// the fullUrls of other entries (lookup.placeholders), now that the
// entries processed before en have their ids: the fullUrls are replaced
// by those ids (substitutePlaceholders), and the criteria are searched
// unless an earlier entry has the same ones (claimed).
func searchPlaceholders(tx store.Tx, en *Entry, l *lookup, ids map[string]string, full map[string]bool, claimed map[string]string) error {
	expr := "request.url"
	if en.method == "POST" {
		expr = "request.ifNoneExist"
	}
	if err := substitutePlaceholders(l.q, ids, full, expr); err != nil {
		return err
	}
	l.key = search.Key(en.typ, l.q)
	if _, ok := claimed[l.key]; ok {
		return nil // resolveCriteria takes the earlier entry's resource
	}
	var err error
	l.page, err = tx.Search(l.q)
	return err
}

// resolveCriteria decides the target of a conditional create or update
// from the lookup of its criteria (l): the one resource they match, or a
// new one. A new resource takes the id an _id criterion names (so that the
// criteria find it again), else the id in the body of a conditional
// update, else a new server id. claimed maps the keys of criteria already
// decided in this transaction to their Type/id.
func resolveCriteria(en *Entry, l *lookup, claimed map[string]string) error {
	if l.err != nil {
		return l.err
	}
	q, pinned, key, page := l.q, l.pinned, l.key, l.page
	en.id = ""
	if ref, ok := claimed[key]; ok {
		// The same criteria earlier in this Bundle: the same resource.
		en.id, en.again = strings.TrimPrefix(ref, en.typ+"/"), true
		return nil
	}
	if page == nil { // not searched: lookUp skips only the keys of earlier entries, which claimed them
		return fmt.Errorf("engine: the criteria of entry %d were not searched", en.index)
	}
	switch len(page.Matches) {
	case 0:
		en.criteria = q
		switch {
		case pinned != "":
			if en.bodyID != "" && en.bodyID != pinned {
				return outcome.New(outcome.Invalid, "invalid", "id-mismatch",
					"the resource id differs from the id the _id criterion names").At(en.idExpr())
			}
			en.id, en.chosen, en.pinned = pinned, true, true
		case en.method == "PUT" && writableID(en.bodyID):
			en.id, en.chosen = en.bodyID, true
		default:
			en.id = en.newID()
		}
		if !en.pinned {
			// The key makes concurrent identical creates make one resource.
			// A pinned id needs none: the id itself is unique, and no key an
			// earlier write left can block it.
			en.key = key
		}
	case 1:
		en.matched = page.Matches[0]
		if en.method == "PUT" && en.bodyID != "" && en.bodyID != en.matched.ID {
			return outcome.New(outcome.Invalid, "invalid", "id-mismatch",
				"the resource id differs from the id of the resource the criteria select").At(en.idExpr())
		}
		en.id, en.chosen = en.matched.ID, false
		if en.method == "PUT" {
			en.key, en.updating = key, q
		}
	default:
		return outcome.New(outcome.PreconditionFailed, "multiple-matches", "conditional-multiple-matches",
			"the conditional criteria match more than one resource")
	}
	claimed[key] = en.typ + "/" + en.id
	return nil
}

// pinnedID returns the id an _id criterion of q names ("" without one). An
// _id criterion with several ids cannot name the id of a new resource.
func pinnedID(q *search.Query) (string, error) {
	id := ""
	for _, c := range q.Clauses {
		if c.Param != "_id" || c.Modifier != "" {
			continue
		}
		if len(c.Values) != 1 || (id != "" && id != c.Values[0].Code) {
			return "", outcome.New(outcome.Invalid, "invalid", "conditional-id-ambiguous",
				"conditional criteria with _id must name exactly one id")
		}
		id = c.Values[0].Code
	}
	if id != "" && !writableID(id) {
		return "", outcome.New(outcome.Invalid, "invalid", "search-value-invalid", "the _id criterion is not an id a "+
			"resource can be created at (a FHIR id other than . and ..)")
	}
	return id, nil
}

// execEntry performs one resolved entry for the caller of sc. A client's
// write through granular scopes must find the stored version (of an update,
// patch or delete) and leave the version it writes within their
// restriction (checkStored, checkWritten): otherwise it fails, and the
// whole transaction with it.
func (e *Engine) execEntry(tx store.Tx, sc *auditlog.Scope, en *Entry, rw *fhirwire.Rewriter, now time.Time) error {
	perm := writePerm(en.method)
	if !en.client || perm == 0 {
		return e.execResolved(tx, sc, en, rw, now)
	}
	if en.method == "PATCH" && !e.mayPatch(tx, sc, en.typ, en.id) {
		return errResourceUnkown
	}
	if en.method == "POST" && en.pinned && en.matched == nil && !en.again && e.hiddenAt(tx, sc, en.typ, en.id) {
		// The _id criterion names a resource hidden from the caller: as
		// another tenant's id, not creatable (createAt).
		return errIDTaken
	}
	if en.method != "POST" {
		// A stored version hidden from the caller is another tenant's
		// resource to it: an update answers errIDTaken (as update does for
		// a foreign id), a patch resource-unknown (as its read), a delete
		// changes nothing.
		switch err := e.checkStored(tx, sc, en.typ, en.id, perm); {
		case errors.Is(err, errForeign) && en.method == "PUT":
			return errIDTaken
		case errors.Is(err, errForeign) && en.method == "PATCH":
			return errResourceUnkown
		case errors.Is(err, errForeign):
			tx = hiding{Tx: tx, typ: en.typ, id: en.id}
		case err != nil:
			return err
		}
	}
	if err := e.execResolved(tx, sc, en, rw, now); err != nil {
		return err
	}
	if en.method == "DELETE" || en.res == nil || en.res.Resource == nil || en.method == "POST" && !en.res.Created {
		return nil
	}
	return checkWritten(sc, en.res.Resource, perm)
}

// execResolved is execEntry without the granular scopes' checks.
func (e *Engine) execResolved(tx store.Tx, sc *auditlog.Scope, en *Entry, rw *fhirwire.Rewriter, now time.Time) error {
	if en.client && en.typ == "Provenance" {
		if err := clientProvenance(tx, en); err != nil {
			return err
		}
	}
	if en.client {
		en.pre.blind = blindTo(sc, en.typ)
		en.mints = mayMint(sc)
		if err := e.clientIdentifiers(tx, en); err != nil {
			return err
		}
	}
	var err error
	switch en.method {
	case "PATCH":
		en.res, err = e.patchEntry(tx, en, rw, now)
	case "DELETE":
		en.res, err = e.remove(tx, en.typ, en.id, en.pre, now)
	case "POST":
		if en.again && en.matched == nil {
			// An earlier entry with the same criteria made the resource:
			// this one matches it, as it would in a later request.
			if r, err := tx.Read(en.typ, en.id); err == nil {
				en.matched = r
			}
		}
		if en.matched != nil {
			en.res = &Result{Status: fhirwire.StatusOK, Resource: en.matched}
			return nil
		}
		if en.pinned {
			// The id an _id criterion names: created where nothing lives.
			if en.res, err = e.createAt(tx, en.typ, en.id, en.doc, conditions{}, now, e.mayChoose(sc, en, 'c'), "POST"); err != nil {
				return err
			}
			return nil
		}
		var r *store.Resource
		if r, err = e.putRendered(tx, en, now); err != nil {
			return err
		}
		if en.key != "" {
			if err = tx.ClaimKey(en.key, en.typ, en.id); err != nil {
				return err
			}
		}
		en.res = &Result{Status: fhirwire.StatusCreated, Resource: r, Created: true}
	case "PUT":
		if en.pinned {
			en.res, err = e.createAt(tx, en.typ, en.id, en.doc, en.pre, now, e.mayChoose(sc, en, 'u'), "PUT")
			return err
		}
		en.res, err = e.update(tx, en.typ, en.id, en.doc, en.pre, now, e.mayChoose(sc, en, 'u'), "PUT")
		if err == nil && en.key != "" && (en.res.Created || keepKey(en)) {
			err = tx.ClaimKey(en.key, en.typ, en.id)
		}
	case "GET":
		err = e.getEntry(tx, sc, en, rw.IDs) // the fullUrls of the entries, all decided
	}
	return err
}

// keepKey reports whether the new version a conditional update wrote over
// the resource its criteria matched holds their conditional key again:
// the store drops a resource's keys with every version (store.Tx.Put),
// and a version its criteria still select would otherwise leave the key
// free while it stands. A conditional create that searched before the
// resource was committed (PostgreSQL's READ COMMITTED) would then claim
// the key and make a second resource, as concurrent first records of a
// patient did (two Patients: one record created it, the next added its
// MRN by this update). Where the criteria cannot be told from the index
// entries (search.SelectsStored), or no longer select the resource, the
// key stays free: a key held by a resource the criteria do not find would
// block every later create of them.
func keepKey(en *Entry) bool {
	if en.updating == nil || en.res.Unchanged || en.res.Resource == nil {
		return false // an unchanged resource wrote no version and kept its keys
	}
	selected, known := search.SelectsStored(en.updating, en.id, search.Extract(en.typ, en.doc))
	return known && selected
}

// clientProvenance checks a client's Provenance entry before it runs
// (provenanceWrite): a POST that matched nothing creates doc at an id of
// the server's choosing; a PUT, PATCH or DELETE writes at its id (a PATCH's
// result is checked again once applied: patchEntry).
func clientProvenance(tx store.Tx, en *Entry) error {
	switch {
	case en.method == "POST" && en.matched == nil && !en.again:
		if en.pinned {
			return provenanceWrite(tx, en.id, en.doc)
		}
		return provenanceWrite(tx, "", en.doc)
	case en.method == "PUT":
		return provenanceWrite(tx, en.id, en.doc)
	case en.method == "PATCH", en.method == "DELETE":
		return provenanceWrite(tx, en.id, nil)
	}
	return nil
}

// mayChoose reports whether en, a write needing perm, may create a
// resource with its id: always when the server chose the id or the
// application made the entry, else as choosesIDs says for the caller of sc.
func (e *Engine) mayChoose(sc *auditlog.Scope, en *Entry, perm byte) bool {
	return !en.chosen || !en.client || e.choosesIDs(sc, en.typ, perm)
}

// searchError classifies a search parse error: Invalid, naming the
// parameter.
func searchError(err error) error {
	var se *search.Error
	if errors.As(err, &se) {
		code := "invalid"
		if se.Rule == search.RuleLimitExceeded {
			code = "too-costly"
		}
		e := outcome.New(outcome.Invalid, code, se.Rule, se.Message)
		if se.Param != "" {
			e.Issues[0].Expression = se.Param
		}
		return e
	}
	return err
}

// touchEntries records processed entries in the audit scope (a GET
// entry's resources were recorded by the read interaction that answered
// it).
func (e *Engine) touchEntries(sc *auditlog.Scope, entries []*Entry, errs []error) {
	for i, en := range entries {
		if errs != nil && errs[i] != nil {
			e.nameRefused(sc, en)
			continue
		}
		if en.res == nil || en.method == "GET" {
			continue
		}
		if en.method == "DELETE" {
			sc.TouchDeletion(en.typ, en.id, en.res.Resource, en.res.Was)
			continue
		}
		var doc map[string]any
		if en.matched == nil {
			doc = en.doc // the document just stored: no need to decode it again
		}
		sc.TouchDoc(en.res.Resource, doc)
	}
}

// nameRefused names in sc the instance a failed entry targeted: a PUT,
// PATCH or DELETE of Type/id (a known type and a valid id: what the
// client sent may be neither), or one its criteria matched. A create
// targets no stored instance (its id, when decided, is the gateway's).
func (e *Engine) nameRefused(sc *auditlog.Scope, en *Entry) {
	if en.query != "" && en.matched == nil {
		return // conditional, and nothing matched: no instance (an id decided for a create is the gateway's)
	}
	switch en.method {
	case "PUT", "PATCH", "DELETE":
		if en.typ != "" && en.id != "" && e.checkInstance(en.typ, en.id) == nil {
			sc.NameRefused(en.typ, en.id)
		}
	}
}

// nameRefusedEntry names, for a transaction that err failed, the instance
// the entry err blames targeted (nameRefused).
func (e *Engine) nameRefusedEntry(sc *auditlog.Scope, entries []*Entry, err error) {
	var ee *outcome.EntryError
	if !errors.As(err, &ee) {
		return
	}
	for _, en := range entries {
		if en.index == ee.Index {
			e.nameRefused(sc, en)
		}
	}
}

// namesResource reports whether en's fullUrl names the resource it
// carries (a POST's or PUT's), which references and criteria in the
// Bundle may use as a placeholder. A PATCH carries none, though its
// document is set once it ran: decided by method, a later run of the
// transaction (after a conflict) sees the same placeholders as the first.
func (en *Entry) namesResource() bool {
	return en.doc != nil && en.method != "PATCH"
}

// linkAt puts the FHIRPath of the element a reference error names
// (fhirwire.LinkError) on its issues: the reference in the entry's resource
// (Bundle.entry[i].resource.ofType(Observation).subject.reference), which
// the client can find and fix, rather than the entry alone, and in place of
// what the issue named before (the search parameter of a conditional
// reference's criteria, which is not an element of the Bundle). An error
// that is not an *outcome.Error (a scope failure) is returned as it is.
func (en *Entry) linkAt(err error) error {
	var le *fhirwire.LinkError
	var oe *outcome.Error
	if !errors.As(err, &le) || !errors.As(le.Err, &oe) {
		return err
	}
	if en.rest || !en.client {
		return oe.At(le.Path)
	}
	return oe.At(nestedExpr(fmt.Sprintf("Bundle.entry[%d].resource", en.index), en.typ, le.Path))
}
