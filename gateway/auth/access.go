package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// maxBearerLen bounds the work done on an unauthenticated API request.
const maxBearerLen = 16 << 10

// apiAlgs are the algorithms a bearer token may use: HS256 for the gateway's
// own tokens (verified only with SigningSecret), the rest for external
// issuers (verified only with keys from their JWKS URL).
var apiAlgs = []jose.SignatureAlgorithm{jose.HS256, jose.RS256, jose.RS384, jose.ES256, jose.ES384}

// Principal is the authenticated caller of an API request.
type Principal struct {
	// ClientID is the client the token was issued to.
	ClientID string
	// Tenant is the clinic tenant the caller acts for.
	Tenant string
	// Scopes are what the caller may do; check them with Allows and Has.
	Scopes Scopes
	// Issuer is TokenURL for the gateway's own tokens, else the external
	// issuer's iss.
	Issuer string
	// External tells that ClientID is a client of the external issuer
	// Issuer, not a registered client: the same id from another issuer,
	// or registered, is another client (see Key).
	External bool
}

// KeySeparator separates an external issuer from its client's id in a
// principal's Key; a registered client's id may not contain it.
const KeySeparator = "|"

// Key is p's identity wherever the gateway names, keeps or compares
// callers (an AuditEvent's or Provenance's client, a job's owner, a rate
// limit): ClientID for a registered client or a console person,
// Issuer|ClientID for an external issuer's client, so that no issuer can
// mint a token that passes for another issuer's client or a registered
// one. "" for nil.
func (p *Principal) Key() string {
	switch {
	case p == nil:
		return ""
	case p.External:
		return p.Issuer + KeySeparator + p.ClientID
	}
	return p.ClientID
}

// accessClaims are the claims of the gateway's own access tokens.
type accessClaims struct {
	jwt.Claims
	Tenant string `json:"tenant"`
	Scope  string `json:"scope"`
}

// issue signs an access token for client with the granted scopes.
func (s *Server) issue(client *registeredClient, granted Scopes, now time.Time) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: s.secret},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		return "", fmt.Errorf("new signer: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("token id: %w", err)
	}
	claims := accessClaims{
		Claims: jwt.Claims{
			Issuer:   s.tokenURL,
			Subject:  client.id,
			IssuedAt: jwt.NewNumericDate(now),
			Expiry:   jwt.NewNumericDate(now.Add(s.ttl)),
			ID:       hex.EncodeToString(jti),
		},
		Tenant: client.tenant,
		Scope:  granted.String(),
	}
	token, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		return "", fmt.Errorf("sign access token: %w", err)
	}
	return token, nil
}

// Authenticate authenticates an API request from its Authorization header
// value. It accepts "Bearer <token>" where the token is either the gateway's
// own (HS256 with SigningSecret, iss TokenURL, from a client still
// registered) or one from a configured external issuer (RS256, RS384, ES256
// or ES384 with a key from that issuer's JWKS URL, aud containing its
// Audience, a tenant claim). exp is required, nbf honoured and an iat in
// the future refused, with 30 seconds of clock skew (for exp only on
// external issuers' tokens: the gateway's own are refused from their exp,
// tokenTTL after issue). The principal's scopes
// are the token's, clipped to what the client or issuer may have; they may
// be empty, which the caller's Allows checks then refuse.
//
// On failure it returns a *Failure with Status 401: with an empty Code when
// the header is empty or not a Bearer credential (RFC 6750 section 3.1), else
// Code invalid_token and a Reason such as "malformed", "alg-not-allowed",
// "signature-invalid", "expired", "iss-unknown", "aud-mismatch" or
// "kid-unknown". It returns 503 temporarily_unavailable if an external
// issuer's keys could not be fetched.
func (s *Server) Authenticate(ctx context.Context, authorizationHeader string) (*Principal, *Failure) {
	token, f := bearerToken(authorizationHeader)
	if f != nil {
		return nil, f
	}
	if !compactJWS(token) {
		return nil, invalidToken("malformed", "the access token is malformed", "")
	}
	tok, err := jwt.ParseSigned(token, apiAlgs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, invalidToken("alg-not-allowed", "the access token's algorithm is not accepted", "")
		}
		return nil, invalidToken("malformed", "the access token is malformed", "")
	}
	if len(tok.Headers) != 1 {
		return nil, invalidToken("malformed", "the access token is malformed", "")
	}
	if tok.Headers[0].Algorithm == string(jose.HS256) {
		return s.verifyOwn(tok)
	}
	return s.verifyExternal(ctx, tok)
}

