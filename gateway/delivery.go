package gateway

import (
	"context"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// DeliveryOutbox returns the store's outbox for the delivery worker, or
// false for a store that keeps no outbox.
func DeliveryOutbox(st store.Store) (delivery.Outbox, bool) {
	ob, ok := st.(store.Outbox)
	if !ok {
		return nil, false
	}
	return ob, true
}

// DeliveryObserver bridges the worker's events to OpenTelemetry metrics.
type DeliveryObserver struct{ Metrics *telemetry.Metrics }

// OnAttempt implements delivery.Observer.
func (o DeliveryObserver) OnAttempt(dest, outcome string, d time.Duration) {
	o.Metrics.DeliveryAttempt(context.Background(), dest, outcome, d)
}

// OnBacklog implements delivery.Observer (the backlog gauges read the
// store directly, see RegisterBacklog).
func (o DeliveryObserver) OnBacklog(store.DestinationStats) {}

// Routes turns destinations into the write path's routes.
func Routes(dests []delivery.Destination) []Route {
	out := make([]Route, len(dests))
	for i, d := range dests {
		out[i] = Route{Name: d.Name, Accepts: d.Accepts, AcceptsTenant: d.AcceptsTenant}
	}
	return out
}
