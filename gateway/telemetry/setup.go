package telemetry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/exemplar"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// Metric reader defaults from the OpenTelemetry specification.
const (
	defaultMetricInterval = 60 * time.Second
	defaultMetricTimeout  = 30 * time.Second
)

// Telemetry holds the gateway's tracer and meter providers and propagator.
// A nil *Telemetry behaves like a disabled SDK (no-op providers).
type Telemetry struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	prop propagation.TextMapPropagator

	shutdowns []func(context.Context) error
	flushes   []func(context.Context) error

	shutdownOnce sync.Once
	shutdownErr  error

	// What Setup built, for tests and diagnostics: exporter descriptions
	// ("otlp/grpc", "otlp/http/protobuf", "console") and the exporters.
	traceKinds, metricKinds []string
	spanExporters           []sdktrace.SpanExporter
	metricExporters         []sdkmetric.Exporter

	// The Prometheus exporter's scrape handler and listen address, when
	// OTEL_METRICS_EXPORTER names prometheus.
	promHandler http.Handler
	promAddr    string
}

// Propagator returns the W3C tracecontext + baggage propagator that the
// gateway uses for every signal.
//
// Note that baggage received from a caller is forwarded by [ClientTransport]
// to downstream destinations; it is never recorded on spans or metrics.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// Setup builds the tracer and meter providers from the standard OpenTelemetry
// environment variables, read through getenv (pass os.Getenv in production).
// Console exporters write to stdout. See the package documentation for the
// variables and defaults; in short:
//
//   - OTEL_SDK_DISABLED=true: no-op providers, nothing exported.
//   - OTEL_SERVICE_NAME (default "ketamine-gateway"), OTEL_RESOURCE_ATTRIBUTES.
//   - OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER: otlp, console, none or a
//     comma-separated list. Unset means otlp when an OTLP endpoint for the
//     signal is configured and none otherwise.
//   - OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]ENDPOINT and
//     OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL (http/protobuf by default,
//     grpc selects the gRPC exporters).
//   - OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default
//     parentbased_always_on).
//   - OTEL_METRIC_EXPORT_INTERVAL / OTEL_METRIC_EXPORT_TIMEOUT (milliseconds).
//   - OTEL_METRICS_EXPORTER=prometheus: a pull exporter; Setup builds its
//     scrape handler (PrometheusHandler) and reads its listen address from
//     OTEL_EXPORTER_PROMETHEUS_HOST / OTEL_EXPORTER_PROMETHEUS_PORT (default
//     127.0.0.1:9464, PrometheusAddr); the caller listens and serves it.
//
// With no trace exporter the SDK tracer provider is still installed, so that
// trace ids exist for the traceresponse header and log correlation. With no
// metric exporter the meter provider is a no-op.
//
// The OTLP exporters connect lazily: Setup does not need a reachable
// collector. Setup does not set the otel globals. Call Shutdown on exit to
// flush buffered telemetry.
func Setup(ctx context.Context, getenv func(string) string, stdout io.Writer) (*Telemetry, error) {
	if getenv == nil {
		return nil, errors.New("telemetry: Setup: getenv is nil")
	}
	if stdout == nil {
		stdout = io.Discard
	}
	e := env(getenv)
	t := &Telemetry{prop: Propagator()}
	if sdkDisabled(e) {
		t.tp = tracenoop.NewTracerProvider()
		t.mp = metricnoop.NewMeterProvider()
		return t, nil
	}

	res, err := newResource(ctx, e)
	if err != nil {
		return nil, err
	}
	if err := t.setupTraces(ctx, e, res, stdout); err != nil {
		return nil, errors.Join(err, t.Shutdown(ctx))
	}
	if err := t.setupMetrics(ctx, e, res, stdout); err != nil {
		return nil, errors.Join(err, t.Shutdown(ctx))
	}
	return t, nil
}

