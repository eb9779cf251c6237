package telemetry

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Environment variables interpreted by Setup.
const (
	envSDKDisabled        = "OTEL_SDK_DISABLED"
	envServiceName        = "OTEL_SERVICE_NAME"
	envResourceAttributes = "OTEL_RESOURCE_ATTRIBUTES"
	envTracesExporter     = "OTEL_TRACES_EXPORTER"
	envMetricsExporter    = "OTEL_METRICS_EXPORTER"
	envEndpoint           = "OTEL_EXPORTER_OTLP_ENDPOINT"
	envTracesEndpoint     = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	envMetricsEndpoint    = "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"
	envProtocol           = "OTEL_EXPORTER_OTLP_PROTOCOL"
	envTracesProtocol     = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	envMetricsProtocol    = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"
	envSampler            = "OTEL_TRACES_SAMPLER"
	envSamplerArg         = "OTEL_TRACES_SAMPLER_ARG"
	envMetricInterval     = "OTEL_METRIC_EXPORT_INTERVAL"
	envMetricTimeout      = "OTEL_METRIC_EXPORT_TIMEOUT"
	envPrometheusHost     = "OTEL_EXPORTER_PROMETHEUS_HOST"
	envPrometheusPort     = "OTEL_EXPORTER_PROMETHEUS_PORT"
)

// Defaults of the Prometheus exporter's listen address (the OpenTelemetry
// specification's port; the host is loopback, not the specification's
// "localhost", so that it never resolves to another interface).
const (
	defaultPrometheusHost = "127.0.0.1"
	defaultPrometheusPort = "9464"
)

// DefaultServiceName is the service.name used when neither OTEL_SERVICE_NAME
// nor a service.name entry in OTEL_RESOURCE_ATTRIBUTES is set.
const DefaultServiceName = "ketamine-gateway"

// Exporter and protocol names accepted in the environment.
const (
	exporterOTLP    = "otlp"
	exporterConsole = "console"
	exporterNone    = "none"
	// exporterPrometheus is a pull exporter: metrics only, served on
	// their own listener (PrometheusAddr).
	exporterPrometheus = "prometheus"

	protocolHTTPProtobuf = "http/protobuf"
	protocolGRPC         = "grpc"
)

// signal describes the per-signal environment variables.
type signal struct {
	name             string // "traces" or "metrics"
	exporterVar      string
	endpointVar      string
	protocolVar      string
	defaultHTTPPath  string
	defaultEndpoints []string // variables whose presence makes otlp the default
}

var (
	tracesSignal = signal{
		name:             "traces",
		exporterVar:      envTracesExporter,
		endpointVar:      envTracesEndpoint,
		protocolVar:      envTracesProtocol,
		defaultHTTPPath:  "/v1/traces",
		defaultEndpoints: []string{envEndpoint, envTracesEndpoint},
	}
	metricsSignal = signal{
		name:             "metrics",
		exporterVar:      envMetricsExporter,
		endpointVar:      envMetricsEndpoint,
		protocolVar:      envMetricsProtocol,
		defaultHTTPPath:  "/v1/metrics",
		defaultEndpoints: []string{envEndpoint, envMetricsEndpoint},
	}
)

// env wraps getenv with whitespace trimming.
type env func(string) string

func (e env) get(key string) string { return strings.TrimSpace(e(key)) }

// sdkDisabled reports whether OTEL_SDK_DISABLED is "true" (case-insensitive);
// any other value, including an invalid one, means enabled (per the spec).
func sdkDisabled(e env) bool {
	return strings.EqualFold(e.get(envSDKDisabled), "true")
}

