package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const (
	extIssuer   = "https://idp.example"
	extAudience = "https://gateway.example/fhir"
)

// jwksServer serves a JWK Set that tests can swap, counting fetches.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    []byte
	status  int
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	t.Helper()
	js := &jwksServer{status: http.StatusOK}
	js.set(t, keys...)
	js.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		js.fetches.Add(1)
		js.mu.Lock()
		defer js.mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.WriteHeader(js.status)
		w.Write(js.body)
	}))
	js.Config.ErrorLog = log.New(io.Discard, "", 0) // expected TLS handshake failures
	js.StartTLS()
	t.Cleanup(js.Close)
	return js
}

func (js *jwksServer) set(t *testing.T, keys ...jose.JSONWebKey) {
	b := jwks(t, keys...)
	js.mu.Lock()
	defer js.mu.Unlock()
	js.body = b
}

type externalFixture struct {
	s     *Server
	c     *clock
	jwks  *jwksServer
	rsa   jose.JSONWebKey
	ec256 jose.JSONWebKey
	ec384 jose.JSONWebKey
}

var (
	ec256Key    = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P256()) })
	ec384ExtKey = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
)

func newExternalFixture(t *testing.T, edit ...func(*Config)) *externalFixture {
	t.Helper()
	fx := &externalFixture{
		rsa:   jose.JSONWebKey{Key: rsaOtherKey(), KeyID: "idp-rsa", Use: "sig"},
		ec256: jose.JSONWebKey{Key: ec256Key(), KeyID: "idp-ec256"},
		ec384: jose.JSONWebKey{Key: ec384ExtKey(), KeyID: "idp-ec384", Algorithm: "ES384"},
	}
	fx.jwks = newJWKSServer(t, fx.rsa, fx.ec256, fx.ec384)
	fx.s, fx.c = newTestServer(t, append([]func(*Config){func(cfg *Config) {
		cfg.External = []ExternalIssuer{{
			Issuer:   extIssuer,
			JWKSURL:  fx.jwks.URL + "/jwks",
			Audience: extAudience,
			Scopes:   []string{"system/*.rs", ScopeIngest},
			Tenants:  []string{"clinic-a", "clinic-c"},
		}}
		cfg.JWKSClient = fx.jwks.Client()
	}}, edit...)...)
	return fx
}

func extClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss":       extIssuer,
		"sub":       "svc-account-7",
		"client_id": "lab-connector",
		"aud":       []string{extAudience},
		"exp":       now.Add(5 * time.Minute).Unix(),
		"iat":       now.Unix(),
		"tenant":    "clinic-a",
		"scope":     "system/*.cruds gateway/ingest gateway/operator",
	}
}

