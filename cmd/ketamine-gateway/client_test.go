package main

import (
	"crypto"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// TestClientKeygen: keygen writes a P-384 private key only its owner can
// read and the JWKS of its public key, kid the RFC 7638 thumbprint, and
// never overwrites a key (p34 F2).
func TestClientKeygen(t *testing.T) {
	dir := t.TempDir()
	keyFile, jwksFile := filepath.Join(dir, "client.key"), filepath.Join(dir, "client.jwks")
	out, errOut, code := cli(t, "", "client", "keygen", "--out", keyFile, "--jwks", jwksFile)
	if code != 0 {
		t.Fatalf("client keygen: exit %d: %s", code, errOut)
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("private key mode = %o, want 600", perm)
	}
	pemBytes, _ := os.ReadFile(keyFile)
	key, alg, err := signingKey(pemBytes)
	if err != nil || alg != jose.ES384 {
		t.Fatalf("signingKey(written key) = %v, %v; want an ES384 key", alg, err)
	}
	var set jose.JSONWebKeySet
	raw, _ := os.ReadFile(jwksFile)
	if err := json.Unmarshal(raw, &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("JWKS = %s (%v), want one key", raw, err)
	}
	k := set.Keys[0]
	if !k.IsPublic() || k.Algorithm != "ES384" || k.Use != "sig" {
		t.Errorf("JWKS key: public %v, alg %q, use %q; want a public ES384 signing key", k.IsPublic(), k.Algorithm, k.Use)
	}
	if !k.Key.(*ecdsa.PublicKey).Equal(key.Public()) {
		t.Errorf("the JWKS holds another key than the private key's")
	}
	tp, _ := k.Thumbprint(crypto.SHA256)
	if want := base64.RawURLEncoding.EncodeToString(tp); k.KeyID != want || !strings.Contains(out, want) {
		t.Errorf("kid = %q (stdout %q), want the thumbprint %q", k.KeyID, out, want)
	}
	// Again: refused, the key kept.
	_, errOut, code = cli(t, "", "client", "keygen", "--out", keyFile, "--jwks", filepath.Join(dir, "other.jwks"))
	if code != exitUsage || !strings.Contains(errOut, "exists already") {
		t.Errorf("keygen over an existing key: exit %d %q, want 2 saying it exists", code, errOut)
	}
	if again, _ := os.ReadFile(keyFile); string(again) != string(pemBytes) {
		t.Errorf("the existing key was overwritten")
	}
	if _, err := os.Stat(filepath.Join(dir, "other.jwks")); err == nil {
		t.Errorf("a refused keygen wrote the JWKS")
	}
}

// TestClientToken: token posts a client_credentials request with a client
// assertion as SMART Backend Services asks (iss = sub = client id, aud the
// token URL, exp within 5 minutes, a fresh jti, kid the key's) and prints
// the answer; a refusal is exit 1 with the OAuth error and what to check.
func TestClientToken(t *testing.T) {
	dir := t.TempDir()
	keyFile, jwksFile := filepath.Join(dir, "client.key"), filepath.Join(dir, "client.jwks")
	if _, errOut, code := cli(t, "", "client", "keygen", "--out", keyFile, "--jwks", jwksFile); code != 0 {
		t.Fatalf("client keygen: exit %d: %s", code, errOut)
	}
	var set jose.JSONWebKeySet
	raw, _ := os.ReadFile(jwksFile)
	if err := json.Unmarshal(raw, &set); err != nil {
		t.Fatal(err)
	}
	var tokenURL string
	jtis := map[string]bool{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fail := func(why string) {
			t.Errorf("token request: %s", why)
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"invalid_client","error_description":"the client assertion is not valid"}`))
		}
		if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
			fail("not a form POST")
			return
		}
		if r.PostForm.Get("grant_type") != "client_credentials" ||
			r.PostForm.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			fail("grant_type or client_assertion_type: " + r.PostForm.Encode())
			return
		}
		tok, err := jwt.ParseSigned(r.PostForm.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES384})
		if err != nil {
			fail(err.Error())
			return
		}
		if h := tok.Headers[0]; h.KeyID != set.Keys[0].KeyID || h.ExtraHeaders["typ"] != "JWT" {
			fail("header kid " + h.KeyID + ", want the JWKS's, and typ JWT")
			return
		}
		var c jwt.Claims
		if err := tok.Claims(set.Keys[0].Key, &c); err != nil {
			fail("signature: " + err.Error())
			return
		}
		now := time.Now()
		if err := c.ValidateWithLeeway(jwt.Expected{Issuer: "my-emr", Subject: "my-emr", AnyAudience: jwt.Audience{tokenURL}, Time: now}, 0); err != nil {
			fail("claims: " + err.Error())
			return
		}
		if c.Expiry == nil || c.Expiry.Time().After(now.Add(5*time.Minute)) || c.ID == "" || jtis[c.ID] {
			fail("exp more than 5 minutes ahead, or jti missing or reused")
			return
		}
		jtis[c.ID] = true
		if r.PostForm.Get("scope") == "system/Nothing.r" {
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_scope","error_description":"none of the requested scopes is granted"}`))
			return
		}
		w.Write([]byte(`{"access_token":"tok-` + c.ID + `","token_type":"bearer","expires_in":300,"scope":"` + r.PostForm.Get("scope") + `"}`))
	}))
	defer srv.Close()
	tokenURL = srv.URL + "/auth/token"
	args := []string{"client", "token", "--key", keyFile, "--client-id", "my-emr", "--token-url", tokenURL}

	out, errOut, code := cli(t, "", append(args, "--scope", "system/Patient.rs")...)
	var body map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &body) != nil || body["scope"] != "system/Patient.rs" {
		t.Fatalf("client token: exit %d, stdout %q, stderr %q; want the token response JSON", code, out, errOut)
	}
	out, _, code = cli(t, "", append(args, "--bare")...)
	if code != 0 || !strings.HasPrefix(out, "tok-") || strings.Count(out, "\n") != 1 {
		t.Errorf("client token --bare: exit %d, stdout %q; want the access token alone", code, out)
	}
	if len(jtis) != 2 {
		t.Errorf("%d distinct jti in 2 requests", len(jtis))
	}
	_, errOut, code = cli(t, "", append(args, "--scope", "system/Nothing.r")...)
	if code != exitInvalid || !strings.Contains(errOut, "invalid_scope") || !strings.Contains(errOut, "--scope") {
		t.Errorf("refused token: exit %d %q, want 1 naming invalid_scope and what to ask for", code, errOut)
	}

	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no key":        {[]string{"client", "token", "--client-id", "a", "--token-url", tokenURL}, "--key FILE is required"},
		"no client id":  {[]string{"client", "token", "--key", keyFile, "--token-url", tokenURL}, "--client-id is required"},
		"no token url":  {[]string{"client", "token", "--key", keyFile, "--client-id", "a"}, "--token-url is required"},
		"bad token url": {[]string{"client", "token", "--key", keyFile, "--client-id", "a", "--token-url", "127.0.0.1:8080/auth/token"}, "not an http(s) URL"},
		"jwks as key":   {[]string{"client", "token", "--key", jwksFile, "--client-id", "a", "--token-url", tokenURL}, "no PEM private key"},
		"missing key":   {[]string{"client", "token", "--key", filepath.Join(dir, "nope.key"), "--client-id", "a", "--token-url", tokenURL}, "cannot read"},
		"subcommand":    {[]string{"client", "login"}, `unknown subcommand "login"`},
		"keygen no out": {[]string{"client", "keygen", "--jwks", filepath.Join(dir, "x.jwks")}, "--out FILE is required"},
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := cli(t, "", tc.args...)
			if code != exitUsage || !strings.Contains(errOut, tc.want) {
				t.Errorf("%v: exit %d %q, want 2 with %q", tc.args, code, errOut, tc.want)
			}
		})
	}
}
