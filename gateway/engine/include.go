package engine

import (
	"context"
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// include completes the included resources of out's page, which the
// store found from the matches, and leaves in it those the caller may be
// shown (Disclose; the others counted in out.Withheld). An
// _include:iterate or _revinclude:iterate (:recurse, its DSTU2 name, is
// the same) is then applied again to what the round before included, and
// so on until a round adds nothing new (search.html#include). Each round
// starts from what the caller was shown of the round before, never from a
// resource withheld from it, and its resources pass Disclose like the
// first round's: a link through a resource the caller may not see is not
// followed. The rounds are bounded: every resource included that the
// caller is told of (shown, or counted withheld) counts against
// Query.MaxIncluded (beyond it the search is refused,
// search-limit-exceeded, as for one round), and after Limits.IncludeRounds
// further rounds a round that would still add such resources is not run:
// the page answers what it has, and out.Warnings says the inclusion
// stopped. A resource a granular scope hides (which Disclose neither shows
// nor counts) counts toward neither: reacting to it would tell that it
// exists.
func (e *Engine) include(ctx context.Context, sc *auditlog.Scope, st reader, out *SearchResult) error {
	q, pg := out.Query, out.Page
	limit := q.MaxIncluded
	shown, withheld := e.Disclose(sc, pg.Included)
	count := len(shown) + withheld
	if limit > 0 && count > limit {
		return searchError(search.LimitError(limit))
	}
	iq := iterating(q)
	if iq == nil || len(shown) == 0 {
		pg.Included, out.Withheld = shown, out.Withheld+withheld
		return nil
	}
	seen := make(map[string]bool, len(pg.Matches)+len(pg.Included))
	for _, r := range pg.Matches {
		seen[r.Type+"/"+r.ID] = true
	}
	for _, r := range pg.Included {
		seen[r.Type+"/"+r.ID] = true
	}
	included, from := shown, shown
	size := bodies(pg.Included)
	for round := 1; len(from) > 0; round++ {
		// Each round's resources come to at most the page's size bound
		// (the store's refusal), and all the rounds' together too.
		more, err := st.Include(ctx, iq, from)
		if err != nil {
			return err
		}
		if size += bodies(more); q.MaxBytes > 0 && size > q.MaxBytes {
			return searchError(search.IncludedTooLarge(q.MaxBytes))
		}
		var fresh []*store.Resource
		for _, r := range more {
			if k := r.Type + "/" + r.ID; !seen[k] {
				seen[k] = true
				fresh = append(fresh, r)
			}
		}
		next, w := e.Disclose(sc, fresh)
		if len(next)+w == 0 {
			break
		}
		if rounds := e.limits.IncludeRounds; round > rounds {
			out.Warnings = append(out.Warnings, outcome.Issue{Severity: "warning", Code: "incomplete",
				Rule: "include-iterate-incomplete", Expression: "_include:iterate",
				Message: fmt.Sprintf("_include:iterate and _revinclude:iterate stopped after %d rounds; resources a "+
					"further round would include are not on the page (search them from the last ones included)", rounds)})
			break
		}
		if count += len(next) + w; limit > 0 && count > limit {
			return searchError(search.LimitError(limit))
		}
		from, withheld = next, withheld+w
		included = append(included, from...)
	}
	pg.Included, out.Withheld = included, out.Withheld+withheld
	return nil
}

// bodies is the bytes of the JSON of rs.
func bodies(rs []*store.Resource) int {
	n := 0
	for _, r := range rs {
		n += len(r.Body)
	}
	return n
}

// iterating returns a copy of q with only its :iterate includes, or nil
// when it has none.
func iterating(q *search.Query) *search.Query {
	var inc, rev []search.Include
	for _, i := range q.Includes {
		if i.Iterate {
			inc = append(inc, i)
		}
	}
	for _, i := range q.RevIncludes {
		if i.Iterate {
			rev = append(rev, i)
		}
	}
	if inc == nil && rev == nil {
		return nil
	}
	iq := *q
	iq.Includes, iq.RevIncludes = inc, rev
	return &iq
}
