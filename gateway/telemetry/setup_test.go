package telemetry

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

func envOf(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func setup(t *testing.T, stdout *bytes.Buffer, kv ...string) *Telemetry {
	t.Helper()
	tel, err := Setup(context.Background(), envOf(kv...), stdout)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return tel
}

// quickShutdown shuts down with a short timeout: no collector is running, so
// a final export may fail; it must not hang.
func quickShutdown(t *testing.T, tel *Telemetry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = tel.Shutdown(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Shutdown took %v", d)
	}
}

func TestSetupDefaultsToNoExporters(t *testing.T) {
	tel := setup(t, nil)
	defer quickShutdown(t, tel)
	if len(tel.traceKinds) != 0 || len(tel.metricKinds) != 0 {
		t.Errorf("exporters = %v / %v, want none", tel.traceKinds, tel.metricKinds)
	}
	if _, ok := tel.TracerProvider().(*sdktrace.TracerProvider); !ok {
		t.Errorf("TracerProvider = %T, want the SDK (trace ids without exporter)", tel.TracerProvider())
	}
	if _, ok := tel.MeterProvider().(metricnoop.MeterProvider); !ok {
		t.Errorf("MeterProvider = %T, want noop", tel.MeterProvider())
	}
	_, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "x")
	if !span.SpanContext().IsValid() || !span.SpanContext().IsSampled() {
		t.Error("default sampler must be parentbased_always_on")
	}
	span.End()
}

func TestSetupExplicitNone(t *testing.T) {
	tel := setup(t, nil, envTracesExporter, "none", envMetricsExporter, "none",
		envEndpoint, "http://127.0.0.1:1")
	defer quickShutdown(t, tel)
	if len(tel.traceKinds) != 0 || len(tel.metricKinds) != 0 {
		t.Errorf("exporters = %v / %v, want none", tel.traceKinds, tel.metricKinds)
	}
}

func TestSetupDisabled(t *testing.T) {
	tel := setup(t, nil, envSDKDisabled, "TRUE", envTracesExporter, "console")
	defer quickShutdown(t, tel)
	if _, ok := tel.TracerProvider().(tracenoop.TracerProvider); !ok {
		t.Errorf("TracerProvider = %T, want noop", tel.TracerProvider())
	}
	if _, ok := tel.MeterProvider().(metricnoop.MeterProvider); !ok {
		t.Errorf("MeterProvider = %T, want noop", tel.MeterProvider())
	}
	if tel.Propagator() == nil {
		t.Error("no propagator")
	}
}

func TestSetupEndpointSelectsOTLPHTTP(t *testing.T) {
	tel := setup(t, nil, envEndpoint, "http://127.0.0.1:1")
	defer quickShutdown(t, tel)
	if got := strings.Join(tel.traceKinds, ","); got != "otlp/http/protobuf" {
		t.Errorf("trace exporters = %q", got)
	}
	if _, ok := tel.spanExporters[0].(*otlptrace.Exporter); !ok {
		t.Errorf("span exporter = %T", tel.spanExporters[0])
	}
	if _, ok := tel.metricExporters[0].(*otlpmetrichttp.Exporter); !ok {
		t.Errorf("metric exporter = %T", tel.metricExporters[0])
	}

	// A traces-only endpoint turns on traces only.
	tel2 := setup(t, nil, envTracesEndpoint, "http://127.0.0.1:1/v1/traces")
	defer quickShutdown(t, tel2)
	if len(tel2.traceKinds) != 1 || len(tel2.metricKinds) != 0 {
		t.Errorf("exporters = %v / %v", tel2.traceKinds, tel2.metricKinds)
	}
}

func TestSetupOTLPGRPC(t *testing.T) {
	tel := setup(t, nil,
		envTracesExporter, "otlp", envMetricsExporter, "otlp",
		envProtocol, "grpc", envEndpoint, "http://127.0.0.1:1")
	defer quickShutdown(t, tel)
	if got := strings.Join(tel.traceKinds, ","); got != "otlp/grpc" {
		t.Errorf("trace exporters = %q", got)
	}
	if got := strings.Join(tel.metricKinds, ","); got != "otlp/grpc" {
		t.Errorf("metric exporters = %q", got)
	}
	if _, ok := tel.metricExporters[0].(*otlpmetricgrpc.Exporter); !ok {
		t.Errorf("metric exporter = %T", tel.metricExporters[0])
	}
	// Record something: Shutdown must give up quickly without a collector.
	_, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "x")
	span.End()

	// Signal-specific protocol overrides the generic one.
	tel2 := setup(t, nil, envTracesExporter, "otlp", envProtocol, "grpc",
		envTracesProtocol, "http/protobuf", envEndpoint, "http://127.0.0.1:1")
	defer quickShutdown(t, tel2)
	if got := strings.Join(tel2.traceKinds, ","); got != "otlp/http/protobuf" {
		t.Errorf("trace exporters = %q", got)
	}
}

