package gateway

import (
	"context"
	"errors"
	"math"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Security (docs/security.md): SMART Backend Services authentication,
// SMART v2 system scopes per interaction and per Bundle entry, one tenant
// per client, per-IP and per-client rate limits and bounded concurrency.
// Without Config.Auth the gateway runs in development mode: every request
// acts as an anonymous client with every permission in the default tenant
// (serve allows that only on a loopback address).

// publicRoutes need no authentication: discovery, health, the token
// endpoint itself and the CapabilityStatement (http.html#capabilities).
var publicRoutes = map[string]bool{
	"GET /healthz":                              true,
	"GET /readyz":                               true,
	"POST /auth/token":                          true,
	"GET /.well-known/smart-configuration":      true,
	"GET /fhir/.well-known/smart-configuration": true,
	"GET /fhir/metadata":                        true,
}

// principalKey is the echo context key of the request's *auth.Principal.
const principalKey = "kg.principal"

// devPrincipal is the caller in development mode.
var devPrincipal = &auth.Principal{Scopes: auth.ParseScopes("system/*.cruds " + auth.ScopeIngest + " " + auth.ScopeOperator)}

// principal returns the request's authenticated caller (devPrincipal in
// development mode, nil before authentication).
func principal(c echo.Context) *auth.Principal {
	p, _ := c.Get(principalKey).(*auth.Principal)
	return p
}

// tenantOf is the tenant the request acts for.
func tenantOf(c echo.Context) string {
	if p := principal(c); p != nil {
		return p.Tenant
	}
	return ""
}

// authenticate resolves the caller of every non-public route; a failure is
// a 401 (or 503) answered, and audited, like any error.
func (s *Server) authenticate(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if publicRoutes[c.Request().Method+" "+c.Path()] {
			return next(c)
		}
		if s.cfg.Auth == nil {
			c.Set(principalKey, devPrincipal)
			return next(c)
		}
		p, fail := s.cfg.Auth.Authenticate(c.Request().Context(), c.Request().Header.Get("Authorization"))
		if fail != nil {
			auditOf(c).clientID = fail.ClientID
			return fail
		}
		c.Set(principalKey, p)
		sc := auditOf(c)
		sc.clientID, sc.tenant = p.ClientID, p.Tenant
		if s.clientLimiter != nil {
			if ok, wait := s.clientLimiter.Allow("client:"+p.ClientID, s.now()); !ok {
				return tooManyRequests(wait)
			}
		}
		return next(c)
	}
}

// allow checks that the caller's scopes grant perm ('c', 'r', 'u', 'd',
// 's') on typ; a 403 insufficient_scope otherwise.
func allow(c echo.Context, typ string, perm byte) error {
	p := principal(c)
	if p == nil {
		return &auth.Failure{Status: http.StatusUnauthorized, Reason: "unauthenticated", Description: "authentication required"}
	}
	if !p.Scopes.Allows(typ, perm) {
		return auth.InsufficientScope(p.ClientID, "system/"+typ+"."+string(perm))
	}
	return nil
}

// requireScope checks a gateway scope (ingest, operator).
func requireScope(name string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p := principal(c)
			if p == nil || !p.Scopes.Has(name) {
				id := ""
				if p != nil {
					id = p.ClientID
				}
				return auth.InsufficientScope(id, name)
			}
			return next(c)
		}
	}
}

// entryPerm is the permission a Bundle entry needs.
func entryPerm(e *txEntry) byte {
	switch e.method {
	case "POST":
		return 'c'
	case "PUT":
		return 'u'
	case "DELETE":
		return 'd'
	}
	if e.id == "" {
		return 's'
	}
	return 'r'
}

// allowEntries checks every entry of a Bundle; the first refused entry is
// returned as an *entryError (a transaction fails whole).
func allowEntries(c echo.Context, entries []*txEntry) error {
	for _, e := range entries {
		if e.perr != nil {
			continue
		}
		if err := allow(c, e.typ, entryPerm(e)); err != nil {
			return &entryError{e.index, err}
		}
	}
	return nil
}

// limitIP applies the per-address rate limit to every request but the
// health probes, before authentication (so a flood of bad tokens is
// limited too).
func (s *Server) limitIP(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := c.Path(); s.ipLimiter == nil || p == "/healthz" || p == "/readyz" {
			return next(c)
		}
		if ok, wait := s.ipLimiter.Allow("ip:"+c.RealIP(), s.now()); !ok {
			return tooManyRequests(wait)
		}
		return next(c)
	}
}

