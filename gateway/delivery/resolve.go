package delivery

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
)

// resolve learns the "Type/id" the EHR gave entry s when later entries
// reference it: from the Location (parsed, never fetched), the returned
// resource, the request URL, or as a last resort a search by the entry's
// own conditional criteria. nil means resolved (or not needed).
func (c *Client) resolve(ctx context.Context, p *plan, s *step, location string, resource []byte) *Result {
	if s.entry.FullURL == "" || !p.needed[s.entry.FullURL] {
		return nil
	}
	if ref, ok := parseLocation(location, s.typ); ok {
		s.resolved = ref
		return nil
	}
	if ref, ok := resourceRef(resource, s.typ); ok {
		s.resolved = ref
		return nil
	}
	req := s.entry.Request
	path, query, conditional := strings.Cut(req.URL, "?")
	if !conditional && req.Method == http.MethodPut && path != s.typ {
		s.resolved = path // PUT Type/id
		return nil
	}
	criteria := query
	if req.Method == http.MethodPost {
		criteria = req.IfNoneExist
	}
	fail := func(r Result) *Result {
		r.Outcome = OutcomeRetry
		if r.Error == "" {
			r.Error = s.what() + ": the EHR did not say which id it has"
		} else {
			r.Error = s.what() + ": id search: " + r.Error
		}
		return &r
	}
	if criteria == "" {
		return fail(Result{})
	}
	resp, err := c.do(ctx, http.MethodGet, c.url(s.typ+"?"+criteria), nil, nil)
	if err != nil {
		return fail(netResult(err))
	}
	if !is2xx(resp.status) {
		return fail(c.failure("", resp, nil))
	}
	var set struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource json.RawMessage `json:"resource"`
			Search   struct {
				Mode string `json:"mode"`
			} `json:"search"`
		} `json:"entry"`
	}
	if json.Unmarshal(resp.body, &set) != nil || set.ResourceType != "Bundle" {
		return fail(Result{HTTPStatus: resp.status, Error: "response is not a searchset"})
	}
	var refs []string
	for _, e := range set.Entry {
		if e.Search.Mode != "" && e.Search.Mode != "match" {
			continue
		}
		if ref, ok := resourceRef(e.Resource, s.typ); ok {
			refs = append(refs, ref)
		}
	}
	if len(refs) != 1 {
		return fail(Result{HTTPStatus: resp.status})
	}
	s.resolved = refs[0]
	return nil
}
