package delivery

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
)

// stubEHR is a scripted FHIR R4 server: conditional create and update by
// identifier, PUT and DELETE by id, search by identifier, transactions
// (atomic, urn:uuid references resolved) and batches (entries independent:
// a urn:uuid reference is rejected, as a real server would fail it). Every
// stored reference must point to a stored resource.
type stubEHR struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	res      map[string]map[string]any // "Type/id" -> resource
	ident    map[string]string         // "Type|system|value" -> "Type/id"
	seq      int
	requests []stubReq
	writes   []string // "METHOD Type/id status", committed, in order

	// Behaviour, set before use.
	noTransaction, noBatch bool
	// authorize, when set, checks the Authorization header (else 401).
	authorize func(header string) bool
	// intercept runs first for request n (0-based); true if it answered.
	intercept func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool
	// afterCommit runs after a write request committed; true if it
	// answered (or dropped the connection) instead of the server.
	afterCommit func(n int, w http.ResponseWriter, r *http.Request) bool
}

type stubReq struct {
	Method, Path, Query, Auth, BundleType string
	Entries                               int
	Body                                  string
}

func newStubEHR(t testing.TB) *stubEHR {
	s := &stubEHR{t: t, res: map[string]map[string]any{}, ident: map[string]string{}}
	s.srv = httptest.NewServer(s)
	t.Cleanup(s.srv.Close)
	return s
}

// base is the FHIR base URL.
func (s *stubEHR) base() string { return s.srv.URL + "/fhir" }

func (s *stubEHR) reqs() []stubReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

func (s *stubEHR) committed() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.writes)
}

func (s *stubEHR) count(typ string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.res {
		if strings.HasPrefix(k, typ+"/") {
			n++
		}
	}
	return n
}

func (s *stubEHR) resource(ref string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.res[ref]
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/fhir+json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func outcome(code, diag string) map[string]any {
	return map[string]any{"resourceType": "OperationOutcome",
		"issue": []any{map[string]any{"severity": "error", "code": code, "diagnostics": diag}}}
}

func (s *stubEHR) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var bt struct {
		Type  string            `json:"type"`
		Entry []json.RawMessage `json:"entry"`
	}
	json.Unmarshal(body, &bt)
	s.mu.Lock()
	n := len(s.requests)
	s.requests = append(s.requests, stubReq{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), bt.Type, len(bt.Entry), string(body)})
	icpt, after := s.intercept, s.afterCommit
	s.mu.Unlock()
	if icpt != nil && icpt(n, w, r, body) {
		return
	}
	if s.authorize != nil && !s.authorize(r.Header.Get("Authorization")) {
		writeJSON(w, http.StatusUnauthorized, outcome("login", "bad token"))
		return
	}
	path := strings.Trim(strings.TrimPrefix(r.URL.Path, "/fhir"), "/")
	if r.Method == http.MethodGet && path == "metadata" {
		var codes []any
		if !s.noTransaction {
			codes = append(codes, map[string]any{"code": "transaction"})
		}
		if !s.noBatch {
			codes = append(codes, map[string]any{"code": "batch"})
		}
		codes = append(codes, map[string]any{"code": "search-system"})
		writeJSON(w, http.StatusOK, map[string]any{"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1",
			"software": map[string]any{"name": "stub", "version": "1"},
			"rest":     []any{map[string]any{"mode": "server", "interaction": codes}}})
		return
	}
	write := func(code int, v any) {
		if after != nil && code < 300 && r.Method != http.MethodGet && after(n, w, r) {
			return
		}
		writeJSON(w, code, v)
	}
	if r.Method == http.MethodPost && path == "" {
		code, v := s.bundle(body)
		write(code, v)
		return
	}
	var res map[string]any
	if len(body) > 0 {
		if json.Unmarshal(body, &res) != nil {
			writeJSON(w, http.StatusBadRequest, outcome("structure", "not JSON"))
			return
		}
	}
	if r.Method == http.MethodGet {
		writeJSON(w, http.StatusOK, s.search(path, r.URL.Query()))
		return
	}
	rel := path
	if r.URL.RawQuery != "" {
		q, _ := url.QueryUnescape(r.URL.RawQuery)
		rel += "?" + q
	}
	s.mu.Lock()
	code, loc, msg := s.apply(r.Method, rel, r.Header.Get("If-None-Exist"), res, nil, "")
	s.mu.Unlock()
	if msg != "" {
		writeJSON(w, code, outcome("processing", msg))
		return
	}
	if loc != "" {
		w.Header().Set("Location", s.base()+"/"+loc+"/_history/1")
	}
	write(code, s.resource(loc))
}

