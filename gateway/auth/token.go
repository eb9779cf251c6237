package auth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const (
	grantClientCredentials = "client_credentials"
	assertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// maxAssertionLen bounds the work done on an unauthenticated request.
	maxAssertionLen = 16 << 10
	maxJTILen       = 255
)

// assertionAlgs are the only client assertion algorithms SMART allows; HMAC
// and "none" never get past parsing.
var assertionAlgs = []jose.SignatureAlgorithm{jose.RS384, jose.ES384}

// TokenResponse is a successful token response, per SMART Backend Services.
// Encode it as the JSON body; ClientID and Tenant are for the audit record
// and are not encoded.
type TokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int    `json:"expires_in"`
	Scope       string `json:"scope"`

	ClientID string `json:"-"`
	Tenant   string `json:"-"`
	// NotGranted names, for the log and the audit record (not encoded),
	// each requested scope that grants nothing and why, as
	// "system/Observation.rs?... (granular)", "gateway/operator
	// (not-registered)" or "scope 3 (unrecognised)": never a granular
	// scope's restriction or a string of no form the gateway grants; at
	// most five, then "and N more"; and each resource scope granted
	// narrower than asked, as "system/Patient.cruds (narrowed)" (Scope
	// says what it got).
	NotGranted []string `json:"-"`
}

// Token handles a POST to the token endpoint, given its parsed
// application/x-www-form-urlencoded body. It verifies the request as SMART
// Backend Services requires and returns an access token for the granted
// scopes: the requested scopes intersected with the client's.
//
// On failure it returns a *Failure (see Failure for statuses):
// invalid_request for a repeated or missing parameter or a wrong
// client_assertion_type; unsupported_grant_type unless grant_type is
// client_credentials; invalid_client for any problem with the assertion
// (malformed, alg other than RS384/ES384, missing or unknown kid, jku header,
// iss != sub, unknown client, bad signature, aud not TokenURL, exp missing,
// passed or more than 5 minutes ahead, nbf or iat ahead beyond the 30 s
// clock skew, jti missing or replayed, a client_id parameter that differs
// from iss); invalid_scope if no scope was
// requested or none of the requested scopes is granted, its Description
// then saying why for each (a granular scope of a form the gateway does
// not enforce; a
// scope outside the client's registration; a form the gateway does not
// grant). Granting some of the requested scopes is success (SMART allows
// fewer): Scope is exactly what the token grants, NotGranted what it
// does not.
func (s *Server) Token(ctx context.Context, form url.Values) (*TokenResponse, *Failure) {
	for _, k := range []string{"grant_type", "client_assertion_type", "client_assertion", "scope", "client_id"} {
		if len(form[k]) > 1 {
			return nil, invalidRequest("param-repeated", "request parameters must not be repeated")
		}
	}
	switch gt := form.Get("grant_type"); gt {
	case grantClientCredentials:
	case "":
		return nil, invalidRequest("grant-type-missing", "grant_type is required")
	default:
		return nil, &Failure{
			Status:      http.StatusBadRequest,
			Code:        CodeUnsupportedGrantType,
			Description: "grant_type must be client_credentials",
			Reason:      "grant-type-unsupported",
		}
	}
	if form.Get("client_assertion_type") != assertionTypeJWTBearer {
		return nil, invalidRequest("assertion-type-invalid", "client_assertion_type must be "+assertionTypeJWTBearer)
	}
	assertion := form.Get("client_assertion")
	if assertion == "" {
		return nil, invalidRequest("assertion-missing", "client_assertion is required")
	}

	now := s.now()
	client, f := s.verifyAssertion(ctx, assertion)
	if f != nil {
		return nil, f
	}
	if id := form.Get("client_id"); id != "" && id != client.id {
		return nil, invalidClient("client-id-mismatch", "client_id must match the assertion's iss", client.id)
	}

	requested := ParseScopes(form.Get("scope"))
	if strings.TrimSpace(form.Get("scope")) == "" {
		return nil, &Failure{Status: http.StatusBadRequest, Code: CodeInvalidScope,
			Description: "scope is required", Reason: "scope-missing", ClientID: client.id}
	}
	granted := grant(requested, client.scopes)
	refused := refusals(form.Get("scope"), client.scopes, granted)
	if granted.empty() {
		return nil, &Failure{Status: http.StatusBadRequest, Code: CodeInvalidScope,
			Description: refusedDescription(refused), Reason: "scope-not-granted", ClientID: client.id}
	}
	if typ, params := granted.searchConflict(); typ != "" {
		return nil, &Failure{Status: http.StatusBadRequest, Code: CodeInvalidScope, Reason: "scope-restriction-unenforceable",
			ClientID: client.id, Description: "the scopes this request would grant restrict searches of " + typ +
				" by different search parameters (" + params + "), which this server cannot apply together to one " +
				"search: every search of " + typ + " would be refused; ask for the restricted scopes of one parameter"}
	}
	var short []string
	for _, r := range refused {
		short = append(short, r.short())
	}
	short = append(short, narrowed(requested, granted)...)
	notGranted := short
	if len(short) > maxExplained { // a 64 KiB scope parameter must not make a 64 KiB log line
		notGranted = append(short[:maxExplained:maxExplained], "and "+strconv.Itoa(len(short)-maxExplained)+" more")
	}
	token, err := s.issue(client, granted, now)
	if err != nil {
		return nil, &Failure{Status: http.StatusInternalServerError, Code: CodeServerError,
			Description: "the token could not be issued", Reason: "sign-failed", ClientID: client.id, Err: err}
	}
	return &TokenResponse{
		AccessToken: token,
		TokenType:   "bearer",
		ExpiresIn:   int(s.ttl.Seconds()),
		Scope:       granted.String(),
		ClientID:    client.id,
		Tenant:      client.tenant,
		NotGranted:  notGranted,
	}, nil
}

