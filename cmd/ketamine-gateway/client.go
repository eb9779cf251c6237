package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
)

// The client command is a SMART Backend Services client's tooling (docs/
// security.md, "Your first token"): a key pair and its JWKS to register,
// and a token obtained with a signed client assertion. It is what a clinic's
// integration engineer needs before the first authenticated request, so
// that nobody has to write JOSE code to try the gateway.

var clientSubcommands = []string{"keygen", "token"}

const (
	// clientAssertionType is the client_assertion_type SMART Backend
	// Services uses (RFC 7523).
	clientAssertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
	// assertionLifetime keeps exp within the five minutes SMART allows,
	// with a minute to spare for a clock that is ahead of the gateway's.
	assertionLifetime = 4 * time.Minute
)

// clientCommand runs client keygen or client token.
func clientCommand(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) == 1 {
			fs, _ := clientFlags("client")
			printHelp(stdout, fs, "client")
			return errHelp
		}
		return usageError("client", "give a subcommand: %s", strings.Join(clientSubcommands, ", "))
	}
	sub, args := args[0], args[1:]
	if err := oneOf("client", "subcommand", sub, clientSubcommands); err != nil {
		return err
	}
	name := "client " + sub
	fs, f := clientFlags(name)
	pos, err := parse(fs, name, args, stdout)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageError(name, "takes no arguments")
	}
	if sub == "keygen" {
		return clientKeygen(name, f, stdout)
	}
	return clientToken(ctx, name, f, stdout)
}

// clientFlagValues are the flags of both subcommands (one help lists all).
type clientFlagValues struct {
	out, jwks                      string
	key, clientID, tokenURL, scope string
	kid                            string
	bare, assertionOnly            bool
	timeout                        time.Duration
}

func clientFlags(name string) (*flag.FlagSet, *clientFlagValues) {
	fs := newFlags(name)
	f := &clientFlagValues{}
	fs.StringVar(&f.out, "out", "", "keygen: the private key `FILE` to write (PKCS #8 PEM, mode 0600; never overwritten)")
	fs.StringVar(&f.jwks, "jwks", "", "keygen: the public key set `FILE` to write, to register as the client's jwksFile (or paste as its jwks)")
	fs.StringVar(&f.key, "key", "", "token: the client's private key `FILE` (PEM: EC P-384 for ES384, or RSA of 2048 bits or more for RS384)")
	fs.StringVar(&f.clientID, "client-id", "", "token: the client's id as registered in auth.clients (the assertion's iss and sub)")
	fs.StringVar(&f.tokenURL, "token-url", "", "token: the gateway's token endpoint, exactly its auth.tokenUrl (the assertion's aud)")
	fs.StringVar(&f.scope, "scope", "system/*.rs", "token: the SMART scopes to ask for, space-separated")
	fs.StringVar(&f.kid, "kid", "", "the key id (default: the key's JWK thumbprint, RFC 7638, as keygen writes it)")
	fs.BoolVar(&f.bare, "bare", false, "token: print only the access token (for TOKEN=$(...) in a shell)")
	fs.BoolVar(&f.assertionOnly, "assertion-only", false, "token: print the signed client assertion and send nothing (to post it yourself)")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "token: how long to wait for the token endpoint")
	return fs, f
}

// clientKeygen writes a new P-384 key pair: the private key PEM (0600)
// and the JWKS of its public key, kid its thumbprint.
func clientKeygen(name string, f *clientFlagValues, stdout io.Writer) error {
	switch {
	case f.out == "":
		return usageError(name, "--out FILE is required: where to write the private key")
	case f.jwks == "":
		return usageError(name, "--jwks FILE is required: where to write the public key set to register")
	case f.out == f.jwks:
		return usageError(name, "--out and --jwks name the same file: the private key and the public key set go to two files")
	}
	key, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		return fmt.Errorf("%s: generate the key: %w", name, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("%s: encode the key: %w", name, err)
	}
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: string(jose.ES384), Use: "sig"}
	if jwk.KeyID, err = thumbprint(&key.PublicKey); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if f.kid != "" {
		jwk.KeyID = f.kid
	}
	set, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}, "", "  ")
	if err != nil {
		return fmt.Errorf("%s: encode the key set: %w", name, err)
	}
	// Neither file is overwritten: a key pair replaced by mistake locks
	// its client out (or, for the JWKS, lets a wrong key in).
	for _, p := range []string{f.out, f.jwks} {
		if _, err := os.Lstat(p); err == nil {
			return usageError(name, "%s exists already; remove it or choose another file (a key is never overwritten)", p)
		}
	}
	if err := writeNew(f.out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return usageError(name, "--out: %v", err)
	}
	if err := writeNew(f.jwks, append(set, '\n'), 0o644); err != nil {
		os.Remove(f.out) // no private key without its public half registered somewhere
		return usageError(name, "--jwks: %v", err)
	}
	_, err = fmt.Fprintf(stdout, "wrote the private key to %s (keep it secret) and its public key set to %s (kid %s):\n"+
		"register the JWKS as the client's jwksFile in auth.clients (docs/security.md, \"Your first token\")\n",
		f.out, f.jwks, jwk.KeyID)
	return err
}