func TestAuthenticateExternal(t *testing.T) {
	tests := []struct {
		name       string
		token      func(t *testing.T, fx *externalFixture) string
		wantReason string // "" for success
		wantScope  string
		wantStatus int
	}{
		{
			name: "RS256",
			token: func(t *testing.T, fx *externalFixture) string {
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, extClaims(fx.c.Now()), nil)
			},
			wantScope: "gateway/ingest system/*.rs",
		},
		{
			name: "ES256",
			token: func(t *testing.T, fx *externalFixture) string {
				return sign(t, jose.ES256, fx.ec256.Key, fx.ec256.KeyID, extClaims(fx.c.Now()), nil)
			},
			wantScope: "gateway/ingest system/*.rs",
		},
		{
			name: "ES384 with scope array",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["scope"] = []string{"system/Observation.rs", "openid"}
				return sign(t, jose.ES384, fx.ec384.Key, fx.ec384.KeyID, c, nil)
			},
			wantScope: "system/Observation.rs",
		},
		{
			name: "RS512 not allowed",
			token: func(t *testing.T, fx *externalFixture) string {
				return sign(t, jose.RS512, fx.rsa.Key, fx.rsa.KeyID, extClaims(fx.c.Now()), nil)
			},
			wantReason: "alg-not-allowed", wantStatus: 401,
		},
		{
			name: "key alg mismatch",
			token: func(t *testing.T, fx *externalFixture) string {
				return sign(t, jose.ES256, ec256Key(), fx.ec384.KeyID, extClaims(fx.c.Now()), nil)
			},
			wantReason: "signature-invalid", wantStatus: 401,
		},
		{
			name: "HMAC with the issuer's public key",
			token: func(t *testing.T, fx *externalFixture) string {
				return sign(t, jose.HS256, []byte(jwks(t, fx.rsa)), fx.rsa.KeyID, extClaims(fx.c.Now()), nil)
			},
			wantReason: "signature-invalid", wantStatus: 401,
		},
		{
			name: "wrong aud",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["aud"] = "https://elsewhere.example"
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "aud-mismatch", wantStatus: 401,
		},
		{
			name: "unknown issuer",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["iss"] = "https://evil.example"
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "iss-unknown", wantStatus: 401,
		},
		{
			name: "expired",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["exp"] = fx.c.Now().Add(-time.Minute).Unix()
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "expired", wantStatus: 401,
		},
		{
			name: "exp missing",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				delete(c, "exp")
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "exp-missing", wantStatus: 401,
		},
		{
			name: "nbf ahead",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["nbf"] = fx.c.Now().Add(2 * time.Minute).Unix()
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "not-yet-valid", wantStatus: 401,
		},
		{
			name: "iat ahead",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["iat"] = fx.c.Now().Add(time.Hour).Unix()
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "iat-in-future", wantStatus: 401,
		},
		{
			name: "iat within skew",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["iat"] = fx.c.Now().Add(10 * time.Second).Unix()
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantScope: "gateway/ingest system/*.rs",
		},
		{
			name: "nbf within skew",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["nbf"] = fx.c.Now().Add(10 * time.Second).Unix()
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantScope: "gateway/ingest system/*.rs",
		},
		{
			name: "tenant missing",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				delete(c, "tenant")
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "tenant-missing", wantStatus: 401,
		},
		{
			name: "tenant reserved",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["tenant"] = "*all-tenants"
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "tenant-reserved", wantStatus: 401,
		},
		{
			name: "tenant not allowed",
			token: func(t *testing.T, fx *externalFixture) string {
				c := extClaims(fx.c.Now())
				c["tenant"] = "clinic-b"
				return sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, c, nil)
			},
			wantReason: "tenant-not-allowed", wantStatus: 401,
		},
		{
			name: "kid missing",
			token: func(t *testing.T, fx *externalFixture) string {
				return sign(t, jose.RS256, fx.rsa.Key, "", extClaims(fx.c.Now()), nil)
			},
			wantReason: "kid-missing", wantStatus: 401,
		},
		{
			name: "wrong key with a known kid",
			token: func(t *testing.T, fx *externalFixture) string {
				return sign(t, jose.RS256, rsaKey(), fx.rsa.KeyID, extClaims(fx.c.Now()), nil)
			},
			wantReason: "signature-invalid", wantStatus: 401,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newExternalFixture(t)
			p, f := fx.s.Authenticate(context.Background(), "Bearer "+tt.token(t, fx))
			if tt.wantReason == "" {
				if f != nil {
					t.Fatalf("Authenticate() = %v (%s), want success", f, f.Reason)
				}
				if p.ClientID != "lab-connector" || p.Tenant != "clinic-a" || p.Issuer != extIssuer || p.Scopes.String() != tt.wantScope {
					t.Errorf("Authenticate() = %+v, want lab-connector clinic-a scope %q", p, tt.wantScope)
				}
				// The issuer's lab-connector, not a registered one.
				if !p.External || p.Key() != extIssuer+"|lab-connector" {
					t.Errorf("Authenticate() = %+v (key %q), want the issuer's client", p, p.Key())
				}
				return
			}
			// A failure that names the client names the issuer's.
			if f != nil && f.ClientID != "" && f.Issuer != extIssuer {
				t.Errorf("Authenticate() failure names %q of %q, want the issuer's", f.ClientID, f.Issuer)
			}
			if f == nil {
				t.Fatalf("Authenticate() = %+v, want failure %s", p, tt.wantReason)
			}
			if f.Reason != tt.wantReason || f.Status != tt.wantStatus {
				t.Errorf("Authenticate() failure = %d %s, want %d %s", f.Status, f.Reason, tt.wantStatus, tt.wantReason)
			}
		})
	}
}

