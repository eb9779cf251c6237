package console

import (
	"context"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// Sign-in is OpenID Connect's authorization code flow with PKCE (S256) and
// a nonce, through github.com/coreos/go-oidc (discovery, the issuer's JWKS,
// the ID token's signature, iss, aud and exp) and golang.org/x/oauth2 (the
// code exchange).

// oidcClient signs people in at one issuer.
type oidcClient struct {
	st     Settings
	client *http.Client

	mu       sync.Mutex
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newOIDC(st Settings, client *http.Client) *oidcClient {
	return &oidcClient{st: st, client: client}
}

// errIssuer answers a sign-in the issuer could not complete.
var errIssuer = outcome.New(outcome.Unavailable, "transient", "console-issuer-unavailable",
	"the identity provider could not be reached; try again in a moment")

// errSignInFailed answers a sign-in that did not prove who is there.
var errSignInFailed = outcome.New(outcome.Unauthorized, "login", "console-sign-in-failed",
	"the sign-in did not succeed (it may have expired or been started elsewhere); sign in again")

// errNoRole answers a sign-in of a person whose claims grant no console
// role.
var errNoRole = outcome.New(outcome.Forbidden, "forbidden", "console-no-role",
	"your account has no console role (auditor or operator); ask the gateway's administrator, who sets the groups that grant them")

// ctx carries the console's HTTP client to go-oidc and oauth2 (they use
// http.DefaultClient otherwise).
func (o *oidcClient) ctx(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, o.client)
}

// provider discovers the issuer once (again after a failure).
func (o *oidcClient) provider(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.oauth != nil {
		return o.oauth, o.verifier, nil
	}
	p, err := oidc.NewProvider(o.ctx(ctx), o.st.Issuer)
	if err != nil {
		return nil, nil, errIssuer
	}
	o.oauth = &oauth2.Config{ClientID: o.st.ClientID, ClientSecret: o.st.ClientSecret, RedirectURL: o.st.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "profile", "email"}}
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.st.ClientID})
	return o.oauth, o.verifier, nil
}

// authURL returns where to send the browser to sign in.
func (o *oidcClient) authURL(ctx context.Context, state string, p *pendingLogin) (string, error) {
	cfg, _, err := o.provider(ctx)
	if err != nil {
		return "", err
	}
	return cfg.AuthCodeURL(state, oauth2.S256ChallengeOption(p.Verifier), oidc.Nonce(p.Nonce)), nil
}

// exchange redeems a code and returns the verified ID token's claims.
func (o *oidcClient) exchange(ctx context.Context, code string, p *pendingLogin) (map[string]any, error) {
	cfg, verifier, err := o.provider(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := cfg.Exchange(o.ctx(ctx), code, oauth2.VerifierOption(p.Verifier))
	if err != nil {
		return nil, errSignInFailed
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, errSignInFailed
	}
	idt, err := verifier.Verify(o.ctx(ctx), raw)
	if err != nil || idt.Nonce != p.Nonce {
		return nil, errSignInFailed
	}
	var claims map[string]any
	if err := idt.Claims(&claims); err != nil {
		return nil, errSignInFailed
	}
	return claims, nil
}

// principal maps a person's claims to the gateway's principal: the name
// claim (or sub) after auth.PersonPrefix, the tenant claim (or every tenant)
// and the scopes of their roles. Returns errNoRole if the claims grant
// neither console role.
func (st *Settings) principal(claims map[string]any) (*auth.Principal, error) {
	name, _ := claims[st.NameClaim].(string)
	if name == "" {
		name, _ = claims["sub"].(string)
	}
	if name == "" {
		return nil, errSignInFailed
	}
	// A refused sign-in still names the account (with no scopes), so
	// that its AuditEvent says who tried (probe p31 F4).
	refused := &auth.Principal{ClientID: auth.PersonPrefix + name, Issuer: st.Issuer}
	tenant := search.AllTenants
	if st.TenantClaim != "" {
		tenant, _ = claims[st.TenantClaim].(string)
		if tenant == "" || tenant == search.AllTenants || search.Reserved(tenant) {
			return refused, outcome.New(outcome.Forbidden, "forbidden", "console-no-tenant",
				"your account names no tenant; ask the gateway's administrator")
		}
	}
	refused.Tenant = tenant
	var roles []string
	switch v := claims[st.RoleClaim].(type) {
	case string:
		roles = strings.Fields(v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				roles = append(roles, s)
			}
		}
	}
	var scopes []string
	if slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(st.Auditors, r) }) {
		scopes = append(scopes, auth.ScopeAuditor, "system/*.rs")
	}
	if slices.ContainsFunc(roles, func(r string) bool { return slices.Contains(st.Operators, r) }) {
		scopes = append(scopes, auth.ScopeOperator)
	}
	if len(scopes) == 0 {
		// Nothing is kept for a person without a role: their sign-ins
		// cannot fill the session store (probe p30 F3).
		return refused, errNoRole
	}
	return &auth.Principal{ClientID: auth.PersonPrefix + name, Tenant: tenant, Scopes: auth.ParseScopes(strings.Join(scopes, " ")),
		Issuer: st.Issuer}, nil
}

