package telemetry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Response headers set by ServerHandler.
const (
	// TraceResponseHeader carries the server span as
	// "00-<trace-id>-<span-id>-<trace-flags>" (W3C Trace Context Level 2).
	TraceResponseHeader = "traceresponse"
	// RequestIDHeader carries the request id: the caller's own X-Request-Id
	// when it is safe to echo, the trace id otherwise.
	RequestIDHeader = "X-Request-Id"
)

// HealthPath is not traced by ServerHandler.
const HealthPath = "/healthz"

// maxRequestIDLen is the longest caller X-Request-Id that is echoed.
const maxRequestIDLen = 64

// routeHolder is the per-request mutable slot the router fills once it has
// matched a route.
type routeHolder struct {
	mu    sync.Mutex
	route string
}

type routeKey struct{}

// SetRoute records the matched route template (for example
// "/fhir/Patient/:id", never a concrete path) for the request whose context
// is ctx. The router calls it after routing; ServerHandler then names the
// server span "METHOD template" and sets http.route. It is a no-op outside
// ServerHandler.
func SetRoute(ctx context.Context, template string) {
	if h, ok := ctx.Value(routeKey{}).(*routeHolder); ok {
		h.mu.Lock()
		h.route = template
		h.mu.Unlock()
	}
}

// RouteFromContext returns the template recorded with SetRoute, or "".
func RouteFromContext(ctx context.Context) string {
	if h, ok := ctx.Value(routeKey{}).(*routeHolder); ok {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.route
	}
	return ""
}

// RouteOf returns the template recorded with SetRoute for r; it is the
// routeOf callback ServerHandler uses when given nil.
func RouteOf(r *http.Request) string { return RouteFromContext(r.Context()) }

// ServerHandler instruments h with a server span per request (except
// HealthPath) and the otelhttp request metrics, using t's providers and
// propagator:
//
//   - an incoming W3C traceparent continues the caller's trace;
//   - the span is named "METHOD route" once the inner handler returns, with
//     the route template from routeOf (RouteOf when nil), and http.route is
//     set on the span and the request metrics; without a route the span is
//     named after the method only, never after the path;
//   - every response carries TraceResponseHeader (when a span exists) and
//     RequestIDHeader, set before h runs.
func ServerHandler(h http.Handler, t *Telemetry, routeOf func(*http.Request) string) http.Handler {
	if routeOf == nil {
		routeOf = RouteOf
	}
	route := func(r *http.Request) string {
		if s := routeOf(r); s != "" {
			return s
		}
		return patternRoute(r.Pattern) // set by http.ServeMux
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		sc := trace.SpanContextFromContext(ctx)
		hdr := w.Header()
		if sc.IsValid() {
			hdr.Set(TraceResponseHeader, traceResponse(sc))
		}
		hdr.Set(RequestIDHeader, requestID(r, sc))

		h.ServeHTTP(w, r)

		rt := route(r)
		if rt == "" {
			return
		}
		span := trace.SpanFromContext(ctx)
		span.SetName(spanName(r.Method, rt))
		span.SetAttributes(semconv.HTTPRoute(rt))
		if l, ok := otelhttp.LabelerFromContext(ctx); ok {
			l.Add(semconv.HTTPRoute(rt))
		}
	})
	traced := otelhttp.NewHandler(inner, "http.server",
		otelhttp.WithTracerProvider(t.TracerProvider()),
		otelhttp.WithMeterProvider(t.MeterProvider()),
		otelhttp.WithPropagators(t.Propagator()),
		// Called at span start and, when a ServeMux set r.Pattern, again
		// after the handler: it must agree with the name set above.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return spanName(r.Method, route(r))
		}),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.URL.Path != HealthPath }),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), routeKey{}, &routeHolder{})
		traced.ServeHTTP(w, r.WithContext(ctx))
	})
}

// ClientTransport instruments base (http.DefaultTransport when nil) with a
// client span per request named after the method, the otelhttp client
// metrics, and injection of traceparent (and baggage) into outbound requests.
// The full URL otelhttp records is removed by the PHI filter; server.address
// and server.port of the destination are kept.
func ClientTransport(base http.RoundTripper, t *Telemetry) http.RoundTripper {
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(t.TracerProvider()),
		otelhttp.WithMeterProvider(t.MeterProvider()),
		otelhttp.WithPropagators(t.Propagator()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return spanName(r.Method, "")
		}),
	)
}

// TraceID returns the hex trace id of the span in ctx, or "".
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// spanName returns "METHOD route" (or "METHOD"), with methods outside the
// standard set replaced by "HTTP" so that arbitrary client text never
// becomes a span name.
func spanName(method, route string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
	default:
		method = "HTTP"
	}
	if route == "" {
		return method
	}
	return method + " " + route
}

// patternRoute extracts the path of an http.ServeMux pattern
// ("[METHOD ][HOST]/path").
func patternRoute(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i+1:], " \t")
	}
	if j := strings.IndexByte(pattern, '/'); j >= 0 {
		return pattern[j:]
	}
	return ""
}

func traceResponse(sc trace.SpanContext) string {
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String()
}

// requestID echoes a syntactically safe caller X-Request-Id (1-64 characters
// of [A-Za-z0-9._-]); otherwise it returns the trace id, or a random id when
// the request is not traced.
func requestID(r *http.Request, sc trace.SpanContext) string {
	if id := r.Header.Get(RequestIDHeader); safeRequestID(id) {
		return id
	}
	if sc.HasTraceID() {
		return sc.TraceID().String()
	}
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

func safeRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}
