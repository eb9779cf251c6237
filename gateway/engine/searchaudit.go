package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// What a search's AuditEvent says of it. The matches and included
// resources on the page name their patients (Scope.Touch); the
// description counts what the answer carried, the total included: a
// count is a disclosure too ("23 Observations of this patient"), and an
// answer of the count only (_summary=count, _count=0) has no entry to
// name a patient by, so it names those its criteria name.

// searchDescription is the AuditEvent description of out, a search of
// typ whose matches were disclosed (out.Withheld counted): the total
// when the answer carried one (Searchset's rule), the matches on the
// page, the included resources, the withheld ones; for an answer of the
// count only, the total alone.
func searchDescription(typ string, out *SearchResult) string {
	q, page := out.Query, out.Page
	counted := (q.Total || q.SummaryCount) && page.Total >= 0
	switch {
	case q.SummaryCount && counted:
		return fmt.Sprintf("%s search: %s in all, the count only (no entries)", typ, matches(page.Total))
	case q.SummaryCount:
		return fmt.Sprintf("%s search: the count only, not counted (no entries)", typ)
	case counted:
		return fmt.Sprintf("%s search: %s in all, %d on this page, %d included, %d withheld", typ, matches(page.Total),
			len(page.Matches), len(page.Included), out.Withheld)
	}
	return fmt.Sprintf("%s search: %s on this page (total not counted), %d included, %d withheld", typ,
		matches(len(page.Matches)), len(page.Included), out.Withheld)
}

// matches is "1 match", "n matches".
func matches(n int) string {
	if n == 1 {
		return "1 match"
	}
	return fmt.Sprintf("%d matches", n)
}

// concernCriteria records, for a search of q answered with its count
// only, the Patients its criteria name (criteriaPatients) that st holds,
// live or deleted: the count disclosed something about each (how many of
// their records match, that they are a patient at all), while the answer
// has no entry to name them by. A Patient st does not hold (another
// tenant's, nobody's) is not named: the count said nothing about it, and
// an id a client made up does not enter the trail. Returns st's errors
// but not-found and gone.
func concernCriteria(ctx context.Context, sc *auditlog.Scope, st reader, q *search.Query) error {
	for _, id := range criteriaPatients(q) {
		p, err := st.Read(ctx, "Patient", id)
		switch {
		case err == nil, errors.Is(err, store.ErrGone) && p != nil:
			sc.ConcernIn(p.Tenant, "Patient/"+id)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
		default:
			return err
		}
	}
	return nil
}

// criteriaPatients returns, once each, the ids of the Patients the
// criteria of q select by: a reference to a Patient (patient=, subject=,
// subject:Patient=, a compartment's) in a clause that matches it (not
// :missing, :identifier, a chain or _has, whose Patients the criteria do
// not name), and in a search of Patients the ids an _id clause gives.
func criteriaPatients(q *search.Query) []string {
	var ids []string
	add := func(id string) {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, c := range q.Clauses {
		if c.Chain != nil || c.Has != nil || c.Missing != nil {
			continue
		}
		switch {
		case c.Type == search.TypeReference && c.Modifier != "identifier":
			for _, v := range c.Values {
				if v.RefType == "Patient" && v.RefURL == "" {
					add(v.RefID)
				}
			}
		case q.Type == "Patient" && c.Param == "_id" && c.Modifier == "":
			for _, v := range c.Values {
				add(v.Code)
			}
		}
	}
	return ids
}
