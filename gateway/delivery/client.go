package delivery

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// maxResponse is the most of a response body the client reads.
const maxResponse = 16 << 20

// ClientOptions are the gateway-wide settings of a Client.
type ClientOptions struct {
	// WrapTransport, when set, wraps the client's transport (e.g. with
	// otelhttp, which then also propagates traceparent).
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Clock is used for rate limiting, token lifetimes and JWT times
	// (default: the system clock).
	Clock Clock
	// UserAgent is sent with every request (default "ketamine-gateway").
	UserAgent string
}

// Client talks to one destination: its FHIR base, and its token endpoint
// for SMART Backend Services. It is safe for concurrent use.
type Client struct {
	dest  Destination // with defaults
	base  *url.URL
	http  *http.Client
	auth  authorizer // nil: no Authorization header
	limit *limiter
	clock Clock
	ua    string
}

// authorizer supplies bearer tokens.
type authorizer interface {
	// token returns the token to send.
	token(ctx context.Context) (string, error)
	// invalidate drops tok after a 401 and reports whether asking again
	// may give a different one.
	invalidate(tok string) bool
}

type staticToken string

func (s staticToken) token(context.Context) (string, error) { return string(s), nil }
func (staticToken) invalidate(string) bool                  { return false }

// NewClient validates d, loads its TLS files and key, and returns its
// Client.
func NewClient(d Destination, opts ClientOptions) (*Client, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	d = d.withDefaults()
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "ketamine-gateway"
	}
	base, _ := url.Parse(d.BaseURL) // checked by Validate
	tlsConf, err := tlsConfig(d.TLS)
	if err != nil {
		return nil, fmt.Errorf("destination %q: tls: %w", d.Name, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsConf
	tr.MaxIdleConnsPerHost = d.Concurrency + 2
	var rt http.RoundTripper = tr
	if opts.WrapTransport != nil {
		rt = opts.WrapTransport(rt)
	}
	c := &Client{
		dest:  d,
		base:  base,
		http:  &http.Client{Transport: rt, CheckRedirect: checkRedirect},
		limit: newLimiter(opts.Clock, d.RateLimit, d.Burst),
		clock: opts.Clock,
		ua:    opts.UserAgent,
	}
	switch d.Auth.Type {
	case AuthBearer:
		c.auth = staticToken(d.Auth.Token)
	case AuthSMARTBackend:
		ts, err := newTokenSource(d.Auth.SMART, c)
		if err != nil {
			return nil, fmt.Errorf("destination %q: %w", d.Name, err)
		}
		c.auth = ts
	}
	return c, nil
}

// Destination returns the client's destination, with defaults applied.
func (c *Client) Destination() Destination { return c.dest }

func tlsConfig(t TLS) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.caFile: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s: no PEM certificate", t.CAFile)
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		// A file that cannot be read: its setting, path and the system's
		// reason; one that does not parse: never its content.
		certPEM, err := os.ReadFile(t.CertFile)
		if err != nil {
			return nil, fmt.Errorf("tls.certFile: %w", err)
		}
		keyPEM, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.keyFile: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, errors.New("client certificate: tls.certFile and tls.keyFile are not a PEM certificate and its key")
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// checkRedirect follows a redirect only for GET and HEAD, to the same
// scheme and host, at most twice; otherwise the 3xx answer is returned.
func checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if len(via) > 2 || (req.Method != http.MethodGet && req.Method != http.MethodHead) ||
		req.URL.Scheme != first.Scheme || req.URL.Host != first.Host {
		return http.ErrUseLastResponse
	}
	return nil
}

// response is a read HTTP answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// netError is a failed exchange. Its message is a PHI- and secret-free
// reason; the cause (which may name URLs with identifiers) is kept for
// errors.Is and never printed.
type netError struct {
	reason   string
	destWide bool // the destination as a whole is unreachable
	cause    error
	status   int // the HTTP status of an answer that failed after its status line, else 0
}

func (e *netError) Error() string { return e.reason }

// outage tells a network failure of an EHR down or overloaded (no
// connection, a timeout, a reset) from a configuration problem (TLS,
// authorization).
func (e *netError) outage() bool {
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var netErr net.Error
	c := e.cause
	return c != nil && (errors.Is(c, syscall.ECONNREFUSED) || errors.Is(c, syscall.ECONNRESET) || errors.Is(c, context.DeadlineExceeded) ||
		errors.Is(c, io.EOF) || errors.Is(c, io.ErrUnexpectedEOF) || errors.As(c, &dnsErr) ||
		(errors.As(c, &netErr) && netErr.Timeout()) || (errors.As(c, &opErr) && opErr.Op == "dial" && !strings.HasPrefix(e.reason, "tls")))
}
func (e *netError) Unwrap() error { return e.cause }