// loginPage is the sign-in page's data.
type loginPage struct {
	Next, Issuer string
	SignedOut    bool
}

// maxNext bounds a return path (it travels in the sign-in cookie, which
// browsers keep only up to 4 KiB).
const maxNext = 2048

// safeNext keeps a return path inside the console (no open redirect), and
// short enough for the sign-in cookie (the start page otherwise). Its path
// is checked as a browser will resolve it: dot segments resolved first,
// and encoded dots or backslashes, which a browser may resolve or turn
// into slashes, refused (probe p30 F6: /console/../../evil led to /evil).
func safeNext(next string) string {
	start := Prefix + "/"
	// Every control character (a browser drops a tab or newline from a
	// URL, so "/console/.\t./evil" would be "/console/../evil"), and a
	// backslash (a browser reads it as a slash).
	if !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || len(next) > maxNext ||
		strings.ContainsFunc(next, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '\\' }) {
		return start
	}
	p, rest := next, ""
	if i := strings.IndexAny(next, "?#"); i >= 0 {
		p, rest = next[:i], next[i:]
	}
	if lower := strings.ToLower(p); strings.Contains(lower, "%2e") || strings.Contains(lower, "%5c") {
		return start
	}
	clean := path.Clean(p)
	if strings.HasSuffix(p, "/") && clean != "/" {
		clean += "/"
	}
	if !strings.HasPrefix(clean, start) {
		return start
	}
	return clean + rest
}

// login shows the sign-in page (a GET without a session lands here).
func (c *Console) login(rq *request) error {
	if c.Development() || rq.sess != nil {
		return rq.seeOther(safeNext(rq.r.URL.Query().Get("next")))
	}
	return rq.render("login", "Sign in", loginPage{Next: safeNext(rq.r.URL.Query().Get("next")), Issuer: c.settings.Issuer})
}

// loginStart sends the browser to the issuer.
func (c *Console) loginStart(rq *request) error {
	if c.Development() {
		return rq.seeOther(Prefix + "/")
	}
	p := &pendingLogin{Verifier: oauth2.GenerateVerifier(), Nonce: token(), Next: safeNext(rq.r.URL.Query().Get("next"))}
	state := c.sessions.startLogin(rq.w, p)
	u, err := c.oidc.authURL(rq.ctx(), state, p)
	if err != nil {
		return err
	}
	rq.redirect = u
	return nil
}

// callback completes a sign-in: audited as a login, success or not.
func (c *Console) callback(rq *request) error {
	if c.Development() {
		return rq.seeOther(Prefix + "/")
	}
	q := rq.r.URL.Query()
	p := c.sessions.finishLogin(rq.w, rq.r, q.Get("state"))
	if p == nil || q.Get("error") != "" || q.Get("code") == "" {
		rq.sc.Description = "console sign-in: refused"
		return errSignInFailed
	}
	claims, err := c.oidc.exchange(rq.ctx(), q.Get("code"), p)
	if err != nil {
		rq.sc.Description = "console sign-in: refused"
		return err
	}
	pr, err := c.settings.principal(claims)
	if err != nil {
		if pr != nil {
			rq.sc.SetPrincipal(pr) // who was refused, for the AuditEvent
		}
		rq.sc.Description = "console sign-in: refused"
		return err
	}
	rq.sess = c.sessions.create(rq.w, pr)
	rq.sc.SetPrincipal(pr)
	rq.sc.Description = "console sign-in: " + roleWords(pr)
	// A page, not a redirect: the SameSite=Strict session cookie is sent
	// on a navigation this page starts, not on a redirect chain that
	// began at the issuer.
	return rq.render("signedin", "Signed in", struct{ Next string }{p.Next})
}

// logout ends the session.
func (c *Console) logout(rq *request) error {
	c.sessions.end(rq.w, rq.sess)
	rq.sc.Description = "console sign-out"
	if c.Development() {
		return rq.seeOther(Prefix + "/")
	}
	rq.sess = nil
	return rq.render("login", "Signed out", loginPage{Next: Prefix + "/", Issuer: c.settings.Issuer, SignedOut: true})
}

// roleWords names a principal's console roles.
func roleWords(p *auth.Principal) string {
	var r []string
	if p.Scopes.Has(auth.ScopeAuditor) {
		r = append(r, "auditor")
	}
	if p.Scopes.Has(auth.ScopeOperator) {
		r = append(r, "operator")
	}
	if len(r) == 0 {
		return "no role"
	}
	return strings.Join(r, ", ")
}
