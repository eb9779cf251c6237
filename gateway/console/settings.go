package console

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Settings are the console's part of the configuration file
// (docs/configuration.md, "console").
type Settings struct {
	// Issuer is the OpenID Connect issuer people sign in with (its
	// discovery document is Issuer + "/.well-known/openid-configuration").
	// Empty: development mode.
	Issuer string `json:"issuer"`
	// ClientID and ClientSecret are the console's registration at the
	// issuer (the secret may instead come from GATEWAY_CONSOLE_CLIENT_SECRET;
	// empty for a public client, PKCE protects the code either way).
	ClientID     string `json:"clientId"`
	ClientSecret string `json:"clientSecret,omitempty"`
	// RedirectURL is the console's callback as registered at the issuer:
	// https://<gateway>/console/callback.
	RedirectURL string `json:"redirectUrl"`
	// RoleClaim is the ID token claim (a string or a list of strings)
	// whose values grant the roles; "groups" by default.
	RoleClaim string `json:"roleClaim"`
	// Auditors and Operators are the RoleClaim values that grant the
	// auditor role (gateway/auditor and system/*.rs: the audit pages) and
	// the operator role (gateway/operator: the delivery pages).
	Auditors  []string `json:"auditors"`
	Operators []string `json:"operators"`
	// NameClaim names the person in AuditEvents ("sub" by default; an
	// "email" or "preferred_username" claim reads better).
	NameClaim string `json:"nameClaim"`
	// TenantClaim, when set, is the claim naming the tenant the person acts
	// for (a sign-in without it is refused); without it people act for
	// every tenant, read-only, like an all-tenant client.
	TenantClaim string `json:"tenantClaim"`
	// TraceURL links trace ids to the site's tracing UI: "{traceId}" is
	// replaced by the id (e.g. "https://jaeger.example.org/trace/{traceId}").
	TraceURL string `json:"traceUrl"`
	// SessionTTL is how long a session lasts without a request ("1h" by
	// default): each page or form sent moves it on.
	SessionTTL string `json:"sessionTTL"`
	// SessionMaxAge is how long a session lasts at most after sign-in,
	// however active ("12h" by default, or sessionTTL if that is longer).
	SessionMaxAge string `json:"sessionMaxAge"`

	sessionTTL, sessionMaxAge time.Duration
}

// Check reports what New would refuse in the settings (a malformed
// sessionTTL, traceUrl, issuer or redirectUrl, a missing clientId), so that
// a caller can check its configuration before it builds the application.
func (s Settings) Check() error { return s.normalise() }

// normalise checks the settings and fills in the defaults.
func (s *Settings) normalise() error {
	s.sessionTTL = time.Hour
	if s.SessionTTL != "" {
		d, err := time.ParseDuration(s.SessionTTL)
		if err != nil || d < time.Minute || d > 7*24*time.Hour {
			return errors.New("console: sessionTTL must be a duration from 1m to 168h")
		}
		s.sessionTTL = d
	}
	s.sessionMaxAge = max(12*time.Hour, s.sessionTTL)
	if s.SessionMaxAge != "" {
		d, err := time.ParseDuration(s.SessionMaxAge)
		if err != nil || d < s.sessionTTL || d > 7*24*time.Hour {
			return errors.New("console: sessionMaxAge must be a duration from sessionTTL to 168h")
		}
		s.sessionMaxAge = d
	}
	if s.TraceURL != "" {
		u, err := url.Parse(strings.ReplaceAll(s.TraceURL, "{traceId}", "0"))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || !strings.Contains(s.TraceURL, "{traceId}") {
			return errors.New("console: traceUrl must be an http(s) URL containing {traceId}")
		}
	}
	if s.RoleClaim == "" {
		s.RoleClaim = "groups"
	}
	if s.NameClaim == "" {
		s.NameClaim = "sub"
	}
	if s.Issuer == "" {
		return nil
	}
	for name, v := range map[string]string{"issuer": s.Issuer, "redirectUrl": s.RedirectURL} {
		u, err := url.Parse(v)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("console: %s must be an absolute http(s) URL", name)
		}
	}
	if s.ClientID == "" {
		return errors.New("console: clientId is required with an issuer")
	}
	if !strings.HasSuffix(s.RedirectURL, Prefix+"/callback") {
		return fmt.Errorf("console: redirectUrl must end in %s/callback", Prefix)
	}
	return nil
}

// traceLink returns the tracing UI's URL of a trace ("" without a
// template).
func (s *Settings) traceLink(traceID string) string {
	if s.TraceURL == "" || traceID == "" {
		return ""
	}
	return strings.ReplaceAll(s.TraceURL, "{traceId}", url.PathEscape(traceID))
}
