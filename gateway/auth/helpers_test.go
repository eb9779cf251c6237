package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const testTokenURL = "https://gateway.example/auth/token"

var testSecret = []byte("0123456789abcdef0123456789abcdef")

// Keys are generated once per test binary: RSA generation is slow.
var (
	rsaKey      = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	rsaOtherKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA() })
	ecKey       = sync.OnceValue(func() *ecdsa.PrivateKey { return mustEC(elliptic.P384()) })
)

func mustRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func mustEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// jwks returns the public JWK Set of keys.
func jwks(t testing.TB, keys ...jose.JSONWebKey) json.RawMessage {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func testConfig(c *clock) Config {
	return Config{
		TokenURL: testTokenURL,
		Clients: []Client{
			{
				ID:     "rs-client",
				Tenant: "clinic-a",
				Scopes: []string{"system/*.rs", "system/Observation.cruds", ScopeIngest},
			},
			{
				ID:     "ec-client",
				Tenant: "clinic-b",
				Scopes: []string{"system/Patient.read", ScopeOperator},
			},
		},
		SigningSecret: testSecret,
		Now:           c.Now,
	}
}

func newTestServer(t testing.TB, edit ...func(*Config)) (*Server, *clock) {
	t.Helper()
	c := newClock()
	cfg := testConfig(c)
	cfg.Clients[0].JWKS = jwks(t, jose.JSONWebKey{Key: rsaKey(), KeyID: "rs-1", Algorithm: "RS384", Use: "sig"})
	cfg.Clients[1].JWKS = jwks(t, jose.JSONWebKey{Key: ecKey(), KeyID: "ec-1"})
	for _, e := range edit {
		e(&cfg)
	}
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatalf("NewServer: %v", err)
	}
	return s, c
}

func newJTI() string {
	b := make([]byte, 12)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// claims returns valid assertion claims for client at now.
func claims(client string, now time.Time) map[string]any {
	return map[string]any{
		"iss": client,
		"sub": client,
		"aud": testTokenURL,
		"exp": now.Add(4 * time.Minute).Unix(),
		"jti": newJTI(),
	}
}

// sign signs claims as a compact JWS. kid "" leaves the header out.
func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims any, headers map[jose.HeaderKey]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	for k, v := range headers {
		opts = opts.WithHeader(k, v)
	}
	signingKey := key
	if kid != "" {
		signingKey = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: signingKey}, opts)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	s, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("Serialize: %v", err)
	}
	return s
}

// unsigned builds an alg "none" JWT.
func unsigned(t testing.TB, header, claims any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(header) + "." + enc(claims) + "."
}

func tokenForm(assertion, scope string) url.Values {
	return url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
		"scope":                 {scope},
	}
}

func rsAssertion(t testing.TB, now time.Time) string {
	return sign(t, jose.RS384, rsaKey(), "rs-1", claims("rs-client", now), nil)
}

// nonCanonical returns jws with the last character of its part i (0 the
// header, 1 the payload, 2 the signature) changed in its unused trailing
// bits only: lenient base64 decodes both to the same bytes. ok is false
// when that part's length leaves no unused bits.
func nonCanonical(jws string, i int) (string, bool) {
	parts := strings.Split(jws, ".")
	p := parts[i]
	if len(p)%4 != 2 && len(p)%4 != 3 {
		return "", false
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	v := strings.IndexByte(alphabet, p[len(p)-1])
	parts[i] = p[:len(p)-1] + string(alphabet[v|1])
	return strings.Join(parts, "."), true
}