func TestSetupConsoleWritesFilteredSpans(t *testing.T) {
	var out bytes.Buffer
	tel := setup(t, &out, envTracesExporter, "console", envMetricsExporter, "console",
		envServiceName, "gw-test", envResourceAttributes, "deployment.environment.name=test")
	if _, ok := tel.spanExporters[0].(*stdouttrace.Exporter); !ok {
		t.Errorf("span exporter = %T", tel.spanExporters[0])
	}
	ctx, span := tel.TracerProvider().Tracer("t").Start(context.Background(), "console-span",
		trace.WithAttributes(attribute.String("patient.name", phi), attribute.String("fhir.outcome", "ok")))
	span.RecordError(errEx(phi))
	span.SetStatus(codes.Error, phi)
	span.End()
	c, err := tel.MeterProvider().Meter("t").Int64Counter("console.counter")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 1, metric.WithAttributes(attribute.String("patient.name", phi)))
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	s := out.String()
	for _, want := range []string{"console-span", "fhir.outcome", "console.counter", "gw-test", "deployment.environment.name"} {
		if !strings.Contains(s, want) {
			t.Errorf("console output lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, phi) {
		t.Errorf("console output contains PHI:\n%s", s)
	}
	if err := tel.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}

type errEx string

func (e errEx) Error() string { return string(e) }

func TestSetupErrors(t *testing.T) {
	for name, kv := range map[string][]string{
		"unknown traces exporter":  {envTracesExporter, "zipkin"},
		"unknown metrics exporter": {envMetricsExporter, "zipkin"},
		"none with others":         {envTracesExporter, "none,console"},
		"json protocol":            {envTracesExporter, "otlp", envProtocol, "http/json"},
		"endpoint without scheme":  {envTracesExporter, "otlp", envEndpoint, "localhost:4318"},
		"unknown sampler":          {envSampler, "jaeger_remote"},
		"bad ratio":                {envSampler, "traceidratio", envSamplerArg, "1.5"},
		"bad resource attributes":  {envResourceAttributes, "novalue"},
		"bad metric interval":      {envMetricsExporter, "console", envMetricInterval, "10s"},
	} {
		t.Run(name, func(t *testing.T) {
			tel, err := Setup(context.Background(), envOf(kv...), nil)
			if err == nil {
				quickShutdown(t, tel)
				t.Fatal("Setup succeeded, want error")
			}
		})
	}
	if _, err := Setup(context.Background(), nil, nil); err == nil {
		t.Error("nil getenv accepted")
	}
}

func TestSamplerFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name, arg string
		want      sdktrace.Sampler
	}{
		{"", "", sdktrace.ParentBased(sdktrace.AlwaysSample())},
		{"parentbased_always_on", "", sdktrace.ParentBased(sdktrace.AlwaysSample())},
		{"PARENTBASED_ALWAYS_OFF", "", sdktrace.ParentBased(sdktrace.NeverSample())},
		{"always_on", "", sdktrace.AlwaysSample()},
		{"always_off", "", sdktrace.NeverSample()},
		{"traceidratio", "0.25", sdktrace.TraceIDRatioBased(0.25)},
		{"traceidratio", "", sdktrace.TraceIDRatioBased(1)},
		{"parentbased_traceidratio", "0.1", sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.1))},
	} {
		got, err := sampler(envOf(envSampler, tc.name, envSamplerArg, tc.arg))
		if err != nil {
			t.Errorf("%s/%s: %v", tc.name, tc.arg, err)
			continue
		}
		if got.Description() != tc.want.Description() {
			t.Errorf("%s/%s: got %s, want %s", tc.name, tc.arg, got.Description(), tc.want.Description())
		}
	}
	for _, arg := range []string{"-0.1", "abc", "2"} {
		if _, err := sampler(envOf(envSampler, "traceidratio", envSamplerArg, arg)); err == nil {
			t.Errorf("ratio %q accepted", arg)
		}
	}
}

func TestEndpointURL(t *testing.T) {
	for _, tc := range []struct {
		env   []string
		sig   signal
		proto string
		want  string
	}{
		{nil, tracesSignal, protocolHTTPProtobuf, ""},
		{[]string{envEndpoint, "http://c:4318"}, tracesSignal, protocolHTTPProtobuf, "http://c:4318/v1/traces"},
		{[]string{envEndpoint, "https://c:4318/otlp/"}, metricsSignal, protocolHTTPProtobuf, "https://c:4318/otlp/v1/metrics"},
		{[]string{envEndpoint, "http://c:4317"}, tracesSignal, protocolGRPC, "http://c:4317"},
		{[]string{envEndpoint, "http://c:4318", envTracesEndpoint, "http://t:1/custom"}, tracesSignal, protocolHTTPProtobuf, "http://t:1/custom"},
	} {
		got, err := endpointURL(envOf(tc.env...), tc.sig, tc.proto)
		if err != nil || got != tc.want {
			t.Errorf("%v %s %s: got %q, %v; want %q", tc.env, tc.sig.name, tc.proto, got, err, tc.want)
		}
	}
}

func TestResourceAttributes(t *testing.T) {
	attrs, err := resourceAttributes(envOf(envResourceAttributes, "service.name=from-attrs, team=a%20b ,k=v=w"))
	if err != nil {
		t.Fatal(err)
	}
	m := attrMap(attrs)
	if m["service.name"].AsString() != "from-attrs" || m["team"].AsString() != "a b" || m["k"].AsString() != "v=w" {
		t.Errorf("attrs = %v", attrs)
	}
	attrs, _ = resourceAttributes(envOf(envResourceAttributes, "service.name=x", envServiceName, "svc"))
	if attrMap(attrs)["service.name"].AsString() != "svc" {
		t.Errorf("OTEL_SERVICE_NAME must win: %v", attrs)
	}
	attrs, _ = resourceAttributes(envOf())
	if attrMap(attrs)["service.name"].AsString() != DefaultServiceName {
		t.Errorf("default service name: %v", attrs)
	}
}
