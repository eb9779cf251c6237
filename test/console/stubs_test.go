package console

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// ehr is a hospital EHR stand-in: it answers transaction Bundles with a
// transaction-response, or, while reject is set, with 422 and an
// OperationOutcome (which makes the delivery a dead letter at once). Its
// CapabilityStatement (ehrStatement) does not list DetectedIssue, which
// the gateway sends with session records: a capability gap the console
// shows.
type ehr struct {
	*httptest.Server
	mu     sync.Mutex
	reject bool
	posts  int
}

// rejectText is the EHR's OperationOutcome text while it rejects.
const rejectText = "Patient identifier system is not registered at this hospital"

func newEHR(t *testing.T, reject bool) *ehr {
	e := &ehr{reject: reject}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && r.URL.Path == "/metadata" {
			w.Header().Set("Content-Type", "application/fhir+json")
			fmt.Fprint(w, ehrStatement)
			return
		}
		var b struct{ Entry []json.RawMessage }
		_ = json.NewDecoder(r.Body).Decode(&b)
		e.mu.Lock()
		e.posts++
		reject := e.reject
		e.mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		if reject {
			w.WriteHeader(http.StatusUnprocessableEntity)
			fmt.Fprintf(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"business-rule","details":{"text":%q}}]}`, rejectText)
			return
		}
		entries := make([]any, len(b.Entry))
		for i := range entries {
			entries[i] = map[string]any{"response": map[string]any{"status": "201 Created", "location": fmt.Sprintf("Observation/ehr-%d/_history/1", i)}}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
	}))
	t.Cleanup(e.Close)
	return e
}

// ehrStatement is the EHR's CapabilityStatement: transactions, and every
// type the gateway sends but DetectedIssue.
const ehrStatement = `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1",` +
	`"format":["json"],"rest":[{"mode":"server","interaction":[{"code":"transaction"}],"resource":[` +
	`{"type":"Patient","interaction":[{"code":"create"},{"code":"update"}]},` +
	`{"type":"Observation","interaction":[{"code":"create"},{"code":"update"}]},` +
	`{"type":"Flag","interaction":[{"code":"create"},{"code":"update"}]},` +
	`{"type":"Procedure","interaction":[{"code":"create"},{"code":"update"}]},` +
	`{"type":"MedicationRequest","interaction":[{"code":"create"},{"code":"update"}]},` +
	`{"type":"MedicationAdministration","interaction":[{"code":"create"},{"code":"update"}]},` +
	`{"type":"AdverseEvent","interaction":[{"code":"create"},{"code":"update"},{"code":"delete"}]}]}]}`

// accept makes the EHR take what it is sent.
func (e *ehr) accept() {
	e.mu.Lock()
	e.reject = false
	e.mu.Unlock()
}

// issuer is an OpenID Connect provider stand-in: discovery, an authorize
// endpoint that approves the configured person at once, a token endpoint
// that checks the PKCE verifier, and its JWKS.
type issuer struct {
	*httptest.Server
	key      *rsa.PrivateKey
	clientID string

	mu         sync.Mutex
	person     map[string]any // the ID token claims of whoever signs in
	codes      map[string]grant
	authorizes int
}

// grant is an authorization code's request.
type grant struct {
	challenge, nonce, redirect string
	claims                     map[string]any
}

func newIssuer(t *testing.T, clientID string) *issuer {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, clientID: clientID, codes: map[string]grant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.URL, "authorization_endpoint": is.URL + "/authorize", "token_endpoint": is.URL + "/token",
			"jwks_uri": is.URL + "/jwks", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
			"code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", is.authorize)
	mux.HandleFunc("POST /token", is.token)
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

// signIn sets who the issuer signs in next.
func (is *issuer) signIn(claims map[string]any) {
	is.mu.Lock()
	is.person = claims
	is.mu.Unlock()
}

func (is *issuer) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != is.clientID || q.Get("code_challenge_method") != "S256" ||
		q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" {
		http.Error(w, "bad authorization request", http.StatusBadRequest)
		return
	}
	code := base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprint(time.Now().UnixNano())))
	is.mu.Lock()
	is.authorizes++
	is.codes[code] = grant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), redirect: q.Get("redirect_uri"), claims: is.person}
	is.mu.Unlock()
	u, _ := url.Parse(q.Get("redirect_uri"))
	v := url.Values{"code": {code}, "state": {q.Get("state")}}
	u.RawQuery = v.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (is *issuer) token(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	is.mu.Lock()
	g, ok := is.codes[r.PostForm.Get("code")]
	delete(is.codes, r.PostForm.Get("code"))
	is.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("redirect_uri") != g.redirect ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"error":"invalid_grant"}`)
		return
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1").WithType("JWT"))
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": is.URL, "aud": is.clientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": g.nonce}
	for k, v := range g.claims {
		claims[k] = v
	}
	idt, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		http.Error(w, err.Error(), 500)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": idt})
}
