package auth

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

const (
	// maxTokenTTL caps access token lifetime, per SMART's recommendation.
	maxTokenTTL = 5 * time.Minute
	// maxAssertionLifetime is how far in the future an assertion's exp may be.
	maxAssertionLifetime = 5 * time.Minute
	// clockSkew is tolerated between the gateway and its clients or issuers.
	clockSkew = 30 * time.Second
	// minSecretLen is the minimum HMAC key length, in bytes.
	minSecretLen = 32
	// defaultReplayEntries bounds the default in-memory replay cache.
	defaultReplayEntries = 100_000
)

// Server verifies client assertions, issues access tokens and authenticates
// API requests. It is safe for concurrent use.
type Server struct {
	tokenURL string
	clients  map[string]*registeredClient
	external map[string]*externalIssuer
	ttl      time.Duration
	secret   []byte
	replay   ReplayCache
	now      func() time.Time
	warnings []Warning
}

// Warning is a configuration NewServer accepts but the administrator
// should hear about at start: Client names the client, Message says what
// and what to do, NotGranted lists the scopes its tokens are not granted.
type Warning struct {
	Client     string
	Message    string
	NotGranted []string
}

// Warnings returns what NewServer noticed in the configuration: an
// all-tenant client registered with scopes it can never use (create,
// update or delete scopes, which its tokens are not granted) or with
// gateway/ingest, which serves it for dry runs only; a client whose
// granular scopes restrict a type's searches by different parameters
// (searchConflict; named without values).
func (s *Server) Warnings() []Warning { return s.warnings }

type registeredClient struct {
	id     string
	tenant string
	scopes Scopes
	keys   map[string]jose.JSONWebKey
}

// NewServer validates cfg and returns a Server. It returns an error, naming
// the offending client or issuer but never key material, if TokenURL is not
// an absolute https URL (or http on a loopback host), TokenTTL is negative or
// over 5 minutes, SigningSecret is set but shorter than 32 bytes, a client has
// no id, an id beginning "person:" (PersonPrefix) or containing "|" (KeySeparator), no tenant, a duplicate id, an unrecognised or empty scope list, or a
// key set that is missing, unreadable or holds a private, symmetric, short or
// unsupported key, a key without kid or a duplicate kid, or an external
// issuer lacks issuer, audience or scopes, repeats an issuer, names TokenURL
// as its issuer, or has a JWKS URL that is not https. It does not contact
// external issuers.
func NewServer(cfg Config) (*Server, error) {
	if cfg.TokenURL == "" {
		return nil, errors.New("auth config: tokenUrl is missing: set it to the gateway's token endpoint as clients " +
			"reach it, e.g. https://gateway.example/auth/token (it is the audience of their assertions)")
	}
	if err := checkTokenURL(cfg.TokenURL); err != nil {
		return nil, fmt.Errorf("auth config: tokenUrl: %w", err)
	}
	s := &Server{
		tokenURL: cfg.TokenURL,
		clients:  map[string]*registeredClient{},
		external: map[string]*externalIssuer{},
		ttl:      cfg.TokenTTL,
		secret:   cfg.SigningSecret,
		replay:   cfg.Replay,
		now:      cfg.Now,
	}
	if s.now == nil {
		s.now = time.Now
	}
	switch {
	case s.ttl == 0:
		s.ttl = maxTokenTTL
	case s.ttl < time.Second || s.ttl > maxTokenTTL:
		return nil, fmt.Errorf("auth config: tokenTTL %s: want between 1s and %s", s.ttl, maxTokenTTL)
	}
	switch {
	case s.secret == nil:
		s.secret = make([]byte, minSecretLen)
		if _, err := rand.Read(s.secret); err != nil {
			return nil, fmt.Errorf("auth config: generate signing secret: %w", err)
		}
	case len(s.secret) < minSecretLen:
		return nil, fmt.Errorf("auth config: signingSecret: %d bytes, want at least %d", len(s.secret), minSecretLen)
	default:
		s.secret = append([]byte(nil), s.secret...)
	}
	if s.replay == nil {
		s.replay = NewMemoryReplayCache(defaultReplayEntries, s.now)
	}
	if len(cfg.Clients) == 0 && len(cfg.External) == 0 {
		return nil, errors.New("auth config: no clients and no external issuers")
	}
	for i, c := range cfg.Clients {
		rc, err := newRegisteredClient(c)
		if err != nil {
			return nil, fmt.Errorf("auth config: client %d (%q): %w", i, c.ID, err)
		}
		if _, dup := s.clients[rc.id]; dup {
			return nil, fmt.Errorf("auth config: client %d: duplicate id %q", i, c.ID)
		}
		s.clients[rc.id] = rc
		if w, ok := allTenantWarning(rc, c.Scopes); ok {
			s.warnings = append(s.warnings, w)
		}
		if typ, params := rc.scopes.searchConflict(); typ != "" {
			s.warnings = append(s.warnings, Warning{Client: rc.id, Message: "a client's granular scopes restrict searches of " +
				typ + " by different search parameters (" + params + "), which the gateway cannot apply together to one " +
				"search: a token request that would grant them all is refused (invalid_scope); the client asks for " +
				"the restricted scopes of one parameter, or register restrictions of one parameter (docs/security.md)"})
		}
	}
	for i, e := range cfg.External {
		ei, err := newExternalIssuer(e, cfg.JWKSClient, s.now)
		if err != nil {
			return nil, fmt.Errorf("auth config: external issuer %d (%q): %w", i, e.Issuer, err)
		}
		if ei.issuer == s.tokenURL {
			return nil, fmt.Errorf("auth config: external issuer %d: issuer is the gateway's own tokenUrl", i)
		}
		if _, dup := s.external[ei.issuer]; dup {
			return nil, fmt.Errorf("auth config: external issuer %d: duplicate issuer %q", i, e.Issuer)
		}
		s.external[ei.issuer] = ei
	}
	return s, nil
}

