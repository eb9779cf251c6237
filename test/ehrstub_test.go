package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// ehrStub is a minimal FHIR server standing in for a hospital EHR: it
// processes transaction Bundles with conditional create and update on
// identifier, so it shows whether re-sends would duplicate anything.
type ehrStub struct {
	*httptest.Server
	mu sync.Mutex
	// resources by "Type|system|value" (or "Type/id" for PUT by id).
	resources map[string]int // key -> number of writes
	creates   map[string]int // key -> number of creates
	posts     int
	// down makes every request answer 503.
	down bool
	// dropAfterCommit makes the next transaction commit, then drop the
	// connection without answering.
	dropAfterCommit bool
	// fail500 makes the next n transactions answer 500 with an
	// OperationOutcome.
	fail500 int
	// traceparents are the traceparent headers of the transactions received.
	traceparents []string
	// hang, when set, holds every transaction until it is closed (or the
	// client goes away): a delivery in the middle of its attempt.
	hang chan struct{}
	// hung counts the transactions that were held.
	hung int
}

func newEHRStub(t *testing.T) *ehrStub {
	e := &ehrStub{resources: map[string]int{}, creates: map[string]int{}}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	return e
}

func (e *ehrStub) setDown(v bool) { e.mu.Lock(); e.down = v; e.mu.Unlock() }

// stats reports how many resources the EHR holds, the largest number of
// creates of any one of them, and how many transactions it received.
func (e *ehrStub) stats() (distinct, maxCreates, posts int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, n := range e.creates {
		maxCreates = max(maxCreates, n)
	}
	return len(e.resources), maxCreates, e.posts
}

func (e *ehrStub) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	if hang := e.hang; hang != nil && r.Method == http.MethodPost {
		e.hung++
		e.mu.Unlock()
		select {
		case <-hang:
		case <-r.Context().Done():
			return
		}
		e.mu.Lock()
	}
	defer e.mu.Unlock()
	if e.down {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/metadata") {
		w.Header().Set("Content-Type", "application/fhir+json")
		fmt.Fprint(w, `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],"rest":[{"mode":"server","interaction":[{"code":"transaction"},{"code":"batch"}]}]}`)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "unsupported", http.StatusMethodNotAllowed)
		return
	}
	e.posts++
	e.traceparents = append(e.traceparents, r.Header.Get("traceparent"))
	if e.fail500 > 0 {
		e.fail500--
		w.Header().Set("Content-Type", "application/fhir+json")
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception","diagnostics":"EHR database busy"}]}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var b struct {
		Type  string `json:"type"`
		Entry []struct {
			Resource map[string]any `json:"resource"`
			Request  struct {
				Method, URL, IfNoneExist string
			} `json:"request"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &b); err != nil || b.Type != "transaction" {
		http.Error(w, "not a transaction", http.StatusBadRequest)
		return
	}
	var out []string
	for _, en := range b.Entry {
		typ, _, _ := strings.Cut(en.Request.URL, "?")
		typ, _, _ = strings.Cut(typ, "/")
		key := typ + "|" + en.Request.IfNoneExist
		switch {
		case en.Request.Method == "POST":
		case strings.Contains(en.Request.URL, "?"):
			_, q, _ := strings.Cut(en.Request.URL, "?")
			key = typ + "|" + q
		default:
			key = en.Request.URL
		}
		status := "200 OK"
		if en.Request.Method == "DELETE" {
			delete(e.resources, key)
		} else if _, ok := e.resources[key]; !ok {
			e.creates[key]++
			status = "201 Created"
			e.resources[key] = 1
		} else if en.Request.Method == "PUT" {
			e.resources[key]++
		}
		out = append(out, fmt.Sprintf(`{"response":{"status":%q}}`, status))
	}
	if e.dropAfterCommit {
		e.dropAfterCommit = false
		if hj, ok := w.(http.Hijacker); ok {
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
				return
			}
		}
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	fmt.Fprintf(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[%s]}`, strings.Join(out, ","))
}
