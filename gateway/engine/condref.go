package engine

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// condRefs resolves the conditional references (Type?criteria) of one run
// of a transaction. http.html#trules resolves them last (step 5), after the
// DELETE, POST, PUT and PATCH entries: a reference's criteria find the
// stored resources the transaction leaves as they are, and the resources it
// writes, so a reference by the criteria of a Patient the same Bundle
// creates finds that Patient. Exactly one match is the target; none and
// several fail the transaction, as they fail for stored resources.
//
// The references are rewritten before anything is written (the resources
// are stored once, with their references), so the state after the writes
// is worked out beforehand: the stored matches, less the resources the
// transaction deletes or writes again, plus each resource the transaction
// writes that the criteria certainly select (the conditional create or
// update of equivalent criteria made it, or its own index entries are
// selected by criteria of _id, token and string clauses: search.Selects).
// Where that cannot be told without the store (other kinds of criteria
// over a resource the transaction writes, a patch's result), the reference
// takes a candidate and verify searches the criteria again once everything
// is written: unless they then find exactly that resource, the transaction
// fails.
//
// A conditional reference a client sent is a search of the type it names,
// whose answer the client learns (the match's id in the resource written,
// or whether there is one): it needs search (s) on that type and read or
// search on the types its chains and _has go through, as the search itself
// does, checked before anything is searched (403 naming the entry). The
// references of the gateway's own entries (a native ingest's, a replay's)
// are the gateway's criteria, not the caller's, and are not checked.
type condRefs struct {
	e       *Engine
	sc      *auditlog.Scope
	tx      store.Tx
	lim     search.Limits // the criteria are parsed within them, on the request's base
	entries []*Entry
	// ids and full are the transaction's fullUrls: the identity each
	// entry was given, and those that name an entry's resource. Criteria
	// naming one search for that identity (substitutePlaceholders).
	ids    map[string]string
	full   map[string]bool
	cur    *Entry              // the entry whose references are being rewritten
	memo   map[string]*condRef // by the criteria's key
	order  []*condRef          // to verify, in the order first met
	byType map[string]*typeWrites
	// searches is the transaction's budget of search time (runTransaction).
	searches *readBudget
	rows     map[*Entry][]search.Entry // the index entries of written resources, extracted once
}

// condRef is one conditional reference's resolution.
type condRef struct {
	q      *search.Query
	key    string // the criteria's search.Key
	en     *Entry // the first entry that holds it
	ref    string // "Type/id"
	err    error
	verify bool // the match must be confirmed by a search after the writes
}

// resolve resolves Type?criteria to "Type/id" (the fhirwire.Rewriter's
// Conditional); the same criteria resolve once per run.
func (c *condRefs) resolve(typ, query string) (string, error) {
	if !c.e.v.KnownType(typ) {
		return "", outcome.New(outcome.Invalid, "invalid", "reference-format", "a conditional reference must start with a resource type")
	}
	client := c.cur != nil && c.cur.client
	if client {
		if err := allow(c.sc, typ, 's'); err != nil {
			return "", err
		}
	}
	q, err := c.lim.ParseConditional(typ, query)
	if err != nil {
		return "", searchError(err)
	}
	if client {
		if err := allowLinked(c.sc, q); err != nil {
			return "", err
		}
	}
	// A reference or uri value naming an entry's fullUrl is the identity
	// that entry was given, as in the resources' links; every entry's is
	// decided before references are resolved.
	if err := substitutePlaceholders(q, c.ids, c.full, ""); err != nil {
		return "", err
	}
	key := search.Key(typ, q)
	if r, ok := c.memo[key]; ok {
		return r.ref, r.err
	}
	if client {
		// As lookUp: the client's criteria find only what its search would.
		if err := restrict(c.sc, q); err != nil {
			return "", err
		}
	}
	r := &condRef{q: q, key: key, en: c.cur}
	c.memo[key] = r
	r.ref, r.verify, r.err = c.decide(typ, key, q)
	if r.verify {
		c.order = append(c.order, r)
	}
	return r.ref, r.err
}

