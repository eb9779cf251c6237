package telemetry

import (
	"context"
	"slices"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// allowed is the attribute allow-list: the only span, link and metric
// attribute keys the gateway may emit. Everything else is dropped before
// export.
//
// Deliberately absent (they can carry PHI or PII): url.full, url.path,
// url.query, http.target, http.url, http.request.method_original (arbitrary
// client text), user_agent.original (user agents can carry identifiers),
// client.address and network.peer.address/port (an IP address is PII under
// HIPAA), exception.message and exception.stacktrace (they may quote values),
// and the body sizes (not needed; minimum necessary).
var allowed = map[string]struct{}{
	// HTTP server and client attributes emitted by otelhttp that are safe.
	"http.request.method":       {},
	"http.response.status_code": {},
	"http.route":                {}, // a route template, never a concrete path
	"url.scheme":                {},
	"server.address":            {}, // the gateway or a configured destination
	"server.port":               {},
	"network.protocol.name":     {},
	"network.protocol.version":  {},
	"error.type":                {}, // a Go type name or a status code

	// FHIR processing.
	"fhir.resource_type":     {},
	"fhir.interaction":       {},
	"fhir.bundle.type":       {},
	"fhir.entry_count":       {},
	"fhir.outcome":           {},
	"ingest.kind":            {},
	"ingest.rendered_ahead":  {}, // a count of resources (engine.Speculate)
	"mapping.version":        {},
	"validation.rule":        {},
	"validation.issue_count": {},

	// Delivery to downstream destinations.
	"delivery.destination": {},
	"delivery.attempt":     {},
	"delivery.outcome":     {},

	// Storage.
	"db.system":         {},
	"db.system.name":    {}, // the current semantic-convention name of db.system
	"db.operation.name": {},

	// Gateway.
	"gateway.instance": {},
	"audit.outcome":    {},
	"refusal.rule":     {}, // a rule id of the gateway's published list

	// Go runtime (go.opentelemetry.io/contrib/instrumentation/runtime).
	"go.memory.type": {}, // "stack" or "other"
}

// AllowedAttributes returns, sorted, every span and metric attribute key the
// gateway may emit. Attributes with any other key are removed before export.
func AllowedAttributes() []string {
	keys := make([]string, 0, len(allowed))
	for k := range allowed {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// AttributeAllowed reports whether key is on the allow-list.
func AttributeAllowed(key string) bool {
	_, ok := allowed[key]
	return ok
}

// attributeFilter is the allow-list as an attribute.Filter.
func attributeFilter(kv attribute.KeyValue) bool { return AttributeAllowed(string(kv.Key)) }

// MetricsView returns the view that every MeterProvider built by this package
// installs: it matches all instruments and keeps only allow-listed attribute
// keys.
func MetricsView() sdkmetric.View {
	return sdkmetric.NewView(
		sdkmetric.Instrument{Name: "*"},
		sdkmetric.Stream{AttributeFilter: attributeFilter},
	)
}

// FilterSpanProcessor wraps next so that next (and the exporter behind it)
// only ever sees PHI-safe spans: attributes and link attributes not on the
// allow-list are removed, all events are dropped, the status description is
// cleared (the status code is kept) and tracestate is cleared. Resource and
// instrumentation-scope attributes are kept.
func FilterSpanProcessor(next sdktrace.SpanProcessor) sdktrace.SpanProcessor {
	return &filterProcessor{next: next}
}

type filterProcessor struct {
	next sdktrace.SpanProcessor
}

// OnStart implements sdktrace.SpanProcessor. Processors behind the filter must
// not read span data at start (the SDK's batch and simple processors do not).
func (p *filterProcessor) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	p.next.OnStart(ctx, s)
}

// OnEnd implements sdktrace.SpanProcessor.
func (p *filterProcessor) OnEnd(s sdktrace.ReadOnlySpan) { p.next.OnEnd(filterSpan(s)) }

// Shutdown implements sdktrace.SpanProcessor.
func (p *filterProcessor) Shutdown(ctx context.Context) error { return p.next.Shutdown(ctx) }

// ForceFlush implements sdktrace.SpanProcessor.
func (p *filterProcessor) ForceFlush(ctx context.Context) error { return p.next.ForceFlush(ctx) }

// filteredSpan is a ReadOnlySpan view with PHI-capable data removed. The
// embedded span supplies everything that is not overridden.
type filteredSpan struct {
	sdktrace.ReadOnlySpan
	attrs         []attribute.KeyValue
	droppedAttrs  int
	links         []sdktrace.Link
	droppedEvents int
	status        sdktrace.Status
	sc, parent    trace.SpanContext
}

func filterSpan(s sdktrace.ReadOnlySpan) sdktrace.ReadOnlySpan {
	attrs, dropped := filterAttrs(s.Attributes())
	var links []sdktrace.Link
	for _, l := range s.Links() {
		la, ld := filterAttrs(l.Attributes)
		links = append(links, sdktrace.Link{
			SpanContext:           stripTraceState(l.SpanContext),
			Attributes:            la,
			DroppedAttributeCount: l.DroppedAttributeCount + ld,
		})
	}
	return &filteredSpan{
		ReadOnlySpan:  s,
		attrs:         attrs,
		droppedAttrs:  s.DroppedAttributes() + dropped,
		links:         links,
		droppedEvents: s.DroppedEvents() + len(s.Events()),
		status:        sdktrace.Status{Code: s.Status().Code},
		sc:            stripTraceState(s.SpanContext()),
		parent:        stripTraceState(s.Parent()),
	}
}

// filterAttrs returns the allow-listed attributes of in and how many were
// removed.
func filterAttrs(in []attribute.KeyValue) ([]attribute.KeyValue, int) {
	out := make([]attribute.KeyValue, 0, len(in))
	for _, kv := range in {
		if attributeFilter(kv) {
			out = append(out, kv)
		}
	}
	return out, len(in) - len(out)
}

// stripTraceState removes the W3C tracestate, which is free text set by
// whoever called the gateway.
func stripTraceState(sc trace.SpanContext) trace.SpanContext {
	if sc.TraceState().Len() == 0 {
		return sc
	}
	return sc.WithTraceState(trace.TraceState{})
}

func (s *filteredSpan) SpanContext() trace.SpanContext   { return s.sc }
func (s *filteredSpan) Parent() trace.SpanContext        { return s.parent }
func (s *filteredSpan) Attributes() []attribute.KeyValue { return s.attrs }
func (s *filteredSpan) DroppedAttributes() int           { return s.droppedAttrs }
func (s *filteredSpan) Links() []sdktrace.Link           { return s.links }
func (s *filteredSpan) Events() []sdktrace.Event         { return nil }
func (s *filteredSpan) DroppedEvents() int               { return s.droppedEvents }
func (s *filteredSpan) Status() sdktrace.Status          { return s.status }