// Keys come from the configured URL only; a jku header is never followed.
func TestAuthenticateExternalIgnoresJKU(t *testing.T) {
	fx := newExternalFixture(t)
	attackerKey := jose.JSONWebKey{Key: rsaKey(), KeyID: "attacker"}
	attacker := newJWKSServer(t, attackerKey)
	h := map[jose.HeaderKey]any{"jku": attacker.URL + "/jwks", "x5u": attacker.URL + "/cert"}
	tok := sign(t, jose.RS256, attackerKey.Key, attackerKey.KeyID, extClaims(fx.c.Now()), h)
	_, f := fx.s.Authenticate(context.Background(), "Bearer "+tok)
	if f == nil || f.Reason != "kid-unknown" {
		t.Fatalf("Authenticate(jku token) = %v, want kid-unknown", f)
	}
	if n := attacker.fetches.Load(); n != 0 {
		t.Errorf("attacker JWKS fetched %d times, want 0", n)
	}
}

func TestAuthenticateExternalKeyRotation(t *testing.T) {
	fx := newExternalFixture(t)
	auth := func(key jose.JSONWebKey) *Failure {
		t.Helper()
		_, f := fx.s.Authenticate(context.Background(), "Bearer "+sign(t, jose.RS256, key.Key, key.KeyID, extClaims(fx.c.Now()), nil))
		return f
	}
	if f := auth(fx.rsa); f != nil {
		t.Fatalf("Authenticate(known key) = %v (%s), want success", f, f.Reason)
	}
	if n := fx.jwks.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d after first use, want 1", n)
	}

	rotated := jose.JSONWebKey{Key: rsaKey(), KeyID: "idp-rsa-2"}
	fx.jwks.set(t, fx.rsa, rotated)

	// Within a minute of the last fetch an unknown kid does not refetch.
	fx.c.Advance(30 * time.Second)
	if f := auth(rotated); f == nil || f.Reason != "kid-unknown" {
		t.Fatalf("Authenticate(new kid, 30s) = %v, want kid-unknown", f)
	}
	if n := fx.jwks.fetches.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1: refetch is limited to once a minute", n)
	}

	// After a minute it refetches once and finds the new key.
	fx.c.Advance(31 * time.Second)
	if f := auth(rotated); f != nil {
		t.Fatalf("Authenticate(new kid, 61s) = %v (%s), want success", f, f.Reason)
	}
	if n := fx.jwks.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d, want 2", n)
	}
	// A flood of unknown kids costs no further fetches.
	for range 10 {
		if f := auth(jose.JSONWebKey{Key: rsaKey(), KeyID: "bogus"}); f == nil || f.Reason != "kid-unknown" {
			t.Fatalf("Authenticate(bogus kid) = %v, want kid-unknown", f)
		}
	}
	if n := fx.jwks.fetches.Load(); n != 2 {
		t.Fatalf("fetches = %d after unknown-kid flood, want 2", n)
	}
	// Known keys keep working without fetches.
	if f := auth(fx.rsa); f != nil {
		t.Fatalf("Authenticate(known key) = %v, want success", f)
	}

	// After an hour the set is refreshed; a removed key stops working.
	fx.jwks.set(t, rotated)
	fx.c.Advance(time.Hour)
	if f := auth(fx.rsa); f == nil || f.Reason != "kid-unknown" {
		t.Fatalf("Authenticate(removed key) = %v, want kid-unknown", f)
	}
	if n := fx.jwks.fetches.Load(); n != 3 {
		t.Fatalf("fetches = %d after an hour, want 3", n)
	}
}