// boundConcurrency answers 503 when MaxInFlight requests are already being
// served and no slot frees within a short wait.
func (s *Server) boundConcurrency(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if p := c.Path(); p == "/healthz" {
			return next(c)
		}
		select {
		case s.inFlight <- struct{}{}: // the usual case: a free slot, no timer
		default:
			t := time.NewTimer(250 * time.Millisecond)
			defer t.Stop()
			select {
			case s.inFlight <- struct{}{}:
			case <-t.C:
				return errBusy
			case <-c.Request().Context().Done():
				return errBusy
			}
		}
		defer func() { <-s.inFlight }()
		return next(c)
	}
}

// errBusy is the answer when the gateway is at its concurrency bound.
var errBusy = &Error{Status: http.StatusServiceUnavailable, RetryAfter: 1, Issues: []Issue{{Severity: "error", Code: "transient",
	Rule: "server-busy", Message: "the gateway is at its concurrency limit; retry shortly"}}}

// tooManyRequests is a 429 with Retry-After.
func tooManyRequests(wait time.Duration) error {
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return &Error{Status: http.StatusTooManyRequests, RetryAfter: secs, Issues: []Issue{{Severity: "error", Code: "throttled",
		Rule: "rate-limited", Message: "too many requests; retry after " + strconv.Itoa(secs) + " s"}}}
}

// handleToken is POST /auth/token (SMART Backend Services, RFC 6749
// client_credentials with a private_key_jwt assertion). Answers are OAuth
// JSON, not OperationOutcomes.
func (s *Server) handleToken(c echo.Context) error {
	sc := auditOf(c)
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if s.cfg.Auth == nil {
		return errorf(http.StatusNotFound, "not-found", "auth-not-configured",
			"this gateway runs in development mode without authentication")
	}
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 64<<10)
	// Credentials come in the body only: never from the URL, which
	// proxies and access logs keep.
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" || r.ParseForm() != nil {
		return oauthError(c, &auth.Failure{Status: http.StatusBadRequest, Code: auth.CodeInvalidRequest,
			Reason: "form-invalid", Description: "the body must be application/x-www-form-urlencoded"})
	}
	resp, fail := s.cfg.Auth.Token(r.Context(), r.PostForm)
	if fail != nil {
		sc.clientID = fail.ClientID
		if fail.Status >= 500 {
			s.log.ErrorContext(r.Context(), "token endpoint failed", "reason", fail.Reason, "error_class", errorClass(fail))
		}
		return oauthError(c, fail)
	}
	sc.clientID, sc.tenant = resp.ClientID, resp.Tenant
	sc.description = "access token issued for " + resp.Scope
	return c.JSON(http.StatusOK, resp)
}

// oauthError answers an RFC 6749 error and records its reason for the
// audit record.
func oauthError(c echo.Context, f *auth.Failure) error {
	auditOf(c).description = "rejected: " + f.Code + " (" + f.Reason + ")"
	return c.JSON(f.Status, f)
}

// handleSmartConfiguration is GET /.well-known/smart-configuration.
func (s *Server) handleSmartConfiguration(c echo.Context) error {
	if s.cfg.Auth == nil {
		return errorf(http.StatusNotFound, "not-found", "auth-not-configured",
			"this gateway runs in development mode without authentication")
	}
	return c.JSON(http.StatusOK, auth.SmartConfiguration(s.cfg.AuthTokenURL))
}

// authOutcome maps an authentication or authorisation failure.
func authOutcome(f *auth.Failure) (int, []Issue) {
	code, rule := "security", "auth-"+f.Reason
	switch {
	case f.Status == http.StatusUnauthorized:
		code = "login"
	case f.Status == http.StatusForbidden:
		code, rule = "forbidden", "scope-insufficient"
	case f.Status >= 500:
		code = "transient"
	}
	msg := f.Description
	if f.Status == http.StatusForbidden {
		msg = "the access token's scopes do not allow this (" + f.Scope + " is needed)"
	}
	return f.Status, []Issue{{Severity: "error", Code: code, Rule: rule, Message: msg}}
}

// isAuthFailure unwraps an *auth.Failure.
func isAuthFailure(err error) (*auth.Failure, bool) {
	var f *auth.Failure
	ok := errors.As(err, &f)
	return f, ok
}

// ReplayCache adapts a store that remembers one-time values to the token
// endpoint's jti replay cache, so that every replica sharing the database
// refuses an assertion any of them has seen.
type ReplayCache struct{ Nonces store.Nonces }

// Seen implements auth.ReplayCache.
func (r ReplayCache) Seen(ctx context.Context, key string, exp time.Time) (bool, error) {
	first, err := r.Nonces.UseNonce(ctx, key, exp)
	return !first, err
}
