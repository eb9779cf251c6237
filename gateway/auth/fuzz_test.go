package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha512"
	"crypto/x509"
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// neverSeen is a ReplayCache that accepts every jti, so a fuzzed variant of
// the valid seed is judged on its signature alone.
type neverSeen struct{}

func (neverSeen) Seen(context.Context, string, time.Time) (bool, error) { return false, nil }

// fuzzECKey is a P-384 key fixed across processes: the fuzzing workers must
// accept the seeds the coordinator signed.
func fuzzECKey(tb testing.TB) *ecdsa.PrivateKey {
	d := sha512.Sum384([]byte("ketamine-gateway auth fuzz key"))
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P384(), d[:])
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// fixedClaims are valid assertion claims that are the same in every process.
func fixedClaims(client string, now time.Time) map[string]any {
	c := claims(client, now)
	c["jti"] = "fuzz-seed"
	return c
}

// fixedAccessToken is a valid access token for rs-client that is the same in
// every process (HMAC is deterministic).
func fixedAccessToken(tb testing.TB, now time.Time) string {
	c := accessClaims{
		Claims: jwt.Claims{Issuer: testTokenURL, Subject: "rs-client", ID: "fuzz-seed",
			IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute))},
		Tenant: "clinic-a",
		Scope:  "system/*.rs gateway/ingest",
	}
	return sign(tb, jose.HS256, testSecret, "", c, map[jose.HeaderKey]any{jose.HeaderType: "at+jwt"})
}

// signingInput is the signed part of a compact JWS: header.payload.
func signingInput(jws string) string {
	if i := strings.LastIndexByte(jws, '.'); i >= 0 {
		return jws[:i]
	}
	return jws
}

func checkFailure(t *testing.T, f *Failure, input string) {
	t.Helper()
	switch f.Status {
	case http.StatusBadRequest, http.StatusUnauthorized:
	default:
		t.Fatalf("failure status %d (%s), want 400 or 401", f.Status, f.Reason)
	}
	if f.Reason == "" || f.Description == "" {
		t.Fatalf("failure %+v lacks reason or description", f)
	}
	// Each text on its own: joined, a fixed description ending in "d" and
	// a header starting "Bearer " would "echo" the input "dBearer ".
	// An input that is part of one of the package's own texts ("n is
	// required") is found in a failure that says that text whatever the
	// input: that is no echo.
	for _, text := range []string{f.Description, f.WWWAuthenticate(), f.Error()} {
		if len(input) >= 8 && strings.Contains(text, input) && !inOwnText(t, input) {
			t.Fatalf("failure text echoes the input: %q", text)
		}
	}
}

var ownTexts = sync.OnceValues(func() ([]string, error) {
	names, err := filepath.Glob("*.go")
	if err != nil {
		return nil, err
	}
	var texts []string
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(token.NewFileSet(), name, nil, 0)
		if err != nil {
			return nil, err
		}
		ast.Inspect(file, func(n ast.Node) bool {
			if lit, ok := n.(*ast.BasicLit); ok && lit.Kind == token.STRING {
				if s, err := strconv.Unquote(lit.Value); err == nil {
					texts = append(texts, s)
				}
			}
			return true
		})
	}
	return texts, nil
})

// inOwnText reports whether s is part of a string literal of the package's
// code, which a failure may say whatever its input.
func inOwnText(t *testing.T, s string) bool {
	texts, err := ownTexts()
	if err != nil {
		t.Fatalf("reading the package's texts: %v", err)
	}
	for _, text := range texts {
		if strings.Contains(text, s) {
			return true
		}
	}
	return false
}

