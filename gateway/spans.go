package gateway

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Stage spans. Their attributes come only from the telemetry allow-list
// (kinds, resource types, counts, rule ids, outcomes), never from request
// content; the span processor strips anything else anyway.

// tracer returns the gateway's tracer (a no-op one without telemetry).
func (s *Server) tracer() trace.Tracer {
	return s.cfg.Telemetry.TracerProvider().Tracer("github.com/ketamine-gateway/ketamine-gateway/gateway")
}

// stage runs fn in a child span named name, recording failure as the
// span status code only (error texts could quote values).
func (s *Server) stage(ctx context.Context, name string, fn func(ctx context.Context) error, attrs ...attribute.KeyValue) error {
	ctx, span := s.tracer().Start(ctx, name, trace.WithAttributes(attrs...))
	defer span.End()
	err := fn(ctx)
	if err != nil {
		_, issues := Outcome(err)
		if len(issues) > 0 {
			span.SetAttributes(attribute.String("validation.rule", issues[0].Rule), attribute.Int("validation.issue_count", len(issues)))
		}
		span.SetStatus(codes.Error, "")
	}
	return err
}