// verifyAssertion authenticates the client by its assertion. The order
// matters: nothing about the claims is trusted until the signature has been
// verified with a key registered for the client the assertion names, and the
// jti is recorded only for an otherwise valid assertion.
func (s *Server) verifyAssertion(ctx context.Context, assertion string) (*registeredClient, *Failure) {
	if len(assertion) > maxAssertionLen || !compactJWS(assertion) {
		return nil, invalidClient("malformed", "client_assertion is not a valid JWT", "")
	}
	tok, err := jwt.ParseSigned(assertion, assertionAlgs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, invalidClient("alg-not-allowed", "client_assertion must be signed with RS384 or ES384", "")
		}
		return nil, invalidClient("malformed", "client_assertion is not a valid JWT", "")
	}
	if len(tok.Headers) != 1 {
		return nil, invalidClient("malformed", "client_assertion is not a valid JWT", "")
	}
	h := tok.Headers[0]
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, invalidClient("malformed", "client_assertion is not a valid JWT", "")
	}
	if unverified.Issuer == "" || unverified.Issuer != unverified.Subject {
		return nil, invalidClient("iss-sub-mismatch", "client_assertion iss and sub must both be the client_id", "")
	}
	client := s.clients[unverified.Issuer]
	if client == nil {
		return nil, invalidClient("client-unknown", clientAuthFailed, "")
	}
	if typ, ok := h.ExtraHeaders[jose.HeaderType]; ok {
		if t, _ := typ.(string); !strings.EqualFold(t, "JWT") {
			return nil, invalidClient("typ-invalid", "client_assertion typ must be JWT", client.id)
		}
	}
	// SMART: a jku must match one registered for the client; none are.
	if _, ok := h.ExtraHeaders["jku"]; ok {
		return nil, invalidClient("jku-not-allowed", "client_assertion must not have a jku header: the gateway verifies assertions with the keys registered for the client only (send the kid of a registered key)", client.id)
	}
	if _, ok := h.ExtraHeaders["crit"]; ok {
		// RFC 7515 4.1.11: a recipient refuses a JWS whose critical
		// extensions it does not understand; the gateway understands
		// none. Its own reason, not a bad signature, which would send
		// whoever investigates to the client's keys.
		return nil, invalidClient("crit-unsupported", "client_assertion must not have a crit header: the gateway supports no critical header extension", client.id)
	}
	if h.KeyID == "" {
		return nil, invalidClient("kid-missing", "client_assertion must have a kid header", client.id)
	}
	key, ok := client.keys[h.KeyID]
	if !ok {
		return nil, invalidClient("kid-unknown", clientAuthFailed, client.id)
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return nil, invalidClient("signature-invalid", clientAuthFailed, client.id)
	}
	var c jwt.Claims
	if err := tok.Claims(key.Key, &c); err != nil {
		return nil, invalidClient("signature-invalid", clientAuthFailed, client.id)
	}

	// Verified from here on.
	now := s.now()
	if c.Issuer != client.id || c.Subject != client.id {
		return nil, invalidClient("iss-sub-mismatch", "client_assertion iss and sub must both be the client_id", client.id)
	}
	if !c.Audience.Contains(s.tokenURL) {
		return nil, invalidClient("aud-mismatch", "client_assertion aud must be the token endpoint URL", client.id)
	}
	if c.Expiry == nil {
		return nil, invalidClient("exp-missing", "client_assertion must have exp", client.id)
	}
	exp := c.Expiry.Time()
	if !now.Before(exp.Add(clockSkew)) {
		return nil, invalidClient("expired", "client_assertion has expired", client.id)
	}
	if exp.After(now.Add(maxAssertionLifetime + clockSkew)) {
		return nil, invalidClient("exp-too-far", "client_assertion exp must be at most 5 minutes ahead", client.id)
	}
	if ahead(c.NotBefore, now) {
		return nil, invalidClient("not-yet-valid", "client_assertion is not valid yet", client.id)
	}
	if ahead(c.IssuedAt, now) {
		// Issued in the future: the client's clock is wrong or the assertion
		// was made ahead of time to be used later; neither is accepted.
		return nil, invalidClient("iat-in-future", "client_assertion iat is in the future", client.id)
	}
	if c.ID == "" || len(c.ID) > maxJTILen {
		return nil, invalidClient("jti-missing", "client_assertion must have a jti of at most 255 characters", client.id)
	}
	seen, err := s.replay.Seen(ctx, replayKey(client.id, c.ID), exp.Add(clockSkew))
	if err != nil {
		return nil, &Failure{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable,
			Description: "the request cannot be handled now; retry later", Reason: "replay-cache-error", ClientID: client.id, Err: err}
	}
	if seen {
		return nil, invalidClient("jti-replayed", "client_assertion jti has been used already", client.id)
	}
	return client, nil
}

