package auth

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestNewServerRejectsBadConfig(t *testing.T) {
	tmp := t.TempDir()
	rsa1024 := jose.JSONWebKey{Key: mustRSA1024(t), KeyID: "small"}
	privateSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: rsaKey(), KeyID: "priv"}}})
	pubFile := filepath.Join(tmp, "keys.json")
	if err := os.WriteFile(pubFile, jwks(t, jose.JSONWebKey{Key: rsaKey(), KeyID: "f"}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		edit    func(t *testing.T, cfg *Config)
		wantErr string
	}{
		{"token URL missing", func(t *testing.T, c *Config) { c.TokenURL = "" }, "tokenUrl is missing"},
		{"token URL relative", func(t *testing.T, c *Config) { c.TokenURL = "/auth/token" }, "tokenUrl"},
		{"token URL http", func(t *testing.T, c *Config) { c.TokenURL = "http://gateway.example/auth/token" }, "tokenUrl"},
		{"TTL too long", func(t *testing.T, c *Config) { c.TokenTTL = 6 * time.Minute }, "tokenTTL"},
		{"TTL negative", func(t *testing.T, c *Config) { c.TokenTTL = -time.Second }, "tokenTTL"},
		{"short secret", func(t *testing.T, c *Config) { c.SigningSecret = []byte("short") }, "signingSecret"},
		{"client without id", func(t *testing.T, c *Config) { c.Clients[0].ID = "" }, "missing id"},
		{"client without tenant", func(t *testing.T, c *Config) { c.Clients[0].Tenant = "" }, "missing tenant"},
		{"client of the all-tenant AuditEvents' tenant", func(t *testing.T, c *Config) { c.Clients[0].Tenant = "*all-tenants" }, "reserved"},
		{"client of a tenant beginning with *", func(t *testing.T, c *Config) { c.Clients[0].Tenant = "*x" }, "reserved"},
		{"duplicate client", func(t *testing.T, c *Config) { c.Clients[1].ID = c.Clients[0].ID }, "duplicate id"},
		{"client id of a console person", func(t *testing.T, c *Config) { c.Clients[1].ID = "person:alice@example.org" }, "may not begin with \"person:\""},
		{"client id of an external issuer's client", func(t *testing.T, c *Config) { c.Clients[1].ID = "https://idp.example|alice" }, "may not contain \"|\""},
		{"unknown scope", func(t *testing.T, c *Config) { c.Clients[0].Scopes = []string{"system/*.rsx"} }, "unrecognised scope"},
		{"no scopes", func(t *testing.T, c *Config) { c.Clients[0].Scopes = nil }, "no scopes"},
		{"no key set", func(t *testing.T, c *Config) { c.Clients[0].JWKS = nil }, "no key set"},
		{"both key sources", func(t *testing.T, c *Config) { c.Clients[0].JWKSFile = pubFile }, "not both"},
		{"missing key file", func(t *testing.T, c *Config) {
			c.Clients[0].JWKS, c.Clients[0].JWKSFile = nil, filepath.Join(tmp, "nope.json")
		}, "jwksFile"},
		{"not JSON", func(t *testing.T, c *Config) { c.Clients[0].JWKS = json.RawMessage(`"keys"`) }, "not a JWK Set"},
		{"empty set", func(t *testing.T, c *Config) { c.Clients[0].JWKS = json.RawMessage(`{"keys":[]}`) }, "no keys"},
		{"private key", func(t *testing.T, c *Config) { c.Clients[0].JWKS = privateSet }, "not a public key"},
		{"symmetric key", func(t *testing.T, c *Config) {
			c.Clients[0].JWKS = json.RawMessage(`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`)
		}, "not a public key"},
		{"RSA 1024", func(t *testing.T, c *Config) { c.Clients[0].JWKS = jwks(t, rsa1024) }, "at least 2048"},
		{"EC P-256", func(t *testing.T, c *Config) {
			c.Clients[0].JWKS = jwks(t, jose.JSONWebKey{Key: ec256Key(), KeyID: "p256"})
		}, "P-384"},
		{"no kid", func(t *testing.T, c *Config) { c.Clients[0].JWKS = jwks(t, jose.JSONWebKey{Key: rsaKey()}) }, "missing kid"},
		{"duplicate kid", func(t *testing.T, c *Config) {
			c.Clients[0].JWKS = jwks(t, jose.JSONWebKey{Key: rsaKey(), KeyID: "k"}, jose.JSONWebKey{Key: rsaOtherKey(), KeyID: "k"})
		}, "duplicate kid"},
		{"RSA key for RS256", func(t *testing.T, c *Config) {
			c.Clients[0].JWKS = jwks(t, jose.JSONWebKey{Key: rsaKey(), KeyID: "k", Algorithm: "RS256"})
		}, "want RS384"},
		{"encryption key", func(t *testing.T, c *Config) {
			c.Clients[0].JWKS = jwks(t, jose.JSONWebKey{Key: rsaKey(), KeyID: "k", Use: "enc"})
		}, "want sig"},
		{"external over http", func(t *testing.T, c *Config) {
			c.External = []ExternalIssuer{{Issuer: extIssuer, JWKSURL: "http://idp.example/jwks", Audience: extAudience, Scopes: []string{"system/*.rs"}}}
		}, "https"},
		{"external without scopes", func(t *testing.T, c *Config) {
			c.External = []ExternalIssuer{{Issuer: extIssuer, JWKSURL: "https://idp.example/jwks", Audience: extAudience}}
		}, "no scopes"},
		{"external without audience", func(t *testing.T, c *Config) {
			c.External = []ExternalIssuer{{Issuer: extIssuer, JWKSURL: "https://idp.example/jwks", Scopes: []string{"system/*.rs"}}}
		}, "missing audience"},
		{"external issuer with the key separator", func(t *testing.T, c *Config) {
			c.External = []ExternalIssuer{{Issuer: "https://idp.example/a|b", JWKSURL: "https://idp.example/jwks", Audience: extAudience, Scopes: []string{"system/*.rs"}}}
		}, "may not contain \"|\""},
		{"external issuer is the gateway", func(t *testing.T, c *Config) {
			c.External = []ExternalIssuer{{Issuer: testTokenURL, JWKSURL: "https://idp.example/jwks", Audience: extAudience, Scopes: []string{"system/*.rs"}}}
		}, "own tokenUrl"},
		{"nothing configured", func(t *testing.T, c *Config) { c.Clients = nil }, "no clients"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			cfg := testConfig(c)
			cfg.Clients[0].JWKS = jwks(t, jose.JSONWebKey{Key: rsaKey(), KeyID: "rs-1"})
			cfg.Clients[1].JWKS = jwks(t, jose.JSONWebKey{Key: ecKey(), KeyID: "ec-1"})
			tt.edit(t, &cfg)
			_, err := NewServer(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewServer() error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func mustRSA1024(t *testing.T) any {
	t.Helper()
	var key jose.JSONWebKey
	// A fixed 1024-bit public key: generating one is refused by crypto/rsa.
	if err := json.Unmarshal([]byte(`{"kty":"RSA","e":"AQAB","n":"`+strings.Repeat("w", 170)+`w"}`), &key); err != nil {
		t.Fatal(err)
	}
	return key.Key
}

func TestNewServerDefaults(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.Clients = cfg.Clients[:1]
	cfg.Clients[0].JWKS = nil
	cfg.Clients[0].JWKSFile = filepath.Join(t.TempDir(), "keys.json")
	if err := os.WriteFile(cfg.Clients[0].JWKSFile, jwks(t, jose.JSONWebKey{Key: rsaKey(), KeyID: "rs-1"}), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.SigningSecret = nil
	cfg.TokenURL = "http://127.0.0.1:8080/auth/token"
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer() = %v", err)
	}
	if len(s.secret) != minSecretLen || s.ttl != 5*time.Minute || s.replay == nil {
		t.Errorf("defaults: secret %d bytes, ttl %s, replay %v; want 32, 5m, memory cache", len(s.secret), s.ttl, s.replay)
	}
}

func TestConfigJSON(t *testing.T) {
	in := `{
		"tokenUrl": "https://gateway.example/auth/token",
		"tokenTTL": "2m30s",
		"signingSecret": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"clients": [{"id": "c1", "tenant": "t1", "scopes": ["system/*.rs"], "jwksFile": "/etc/keys/c1.json"}],
		"external": [{"issuer": "https://idp.example", "jwksUrl": "https://idp.example/jwks", "audience": "a", "tenantClaim": "org", "scopes": ["system/*.rs"]}]
	}`
	var cfg Config
	if err := json.Unmarshal([]byte(in), &cfg); err != nil {
		t.Fatalf("Unmarshal() = %v", err)
	}
	if cfg.TokenURL != testTokenURL || cfg.TokenTTL != 150*time.Second || string(cfg.SigningSecret) != string(testSecret) ||
		len(cfg.Clients) != 1 || cfg.Clients[0].JWKSFile != "/etc/keys/c1.json" || cfg.External[0].TenantClaim != "org" {
		t.Errorf("Unmarshal() = %+v", cfg)
	}
	if err := json.Unmarshal([]byte(`{"tokenTTL": "5 minutes"}`), &cfg); err == nil {
		t.Errorf("Unmarshal(bad tokenTTL) = nil error, want error")
	}
}

func TestSmartConfiguration(t *testing.T) {
	got := SmartConfiguration(testTokenURL)
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"capabilities":["client-confidential-asymmetric","permission-v1","permission-v2"],` +
		`"grant_types_supported":["client_credentials"],` +
		`"scopes_supported":["system/*.cruds","system/*.rs","system/*.read","system/*.write",` +
		`"system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs","gateway/ingest","gateway/operator","gateway/auditor"],` +
		`"token_endpoint":"https://gateway.example/auth/token",` +
		`"token_endpoint_auth_methods_supported":["private_key_jwt"],` +
		`"token_endpoint_auth_signing_alg_values_supported":["RS384","ES384"]}`
	if string(b) != want {
		t.Errorf("SmartConfiguration() = %s, want %s", b, want)
	}
}
