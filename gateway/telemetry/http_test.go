package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/trace"
)

const (
	incomingTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	incomingSpanID  = "00f067aa0ba902b7"
	traceparent     = "00-" + incomingTraceID + "-" + incomingSpanID + "-01"
)

// routed stands in for the gateway router: it records the route template and
// checks that the response headers are already set when it runs.
func routed(t *testing.T, template string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if w.Header().Get(RequestIDHeader) == "" {
			t.Error("X-Request-Id not set before the handler ran")
		}
		if template != "" {
			SetRoute(r.Context(), template)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, "ok")
	})
}

func serve(h http.Handler, method, target string, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("User-Agent", "agent-"+phi)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestServerHandlerContinuesTraceAndNamesSpan(t *testing.T) {
	tel, spans, reader := NewForTest()
	shutdown(t, tel)
	h := ServerHandler(routed(t, "/fhir/Patient/:id"), tel, nil)

	rec := serve(h, http.MethodGet, "/fhir/Patient/"+phi+"?name="+phi, "traceparent", traceparent)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	s := spanNamed(t, spans, "GET /fhir/Patient/:id")
	mustNotContainPHI(t, spans.GetSpans())

	if got := s.SpanContext.TraceID().String(); got != incomingTraceID {
		t.Errorf("trace id %s, want the incoming %s", got, incomingTraceID)
	}
	if got := s.Parent.SpanID().String(); got != incomingSpanID {
		t.Errorf("parent span id %s, want %s", got, incomingSpanID)
	}
	if s.SpanKind != trace.SpanKindServer {
		t.Errorf("span kind %v", s.SpanKind)
	}
	want := "00-" + incomingTraceID + "-" + s.SpanContext.SpanID().String() + "-01"
	if got := rec.Header().Get(TraceResponseHeader); got != want {
		t.Errorf("traceresponse = %q, want %q", got, want)
	}
	if got := rec.Header().Get(RequestIDHeader); got != incomingTraceID {
		t.Errorf("X-Request-Id = %q, want the trace id", got)
	}
	attrs := attrMap(s.Attributes)
	if attrs["http.route"].AsString() != "/fhir/Patient/:id" ||
		attrs["http.request.method"].AsString() != "GET" ||
		attrs["http.response.status_code"].AsInt64() != 200 {
		t.Errorf("attributes = %v", s.Attributes)
	}
	for k := range attrs {
		if !AttributeAllowed(k) {
			t.Errorf("attribute %s exported", k)
		}
	}

	// The request metrics carry the route too, and nothing forbidden.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	mustNotContainPHI(t, rm)
	dur := findMetric(t, rm, "http.server.request.duration").Data.(metricdata.Histogram[float64])
	if len(dur.DataPoints) != 1 {
		t.Fatalf("datapoints = %+v", dur.DataPoints)
	}
	if v, _ := dur.DataPoints[0].Attributes.Value("http.route"); v.AsString() != "/fhir/Patient/:id" {
		t.Errorf("metric attributes = %v", dur.DataPoints[0].Attributes.ToSlice())
	}
}

func TestServerHandlerRequestID(t *testing.T) {
	tel, _, _ := NewForTest()
	shutdown(t, tel)
	h := ServerHandler(routed(t, "/x"), tel, nil)
	for _, tc := range []struct{ sent, want string }{
		{"req-123_abc.DEF", "req-123_abc.DEF"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("a", 65), incomingTraceID},
		{"has space", incomingTraceID},
		{"name=" + phi + ";", incomingTraceID},
	} {
		rec := serve(h, http.MethodGet, "/x", "traceparent", traceparent, RequestIDHeader, tc.sent)
		if got := rec.Header().Get(RequestIDHeader); got != tc.want {
			t.Errorf("sent %q: X-Request-Id = %q, want %q", tc.sent, got, tc.want)
		}
	}
}

func TestServerHandlerSpanNames(t *testing.T) {
	tel, spans, _ := NewForTest()
	shutdown(t, tel)

	// No route recorded: the method only, never the path.
	serve(ServerHandler(routed(t, ""), tel, nil), http.MethodPost, "/fhir/Patient/"+phi)
	spanNamed(t, spans, "POST")
	// Non-standard methods are not echoed.
	serve(ServerHandler(routed(t, ""), tel, nil), "PATIENT-"+phi, "/")
	spanNamed(t, spans, "HTTP")
	// A routeOf callback.
	serve(ServerHandler(routed(t, ""), tel, func(*http.Request) string { return "/cb" }), http.MethodGet, "/cb")
	spanNamed(t, spans, "GET /cb")
	// http.ServeMux patterns are used when no route was recorded.
	mux := http.NewServeMux()
	mux.Handle("GET /fhir/{type}/{id}", routed(t, ""))
	serve(ServerHandler(mux, tel, nil), http.MethodGet, "/fhir/Patient/"+phi)
	spanNamed(t, spans, "GET /fhir/{type}/{id}")
	mustNotContainPHI(t, spans.GetSpans())
}

func TestServerHandlerSkipsHealthz(t *testing.T) {
	tel, spans, _ := NewForTest()
	shutdown(t, tel)
	h := ServerHandler(routed(t, "/healthz"), tel, nil)
	rec := serve(h, http.MethodGet, HealthPath, "traceparent", traceparent)
	if n := len(spans.GetSpans()); n != 0 {
		t.Errorf("/healthz produced %d spans", n)
	}
	if rec.Header().Get(TraceResponseHeader) != "" {
		t.Error("traceresponse set without a span")
	}
	if id := rec.Header().Get(RequestIDHeader); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
		t.Errorf("X-Request-Id = %q, want a random id", id)
	}
}