// bearerToken extracts the token from an Authorization header value.
func bearerToken(header string) (string, *Failure) {
	if header == "" {
		return "", &Failure{Status: http.StatusUnauthorized, Description: "a bearer access token is required", Reason: "token-missing"}
	}
	scheme, rest, _ := strings.Cut(header, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", &Failure{Status: http.StatusUnauthorized, Description: "a bearer access token is required", Reason: "scheme-unsupported"}
	}
	token := strings.Trim(rest, " ")
	if token == "" || len(token) > maxBearerLen || !isB64Token(token) {
		return "", invalidToken("malformed", "the access token is malformed", "")
	}
	return token, nil
}

// isB64Token reports whether s matches RFC 6750's b64token.
func isB64Token(s string) bool {
	end := strings.TrimRight(s, "=")
	if end == "" {
		return false
	}
	for i := 0; i < len(end); i++ {
		c := end[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// verifyOwn verifies one of the gateway's own access tokens.
func (s *Server) verifyOwn(tok *jwt.JSONWebToken) (*Principal, *Failure) {
	var c accessClaims
	if err := tok.Claims(s.secret, &c); err != nil {
		return nil, invalidToken("signature-invalid", "the access token's signature is invalid", "")
	}
	if c.Issuer != s.tokenURL {
		return nil, invalidToken("iss-unknown", "the access token's issuer is not accepted", "")
	}
	// The gateway set exp on its own clock, tokenTTL after issue: no skew
	// is added to it, so a token is never accepted longer than tokenTTL
	// (docs/security.md). A replica checks it on its own clock, so replicas'
	// clocks must agree (NTP); iat keeps the skew, lest a replica whose clock
	// is a moment behind refuse a token just issued.
	if f := checkTimes(c.Claims, s.now(), c.Subject, 0); f != nil {
		return nil, f
	}
	client := s.clients[c.Subject]
	if client == nil {
		return nil, invalidToken("client-unknown", "the access token's client is not registered", "")
	}
	if c.Tenant != client.tenant {
		return nil, invalidToken("tenant-mismatch", "the access token's tenant is not the client's", client.id)
	}
	return &Principal{
		ClientID: client.id,
		Tenant:   client.tenant,
		Scopes:   grant(ParseScopes(c.Scope), client.scopes),
		Issuer:   s.tokenURL,
	}, nil
}

// checkTimes enforces exp (required; accepted until expSkew after it), nbf
// and iat (not in the future by more than clockSkew).
func checkTimes(c jwt.Claims, now time.Time, clientID string, expSkew time.Duration) *Failure {
	if c.Expiry == nil {
		return invalidToken("exp-missing", "the access token has no expiry", clientID)
	}
	if !now.Before(c.Expiry.Time().Add(expSkew)) {
		return invalidToken("expired", "the access token has expired", clientID)
	}
	if ahead(c.NotBefore, now) {
		return invalidToken("not-yet-valid", "the access token is not valid yet", clientID)
	}
	if ahead(c.IssuedAt, now) {
		return invalidToken("iat-in-future", "the access token was issued in the future", clientID)
	}
	return nil
}

// ahead reports whether t (nbf or iat; nil when absent) is later than now
// by more than clockSkew: an access token or client assertion not usable
// yet.
func ahead(t *jwt.NumericDate, now time.Time) bool {
	return t != nil && now.Add(clockSkew).Before(t.Time())
}