// Registration returns the tenant and scopes registered client id has
// (the scopes its tokens are granted from); ok
// false when no client of that id is registered. A job's runner checks its
// owner with it (jobs.Registry).
func (s *Server) Registration(id string) (tenant string, scopes Scopes, ok bool) {
	c := s.clients[id]
	if c == nil {
		return "", Scopes{}, false
	}
	return c.tenant, c.scopes, true
}

// IsClientKey reports whether a principal's Key (a job's owner, an
// AuditEvent's client) names a registered client: not a console person
// (PersonPrefix), not an external issuer's client (issuer|id), not the
// development mode's anonymous caller ("").
func IsClientKey(key string) bool {
	return key != "" && !strings.HasPrefix(key, PersonPrefix) && !strings.Contains(key, KeySeparator)
}

func newRegisteredClient(c Client) (*registeredClient, error) {
	if c.ID == "" {
		return nil, errors.New("missing id")
	}
	if strings.HasPrefix(c.ID, PersonPrefix) {
		// The console's signed-in people are "person:<name>": a client of
		// such an id would be one of them (its jobs, its audit identity).
		return nil, fmt.Errorf("an id may not begin with %q: the console names signed-in people so", PersonPrefix)
	}
	if strings.Contains(c.ID, KeySeparator) {
		// An external issuer's client is "<issuer>|<id>" (Principal.Key):
		// a registered id of that form would be one of them.
		return nil, fmt.Errorf("an id may not contain %q: the gateway names external issuers' clients <issuer>%s<id>", KeySeparator, KeySeparator)
	}
	if c.Tenant == "" {
		return nil, errors.New("missing tenant")
	}
	if search.Reserved(c.Tenant) {
		// The all-tenant callers' AuditEvents are kept in such a tenant.
		return nil, fmt.Errorf("tenant %q is reserved: a tenant may begin with \"*\" only as \"*\" itself (every tenant)", c.Tenant)
	}
	scopes, err := configScopes(c.Scopes)
	if err != nil {
		return nil, err
	}
	keys, err := loadClientKeys(c)
	if err != nil {
		return nil, err
	}
	if c.Tenant == search.AllTenants {
		// It reads every tenant and writes none: its tokens grant only
		// what it can use (allTenantWarning tells the administrator).
		scopes, _ = readOnly(scopes)
	}
	return &registeredClient{id: c.ID, tenant: c.Tenant, scopes: scopes, keys: keys}, nil
}

// allTenantWarning is the warning about an all-tenant client registered
// with (configured) scopes it cannot use; ok false when there is none.
func allTenantWarning(rc *registeredClient, configured []string) (Warning, bool) {
	if rc.tenant != search.AllTenants {
		return Warning{}, false
	}
	all, _ := configScopes(configured) // parsed once already by newRegisteredClient
	_, dropped := readOnly(all)
	ingest := all.Has(ScopeIngest)
	if len(dropped) == 0 && !ingest {
		return Warning{}, false
	}
	msg := "an all-tenant client (tenant \"*\") reads every tenant and writes none"
	if len(dropped) > 0 {
		msg += ": its tokens are not granted the create, update and delete permissions it is registered with " +
			"(scopes_not_granted), only read and search"
	}
	if ingest {
		msg += "; its gateway/ingest serves only dry runs (POST /ingest/{kind}?dryRun=true): every record it sends to " +
			"be stored, one by one or by $import, is refused"
	}
	msg += "; register a client of the tenant to write (docs/security.md, Configuration)"
	return Warning{Client: rc.id, Message: msg, NotGranted: dropped}, true
}

// configScopes parses configured scopes strictly: a typo in the config file
// should stop the gateway, not silently grant less.
func configScopes(list []string) (Scopes, error) {
	var out Scopes
	if len(list) == 0 {
		return out, errors.New("no scopes")
	}
	for _, name := range list {
		if base, _, ok := strings.Cut(name, "?"); ok {
			sc, err := parseGranular(name)
			if err != nil {
				return out, fmt.Errorf("scope %q: %v", base+"?...", err)
			}
			out.add(sc)
			continue
		}
		sc, ok := parseScope(name)
		if !ok {
			return out, fmt.Errorf("unrecognised scope %q", name)
		}
		out.add(sc)
	}
	return out, nil
}

func checkTokenURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Host == "" || u.User != nil || u.Fragment != "" || u.RawQuery != "" {
		return errors.New("want an absolute URL without user info, query or fragment")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("http is only allowed on a loopback host; use https")
	}
	return errors.New("want an https URL")
}
