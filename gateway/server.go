// Package gateway is the HTTP edge of the ketamine-therapy FHIR gateway. It
// only translates: a handler decodes the request into plain values, calls
// one method of the application (package app: the FHIR engine, ingest, the
// audit log, the operator's services) and encodes the result. One route
// table (routes.go) holds every fact about a route; one error handler
// turns every failure into a FHIR OperationOutcome with the status of its
// kind (outcome.Kind.HTTPStatus). echo and net/http server types never
// leave this package.
package gateway

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// DefaultMaxBodyBytes is the default request body limit (16 MiB: large
// enough for an EHR's bulk transaction Bundle).
const DefaultMaxBodyBytes = 16 << 20

// Config configures a Server. Zero values select the defaults.
type Config struct {
	// App is the application the edge serves (required).
	App *app.App
	// MaxBodyBytes limits request bodies (413 beyond it).
	MaxBodyBytes int64
	// MaxImportBytes limits the body of an asynchronous import
	// (DefaultMaxImportBytes by default).
	MaxImportBytes int64
	// Logger receives one line per request and internal errors; never PHI.
	Logger *slog.Logger
	// BaseURL is the public FHIR base (e.g. https://gw.example.org/fhir);
	// by default it is derived from each request.
	BaseURL string
	// Telemetry traces requests (otelhttp; traceresponse and X-Request-Id
	// headers). Nil: no tracing.
	Telemetry *telemetry.Telemetry
	// Metrics records validation failures (nil: none).
	Metrics *telemetry.Metrics
	// Auth authenticates and authorises requests (SMART Backend Services).
	// Nil is development mode: every request is an anonymous client with
	// every permission in the default tenant.
	Auth *auth.Server
	// AuthTokenURL is the token endpoint's public URL (the aud of client
	// assertions), published in /.well-known/smart-configuration.
	AuthTokenURL string
	// RateLimit is the sustained requests per second allowed per client
	// address and per authenticated client (default 100; bursts of twice
	// that). Negative disables rate limiting.
	RateLimit float64
	// MaxInFlight bounds the requests served at once (default 256); beyond
	// it requests wait briefly, then get 503 with Retry-After.
	MaxInFlight int
	// TrustedProxies are the load balancers and proxies in front of the
	// gateway: from a connection of theirs the client's address is the
	// nearest untrusted one in X-Forwarded-For, and the scheme of the FHIR
	// base (without BaseURL) is X-Forwarded-Proto's. Without them the
	// connection's address and scheme are the client's (the headers are
	// ignored). The address is what the rate limit counts and the audit
	// records.
	TrustedProxies []*net.IPNet
	// Console is the web console served under /console (nil: none). It
	// authenticates people and audits its pages itself.
	Console http.Handler
	// CORSOrigins are the browser origins (scheme://host[:port], or "*")
	// whose scripts may call the FHIR API (cors.go). None: no CORS.
	CORSOrigins []string
}

// Server serves the gateway's HTTP API.
type Server struct {
	handler                  http.Handler
	cfg                      Config
	app                      *app.App
	log                      *slog.Logger
	echo                     *echo.Echo
	routes                   map[string]*route // "METHOD template" -> its row of the route table
	ipLimiter, clientLimiter *auth.Limiter
	inFlight                 chan struct{}
	bodies                   *bodyBudget // the large request bodies in process (bodybudget.go)
	gzip                     gzipPool
	cors                     cors
}

