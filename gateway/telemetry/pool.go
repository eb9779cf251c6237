package telemetry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/runtime"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Instrument names of the store's connections and write queue, and of the
// requests refused for back-pressure.
const (
	MetricPoolInUse        = "gateway.db.pool.in_use"
	MetricPoolIdle         = "gateway.db.pool.idle"
	MetricPoolOpen         = "gateway.db.pool.open"
	MetricPoolMax          = "gateway.db.pool.max"
	MetricPoolWaits        = "gateway.db.pool.waits"
	MetricPoolWaitDuration = "gateway.db.pool.wait_duration"
	MetricPoolCanceled     = "gateway.db.pool.canceled"
	MetricWriteQueueDepth  = "gateway.db.write_queue.depth"
	MetricWriteQueueMax    = "gateway.db.write_queue.max"
	MetricWriteLanesBusy   = "gateway.db.write_lanes.busy"
	MetricWriteLanes       = "gateway.db.write_lanes.max"
	MetricRequestsRefused  = "gateway.requests.refused"
)

// attrRefusalRule is the rule id a refused request was answered with.
const attrRefusalRule = attribute.Key("refusal.rule")

// PoolStat is what the store reports of its connections and its write
// queue, read at every metric collection (RegisterStore). Counts that only
// grow (Waits, WaitDuration, Canceled) are totals since the store opened.
type PoolStat struct {
	// InUse, Idle, Open and Max are the read pool's connections: taken by
	// a caller, idle, open (in use + idle + being opened) and the most it
	// opens. (PostgreSQL: the pgxpool; SQLite: the readers.)
	InUse, Idle, Open, Max int64
	// Waits counts the acquires that found no idle connection and waited;
	// WaitDuration is the time they waited, in total; Canceled counts the
	// acquires given up (their context ended: the acquire timeout, the
	// client gone) before a connection was free.
	Waits        int64
	WaitDuration time.Duration
	Canceled     int64
	// WriteQueue is the number of write transactions waiting for a write
	// lane; WriteQueueMax is the depth at which writes are refused with
	// 503 store-busy. WriteLanesBusy of WriteLanes lanes are running.
	WriteQueue, WriteQueueMax  int64
	WriteLanesBusy, WriteLanes int64
}

// storeInstruments are the observable instruments fed by RegisterStore, and
// the refusal counter.
type storeInstruments struct {
	inUse, idle, open, max       metric.Int64ObservableGauge
	waits, canceled              metric.Int64ObservableCounter
	waitDuration                 metric.Float64ObservableCounter
	queue, queueMax, busy, lanes metric.Int64ObservableGauge
	refused                      metric.Int64Counter
}

func (si *storeInstruments) create(meter metric.Meter) error {
	var err, e error
	gauge := func(name, desc, unit string) metric.Int64ObservableGauge {
		var g metric.Int64ObservableGauge
		g, e = meter.Int64ObservableGauge(name, metric.WithDescription(desc), metric.WithUnit(unit))
		err = errors.Join(err, e)
		return g
	}
	si.inUse = gauge(MetricPoolInUse, "Database connections taken by a caller.", "{connection}")
	si.idle = gauge(MetricPoolIdle, "Database connections open and idle.", "{connection}")
	si.open = gauge(MetricPoolOpen, "Database connections open (in use, idle or being opened).", "{connection}")
	si.max = gauge(MetricPoolMax, "The most database connections the pool opens.", "{connection}")
	si.queue = gauge(MetricWriteQueueDepth, "Write transactions waiting for a write lane.", "{transaction}")
	si.queueMax = gauge(MetricWriteQueueMax, "Write queue depth at which writes are refused (503 store-busy).", "{transaction}")
	si.busy = gauge(MetricWriteLanesBusy, "Write lanes running a batch of write transactions.", "{lane}")
	si.lanes = gauge(MetricWriteLanes, "Write lanes (concurrent write transactions).", "{lane}")
	si.waits, e = meter.Int64ObservableCounter(MetricPoolWaits,
		metric.WithDescription("Connection acquires that found no idle connection and waited."),
		metric.WithUnit("{acquire}"))
	err = errors.Join(err, e)
	si.canceled, e = meter.Int64ObservableCounter(MetricPoolCanceled,
		metric.WithDescription("Connection acquires given up before a connection was free (acquire timeout, client gone)."),
		metric.WithUnit("{acquire}"))
	err = errors.Join(err, e)
	si.waitDuration, e = meter.Float64ObservableCounter(MetricPoolWaitDuration,
		metric.WithDescription("Total time connection acquires waited for a free connection."),
		metric.WithUnit("s"))
	err = errors.Join(err, e)
	si.refused, e = meter.Int64Counter(MetricRequestsRefused,
		metric.WithDescription("Requests refused for back-pressure or an unavailable dependency (503, 429), by the rule answered (store-busy, store-unavailable, search-concurrency-limit, search-too-costly, ...)."),
		metric.WithUnit("{request}"))
	err = errors.Join(err, e)
	if err != nil {
		return errors.Join(errors.New("telemetry: store instruments"), err)
	}
	return nil
}

func (si *storeInstruments) instruments() []metric.Observable {
	return []metric.Observable{si.inUse, si.idle, si.open, si.max, si.waits, si.canceled, si.waitDuration,
		si.queue, si.queueMax, si.busy, si.lanes}
}

func (si *storeInstruments) observe(o metric.Observer, st PoolStat) {
	o.ObserveInt64(si.inUse, st.InUse)
	o.ObserveInt64(si.idle, st.Idle)
	o.ObserveInt64(si.open, st.Open)
	o.ObserveInt64(si.max, st.Max)
	o.ObserveInt64(si.waits, st.Waits)
	o.ObserveInt64(si.canceled, st.Canceled)
	o.ObserveFloat64(si.waitDuration, st.WaitDuration.Seconds())
	o.ObserveInt64(si.queue, st.WriteQueue)
	o.ObserveInt64(si.queueMax, st.WriteQueueMax)
	o.ObserveInt64(si.busy, st.WriteLanesBusy)
	o.ObserveInt64(si.lanes, st.WriteLanes)
}

// RegisterStore sets the function that reports the store's connections and
// write queue; it is called at every metric collection (it must be cheap:
// counters read under a lock, no query). A later call replaces fn; nil
// stops reporting.
func (m *Metrics) RegisterStore(fn func() PoolStat) {
	if m == nil {
		return
	}
	if fn == nil {
		m.storeFn.Store(nil)
		return
	}
	m.storeFn.Store(&fn)
}

// Refused counts one request refused with the given rule (an id of the
// gateway's rule list, never free text).
func (m *Metrics) Refused(ctx context.Context, rule string) {
	if m == nil {
		return
	}
	m.store.refused.Add(ctx, 1, metric.WithAttributes(attrRefusalRule.String(rule)))
}

// StartRuntime adds the Go runtime's instruments to mp (go.goroutine.count,
// go.memory.used, go.memory.gc.goal, go.memory.allocated, ...: the
// OpenTelemetry semantic conventions), read at collection.
func StartRuntime(mp metric.MeterProvider) error {
	if err := runtime.Start(runtime.WithMeterProvider(mp)); err != nil {
		return fmt.Errorf("telemetry: runtime metrics: %w", err)
	}
	return nil
}
