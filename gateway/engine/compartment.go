package engine

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The patient compartment (compartmentdefinition-patient.html): a search
// of one type confined to one patient (GET /fhir/Patient/{id}/{type}) and
// $everything (GET /fhir/Patient/{id}/$everything). Membership is the
// type's search.PatientCompartment parameter; every resource returned
// passes Visible.

var errCompartmentUnknown = outcome.New(outcome.NotFound, "not-supported", "compartment-unknown",
	"the gateway supports the Patient compartment only (/fhir/Patient/{id}/{type})")

// errCompartmentAll answers Patient/id/* (http.html#search: a search
// across all types of a compartment), which the gateway does not have;
// $everything is the whole chart.
var errCompartmentAll = outcome.New(outcome.NotFound, "not-supported", "search-system-unsupported",
	"the gateway does not search all types of a compartment at once (Patient/{id}/*): search one type with "+
		"GET /fhir/Patient/{id}/{type}, or take the patient's whole record with GET /fhir/Patient/{id}/$everything "+
		"(_type lists the types)")

// SearchCompartment searches typ within the compartment of Patient id
// (compartment must be "Patient"): the search typ?params with the
// patient's compartment parameter added. A type outside the patient
// compartment is Invalid, "*" (all types at once) NotFound; the rest is
// Search's contract.
func (e *Engine) SearchCompartment(ctx context.Context, sc *auditlog.Scope, compartment, id, typ string, params url.Values, lenient bool) (*SearchResult, error) {
	return e.searchCompartment(ctx, sc, reads{}, compartment, id, typ, params, lenient)
}

// searchCompartment is SearchCompartment with what in reads from.
func (e *Engine) searchCompartment(ctx context.Context, sc *auditlog.Scope, in reads, compartment, id, typ string, params url.Values, lenient bool) (*SearchResult, error) {
	if compartment != "Patient" {
		return nil, errCompartmentUnknown
	}
	if err := e.checkInstance(compartment, id); err != nil {
		return nil, err
	}
	if typ == "*" {
		return nil, errCompartmentAll
	}
	if err := e.checkType(typ); err != nil {
		return nil, err
	}
	param, ok := search.PatientCompartment(typ)
	if !ok {
		return nil, outcome.New(outcome.Invalid, "not-supported", "compartment-type-unsupported",
			typ+" is not in the Patient compartment")
	}
	c := search.Clause{Param: param, Type: search.TypeReference, Values: []search.Value{{RefType: "Patient", RefID: id}}}
	if param == "_id" {
		c = search.Clause{Param: "_id", Type: search.TypeToken, Values: []search.Value{{Code: id}}}
	}
	if in.tx == nil && sc.TenantOf() == search.AllTenants {
		// The chart of the patient's tenant only (chartReads); a patient
		// no tenant holds has an empty compartment, as for anyone.
		patient, err := e.reader(sc, in).Read(ctx, "Patient", id)
		switch {
		case err == nil, errors.Is(err, store.ErrGone) && patient != nil:
			in = chartReads(sc, in, patient.Tenant)
		case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrGone):
			in = chartReads(sc, in, search.NoTenant)
		default:
			return nil, err
		}
	}
	return e.search(ctx, sc, in, typ, params, lenient, []search.Clause{c})
}

// Everything is Patient/id/$everything (patient-operation-everything.html):
// the Patient, first, and the resources of its compartment the caller may
// see, one page of them (newest last), with the parameters _count (default 50,
// at most 1000), _offset (the paging cursor), _since (an instant: only
// resources updated since), _type (a comma list of compartment types), and
// start and end (dates: a period of care, see search.Compartment; the
// Patient is there whatever they say).
// Without _type the types are those the caller's scopes let it read or
// search, but AuditEvent, which only a _type naming it adds; a _type the
// scopes do not allow is Forbidden. The caller needs
// to read the Patient; an unknown Patient is NotFound, a deleted one Gone.
func (e *Engine) Everything(ctx context.Context, sc *auditlog.Scope, id string, params url.Values) (*SearchResult, error) {
	return e.everything(ctx, sc, reads{}, id, params)
}

