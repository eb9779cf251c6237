package gateway_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestForwardedSchemeTrusted: without --base-url the base is the scheme of
// the connection and the Host; a client's X-Forwarded-Proto (or
// X-Forwarded-Ssl, X-Url-Scheme, X-Forwarded-Protocol) changes it only from
// a trusted proxy, so no unauthenticated header decides whether a reference
// on the own base is stored relative (in the patient's chart) or absolute.
func TestForwardedSchemeTrusted(t *testing.T) {
	_, lb, _ := net.ParseCIDR("192.0.2.0/24")
	_, other, _ := net.ParseCIDR("198.51.100.0/24")
	forwarded := []string{"X-Forwarded-Proto: https", "X-Forwarded-Protocol: https", "X-Forwarded-Ssl: on", "X-Url-Scheme: https"}
	for _, tc := range []struct {
		name    string
		proxies []*net.IPNet
		peer    string // the connection's address
		scheme  string // the base's scheme with a forwarded header
	}{
		{"no trusted proxies", nil, "192.0.2.1:1234", "http"},
		{"no trusted proxies, loopback peer", nil, "127.0.0.1:1234", "http"},
		{"no trusted proxies, private peer", nil, "10.1.2.3:1234", "http"},
		{"another proxy", []*net.IPNet{other}, "127.0.0.1:1234", "http"},
		{"from a trusted proxy", []*net.IPNet{lb}, "192.0.2.1:1234", "https"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := tempSQLite(t, sqlite.Options{})
			h := newServer(t, app.Config{Store: st, UpdateCreate: true}, gateway.Config{TrustedProxies: tc.proxies})
			if rec := req(h, "PUT", "/fhir/Patient/fw1", `{"resourceType":"Patient","id":"fw1"}`); rec.Code != http.StatusCreated {
				t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
			}
			req := func(h http.Handler, method, target, body string, headers ...string) *httptest.ResponseRecorder {
				r := httptest.NewRequest(method, target, strings.NewReader(body))
				r.RemoteAddr = tc.peer
				if body != "" {
					r.Header.Set("Content-Type", "application/fhir+json")
				}
				for _, hv := range headers {
					k, v, _ := strings.Cut(hv, ":")
					r.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				return rec
			}
			for _, fh := range forwarded {
				b := decode(t, req(h, "GET", "/fhir/Patient?_id=fw1", "", fh))
				full := b["entry"].([]any)[0].(map[string]any)["fullUrl"].(string)
				if want := tc.scheme + "://example.com/fhir/Patient/fw1"; full != want {
					t.Errorf("%s: fullUrl %s, want %s", fh, full, want)
				}
				// A reference on the base the client sees is stored relative.
				obs := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"` +
					tc.scheme + `://example.com/fhir/Patient/fw1"}}`
				rec := req(h, "POST", "/fhir/Observation", obs, fh)
				if rec.Code != http.StatusCreated {
					t.Fatalf("%s: create = %d %s", fh, rec.Code, rec.Body)
				}
				if got := decode(t, rec)["subject"].(map[string]any)["reference"]; got != "Patient/fw1" {
					t.Errorf("%s: subject stored as %v, want Patient/fw1", fh, got)
				}
			}
			if n := strings.Count(req(h, "GET", "/fhir/Observation?patient=fw1", "").Body.String(), `"fullUrl"`); n != len(forwarded) {
				t.Errorf("Observation?patient=fw1 found %d, want %d", n, len(forwarded))
			}
		})
	}
}
