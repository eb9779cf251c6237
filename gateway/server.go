// Package gateway is the HTTP edge of the ketamine-therapy FHIR gateway:
// native record ingest, the FHIR API and health endpoints, with one error
// handler that answers every failure with a FHIR OperationOutcome. echo
// types never leave this package.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// DefaultMaxBodyBytes is the default request body limit (16 MiB: large
// enough for an EHR's bulk transaction Bundle).
const DefaultMaxBodyBytes = 16 << 20

// Config configures a Server. Zero values select the defaults.
type Config struct {
	// MaxBodyBytes limits request bodies (413 beyond it).
	MaxBodyBytes int64
	// IdentifierBase is the namespace of the identifier systems the
	// mappings mint (mapping.DefaultIdentifierBase if empty).
	IdentifierBase string
	// Logger receives one line per request and internal errors; never PHI.
	Logger *slog.Logger
	// Store holds resources. Without one, the FHIR API is not served and
	// ingest works in dry-run mode only.
	Store store.Store
	// BaseURL is the public FHIR base (e.g. https://gw.example.org/fhir);
	// by default it is derived from each request.
	BaseURL string
	// MaxBundleEntries limits transaction and batch Bundles (400 beyond).
	MaxBundleEntries int
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Routes are the delivery destinations: every stored native record
	// that a route accepts is enqueued for it in the same transaction.
	Routes []Route
	// Notify is called after records were enqueued (wakes the worker).
	Notify func()
	// Telemetry traces requests (otelhttp; traceresponse and X-Request-Id
	// headers). Nil: no tracing.
	Telemetry *telemetry.Telemetry
	// Metrics records ingest and validation counters (nil: none).
	Metrics *telemetry.Metrics
	// Instance names this gateway process in audit records (the observer);
	// "ketamine-gateway" by default.
	Instance string
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
	// nearest untrusted one in X-Forwarded-For. Without them the
	// connection's address is the client's (X-Forwarded-For is ignored).
	// The address is what the rate limit counts and the audit records.
	TrustedProxies []*net.IPNet
}

// Route is a delivery destination as the write path sees it.
type Route struct {
	Name string
	// Accepts reports whether records of kind from source go there.
	Accepts func(kind, source string) bool
	// AcceptsTenant reports whether records of a tenant go there (nil:
	// every tenant's).
	AcceptsTenant func(tenant string) bool
}

// notifyDelivery wakes the delivery worker, if any.
func (s *Server) notifyDelivery() {
	if s.cfg.Notify != nil {
		s.cfg.Notify()
	}
}

// Server serves the gateway's HTTP API.
type Server struct {
	handler                  http.Handler
	cfg                      Config
	store                    store.Store
	pipeline                 *Pipeline
	log                      *slog.Logger
	echo                     *echo.Echo
	ipLimiter, clientLimiter *auth.Limiter
	audits                   auditBatcher
	inFlight                 chan struct{}
	// noAudit switches the audit trail (AuditEvents and Provenance) off;
	// only the overhead benchmark sets it.
	noAudit bool
}

