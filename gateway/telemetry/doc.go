// Package telemetry wires OpenTelemetry tracing and metrics into the gateway
// with protected-health-information (PHI) safety enforced in code.
//
// The gateway handles psychiatric treatment records, so no PHI may ever reach
// a span, a metric or a log. This package guarantees that for spans and
// metrics by construction:
//
//   - Every span passes through a filtering span processor before any
//     exporter sees it (see [FilterSpanProcessor]). It drops every span and
//     link attribute whose key is not on the allow-list ([AllowedAttributes]),
//     drops all span events (exception events quote error messages and stack
//     traces), clears the status description (the status code is kept) and
//     clears the W3C tracestate (client-controlled free text). Resource
//     attributes are kept: they come from the operator.
//   - Every metric stream passes through a view ([MetricsView]) whose
//     attribute filter keeps only allow-listed keys, and exemplars are
//     disabled (an exemplar would carry exactly the attributes the view
//     removed).
//
// Span names are not filtered: the helpers here only ever name spans after
// the HTTP method and the route template ("GET /fhir/Patient/:id"), never
// after a concrete URL. Code that starts its own spans must follow the same
// rule, and must only use allow-listed attribute keys with enumerated values
// (a resource type, an outcome), never data from a record.
//
// Logs are the caller's responsibility: [LogHandler] only adds trace_id and
// span_id for correlation.
//
// # Configuration
//
// [Setup] reads the standard OpenTelemetry environment variables through the
// getenv function it is given (it never calls os.Getenv itself). The OTLP
// exporters, the batch span processor and the SDK additionally read some
// variables straight from the process environment, which is acceptable but
// means those are not routed through getenv:
//
//   - OTEL_EXPORTER_OTLP_HEADERS, OTEL_EXPORTER_OTLP_TIMEOUT,
//     OTEL_EXPORTER_OTLP_COMPRESSION, OTEL_EXPORTER_OTLP_CERTIFICATE,
//     OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE/KEY, OTEL_EXPORTER_OTLP_INSECURE
//     and their _TRACES_/_METRICS_ variants, and
//     OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE (read by the OTLP
//     exporters);
//   - OTEL_BSP_* (read by the batch span processor);
//   - the span limits OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
//     OTEL_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
//     OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, OTEL_SPAN_EVENT_COUNT_LIMIT,
//     OTEL_SPAN_LINK_COUNT_LIMIT, OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT and
//     OTEL_LINK_ATTRIBUTE_COUNT_LIMIT (read by the trace SDK).
//
// None of these can make PHI reach an exporter: filtering happens after them.
//
// Variables that Setup itself interprets override whatever the SDK would have
// read: the sampler, the resource, the endpoints, the protocol, the metric
// export interval/timeout and the exemplar filter (always off).
//
// OTEL_METRICS_EXPORTER=prometheus builds the Prometheus pull exporter on a
// registry of its own (never the client library's default registry) and
// reads OTEL_EXPORTER_PROMETHEUS_HOST / OTEL_EXPORTER_PROMETHEUS_PORT
// (default 127.0.0.1:9464); the caller serves [Telemetry.PrometheusHandler]
// on [Telemetry.PrometheusAddr], apart from the FHIR listener.
//
// Unlike the OpenTelemetry specification, which asks SDKs to ignore invalid
// values, Setup fails on an unknown exporter, sampler or protocol name, or on
// a malformed endpoint: a typo must not silently disable (or redirect)
// telemetry of a production PHI gateway.
//
// Setup never installs the otel globals (otel.SetTracerProvider and friends);
// the caller may do so with the providers a [Telemetry] exposes.
package telemetry
