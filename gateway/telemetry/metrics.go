package telemetry

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// MeterName is the instrumentation scope of the gateway's own instruments.
const MeterName = "github.com/ketamine-gateway/ketamine-gateway/gateway"

// Metric instrument names.
const (
	MetricIngestRecords      = "gateway.ingest.records"
	MetricValidationFailures = "gateway.validation.failures"
	MetricDeliveryAttempts   = "gateway.delivery.attempts"
	MetricDeliveryDuration   = "gateway.delivery.duration"
	MetricDeliveryBacklog    = "gateway.delivery.backlog"
	MetricOldestPendingAge   = "gateway.delivery.oldest_pending_age"
	MetricDeliveryDead       = "gateway.delivery.dead"
	MetricDeliveryHeld       = "gateway.delivery.held"
	MetricSettingsDiffering  = "gateway.settings.differing"
	// MetricDeliveryUnsupported counts, by destination, the resource types
	// the gateway sends it that its CapabilityStatement does not list or
	// lists without an interaction the deliveries use;
	// MetricDeliveryUndeclaredFlags those it lists with every interaction
	// but without declaring a flag they rely on true;
	// MetricDeliveryCapabilityFailed is 1 while its capability check fails.
	MetricDeliveryUnsupported      = "gateway.delivery.unsupported_types"
	MetricDeliveryUndeclaredFlags  = "gateway.delivery.undeclared_flags"
	MetricDeliveryCapabilityFailed = "gateway.delivery.capability_check_failed"
)

// Attribute keys recorded by Metrics (all on the allow-list).
const (
	attrIngestKind          = attribute.Key("ingest.kind")
	attrFHIROutcome         = attribute.Key("fhir.outcome")
	attrValidationRule      = attribute.Key("validation.rule")
	attrDeliveryDestination = attribute.Key("delivery.destination")
	attrDeliveryOutcome     = attribute.Key("delivery.outcome")
)

// deliveryBuckets are the histogram bounds of gateway.delivery.duration, in
// seconds.
var deliveryBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// BacklogStat is the delivery backlog of one destination, reported by the
// callback given to Metrics.RegisterBacklog.
type BacklogStat struct {
	// Destination is the configured destination name (not a URL).
	Destination string
	// Pending is the number of records waiting for delivery.
	Pending int64
	// OldestPendingAge is how long the oldest pending record has waited
	// (zero when nothing is pending).
	OldestPendingAge time.Duration
	// Dead is the number of dead letters waiting for an operator.
	Dead int64
	// Held is whether the destination is on hold (after an answer for the
	// whole destination: 429, 503, 401, unreachable): nothing is sent to it.
	Held bool
}

// CapabilityStat is what the delivery worker's capability check found of
// one destination, reported by the callback given to
// Metrics.RegisterCapabilities.
type CapabilityStat struct {
	// Destination is the configured destination name (not a URL).
	Destination string
	// Unsupported is how many resource types the gateway sends the
	// destination its last CapabilityStatement read does not list, or lists
	// without an interaction the deliveries use.
	Unsupported int64
	// UndeclaredFlags is how many it lists with every interaction but
	// without declaring true a flag the deliveries rely on
	// (conditionalCreate, conditionalUpdate, updateCreate).
	UndeclaredFlags int64
	// CheckFailed is whether the last capability check failed (the
	// statement could not be read).
	CheckFailed bool
}

// Metrics holds the gateway's own instruments. Request counts and latencies
// come from otelhttp (ServerHandler, ClientTransport).
//
// Every string argument of its methods becomes an attribute value: pass
// enumerated values (a kind, an outcome, a rule id, a destination name),
// never data from a record. A nil *Metrics is valid and records nothing.
type Metrics struct {
	ingest           metric.Int64Counter
	validation       metric.Int64Counter
	deliveryAttempts metric.Int64Counter
	deliveryDuration metric.Float64Histogram
	backlog          metric.Int64ObservableGauge
	oldestAge        metric.Float64ObservableGauge
	dead             metric.Int64ObservableGauge
	held             metric.Int64ObservableGauge
	settings         metric.Int64ObservableGauge
	unsupported      metric.Int64ObservableGauge
	undeclared       metric.Int64ObservableGauge
	capsFailed       metric.Int64ObservableGauge

	store   storeInstruments
	storeFn atomic.Pointer[func() PoolStat]

	backlogFn   atomic.Pointer[func(context.Context) []BacklogStat]
	settingsFn  atomic.Pointer[func() int64]
	capsFn      atomic.Pointer[func() []CapabilityStat]
	reg         metric.Registration
	settingsReg metric.Registration
	capsReg     metric.Registration
	storeReg    metric.Registration
}

