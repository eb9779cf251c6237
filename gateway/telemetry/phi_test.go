package telemetry

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// phi is a marker that must never appear in exported telemetry.
const phi = "Jane-Roe-PHI-1987"

func shutdown(t *testing.T, tel *Telemetry) {
	t.Helper()
	t.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
}

func attrMap(kvs []attribute.KeyValue) map[string]attribute.Value {
	m := make(map[string]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value
	}
	return m
}

func mustNotContainPHI(t *testing.T, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	if strings.Contains(string(b), phi) {
		t.Fatalf("exported telemetry contains PHI: %s", b)
	}
}

func TestAllowedAttributes(t *testing.T) {
	got := AllowedAttributes()
	if !slices.IsSorted(got) {
		t.Errorf("AllowedAttributes not sorted: %v", got)
	}
	for _, k := range []string{
		"http.request.method", "http.route", "http.response.status_code", "url.scheme",
		"server.address", "server.port", "network.protocol.version", "error.type",
		"fhir.resource_type", "fhir.interaction", "fhir.bundle.type", "fhir.entry_count",
		"fhir.outcome", "ingest.kind", "mapping.version", "validation.rule",
		"validation.issue_count", "delivery.destination", "delivery.attempt",
		"delivery.outcome", "db.system", "db.operation.name", "gateway.instance", "audit.outcome",
	} {
		if !slices.Contains(got, k) || !AttributeAllowed(k) {
			t.Errorf("%s must be allowed", k)
		}
	}
	for _, k := range []string{
		"url.full", "url.path", "url.query", "http.target", "http.url", "user_agent.original",
		"client.address", "network.peer.address", "exception.message", "exception.stacktrace",
		"http.request.method_original", "patient.name",
	} {
		if slices.Contains(got, k) || AttributeAllowed(k) {
			t.Errorf("%s must not be allowed", k)
		}
	}
	got[0] = "mutated"
	if AllowedAttributes()[0] == "mutated" {
		t.Error("AllowedAttributes returned shared state")
	}
}

func TestSpanFilterStripsPHI(t *testing.T) {
	tel, spans, _ := NewForTest()
	shutdown(t, tel)
	tracer := tel.TracerProvider().Tracer("test")

	ts, err := trace.ParseTraceState("vendor=" + phi)
	if err != nil {
		t.Fatal(err)
	}
	linked := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceState: ts,
	})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), linked)

	_, span := tracer.Start(ctx, "fhir.create",
		trace.WithAttributes(
			attribute.String("url.full", "https://gw/fhir/Patient?name="+phi),
			attribute.String("patient.name", phi),
			attribute.String("client.address", "203.0.113.7"),
			attribute.String("http.route", "/fhir/:type"),
			attribute.String("fhir.resource_type", "Patient"),
		),
		trace.WithLinks(trace.Link{SpanContext: linked, Attributes: []attribute.KeyValue{
			attribute.String("patient.mrn", phi), attribute.String("fhir.interaction", "create"),
		}}),
	)
	span.SetAttributes(attribute.Int("fhir.entry_count", 3), attribute.String("exception.message", phi))
	span.AddEvent("note", trace.WithAttributes(attribute.String("fhir.outcome", phi)))
	span.RecordError(errors.New("bad birthDate for "+phi), trace.WithStackTrace(true))
	span.SetStatus(codes.Error, "validation failed for "+phi)
	span.End()

	got := spans.GetSpans()
	if len(got) != 1 {
		t.Fatalf("got %d spans, want 1", len(got))
	}
	s := got[0]
	mustNotContainPHI(t, s)

	attrs := attrMap(s.Attributes)
	for _, k := range []string{"url.full", "patient.name", "client.address", "exception.message"} {
		if _, ok := attrs[k]; ok {
			t.Errorf("forbidden attribute %s exported", k)
		}
	}
	if attrs["http.route"].AsString() != "/fhir/:type" || attrs["fhir.resource_type"].AsString() != "Patient" ||
		attrs["fhir.entry_count"].AsInt64() != 3 {
		t.Errorf("allowed attributes lost: %v", s.Attributes)
	}
	if s.DroppedAttributes != 4 {
		t.Errorf("DroppedAttributes = %d, want 4", s.DroppedAttributes)
	}
	if len(s.Events) != 0 {
		t.Errorf("events exported: %v", s.Events)
	}
	if s.DroppedEvents != 2 {
		t.Errorf("DroppedEvents = %d, want 2", s.DroppedEvents)
	}
	if s.Status.Code != codes.Error || s.Status.Description != "" {
		t.Errorf("status = %+v, want Error with empty description", s.Status)
	}
	if len(s.Links) != 1 {
		t.Fatalf("links = %v", s.Links)
	}
	if la := attrMap(s.Links[0].Attributes); len(la) != 1 || la["fhir.interaction"].AsString() != "create" {
		t.Errorf("link attributes = %v", s.Links[0].Attributes)
	}
	if s.Links[0].SpanContext.TraceState().Len() != 0 || s.Parent.TraceState().Len() != 0 ||
		s.SpanContext.TraceState().Len() != 0 {
		t.Error("tracestate exported")
	}
	if s.Parent.TraceID() != linked.TraceID() {
		t.Error("parent lost")
	}
	if v, ok := s.Resource.Set().Value("service.name"); !ok || v.AsString() != DefaultServiceName {
		t.Errorf("resource service.name = %v", v)
	}
}

