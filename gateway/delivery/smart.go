package delivery

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// SMART Backend Services constants.
const (
	algRS384 = string(jose.RS384)
	algES384 = string(jose.ES384)
	// ClientAssertionType is the client_assertion_type of the token
	// request.
	ClientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime keeps exp within the five minutes SMART allows.
	assertionLifetime = 4 * time.Minute
	// defaultTokenLifetime is assumed when expires_in is missing.
	defaultTokenLifetime = 5 * time.Minute
	// refreshMargin: a token is renewed this long before it expires (at
	// most a tenth of its lifetime).
	refreshMargin = 30 * time.Second
)

// tokenSource obtains and caches SMART Backend Services access tokens.
type tokenSource struct {
	cfg    SMART
	signer jose.Signer // the client assertion's: alg, kid and typ JWT
	c      *Client     // its transport, clock and timeout; not its auth
	// sem serialises fetches (one token request at a time) and guards
	// the fields below.
	sem       chan struct{}
	tokenURL  string // configured or discovered
	tok       string
	refreshAt time.Time
}

func newTokenSource(cfg SMART, c *Client) (*tokenSource, error) {
	data := []byte(cfg.PrivateKeyPEM)
	if cfg.PrivateKeyFile != "" {
		var err error
		if data, err = os.ReadFile(cfg.PrivateKeyFile); err != nil {
			// The path and the system's reason, never the content.
			return nil, fmt.Errorf("smart: privateKeyFile: cannot read the private key file: %w", err)
		}
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, err
	}
	alg, err := KeyAlg(key, cfg.Alg)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: key, KeyID: cfg.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("smart: private key: cannot sign %s with it", alg)
	}
	return &tokenSource{cfg: cfg, signer: signer, c: c, sem: make(chan struct{}, 1), tokenURL: cfg.TokenURL}, nil
}

// ParsePrivateKey reads the first private key PEM block (PKCS#8, SEC 1 or
// PKCS#1), as the SMART client of a destination and the CLI's client
// token read their key. Errors never contain key material.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("smart: private key: no PEM private key block (want -----BEGIN PRIVATE KEY-----)")
		}
		if _, enc := block.Headers["Proc-Type"]; enc || block.Type == "ENCRYPTED PRIVATE KEY" {
			return nil, errors.New("smart: private key: encrypted keys are not supported; decrypt it first (openssl pkcs8 -topk8 -nocrypt)")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("smart: private key: cannot parse the %s block", block.Type)
		}
		if s, ok := key.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("smart: private key: unsupported key type")
	}
}

// KeyAlg checks key against the configured alg (or picks one by type,
// want ""): RS384 for an RSA key of 2048 bits or more, ES384 for a P-384
// EC key.
func KeyAlg(key crypto.Signer, want string) (string, error) {
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if want != "" && want != algRS384 {
			return "", fmt.Errorf("smart: alg %s does not match an RSA key (use RS384)", want)
		}
		if k.N.BitLen() < 2048 {
			return "", errors.New("smart: RSA key shorter than 2048 bits")
		}
		return algRS384, nil
	case *ecdsa.PrivateKey:
		if want != "" && want != algES384 {
			return "", fmt.Errorf("smart: alg %s does not match an EC key (use ES384)", want)
		}
		if k.Curve.Params().Name != "P-384" {
			return "", errors.New("smart: ES384 needs a P-384 key")
		}
		return algES384, nil
	}
	return "", errors.New("smart: private key: want an RSA or a P-384 EC key")
}

// token implements authorizer: the cached token, or a new one.
func (s *tokenSource) token(ctx context.Context) (string, error) {
	select {
	case s.sem <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-s.sem }()
	now := s.c.clock.Now()
	if s.tok != "" && now.Before(s.refreshAt) {
		return s.tok, nil
	}
	tok, life, err := s.fetch(ctx, now)
	if err != nil {
		return "", err
	}
	s.tok, s.refreshAt = tok, now.Add(life-min(refreshMargin, life/10))
	return tok, nil
}

