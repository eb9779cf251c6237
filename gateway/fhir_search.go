package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// bundleLink is Bundle.link.
type bundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// bundleEntry is a Bundle.entry the server writes (search and history).
type bundleEntry struct {
	FullURL  string          `json:"fullUrl,omitempty"`
	Resource json.RawMessage `json:"resource,omitempty"`
	Search   *entrySearch    `json:"search,omitempty"`
	Request  *entryRequest   `json:"request,omitempty"`
	Response *entryResponse  `json:"response,omitempty"`
}

type entrySearch struct {
	Mode string `json:"mode"`
}

type entryRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type entryResponse struct {
	Status       string          `json:"status"`
	Location     string          `json:"location,omitempty"`
	Etag         string          `json:"etag,omitempty"`
	LastModified string          `json:"lastModified,omitempty"`
	Outcome      json.RawMessage `json:"outcome,omitempty"`
}

// bundle is a Bundle the server writes. Using a local type keeps the
// resources as raw stored JSON (no decode/encode round trip).
type bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Meta         *bundleMeta   `json:"meta,omitempty"`
	Type         string        `json:"type"`
	Timestamp    string        `json:"timestamp,omitempty"`
	Total        *int          `json:"total,omitempty"`
	Link         []bundleLink  `json:"link,omitempty"`
	Entry        []bundleEntry `json:"entry,omitempty"`
}

type bundleMeta struct {
	LastUpdated string `json:"lastUpdated"`
}

// handleSearch is GET /fhir/{type}?params and POST /fhir/{type}/_search.
func (s *Server) handleSearch(c echo.Context) error {
	typ, err := s.resourceType(c)
	if err != nil {
		return err
	}
	if err := allow(c, typ, 's'); err != nil {
		return err
	}
	params := c.QueryParams()
	if c.Request().Method == http.MethodPost {
		form, err := c.FormParams()
		if err != nil {
			return errorf(http.StatusBadRequest, "invalid", "search-form-invalid", "the search form could not be read")
		}
		for k, vs := range form {
			params[k] = append(params[k], vs...)
		}
	}
	var (
		q       *search.Query
		ignored []string
	)
	if preferLenient(c.Request().Header.Get("Prefer")) {
		q, ignored, err = search.ParseLenient(typ, params)
	} else {
		q, err = search.Parse(typ, params, false)
	}
	if err != nil {
		return searchError(err)
	}
	page, err := s.storeFor(c).Search(c.Request().Context(), q)
	if err != nil {
		return err
	}
	sc := auditOf(c)
	sc.touch(page.Matches...)
	sc.touch(page.Included...)
	sc.description = fmt.Sprintf("%s search: %d matches, %d included", typ, len(page.Matches), len(page.Included))
	base := s.baseURL(c)
	b := bundle{ResourceType: "Bundle", ID: newID(), Type: "searchset", Meta: &bundleMeta{LastUpdated: instant(s.now())}}
	if q.Total || q.SummaryCount {
		if page.Total >= 0 {
			b.Total = &page.Total
		}
	}
	self := selfParams(params, ignored)
	b.Link = append(b.Link, bundleLink{"self", pageURL(base, typ, self, q.Offset, q.Count)})
	if !q.SummaryCount {
		if q.Offset > 0 {
			prev := max(q.Offset-q.Count, 0)
			b.Link = append(b.Link, bundleLink{"previous", pageURL(base, typ, self, prev, q.Count)})
		}
		if len(page.Matches) == q.Count && (page.Total < 0 || q.Offset+q.Count < page.Total) {
			b.Link = append(b.Link, bundleLink{"next", pageURL(base, typ, self, q.Offset+q.Count, q.Count)})
		}
		for _, r := range page.Matches {
			b.Entry = append(b.Entry, bundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: r.Body, Search: &entrySearch{Mode: "match"}})
		}
		for _, r := range page.Included {
			b.Entry = append(b.Entry, bundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID, Resource: r.Body, Search: &entrySearch{Mode: "include"}})
		}
	}
	if len(ignored) > 0 {
		oo, _ := json.Marshal(ignoredOutcome(ignored))
		b.Entry = append(b.Entry, bundleEntry{Resource: oo, Search: &entrySearch{Mode: "outcome"}})
	}
	return writeResource(c, http.StatusOK, b)
}