func TestAuthenticateExternalJWKSUnavailable(t *testing.T) {
	fx := newExternalFixture(t)
	fx.jwks.mu.Lock()
	fx.jwks.status = http.StatusInternalServerError
	fx.jwks.mu.Unlock()
	_, f := fx.s.Authenticate(context.Background(), "Bearer "+sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, extClaims(fx.c.Now()), nil))
	if f == nil || f.Status != http.StatusServiceUnavailable || f.Reason != "jwks-unavailable" || f.Err == nil {
		t.Fatalf("Authenticate() = %v, want 503 jwks-unavailable", f)
	}
	if f.WWWAuthenticate() != "" {
		t.Errorf("WWWAuthenticate() = %q for a 503, want empty", f.WWWAuthenticate())
	}
}

// The default HTTP client verifies TLS: the test server's self-signed
// certificate is refused.
func TestAuthenticateExternalVerifiesTLS(t *testing.T) {
	fx := newExternalFixture(t, func(cfg *Config) { cfg.JWKSClient = nil })
	_, f := fx.s.Authenticate(context.Background(), "Bearer "+sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, extClaims(fx.c.Now()), nil))
	if f == nil || f.Reason != "jwks-unavailable" {
		t.Fatalf("Authenticate() with an untrusted certificate = %v, want jwks-unavailable", f)
	}
	if n := fx.jwks.fetches.Load(); n != 0 {
		t.Errorf("handler reached %d times, want 0 (TLS handshake must fail)", n)
	}
}

func TestJWKSNoRedirects(t *testing.T) {
	fx := newExternalFixture(t)
	redirector := httptest.NewTLSServer(http.RedirectHandler(fx.jwks.URL+"/jwks", http.StatusFound))
	t.Cleanup(redirector.Close)
	s, c := newTestServer(t, func(cfg *Config) {
		cfg.External = []ExternalIssuer{{Issuer: extIssuer, JWKSURL: redirector.URL, Audience: extAudience, Scopes: []string{"system/*.rs"}}}
		cfg.JWKSClient = fx.jwks.Client()
	})
	_, f := s.Authenticate(context.Background(), "Bearer "+sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, extClaims(c.Now()), nil))
	if f == nil || f.Reason != "jwks-unavailable" {
		t.Fatalf("Authenticate() via a redirecting JWKS URL = %v, want jwks-unavailable", f)
	}
	if n := fx.jwks.fetches.Load(); n != 0 {
		t.Errorf("redirect target fetched %d times, want 0", n)
	}
}

// TestExternalAllTenants: an issuer names every tenant ("*") only when its
// tenants list says so; without a list it may name any one tenant, never
// all of them (p17 F7).
func TestExternalAllTenants(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tenants []string
		tenant  string
		reason  string
	}{
		{"no list, one tenant", nil, "clinic-b", ""},
		{"no list, every tenant", nil, "*", "tenant-not-allowed"},
		{"a list naming every tenant", []string{"*"}, "*", ""},
		{"a list without it", []string{"clinic-a"}, "*", "tenant-not-allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newExternalFixture(t, func(c *Config) { c.External[0].Tenants = tc.tenants })
			claims := extClaims(fx.c.Now())
			claims["tenant"] = tc.tenant
			p, f := fx.s.Authenticate(context.Background(), "Bearer "+sign(t, jose.RS256, fx.rsa.Key, fx.rsa.KeyID, claims, nil))
			switch {
			case tc.reason == "" && (f != nil || p.Tenant != tc.tenant):
				t.Errorf("Authenticate() = %+v, %v; want tenant %q", p, f, tc.tenant)
			case tc.reason != "" && (f == nil || f.Reason != tc.reason):
				t.Errorf("Authenticate() = %+v, %+v; want %s", p, f, tc.reason)
			}
		})
	}
}