// compactJWS reports whether s has the shape of a JWS in compact
// serialization (RFC 7515 section 7.1): three parts joined by dots, each
// canonical base64url without padding. Go's base64 decoding, which go-jose
// uses, skips CR and LF and ignores the unused bits of a part's last
// character, so without this check the same signed token could be sent
// as other strings and still verify (both found by FuzzToken).
func compactJWS(s string) bool {
	parts, start := 0, 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			if !canonicalTail(s[start:i]) {
				return false
			}
			parts++
			start = i + 1
			continue
		}
		if b64urlValue(s[i]) < 0 {
			return false
		}
	}
	return parts == 3
}

// canonicalTail reports whether the unpadded base64url part p has a
// length that encodes whole bytes and zero unused bits in its last
// character, the one encoding RFC 4648 section 3.5 allows.
func canonicalTail(p string) bool {
	switch len(p) % 4 {
	case 1:
		return false
	case 2: // one byte: 2 bits used, 4 unused
		return b64urlValue(p[len(p)-1])&0x0f == 0
	case 3: // two bytes: 4 bits used, 2 unused
		return b64urlValue(p[len(p)-1])&0x03 == 0
	}
	return true
}

// b64urlValue is the 6-bit value of the base64url character c, or -1.
func b64urlValue(c byte) int {
	switch {
	case 'A' <= c && c <= 'Z':
		return int(c - 'A')
	case 'a' <= c && c <= 'z':
		return int(c-'a') + 26
	case '0' <= c && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}

// narrowed returns, as "<scope> (narrowed)", the requested resource scopes
// of which granted grants some permissions but not all (system/*.cruds
// granted as system/*.rs): the auditor sees that the client asked for
// more than it is registered for. A scope granted only restricted (an
// unrestricted scope asked by a client registered for a granular one) is
// narrowed too. The scopes are named as the log names them (shown).
func narrowed(requested, granted Scopes) []string {
	var out []string
	for _, r := range requested.list {
		if r.resourceType == "" {
			continue
		}
		var whole, some uint8 // granted as asked (or wider), granted restricted
		for _, g := range granted.list {
			if g.resourceType == "*" || r.resourceType != "*" && g.resourceType == r.resourceType {
				if g.query == "" || g.key == r.key {
					whole |= g.perms
				} else {
					some |= g.perms
				}
			}
		}
		if r.perms&(whole|some) != 0 && r.perms&^whole != 0 {
			out = append(out, r.shown()+" (narrowed)")
		}
	}
	return out
}