// match says whether criteria select a resource a transaction writes.
type match uint8

const (
	matchNo match = iota
	matchYes
	matchUnknown // only a search after the writes can tell
)

// search is the transaction's search for q, charged to its budget.
func (c *condRefs) search(q *search.Query) (page *store.Page, err error) {
	err = c.searches.search(func() error {
		page, err = c.tx.Search(q)
		return err
	})
	return page, err
}

// decide resolves the criteria q (key: search.Key) of type typ against the
// state the transaction leaves (see condRefs).
func (c *condRefs) decide(typ, key string, q *search.Query) (ref string, verify bool, err error) {
	w := c.writesOf(typ)
	replaced, writes := w.replaced, w.writes
	sq := *q
	sq.Count = q.Count + len(replaced) // enough to see two that stay
	page, err := c.search(&sq)
	if err != nil {
		return "", false, err
	}
	// A set: a patch's reference is resolved as it runs, when the
	// resources the POSTs created are stored already.
	var ids, maybe []string
	add := func(list *[]string, id string) {
		if !slices.Contains(ids, id) && !slices.Contains(*list, id) {
			*list = append(*list, id)
		}
	}
	for _, m := range page.Matches {
		if !replaced[m.ID] {
			add(&ids, m.ID)
		}
	}
	for _, en := range writes {
		switch c.writtenMatch(en, key, q) {
		case matchYes:
			add(&ids, en.id)
		case matchUnknown:
			add(&maybe, en.id)
		}
	}
	switch {
	case len(ids) > 1:
		return "", false, errCondRefMultiple
	case len(ids) == 1:
		return typ + "/" + ids[0], len(maybe) > 0, nil
	case len(maybe) > 0:
		return typ + "/" + maybe[0], true, nil
	}
	return "", false, errCondRefNone
}

// typeWrites is what a transaction does to the resources of one type.
type typeWrites struct {
	replaced map[string]bool // ids whose stored content no longer counts: DELETE, PUT, PATCH targets
	writes   []*Entry        // the entries that write a resource (judged as written)
	// byToken are the writes by the codes they are indexed with
	// (param|code), made when first asked (candidates).
	byToken map[string][]*Entry
}

// rowsOf returns the index entries of the resource en writes: those the
// store indexed (a POST's, rendered), else extracted from its document,
// once a run. Only _id, token and string entries are read from them
// (search.Selects, search.Satisfies), which rewriting references does not
// change.
func (c *condRefs) rowsOf(en *Entry) []search.Entry {
	if rows, ok := c.rows[en]; ok {
		return rows
	}
	var rows []search.Entry
	if en.rendered != nil && en.rendered.err == nil {
		rows = en.rendered.entries
	} else {
		rows = search.Extract(en.typ, en.doc)
	}
	if c.rows == nil {
		c.rows = map[*Entry][]search.Entry{}
	}
	c.rows[en] = rows
	return rows
}

// candidates returns the resources of typ the transaction writes that
// criteria q might select: those indexed with a code of q's first token
// clause that decides by code (no modifier, a code in every value), else
// every one, so that a Bundle of many conditional creates of one type is
// not judged pair by pair.
func (c *condRefs) candidates(typ string, q *search.Query) []*Entry {
	w := c.writesOf(typ)
	if len(w.writes) < 2 {
		return nil // only the resource the criteria made
	}
	for _, cl := range q.Clauses {
		if cl.Type != search.TypeToken || cl.Modifier != "" || cl.Chain != nil || cl.Has != nil || cl.Missing != nil ||
			strings.HasPrefix(cl.Param, "_") || len(cl.Values) == 0 ||
			slices.ContainsFunc(cl.Values, func(v search.Value) bool { return v.Code == "" }) {
			continue
		}
		if w.byToken == nil {
			w.byToken = map[string][]*Entry{}
			for _, en := range w.writes {
				seen := map[string]bool{}
				for _, r := range c.rowsOf(en) {
					if k := r.Param + "|" + r.Code; r.Type == search.TypeToken && !seen[k] {
						seen[k] = true
						w.byToken[k] = append(w.byToken[k], en)
					}
				}
			}
		}
		var out []*Entry
		for _, v := range cl.Values {
			out = append(out, w.byToken[cl.Param+"|"+v.Code]...)
		}
		return out
	}
	return w.writes
}

