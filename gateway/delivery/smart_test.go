package delivery

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// tokenServer is a SMART Backend Services token endpoint that verifies
// the client assertion like an EHR's authorization server.
type tokenServer struct {
	t        *testing.T
	srv      *httptest.Server
	pub      crypto.PublicKey
	alg, kid string
	clientID string
	clock    *fakeClock
	fail     string // answer this OAuth error when set

	mu     sync.Mutex
	issued []string
	jtis   map[string]bool
}

func newTokenServer(t *testing.T, pub crypto.PublicKey, alg string) *tokenServer {
	ts := &tokenServer{t: t, pub: pub, alg: alg, kid: "key-1", clientID: "gateway-client", jtis: map[string]bool{}}
	ts.srv = httptest.NewServer(ts)
	t.Cleanup(ts.srv.Close)
	return ts
}

func (ts *tokenServer) url() string { return ts.srv.URL + "/oauth/token" }

func (ts *tokenServer) tokens() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return append([]string(nil), ts.issued...)
}

func (ts *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reject := func(format string, args ...any) {
		ts.t.Errorf("token request rejected: "+format, args...)
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": "invalid_request"})
	}
	if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" || r.ParseForm() != nil {
		reject("%s %s", r.Method, r.URL.Path)
		return
	}
	if ts.fail != "" {
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(map[string]string{"error": ts.fail, "error_description": "key not registered"})
		return
	}
	f := r.PostForm
	if f.Get("grant_type") != "client_credentials" || f.Get("scope") != "system/*.write" ||
		f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
		reject("form %v", f)
		return
	}
	if err := ts.verify(f.Get("client_assertion")); err != nil {
		reject("assertion: %v", err)
		return
	}
	ts.mu.Lock()
	tok := fmt.Sprintf("tok-%d", len(ts.issued)+1)
	ts.issued = append(ts.issued, tok)
	ts.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": 600, "scope": "system/*.write"})
}

func (ts *tokenServer) verify(jwt string) error {
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		return fmt.Errorf("%d parts", len(parts))
	}
	dec := func(i int, v any) error {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return err
		}
		if v == nil {
			return nil
		}
		return json.Unmarshal(b, v)
	}
	var hdr map[string]any
	var cl struct {
		Iss, Sub, Aud, Jti string
		Exp, Iat           int64
	}
	if err := dec(0, &hdr); err != nil {
		return err
	}
	if err := dec(1, &cl); err != nil {
		return err
	}
	now := ts.clock.Now().Unix()
	switch {
	case len(hdr) != 3 || hdr["alg"] != ts.alg || hdr["kid"] != ts.kid || hdr["typ"] != "JWT":
		return fmt.Errorf("header %v, want exactly alg %s, kid %s, typ JWT", hdr, ts.alg, ts.kid)
	case cl.Iss != ts.clientID || cl.Sub != ts.clientID || cl.Aud != ts.url():
		return fmt.Errorf("iss %q sub %q aud %q", cl.Iss, cl.Sub, cl.Aud)
	case cl.Exp <= now || cl.Exp > now+300 || cl.Iat != now:
		return fmt.Errorf("exp %d, iat %d: want iat now (%d) and exp within 5 minutes", cl.Exp, cl.Iat, now)
	case cl.Jti == "":
		return fmt.Errorf("no jti")
	}
	ts.mu.Lock()
	seen := ts.jtis[cl.Jti]
	ts.jtis[cl.Jti] = true
	ts.mu.Unlock()
	if seen {
		return fmt.Errorf("jti %s reused", cl.Jti)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return err
	}
	h := sha512.Sum384([]byte(parts[0] + "." + parts[1]))
	switch pub := ts.pub.(type) {
	case *rsa.PublicKey:
		return rsa.VerifyPKCS1v15(pub, crypto.SHA384, h[:], sig)
	case *ecdsa.PublicKey:
		if len(sig) != 96 {
			return fmt.Errorf("ES384 signature of %d bytes", len(sig))
		}
		der, _ := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:48]), new(big.Int).SetBytes(sig[48:])})
		if !ecdsa.VerifyASN1(pub, h[:], der) {
			return fmt.Errorf("bad ES384 signature")
		}
		return nil
	}
	return fmt.Errorf("unknown key type")
}

func pemKey(t *testing.T, key crypto.Signer) string {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func testKeys(t *testing.T) map[string]crypto.Signer {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]crypto.Signer{"RS384": rk, "ES384": ek}
}

func TestSMARTBackendServices(t *testing.T) {
	for alg, key := range testKeys(t) {
		for _, discover := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/discover=%v", alg, discover), func(t *testing.T) {
				ehr := newStubEHR(t)
				ts := newTokenServer(t, key.Public(), alg)
				d := testDest("ehr", ehr.base())
				d.Auth = Auth{Type: AuthSMARTBackend, SMART: SMART{ClientID: "gateway-client", Scope: "system/*.write",
					PrivateKeyPEM: pemKey(t, key), KeyID: "key-1"}}
				if alg == "ES384" {
					d.Auth.SMART.Alg = "ES384" // RS384 is picked from the key type
				}
				if discover {
					ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
						if r.URL.Path == "/fhir/.well-known/smart-configuration" {
							json.NewEncoder(w).Encode(map[string]any{"token_endpoint": ts.url(),
								"token_endpoint_auth_methods_supported": []string{"private_key_jwt"}})
							return true
						}
						return false
					}
				} else {
					d.Auth.SMART.TokenURL = ts.url()
				}
				h := newHarness(t, []Destination{d}, nil)
				ts.clock = h.clock
				revoked := 0 // tokens issued before this index are refused
				var mu sync.Mutex
				ehr.authorize = func(header string) bool {
					mu.Lock()
					defer mu.Unlock()
					toks := ts.tokens()
					for _, tok := range toks[min(revoked, len(toks)):] {
						if header == "Bearer "+tok {
							return true
						}
					}
					return false
				}
				h.run()
				send := func(key string) event {
					t.Helper()
					h.enqueue("ehr", key, sessionBundle("P-1", "S-"+key, "completed", false))
					h.w.Notify()
					ev := h.next()
					if ev.Status != store.StatusDone || ev.A.N != 1 {
						t.Fatalf("item %s: %s after %d attempts: %q", key, ev.Status, ev.A.N, ev.A.Error)
					}
					return ev
				}
				send("1")
				send("2")
				if n := len(ts.tokens()); n != 1 {
					t.Fatalf("%d tokens issued for two sends, want 1 (cached)", n)
				}
				h.clock.Advance(571 * time.Second) // renewed 30s before expires_in 600
				send("3")
				if n := len(ts.tokens()); n != 2 {
					t.Fatalf("%d tokens issued after expiry, want 2", n)
				}
				mu.Lock()
				revoked = 2 // the EHR no longer takes tok-2: a 401, one refresh, one retry
				mu.Unlock()
				// The attempt is done, and says the first send was refused:
				// the EHR received the payload twice (p23 F7).
				if ev := send("4"); ev.A.HTTPStatus != 200 || !strings.Contains(ev.A.Error, "refused with http 401") {
					t.Errorf("attempt after a refresh: http %d %q, want 200 saying a send was refused with 401", ev.A.HTTPStatus, ev.A.Error)
				}
				if n := len(ts.tokens()); n != 3 {
					t.Fatalf("%d tokens issued after a 401, want 3", n)
				}
				var auths []string
				for _, r := range ehr.reqs() {
					if r.Method == http.MethodPost {
						auths = append(auths, r.Auth)
					}
				}
				want := "Bearer tok-1,Bearer tok-1,Bearer tok-2,Bearer tok-2,Bearer tok-3"
				if strings.Join(auths, ",") != want {
					t.Fatalf("FHIR requests carried %v, want %s", auths, want)
				}
			})
		}
	}
}

func TestSMARTTokenErrorsAreRetriedWithoutSecrets(t *testing.T) {
	key := testKeys(t)["ES384"]
	ehr := newStubEHR(t)
	d := testDest("ehr", ehr.base())
	keyPEM := pemKey(t, key)
	ts := newTokenServer(t, key.Public(), "ES384")
	ts.fail = "invalid_client"
	d.Auth = Auth{Type: AuthSMARTBackend, SMART: SMART{TokenURL: ts.url(), ClientID: "gateway-client",
		Scope: "system/*.write", PrivateKeyPEM: keyPEM, KeyID: "key-1"}}
	h := newHarness(t, []Destination{d}, func(o *WorkerOptions) { o.MaxAttempts = 2 })
	_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
	wantAttempt(t, evs[0], 1, store.StatusPending, 0, "auth: token endpoint answered http 400 (invalid_client)")
	wantAttempt(t, evs[1], 2, store.StatusDead, 0, "auth: token endpoint")
	for _, ev := range evs {
		if strings.Contains(ev.A.Error, "eyJ") || strings.Contains(ev.A.Error, "PRIVATE") || strings.Contains(ev.A.Error, "not registered") {
			t.Errorf("error leaks: %q", ev.A.Error)
		}
	}
	if n := len(ehr.reqs()); n != 0 {
		t.Errorf("%d requests reached the EHR without a token", n)
	}
}

func TestParsePrivateKeyFormats(t *testing.T) {
	keys := testKeys(t)
	rk, ek := keys["RS384"].(*rsa.PrivateKey), keys["ES384"].(*ecdsa.PrivateKey)
	ecDER, _ := x509.MarshalECPrivateKey(ek)
	for name, tc := range map[string]struct {
		pem, alg, want string
	}{
		"pkcs8-rsa":      {pemKey(t, rk), "", "RS384"},
		"pkcs1-rsa":      {string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)})), "RS384", "RS384"},
		"sec1-ec":        {"junk\n" + string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})), "", "ES384"},
		"rsa-as-es384":   {pemKey(t, rk), "ES384", "error"},
		"ec-as-rs384":    {pemKey(t, ek), "RS384", "error"},
		"not-pem":        {"-----BEGIN NOTHING-----", "", "error"},
		"encrypted-pkcs": {string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}})), "", "error"},
	} {
		t.Run(name, func(t *testing.T) {
			key, err := ParsePrivateKey([]byte(tc.pem))
			got := "error"
			if err == nil {
				if got, err = KeyAlg(key, tc.alg); err != nil {
					got = "error"
				}
			}
			if got != tc.want {
				t.Fatalf("got %s (%v), want %s", got, err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "MII") {
				t.Fatalf("error contains key material: %v", err)
			}
		})
	}
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := KeyAlg(p256, ""); err == nil {
		t.Error("a P-256 key was accepted for ES384")
	}
}

// TestKeyFilesUnreadable: a privateKeyFile or TLS file that cannot be read
// stops the client with the setting, the path and the system's reason (no
// key material: there is none to show).
func TestKeyFilesUnreadable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-file.pem")
	for _, tc := range []struct {
		setting string
		set     func(d *Destination)
	}{
		{"privateKeyFile", func(d *Destination) {
			d.Auth = Auth{Type: AuthSMARTBackend, SMART: SMART{ClientID: "c", TokenURL: "https://ehr.example/token",
				Scope: "system/*.write", KeyID: "k1", PrivateKeyFile: missing}}
		}},
		{"tls.caFile", func(d *Destination) { d.TLS.CAFile = missing }},
		{"tls.certFile", func(d *Destination) { d.TLS.CertFile, d.TLS.KeyFile = missing, missing }},
	} {
		t.Run(tc.setting, func(t *testing.T) {
			d := testDest("ehr", "https://ehr.example/fhir")
			tc.set(&d)
			_, err := NewClient(d, ClientOptions{})
			if err == nil {
				t.Fatalf("NewClient with a missing %s succeeded", tc.setting)
			}
			for _, want := range []string{`destination "ehr"`, tc.setting, missing, "no such file or directory"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("NewClient error = %q, want it to contain %q", err, want)
				}
			}
		})
	}
}