// everything is Everything with what in reads from.
func (e *Engine) everything(ctx context.Context, sc *auditlog.Scope, in reads, id string, params url.Values) (*SearchResult, error) {
	if err := e.checkInstance("Patient", id); err != nil {
		return nil, err
	}
	if err := allow(sc, "Patient", 'r'); err != nil {
		return nil, err
	}
	q := &search.Query{Count: search.DefaultCount, Total: true, Compartment: &search.Compartment{PatientID: id},
		MaxBytes: e.limits.PageBytes}
	bad := func(param, msg string) error {
		return outcome.New(outcome.Invalid, "invalid", search.RuleValueInvalid, msg).At(param)
	}
	for key, vals := range params {
		if len(vals) > 1 {
			return nil, bad(key, "a parameter of $everything is given more than once")
		}
		v := vals[0]
		switch key {
		case "_count", "_offset":
			// _count=0 is the total only, as a search's (search.html#count).
			n, ok := search.NonNegative(v)
			if !ok {
				return nil, bad(key, key+" must be a non-negative integer")
			}
			if key == "_count" {
				q.Count = min(n, search.MaxCount)
				q.SummaryCount = n == 0
			} else {
				q.Offset = n
			}
		case "_since":
			t, msg := search.ParseSince(v)
			if msg != "" {
				return nil, bad(key, msg)
			}
			q.Clauses = append(q.Clauses, search.Clause{Param: "_lastUpdated", Type: search.TypeDate,
				Values: []search.Value{{Prefix: search.PrefixGe, Low: t.UTC(), High: t.UTC()}}})
		case "start", "end":
			low, high, ok := search.DateRange(v)
			if !ok && search.PlusAsSpace(v) {
				return nil, bad(key, key+" holds a space where its time zone's + was: "+search.PlusAdvice)
			}
			if !ok {
				return nil, bad(key, key+" must be a date (YYYY, YYYY-MM or YYYY-MM-DD; a dateTime with its time zone is taken too)")
			}
			if !hasZone(v) {
				// R4 datatypes.html#dateTime: a time needs its zone. A
				// Parameters' valueDateTime without one is refused by R4's
				// structure; the URL's is refused alike, not guessed in
				// UTC (a clinic's local evening would shift by hours).
				return nil, bad(key, key+" has a time without a time zone: a dateTime with a time must end in Z or "+
					"an offset (+hh:mm, sent as %2B, or -hh:mm), or give a date alone (YYYY-MM-DD)")
			}
			if key == "start" {
				q.Compartment.Start = low
			} else {
				q.Compartment.End = high
			}
		case "_type":
			for _, t := range strings.Split(v, ",") {
				if _, ok := search.PatientCompartment(t); !ok {
					return nil, bad(key, "_type lists a type that is not in the Patient compartment")
				}
				if err := allowSee(sc, t); err != nil {
					return nil, err
				}
				if restrictedFor(sc, t, "rs") {
					return nil, unenforceable(everythingRestricted(t, id))
				}
				if !slices.Contains(q.Types, t) {
					q.Types = append(q.Types, t)
				}
			}
		case "_format", "_pretty":
		default:
			return nil, outcome.New(outcome.Invalid, "not-supported", search.RuleParamUnsupported,
				"$everything takes start, end, _since, _type, _count and _offset").At(search.ShownName("Patient", key))
		}
	}
	if cp := q.Compartment; !cp.Start.IsZero() && !cp.End.IsZero() && cp.End.Before(cp.Start) {
		return nil, bad("end", "end is before start: the period of care is empty")
	}
	var left []string // types read through granular scopes only: not in $everything
	if q.Types == nil {
		for _, t := range search.PatientCompartmentTypes() {
			// The audit trail is the gateway's record of who saw the
			// chart, not the chart: it grows with every read of it
			// ($everything's own included) and names other patients'
			// resources. It is there only when _type names it (or by
			// AuditEvent?patient=).
			if t == "AuditEvent" {
				continue
			}
			if allowSee(sc, t) != nil {
				continue
			}
			if restrictedFor(sc, t, "rs") {
				left = append(left, t)
				continue
			}
			q.Types = append(q.Types, t)
		}
	}
	patient, err := e.reader(sc, in).Read(ctx, "Patient", id)
	if err != nil {
		return nil, err
	}
	if !e.Visible(sc, patient) {
		return nil, errResourceUnkown
	}
	// The Patient is always the first entry of the first page, whatever
	// _type and _since say (clients take it from entry[0]); the other
	// resources follow, so the store pages them one place later.
	// _count=0 asks for the total only: the store counts (a query of 0),
	// and the page holds no Patient either.
	rest := *q
	rest.Types = slices.DeleteFunc(slices.Clone(q.Types), func(t string) bool { return t == "Patient" })
	switch {
	case q.Count == 0:
	case q.Offset == 0:
		rest.Count = q.Count - 1
		if q.MaxBytes > 0 {
			rest.MaxBytes = max(q.MaxBytes-len(patient.Body), 1) // (and one match whatever its size)
		}
	default:
		rest.Offset = q.Offset - 1
	}
	out := &SearchResult{Query: q, Page: &store.Page{}}
	for _, t := range left {
		out.Warnings = append(out.Warnings, outcome.Issue{Severity: "warning", Code: "suppressed",
			Rule: ruleRestrictionUnenforceable, Expression: "_type", Message: everythingRestricted(t, id)})
	}
	if len(rest.Types) > 0 {
		want := rest.Count
		if q.Count > 0 {
			rest.Count = max(rest.Count, 1) // a store query of 0 would only count
		}
		err = e.queryIn(ctx, sc, chartReads(sc, in, patient.Tenant), func(ctx context.Context, st reader) error {
			var err error
			out.Page, err = st.Search(ctx, &rest)
			return err
		})
		if err != nil {
			return nil, err
		}
		out.Page.Matches = out.Page.Matches[:min(len(out.Page.Matches), want)]
		if out.Page.Cut {
			// The page ended at its size bound: the next starts after
			// what it took (and the Patient, on the first).
			out.NextOffset = q.Offset + len(out.Page.Matches)
			if q.Offset == 0 {
				out.NextOffset++
			}
		}
	}
	out.Page.Matches, out.Withheld = e.Disclose(sc, out.Page.Matches)
	out.Page.Total++
	if q.Offset == 0 && q.Count > 0 {
		out.Page.Matches = append([]*store.Resource{patient}, out.Page.Matches...)
	}
	sc.Touch(out.Page.Matches...)
	sc.Description = fmt.Sprintf("Patient $everything: %d resources, %d withheld", len(out.Page.Matches), out.Withheld)
	return out, nil
}

// everythingRestricted says why typ, read through granular scopes only, is
// not in a $everything of Patient id: one search of several types cannot
// be confined to one type's restriction exactly (its total and pages would
// tell of resources the scope does not grant).
func everythingRestricted(typ, id string) string {
	return "the access token reads " + typ + " through granular scopes only (restricted by search parameters), which " +
		"$everything cannot apply exactly: search " + typ + "?patient=" + id + " for them"
}

// hasZone reports whether v, a date or dateTime search.DateRange parsed,
// has no time or ends in a time zone (Z, +hh:mm or -hh:mm after the time).
func hasZone(v string) bool {
	_, clock, timed := strings.Cut(v, "T")
	return !timed || strings.HasSuffix(clock, "Z") || strings.ContainsAny(clock, "+-")
}