// createdAlone checks, once everything is written, the resource en made
// by a conditional create or update (its criteria matched nothing stored):
// its criteria must select it, else they would never find it again, a
// second identical request would make another, and its conditional key
// would block a later create that the criteria rightly find nothing for
// (conditional-criteria-unmatched); and it must be the only resource the
// transaction leaves that they select, else each later request with them
// would find several, for good (conditional-create-duplicate: two
// conditional creates of different criteria that both select the Patient
// each makes, or a plain POST, PUT or patch whose resource they select;
// the same criteria twice are decided once, resolveCriteria). Both are
// told from the written resources' index entries where certain
// (search.Satisfies, search.Selects), else by one search of the criteria.
// Returns the entry to blame with the failure.
func (c *condRefs) createdAlone(en *Entry) (*Entry, error) {
	key := search.Key(en.typ, en.criteria)
	self := search.Satisfies(en.criteria, c.rowsOf(en))
	unsure := !self
	for _, o := range c.candidates(en.typ, en.criteria) {
		if o == en || o.id == en.id {
			continue
		}
		switch c.writtenMatch(o, key, en.criteria) {
		case matchYes:
			return errDuplicate(en, o)
		case matchUnknown:
			unsure = true
		}
	}
	if !unsure {
		return nil, nil
	}
	// What the criteria find now: nothing was stored that they selected,
	// so only the transaction's writes, this resource among them if it
	// matches.
	q := *en.criteria
	q.Count, q.Offset, q.Total, q.SummaryCount, q.Sort = len(c.writesOf(en.typ).writes)+1, 0, false, false, nil
	q.Includes, q.RevIncludes = nil, nil
	page, err := c.search(&q)
	if err != nil {
		return en, err
	}
	found := self
	for _, m := range page.Matches {
		if m.ID == en.id {
			found = true
			continue
		}
		for _, o := range c.writesOf(en.typ).writes {
			if o.id == m.ID {
				return errDuplicate(en, o)
			}
		}
	}
	if !found {
		return en, outcome.New(outcome.Invalid, "invalid", "conditional-criteria-unmatched",
			"the resource does not match its own conditional criteria, so they would never find it again; "+
				"make the resource match them (for example, give it the identifier they name)")
	}
	return nil, nil
}

// errDuplicate is the failure of a transaction in which the criteria of
// en, which made a resource, also select the resource o writes: at the
// later of the two entries, naming the other.
func errDuplicate(en, o *Entry) (*Entry, error) {
	at := en
	if o.index > en.index {
		at = o
	}
	what := fmt.Sprintf("the conditional criteria of entry %d (Bundle.entry[%d]) select the resource it creates and "+
		"the one entry %d (Bundle.entry[%d]) writes", en.index, en.index, o.index, o.index)
	return at, outcome.New(outcome.PreconditionFailed, "multiple-matches", "conditional-create-duplicate",
		what+", so this transaction would leave two resources they select, and every later request with them "+
			"would find several; give both entries the same criteria (they then make one resource), merge them "+
			"into one entry, or make the criteria select only their own resource").At("request")
}

// writesOf returns what the transaction does to resources of typ (worked
// out once per type and run).
func (c *condRefs) writesOf(typ string) *typeWrites {
	if w, ok := c.byType[typ]; ok {
		return w
	}
	w := &typeWrites{replaced: map[string]bool{}}
	for _, en := range c.entries {
		if en.typ != typ || en.id == "" {
			continue
		}
		switch en.method {
		case "DELETE":
			w.replaced[en.id] = true
		case "PUT", "PATCH":
			w.replaced[en.id] = true
			w.writes = append(w.writes, en)
		case "POST":
			if en.matched == nil && !en.again { // a POST that matched writes nothing
				w.writes = append(w.writes, en)
			}
		}
	}
	if c.byType == nil {
		c.byType = map[string]*typeWrites{}
	}
	c.byType[typ] = w
	return w
}