// describe turns a transport error into a netError.
func describe(err error) *netError {
	var ne *netError
	if errors.As(err, &ne) {
		return ne
	}
	e := &netError{reason: "network error", cause: err}
	var (
		dnsErr  *net.DNSError
		opErr   *net.OpError
		tlsErr  *tls.CertificateVerificationError
		unkAuth x509.UnknownAuthorityError
		hostErr x509.HostnameError
		invErr  x509.CertificateInvalidError
		recErr  tls.RecordHeaderError
		netErr  net.Error
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		e.reason = "timeout"
	case errors.Is(err, context.Canceled):
		e.reason = "cancelled"
	case errors.Is(err, syscall.ECONNREFUSED):
		e.reason, e.destWide = "connection refused", true
	case errors.As(err, &dnsErr):
		e.reason, e.destWide = "dns lookup failed", true
	case errors.As(err, &hostErr):
		// Names of the EHR's certificate and host: no PHI, and what the
		// engineer needs to tell a wrong name from a missing CA.
		e.reason, e.destWide = fmt.Sprintf("tls: the certificate is for %s, not %s (the base URL must use a name the certificate holds)",
			certNames(hostErr.Certificate), hostErr.Host), true
	case errors.As(err, &unkAuth):
		e.reason, e.destWide = "tls: the certificate is signed by an unknown authority (set tls.caFile to the CA that signed it)", true
	case errors.As(err, &invErr) && invErr.Reason == x509.Expired && invErr.Cert != nil:
		e.reason, e.destWide = "tls: the certificate has expired or is not yet valid (valid from "+
			invErr.Cert.NotBefore.UTC().Format(time.RFC3339)+" to "+invErr.Cert.NotAfter.UTC().Format(time.RFC3339)+")", true
	case errors.As(err, &tlsErr), errors.As(err, &invErr):
		e.reason, e.destWide = "tls: certificate not trusted", true
	case errors.As(err, &recErr):
		e.reason, e.destWide = "tls: the server did not answer TLS (is it http? then the base URL is http://)", true
	case errors.As(err, &netErr) && netErr.Timeout():
		e.reason = "timeout"
	case errors.Is(err, syscall.ECONNRESET):
		e.reason = "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		e.reason = "connection closed before the response"
	case errors.As(err, &opErr) && opErr.Op == "dial":
		e.reason, e.destWide = "connection failed", true
	}
	return e
}

// url returns the absolute URL of rel (already checked by checkRelative)
// under the base; "" is the base itself.
func (c *Client) url(rel string) string {
	if rel == "" {
		return c.dest.BaseURL
	}
	path, query, ok := strings.Cut(rel, "?")
	if !ok {
		return c.dest.BaseURL + "/" + path
	}
	return c.dest.BaseURL + "/" + path + "?" + escapeQuery(query)
}

// escapeQuery percent-encodes the bytes of a query that RFC 3986 does not
// allow raw (such as the '|' of token searches, which some servers
// reject), keeping existing escapes.
func escapeQuery(q string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(q); i++ {
		ch := q[i]
		switch {
		case ch >= 'a' && ch <= 'z', ch >= 'A' && ch <= 'Z', ch >= '0' && ch <= '9',
			strings.IndexByte("-._~!$&'()*,;=:@/?%", ch) >= 0:
			b.WriteByte(ch)
		default:
			b.WriteByte('%')
			b.WriteByte(hex[ch>>4])
			b.WriteByte(hex[ch&15])
		}
	}
	return b.String()
}

// do sends one request to the destination: rate limited, authorized,
// bounded by the destination's Timeout, and, after a 401 with a
// refreshable token, once more with a new token. Errors are *netError.
func (c *Client) do(ctx context.Context, method, target string, body []byte, hdr http.Header) (*response, error) {
	for try := 0; ; try++ {
		if err := c.limit.wait(ctx); err != nil {
			return nil, describe(err)
		}
		tok := ""
		if c.auth != nil {
			var err error
			if tok, err = c.auth.token(ctx); err != nil {
				return nil, describe(err)
			}
		}
		resp, err := c.exchange(ctx, method, target, body, hdr, tok)
		if err != nil {
			return nil, err
		}
		if resp.status == http.StatusUnauthorized && try == 0 && c.auth != nil && c.auth.invalidate(tok) {
			if n, ok := ctx.Value(refusedKey{}).(*atomic.Int32); ok {
				n.Add(1)
			}
			continue
		}
		return resp, nil
	}
}

// exchange is one HTTP round trip with the body read.
func (c *Client) exchange(ctx context.Context, method, target string, body []byte, hdr http.Header, tok string) (*response, error) {
	ctx, cancel := context.WithTimeout(ctx, c.dest.Timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return nil, &netError{reason: "invalid request", cause: err}
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/fhir+json")
	}
	if body != nil && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/fhir+json")
	}
	req.Header.Set("User-Agent", c.ua)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, describe(err)
	}
	defer resp.Body.Close()
	// One byte more than the limit tells an answer over it.
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		// The EHR answered, then the answer was cut off: say so, with the
		// status it sent (it may well have stored the record).
		how := "connection closed"
		if r := describe(err).reason; r == "timeout" || r == "cancelled" {
			how = r
		}
		return nil, &netError{reason: fmt.Sprintf("http %d, then the answer was cut off (%s)", resp.StatusCode, how),
			cause: err, status: resp.StatusCode}
	}
	if len(data) > maxResponse {
		return nil, &netError{reason: fmt.Sprintf("http %d, the answer exceeded the gateway's %d MiB limit", resp.StatusCode, maxResponse>>20),
			status: resp.StatusCode}
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

// maxRetryAfter caps a Retry-After in seconds (30 days).
const maxRetryAfter = 30 * 24 * 3600

// retryAfter parses a Retry-After header (delay-seconds or an HTTP date)
// relative to now; 0 when absent or invalid.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64); err == nil {
		return time.Duration(min(max(secs, 0), maxRetryAfter)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(0, t.Sub(now)), maxRetryAfter*time.Second)
	}
	return 0
}

// certNames lists the names a certificate is for (its DNS and IP subject
// alternative names, else its common name), at most five.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "other names"
	}
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = append(names, c.Subject.CommonName+" (common name only)")
	}
	if len(names) == 0 {
		return "no name"
	}
	if len(names) > 5 {
		names = append(names[:5], "...")
	}
	return strings.Join(names, ", ")
}