// NewServer builds the HTTP handler over cfg.App. It does no I/O.
func NewServer(cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxImportBytes <= 0 {
		cfg.MaxImportBytes = DefaultMaxImportBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 100
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	s := &Server{cfg: cfg, app: cfg.App, log: cfg.Logger, inFlight: make(chan struct{}, cfg.MaxInFlight),
		bodies: newBodyBudget(cfg.MaxBodyBytes)}
	var err error
	if s.cors, err = newCORS(cfg.CORSOrigins); err != nil {
		return nil, err
	}
	if cfg.RateLimit > 0 {
		burst := max(int(2*cfg.RateLimit), 1)
		if s.ipLimiter, err = auth.NewLimiter(cfg.RateLimit, burst, 100000); err != nil {
			return nil, err
		}
		if s.clientLimiter, err = auth.NewLimiter(cfg.RateLimit, burst, 100000); err != nil {
			return nil, err
		}
	}
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	// The client's address and the scheme it used (for the base of
	// fullUrl, Location and of the references stored relative) come from
	// the connection; X-Forwarded-For and X-Forwarded-Proto (or -Protocol,
	// -Ssl, X-Url-Scheme) only from a trusted proxy. echo's default would
	// take the scheme headers from any loopback or private-network peer.
	e.IPExtractor = echo.ExtractIPDirect()
	e.SchemeExtractor = echo.ExtractSchemeDirect()
	if len(cfg.TrustedProxies) > 0 {
		trust := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range cfg.TrustedProxies {
			trust = append(trust, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(trust...)
		e.SchemeExtractor = echo.ExtractSchemeFromHeaders(trust...)
	}
	// Outermost first: the log line and the AuditEvent see the final
	// status, also of a panic; compression wraps every answer of a FHIR
	// route, the error handler's and the audit's replacement included.
	// Requests refused by the concurrency bound or the per-address rate
	// limit are logged but not audited: a flood must not become a flood of
	// database writes.
	e.Use(s.compress, s.logRequests, s.boundConcurrency, s.limitIP, s.auditRequests, s.recoverPanics, s.routeTemplate,
		s.checkRequest, s.authenticate, s.holdBodies, s.readOnlyOptions)
	s.echo = e
	s.handler = e
	if cfg.Telemetry != nil {
		s.handler = telemetry.ServerHandler(e, cfg.Telemetry, nil)
	}
	s.register()
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestTLS(r)
	operationPath(r.URL)
	if s.cors.handle(w, r) {
		return
	}
	s.handler.ServeHTTP(w, r)
}

// operationPath reads a path's "%24" as the "$" of an operation
// (/fhir/Patient/%24export): clients that escape every reserved character
// send it so, and the router matches the escaped path as it came. No FHIR
// type, id or version holds a "$", so nothing else changes meaning.
func operationPath(u *url.URL) {
	if u.RawPath == "" || !strings.Contains(u.RawPath, "%24") {
		return
	}
	u.RawPath = strings.ReplaceAll(u.RawPath, "%24", "$")
	if u.RawPath == u.Path {
		u.RawPath = ""
	}
}

// handleError is the one place that turns errors into responses: the
// status is the error's kind's, the body an OperationOutcome.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		err = fromEchoError(he, c.Request())
	}
	kind, issues := outcome.From(err)
	status := kind.HTTPStatus()
	if status >= 500 && outcome.ClientClosed(c.Request().Context(), err) {
		// The client went away, and the work it asked for stopped with
		// it: no fault of the gateway's, logged by the request's line
		// alone (INFO, status 499), and answered to nobody.
		if werr := writeResource(c, StatusClientClosed, outcome.Resource(issues)); werr != nil {
			s.log.Debug("write error response", "route", c.Path(), "error", werr.Error())
		}
		return
	}
	scopeOf(c).Rules = outcome.Rules(err)
	if kind == outcome.Invalid || kind == outcome.Unprocessable {
		for _, i := range issues {
			s.cfg.Metrics.ValidationFailure(c.Request().Context(), i.Rule)
		}
	}
	if kind == outcome.Unavailable || kind == outcome.Throttled {
		// Back-pressure and unavailable dependencies (store-busy,
		// store-unavailable, search-concurrency-limit, search-too-costly,
		// rate-limited, ...): what an operator alerts on.
		for _, i := range issues {
			s.cfg.Metrics.Refused(c.Request().Context(), i.Rule)
		}
	}
	var oe *outcome.Error
	if kind == outcome.MethodNotAllowed && c.Response().Header().Get("Allow") == "" {
		// RFC 9110 15.5.6: a 405 says what the target does allow.
		allow := s.allowed(c)
		if errors.As(err, &oe) && oe.Allow != nil {
			allow = oe.Allow
		}
		c.Response().Header().Set("Allow", strings.Join(allow, ", "))
	}
	switch {
	case errors.As(err, &oe) && oe.RetryAfter > 0:
		c.Response().Header().Set("Retry-After", strconv.Itoa(oe.RetryAfter))
	case kind == outcome.Unavailable:
		c.Response().Header().Set("Retry-After", "5")
	}
	var af *auth.Failure
	if errors.As(err, &af) && (af.Status == http.StatusUnauthorized || af.Status == http.StatusForbidden) {
		c.Response().Header().Set("WWW-Authenticate", af.WWWAuthenticate())
	}
	if status >= 500 {
		// The request's line (logRequests) says why it was not served.
		c.Set(errorClassKey, store.ErrorClass(err))
	}
	if status >= 500 && kind != outcome.Unavailable {
		// The route template and the error's class are logged, never its
		// text: a driver or library error may quote the values it failed
		// on. The trace id on the line leads to the request's spans.
		s.log.ErrorContext(c.Request().Context(), "request failed", "route", c.Path(), "method", c.Request().Method,
			"status", status, "error_class", store.ErrorClass(err))
	}
	if werr := writeResource(c, status, outcome.Resource(issues)); werr != nil {
		s.log.Error("write error response", "route", c.Path(), "error", werr.Error())
	}
}

// StatusClientClosed is the status a request is answered and logged with
// when its client went away before the answer (outcome.StatusClientClosed).
const StatusClientClosed = outcome.StatusClientClosed