// invalidate implements authorizer.
func (s *tokenSource) invalidate(tok string) bool {
	s.sem <- struct{}{}
	defer func() { <-s.sem }()
	if s.tok == tok {
		s.tok = ""
	}
	return true
}

// oauthCode keeps an OAuth error code printable when it is one.
var oauthCode = regexp.MustCompile(`^[a-z_]{1,40}$`)

// fetch runs the client_credentials grant. Errors are *netError with
// reasons naming no token, key or assertion.
func (s *tokenSource) fetch(ctx context.Context, now time.Time) (string, time.Duration, error) {
	authErr := func(format string, args ...any) error {
		return &netError{reason: "auth: " + fmt.Sprintf(format, args...), destWide: true}
	}
	tokenURL, err := s.endpoint(ctx)
	if err != nil {
		return "", 0, err
	}
	assertion, err := s.assertion(now, tokenURL)
	if err != nil {
		return "", 0, authErr("cannot sign the client assertion")
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {s.cfg.Scope},
		"client_assertion_type": {ClientAssertionType},
		"client_assertion":      {assertion},
	}
	hdr := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}}
	resp, err := s.c.exchange(ctx, http.MethodPost, tokenURL, []byte(form.Encode()), hdr, "")
	if err != nil {
		return "", 0, authErr("token endpoint: %s", describe(err).reason)
	}
	var body struct {
		AccessToken string          `json:"access_token"`
		TokenType   string          `json:"token_type"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
	}
	jsonErr := json.Unmarshal(resp.body, &body)
	if resp.status != http.StatusOK {
		code := ""
		if jsonErr == nil && oauthCode.MatchString(body.Error) {
			code = " (" + body.Error + ")"
		}
		return "", 0, authErr("token endpoint answered http %d%s", resp.status, code)
	}
	switch {
	case jsonErr != nil:
		return "", 0, authErr("token response is not JSON")
	case body.AccessToken == "":
		return "", 0, authErr("token response has no access_token")
	case !strings.EqualFold(body.TokenType, "bearer"):
		return "", 0, authErr("token type is not bearer")
	}
	life := defaultTokenLifetime
	if secs, err := strconv.ParseFloat(strings.Trim(string(body.ExpiresIn), `"`), 64); err == nil && secs > 0 {
		life = time.Duration(min(secs, 86400) * float64(time.Second))
	}
	return body.AccessToken, life, nil
}

// endpoint returns the token URL: configured, or discovered once from the
// base's .well-known/smart-configuration. The discovered URL is the one URL
// taken from a response: only the signed assertion (whose aud is that URL)
// is sent there, never a record.
func (s *tokenSource) endpoint(ctx context.Context) (string, error) {
	if s.tokenURL != "" {
		return s.tokenURL, nil
	}
	fail := func(reason string) error {
		return &netError{reason: "auth: smart-configuration: " + reason, destWide: true}
	}
	resp, err := s.c.exchange(ctx, http.MethodGet, s.c.url(".well-known/smart-configuration"), nil,
		http.Header{"Accept": {"application/json"}}, "")
	if err != nil {
		return "", fail(describe(err).reason)
	}
	if resp.status != http.StatusOK {
		return "", fail("http " + strconv.Itoa(resp.status))
	}
	var conf struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if json.Unmarshal(resp.body, &conf) != nil {
		return "", fail("not JSON")
	}
	if checkEndpointURL(conf.TokenEndpoint) != nil {
		return "", fail("no usable https token_endpoint")
	}
	s.tokenURL = conf.TokenEndpoint
	return s.tokenURL, nil
}

// assertion returns the signed JWT client assertion (RFC 7523, as SMART
// Backend Services profiles it): iss and sub the client id, aud the token
// endpoint, a fresh jti, exp within five minutes.
func (s *tokenSource) assertion(now time.Time, aud string) (string, error) {
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	return jwt.Signed(s.signer).Claims(jwt.Claims{
		Issuer:   s.cfg.ClientID,
		Subject:  s.cfg.ClientID,
		Audience: jwt.Audience{aud}, // one audience is a string
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       hex.EncodeToString(jti[:]),
	}).Serialize()
}