// NewMetrics creates the gateway instruments on mp.
func NewMetrics(mp metric.MeterProvider) (*Metrics, error) {
	meter := mp.Meter(MeterName)
	m := &Metrics{}
	var err, e error
	m.ingest, e = meter.Int64Counter(MetricIngestRecords,
		metric.WithDescription("Records ingested, by ingest kind and FHIR outcome."),
		metric.WithUnit("{record}"))
	err = errors.Join(err, e)
	m.validation, e = meter.Int64Counter(MetricValidationFailures,
		metric.WithDescription("Validation failures, by validation rule."),
		metric.WithUnit("{failure}"))
	err = errors.Join(err, e)
	m.deliveryAttempts, e = meter.Int64Counter(MetricDeliveryAttempts,
		metric.WithDescription("Delivery attempts, by destination and outcome."),
		metric.WithUnit("{attempt}"))
	err = errors.Join(err, e)
	m.deliveryDuration, e = meter.Float64Histogram(MetricDeliveryDuration,
		metric.WithDescription("Duration of delivery attempts, by destination and outcome."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(deliveryBuckets...))
	err = errors.Join(err, e)
	m.backlog, e = meter.Int64ObservableGauge(MetricDeliveryBacklog,
		metric.WithDescription("Records pending delivery, by destination."),
		metric.WithUnit("{record}"))
	err = errors.Join(err, e)
	m.oldestAge, e = meter.Float64ObservableGauge(MetricOldestPendingAge,
		metric.WithDescription("Age of the oldest record pending delivery, by destination."),
		metric.WithUnit("s"))
	err = errors.Join(err, e)
	m.dead, e = meter.Int64ObservableGauge(MetricDeliveryDead,
		metric.WithDescription("Dead letters waiting for an operator, by destination."),
		metric.WithUnit("{record}"))
	err = errors.Join(err, e)
	m.held, e = meter.Int64ObservableGauge(MetricDeliveryHeld,
		metric.WithDescription("1 while the destination is on hold (nothing is sent to it), else 0, by destination."),
		metric.WithUnit("1"))
	err = errors.Join(err, e)
	m.settings, e = meter.Int64ObservableGauge(MetricSettingsDiffering,
		metric.WithDescription("Other live gateways on the database whose settings differ from this one's (docs/deployment.md)."),
		metric.WithUnit("{gateway}"))
	err = errors.Join(err, e)
	m.unsupported, e = meter.Int64ObservableGauge(MetricDeliveryUnsupported,
		metric.WithDescription("Resource types the gateway sends the destination that its CapabilityStatement does not support (not listed, or without an interaction the deliveries use), by destination."),
		metric.WithUnit("{type}"))
	err = errors.Join(err, e)
	m.undeclared, e = meter.Int64ObservableGauge(MetricDeliveryUndeclaredFlags,
		metric.WithDescription("Resource types the destination's CapabilityStatement lists with every interaction the deliveries use but without declaring true a flag they rely on (conditionalCreate, conditionalUpdate, updateCreate), by destination."),
		metric.WithUnit("{type}"))
	err = errors.Join(err, e)
	m.capsFailed, e = meter.Int64ObservableGauge(MetricDeliveryCapabilityFailed,
		metric.WithDescription("1 while the destination's CapabilityStatement cannot be read (the capability check fails), else 0, by destination."),
		metric.WithUnit("1"))
	err = errors.Join(err, e)
	err = errors.Join(err, m.store.create(meter))
	if err != nil {
		return nil, err
	}
	m.reg, err = meter.RegisterCallback(m.observeBacklog, m.backlog, m.oldestAge, m.dead, m.held)
	if err != nil {
		return nil, err
	}
	m.settingsReg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if fn := m.settingsFn.Load(); fn != nil {
			o.ObserveInt64(m.settings, (*fn)())
		}
		return nil
	}, m.settings)
	if err != nil {
		_ = m.reg.Unregister()
		return nil, err
	}
	m.capsReg, err = meter.RegisterCallback(m.observeCapabilities, m.unsupported, m.undeclared, m.capsFailed)
	if err != nil {
		_ = m.reg.Unregister()
		_ = m.settingsReg.Unregister()
		return nil, err
	}
	m.storeReg, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		if fn := m.storeFn.Load(); fn != nil {
			m.store.observe(o, (*fn)())
		}
		return nil
	}, m.store.instruments()...)
	if err != nil {
		_ = m.reg.Unregister()
		_ = m.settingsReg.Unregister()
		return nil, err
	}
	return m, nil
}

