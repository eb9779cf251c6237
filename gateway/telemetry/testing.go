package telemetry

import (
	"context"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// NewForTest returns a Telemetry for tests: always-on sampling, the same PHI
// filters as Setup, spans exported synchronously to the returned in-memory
// exporter (readable as soon as a span ends, e.g. right after a request
// returns) and metrics readable through the returned manual reader. It reads
// no environment variables. Call Shutdown when done; it also clears the
// in-memory exporter, so read the spans first.
func NewForTest() (*Telemetry, *tracetest.InMemoryExporter, *sdkmetric.ManualReader) {
	spans := tracetest.NewInMemoryExporter()
	reader := sdkmetric.NewManualReader()
	res := resource.NewWithAttributes(semconv.SchemaURL, semconv.ServiceName(DefaultServiceName))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithIDGenerator(timeOrderedIDs{}),
		sdktrace.WithSpanProcessor(FilterSpanProcessor(sdktrace.NewSimpleSpanProcessor(spans))),
	)
	mp := newMeterProvider(res, reader)
	return &Telemetry{
		tp:        tp,
		mp:        mp,
		prop:      Propagator(),
		shutdowns: []func(ctx context.Context) error{tp.Shutdown, mp.Shutdown},
		flushes:   []func(ctx context.Context) error{tp.ForceFlush, mp.ForceFlush},
	}, spans, reader
}
