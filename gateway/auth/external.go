package auth

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

const (
	// jwksMinInterval is the least time between two fetches of one issuer's
	// key set, however many unknown kids arrive.
	jwksMinInterval = time.Minute
	// jwksMaxAge is how long a fetched key set is used before it is
	// refreshed (keeping the old one if the refresh fails).
	jwksMaxAge = time.Hour
	// jwksFetchTimeout bounds one fetch, independent of the request.
	jwksFetchTimeout = 10 * time.Second
	// maxJWKSBytes bounds a fetched key set.
	maxJWKSBytes = 1 << 20
)

// errKidUnknown means the issuer's current key set has no such kid.
var errKidUnknown = errors.New("kid not in key set")

type externalIssuer struct {
	issuer      string
	audience    string
	tenantClaim string
	scopeClaim  string
	scopes      Scopes
	tenants     map[string]bool
	keys        *jwksCache
}

func newExternalIssuer(e ExternalIssuer, client *http.Client, now func() time.Time) (*externalIssuer, error) {
	if e.Issuer == "" {
		return nil, errors.New("missing issuer")
	}
	if strings.Contains(e.Issuer, KeySeparator) || strings.HasPrefix(e.Issuer, PersonPrefix) {
		// Its clients are "<issuer>|<id>" (Principal.Key).
		return nil, fmt.Errorf("an issuer may not contain %q or begin with %q", KeySeparator, PersonPrefix)
	}
	if e.Audience == "" {
		return nil, errors.New("missing audience")
	}
	u, err := url.Parse(e.JWKSURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, errors.New("jwksUrl must be an absolute https URL")
	}
	scopes, err := configScopes(e.Scopes)
	if err != nil {
		return nil, err
	}
	ei := &externalIssuer{
		issuer:      e.Issuer,
		audience:    e.Audience,
		tenantClaim: e.TenantClaim,
		scopeClaim:  e.ScopeClaim,
		scopes:      scopes,
		keys:        newJWKSCache(e.JWKSURL, client, now),
	}
	if ei.tenantClaim == "" {
		ei.tenantClaim = "tenant"
	}
	if ei.scopeClaim == "" {
		ei.scopeClaim = "scope"
	}
	if len(e.Tenants) > 0 {
		ei.tenants = map[string]bool{}
		for _, t := range e.Tenants {
			ei.tenants[t] = true
		}
	}
	return ei, nil
}

// jwksHTTPClient returns the client used to fetch key sets: base (or a new
// client with timeouts and verified TLS) with redirects disabled, so keys
// come from the configured URL only.
func jwksHTTPClient(base *http.Client) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	} else {
		c.Transport = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   5 * time.Second,
			ResponseHeaderTimeout: 5 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   2,
		}
	}
	if c.Timeout == 0 {
		c.Timeout = jwksFetchTimeout
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// jwksCache holds one issuer's verification keys.
type jwksCache struct {
	url    string
	client *http.Client
	now    func() time.Time

	mu      sync.RWMutex
	keys    map[string]jose.JSONWebKey
	fetched time.Time // of the keys in use

	fetchMu   sync.Mutex // serialises fetches; guards lastFetch
	lastFetch time.Time  // of the last attempt, successful or not
}

func newJWKSCache(u string, client *http.Client, now func() time.Time) *jwksCache {
	return &jwksCache{url: u, client: jwksHTTPClient(client), now: now}
}

func (c *jwksCache) get(kid string) (jose.JSONWebKey, bool, time.Time) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.keys[kid]
	return k, ok, c.fetched
}

// key returns the key with kid, fetching the key set if it was never
// fetched, is older than jwksMaxAge, or lacks kid, but never more often than
// once per jwksMinInterval. It returns errKidUnknown if the key set in use
// has no such kid, or the fetch error if there is no key set at all.
func (c *jwksCache) key(ctx context.Context, kid string) (jose.JSONWebKey, error) {
	k, ok, fetched := c.get(kid)
	if ok && c.now().Sub(fetched) < jwksMaxAge {
		return k, nil
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	// Another request may have refreshed the set while this one waited.
	k, ok, fetched = c.get(kid)
	now := c.now()
	if ok && now.Sub(fetched) < jwksMaxAge {
		return k, nil
	}
	if !c.lastFetch.IsZero() && now.Sub(c.lastFetch) < jwksMinInterval {
		if ok {
			return k, nil
		}
		if fetched.IsZero() {
			return jose.JSONWebKey{}, errors.New("key set not available yet")
		}
		return jose.JSONWebKey{}, errKidUnknown
	}
	c.lastFetch = now
	keys, err := c.fetch(context.WithoutCancel(ctx))
	if err != nil {
		if ok {
			return k, nil // keep using a stale key rather than fail
		}
		if fetched.IsZero() {
			return jose.JSONWebKey{}, err
		}
		return jose.JSONWebKey{}, errKidUnknown
	}
	c.mu.Lock()
	c.keys, c.fetched = keys, now
	c.mu.Unlock()
	k, ok = keys[kid]
	if !ok {
		return jose.JSONWebKey{}, errKidUnknown
	}
	return k, nil
}

// fetch downloads and filters the key set. Errors name the URL, not content.
func (c *jwksCache) fetch(ctx context.Context) (map[string]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", c.url, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := c.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", c.url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch JWKS %s: status %d", c.url, resp.StatusCode)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: not a JWK Set", c.url)
	}
	keys := map[string]jose.JSONWebKey{}
	for _, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil || !usableExternalKey(k) {
			continue
		}
		if _, dup := keys[k.KeyID]; dup {
			continue // ambiguous kid: keep the first
		}
		keys[k.KeyID] = k
	}
	return keys, nil
}

