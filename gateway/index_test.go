package gateway

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
)

// TestIndex: GET / (a newcomer's first URL) answers where things are
// instead of a bare 404: a browser is sent to the console when there is
// one, anyone else gets a small JSON index naming the endpoints this
// gateway has. Other unknown paths stay 404 route-unknown.
func TestIndex(t *testing.T) {
	withConsole, _ := auditServer(t)
	bare := NewTestServer(t, app.Config{}, Config{RateLimit: -1}, nil)
	get := func(h http.Handler, method, target, accept string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, target, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	for _, tc := range []struct {
		name        string
		h           http.Handler
		accept      string
		want, unset []string
	}{
		{"console on", withConsole, "", []string{"/fhir/metadata", "/console/", "/readyz", "/healthz", "/ingest/{kind}"}, nil},
		{"no console, no store", bare, "application/json", []string{"/healthz", "/ingest/{kind}"}, []string{"/console/", "/readyz"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := get(tc.h, http.MethodGet, "/", tc.accept)
			if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Fatalf("GET / = %d %s %s, want 200 JSON", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
			}
			var idx map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &idx); err != nil {
				t.Fatalf("GET / body %s: %v", rec.Body, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(rec.Body.String(), `"`+w+`"`) {
					t.Errorf("GET / = %s, want it to name %s", rec.Body, w)
				}
			}
			for _, w := range tc.unset {
				if strings.Contains(rec.Body.String(), `"`+w+`"`) {
					t.Errorf("GET / = %s names %s, which this gateway does not have", rec.Body, w)
				}
			}
			if head := get(tc.h, http.MethodHead, "/", tc.accept); head.Code != http.StatusOK {
				t.Errorf("HEAD / = %d, want 200", head.Code) // net/http drops a HEAD's body
			}
		})
	}
	t.Run("browser with the console", func(t *testing.T) {
		rec := get(withConsole, http.MethodGet, "/", "text/html,application/xhtml+xml,*/*;q=0.8")
		if rec.Code != http.StatusFound || rec.Header().Get("Location") != "console/" {
			t.Errorf("GET / from a browser = %d Location %q, want 302 to console/", rec.Code, rec.Header().Get("Location"))
		}
	})
	t.Run("browser without the console", func(t *testing.T) {
		if rec := get(bare, http.MethodGet, "/", "text/html,*/*;q=0.8"); rec.Code != http.StatusOK {
			t.Errorf("GET / from a browser, no console = %d, want 200 (the index)", rec.Code)
		}
	})
	for _, path := range []string{"/index.html", "/nope", "/fhir2"} {
		rec := get(withConsole, http.MethodGet, path, "")
		if rec.Code != http.StatusNotFound || !strings.Contains(rec.Body.String(), "route-unknown") {
			t.Errorf("GET %s = %d %s, want 404 route-unknown", path, rec.Code, rec.Body)
		}
	}
}