func newResource(ctx context.Context, e env) (*resource.Resource, error) {
	attrs, err := resourceAttributes(e)
	if err != nil {
		return nil, err
	}
	// Built explicitly (no resource.Default / WithFromEnv, which read the
	// process environment behind getenv's back).
	res, err := resource.New(ctx,
		resource.WithSchemaURL(semconv.SchemaURL),
		resource.WithTelemetrySDK(),
		resource.WithAttributes(attrs...),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

func (t *Telemetry) setupTraces(ctx context.Context, e env, res *resource.Resource, stdout io.Writer) error {
	smp, err := sampler(e)
	if err != nil {
		return err
	}
	names, err := exporters(e, tracesSignal)
	if err != nil {
		return err
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(smp),
		sdktrace.WithIDGenerator(timeOrderedIDs{})}
	var built []sdktrace.SpanExporter
	for _, name := range names {
		var (
			kind string
			exp  sdktrace.SpanExporter
			sp   sdktrace.SpanProcessor
		)
		switch name {
		case exporterConsole:
			kind = exporterConsole
			exp, err = stdouttrace.New(stdouttrace.WithWriter(stdout))
			if err != nil {
				err = fmt.Errorf("telemetry: console trace exporter: %w", err)
			}
		case exporterOTLP:
			kind, exp, err = newOTLPSpanExporter(ctx, e)
		}
		if err != nil {
			for _, b := range built {
				_ = b.Shutdown(ctx)
			}
			return err
		}
		built = append(built, exp)
		t.traceKinds = append(t.traceKinds, kind)
		t.spanExporters = append(t.spanExporters, exp)
		if kind == exporterConsole {
			sp = sdktrace.NewSimpleSpanProcessor(exp) // synchronous: for debugging
		} else {
			sp = sdktrace.NewBatchSpanProcessor(exp)
		}
		opts = append(opts, sdktrace.WithSpanProcessor(FilterSpanProcessor(sp)))
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.tp = tp
	t.shutdowns = append(t.shutdowns, tp.Shutdown)
	t.flushes = append(t.flushes, tp.ForceFlush)
	return nil
}

func newOTLPSpanExporter(ctx context.Context, e env) (string, sdktrace.SpanExporter, error) {
	proto, err := protocol(e, tracesSignal)
	if err != nil {
		return "", nil, err
	}
	endpoint, err := endpointURL(e, tracesSignal, proto)
	if err != nil {
		return "", nil, err
	}
	var exp sdktrace.SpanExporter
	if proto == protocolGRPC {
		var opts []otlptracegrpc.Option
		if endpoint != "" {
			opts = append(opts, otlptracegrpc.WithEndpointURL(endpoint))
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	} else {
		var opts []otlptracehttp.Option
		if endpoint != "" {
			opts = append(opts, otlptracehttp.WithEndpointURL(endpoint))
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	}
	if err != nil {
		return "", nil, fmt.Errorf("telemetry: otlp trace exporter (%s): %w", proto, err)
	}
	return "otlp/" + proto, exp, nil
}

func (t *Telemetry) setupMetrics(ctx context.Context, e env, res *resource.Resource, stdout io.Writer) error {
	names, err := exporters(e, metricsSignal)
	if err != nil {
		return err
	}
	if len(names) == 0 {
		t.mp = metricnoop.NewMeterProvider()
		return nil
	}
	interval, err := millis(e, envMetricInterval, defaultMetricInterval)
	if err != nil {
		return err
	}
	timeout, err := millis(e, envMetricTimeout, defaultMetricTimeout)
	if err != nil {
		return err
	}
	var readers []sdkmetric.Reader
	for _, name := range names {
		var (
			kind string
			exp  sdkmetric.Exporter
		)
		switch name {
		case exporterConsole:
			kind = exporterConsole
			exp, err = stdoutmetric.New(stdoutmetric.WithWriter(stdout))
			if err != nil {
				err = fmt.Errorf("telemetry: console metric exporter: %w", err)
			}
		case exporterOTLP:
			kind, exp, err = newOTLPMetricExporter(ctx, e)
		case exporterPrometheus:
			var r sdkmetric.Reader
			r, err = t.newPrometheusReader(e)
			if err == nil {
				t.metricKinds = append(t.metricKinds, exporterPrometheus)
				readers = append(readers, r)
				continue
			}
		}
		if err != nil {
			for _, r := range readers {
				_ = r.Shutdown(ctx)
			}
			return err
		}
		t.metricKinds = append(t.metricKinds, kind)
		t.metricExporters = append(t.metricExporters, exp)
		readers = append(readers, sdkmetric.NewPeriodicReader(exp,
			sdkmetric.WithInterval(interval), sdkmetric.WithTimeout(timeout)))
	}
	mp := newMeterProvider(res, readers...)
	t.mp = mp
	t.shutdowns = append(t.shutdowns, mp.Shutdown)
	t.flushes = append(t.flushes, mp.ForceFlush)
	return nil
}

func newOTLPMetricExporter(ctx context.Context, e env) (string, sdkmetric.Exporter, error) {
	proto, err := protocol(e, metricsSignal)
	if err != nil {
		return "", nil, err
	}
	endpoint, err := endpointURL(e, metricsSignal, proto)
	if err != nil {
		return "", nil, err
	}
	var exp sdkmetric.Exporter
	if proto == protocolGRPC {
		var opts []otlpmetricgrpc.Option
		if endpoint != "" {
			opts = append(opts, otlpmetricgrpc.WithEndpointURL(endpoint))
		}
		exp, err = otlpmetricgrpc.New(ctx, opts...)
	} else {
		var opts []otlpmetrichttp.Option
		if endpoint != "" {
			opts = append(opts, otlpmetrichttp.WithEndpointURL(endpoint))
		}
		exp, err = otlpmetrichttp.New(ctx, opts...)
	}
	if err != nil {
		return "", nil, fmt.Errorf("telemetry: otlp metric exporter (%s): %w", proto, err)
	}
	return "otlp/" + proto, exp, nil
}

// newPrometheusReader builds the Prometheus pull exporter on a registry of
// its own (never the client library's global one) and the handler that
// serves that registry in the Prometheus text format.
func (t *Telemetry) newPrometheusReader(e env) (sdkmetric.Reader, error) {
	addr, err := prometheusAddr(e)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	r, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
	}
	t.promAddr = addr
	t.promHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	return r, nil
}

// PrometheusHandler returns the handler that serves the metrics in the
// Prometheus text format, or nil when OTEL_METRICS_EXPORTER does not name
// prometheus. Serve it on PrometheusAddr, not on the FHIR listener.
func (t *Telemetry) PrometheusHandler() http.Handler {
	if t == nil {
		return nil
	}
	return t.promHandler
}

// PrometheusAddr returns the address the Prometheus scrape endpoint is to
// listen on (OTEL_EXPORTER_PROMETHEUS_HOST:OTEL_EXPORTER_PROMETHEUS_PORT),
// or "" when OTEL_METRICS_EXPORTER does not name prometheus.
func (t *Telemetry) PrometheusAddr() string {
	if t == nil {
		return ""
	}
	return t.promAddr
}

// newMeterProvider builds an SDK MeterProvider with the PHI attribute view
// and exemplars disabled (exemplars keep the attributes a view filtered out).
func newMeterProvider(res *resource.Resource, readers ...sdkmetric.Reader) *sdkmetric.MeterProvider {
	opts := []sdkmetric.Option{
		sdkmetric.WithResource(res),
		sdkmetric.WithView(MetricsView()),
		sdkmetric.WithExemplarFilter(exemplar.AlwaysOffFilter),
	}
	for _, r := range readers {
		opts = append(opts, sdkmetric.WithReader(r))
	}
	return sdkmetric.NewMeterProvider(opts...)
}

// TracerProvider returns the gateway's tracer provider.
func (t *Telemetry) TracerProvider() trace.TracerProvider {
	if t == nil || t.tp == nil {
		return tracenoop.NewTracerProvider()
	}
	return t.tp
}

// MeterProvider returns the gateway's meter provider.
func (t *Telemetry) MeterProvider() metric.MeterProvider {
	if t == nil || t.mp == nil {
		return metricnoop.NewMeterProvider()
	}
	return t.mp
}

// Propagator returns the W3C tracecontext + baggage propagator.
func (t *Telemetry) Propagator() propagation.TextMapPropagator {
	if t == nil || t.prop == nil {
		return Propagator()
	}
	return t.prop
}

// ForceFlush exports all buffered spans and metrics now.
func (t *Telemetry) ForceFlush(ctx context.Context) error {
	if t == nil {
		return nil
	}
	var err error
	for _, f := range t.flushes {
		err = errors.Join(err, f(ctx))
	}
	return err
}

// Shutdown flushes and stops the providers and their exporters. It honours
// ctx's deadline, is safe to call more than once (later calls return the
// first result) and makes the providers no-ops afterwards.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	t.shutdownOnce.Do(func() {
		for _, f := range t.shutdowns {
			t.shutdownErr = errors.Join(t.shutdownErr, f(ctx))
		}
	})
	return t.shutdownErr
}