// selfParams are the request's parameters without paging ones and without
// those a lenient search ignored.
func selfParams(params url.Values, ignored []string) url.Values {
	out := url.Values{}
	skip := map[string]bool{"_offset": true, "_count": true, "_format": true, "_pretty": true}
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

// pageURL is a search URL for one page.
func pageURL(base, typ string, params url.Values, offset, count int) string {
	p := url.Values{}
	for k, vs := range params {
		p[k] = vs
	}
	p.Set("_count", strconv.Itoa(count))
	if offset > 0 {
		p.Set("_offset", strconv.Itoa(offset))
	}
	return base + "/" + typ + "?" + p.Encode()
}

// ignoredOutcome reports the parameters a lenient search ignored.
func ignoredOutcome(names []string) any {
	issues := make([]Issue, 0, len(names))
	for _, n := range names {
		issues = append(issues, Issue{Severity: "warning", Code: "not-supported", Rule: "search-param-unknown", Expression: n,
			Message: "the search parameter is not supported and was ignored"})
	}
	return OperationOutcome(issues)
}

// handleHistory serves instance, type and system history.
func (s *Server) handleHistory(c echo.Context) error {
	q := store.HistoryQuery{Count: 50}
	if c.Param("type") != "" {
		typ, err := s.resourceType(c)
		if err != nil {
			return err
		}
		q.Type = typ
	}
	if c.Param("id") != "" {
		id, err := resourceID(c)
		if err != nil {
			return err
		}
		q.ID = id
	}
	scopeType := q.Type
	if scopeType == "" {
		scopeType = "*" // the whole system's history needs a system/*.r scope
	}
	if err := allow(c, scopeType, 'r'); err != nil {
		return err
	}
	if v := c.QueryParam("_count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			return errorf(http.StatusBadRequest, "invalid", "search-value-invalid", "_count must be an integer from 0 to 1000")
		}
		q.Count = n
	}
	if v := c.QueryParam("_offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return errorf(http.StatusBadRequest, "invalid", "search-value-invalid", "_offset must be a non-negative integer")
		}
		q.Offset = n
	}
	if v := c.QueryParam("_since"); v != "" {
		t, err := parseInstantParam(v)
		if err != nil {
			return errorf(http.StatusBadRequest, "invalid", "search-value-invalid", "_since must be an instant")
		}
		q.Since = t
	}
	versions, total, err := s.storeFor(c).History(c.Request().Context(), q)
	if err != nil {
		return err
	}
	if q.ID != "" && total == 0 {
		return errorf(http.StatusNotFound, "not-found", "resource-unknown", "no such resource")
	}
	auditOf(c).touch(versions...)
	auditOf(c).description = fmt.Sprintf("%d versions", len(versions))
	base := s.baseURL(c)
	b := bundle{ResourceType: "Bundle", ID: newID(), Type: "history", Total: &total, Meta: &bundleMeta{LastUpdated: instant(s.now())}}
	path := c.Request().URL.Path
	b.Link = append(b.Link, bundleLink{"self", c.Scheme() + "://" + c.Request().Host + path + "?" + c.Request().URL.RawQuery})
	if q.Offset+len(versions) < total && q.Count > 0 {
		p := url.Values{"_count": {strconv.Itoa(q.Count)}, "_offset": {strconv.Itoa(q.Offset + q.Count)}}
		if v := c.QueryParam("_since"); v != "" {
			p.Set("_since", v)
		}
		b.Link = append(b.Link, bundleLink{"next", c.Scheme() + "://" + c.Request().Host + path + "?" + p.Encode()})
	}
	for _, r := range versions {
		e := bundleEntry{FullURL: base + "/" + r.Type + "/" + r.ID}
		switch {
		case r.Deleted:
			e.Request = &entryRequest{Method: "DELETE", URL: r.Type + "/" + r.ID}
			e.Response = &entryResponse{Status: "204", Etag: etag(r.Version), LastModified: instant(r.LastUpdated)}
		case r.Version == 1:
			e.Resource = r.Body
			e.Request = &entryRequest{Method: "POST", URL: r.Type}
			e.Response = &entryResponse{Status: "201", Etag: etag(r.Version), LastModified: instant(r.LastUpdated)}
		default:
			e.Resource = r.Body
			e.Request = &entryRequest{Method: "PUT", URL: r.Type + "/" + r.ID}
			e.Response = &entryResponse{Status: "200", Etag: etag(r.Version), LastModified: instant(r.LastUpdated)}
		}
		b.Entry = append(b.Entry, e)
	}
	return writeResource(c, http.StatusOK, b)
}