// verifyExternal verifies a token from a configured external issuer.
func (s *Server) verifyExternal(ctx context.Context, tok *jwt.JSONWebToken) (*Principal, *Failure) {
	h := tok.Headers[0]
	var unverified struct {
		Issuer string `json:"iss"`
	}
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil {
		return nil, invalidToken("malformed", "the access token is malformed", "")
	}
	iss := s.external[unverified.Issuer]
	if iss == nil {
		return nil, invalidToken("iss-unknown", "the access token's issuer is not accepted", "")
	}
	if h.KeyID == "" {
		return nil, invalidToken("kid-missing", "the access token has no kid", "")
	}
	key, err := iss.keys.key(ctx, h.KeyID)
	if errors.Is(err, errKidUnknown) {
		return nil, invalidToken("kid-unknown", "the access token's signing key is not known", "")
	}
	if err != nil {
		return nil, &Failure{Status: http.StatusServiceUnavailable, Code: CodeTemporarilyUnavailable,
			Description: "the access token cannot be verified now; retry later", Reason: "jwks-unavailable", Err: err}
	}
	if key.Algorithm != "" && key.Algorithm != h.Algorithm {
		return nil, invalidToken("signature-invalid", "the access token's signature is invalid", "")
	}
	var c jwt.Claims
	var raw map[string]json.RawMessage
	if err := tok.Claims(key.Key, &c, &raw); err != nil {
		return nil, invalidToken("signature-invalid", "the access token's signature is invalid", "")
	}
	if c.Issuer != iss.issuer {
		return nil, invalidToken("iss-unknown", "the access token's issuer is not accepted", "")
	}
	clientID := firstString(raw, "client_id", "azp", "sub")
	// A failure from here on names the issuer's client (Principal.Key).
	invalid := func(reason, desc, clientID string) *Failure {
		f := invalidToken(reason, desc, clientID)
		if clientID != "" {
			f.Issuer = iss.issuer
		}
		return f
	}
	if !c.Audience.Contains(iss.audience) {
		return nil, invalid("aud-mismatch", "the access token's audience is not this gateway", clientID)
	}
	if f := checkTimes(c, s.now(), clientID, clockSkew); f != nil { // the issuer's clock is not the gateway's
		if clientID != "" {
			f.Issuer = iss.issuer
		}
		return nil, f
	}
	if clientID == "" {
		return nil, invalid("client-missing", "the access token names no client", "")
	}
	tenant := firstString(raw, iss.tenantClaim)
	if tenant == "" {
		return nil, invalid("tenant-missing", "the access token names no tenant", clientID)
	}
	if search.Reserved(tenant) {
		return nil, invalid("tenant-reserved", "the access token's tenant is reserved (a tenant begins with \"*\" only as \"*\", every tenant)", clientID)
	}
	if iss.tenants != nil && !iss.tenants[tenant] || tenant == search.AllTenants && iss.tenants == nil {
		// Every tenant ("*") only from an issuer whose tenants name it:
		// an issuer without the list may name any one tenant, never all.
		return nil, invalid("tenant-not-allowed", "the access token's tenant is not accepted from this issuer", clientID)
	}
	return &Principal{
		ClientID: clientID,
		Tenant:   tenant,
		Scopes:   grant(claimScopes(raw[iss.scopeClaim]), iss.scopes),
		Issuer:   iss.issuer,
		External: true,
	}, nil
}

// firstString returns the first of the named claims that is a non-empty
// string.
func firstString(raw map[string]json.RawMessage, names ...string) string {
	for _, n := range names {
		var s string
		if json.Unmarshal(raw[n], &s) == nil && s != "" {
			return s
		}
	}
	return ""
}

// claimScopes parses a scope claim: a space-separated string or an array of
// strings. Anything else grants nothing.
func claimScopes(raw json.RawMessage) Scopes {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return ParseScopes(s)
	}
	var list []string
	if json.Unmarshal(raw, &list) == nil {
		var out Scopes
		for _, item := range list {
			if sc, err := parseAny(item); err == nil {
				out.add(sc)
			}
		}
		return out
	}
	return Scopes{}
}
