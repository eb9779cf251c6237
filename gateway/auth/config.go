package auth

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Client is a registered SMART Backend Services client, as read from the
// gateway's config file. Exactly one of JWKS and JWKSFile gives its public
// keys: RSA keys of at least 2048 bits and EC P-384 keys, each with a unique
// kid, use "sig" or none, alg RS384 / ES384 or none. NewServer rejects
// anything else, including private key material.
type Client struct {
	// ID is the client_id: the iss and sub of its assertions.
	ID string `json:"id"`
	// Tenant is the clinic tenant every token of this client acts for.
	Tenant string `json:"tenant"`
	// Scopes are the most this client may be granted; each must be a scope
	// ParseScopes recognises.
	Scopes []string `json:"scopes"`
	// JWKS is an inline JWK Set ({"keys": [...]}).
	JWKS json.RawMessage `json:"jwks,omitempty"`
	// JWKSFile is the path of a JWK Set file, read once by NewServer.
	JWKSFile string `json:"jwksFile,omitempty"`
}

// ExternalIssuer is an external authorisation server whose access tokens the
// gateway accepts (RS256, RS384, ES256 or ES384). Its keys come only from
// JWKSURL (never from a token's jku, x5u or jwk header); they are fetched on
// first use, cached, refetched on an unknown kid at most once per minute and
// at least hourly, over HTTPS with certificate verification, timeouts and no
// redirects.
type ExternalIssuer struct {
	// Issuer is the exact iss of its tokens.
	Issuer string `json:"issuer"`
	// JWKSURL is the https URL of its JWK Set.
	JWKSURL string `json:"jwksUrl"`
	// Audience must be among its tokens' aud.
	Audience string `json:"audience"`
	// TenantClaim names the string claim holding the tenant; default "tenant".
	TenantClaim string `json:"tenantClaim,omitempty"`
	// ScopeClaim names the claim holding the scopes, a space-separated string
	// or an array of strings; default "scope".
	ScopeClaim string `json:"scopeClaim,omitempty"`
	// Scopes are the most a token from this issuer is granted, whatever it
	// claims; at least one is required.
	Scopes []string `json:"scopes"`
	// Tenants, if set, are the only tenants its tokens may name.
	Tenants []string `json:"tenants,omitempty"`
}

// Config configures a Server. It decodes from JSON with camelCase keys;
// "tokenTTL" is a time.ParseDuration string such as "5m", and
// "signingSecret" is base64 (better supplied by the gateway from its
// environment than from the config file).
type Config struct {
	// TokenURL is the absolute URL clients POST to for tokens, exactly as
	// they see it (behind any proxy): the required aud of their assertions,
	// and the iss of the gateway's own access tokens. https, or http on a
	// loopback host for development.
	TokenURL string `json:"tokenUrl"`
	// Clients are the registered backend services clients.
	Clients []Client `json:"clients"`
	// External are the external authorisation servers whose tokens are
	// accepted.
	External []ExternalIssuer `json:"external,omitempty"`
	// TokenTTL is the lifetime of issued access tokens; default and maximum
	// 5 minutes.
	TokenTTL time.Duration `json:"-"`
	// SigningSecret is the HMAC-SHA256 key of the gateway's own access
	// tokens, at least 32 bytes, the same on every replica. If nil, NewServer
	// generates a random one, valid for this process only.
	SigningSecret []byte `json:"signingSecret,omitempty"`
	// Replay remembers assertion jti values; default an in-memory cache,
	// which is right for a single replica only. Several replicas need a
	// shared implementation (for example in the database).
	Replay ReplayCache `json:"-"`
	// JWKSClient fetches external issuers' key sets; default a client with
	// timeouts and verified TLS. Redirects are never followed.
	JWKSClient *http.Client `json:"-"`
	// Now is the clock; default time.Now.
	Now func() time.Time `json:"-"`
}

// UnmarshalJSON decodes a Config, reading tokenTTL as a duration string.
// It returns an error for invalid JSON or an unparsable tokenTTL.
func (c *Config) UnmarshalJSON(b []byte) error {
	type plain Config
	aux := struct {
		*plain
		TokenTTL string `json:"tokenTTL"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if aux.TokenTTL != "" {
		d, err := time.ParseDuration(aux.TokenTTL)
		if err != nil {
			return fmt.Errorf("auth config: tokenTTL: %w", err)
		}
		c.TokenTTL = d
	}
	return nil
}

// PersonPrefix begins the principal of a person signed in to the console
// ("person:" and the name claim), so that a person is never a registered
// client of the same name; no client id may begin with it.
const PersonPrefix = "person:"

// MinSigningSecret is the shortest Config.SigningSecret NewServer
// accepts, in bytes.
const MinSigningSecret = minSecretLen