func FuzzToken(f *testing.F) {
	s, c := newTestServer(f, func(cfg *Config) {
		cfg.Replay = neverSeen{}
		cfg.Clients[1].JWKS = jwks(f, jose.JSONWebKey{Key: fuzzECKey(f), KeyID: "ec-1"})
	})
	now := c.Now()
	valid := rsAssertion(f, now) // accepted only in the process that signed it
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey().PublicKey)
	parts := strings.Split(valid, ".")

	validEC := sign(f, jose.ES384, fuzzECKey(f), "ec-1", fixedClaims("ec-client", now), nil)
	f.Add(valid)
	f.Add(validEC)
	f.Add("")
	f.Add("a.b.c")
	f.Add("..")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[0] + "." + parts[2])
	f.Add(`{"payload":"e30","signatures":[]}`)
	f.Add(unsigned(f, map[string]string{"alg": "none", "kid": "rs-1"}, claims("rs-client", now)))
	f.Add(sign(f, jose.HS256, der, "rs-1", claims("rs-client", now), nil))
	f.Add(sign(f, jose.RS384, rsaOtherKey(), "rs-1", claims("rs-client", now), nil))

	f.Fuzz(func(t *testing.T, assertion string) {
		resp, fail := s.Token(context.Background(), tokenForm(assertion, "system/*.rs system/Patient.rs"))
		if (resp == nil) == (fail == nil) {
			t.Fatalf("Token() = %v, %v: want exactly one", resp, fail)
		}
		if resp != nil {
			if in := signingInput(assertion); in != signingInput(valid) && in != signingInput(validEC) {
				t.Fatalf("Token() accepted an assertion other than a valid seed")
			}
			if _, f := s.Authenticate(context.Background(), "Bearer "+resp.AccessToken); f != nil {
				t.Fatalf("issued token does not authenticate: %v", f)
			}
			return
		}
		checkFailure(t, fail, assertion)
	})
}

func FuzzAuthenticate(f *testing.F) {
	s, c := newTestServer(f)
	valid := fixedAccessToken(f, c.Now())
	if _, fail := s.Authenticate(context.Background(), "Bearer "+valid); fail != nil {
		f.Fatalf("Authenticate(seed) = %v (%s)", fail, fail.Reason)
	}
	parts := strings.Split(valid, ".")

	f.Add("Bearer " + valid)
	f.Add("")
	f.Add("Bearer")
	f.Add("Bearer ")
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer a.b.c")
	f.Add("Bearer " + valid + "x")
	f.Add("Bearer " + parts[0] + "." + parts[1] + ".")
	f.Add("Bearer " + unsigned(f, map[string]string{"alg": "none"}, map[string]any{"iss": testTokenURL, "sub": "rs-client"}))
	f.Add("Bearer " + rsAssertion(f, c.Now()))

	f.Fuzz(func(t *testing.T, header string) {
		p, fail := s.Authenticate(context.Background(), header)
		if (p == nil) == (fail == nil) {
			t.Fatalf("Authenticate() = %v, %v: want exactly one", p, fail)
		}
		if p != nil {
			if !strings.Contains(header, signingInput(valid)) {
				t.Fatalf("Authenticate() accepted a token other than the issued one")
			}
			if p.ClientID != "rs-client" || p.Tenant != "clinic-a" {
				t.Fatalf("Authenticate() = %+v, want rs-client of clinic-a", p)
			}
			return
		}
		if fail.Status != http.StatusUnauthorized {
			t.Fatalf("failure status %d (%s), want 401", fail.Status, fail.Reason)
		}
		checkFailure(t, fail, strings.TrimPrefix(header, "Bearer "))
	})
}

// FuzzScopeRefusals: whatever a client sends as scope, the explanation of
// what is not granted names only scopes of the gateway's grammar (never a
// restriction or a foreign string, which may carry anything) and stays in
// RFC 6749's error_description characters.
func FuzzScopeRefusals(f *testing.F) {
	allowed := ParseScopes("system/*.rs system/Observation.cruds gateway/ingest")
	for _, seed := range []string{"", vitalSigns, "system/Patient.cud gateway/operator", "patient/*.rs user/x openid",
		`"a\b"` + "\x00\xff", "system/Patient.rs?_id=1 system/*.rs", "system/*.cruds?a=b?c", "system/?x user/?", "a b c d e f g"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, requested string) {
		granted := grant(ParseScopes(requested), allowed)
		rs := refusals(requested, allowed, granted)
		for _, r := range rs {
			name, _, _ := strings.Cut(r.name, "?")
			if _, ok := parseScope(name); r.name != "" && !ok && name != "patient/..." && name != "user/..." {
				t.Fatalf("refusal names %q, not a scope of the gateway's grammar", r.name)
			}
			if !strings.Contains(requested, strings.TrimSuffix(name, "...")) {
				t.Fatalf("refusal names %q, which was not requested", r.name)
			}
		}
		for _, s := range append([]string{refusedDescription(rs)}, func() (out []string) {
			for _, r := range rs {
				out = append(out, r.short())
			}
			return out
		}()...) {
			for _, c := range s {
				if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
					t.Fatalf("%q has %q, outside RFC 6749's error_description characters", s, c)
				}
			}
		}
	})
}
