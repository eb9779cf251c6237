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
// those search.SelectsStored decides (_id, tokens, strings, references to
// a resource by type and id, :missing); a version whose match rests on
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
		selected, _ := search.SelectsStored(&search.Query{Type: r.Type, Clauses: f.Clauses}, r.ID, entries)
		return selected
	})
}