// IngestRecord counts one ingested record of the given kind with the given
// FHIR outcome.
func (m *Metrics) IngestRecord(ctx context.Context, kind, outcome string) {
	if m == nil {
		return
	}
	m.ingest.Add(ctx, 1, metric.WithAttributes(attrIngestKind.String(kind), attrFHIROutcome.String(outcome)))
}

// ValidationFailure counts one failure of the given validation rule.
func (m *Metrics) ValidationFailure(ctx context.Context, rule string) {
	if m == nil {
		return
	}
	m.validation.Add(ctx, 1, metric.WithAttributes(attrValidationRule.String(rule)))
}

// DeliveryAttempt counts one delivery attempt to dest with the given outcome
// and records its duration d.
func (m *Metrics) DeliveryAttempt(ctx context.Context, dest, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	attrs := metric.WithAttributeSet(attribute.NewSet(
		attrDeliveryDestination.String(dest), attrDeliveryOutcome.String(outcome)))
	m.deliveryAttempts.Add(ctx, 1, attrs)
	m.deliveryDuration.Record(ctx, d.Seconds(), attrs)
}

// RegisterBacklog sets the function that reports the delivery backlog; it is
// called on every metric collection to feed gateway.delivery.backlog and
// gateway.delivery.oldest_pending_age. It must be fast and safe for
// concurrent use. A later call replaces fn; nil stops reporting.
func (m *Metrics) RegisterBacklog(fn func(context.Context) []BacklogStat) {
	if m == nil {
		return
	}
	if fn == nil {
		m.backlogFn.Store(nil)
		return
	}
	m.backlogFn.Store(&fn)
}

// RegisterSettings sets the function that reports how many other live
// gateways on the database have settings that differ from this one's
// (gateway.settings.differing); nil stops reporting.
func (m *Metrics) RegisterSettings(fn func() int64) {
	if m == nil {
		return
	}
	if fn == nil {
		m.settingsFn.Store(nil)
		return
	}
	m.settingsFn.Store(&fn)
}

// RegisterCapabilities sets the function that reports each destination's
// capability check (gateway.delivery.unsupported_types,
// gateway.delivery.capability_check_failed); nil stops reporting.
func (m *Metrics) RegisterCapabilities(fn func() []CapabilityStat) {
	if m == nil {
		return
	}
	if fn == nil {
		m.capsFn.Store(nil)
		return
	}
	m.capsFn.Store(&fn)
}

// Close unregisters the callbacks from the meter provider.
func (m *Metrics) Close() error {
	if m == nil || m.reg == nil {
		return nil
	}
	return errors.Join(m.reg.Unregister(), m.settingsReg.Unregister(), m.capsReg.Unregister(), m.storeReg.Unregister())
}

func (m *Metrics) observeCapabilities(_ context.Context, o metric.Observer) error {
	fn := m.capsFn.Load()
	if fn == nil {
		return nil
	}
	for _, s := range (*fn)() {
		attrs := metric.WithAttributes(attrDeliveryDestination.String(s.Destination))
		o.ObserveInt64(m.unsupported, s.Unsupported, attrs)
		o.ObserveInt64(m.undeclared, s.UndeclaredFlags, attrs)
		failed := int64(0)
		if s.CheckFailed {
			failed = 1
		}
		o.ObserveInt64(m.capsFailed, failed, attrs)
	}
	return nil
}

func (m *Metrics) observeBacklog(ctx context.Context, o metric.Observer) error {
	fn := m.backlogFn.Load()
	if fn == nil {
		return nil
	}
	for _, s := range (*fn)(ctx) {
		attrs := metric.WithAttributes(attrDeliveryDestination.String(s.Destination))
		o.ObserveInt64(m.backlog, s.Pending, attrs)
		o.ObserveFloat64(m.oldestAge, s.OldestPendingAge.Seconds(), attrs)
		o.ObserveInt64(m.dead, s.Dead, attrs)
		held := int64(0)
		if s.Held {
			held = 1
		}
		o.ObserveInt64(m.held, held, attrs)
	}
	return nil
}