// writeNew creates path (which must not exist) with perm and writes b.
func writeNew(path string, b []byte, perm os.FileMode) error {
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return fmt.Errorf("cannot create %s: %v", path, pe.Err)
		}
		return err
	}
	if _, err := fh.Write(b); err != nil {
		fh.Close()
		os.Remove(path)
		return fmt.Errorf("cannot write %s: %v", path, err)
	}
	return fh.Close()
}

// thumbprint is the base64url SHA-256 JWK thumbprint (RFC 7638) of pub.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("key thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// clientToken signs a client assertion and exchanges it for an access
// token at --token-url, printing the token response (or only the token,
// or only the assertion).
func clientToken(ctx context.Context, name string, f *clientFlagValues, stdout io.Writer) error {
	switch {
	case f.key == "":
		return usageError(name, "--key FILE is required: the client's private key (ketamine-gateway client keygen writes one)")
	case f.clientID == "":
		return usageError(name, "--client-id is required: the client's id in the gateway's auth.clients")
	case f.tokenURL == "":
		return usageError(name, "--token-url is required: the gateway's auth.tokenUrl, e.g. https://gateway.example.org/auth/token")
	case f.bare && f.assertionOnly:
		return usageError(name, "--bare and --assertion-only exclude each other")
	}
	if u, err := url.Parse(f.tokenURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return usageError(name, "--token-url %q is not an http(s) URL; give the gateway's auth.tokenUrl", f.tokenURL)
	}
	pemBytes, err := os.ReadFile(f.key)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return usageError(name, "--key: cannot read %s: %v", f.key, err)
	}
	key, alg, err := signingKey(pemBytes)
	if err != nil {
		return usageError(name, "--key %s: %v", f.key, err)
	}
	kid := f.kid
	if kid == "" {
		if kid, err = thumbprint(key.Public()); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	assertion, err := signAssertion(key, alg, kid, f.clientID, f.tokenURL, time.Now())
	if err != nil {
		return fmt.Errorf("%s: sign the assertion: %w", name, err)
	}
	if f.assertionOnly {
		_, err := fmt.Fprintln(stdout, assertion)
		return err
	}
	form := url.Values{
		"grant_type":            {"client_credentials"},
		"scope":                 {f.scope},
		"client_assertion_type": {clientAssertionType},
		"client_assertion":      {assertion},
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return usageError(name, "--token-url: %v", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Close = true // one request: no idle connection left behind
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: the token endpoint could not be reached: %v; is the gateway running at --token-url?", name, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: reading the token response: %v", name, err)}
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	jsonErr := json.Unmarshal(body, &tok)
	if resp.StatusCode != http.StatusOK {
		if jsonErr == nil && tok.Error != "" {
			return &exitError{code: exitInvalid, msg: fmt.Sprintf("%s: the token endpoint refused: HTTP %d %s: %s%s",
				name, resp.StatusCode, tok.Error, tok.Description, tokenHint(tok.Error))}
		}
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: the token endpoint answered HTTP %d without an OAuth error; is --token-url the gateway's auth.tokenUrl?", name, resp.StatusCode)}
	}
	if jsonErr != nil || tok.AccessToken == "" {
		return &exitError{code: exitUnchecked, msg: fmt.Sprintf("%s: the token endpoint's answer holds no access_token; is --token-url the gateway's auth.tokenUrl?", name)}
	}
	if f.bare {
		_, err = fmt.Fprintln(stdout, tok.AccessToken)
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", strings.TrimRight(string(body), "\n"))
	return err
}

// tokenHint says what to check for an OAuth error code.
func tokenHint(code string) string {
	switch code {
	case "invalid_client":
		return "; check that --client-id is registered in auth.clients with this key's public key set (kid as keygen printed it), " +
			"that --token-url is exactly auth.tokenUrl and that the clocks agree (the gateway's log and AuditEvent name the reason)"
	case "invalid_scope":
		return "; ask --scope for scopes the client is registered for"
	}
	return ""
}

// signingKey reads the first private key of a PEM file and its SMART alg,
// as a destination's SMART client reads its own (delivery.ParsePrivateKey,
// delivery.KeyAlg).
func signingKey(data []byte) (crypto.Signer, jose.SignatureAlgorithm, error) {
	key, err := delivery.ParsePrivateKey(data)
	if err != nil {
		return nil, "", err
	}
	alg, err := delivery.KeyAlg(key, "")
	if err != nil {
		return nil, "", fmt.Errorf("%w (client keygen makes an ES384 P-384 key)", err)
	}
	return key, jose.SignatureAlgorithm(alg), nil
}

// signAssertion is the client assertion SMART Backend Services asks for:
// iss and sub the client id, aud the token URL, exp within five minutes, a
// unique jti; kid and typ JWT in the header.
func signAssertion(key crypto.Signer, alg jose.SignatureAlgorithm, kid, clientID, tokenURL string, now time.Time) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	var jti [16]byte
	if _, err := rand.Read(jti[:]); err != nil {
		return "", err
	}
	return jwt.Signed(signer).Claims(jwt.Claims{
		Issuer:   clientID,
		Subject:  clientID,
		Audience: jwt.Audience{tokenURL},
		Expiry:   jwt.NewNumericDate(now.Add(assertionLifetime)),
		IssuedAt: jwt.NewNumericDate(now),
		ID:       hex.EncodeToString(jti[:]),
	}).Serialize()
}
