package console

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// stubIssuer is an OpenID Connect provider stand-in: discovery, its JWKS,
// an authorize endpoint that approves at once whoever signIn named, and a
// token endpoint that checks the PKCE verifier.
type stubIssuer struct {
	*httptest.Server
	key *rsa.PrivateKey

	mu     sync.Mutex
	person map[string]any
	codes  map[string]stubGrant
}

type stubGrant struct {
	challenge, nonce string
	claims           map[string]any
}

func newStubIssuer(t *testing.T) *stubIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &stubIssuer{key: key, codes: map[string]stubGrant{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": is.URL, "authorization_endpoint": is.URL + "/authorize", "token_endpoint": is.URL + "/token",
			"jwks_uri": is.URL + "/jwks", "response_types_supported": []string{"code"},
			"subject_types_supported": []string{"public"}, "id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		code := token()
		is.mu.Lock()
		is.codes[code] = stubGrant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce"), claims: is.person}
		is.mu.Unlock()
		u, _ := url.Parse(q.Get("redirect_uri"))
		u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
		http.Redirect(w, r, u.String(), http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		is.mu.Lock()
		g, ok := is.codes[r.PostForm.Get("code")]
		delete(is.codes, r.PostForm.Get("code"))
		is.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		w.Header().Set("Content-Type", "application/json")
		if !ok || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"invalid_grant"}`)
			return
		}
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: is.key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		now := time.Now()
		claims := map[string]any{"iss": is.URL, "aud": "kg", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": g.nonce}
		for k, v := range g.claims {
			claims[k] = v
		}
		idt, _ := jwt.Signed(signer).Claims(claims).Serialize()
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 300, "id_token": idt})
	})
	is.Server = httptest.NewServer(mux)
	t.Cleanup(is.Close)
	return is
}

// signInFixture is a console signing people in at a stub issuer: name
// claim email, tenant claim tenant, role claim groups (ops: operator).
func signInFixture(t *testing.T) (*fixture, *stubIssuer) {
	is := newStubIssuer(t)
	f := newFixture(t, &Settings{Issuer: is.URL, ClientID: "kg", RedirectURL: "https://gw.example.org/console/callback",
		NameClaim: "email", TenantClaim: "tenant", Operators: []string{"ops"}})
	return f, is
}

// startSignIn starts a sign-in in f's browser and returns the issuer's
// authorization URL.
func (f *fixture) startSignIn(t *testing.T) string {
	t.Helper()
	code, _, h := f.get(t, "/console/login/start?next=%2Fconsole%2Freplays")
	if code != http.StatusSeeOther || h.Get("Location") == "" {
		t.Fatalf("GET /console/login/start = %d to %q, want 303 to the issuer", code, h.Get("Location"))
	}
	return h.Get("Location")
}

// finishSignIn has the issuer approve person at authURL and comes back
// to the console's callback; it returns the callback's status and page.
func (f *fixture) finishSignIn(t *testing.T, is *stubIssuer, authURL string, person map[string]any) (int, string) {
	t.Helper()
	is.mu.Lock()
	is.person = person
	is.mu.Unlock()
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || back.Path != "/console/callback" {
		t.Fatalf("the issuer sent the browser to %q", resp.Header.Get("Location"))
	}
	code, page, _ := f.get(t, "/console/callback?"+back.RawQuery)
	return code, page
}

// signIn signs person in, start to finish.
func (f *fixture) signIn(t *testing.T, is *stubIssuer, person map[string]any) {
	t.Helper()
	if code, page := f.finishSignIn(t, is, f.startSignIn(t), person); code != http.StatusOK || !strings.Contains(page, "Signed in") {
		t.Fatalf("sign-in = %d:\n%.2000s", code, page)
	}
}

// TestSignInSurvivesFlood: anonymous requests to /console/login/start,
// however many, do not end a sign-in in progress: it is held by the
// person's browser, not in a table a flood can fill (probe p14 F3: 1,500
// requests evicted it, and the person's sign-in failed with 401).
func TestSignInSurvivesFlood(t *testing.T) {
	f, is := signInFixture(t)
	authURL := f.startSignIn(t)
	for i := range 10000 {
		w := httptest.NewRecorder()
		f.c.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/console/login/start", nil))
		if w.Code != http.StatusSeeOther {
			t.Fatalf("anonymous GET /console/login/start #%d = %d, want 303", i, w.Code)
		}
	}
	code, page := f.finishSignIn(t, is, authURL, map[string]any{"sub": "u-1", "email": "olga@example.org", "groups": []string{"ops"}, "tenant": "clinic-a"})
	if code != http.StatusOK || !strings.Contains(page, "Signed in") || !strings.Contains(page, "/console/replays") {
		t.Fatalf("the sign-in after the flood = %d, want 200 continuing to /console/replays:\n%.2000s", code, page)
	}
	if code, page, _ := f.get(t, "/console/replays"); code != http.StatusOK || !strings.Contains(page, "olga@example.org") {
		t.Errorf("after signing in: GET /console/replays = %d, want the page for olga", code)
	}
}

// TestSignInCookie: the sign-in cookie finishes only its own sign-in: not
// with another state, not altered, not sealed by another process, not
// after it expired, and not without the cookie.
func TestSignInCookie(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, other := newSessions(time.Hour, time.Hour, clock), newSessions(time.Hour, time.Hour, clock)
	start := func(s *sessions) (*http.Cookie, string) {
		w := httptest.NewRecorder()
		state := s.startLogin(w, &pendingLogin{Verifier: "v", Nonce: "n", Next: "/console/audit"})
		c := w.Result().Cookies()[0]
		if c.Name != loginCookie || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteLaxMode {
			t.Fatalf("sign-in cookie = %+v", c)
		}
		return c, state
	}
	c, state := start(s)
	alien, alienState := start(other)
	flipped := []byte(c.Value)
	flipped[len(flipped)/2] ^= 1
	if flipped[len(flipped)/2] == '-' || flipped[len(flipped)/2] == '_' {
		flipped[len(flipped)/2] = 'A'
	}
	for _, tc := range []struct {
		name   string
		cookie *http.Cookie
		state  string
		later  time.Duration
		ok     bool
	}{
		{"its own", c, state, 0, true},
		{"nine minutes later", c, state, 9 * time.Minute, true},
		{"another state", c, alienState, 0, false},
		{"no state", c, "", 0, false},
		{"altered", &http.Cookie{Name: loginCookie, Value: string(flipped)}, state, 0, false},
		{"another process's", alien, alienState, 0, false},
		{"expired", c, state, loginTTL + time.Second, false},
		{"no cookie", nil, state, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC).Add(tc.later)
			r := httptest.NewRequest(http.MethodGet, "/console/callback", nil)
			if tc.cookie != nil {
				r.AddCookie(&http.Cookie{Name: loginCookie, Value: tc.cookie.Value})
			}
			w := httptest.NewRecorder()
			p := s.finishLogin(w, r, tc.state)
			if (p != nil) != tc.ok {
				t.Fatalf("finishLogin = %+v, want a sign-in %v", p, tc.ok)
			}
			if p != nil && (p.Verifier != "v" || p.Nonce != "n" || p.Next != "/console/audit") {
				t.Errorf("finishLogin = %+v, want what was sealed", p)
			}
			if cl := w.Result().Cookies(); len(cl) != 1 || cl[0].Name != loginCookie || cl[0].MaxAge >= 0 {
				t.Errorf("the sign-in cookie is not cleared: %+v", cl)
			}
		})
	}
}

// TestPersonIsNotAClient: a person whose name claim is a registered API
// client's id is not that client: neither sees, reads or owns the other's
// jobs, and the audit trail names the person person:<name> (probe p14
// F2: a person named "clinicAop" read, and was recorded as, the client).
func TestPersonIsNotAClient(t *testing.T) {
	f, is := signInFixture(t)
	ctx := context.Background()
	body, err := os.ReadFile("../../schemas/examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	emr := auditlog.NewScope("ingest", &auth.Principal{ClientID: "clinicA", Tenant: "clinic-a", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	if _, err := f.app.Ingest.Ingest(ctx, emr, "session", body, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	client := &auth.Principal{ClientID: "clinicAop", Tenant: "clinic-a", Scopes: auth.ParseScopes(auth.ScopeOperator)}
	clientJob, err := f.app.Replay.Submit(ctx, auditlog.NewScope("mapping-replay", client), replay.Options{Tenant: search.AllTenants}, "")
	if err != nil {
		t.Fatal(err)
	}
	f.signIn(t, is, map[string]any{"sub": "mallory", "email": "clinicAop", "groups": []string{"ops"}, "tenant": "clinic-a"})

	if code, _, _ := f.get(t, "/console/replays/"+clientJob.ID); code != http.StatusNotFound {
		t.Errorf("the person reads the client's replay: %d, want 404", code)
	}
	code, page, _ := f.get(t, "/console/replays")
	if code != http.StatusOK || strings.Contains(page, clientJob.ID) {
		t.Errorf("the person's replays = %d, listing the client's job %v", code, strings.Contains(page, clientJob.ID))
	}
	code, _, h := f.post(t, "/console/replays", url.Values{"csrf": {csrf(t, page)}})
	if code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/replays/") {
		t.Fatalf("start a replay = %d to %q", code, h.Get("Location"))
	}
	personJob := strings.TrimPrefix(h.Get("Location"), "/console/replays/")
	if _, err := f.app.Jobs.Job(ctx, auditlog.NewScope("job-status", client), personJob); err == nil {
		t.Errorf("the client reads the person's replay %s", personJob)
	}
	if err := f.app.Jobs.Cancel(ctx, auditlog.NewScope("job-status", client), personJob); err == nil {
		t.Errorf("the client cancels the person's replay %s", personJob)
	}

	var agents []string
	err = f.st.AuditChainAfter(ctx, 0, func(e audit.ChainEntry) error {
		if strings.Contains(string(e.Body), `"code":"110122"`) || strings.Contains(string(e.Body), "console replay") {
			var ev struct {
				Agent []struct {
					Who struct{ Identifier struct{ Value string } }
				}
			}
			_ = json.Unmarshal(e.Body, &ev)
			for _, a := range ev.Agent {
				if v := a.Who.Identifier.Value; v != "" {
					agents = append(agents, v)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) == 0 {
		t.Fatal("no AuditEvent of the person's sign-in or replay pages")
	}
	for _, a := range agents {
		if a != "person:clinicAop" {
			t.Errorf("the person is recorded as %q, want person:clinicAop", a)
		}
	}
	if !strings.Contains(page, `<span class="person">clinicAop</span>`) {
		t.Errorf("the page does not name the person by their name claim, clinicAop")
	}
}

// TestSignInCookieFits: a return path within maxNext that JSON encodes
// six times longer (&, <, >) makes no cookie browsers would drop: the
// sign-in returns to the start page instead (review).
func TestSignInCookieFits(t *testing.T) {
	s := newSessions(time.Hour, time.Hour, time.Now)
	next := Prefix + "/audit?" + strings.Repeat("&", maxNext-len(Prefix)-8)
	if safeNext(next) != next {
		t.Fatalf("the return path was refused by safeNext: the test needs one it keeps")
	}
	w := httptest.NewRecorder()
	state := s.startLogin(w, &pendingLogin{Verifier: "v", Nonce: "n", Next: next})
	c := w.Result().Cookies()[0]
	if len(c.Value) > maxLoginCookie {
		t.Errorf("sign-in cookie of %d bytes, want at most %d", len(c.Value), maxLoginCookie)
	}
	r := httptest.NewRequest(http.MethodGet, "/console/login/callback", nil)
	r.AddCookie(c)
	if p := s.finishLogin(httptest.NewRecorder(), r, state); p == nil || p.Next != Prefix+"/" {
		t.Errorf("sign-in = %+v, want one returning to the start page", p)
	}
}

// TestSignInWithoutRole: a person whose claims map to no console role is
// refused with 403 and a page saying so and whom to ask; no session is
// kept, so such sign-ins fill nothing (probe p30 F3).
func TestSignInWithoutRole(t *testing.T) {
	f, is := signInFixture(t)
	for _, groups := range []any{[]string{}, []string{"kg-nobody"}, nil} {
		person := map[string]any{"sub": "u-9", "email": "mallory@example.org", "tenant": "clinic-a"}
		if groups != nil {
			person["groups"] = groups
		}
		code, page := f.finishSignIn(t, is, f.startSignIn(t), person)
		if code != http.StatusForbidden || !strings.Contains(page, "no console role") || !strings.Contains(page, "administrator") {
			t.Errorf("sign-in with groups %v = %d, want 403 saying the account has no console role:\n%.2000s", groups, code, page)
		}
	}
	if n := len(f.c.sessions.live); n != 0 {
		t.Errorf("%d sessions kept for sign-ins without a role, want none", n)
	}
	if code, _, h := f.get(t, "/console/playground"); code != http.StatusSeeOther || !strings.HasPrefix(h.Get("Location"), "/console/login") {
		t.Errorf("GET /console/playground after a refused sign-in = %d to %q, want the sign-in page", code, h.Get("Location"))
	}
	// Each refusal's AuditEvent names who tried (probe p31 F4: it named
	// an anonymous client).
	refused := 0
	err := f.st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		if !strings.Contains(string(e.Body), "console-no-role") {
			return nil
		}
		refused++
		if !strings.Contains(string(e.Body), `"value":"person:`) {
			t.Errorf("a refused sign-in's AuditEvent names no person: %s", e.Body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if refused != 3 {
		t.Errorf("%d AuditEvents of refused sign-ins, want 3", refused)
	}
}

// TestSafeNext: a return path stays inside the console: dot segments are
// resolved before the check (a browser resolves them), encoded dots and
// backslashes are refused, and anything else leads to the start page
// (probe p30 F6: /console/../../evil led to /evil).
func TestSafeNext(t *testing.T) {
	for _, tc := range []struct{ next, want string }{
		{"/console/replays", "/console/replays"},
		{"/console/", "/console/"},
		{"/console/audit?patient=x&page=2", "/console/audit?patient=x&page=2"},
		{"/console/audit?q=../..", "/console/audit?q=../.."},
		{"/console/deliveries/", "/console/deliveries/"},
		{"/console/./replays", "/console/replays"},
		{"/console/audit/../replays", "/console/replays"},
		{"/console//replays", "/console/replays"},
		{"/console/../../evil", "/console/"},
		{"/console/..", "/console/"},
		{"/console/../console/replays", "/console/replays"},
		{"/console/%2e%2e/evil", "/console/"},
		{"/console/%2E%2E/%2e%2E/evil", "/console/"},
		{"/console/.%2e/evil", "/console/"},
		{"/console/%5c%5cevil.example", "/console/"},
		{"/console/\\evil", "/console/"},
		{"/console/x\r\nSet-Cookie: a=b", "/console/"},
		{"/console/.\t./.\t./evil", "/console/"},
		{"/console/.\x00./evil", "/console/"},
		{"/console/replays\x7f", "/console/"},
		{"//evil.example/console/", "/console/"},
		{"https://evil.example/console/", "/console/"},
		{"/consoleevil", "/console/"},
		{"", "/console/"},
	} {
		t.Run(tc.next, func(t *testing.T) {
			if got := safeNext(tc.next); got != tc.want {
				t.Errorf("safeNext(%q) = %q, want %q", tc.next, got, tc.want)
			}
		})
	}
}
