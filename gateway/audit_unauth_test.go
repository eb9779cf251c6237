package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
)

// TestUnauthenticatedClientNamed: in a deployment that authenticates its
// clients, a request refused for want of authentication (no token, a
// malformed one, a refused token request) is audited as an unauthenticated
// client, never as development mode's anonymous client (which would assert
// that every permission was in effect); development mode still names its
// anonymous client.
func TestUnauthenticatedClientNamed(t *testing.T) {
	displays := func(t *testing.T, h http.Handler, token, query string) map[string]bool {
		t.Helper()
		rec := req(h, "GET", "/fhir/AuditEvent?"+query+"&_count=100", "", token)
		if rec.Code != 200 {
			t.Fatalf("GET AuditEvent?%s = %d %s", query, rec.Code, rec.Body)
		}
		var b struct {
			Entry []struct {
				Resource struct {
					Agent []struct {
						Requestor bool
						Who       struct{ Display string }
					}
				}
			}
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			t.Fatal(err)
		}
		out := map[string]bool{}
		for _, e := range b.Entry {
			for _, a := range e.Resource.Agent {
				if a.Requestor {
					out[a.Who.Display] = true
				}
			}
		}
		return out
	}

	t.Run("authenticated deployment", func(t *testing.T) {
		h, _, tokens := tenantsServer(t)
		for _, tc := range []struct{ name, method, target, body, header string }{
			{"no token", "GET", "/fhir/Observation/abc", "", ""},
			{"malformed token", "GET", "/fhir/Observation/abc", "", "Authorization: Bearer not-a-jwt"},
			{"refused token request", "POST", "/auth/token", url.Values{"grant_type": {"client_credentials"}}.Encode(), "Content-Type: application/x-www-form-urlencoded"},
		} {
			var headers []string
			if tc.header != "" {
				headers = append(headers, tc.header)
			}
			if rec := req(h, tc.method, tc.target, tc.body, headers...); rec.Code < 400 {
				t.Fatalf("%s: %s %s = %d, want it refused", tc.name, tc.method, tc.target, rec.Code)
			}
		}
		got := displays(t, h, tokens["opAll"], "outcome=4")
		if got[audit.AnonymousClient] || !got[audit.UnauthenticatedClient] {
			t.Errorf("the refused requests' clients are %v; want %q, never %q", got, audit.UnauthenticatedClient, audit.AnonymousClient)
		}
	})
	t.Run("authenticated client, no route", func(t *testing.T) {
		// A valid token on a path or method no route serves (404, 405):
		// the client is named, not "unauthenticated client" (auditor
		// review); a request without one stays unauthenticated.
		h, _, tokens := tenantsServer(t)
		for _, tc := range []struct{ method, target string }{{"GET", "/nope/X"}, {"GET", "/admin/nothing"}, {"PATCH", "/ingest/assessment"}} {
			if rec := req(h, tc.method, tc.target, "", tokens["clinA"]); rec.Code != 404 && rec.Code != 405 {
				t.Fatalf("%s %s = %d, want 404 or 405", tc.method, tc.target, rec.Code)
			}
		}
		if rec := req(h, "GET", "/nope/Y", ""); rec.Code != 404 {
			t.Fatalf("GET /nope/Y without a token = %d, want 404", rec.Code)
		}
		got := displays(t, h, tokens["opAll"], "subtype=unknown-endpoint")
		if !got[audit.UnauthenticatedClient] || len(got) != 2 {
			t.Errorf("the unknown endpoints' clients are %v; want a client and %q", got, audit.UnauthenticatedClient)
		}
		rec := req(h, "GET", "/fhir/AuditEvent?subtype=unknown-endpoint&_summary=count&agent:identifier="+
			url.QueryEscape(audit.SystemClient+"|clinA"), "", tokens["opAll"])
		var b struct{ Total int }
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Total != 3 {
			t.Errorf("AuditEvents of clinA at unknown endpoints: %s, want 3", rec.Body)
		}
	})
	t.Run("development mode", func(t *testing.T) {
		h := fhirServer(t)
		if rec := req(h, "GET", "/fhir/Observation/abc", ""); rec.Code != 404 {
			t.Fatalf("GET Observation/abc = %d, want 404", rec.Code)
		}
		got := displays(t, h, "", "outcome=4")
		if !got[audit.AnonymousClient] || got[audit.UnauthenticatedClient] {
			t.Errorf("development mode's clients are %v; want %q only", got, audit.AnonymousClient)
		}
	})
}