// exporters returns the exporter names selected for sig. When the variable is
// unset, the gateway default applies: "otlp" if an OTLP endpoint variable
// for the signal is set, "none" otherwise (so no collector is needed by
// default). A comma-separated list ("otlp,console") is accepted. An empty
// result means no exporter.
func exporters(e env, sig signal) ([]string, error) {
	raw := e.get(sig.exporterVar)
	if raw == "" {
		for _, v := range sig.defaultEndpoints {
			if e.get(v) != "" {
				return []string{exporterOTLP}, nil
			}
		}
		return nil, nil
	}
	var names []string
	none := false
	for _, part := range strings.Split(raw, ",") {
		name := strings.ToLower(strings.TrimSpace(part))
		switch name {
		case "":
			continue
		case exporterNone:
			none = true
		case exporterOTLP, exporterConsole:
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		case exporterPrometheus:
			if sig.name != metricsSignal.name {
				return nil, fmt.Errorf("telemetry: %s: unsupported exporter %q (prometheus exports metrics only; want otlp, console or none)", sig.exporterVar, name)
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		default:
			if sig.name == metricsSignal.name {
				return nil, fmt.Errorf("telemetry: %s: unsupported exporter %q (want otlp, prometheus, console or none)", sig.exporterVar, name)
			}
			return nil, fmt.Errorf("telemetry: %s: unsupported exporter %q (want otlp, console or none)", sig.exporterVar, name)
		}
	}
	if none && len(names) > 0 {
		return nil, fmt.Errorf("telemetry: %s: %q combines none with other exporters", sig.exporterVar, raw)
	}
	return names, nil
}

// protocol returns the OTLP protocol for sig: the signal-specific variable,
// else OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf. http/json is not
// supported by the Go exporters.
func protocol(e env, sig signal) (string, error) {
	p := e.get(sig.protocolVar)
	src := sig.protocolVar
	if p == "" {
		p, src = e.get(envProtocol), envProtocol
	}
	switch strings.ToLower(p) {
	case "", protocolHTTPProtobuf:
		return protocolHTTPProtobuf, nil
	case protocolGRPC:
		return protocolGRPC, nil
	default:
		return "", fmt.Errorf("telemetry: %s: unsupported OTLP protocol %q (want http/protobuf or grpc)", src, p)
	}
}

// endpointURL returns the endpoint URL to pass to the OTLP exporter of sig,
// or "" to let the exporter use its own default. The signal-specific
// variable is used as is; the generic one gets the signal path appended for
// http/protobuf (as the specification requires) and is used as is for gRPC.
func endpointURL(e env, sig signal, proto string) (string, error) {
	raw, src := e.get(sig.endpointVar), sig.endpointVar
	generic := false
	if raw == "" {
		raw, src, generic = e.get(envEndpoint), envEndpoint, true
	}
	if raw == "" {
		return "", nil
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// Do not echo the value: it may embed credentials.
		return "", fmt.Errorf("telemetry: %s: want an absolute http:// or https:// URL", src)
	}
	if generic && proto == protocolHTTPProtobuf {
		u.Path = strings.TrimSuffix(u.Path, "/") + sig.defaultHTTPPath
		u.RawPath = ""
	}
	return u.String(), nil
}

// sampler parses OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG. The default
// is parentbased_always_on. The ratio argument defaults to 1.0 and must lie in
// [0, 1].
func sampler(e env) (sdktrace.Sampler, error) {
	name := strings.ToLower(e.get(envSampler))
	ratio := func() (float64, error) {
		arg := e.get(envSamplerArg)
		if arg == "" {
			return 1, nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return 0, fmt.Errorf("telemetry: %s: %q is not a ratio in [0, 1]", envSamplerArg, arg)
		}
		return f, nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.TraceIDRatioBased(r), nil
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("telemetry: %s: unsupported sampler %q", envSampler, name)
	}
}

// resourceAttributes parses OTEL_RESOURCE_ATTRIBUTES ("k1=v1,k2=v2", values
// percent-decoded) and applies OTEL_SERVICE_NAME and the default service
// name. service.name always comes last so it wins.
func resourceAttributes(e env) ([]attribute.KeyValue, error) {
	var attrs []attribute.KeyValue
	service := ""
	if raw := e.get(envResourceAttributes); raw != "" {
		for _, pair := range strings.Split(raw, ",") {
			if strings.TrimSpace(pair) == "" {
				continue
			}
			k, v, ok := strings.Cut(pair, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("telemetry: %s: malformed entry (want key=value)", envResourceAttributes)
			}
			val, err := url.PathUnescape(strings.TrimSpace(v))
			if err != nil {
				return nil, fmt.Errorf("telemetry: %s: bad percent-encoding for key %q", envResourceAttributes, k)
			}
			if k == "service.name" {
				service = val
				continue
			}
			attrs = append(attrs, attribute.String(k, val))
		}
	}
	if s := e.get(envServiceName); s != "" {
		service = s
	}
	if service == "" {
		service = DefaultServiceName
	}
	return append(attrs, attribute.String("service.name", service)), nil
}

// millis parses a duration given in integer milliseconds, falling back to def
// when the variable is unset.
func millis(e env, key string, def time.Duration) (time.Duration, error) {
	raw := e.get(key)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("telemetry: %s: %q is not a positive number of milliseconds", key, raw)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// prometheusAddr returns the listen address of the Prometheus exporter from
// OTEL_EXPORTER_PROMETHEUS_HOST and OTEL_EXPORTER_PROMETHEUS_PORT (default
// 127.0.0.1:9464). The port must be a number from 0 to 65535 (0: any free
// port, for tests).
func prometheusAddr(e env) (string, error) {
	host := e.get(envPrometheusHost)
	if host == "" {
		host = defaultPrometheusHost
	}
	if strings.ContainsAny(host, "/ ") {
		return "", fmt.Errorf("telemetry: %s: want a host name or IP address", envPrometheusHost)
	}
	port := e.get(envPrometheusPort)
	if port == "" {
		port = defaultPrometheusPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", fmt.Errorf("telemetry: %s: %q is not a port number (0 to 65535)", envPrometheusPort, port)
	}
	return net.JoinHostPort(strings.Trim(host, "[]"), port), nil
}
