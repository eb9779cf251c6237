package telemetry

import (
	"context"
	"crypto/rand"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// StartDeliveryAttempt starts the span of one delivery attempt of a record
// stored by the request whose trace id is traceID (hex; "" when unknown).
// The attempt continues that trace, so the EHR receives a traceparent with
// the same trace id the clinic's request had: one trace from the clinic's
// request to the hospital's answer, however much later the delivery
// happens. The returned end records the attempt's outcome (a fixed word
// such as "done", "retry" or "dead") and ends the span.
func (t *Telemetry) StartDeliveryAttempt(ctx context.Context, destination, traceID string, attempt int) (context.Context, func(outcome string)) {
	if tid, err := trace.TraceIDFromHex(traceID); err == nil {
		var sid trace.SpanID
		_, _ = rand.Read(sid[:]) // the stored request span is not known: a remote stand-in
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid,
			TraceFlags: trace.FlagsSampled, Remote: true})
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	ctx, span := t.TracerProvider().Tracer("github.com/ketamine-gateway/ketamine-gateway/gateway/delivery").Start(ctx,
		"delivery.attempt", trace.WithAttributes(attribute.String("delivery.destination", destination),
			attribute.Int("delivery.attempt", attempt)))
	return ctx, func(outcome string) {
		span.SetAttributes(attribute.String("delivery.outcome", outcome))
		if outcome != "done" {
			span.SetStatus(codes.Error, "")
		}
		span.End()
	}
}
