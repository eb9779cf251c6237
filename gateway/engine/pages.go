package engine

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The Bundles that answer a search and a history, the same at the top
// level (the edge encodes them) and for a Bundle's GET entry.

// Searchset is the searchset Bundle answering res, a search of typ at path
// below the FHIR base (for the paging links: "Observation",
// "Patient/x/Observation", "Patient/x/$everything") with params as sent.
func (e *Engine) Searchset(base, typ, path string, params url.Values, res *SearchResult) fhirwire.Bundle {
	q, page := res.Query, res.Page
	b := fhirwire.Bundle{ResourceType: "Bundle", ID: store.NewID(), Type: fhirwire.TypeSearchset,
		Meta: &fhirwire.Meta{LastUpdated: fhirwire.Instant(e.now())}}
	if q.Total || q.SummaryCount {
		if page.Total >= 0 {
			b.Total = &page.Total
		}
	}
	self := selfParams(params, res.Ignored)
	if res.Bound != "" {
		// The snapshot of a search of AuditEvents: every page, the
		// first's self link included, shows the bound it searched with.
		self[snapshotParam] = append(slices.Clone(self[snapshotParam]), res.Bound)
	}
	var selfURL string
	if q.SummaryCount {
		// Only the total: no page, so the link repeats the request's own
		// _count (0) if it had one, not the page size a page would use.
		if c, ok := params["_count"]; ok {
			self["_count"] = c
		}
		selfURL = base + "/" + path + "?" + self.Encode()
	} else {
		selfURL = pageURL(base, path, self, q.Offset, q.Count, q.After)
	}
	b.Link = append(b.Link, fhirwire.Link{Relation: "self", URL: selfURL})
	if !q.SummaryCount {
		if q.Offset > 0 {
			prev := max(q.Offset-q.Count, 0)
			b.Link = append(b.Link, fhirwire.Link{Relation: "previous", URL: pageURL(base, path, self, prev, q.Count, nil)})
		}
		switch {
		case res.Next != nil:
			// The next page starts after this one's last match: a match
			// updated meanwhile moves to the end of the order, and the
			// matches the total counted may no longer end at an offset.
			// Its _offset numbers the page after what this one took
			// (fewer than _count where the page ended at its size bound).
			next := q.Offset + q.Count
			if res.Taken > 0 && res.Taken < q.Count {
				next = q.Offset + res.Taken
			}
			b.Link = append(b.Link, fhirwire.Link{Relation: "next", URL: pageURL(base, path, self, next, q.Count, res.Next)})
		case res.Paged:
			// The last page: the store found no match after it.
		case res.NextOffset > 0:
			b.Link = append(b.Link, fhirwire.Link{Relation: "next", URL: pageURL(base, path, self, res.NextOffset, q.Count, nil)})
		case len(page.Matches) == q.Count && (page.Total < 0 || q.Offset+q.Count < page.Total) ||
			res.Withheld > 0 && q.Offset+q.Count < page.Total:
			b.Link = append(b.Link, fhirwire.Link{Relation: "next", URL: pageURL(base, path, self, q.Offset+q.Count, q.Count, nil)})
		}
		for _, r := range page.Matches {
			b.Entry = append(b.Entry, fhirwire.Entry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: r.Body,
				Search: &fhirwire.Search{Mode: fhirwire.ModeMatch}})
		}
		for _, r := range page.Included {
			b.Entry = append(b.Entry, fhirwire.Entry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: r.Body,
				Search: &fhirwire.Search{Mode: fhirwire.ModeInclude}})
		}
	}
	if res.Withheld > 0 {
		b.Entry = append(b.Entry, WithheldEntry(res.Withheld))
	}
	if len(res.Warnings) > 0 {
		oo, _ := fhirwire.Marshal(outcome.Resource(res.Warnings))
		b.Entry = append(b.Entry, fhirwire.Entry{Resource: oo, Search: &fhirwire.Search{Mode: fhirwire.ModeOutcome}})
	}
	if len(res.Ignored) > 0 {
		oo, _ := fhirwire.Marshal(ignoredOutcome(typ, res.Ignored))
		b.Entry = append(b.Entry, fhirwire.Entry{Resource: oo, Search: &fhirwire.Search{Mode: fhirwire.ModeOutcome}})
	}
	return b
}

// selfParams are the request's parameters without paging ones and without
// those a lenient search ignored. _format and _pretty stay: a client that
// chose the format with _format (it cannot set Accept, http.html#mime)
// gets every page it follows in that format.
func selfParams(params url.Values, ignored []string) url.Values {
	out := url.Values{}
	skip := map[string]bool{"_offset": true, "_cursor": true, "_count": true}
	for _, n := range ignored {
		skip[n] = true
	}
	for k, vs := range params {
		if !skip[k] {
			out[k] = vs
		}
	}
	return out
}