// bundle processes a transaction or batch.
func (s *stubEHR) bundle(body []byte) (int, any) {
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			FullURL  string         `json:"fullUrl"`
			Resource map[string]any `json:"resource"`
			Request  struct{ Method, URL, IfNoneExist string }
		} `json:"entry"`
	}
	if json.Unmarshal(body, &b) != nil {
		return http.StatusBadRequest, outcome("structure", "not a Bundle")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	entries := make([]any, len(b.Entry))
	switch {
	case b.Type == "transaction" && !s.noTransaction:
		saveRes, saveIdent, saveWrites, saveSeq := maps.Clone(s.res), maps.Clone(s.ident), slices.Clone(s.writes), s.seq
		// Pass 1: the target of every entry, so references resolve.
		targets := map[string]string{}
		for _, e := range b.Entry {
			if e.Request.Method != http.MethodDelete {
				targets[e.FullURL] = s.target(e.Request.Method, e.Request.URL, e.Request.IfNoneExist)
			}
		}
		order := make([]int, len(b.Entry))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(x, y int) int {
			return fhirwire.MethodRank(b.Entry[x].Request.Method) - fhirwire.MethodRank(b.Entry[y].Request.Method)
		})
		for _, i := range order {
			e := b.Entry[i]
			code, loc, msg := s.apply(e.Request.Method, e.Request.URL, e.Request.IfNoneExist, e.Resource, targets, targets[e.FullURL])
			if msg != "" {
				s.res, s.ident, s.writes, s.seq = saveRes, saveIdent, saveWrites, saveSeq
				return code, outcome("processing", fmt.Sprintf("entry %d: %s", i, msg))
			}
			entries[i] = map[string]any{"response": map[string]any{"status": fmt.Sprintf("%d", code), "location": loc + "/_history/1"}}
		}
		return http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": entries}
	case b.Type == "batch" && !s.noBatch:
		for i, e := range b.Entry {
			code, loc, msg := s.apply(e.Request.Method, e.Request.URL, e.Request.IfNoneExist, e.Resource, nil, "")
			resp := map[string]any{"status": fmt.Sprintf("%d", code)}
			if msg != "" {
				resp["outcome"] = outcome("processing", msg)
			} else if loc != "" {
				resp["location"] = loc + "/_history/1"
			}
			entries[i] = map[string]any{"response": resp}
		}
		return http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "batch-response", "entry": entries}
	}
	return http.StatusBadRequest, outcome("not-supported", "unsupported Bundle type")
}

// lookup finds the resource of type typ with one of the identifiers of
// a token search value "system|value[,system|value...]" (an OR, FHIR's
// backslash escapes undone): the first that matches, "" for none.
func (s *stubEHR) lookup(typ, identifier string) string {
	var values []string
	var cur strings.Builder
	for i := 0; i < len(identifier); i++ {
		switch c := identifier[i]; {
		case c == '\\' && i+1 < len(identifier):
			i++
			if identifier[i] == '|' {
				cur.WriteString("\x00") // an escaped "|" is the value's, not the separator
			} else {
				cur.WriteByte(identifier[i])
			}
		case c == ',':
			values, cur = append(values, cur.String()), strings.Builder{}
		default:
			cur.WriteByte(c)
		}
	}
	values = append(values, cur.String())
	for _, v := range values {
		system, value, _ := strings.Cut(v, "|")
		key := typ + "|" + strings.ReplaceAll(system, "\x00", "|") + "|" + strings.ReplaceAll(value, "\x00", "|")
		if ref := s.ident[key]; ref != "" {
			return ref
		}
	}
	return ""
}

