package auth

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// issueToken gets an access token for rs-client through the token endpoint.
func issueToken(t *testing.T, s *Server, c *clock, scope string) string {
	t.Helper()
	resp, f := s.Token(context.Background(), tokenForm(rsAssertion(t, c.Now()), scope))
	if f != nil {
		t.Fatalf("Token() = %v (%s), want success", f, f.Reason)
	}
	return resp.AccessToken
}

func TestAuthenticateRejects(t *testing.T) {
	tests := []struct {
		name       string
		header     func(t *testing.T, s *Server, c *clock) string
		wantStatus int
		wantCode   string
		wantReason string
		wantHeader string
	}{
		{
			name:       "no header",
			header:     func(*testing.T, *Server, *clock) string { return "" },
			wantStatus: 401, wantReason: "token-missing",
			wantHeader: `Bearer realm="ketamine-gateway"`,
		},
		{
			name:       "basic credentials",
			header:     func(*testing.T, *Server, *clock) string { return "Basic dXNlcjpwYXNz" },
			wantStatus: 401, wantReason: "scheme-unsupported",
			wantHeader: `Bearer realm="ketamine-gateway"`,
		},
		{
			name:       "bearer without token",
			header:     func(*testing.T, *Server, *clock) string { return "Bearer " },
			wantStatus: 401, wantCode: "invalid_token", wantReason: "malformed",
			wantHeader: `Bearer realm="ketamine-gateway", error="invalid_token", error_description="the access token is malformed"`,
		},
		{
			name:       "garbage token",
			header:     func(*testing.T, *Server, *clock) string { return "Bearer abc.def.ghi" },
			wantStatus: 401, wantCode: "invalid_token", wantReason: "malformed",
		},
		{
			name:       "token with forbidden characters",
			header:     func(*testing.T, *Server, *clock) string { return `Bearer a"b` },
			wantStatus: 401, wantCode: "invalid_token", wantReason: "malformed",
		},
		{
			name: "expired",
			header: func(t *testing.T, s *Server, c *clock) string {
				tok := issueToken(t, s, c, "system/*.rs")
				c.Advance(5*time.Minute + clockSkew)
				return "Bearer " + tok
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "expired",
			wantHeader: `Bearer realm="ketamine-gateway", error="invalid_token", error_description="the access token has expired"`,
		},
		{
			name: "issued in the future",
			header: func(t *testing.T, s *Server, c *clock) string {
				tok := issueToken(t, s, c, "system/*.rs")
				c.Advance(-time.Hour) // the gateway's clock went back: the token's iat is ahead
				return "Bearer " + tok
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "iat-in-future",
		},
		{
			name: "tampered payload",
			header: func(t *testing.T, s *Server, c *clock) string {
				tok := issueToken(t, s, c, "system/*.rs")
				parts := strings.Split(tok, ".")
				payload, err := base64.RawURLEncoding.DecodeString(parts[1])
				if err != nil {
					t.Fatal(err)
				}
				forged := strings.Replace(string(payload), "system/*.rs", "system/*.cruds", 1)
				parts[1] = base64.RawURLEncoding.EncodeToString([]byte(forged))
				return "Bearer " + strings.Join(parts, ".")
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "signature-invalid",
		},
		{
			name: "tampered signature",
			header: func(t *testing.T, s *Server, c *clock) string {
				tok := issueToken(t, s, c, "system/*.rs")
				sig := []byte(tok[strings.LastIndex(tok, ".")+1:])
				if sig[0] == 'A' {
					sig[0] = 'B'
				} else {
					sig[0] = 'A'
				}
				return "Bearer " + tok[:strings.LastIndex(tok, ".")+1] + string(sig)
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "signature-invalid",
		},
		{
			name: "signed with another secret",
			header: func(t *testing.T, s *Server, c *clock) string {
				other, oc := newTestServer(t, func(cfg *Config) { cfg.SigningSecret = []byte(strings.Repeat("x", 32)) })
				return "Bearer " + issueToken(t, other, oc, "system/*.rs")
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "signature-invalid",
		},
		{
			name: "issued by another gateway with the same secret",
			header: func(t *testing.T, s *Server, c *clock) string {
				other, oc := newTestServer(t, func(cfg *Config) { cfg.TokenURL = "https://other.example/auth/token" })
				resp, f := other.Token(context.Background(), tokenForm(func() string {
					cl := claims("rs-client", oc.Now())
					cl["aud"] = "https://other.example/auth/token"
					return sign(t, jose.RS384, rsaKey(), "rs-1", cl, nil)
				}(), "system/*.rs"))
				if f != nil {
					t.Fatalf("other Token() = %v", f)
				}
				return "Bearer " + resp.AccessToken
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "iss-unknown",
		},
		{
			name: "client no longer registered",
			header: func(t *testing.T, s *Server, c *clock) string {
				tok := issueToken(t, s, c, "system/*.rs")
				delete(s.clients, "rs-client")
				return "Bearer " + tok
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "client-unknown",
		},
		{
			name: "alg none",
			header: func(t *testing.T, s *Server, c *clock) string {
				return "Bearer " + unsigned(t, map[string]string{"alg": "none"}, map[string]any{
					"iss": testTokenURL, "sub": "rs-client", "tenant": "clinic-a", "scope": "system/*.cruds",
					"exp": c.Now().Add(time.Minute).Unix(),
				})
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "alg-not-allowed",
		},
		{
			name: "client assertion used as access token",
			header: func(t *testing.T, s *Server, c *clock) string {
				return "Bearer " + rsAssertion(t, c.Now())
			},
			wantStatus: 401, wantCode: "invalid_token", wantReason: "iss-unknown",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c := newTestServer(t)
			header := tt.header(t, s, c)
			p, f := s.Authenticate(context.Background(), header)
			if f == nil {
				t.Fatalf("Authenticate() = %+v, want failure %s", p, tt.wantReason)
			}
			if f.Status != tt.wantStatus || f.Code != tt.wantCode || f.Reason != tt.wantReason {
				t.Errorf("Authenticate() failure = {%d %q %s}, want {%d %q %s}", f.Status, f.Code, f.Reason, tt.wantStatus, tt.wantCode, tt.wantReason)
			}
			if tt.wantHeader != "" && f.WWWAuthenticate() != tt.wantHeader {
				t.Errorf("WWWAuthenticate() = %s, want %s", f.WWWAuthenticate(), tt.wantHeader)
			}
			if tok := strings.TrimPrefix(header, "Bearer "); len(tok) > 8 && strings.Contains(f.WWWAuthenticate()+f.Description+f.Error(), tok) {
				t.Errorf("failure echoes the token")
			}
		})
	}
}

func TestAuthenticateOwnToken(t *testing.T) {
	s, c := newTestServer(t)
	tok := issueToken(t, s, c, "system/*.rs system/Observation.cruds gateway/ingest")
	c.Advance(4 * time.Minute)
	for _, header := range []string{"Bearer " + tok, "bearer " + tok, "Bearer   " + tok + " "} {
		p, f := s.Authenticate(context.Background(), header)
		if f != nil {
			t.Fatalf("Authenticate(%.20q...) = %v (%s), want success", header, f, f.Reason)
		}
		checks := []struct {
			name string
			got  bool
			want bool
		}{
			{"Allows(Observation, c)", p.Scopes.Allows("Observation", 'c'), true},
			{"Allows(Patient, r)", p.Scopes.Allows("Patient", 'r'), true},
			{"Allows(Patient, d)", p.Scopes.Allows("Patient", 'd'), false},
			{"Has(gateway/ingest)", p.Scopes.Has(ScopeIngest), true},
			{"Has(gateway/operator)", p.Scopes.Has(ScopeOperator), false},
		}
		for _, ch := range checks {
			if ch.got != ch.want {
				t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
			}
		}
	}
}

// A token's scopes are clipped to the client's current configuration.
func TestAuthenticateClipsToCurrentClientScopes(t *testing.T) {
	s, c := newTestServer(t)
	tok := issueToken(t, s, c, "system/*.rs gateway/ingest")
	narrowed, _ := newTestServer(t, func(cfg *Config) {
		cfg.Clients[0].Scopes = []string{"system/Observation.r"}
		cfg.Now = c.Now
	})
	p, f := narrowed.Authenticate(context.Background(), "Bearer "+tok)
	if f != nil {
		t.Fatalf("Authenticate() = %v, want success", f)
	}
	if got := p.Scopes.String(); got != "system/Observation.r" {
		t.Errorf("Scopes = %q, want system/Observation.r", got)
	}
}

func TestInsufficientScope(t *testing.T) {
	f := InsufficientScope("rs-client", "system/Patient.c")
	want := `Bearer realm="ketamine-gateway", error="insufficient_scope", error_description="the access token does not grant the scope this request needs", scope="system/Patient.c"`
	if f.Status != http.StatusForbidden || f.WWWAuthenticate() != want {
		t.Errorf("InsufficientScope() = %d %s, want 403 %s", f.Status, f.WWWAuthenticate(), want)
	}
}

func TestFailureRendering(t *testing.T) {
	tests := []struct {
		name       string
		f          *Failure
		wantJSON   string
		wantHeader string
	}{
		{
			name:       "invalid_client",
			f:          invalidClient("kid-unknown", clientAuthFailed, "rs-client"),
			wantJSON:   `{"error":"invalid_client","error_description":"client authentication failed"}`,
			wantHeader: `Bearer realm="ketamine-gateway", error="invalid_client", error_description="client authentication failed"`,
		},
		{
			name:     "400 has no WWW-Authenticate",
			f:        invalidRequest("assertion-missing", "client_assertion is required"),
			wantJSON: `{"error":"invalid_request","error_description":"client_assertion is required"}`,
		},
		{
			name:       "quotes cannot break the header",
			f:          &Failure{Status: 401, Code: "invalid_token", Description: "a \"quoted\"\r\n\\ text"},
			wantJSON:   `{"error":"invalid_token","error_description":"a \"quoted\"\r\n\\ text"}`,
			wantHeader: `Bearer realm="ketamine-gateway", error="invalid_token", error_description="a quoted text"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := tt.f.MarshalJSON()
			if err != nil || string(b) != tt.wantJSON {
				t.Errorf("MarshalJSON() = %s, %v, want %s", b, err, tt.wantJSON)
			}
			if got := tt.f.WWWAuthenticate(); got != tt.wantHeader {
				t.Errorf("WWWAuthenticate() = %s, want %s", got, tt.wantHeader)
			}
		})
	}
}

// TestPrincipalKey: an external issuer's client is keyed by its issuer;
// a registered client and a console person are their ids.
func TestPrincipalKey(t *testing.T) {
	tests := []struct {
		p   *Principal
		key string
	}{
		{&Principal{ClientID: "ehr-a", Issuer: "https://gw.example/auth/token"}, "ehr-a"},
		{&Principal{ClientID: "ehr-a", Issuer: "https://idp.example", External: true}, "https://idp.example|ehr-a"},
		{&Principal{ClientID: "person:x|y", Issuer: "https://login.example"}, "person:x|y"},
		{nil, ""},
	}
	for _, tt := range tests {
		if got := tt.p.Key(); got != tt.key {
			t.Errorf("%+v.Key() = %q, want %q", tt.p, got, tt.key)
		}
	}
}

// TestTokenExpiry pins when a token stops working, by an injected clock:
// the gateway's own tokens exactly at their exp (tokenTTL after issue: it
// made them on its own clock, so no skew stretches a stolen token's life),
// an external issuer's tokens with clockSkew past theirs (another clock).
func TestTokenExpiry(t *testing.T) {
	tests := []struct {
		name     string
		external bool
		ttl      time.Duration // own tokens' tokenTTL; 0 the default
		after    time.Duration // own: since issue; external: since exp
		wantOK   bool
	}{
		{"own, a second before exp", false, 0, maxTokenTTL - time.Second, true},
		{"own, at exp", false, 0, maxTokenTTL, false},
		{"own, a second after exp", false, 0, maxTokenTTL + time.Second, false},
		{"own, within the old 30 s skew", false, 0, maxTokenTTL + clockSkew - time.Second, false},
		{"own 3 s token, at 2 s", false, 3 * time.Second, 2 * time.Second, true},
		{"own 3 s token, at 3 s", false, 3 * time.Second, 3 * time.Second, false},
		{"external, a second before exp", true, 0, -time.Second, true},
		{"external, within the skew after exp", true, 0, clockSkew - time.Second, true},
		{"external, skew passed", true, 0, clockSkew, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newExternalFixture(t, func(cfg *Config) { cfg.TokenTTL = tt.ttl })
			var header string
			if tt.external {
				claims := extClaims(fx.c.Now())
				claims["iat"] = fx.c.Now().Add(-time.Minute).Unix()
				claims["exp"] = fx.c.Now().Unix()
				header = "Bearer " + sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, claims, nil)
			} else {
				header = "Bearer " + issueToken(t, fx.s, fx.c, "system/*.rs")
			}
			fx.c.Advance(tt.after)
			_, f := fx.s.Authenticate(context.Background(), header)
			switch {
			case tt.wantOK && f != nil:
				t.Errorf("Authenticate() after %s = %v (%s), want success", tt.after, f, f.Reason)
			case !tt.wantOK && (f == nil || f.Reason != "expired"):
				t.Errorf("Authenticate() after %s = %v, want invalid_token (expired)", tt.after, f)
			}
		})
	}
}
