// Package console is the gateway's web console for people: auditors who
// trace requests (AuditEvents, lineage, the audit chain), operators who
// look after deliveries to EHRs (dead letters, retry, replay, backlog,
// readiness) and developers who validate mappings (a playground over the
// ingest pipeline, with no store).
//
// It is a net/http handler rendering html/template pages; templates, CSS
// and the one script file are embedded, and every page carries a strict
// Content-Security-Policy (no inline script or style). It works on the
// application (package app) only, like the HTTP API: each page view or
// action builds an auditlog.Scope with the signed-in person as principal,
// calls the application methods the matching API call would, and appends
// that scope's AuditEvent before the page leaves (a page that cannot be
// audited is not shown).
//
// People sign in with OpenID Connect (authorization code with PKCE) against
// a configured issuer; sessions live in this process's memory. Without an
// issuer the console runs in development mode: no sign-in, every scope,
// which the binary allows only when the whole gateway is in development
// mode (unauthenticated, on loopback).
package console

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Prefix is the path the console is served under.
const Prefix = "/console"

// ContentSecurityPolicy is sent with every console response: scripts and
// styles only from the console's own files, nothing inline, no framing.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// Config configures a Console.
type Config struct {
	// App is the application the console works on (required, with a store).
	App *app.App
	// Settings are the deployment's console settings (the "console"
	// section of the configuration file). A nil Settings or one without an
	// Issuer is development mode: no sign-in, every scope.
	Settings *Settings
	// Logger receives failures (never PHI).
	Logger *slog.Logger
	// HTTPClient talks to the OpenID Connect issuer (a client with a
	// timeout by default).
	HTTPClient *http.Client
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Console serves the web console.
type Console struct {
	app      *app.App
	settings Settings
	log      *slog.Logger
	now      func() time.Time
	pages    map[string]*template.Template
	static   http.Handler
	mux      *http.ServeMux
	sessions *sessions
	oidc     *oidcClient // nil in development mode
	devScope *auth.Principal

	verifyMu   sync.Mutex
	lastVerify *auditlog.AuditVerification
	lastBy     string
}

// New builds the console. It does no I/O (the issuer is discovered at the
// first sign-in). It fails on invalid settings.
func New(cfg Config) (*Console, error) {
	if cfg.App == nil || cfg.App.Engine == nil {
		return nil, errors.New("console: needs an application with a store")
	}
	var st Settings
	if cfg.Settings != nil {
		st = *cfg.Settings
	}
	if err := st.normalise(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	c := &Console{app: cfg.App, settings: st, log: cfg.Logger, now: cfg.Now}
	pages, err := c.parsePages()
	if err != nil {
		return nil, err
	}
	c.pages = pages
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix(Prefix+"/static/", http.FileServerFS(sub))
	c.sessions = newSessions(st.sessionTTL, st.sessionMaxAge, cfg.Now)
	if st.Issuer != "" {
		c.oidc = newOIDC(st, cfg.HTTPClient)
	} else {
		c.devScope = &auth.Principal{Scopes: auth.ParseScopes("system/*.cruds " + auth.ScopeIngest + " " +
			auth.ScopeOperator + " " + auth.ScopeAuditor)}
	}
	c.routes()
	return c, nil
}

// Development reports whether the console runs without sign-in.
func (c *Console) Development() bool { return c.oidc == nil }

// ServeHTTP implements http.Handler.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	c.mux.ServeHTTP(w, r)
}

// scopeKey is the context key of the request's base audit scope.
type scopeKey struct{}

// WithScope returns ctx carrying the request's facts (client address,
// request and trace ids) as the HTTP edge read them; the console copies
// them into the scope of each page it audits.
func WithScope(ctx context.Context, sc *auditlog.Scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, sc)
}