// criteriaRef is the resource conditional criteria "identifier=..." find.
func (s *stubEHR) criteriaRef(typ, criteria string) string {
	q, err := url.ParseQuery(criteria)
	if err != nil || q.Get("identifier") == "" {
		return ""
	}
	return s.lookup(typ, q.Get("identifier"))
}

// target is where a write lands (caller holds mu), allocating ids.
func (s *stubEHR) target(method, rawURL, ifNoneExist string) string {
	path, query, _ := strings.Cut(rawURL, "?")
	switch {
	case method == http.MethodPost && ifNoneExist != "":
		if ref := s.criteriaRef(path, ifNoneExist); ref != "" {
			return ref
		}
	case method == http.MethodPut && query != "":
		if ref := s.criteriaRef(path, query); ref != "" {
			return ref
		}
	case strings.Contains(path, "/"):
		return path
	}
	s.seq++
	return fmt.Sprintf("%s/%d", path, s.seq)
}

// apply performs one write (caller holds mu). Inside a transaction,
// targets maps fullUrls to targets and ref is the entry's target; outside
// one both are empty.
func (s *stubEHR) apply(method, rawURL, ifNoneExist string, res map[string]any, targets map[string]string, ref string) (int, string, string) {
	path, _, _ := strings.Cut(rawURL, "?")
	typ, _, _ := strings.Cut(path, "/")
	if method == http.MethodDelete {
		if s.res[path] == nil {
			return http.StatusNotFound, "", "not found"
		}
		delete(s.res, path)
		s.writes = append(s.writes, "DELETE "+path)
		return http.StatusNoContent, "", ""
	}
	if res == nil || res["resourceType"] != typ {
		return http.StatusBadRequest, "", "resource type does not match the URL"
	}
	if ref == "" {
		ref = s.target(method, rawURL, ifNoneExist)
	}
	existed := s.res[ref] != nil
	if method == http.MethodPost && existed {
		return http.StatusOK, ref, "" // conditional create matched: nothing written
	}
	if msg := s.checkRefs(res, targets); msg != "" {
		return http.StatusBadRequest, "", msg
	}
	_, id, _ := strings.Cut(ref, "/")
	res["id"] = id
	s.res[ref] = res
	if ids, ok := res["identifier"].([]any); ok {
		for _, x := range ids {
			if m, ok := x.(map[string]any); ok {
				s.ident[fmt.Sprintf("%s|%v|%v", typ, m["system"], m["value"])] = ref
			}
		}
	}
	s.writes = append(s.writes, fmt.Sprintf("%s %s %v", method, ref, res["status"]))
	if existed {
		return http.StatusOK, ref, ""
	}
	return http.StatusCreated, ref, ""
}

// checkRefs rewrites urn:uuid references through targets and checks that
// every reference points to a stored resource or a target.
func (s *stubEHR) checkRefs(v any, targets map[string]string) string {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if ref, ok := e.(string); ok && k == "reference" {
				if t, ok := targets[ref]; ok {
					x[k], ref = t, t
				}
				if strings.HasPrefix(ref, "urn:uuid:") {
					return "unresolved reference " + ref
				}
				if s.res[ref] == nil && !slices.Contains(slices.Collect(maps.Values(targets)), ref) {
					return "reference to a missing resource " + ref
				}
				continue
			}
			if msg := s.checkRefs(e, targets); msg != "" {
				return msg
			}
		}
	case []any:
		for _, e := range x {
			if msg := s.checkRefs(e, targets); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func (s *stubEHR) search(path string, q url.Values) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var entries []any
	if ref := s.lookup(path, q.Get("identifier")); ref != "" && s.res[ref] != nil {
		entries = append(entries, map[string]any{"resource": s.res[ref], "search": map[string]any{"mode": "match"}})
	}
	return map[string]any{"resourceType": "Bundle", "type": "searchset", "entry": entries}
}
