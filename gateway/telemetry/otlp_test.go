package telemetry

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// collector records what fake OTLP collectors receive.
type collector struct {
	mu      sync.Mutex
	paths   []string
	raw     [][]byte
	spans   []string // span names
	metrics []string // metric names
	attrs   []string // span attribute keys
}

func (c *collector) addTraces(raw []byte, req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw = append(c.raw, raw)
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, s.GetName())
				for _, a := range s.GetAttributes() {
					c.attrs = append(c.attrs, a.GetKey())
				}
			}
		}
	}
}

func (c *collector) addMetrics(raw []byte, req *colmetricpb.ExportMetricsServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.raw = append(c.raw, raw)
	for _, rm := range req.GetResourceMetrics() {
		for _, sm := range rm.GetScopeMetrics() {
			for _, m := range sm.GetMetrics() {
				c.metrics = append(c.metrics, m.GetName())
			}
		}
	}
}

// check asserts the collector got the span and metric and never saw PHI.
func (c *collector) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.raw {
		if bytes.Contains(b, []byte(phi)) {
			t.Error("PHI reached the collector")
		}
	}
	if len(c.spans) != 1 || c.spans[0] != "otlp-span" {
		t.Errorf("spans = %v", c.spans)
	}
	for _, k := range c.attrs {
		if !AttributeAllowed(k) {
			t.Errorf("attribute %s reached the collector", k)
		}
	}
	found := false
	for _, m := range c.metrics {
		found = found || m == "otlp.counter"
	}
	if !found {
		t.Errorf("metrics = %v", c.metrics)
	}
}

// emit records a span and a metric, both carrying PHI, then shuts down (which
// flushes them to the collector).
func emit(t *testing.T, tel *Telemetry) {
	t.Helper()
	ctx, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "otlp-span",
		trace.WithAttributes(attribute.String("url.full", "https://gw/fhir/Patient/"+phi),
			attribute.String("fhir.resource_type", "Patient")))
	span.RecordError(errEx(phi))
	span.SetStatus(codes.Error, phi)
	span.End()
	c, err := tel.MeterProvider().Meter("t").Int64Counter("otlp.counter")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 1, metric.WithAttributes(attribute.String("patient.name", phi)))
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestOTLPHTTPExportIsFiltered(t *testing.T) {
	col := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		col.mu.Lock()
		col.paths = append(col.paths, r.URL.Path)
		col.mu.Unlock()
		var resp proto.Message
		switch r.URL.Path {
		case "/v1/traces":
			req := &coltracepb.ExportTraceServiceRequest{}
			if err := proto.Unmarshal(raw, req); err != nil {
				t.Errorf("traces: %v", err)
			}
			col.addTraces(raw, req)
			resp = &coltracepb.ExportTraceServiceResponse{}
		case "/v1/metrics":
			req := &colmetricpb.ExportMetricsServiceRequest{}
			if err := proto.Unmarshal(raw, req); err != nil {
				t.Errorf("metrics: %v", err)
			}
			col.addMetrics(raw, req)
			resp = &colmetricpb.ExportMetricsServiceResponse{}
		default:
			http.NotFound(w, r)
			return
		}
		b, _ := proto.Marshal(resp)
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(b)
	}))
	defer srv.Close()

	// Exporters default to otlp because an endpoint is set.
	tel := setup(t, nil, envEndpoint, srv.URL)
	emit(t, tel)
	col.check(t)
}

type grpcCollector struct {
	coltracepb.UnimplementedTraceServiceServer
	col *collector
}

func (g *grpcCollector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	raw, _ := proto.Marshal(req)
	g.col.addTraces(raw, req)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

type grpcMetricsCollector struct {
	colmetricpb.UnimplementedMetricsServiceServer
	col *collector
}

func (g *grpcMetricsCollector) Export(_ context.Context, req *colmetricpb.ExportMetricsServiceRequest) (*colmetricpb.ExportMetricsServiceResponse, error) {
	raw, _ := proto.Marshal(req)
	g.col.addMetrics(raw, req)
	return &colmetricpb.ExportMetricsServiceResponse{}, nil
}

func TestOTLPGRPCExportIsFiltered(t *testing.T) {
	col := &collector{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(s, &grpcCollector{col: col})
	colmetricpb.RegisterMetricsServiceServer(s, &grpcMetricsCollector{col: col})
	go func() { _ = s.Serve(l) }()
	defer s.Stop()

	tel := setup(t, nil, envProtocol, "grpc", envEndpoint, "http://"+l.Addr().String())
	if len(tel.traceKinds) != 1 || tel.traceKinds[0] != "otlp/grpc" {
		t.Fatalf("trace exporters = %v", tel.traceKinds)
	}
	emit(t, tel)
	col.check(t)
}
