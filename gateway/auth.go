package gateway

import (
	"errors"
	"mime"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// SMART Backend Services at the edge (docs/security.md): the token
// endpoint and discovery. Authentication of each request and the scope
// checks are in middleware.go and the engine.

// handleToken is POST /auth/token (SMART Backend Services, RFC 6749
// client_credentials with a private_key_jwt assertion). Answers are OAuth
// JSON, not OperationOutcomes.
func (s *Server) handleToken(c echo.Context) error {
	sc := scopeOf(c)
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if s.cfg.Auth == nil {
		return errAuthNotEnabled
	}
	r := c.Request()
	r.Body = http.MaxBytesReader(c.Response(), r.Body, 64<<10)
	// Credentials come in the body only: never from the URL, which
	// proxies and access logs keep.
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" {
		return oauthError(c, &auth.Failure{Status: http.StatusBadRequest, Code: auth.CodeInvalidRequest,
			Reason: "form-invalid", Description: "the body must be application/x-www-form-urlencoded"})
	}
	if err := r.ParseForm(); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return oauthError(c, &auth.Failure{Status: http.StatusBadRequest, Code: auth.CodeInvalidRequest,
				Reason: "body-too-large", Description: "the token request body exceeds 64 KiB"})
		}
		return oauthError(c, &auth.Failure{Status: http.StatusBadRequest, Code: auth.CodeInvalidRequest,
			Reason: "form-invalid", Description: "the body is not a valid application/x-www-form-urlencoded form"})
	}
	resp, fail := s.cfg.Auth.Token(r.Context(), r.PostForm)
	if fail != nil {
		sc.ClientID = fail.ClientID
		if fail.Status >= 500 {
			s.log.ErrorContext(r.Context(), "token endpoint failed", "reason", fail.Reason, "error_class", store.ErrorClass(fail))
		}
		return oauthError(c, fail)
	}
	sc.ClientID, sc.Tenant = resp.ClientID, resp.Tenant
	sc.Description = "access token issued for " + resp.Scope
	if len(resp.NotGranted) > 0 {
		// SMART lets the token endpoint grant fewer scopes than asked, and
		// the response's scope says which; the operator hears which were
		// left out and why (a client asking for a granular scope of a form
		// the gateway does not enforce gets less than it expects).
		// NotGranted names no restriction and no foreign string, and the
		// log names the granted granular scopes without theirs: no PHI.
		// The audit record keeps the granted scopes whole.
		notGranted := strings.Join(resp.NotGranted, ", ")
		sc.Description += "; not granted: " + notGranted
		s.log.InfoContext(r.Context(), "token granted fewer scopes than requested", "client", resp.ClientID,
			"scopes_granted", auth.ParseScopes(resp.Scope).Shown(), "scopes_not_granted", notGranted)
	}
	return c.JSON(http.StatusOK, resp)
}

// oauthError answers an RFC 6749 error and records its reason for the
// audit record.
func oauthError(c echo.Context, f *auth.Failure) error {
	scopeOf(c).Description = "rejected: " + f.Code + " (" + f.Reason + ")"
	return c.JSON(f.Status, f)
}

// handleSmartConfiguration is GET /.well-known/smart-configuration.
func (s *Server) handleSmartConfiguration(c echo.Context) error {
	if s.cfg.Auth == nil {
		return errAuthNotEnabled
	}
	return c.JSON(http.StatusOK, auth.SmartConfiguration(s.cfg.AuthTokenURL))
}
