package engine

import (
	"errors"
	"net/url"
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
func (t *Tx) Run(entries []*Entry) error {
	if err := t.e.runTransaction(t.st, entries, t.now); err != nil {
		return err
	}
	touchEntries(t.sc, entries, nil)
	return nil
}

// Provenance writes the Provenance p of the versions targets (nothing for
// none) and names it in the request's AuditEvent.
func (t *Tx) Provenance(p audit.Provenance, targets []*store.Resource) error {
	return t.e.audit.WriteProvenance(t.st, t.sc, p, targets, t.now)
}

// runTransaction processes entries atomically inside tx: it resolves
// conditional creates and updates, assigns ids, rewrites references to
// Bundle entries and conditional references, then executes DELETE, POST,
// PUT, GET in that order (http.html#trules). Any failure aborts it with an
// *outcome.EntryError.
func (e *Engine) runTransaction(tx store.Tx, entries []*Entry, now time.Time) error {
	ids := map[string]string{}     // fullUrl -> Type/id
	claimed := map[string]string{} // conditional key -> Type/id decided in this transaction
	fail := func(en *Entry, err error) error { return &outcome.EntryError{Index: en.index, Err: err} }

	// 1. Decide every entry's target.
	for _, en := range entries {
		en.matched, en.key, en.res, en.get = nil, "", nil, nil
		criteria := ""
		switch {
		case en.method == "POST" && en.ifNoneExist != "":
			criteria = en.ifNoneExist
		case en.method == "PUT" && en.id == "":
			criteria = en.query
		}
		if criteria != "" {
			q, err := search.ParseConditional(en.typ, criteria)
			if err != nil {
				return fail(en, searchError(err))
			}
			en.key = search.Key(en.typ, q)
			if ref, ok := claimed[en.key]; ok {
				// The same criteria earlier in this Bundle: the same resource.
				en.id = strings.TrimPrefix(ref, en.typ+"/")
			} else {
				page, err := tx.Search(q)
				if err != nil {
					return fail(en, err)
				}
				switch len(page.Matches) {
				case 0:
					if en.method == "PUT" && fhirwire.ValidID(en.bodyID) {
						en.id = en.bodyID
					}
					if en.id == "" {
						en.id = store.NewID()
					}
				case 1:
					en.matched = page.Matches[0]
					if en.method == "PUT" && en.bodyID != "" && en.bodyID != en.matched.ID {
						return fail(en, outcome.New(outcome.Invalid, "invalid", "id-mismatch",
							"the resource id differs from the id of the resource the criteria select"))
					}
					en.id = en.matched.ID
				default:
					return fail(en, outcome.New(outcome.PreconditionFailed, "multiple-matches", "conditional-multiple-matches",
						"the conditional criteria match more than one resource"))
				}
				claimed[en.key] = en.typ + "/" + en.id
			}
		}
		if en.method == "POST" && en.id == "" {
			en.id = store.NewID()
		}
		if en.fullURL != "" && en.doc != nil {
			ids[en.fullURL] = en.typ + "/" + en.id
		}
	}

	// 2. Rewrite references (one rule for the whole gateway: fhirwire).
	rw := fhirwire.Rewriter{
		IDs:         ids,
		Conditional: func(typ, query string) (string, error) { return e.resolveConditionalRef(tx, typ, query) },
		Unresolved: outcome.New(outcome.Invalid, "not-found", "reference-unresolved",
			"a reference names a urn that is not the fullUrl of any entry of the Bundle"),
	}
	for _, en := range entries {
		if en.doc == nil {
			continue
		}
		if err := rw.Rewrite(en.doc); err != nil {
			return fail(en, err)
		}
	}

	// 3. Render the resources the POSTs create on every core (marshalling
	// and index extraction need no database), then execute in the spec's
	// order; ties keep Bundle order.
	render(entries, now)
	order := append([]*Entry(nil), entries...)
	sort.SliceStable(order, func(i, j int) bool {
		return fhirwire.MethodRank(order[i].method) < fhirwire.MethodRank(order[j].method)
	})
	for _, en := range order {
		if err := e.execEntry(tx, en, now); err != nil {
			return fail(en, err)
		}
	}
	return nil
}

// execEntry performs one resolved entry.
func (e *Engine) execEntry(tx store.Tx, en *Entry, now time.Time) error {
	var err error
	switch en.method {
	case "DELETE":
		en.res, err = e.remove(tx, en.typ, en.id, now)
	case "POST":
		if en.matched != nil {
			en.res = &Result{Status: fhirwire.StatusOK, Resource: en.matched}
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
		en.res, err = e.update(tx, en.typ, en.id, en.doc, en.ifMatch, now)
		if err == nil && en.key != "" && en.res.Created {
			err = tx.ClaimKey(en.key, en.typ, en.id)
		}
	case "GET":
		en.get, err = e.getEntry(tx, en)
	}
	return err
}

// getEntry answers a GET entry: a read, a vread or a search.
func (e *Engine) getEntry(tx store.Tx, en *Entry) (any, error) {
	if en.id == "" {
		vals, err := url.ParseQuery(en.query)
		if err != nil {
			return nil, outcome.New(outcome.Invalid, "invalid", "search-value-invalid", "the search query is malformed")
		}
		q, err := search.Parse(en.typ, vals, false)
		if err != nil {
			return nil, searchError(err)
		}
		page, err := tx.Search(q)
		if err != nil {
			return nil, err
		}
		b := fhirwire.Bundle{ResourceType: "Bundle", Type: fhirwire.TypeSearchset}
		if page.Total >= 0 {
			b.Total = &page.Total
		}
		for _, r := range page.Matches {
			b.Entry = append(b.Entry, fhirwire.Entry{FullURL: r.Type + "/" + r.ID, Resource: r.Body,
				Search: &fhirwire.Search{Mode: fhirwire.ModeMatch}})
		}
		return b, nil
	}
	r, err := tx.Read(en.typ, en.id)
	if err != nil {
		return nil, err
	}
	if en.vid != 0 && en.vid != r.Version {
		return nil, outcome.New(outcome.NotFound, "not-found", "version-unknown", "only the current version can be read inside a transaction")
	}
	en.res = &Result{Status: fhirwire.StatusOK, Resource: r}
	return r, nil
}

// resolveConditionalRef resolves Type?criteria to the one matching resource.
func (e *Engine) resolveConditionalRef(tx store.Tx, typ, query string) (string, error) {
	if !e.v.KnownType(typ) {
		return "", outcome.New(outcome.Invalid, "invalid", "reference-format", "a conditional reference must start with a resource type")
	}
	q, err := search.ParseConditional(typ, query)
	if err != nil {
		return "", searchError(err)
	}
	page, err := tx.Search(q)
	if err != nil {
		return "", err
	}
	switch len(page.Matches) {
	case 1:
		return typ + "/" + page.Matches[0].ID, nil
	case 0:
		return "", outcome.New(outcome.Invalid, "not-found", "conditional-reference-unresolved", "a conditional reference matches no resource")
	default:
		return "", outcome.New(outcome.PreconditionFailed, "multiple-matches", "conditional-multiple-matches", "a conditional reference matches more than one resource")
	}
}

// urnReference reports whether a document references a urn: (an entry of
// the same Bundle).
func urnReference(node any) bool {
	switch n := node.(type) {
	case map[string]any:
		for k, v := range n {
			if ref, ok := v.(string); ok && k == "reference" && strings.HasPrefix(ref, "urn:") {
				return true
			}
			if urnReference(v) {
				return true
			}
		}
	case []any:
		for _, v := range n {
			if urnReference(v) {
				return true
			}
		}
	}
	return false
}

// searchError classifies a search parse error: Invalid, naming the
// parameter.
func searchError(err error) error {
	var se *search.Error
	if errors.As(err, &se) {
		e := outcome.New(outcome.Invalid, "invalid", se.Rule, se.Message)
		if se.Param != "" {
			e.Issues[0].Expression = se.Param
		}
		return e
	}
	return err
}

// touchEntries records processed entries in the audit scope.
func touchEntries(sc *auditlog.Scope, entries []*Entry, errs []error) {
	for i, en := range entries {
		if errs != nil && errs[i] != nil || en.res == nil {
			continue
		}
		var doc map[string]any
		if en.method != "GET" && en.matched == nil {
			doc = en.doc // the document just stored: no need to decode it again
		}
		sc.TouchDoc(en.res.Resource, doc)
	}
}
