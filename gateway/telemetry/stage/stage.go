// Package stage traces the stages of a request inside the application
// (decode, validate, map, store) as child spans, with the OpenTelemetry API
// only: the application packages use it without the HTTP instrumentation
// of package telemetry. Span attributes come only from the telemetry
// allow-list (kinds, resource types, counts, rule ids, outcomes), never
// from request content.
package stage

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// Tracer returns the gateway's tracer from tp (a no-op one for nil).
func Tracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	return tp.Tracer("github.com/ketamine-gateway/ketamine-gateway/gateway")
}

// Run runs fn in a child span named name. A failure is recorded as the
// span's status code and the first rule id broken, never as error text
// (which could quote values).
func Run(ctx context.Context, t trace.Tracer, name string, fn func(ctx context.Context) error, attrs ...attribute.KeyValue) error {
	ctx, span := t.Start(ctx, name, trace.WithAttributes(attrs...))
	defer span.End()
	err := fn(ctx)
	if err != nil {
		_, issues := outcome.From(err)
		if len(issues) > 0 {
			span.SetAttributes(attribute.String("validation.rule", issues[0].Rule), attribute.Int("validation.issue_count", len(issues)))
		}
		span.SetStatus(codes.Error, "")
	}
	return err
}

// TraceID returns the trace id of ctx's span ("" when there is none).
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}