func TestMetricFilterStripsPHI(t *testing.T) {
	tel, _, reader := NewForTest()
	shutdown(t, tel)
	// Record inside a sampled span: exemplars (which would keep the
	// filtered-out attributes) must still be off.
	ctx, span := tel.TracerProvider().Tracer("test").Start(context.Background(), "op")
	defer span.End()

	meter := tel.MeterProvider().Meter("test")
	c, err := meter.Int64Counter("test.counter")
	if err != nil {
		t.Fatal(err)
	}
	h, err := meter.Float64Histogram("test.histogram")
	if err != nil {
		t.Fatal(err)
	}
	opt := metric.WithAttributes(attribute.String("patient.name", phi), attribute.String("fhir.outcome", "accepted"))
	c.Add(ctx, 2, opt)
	h.Record(ctx, 1.5, opt)

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	mustNotContainPHI(t, rm)

	sum := findMetric(t, rm, "test.counter").Data.(metricdata.Sum[int64])
	if len(sum.DataPoints) != 1 {
		t.Fatalf("datapoints = %v", sum.DataPoints)
	}
	dp := sum.DataPoints[0]
	if dp.Value != 2 || dp.Attributes.Len() != 1 {
		t.Errorf("datapoint = %+v", dp)
	}
	if v, _ := dp.Attributes.Value("fhir.outcome"); v.AsString() != "accepted" {
		t.Errorf("allowed attribute lost: %v", dp.Attributes)
	}
	if _, ok := dp.Attributes.Value("patient.name"); ok {
		t.Error("forbidden metric attribute exported")
	}
	if len(dp.Exemplars) != 0 {
		t.Errorf("exemplars exported: %+v", dp.Exemplars)
	}
	hist := findMetric(t, rm, "test.histogram").Data.(metricdata.Histogram[float64])
	if len(hist.DataPoints) != 1 || hist.DataPoints[0].Attributes.Len() != 1 || len(hist.DataPoints[0].Exemplars) != 0 {
		t.Errorf("histogram datapoints = %+v", hist.DataPoints)
	}
}

func findMetric(t *testing.T, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("metric %s not found", name)
	return metricdata.Metrics{}
}

// spanNamed returns the exported span with the given name.
func spanNamed(t *testing.T, spans *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	var names []string
	for _, s := range spans.GetSpans() {
		if s.Name == name {
			return s
		}
		names = append(names, s.Name)
	}
	t.Fatalf("no span named %q (have %q)", name, names)
	return tracetest.SpanStub{}
}
