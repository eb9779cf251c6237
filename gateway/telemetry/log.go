package telemetry

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// Log attribute keys added by LogHandler.
const (
	LogKeyTraceID = "trace_id"
	LogKeySpanID  = "span_id"
)

// LogHandler wraps h so that every record logged with a context that carries
// a valid span (InfoContext, ErrorContext, Log, ...) gets trace_id and
// span_id attributes. Records logged without a span are passed through
// unchanged. It adds identifiers only; keeping PHI out of log messages is
// the caller's job. After WithGroup the ids are added inside the group.
func LogHandler(h slog.Handler) slog.Handler {
	return traceLogHandler{next: h}
}

type traceLogHandler struct {
	next slog.Handler
}

// Enabled implements slog.Handler.
func (h traceLogHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.next.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (h traceLogHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx != nil && !hasAttr(r, LogKeyTraceID) {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
			r = r.Clone()
			r.AddAttrs(
				slog.String(LogKeyTraceID, sc.TraceID().String()),
				slog.String(LogKeySpanID, sc.SpanID().String()),
			)
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h traceLogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return traceLogHandler{next: h.next.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h traceLogHandler) WithGroup(name string) slog.Handler {
	return traceLogHandler{next: h.next.WithGroup(name)}
}

// hasAttr reports whether the record already carries key (a caller that
// logs a trace id itself must not get a second one: duplicate JSON keys).
func hasAttr(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}