// NewServer builds the HTTP handler. It fails only if the embedded schemas
// do not compile, which the tests rule out.
func NewServer(cfg Config) (*Server, error) {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := NewPipeline(mapping.Options{IdentifierBase: cfg.IdentifierBase})
	if err != nil {
		return nil, err
	}
	if cfg.Instance == "" {
		cfg.Instance = "ketamine-gateway"
	}
	if cfg.MaxBundleEntries <= 0 {
		cfg.MaxBundleEntries = DefaultMaxBundleEntries
	}
	if cfg.RateLimit == 0 {
		cfg.RateLimit = 100
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	s := &Server{cfg: cfg, store: cfg.Store, pipeline: p, log: cfg.Logger, inFlight: make(chan struct{}, cfg.MaxInFlight)}
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
	e.IPExtractor = echo.ExtractIPDirect()
	if len(cfg.TrustedProxies) > 0 {
		trust := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
		for _, n := range cfg.TrustedProxies {
			trust = append(trust, echo.TrustIPRange(n))
		}
		e.IPExtractor = echo.ExtractIPFromXFFHeader(trust...)
	}
	// Outermost first: the log line and the AuditEvent see the final
	// status, also of a panic.
	// Requests refused by the concurrency bound or the per-address rate
	// limit are logged but not audited: a flood must not become a flood of
	// database writes.
	e.Use(s.logRequests, s.boundConcurrency, s.limitIP, s.auditRequests, s.recoverPanics, s.routeTemplate, s.authenticate)
	s.echo = e
	s.handler = e
	if cfg.Telemetry != nil {
		s.handler = telemetry.ServerHandler(e, cfg.Telemetry, nil)
	}
	s.routes()
	if s.store != nil {
		if err := s.seed(context.Background()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// handleError is the one place that turns errors into responses.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		err = fromEchoError(he)
	}
	status, issues := Outcome(err)
	rules := make([]string, 0, len(issues))
	for _, i := range issues {
		if i.Rule != "" && !slices.Contains(rules, i.Rule) {
			rules = append(rules, i.Rule)
		}
	}
	c.Set(failureKey, rules)
	if status == http.StatusBadRequest || status == http.StatusUnprocessableEntity {
		for _, i := range issues {
			s.cfg.Metrics.ValidationFailure(c.Request().Context(), i.Rule)
		}
	}
	var ge *Error
	switch {
	case errors.As(err, &ge) && ge.RetryAfter > 0:
		c.Response().Header().Set("Retry-After", strconv.Itoa(ge.RetryAfter))
	case status == http.StatusServiceUnavailable:
		c.Response().Header().Set("Retry-After", "5")
	}
	if f, ok := isAuthFailure(err); ok && (f.Status == http.StatusUnauthorized || f.Status == http.StatusForbidden) {
		c.Response().Header().Set("WWW-Authenticate", f.WWWAuthenticate())
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		// The route template and the error's class are logged, never its
		// text: a driver or library error may quote the values it failed
		// on. The trace id on the line leads to the request's spans.
		s.log.ErrorContext(c.Request().Context(), "request failed", "route", c.Path(), "method", c.Request().Method,
			"status", status, "error_class", errorClass(err))
	}
	if werr := writeResource(c, status, OperationOutcome(issues)); werr != nil {
		s.log.Error("write error response", "route", c.Path(), "error", werr.Error())
	}
}

// errorClass describes an error without its text: the sentinel errors it
// wraps and the Go types along its chain (types carry no values).
func errorClass(err error) string {
	var parts []string
	for _, sentinel := range []error{store.ErrUnavailable, store.ErrConflict, store.ErrNotFound, store.ErrGone,
		context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, sentinel) {
			parts = append(parts, sentinel.Error())
		}
	}
	var types []string
	for e := err; e != nil && len(types) < 8; e = errors.Unwrap(e) {
		types = append(types, fmt.Sprintf("%T", e))
	}
	parts = append(parts, strings.Join(types, " > "))
	return strings.Join(parts, "; ")
}

// fromEchoError converts echo's routing errors.
func fromEchoError(he *echo.HTTPError) *Error {
	switch he.Code {
	case http.StatusNotFound:
		return errorf(http.StatusNotFound, "not-found", "route-unknown", "no such endpoint")
	case http.StatusMethodNotAllowed:
		return errorf(http.StatusMethodNotAllowed, "not-supported", "method-not-allowed", "this endpoint does not support the method")
	case http.StatusRequestEntityTooLarge:
		return errorf(http.StatusRequestEntityTooLarge, "too-costly", "body-too-large", "the request body exceeds the size limit")
	default:
		if he.Code >= 400 && he.Code < 500 {
			return errorf(he.Code, "invalid", "http-error", http.StatusText(he.Code))
		}
		return &Error{Status: http.StatusInternalServerError, Issues: []Issue{{Severity: "fatal", Code: "exception", Rule: "internal",
			Message: "the gateway failed to process the request; the failure has been logged"}}}
	}
}