// writtenMatch says whether the criteria q (key: search.Key) select the
// resource en writes.
func (c *condRefs) writtenMatch(en *Entry, key string, q *search.Query) match {
	if en.method == "PATCH" || en.doc == nil {
		return matchUnknown // the patched content exists only once the patch ran
	}
	if en.criteria != nil && search.Key(en.typ, en.criteria) == key {
		// Made by a conditional create or update of the same criteria,
		// which runTransaction checks it matches.
		return matchYes
	}
	switch selected, known := search.Selects(q, en.id, c.rowsOf(en)); {
	case !known:
		return matchUnknown
	case selected:
		return matchYes
	}
	return matchNo
}

// verify searches, after the transaction's writes, the criteria of the
// references whose match decide could not be sure of: each must find
// exactly the resource it was resolved to.
func (c *condRefs) verify() error {
	for _, r := range c.order {
		if r.err != nil {
			continue
		}
		page, err := c.search(r.q)
		if err != nil {
			return err
		}
		var err2 *outcome.Error
		switch {
		case len(page.Matches) == 0:
			err2 = errCondRefNone
		case len(page.Matches) > 1:
			err2 = errCondRefMultiple
		case r.q.Type+"/"+page.Matches[0].ID != r.ref:
			err2 = outcome.New(outcome.Invalid, "invalid", "conditional-reference-undecided",
				"a conditional reference's criteria select a resource this transaction writes in a way the gateway "+
					"can tell only after writing, and it is another resource than the one the reference was resolved to; "+
					"reference that resource by its fullUrl instead")
		}
		if err2 != nil {
			return &outcome.EntryError{Index: r.en.index, Err: c.at(r, err2)}
		}
	}
	return nil
}

// at puts on err, the failure of the conditional reference r found by
// verify, the FHIRPath of the element of r.en's resource that holds it (the
// first, when the entry holds the same criteria twice), as a failure found
// while rewriting has (Entry.linkAt). The document is gone over again as it
// was sent, by a Rewriter that stops at the reference whose criteria are
// r's; the transaction fails, and a run after this one starts from the
// document as sent anyway. A patch's references are in the patched result,
// not in the entry: its failure names the entry alone.
func (c *condRefs) at(r *condRef, err *outcome.Error) error {
	en := r.en
	if en == nil || en.doc == nil || en.method == "PATCH" {
		return err
	}
	found := errors.New("found")
	var back fhirwire.Changes
	en.rewrites.Restore()
	rw := fhirwire.Rewriter{
		Changes: &back,
		Local:   func(ref string) string { return search.LocalReference(c.lim.Base, ref) },
		Conditional: func(typ, query string) (string, error) {
			q, perr := c.lim.ParseConditional(typ, query)
			if perr == nil && substitutePlaceholders(q, c.ids, c.full, "") == nil && search.Key(typ, q) == r.key {
				return "", found
			}
			return typ + "/other", nil
		},
	}
	lerr := rw.Rewrite(en.doc)
	back.Restore()
	var le *fhirwire.LinkError
	if !errors.Is(lerr, found) || !errors.As(lerr, &le) {
		return err
	}
	return en.linkAt(&fhirwire.LinkError{Path: le.Path, Err: err})
}

var (
	errCondRefNone = outcome.New(outcome.Invalid, "not-found", "conditional-reference-unresolved",
		"a conditional reference matches no resource, stored or written by this transaction")
	errCondRefMultiple = outcome.New(outcome.PreconditionFailed, "multiple-matches", "conditional-multiple-matches",
		"a conditional reference matches more than one resource, stored or written by this transaction")
)