func TestServerHandlerNewTraceWithoutTraceparent(t *testing.T) {
	tel, spans, _ := NewForTest()
	shutdown(t, tel)
	rec := serve(ServerHandler(routed(t, "/x"), tel, nil), http.MethodGet, "/x")
	s := spanNamed(t, spans, "GET /x")
	if s.Parent.IsValid() {
		t.Error("unexpected parent")
	}
	if got := rec.Header().Get(RequestIDHeader); got != s.SpanContext.TraceID().String() {
		t.Errorf("X-Request-Id = %q, want the trace id %s", got, s.SpanContext.TraceID())
	}
}

func TestClientTransportInjectsTraceparent(t *testing.T) {
	tel, spans, _ := NewForTest()
	shutdown(t, tel)
	got := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get("traceparent")
		_, _ = io.WriteString(w, "ok")
	}))
	defer srv.Close()

	ctx, parent := tel.TracerProvider().Tracer("t").Start(context.Background(), "delivery")
	client := &http.Client{Transport: ClientTransport(nil, tel)}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/fhir/Patient?name="+phi, strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	parent.End()

	tp := <-got
	if !strings.HasPrefix(tp, "00-"+parent.SpanContext().TraceID().String()+"-") {
		t.Fatalf("traceparent = %q, want trace %s", tp, parent.SpanContext().TraceID())
	}
	cs := spanNamed(t, spans, "POST")
	if cs.SpanKind != trace.SpanKindClient || cs.Parent.SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("client span = %+v", cs)
	}
	if !strings.Contains(tp, cs.SpanContext.SpanID().String()) {
		t.Errorf("traceparent %q does not name the client span", tp)
	}
	attrs := attrMap(cs.Attributes)
	if _, ok := attrs["url.full"]; ok {
		t.Error("url.full exported")
	}
	if attrs["server.address"].AsString() != "127.0.0.1" || attrs["http.response.status_code"].AsInt64() != 200 {
		t.Errorf("attributes = %v", cs.Attributes)
	}
	mustNotContainPHI(t, spans.GetSpans())
}

func TestClientTransportErrorIsFiltered(t *testing.T) {
	tel, spans, _ := NewForTest()
	shutdown(t, tel)
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // connection refused; the error quotes the URL
	client := &http.Client{Transport: ClientTransport(nil, tel)}
	resp, err := client.Get(url + "/fhir/Patient?name=" + phi)
	if err == nil {
		_ = resp.Body.Close()
		t.Fatal("request to a closed server succeeded")
	}
	s := spanNamed(t, spans, "GET")
	if s.Status.Code != codes.Error || s.Status.Description != "" || len(s.Events) != 0 {
		t.Errorf("status %+v, events %v", s.Status, s.Events)
	}
	if attrMap(s.Attributes)["error.type"] == (attribute.Value{}) {
		t.Errorf("error.type missing: %v", s.Attributes)
	}
	mustNotContainPHI(t, spans.GetSpans())
}

func TestTraceID(t *testing.T) {
	if TraceID(context.Background()) != "" {
		t.Error("TraceID without span")
	}
	tel, _, _ := NewForTest()
	shutdown(t, tel)
	ctx, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "x")
	defer span.End()
	if got := TraceID(ctx); got != span.SpanContext().TraceID().String() || len(got) != 32 {
		t.Errorf("TraceID = %q", got)
	}
}

func TestNilTelemetryIsNoop(t *testing.T) {
	var tel *Telemetry
	rec := serve(ServerHandler(routed(t, "/x"), tel, nil), http.MethodGet, "/x")
	if rec.Code != http.StatusOK || rec.Header().Get(RequestIDHeader) == "" {
		t.Errorf("nil Telemetry: code %d headers %v", rec.Code, rec.Header())
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}
