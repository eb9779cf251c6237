package auth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestTokenRejects covers the ONC Inferno backend services negative cases
// and the rest of SMART's assertion rules.
func TestTokenRejects(t *testing.T) {
	rsaPublicPEM := func(t *testing.T) []byte {
		der, err := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	withClaims := func(edit func(map[string]any)) func(*testing.T, time.Time) url.Values {
		return func(t *testing.T, now time.Time) url.Values {
			c := claims("rs-client", now)
			edit(c)
			return tokenForm(sign(t, jose.RS384, rsaKey(), "rs-1", c, nil), "system/*.rs")
		}
	}
	tests := []struct {
		name       string
		form       func(*testing.T, time.Time) url.Values
		wantStatus int
		wantCode   string
		wantReason string
		wantClient string
	}{
		{
			name: "no assertion",
			form: func(t *testing.T, now time.Time) url.Values {
				f := tokenForm("", "system/*.rs")
				f.Del("client_assertion")
				return f
			},
			wantStatus: 400, wantCode: "invalid_request", wantReason: "assertion-missing",
		},
		{
			name:       "malformed assertion",
			form:       func(*testing.T, time.Time) url.Values { return tokenForm("not.a.jwt", "system/*.rs") },
			wantStatus: 401, wantCode: "invalid_client", wantReason: "malformed",
		},
		{
			name:       "assertion not a JWS at all",
			form:       func(*testing.T, time.Time) url.Values { return tokenForm("garbage", "system/*.rs") },
			wantStatus: 401, wantCode: "invalid_client", wantReason: "malformed",
		},
		{
			name:       "expired",
			form:       withClaims(func(c map[string]any) { c["exp"] = c["exp"].(int64) - int64(10*60) }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "expired", wantClient: "rs-client",
		},
		{
			name:       "exp too far ahead",
			form:       withClaims(func(c map[string]any) { c["exp"] = c["exp"].(int64) + int64(6*60) }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "exp-too-far", wantClient: "rs-client",
		},
		{
			name:       "exp missing",
			form:       withClaims(func(c map[string]any) { delete(c, "exp") }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "exp-missing", wantClient: "rs-client",
		},
		{
			name:       "nbf ahead",
			form:       withClaims(func(c map[string]any) { c["nbf"] = c["exp"] }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "not-yet-valid", wantClient: "rs-client",
		},
		{
			name:       "iat an hour ahead",
			form:       withClaims(func(c map[string]any) { c["iat"] = c["exp"].(int64) + 3600 }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "iat-in-future", wantClient: "rs-client",
		},
		{
			name:       "iat beyond the skew",
			form:       withClaims(func(c map[string]any) { c["iat"] = c["exp"].(int64) - 4*60 + 31 }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "iat-in-future", wantClient: "rs-client",
		},
		{
			name:       "wrong aud",
			form:       withClaims(func(c map[string]any) { c["aud"] = "https://other.example/auth/token" }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "aud-mismatch", wantClient: "rs-client",
		},
		{
			name:       "aud missing",
			form:       withClaims(func(c map[string]any) { delete(c, "aud") }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "aud-mismatch", wantClient: "rs-client",
		},
		{
			name:       "wrong iss",
			form:       withClaims(func(c map[string]any) { c["iss"] = "not_a_iss" }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "iss-sub-mismatch",
		},
		{
			name:       "iss is another registered client",
			form:       withClaims(func(c map[string]any) { c["iss"] = "ec-client" }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "iss-sub-mismatch",
		},
		{
			name:       "sub missing",
			form:       withClaims(func(c map[string]any) { delete(c, "sub") }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "iss-sub-mismatch",
		},
		{
			name:       "unknown client",
			form:       withClaims(func(c map[string]any) { c["iss"], c["sub"] = "no-such-client", "no-such-client" }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "client-unknown",
		},
		{
			name:       "jti missing",
			form:       withClaims(func(c map[string]any) { delete(c, "jti") }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "jti-missing", wantClient: "rs-client",
		},
		{
			name:       "jti too long",
			form:       withClaims(func(c map[string]any) { c["jti"] = strings.Repeat("j", 256) }),
			wantStatus: 401, wantCode: "invalid_client", wantReason: "jti-missing", wantClient: "rs-client",
		},
		{
			name: "alg none",
			form: func(t *testing.T, now time.Time) url.Values {
				a := unsigned(t, map[string]string{"alg": "none", "typ": "JWT", "kid": "rs-1"}, claims("rs-client", now))
				return tokenForm(a, "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "alg-not-allowed",
		},
		{
			name: "HS256 signed with the RSA public key as HMAC secret",
			form: func(t *testing.T, now time.Time) url.Values {
				a := sign(t, jose.HS256, rsaPublicPEM(t), "rs-1", claims("rs-client", now), nil)
				return tokenForm(a, "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "alg-not-allowed",
		},
		{
			name: "RS256 is not allowed",
			form: func(t *testing.T, now time.Time) url.Values {
				return tokenForm(sign(t, jose.RS256, rsaKey(), "rs-1", claims("rs-client", now), nil), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "alg-not-allowed",
		},
		{
			name: "unknown kid",
			form: func(t *testing.T, now time.Time) url.Values {
				return tokenForm(sign(t, jose.RS384, rsaKey(), "rs-2", claims("rs-client", now), nil), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "kid-unknown", wantClient: "rs-client",
		},
		{
			name: "kid missing",
			form: func(t *testing.T, now time.Time) url.Values {
				return tokenForm(sign(t, jose.RS384, rsaKey(), "", claims("rs-client", now), nil), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "kid-missing", wantClient: "rs-client",
		},
		{
			name: "wrong key with the registered kid",
			form: func(t *testing.T, now time.Time) url.Values {
				return tokenForm(sign(t, jose.RS384, rsaOtherKey(), "rs-1", claims("rs-client", now), nil), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "signature-invalid", wantClient: "rs-client",
		},
		{
			name: "another client's key",
			form: func(t *testing.T, now time.Time) url.Values {
				return tokenForm(sign(t, jose.ES384, ecKey(), "rs-1", claims("rs-client", now), nil), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "signature-invalid", wantClient: "rs-client",
		},
		{
			name: "jku header",
			form: func(t *testing.T, now time.Time) url.Values {
				h := map[jose.HeaderKey]any{"jku": "https://attacker.example/jwks"}
				return tokenForm(sign(t, jose.RS384, rsaKey(), "rs-1", claims("rs-client", now), h), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "jku-not-allowed", wantClient: "rs-client",
		},
		{
			name: "crit header", // RFC 7515: an extension not understood; not a bad signature
			form: func(t *testing.T, now time.Time) url.Values {
				h := map[jose.HeaderKey]any{"crit": []string{"foo"}, "foo": 1}
				return tokenForm(sign(t, jose.RS384, rsaKey(), "rs-1", claims("rs-client", now), h), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "crit-unsupported", wantClient: "rs-client",
		},
		{
			name: "typ not JWT",
			form: func(t *testing.T, now time.Time) url.Values {
				h := map[jose.HeaderKey]any{jose.HeaderType: "at+jwt"}
				return tokenForm(sign(t, jose.RS384, rsaKey(), "rs-1", claims("rs-client", now), h), "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "typ-invalid", wantClient: "rs-client",
		},
		{
			name: "wrong client_assertion_type",
			form: func(t *testing.T, now time.Time) url.Values {
				f := tokenForm(rsAssertion(t, now), "system/*.rs")
				f.Set("client_assertion_type", "not_a_assertion_type")
				return f
			},
			wantStatus: 400, wantCode: "invalid_request", wantReason: "assertion-type-invalid",
		},
		{
			name: "wrong grant_type",
			form: func(t *testing.T, now time.Time) url.Values {
				f := tokenForm(rsAssertion(t, now), "system/*.rs")
				f.Set("grant_type", "not_a_grant_type")
				return f
			},
			wantStatus: 400, wantCode: "unsupported_grant_type", wantReason: "grant-type-unsupported",
		},
		{
			name: "grant_type missing",
			form: func(t *testing.T, now time.Time) url.Values {
				f := tokenForm(rsAssertion(t, now), "system/*.rs")
				f.Del("grant_type")
				return f
			},
			wantStatus: 400, wantCode: "invalid_request", wantReason: "grant-type-missing",
		},
		{
			name: "repeated parameter",
			form: func(t *testing.T, now time.Time) url.Values {
				f := tokenForm(rsAssertion(t, now), "system/*.rs")
				f.Add("client_assertion", rsAssertion(t, now))
				return f
			},
			wantStatus: 400, wantCode: "invalid_request", wantReason: "param-repeated",
		},
		{
			name: "client_id differs from iss",
			form: func(t *testing.T, now time.Time) url.Values {
				f := tokenForm(rsAssertion(t, now), "system/*.rs")
				f.Set("client_id", "ec-client")
				return f
			},
			wantStatus: 401, wantCode: "invalid_client", wantReason: "client-id-mismatch", wantClient: "rs-client",
		},
		{
			name:       "user scope only",
			form:       func(t *testing.T, now time.Time) url.Values { return tokenForm(rsAssertion(t, now), "user/*.read") },
			wantStatus: 400, wantCode: "invalid_scope", wantReason: "scope-not-granted", wantClient: "rs-client",
		},
		{
			name: "scope beyond the client's",
			form: func(t *testing.T, now time.Time) url.Values {
				return tokenForm(rsAssertion(t, now), "system/Patient.c gateway/operator")
			},
			wantStatus: 400, wantCode: "invalid_scope", wantReason: "scope-not-granted", wantClient: "rs-client",
		},
		{
			name:       "scope missing",
			form:       func(t *testing.T, now time.Time) url.Values { return tokenForm(rsAssertion(t, now), "") },
			wantStatus: 400, wantCode: "invalid_scope", wantReason: "scope-missing", wantClient: "rs-client",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newTestServer(t)
			form := tt.form(t, c.Now())
			resp, f := s.Token(context.Background(), form)
			if f == nil {
				t.Fatalf("Token() = %+v, want failure %s", resp, tt.wantReason)
			}
			if f.Status != tt.wantStatus || f.Code != tt.wantCode || f.Reason != tt.wantReason || f.ClientID != tt.wantClient {
				t.Errorf("Token() failure = {%d %s %s client %q}, want {%d %s %s client %q}",
					f.Status, f.Code, f.Reason, f.ClientID, tt.wantStatus, tt.wantCode, tt.wantReason, tt.wantClient)
			}
			assertPHIFree(t, f, form.Get("client_assertion"))
		})
	}
}

// assertPHIFree checks that nothing of the assertion shows in the failure's
// client-facing or logged text.
func assertPHIFree(t *testing.T, f *Failure, assertion string) {
	t.Helper()
	body, _ := json.Marshal(f)
	for _, text := range []string{f.Description, f.Error(), string(body), f.WWWAuthenticate()} {
		if f.Description == "" {
			t.Errorf("failure %s has no description", f.Reason)
		}
		for _, part := range strings.Split(assertion, ".") {
			if len(part) > 8 && strings.Contains(text, part) {
				t.Errorf("failure text %q echoes the assertion", text)
			}
		}
		for _, claim := range []string{"rs-client", "ec-client", "not_a_iss", "no-such-client", "attacker"} {
			if strings.Contains(text, claim) {
				t.Errorf("failure text %q echoes claim %q", text, claim)
			}
		}
	}
}

func TestTokenReplayedJTI(t *testing.T) {
	s, c := newTestServer(t)
	a := rsAssertion(t, c.Now())
	if _, f := s.Token(context.Background(), tokenForm(a, "system/*.rs")); f != nil {
		t.Fatalf("first Token() = %v, want success", f)
	}
	c.Advance(time.Minute)
	_, f := s.Token(context.Background(), tokenForm(a, "system/*.rs"))
	if f == nil || f.Status != http.StatusUnauthorized || f.Code != "invalid_client" || f.Reason != "jti-replayed" {
		t.Fatalf("replayed Token() = %v, want invalid_client jti-replayed", f)
	}
	// The same jti from another client is a different assertion.
	cl := claims("ec-client", c.Now())
	cl["jti"] = "shared-jti"
	cl2 := claims("rs-client", c.Now())
	cl2["jti"] = "shared-jti"
	if _, f := s.Token(context.Background(), tokenForm(sign(t, jose.ES384, ecKey(), "ec-1", cl, nil), "system/Patient.rs")); f != nil {
		t.Fatalf("ec-client Token() = %v, want success", f)
	}
	if _, f := s.Token(context.Background(), tokenForm(sign(t, jose.RS384, rsaKey(), "rs-1", cl2, nil), "system/*.rs")); f != nil {
		t.Fatalf("rs-client Token() with another client's jti = %v, want success", f)
	}
}

// failingReplay is a ReplayCache whose store is down.
type failingReplay struct{}

func (failingReplay) Seen(context.Context, string, time.Time) (bool, error) {
	return false, context.DeadlineExceeded
}

func TestTokenReplayCacheDown(t *testing.T) {
	s, c := newTestServer(t, func(cfg *Config) { cfg.Replay = failingReplay{} })
	_, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), "system/*.rs"))
	if f == nil || f.Status != http.StatusServiceUnavailable || f.Reason != "replay-cache-error" || f.Err == nil {
		t.Fatalf("Token() = %v, want 503 replay-cache-error with Err", f)
	}
}

func TestTokenSuccess(t *testing.T) {
	tests := []struct {
		name       string
		assertion  func(*testing.T, time.Time) string
		scope      string
		wantScope  string
		wantClient string
		wantTenant string
	}{
		{
			name:      "RS384",
			assertion: func(t *testing.T, now time.Time) string { return rsAssertion(t, now) },
			scope:     "system/*.rs", wantScope: "system/*.rs", wantClient: "rs-client", wantTenant: "clinic-a",
		},
		{
			name: "ES384",
			assertion: func(t *testing.T, now time.Time) string {
				return sign(t, jose.ES384, ecKey(), "ec-1", claims("ec-client", now), nil)
			},
			scope: "system/Patient.read gateway/operator", wantScope: "gateway/operator system/Patient.read",
			wantClient: "ec-client", wantTenant: "clinic-b",
		},
		{
			name: "aud array and client_id",
			assertion: func(t *testing.T, now time.Time) string {
				c := claims("rs-client", now)
				c["aud"] = []string{"https://other.example", testTokenURL}
				return sign(t, jose.RS384, rsaKey(), "rs-1", c, nil)
			},
			scope: "system/Observation.cruds", wantScope: "system/Observation.cruds", wantClient: "rs-client", wantTenant: "clinic-a",
		},
		{
			name: "exp just inside the five minutes",
			assertion: func(t *testing.T, now time.Time) string {
				c := claims("rs-client", now)
				c["exp"] = now.Add(5 * time.Minute).Unix()
				return sign(t, jose.RS384, rsaKey(), "rs-1", c, nil)
			},
			scope: "system/*.rs", wantScope: "system/*.rs", wantClient: "rs-client", wantTenant: "clinic-a",
		},
		{
			name:      "scope intersection",
			assertion: func(t *testing.T, now time.Time) string { return rsAssertion(t, now) },
			scope:     "system/*.cruds gateway/operator gateway/ingest launch openid patient/*.rs",
			wantScope: "gateway/ingest system/*.rs system/Observation.cruds", wantClient: "rs-client", wantTenant: "clinic-a",
		},
		{
			name:      "v1 scope kept as written",
			assertion: func(t *testing.T, now time.Time) string { return rsAssertion(t, now) },
			scope:     "system/*.read", wantScope: "system/*.read", wantClient: "rs-client", wantTenant: "clinic-a",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newTestServer(t)
			form := tokenForm(tt.assertion(t, c.Now()), tt.scope)
			if tt.name == "aud array and client_id" {
				form.Set("client_id", "rs-client")
			}
			resp, f := s.Token(context.Background(), form)
			if f != nil {
				t.Fatalf("Token() = %v (%s), want success", f, f.Reason)
			}
			if resp.TokenType != "bearer" || resp.ExpiresIn != 300 || resp.Scope != tt.wantScope ||
				resp.ClientID != tt.wantClient || resp.Tenant != tt.wantTenant || resp.AccessToken == "" {
				t.Errorf("Token() = %+v, want bearer 300 scope %q client %s tenant %s", resp, tt.wantScope, tt.wantClient, tt.wantTenant)
			}
			body, _ := json.Marshal(resp)
			var m map[string]any
			json.Unmarshal(body, &m)
			if len(m) != 4 || m["token_type"] != "bearer" || m["expires_in"] != 300.0 {
				t.Errorf("response JSON = %s, want access_token, token_type, expires_in, scope only", body)
			}
			p, f := s.Authenticate(context.Background(), "Bearer "+resp.AccessToken)
			if f != nil {
				t.Fatalf("Authenticate(issued token) = %v (%s), want success", f, f.Reason)
			}
			if p.ClientID != tt.wantClient || p.Tenant != tt.wantTenant || p.Scopes.String() != tt.wantScope || p.Issuer != testTokenURL {
				t.Errorf("Authenticate() = %+v, want client %s tenant %s scope %q", p, tt.wantClient, tt.wantTenant, tt.wantScope)
			}
		})
	}
}

func TestTokenTTL(t *testing.T) {
	s, c := newTestServer(t, func(cfg *Config) { cfg.TokenTTL = 2 * time.Minute })
	resp, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), "system/*.rs"))
	if f != nil {
		t.Fatalf("Token() = %v, want success", f)
	}
	if resp.ExpiresIn != 120 {
		t.Errorf("ExpiresIn = %d, want 120", resp.ExpiresIn)
	}
}

// TestNonCanonicalBase64 checks that a token is refused when a part's last
// character carries non-zero unused bits. Go's base64 (as go-jose uses it)
// ignores those bits, so the same signed token could otherwise be sent as
// up to 16 other strings (found by FuzzToken).
func TestNonCanonicalBase64(t *testing.T) {
	for _, kind := range []string{"client assertion", "access token"} {
		for i, part := range []string{"header", "payload", "signature"} {
			t.Run(kind+"/"+part, func(t *testing.T) {
				s, c := newTestServer(t)
				var jws string
				if kind == "client assertion" {
					jws = rsAssertion(t, c.Now())
				} else {
					jws = issueToken(t, s, c, "system/*.rs")
				}
				bad, ok := nonCanonical(jws, i)
				if !ok {
					t.Skipf("the %s's %s has no unused bits (%d characters)", kind, part, len(strings.Split(jws, ".")[i]))
				}
				var f *Failure
				if kind == "client assertion" {
					_, f = s.Token(context.Background(), tokenForm(bad, "system/*.rs"))
				} else {
					_, f = s.Authenticate(context.Background(), "Bearer "+bad)
				}
				if f == nil || f.Reason != "malformed" {
					t.Fatalf("non-canonical %s accepted or refused for another reason: %+v", part, f)
				}
			})
		}
	}
}

// TestAllTenantClientReadsOnly: an all-tenant client registered with
// write scopes (a clinic client's, copied) is accepted with a warning
// naming it, and its tokens grant only what it can use: read and search,
// and the gateway scopes (gateway/ingest for dry runs); a token asking
// for writes alone gets none.
func TestAllTenantClientReadsOnly(t *testing.T) {
	s, c := newTestServer(t, func(cfg *Config) {
		cfg.Clients[0].Tenant = "*"
		cfg.Clients[0].Scopes = []string{"system/*.cruds", "system/Patient.cud", ScopeIngest, ScopeOperator}
	})
	ws := s.Warnings()
	if len(ws) != 1 || ws[0].Client != "rs-client" || !strings.Contains(ws[0].Message, "all-tenant client") ||
		!strings.Contains(ws[0].Message, "dry runs") || strings.Join(ws[0].NotGranted, " ") != "system/*.cud system/Patient.cud" {
		t.Fatalf("Warnings = %+v, want one for rs-client, not granting system/*.cud system/Patient.cud", ws)
	}
	tests := []struct{ request, want string }{
		{"system/*.cruds gateway/ingest", "gateway/ingest system/*.rs"},
		{"system/Observation.cu system/Observation.r", "system/Observation.r"},
		{"system/*.*", "system/*.rs"},
	}
	for _, tc := range tests {
		resp, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), tc.request))
		if f != nil {
			t.Fatalf("Token(%s): %+v", tc.request, f)
		}
		if resp.Scope != tc.want {
			t.Errorf("Token(%s).Scope = %q, want %q", tc.request, resp.Scope, tc.want)
		}
		p, fail := s.Authenticate(context.Background(), "Bearer "+resp.AccessToken)
		if fail != nil || p.Scopes.Allows("Patient", 'c') || p.Scopes.Allows("Observation", 'u') {
			t.Errorf("Authenticate(token for %s) = %+v, %+v; want no write permission", tc.request, p, fail)
		}
	}
	if _, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), "system/Patient.cud")); f == nil || f.Reason != "scope-not-granted" {
		t.Errorf("Token(system/Patient.cud) = %+v, want scope-not-granted", f)
	}
	// A clinic's client and a read-only all-tenant client: no warning.
	for _, scopes := range [][]string{nil, {"system/*.rs", ScopeOperator}} {
		s, _ := newTestServer(t, func(cfg *Config) {
			if scopes != nil {
				cfg.Clients[0].Tenant, cfg.Clients[0].Scopes = "*", scopes
			}
		})
		if ws := s.Warnings(); len(ws) != 0 {
			t.Errorf("scopes %v: Warnings = %+v, want none", scopes, ws)
		}
	}
}
