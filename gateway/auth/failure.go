package auth

import (
	"encoding/json"
	"net/http"
	"strings"
)

// realm is the RFC 6750 realm the gateway announces.
const realm = "ketamine-gateway"

// OAuth 2.0 error codes (RFC 6749 section 5.2, RFC 6750 section 3.1).
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeInvalidScope           = "invalid_scope"
	CodeInvalidToken           = "invalid_token"
	CodeInsufficientScope      = "insufficient_scope"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeServerError            = "server_error"
)

// Failure is a refused token request or a refused API request. It is safe to
// show to the client and to log: Description is a PHI-free sentence that
// never echoes the assertion, the token or their claims. Only an
// invalid_scope Description names request content: the refused scopes
// that are of the gateway's own grammar (a granular scope without its
// restriction), in RFC 6749's error_description characters.
//
// From Server.Token: Status 400 with Code invalid_request,
// unsupported_grant_type or invalid_scope; 401 with invalid_client (every
// problem with the client assertion itself, as SMART Backend Services
// requires); 503 with temporarily_unavailable when the replay cache failed
// (Err says why); 500 with server_error if a token could not be signed.
//
// From Server.Authenticate: Status 401 with Code invalid_token, or with an
// empty Code when no bearer credentials were sent at all; 503 with
// temporarily_unavailable when an external issuer's key set could not be
// fetched (Err says why). InsufficientScope builds the 403 for a principal
// whose scopes do not allow a request.
//
// Failure implements error, so the gateway's one error handler can map it
// with errors.As.
type Failure struct {
	// Status is the HTTP status to answer with.
	Status int
	// Code is the OAuth error code, "" only for a 401 without credentials.
	Code string
	// Description is a short, fixed, PHI-free explanation for the client.
	Description string
	// Reason is a short stable machine reason for the audit record, such as
	// "alg-not-allowed", "kid-unknown", "aud-mismatch", "expired",
	// "jti-replayed", "signature-invalid", "client-unknown" or "malformed".
	Reason string
	// ClientID is the registered client the request names, once one was
	// identified (the assertion's iss, or a token's subject), for the audit
	// record. For reasons found before the signature was checked
	// (kid-unknown, kid-missing, typ-invalid, jku-not-allowed,
	// signature-invalid) it is a claim, not proof.
	ClientID string
	// Issuer is, when ClientID is an external issuer's client (a token
	// from that issuer), the issuer; "" for a registered client.
	Issuer string
	// Scope is the scope a 403 insufficient_scope failure asks for.
	Scope string
	// Err is the internal cause of a 5xx failure, for the log only; it holds
	// no token contents. It is nil for 4xx failures.
	Err error
}

// Error returns a PHI-free summary: the code and reason.
func (f *Failure) Error() string {
	code := f.Code
	if code == "" {
		code = "unauthenticated"
	}
	return "auth: " + code + " (" + f.Reason + ")"
}

// Unwrap returns the internal cause of a 5xx failure, or nil.
func (f *Failure) Unwrap() error { return f.Err }

// MarshalJSON encodes the RFC 6749 section 5.2 error body
// {"error": Code, "error_description": Description}, never Reason, ClientID
// or Err, so a Failure can be written as the token endpoint's response body
// directly. It does not fail.
func (f *Failure) MarshalJSON() ([]byte, error) {
	body := struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{f.Code, f.Description}
	if body.Error == "" {
		body.Error = CodeInvalidRequest
	}
	return json.Marshal(body)
}

// WWWAuthenticate returns the RFC 6750 WWW-Authenticate header value for a
// 401 or 403 failure: `Bearer realm="ketamine-gateway"` when no credentials
// were sent, otherwise with error and error_description (and scope for
// insufficient_scope) attributes. It returns "" for any other status.
func (f *Failure) WWWAuthenticate() string {
	if f.Status != http.StatusUnauthorized && f.Status != http.StatusForbidden {
		return ""
	}
	var b strings.Builder
	b.WriteString(`Bearer realm="` + realm + `"`)
	if f.Code == "" {
		return b.String()
	}
	b.WriteString(`, error="` + quoteSafe(f.Code) + `"`)
	if f.Description != "" {
		b.WriteString(`, error_description="` + quoteSafe(f.Description) + `"`)
	}
	if f.Scope != "" {
		b.WriteString(`, scope="` + quoteSafe(f.Scope) + `"`)
	}
	return b.String()
}

// quoteSafe keeps only the characters RFC 6750 allows in these attributes
// (%x20-21 / %x23-5B / %x5D-7E), so a header value can never be broken.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return -1
		}
		return r
	}, s)
}

// InsufficientScope returns the 403 Failure (RFC 6750 insufficient_scope) for
// an authenticated principal whose scopes do not allow the request; scope
// names what would (for example "system/Observation.r" or ScopeOperator) and
// must not contain request data.
func InsufficientScope(clientID, scope string) *Failure {
	return &Failure{
		Status:      http.StatusForbidden,
		Code:        CodeInsufficientScope,
		Description: "the access token does not grant the scope this request needs",
		Reason:      "scope-insufficient",
		ClientID:    clientID,
		Scope:       scope,
	}
}

func invalidRequest(reason, desc string) *Failure {
	return &Failure{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Description: desc, Reason: reason}
}

// clientAuthFailed is the description for client-authentication failures that
// must not reveal which registered clients or keys exist.
const clientAuthFailed = "client authentication failed"

func invalidClient(reason, desc, clientID string) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Code: CodeInvalidClient, Description: desc, Reason: reason, ClientID: clientID}
}

func invalidToken(reason, desc, clientID string) *Failure {
	return &Failure{Status: http.StatusUnauthorized, Code: CodeInvalidToken, Description: desc, Reason: reason, ClientID: clientID}
}
