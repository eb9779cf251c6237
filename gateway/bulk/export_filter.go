package bulk

import (
	"encoding/json"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// selectsAsOf reports whether r, the version of a resource as of the
// export's transaction time (one changed since), matched one of filters
// then: the store's index holds current versions only, so the version of
// then is decided here, from its own index entries (search.Extract). A
// _typeFilter narrows a disclosure (minimum necessary): a version is
// exported only when its match is certain. The clauses decided here are
// those search.Selects decides (_id, tokens, strings), references to a
// resource by type and id, and :missing; a version whose match rests on
// another kind (dates, quantities, _has, ...) is left out of this export,
// and the resource, changed after the transaction time, is in the next
// export _since it if it matches then (docs/bulk.md).
func selectsAsOf(filters []*search.Query, r *store.Resource) bool {
	var doc map[string]any
	if err := json.Unmarshal(r.Body, &doc); err != nil {
		return false
	}
	entries := search.Extract(r.Type, doc)
	return slices.ContainsFunc(filters, func(f *search.Query) bool {
		for _, c := range f.Clauses {
			if ok, known := selectsClause(r.Type, c, r.ID, entries); !ok || !known {
				return false
			}
		}
		return true
	})
}

// selectsClause tells whether c selects the resource typ/id with entries,
// and whether that can be told here. A reference parameter's literal
// references are where the stores keep them (search.ReferenceRows: an
// Observation's patient is its subject of type Patient).
func selectsClause(typ string, c search.Clause, id string, entries []search.Entry) (ok, known bool) {
	if c.Chain != nil || c.Has != nil {
		return false, false
	}
	param, refType := c.Param, ""
	if c.Type == search.TypeReference {
		param, refType = search.ReferenceRows(typ, c.Param)
	}
	isRef := func(e search.Entry) bool {
		return e.Param == param && e.Type == search.TypeReference && (refType == "" || e.RefType == refType)
	}
	switch {
	case c.Missing != nil:
		present := slices.ContainsFunc(entries, func(e search.Entry) bool {
			return isRef(e) || e.Param == c.Param && (c.Type != search.TypeReference || e.Type == search.TypeToken)
		})
		return present == !*c.Missing, true
	case c.Type == search.TypeReference && c.Modifier == "":
		if slices.ContainsFunc(c.Values, func(v search.Value) bool { return v.RefID == "" || v.RefType == "" }) {
			return false, false // a URL, or a bare id (of any type)
		}
		return slices.ContainsFunc(entries, func(e search.Entry) bool {
			return isRef(e) && slices.ContainsFunc(c.Values, func(v search.Value) bool {
				return e.RefType == v.RefType && e.RefID == v.RefID
			})
		}), true
	}
	return search.Selects(&search.Query{Clauses: []search.Clause{c}}, id, entries)
}