// pageURL is a search URL for one page of the search at path below base.
func pageURL(base, path string, params url.Values, offset, count int, cursor *search.Cursor) string {
	p := url.Values{}
	for k, vs := range params {
		p[k] = vs
	}
	p.Set("_count", strconv.Itoa(count))
	if offset > 0 {
		p.Set("_offset", strconv.Itoa(offset))
	}
	if cursor != nil {
		p.Set("_cursor", cursor.String())
	}
	return base + "/" + path + "?" + p.Encode()
}

// ignoredOutcome reports the parameters a lenient search of typ ignored,
// one issue each (search.html: the server "SHOULD return an
// OperationOutcome ... which parameters were ignored"), naming those the
// gateway or FHIR R4 knows for typ (search.ShownName: clinical-status of
// Condition, _tag) in the text and the expression. A name the client made
// up is not repeated, as it could carry anything; no value is repeated.
func ignoredOutcome(typ string, keys []string) any {
	issues := make([]outcome.Issue, 0, len(keys))
	for _, k := range keys {
		is := outcome.Issue{Severity: "warning", Code: "not-supported", Rule: "search-param-unknown",
			Message: "a parameter that is not a FHIR R4 search parameter of " + typ + " was ignored (its name is not repeated)"}
		if name := search.ShownName(typ, k); name != "" {
			is.Rule, is.Expression = "search-param-unsupported", name
			is.Message = fmt.Sprintf("parameter %q is not supported here and was ignored", name)
		}
		issues = append(issues, is)
	}
	return outcome.Resource(issues)
}

// HistoryBundle is the history Bundle answering res (http.html#history)
// below base; params are the request's parameters. Its paging links are a
// searchset's (self, previous, next: the parameters used, without those a
// lenient history ignored, with _count and _offset). Each entry's request
// and response say how its version was made (historyEntry).
func (e *Engine) HistoryBundle(base string, params url.Values, res *HistoryResult) fhirwire.Bundle {
	q, total := res.Query, res.Total
	b := fhirwire.Bundle{ResourceType: "Bundle", ID: store.NewID(), Type: fhirwire.TypeHistory, Total: &total,
		Meta: &fhirwire.Meta{LastUpdated: fhirwire.Instant(e.now())}}
	path := "_history"
	switch {
	case q.ID != "":
		path = q.Type + "/" + q.ID + "/_history"
	case q.Type != "":
		path = q.Type + "/_history"
	}
	// A history Bundle has no outcome entry in R4: what a lenient history
	// ignored is only left out of the links.
	self := selfParams(params, res.Ignored)
	b.Link = append(b.Link, fhirwire.Link{Relation: "self", URL: pageURL(base, path, self, q.Offset, q.Count, nil)})
	if q.Count > 0 {
		if q.Offset > 0 {
			prev := max(q.Offset-q.Count, 0)
			b.Link = append(b.Link, fhirwire.Link{Relation: "previous", URL: pageURL(base, path, self, prev, q.Count, nil)})
		}
		if next := q.Offset + max(res.Taken, len(res.Versions)); next < total {
			b.Link = append(b.Link, fhirwire.Link{Relation: "next", URL: pageURL(base, path, self, next, q.Count, nil)})
		}
	}
	for _, r := range res.Versions {
		b.Entry = append(b.Entry, historyEntry(base, r))
	}
	return b
}

// historyEntry is the history entry of version r: its resource (none for a
// deletion), and the request and response of the interaction that made it
// (Bundle.entry.request: "for history, it shows how the entry was
// processed to create the version"), as the store kept them: POST Type
// (201), PUT Type/id (201 when it created the resource, else 200), PATCH
// Type/id (200), DELETE Type/id (204), whether the interaction came alone,
// in a Bundle, from an ingest or a replay. A conditional update is shown
// as the PUT of the resource it wrote, a PATCH as a PATCH (the entry holds
// the version it made, not the patch). A version stored before the stores
// kept this is shown as before: a deletion DELETE, version 1 POST, the
// others PUT.
func historyEntry(base string, r *store.Resource) fhirwire.Entry {
	method, status := r.Method, r.Status
	if method == "" || status == 0 {
		switch {
		case r.Deleted:
			method, status = "DELETE", fhirwire.StatusNoContent
		case r.Version == 1:
			method, status = "POST", fhirwire.StatusCreated
		default:
			method, status = "PUT", fhirwire.StatusOK
		}
	}
	e := fhirwire.Entry{FullURL: base + "/" + r.Type + "/" + r.ID}
	if !r.Deleted {
		e.Resource = r.Body
	}
	u := r.Type + "/" + r.ID
	if method == "POST" {
		u = r.Type
	}
	e.Request = &fhirwire.Request{Method: method, URL: u}
	e.Response = &fhirwire.Response{Status: strconv.Itoa(status), Etag: fhirwire.ETag(r.Version),
		LastModified: fhirwire.Instant(r.LastUpdated)}
	return e
}