// baseScope returns the facts the edge read, or the connection's address
// when the console runs without the edge (its own tests).
func baseScope(r *http.Request) auditlog.Scope {
	if sc, ok := r.Context().Value(scopeKey{}).(*auditlog.Scope); ok && sc != nil {
		return auditlog.Scope{Addr: sc.Addr, RequestID: sc.RequestID, TraceID: sc.TraceID, AuthRequired: sc.AuthRequired, Base: sc.Base}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return auditlog.Scope{Addr: host}
}

// need says which gateway scope a page needs ("" any signed-in person).
type need string

const (
	// public pages need no session (signing in); a session is used when
	// there is one.
	public       need = "-"
	anyone       need = ""
	auditorRole  need = auth.ScopeAuditor
	operatorRole need = auth.ScopeOperator
)

// role names a need for people.
func (n need) role() string {
	switch n {
	case auditorRole:
		return "auditor"
	case operatorRole:
		return "operator"
	}
	return "signed-in person"
}

// request is one console request as a page handler sees it.
type request struct {
	w    http.ResponseWriter
	r    *http.Request
	c    *Console
	sess *session
	// sc is the page's audit scope (Interaction "" for pages that show no
	// data of the gateway).
	sc     *auditlog.Scope
	status int
	// exactly one of page, redirect or download is set by a handler.
	page     string
	title    string
	outcome  string // a few words the title starts with: what the action or search came to
	data     any
	redirect string
	download *download
}

// download is a file answer (CSV or Bundle export).
type download struct {
	name, contentType string
	body              []byte
}

// ctx is the request's context.
func (rq *request) ctx() context.Context { return rq.r.Context() }

// render selects a template and its data.
func (rq *request) render(page, title string, data any) error {
	rq.page, rq.title, rq.data = page, title, data
	return nil
}

// seeOther answers 303 to a console path.
func (rq *request) seeOther(path string) error {
	rq.redirect = path
	return nil
}

// handler adapts a page function: the session, CSRF on POST, the scope
// check, the audit record and the buffered answer.
type pageFunc func(rq *request) error

// page registers fn for pattern: interaction is what it is audited as ("":
// not audited, for pages that show only the console itself), n the scope
// it needs.
func (c *Console) handle(pattern, interaction string, n need, fn pageFunc) {
	c.handleNaming(pattern, interaction, n, fn, nil)
}

// handleNaming is handle for an action on something its path names (a
// delivery): name records, in the request's scope, what the action would
// have acted on, when its form is refused (no CSRF token: possibly a
// forged, cross-site request) from a person whom the action is open to, so
// that the refusal's AuditEvent names it, as the API's refused call does.
// name's errors but "not found" and "invalid" (the path names nothing of
// the person's: nothing to name) replace the refusal (a 503: the refusal
// could not be audited in full; nothing was changed either way).
func (c *Console) handleNaming(pattern, interaction string, n need, fn, name pageFunc) {
	c.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		base := baseScope(r)
		sc := &base
		sc.Interaction = interaction
		rq := &request{w: w, r: r, c: c, sc: sc, status: http.StatusOK}
		err := readForm(w, r)
		if err == nil {
			err = c.prepare(rq, n)
			if errors.Is(err, errForged) && name != nil && rq.sess.principal.Scopes.Has(string(n)) {
				nerr := name(rq)
				if kind, _ := outcome.From(nerr); nerr != nil && kind != outcome.NotFound && kind != outcome.Invalid {
					err = nerr
				}
			}
		}
		if err == nil {
			err = fn(rq)
		}
		if errors.Is(err, errSignIn) {
			c.toSignIn(rq)
			return
		}
		if err != nil {
			c.fail(rq, err)
		}
		c.finish(rq)
	})
}

// readForm parses a POST's form (a record upload at most a few MiB).
func readForm(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return nil
	}
	limitBody(w, r)
	err := r.ParseMultipartForm(maxRecord)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return outcome.New(outcome.TooLarge, "too-costly", "body-too-large", "the form is too large (records are limited to 2 MiB)")
	case err != nil && !errors.Is(err, http.ErrNotMultipart):
		return outcome.New(outcome.Invalid, "invalid", "console-form-invalid", "the form could not be read")
	}
	return nil
}

// errSignIn sends a GET without a valid session to the sign-in page.
var errSignIn = errors.New("sign in")

// Failures the console itself reports.
var (
	errStale = outcome.New(outcome.Unauthorized, "login", "console-session-expired",
		"your session has ended; sign in again (nothing was changed)")
	errForged = outcome.New(outcome.Forbidden, "forbidden", "console-csrf",
		"the form was refused: it did not come from this session's page (nothing was changed); reload the page and try again")
)

// prepare loads the session and checks CSRF and the scope.
func (c *Console) prepare(rq *request, n need) error {
	sess := c.sessions.fromRequest(rq.r)
	if sess == nil && c.Development() {
		sess = c.sessions.create(rq.w, c.devScope)
	}
	if sess == nil && n == public {
		return nil
	}
	if sess == nil {
		if rq.r.Method == http.MethodGet || rq.r.Method == http.MethodHead {
			return errSignIn
		}
		return errStale
	}
	rq.sess = sess
	rq.sc.SetPrincipal(sess.principal)
	if rq.r.Method == http.MethodPost && !sess.validCSRF(rq.r.PostFormValue("csrf")) {
		return errForged
	}
	if n != anyone && n != public && !sess.principal.Scopes.Has(string(n)) {
		return outcome.New(outcome.Forbidden, "forbidden", "console-role",
			fmt.Sprintf("this page needs the %s role, which your account does not have (nothing was changed)", n.role()))
	}
	return nil
}

// toSignIn redirects to the sign-in page, remembering where to return.
func (c *Console) toSignIn(rq *request) {
	next := rq.r.URL.Path
	if rq.r.URL.RawQuery != "" {
		next += "?" + rq.r.URL.RawQuery
	}
	http.Redirect(rq.w, rq.r, Prefix+"/login?next="+url.QueryEscape(next), http.StatusSeeOther)
}

// fail turns an error into the error page: the OperationOutcome's text,
// never internal error text.
func (c *Console) fail(rq *request, err error) {
	kind, issues := outcome.From(err)
	rq.status = kind.HTTPStatus()
	rq.sc.Rules = outcome.Rules(err)
	if rq.status >= 500 && outcome.ClientClosed(rq.r.Context(), err) {
		// The client went away: no fault of the gateway's, logged by the
		// request's line alone (INFO, status 499).
		rq.status, rq.sc.Rules = outcome.StatusClientClosed, nil
	}
	if rq.status >= 500 && kind != outcome.Unavailable {
		c.log.ErrorContext(rq.ctx(), "console request failed", "route", rq.r.Pattern, "status", rq.status,
			"error_class", fmt.Sprintf("%T", errors.Unwrap(err)))
	}
	msgs := make([]string, 0, len(issues))
	for _, is := range issues {
		msgs = append(msgs, is.Message)
	}
	rq.redirect, rq.download = "", nil
	rq.page, rq.title = "error", errorTitle(rq.status, err)
	rq.data = errorPage{Status: rq.status, Messages: msgs, RequestID: rq.sc.RequestID}
	if errors.Is(err, errStale) {
		rq.data = errorPage{Status: rq.status, Messages: msgs, RequestID: rq.sc.RequestID, SignIn: true,
			Next: c.formPage(rq.r.URL.Path)}
	}
}

// errorTitle names an error page by what happened (probe p26 F8: every
// one was "Not done"), so that the window's title and the heading tell a
// person where they are.
func errorTitle(status int, err error) string {
	switch {
	case errors.Is(err, errStale):
		return "Session ended"
	case errors.Is(err, errForged):
		return "Form refused"
	}
	switch status {
	case http.StatusForbidden:
		return "Not allowed"
	case http.StatusNotFound:
		return "Not found"
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity, http.StatusConflict:
		return "Request refused"
	case http.StatusTooManyRequests:
		return "Too many requests"
	case http.StatusServiceUnavailable:
		return "Not done: try again later"
	}
	return "Not done"
}

// formPage is the page a form sent to path is on, for the sign-in link of
// a form sent from an ended session: the form's own address when it also
// shows a page, else the page that holds the form; the start page for
// anything else.
func (c *Console) formPage(path string) string {
	switch path {
	case Prefix + "/audit/export":
		return Prefix + "/audit"
	case Prefix + "/replay":
		return Prefix + "/deliveries"
	}
	r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}}
	if _, pattern := c.mux.Handler(r); pattern == "" || pattern == Prefix+"/" {
		return Prefix + "/"
	}
	return safeNext(path)
}

// errorPage is the error template's data.
type errorPage struct {
	Status    int
	Messages  []string
	RequestID string
	SignIn    bool
	Next      string // the page to return to after signing in
}

// finish audits the request and sends the answer, rendered in full first:
// nothing leaves before its AuditEvent is committed.
func (c *Console) finish(rq *request) {
	var body bytes.Buffer
	status := rq.status
	h := rq.w.Header()
	switch {
	case rq.redirect != "":
		status = http.StatusSeeOther
	case rq.download != nil:
		h.Set("Content-Type", rq.download.contentType)
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", rq.download.name))
		body.Write(rq.download.body)
	default:
		if err := c.execute(&body, rq); err != nil {
			c.log.ErrorContext(rq.ctx(), "console template failed", "route", rq.r.Pattern, "page", rq.page)
			status = http.StatusInternalServerError
			body.Reset()
			body.WriteString("the page could not be shown")
		}
	}
	if rq.sc.Interaction != "" && c.app.Audit.Enabled() {
		if err := c.app.Audit.Append(rq.sc, status); err != nil {
			c.log.ErrorContext(rq.ctx(), "audit write failed", "route", rq.r.Pattern, "status", status)
			rq.page, rq.title, rq.redirect, rq.download = "error", "Not done: try again later", "", nil
			rq.data = errorPage{Status: http.StatusServiceUnavailable, RequestID: rq.sc.RequestID,
				Messages: []string{"the request could not be audited and was not answered; retry later"}}
			body.Reset()
			_ = c.execute(&body, rq)
			status = http.StatusServiceUnavailable
			h.Del("Content-Disposition")
			h.Set("Retry-After", "5")
		}
	}
	if rq.redirect != "" && status == http.StatusSeeOther {
		h.Set("Location", rq.redirect)
	} else if h.Get("Content-Type") == "" || rq.download == nil {
		h.Set("Content-Type", "text/html; charset=utf-8")
	}
	h.Set("Cache-Control", "no-store")
	rq.w.WriteHeader(status)
	_, _ = rq.w.Write(body.Bytes())
}
