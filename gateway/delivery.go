package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/delivery"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// DeliveryOutbox adapts the store's outbox to the delivery worker. It
// returns false for a store that keeps no outbox.
func DeliveryOutbox(st store.Store) (delivery.Outbox, bool) {
	ob, ok := st.(store.Outbox)
	if !ok {
		return nil, false
	}
	return outboxAdapter{ob}, true
}

// outboxAdapter implements delivery.Outbox over store.Outbox.
type outboxAdapter struct{ ob store.Outbox }

func (a outboxAdapter) Claim(ctx context.Context, dest string, now time.Time, lease time.Duration, limit int) ([]delivery.Item, error) {
	items, err := a.ob.Claim(ctx, dest, now, lease, limit)
	if err != nil {
		return nil, err
	}
	out := make([]delivery.Item, len(items))
	for i, it := range items {
		out[i] = delivery.Item{ID: it.ID, Destination: it.Destination, OrderKey: it.OrderKey, Patient: it.Patient,
			Kind: it.Kind, Source: it.Source, RecordID: it.RecordID, Version: it.Version, Payload: it.Payload,
			Attempts: it.Attempts, NextAttempt: it.NextAttempt, Created: it.Created}
	}
	return out, nil
}

func (a outboxAdapter) Complete(ctx context.Context, id int64, at delivery.Attempt, next delivery.Status, nextAttempt time.Time) error {
	var status string
	switch next {
	case delivery.Done:
		status = store.StatusDone
	case delivery.Dead:
		status = store.StatusDead
	case delivery.Pending:
		status = store.StatusPending
	default:
		return fmt.Errorf("complete delivery %d: invalid next status %q", id, next)
	}
	err := a.ob.Complete(ctx, &store.Attempt{ItemID: id, At: at.At, Duration: at.Duration, HTTPStatus: at.HTTPStatus,
		Outcome: at.Outcome, TraceID: at.TraceID, Error: at.Error}, status, nextAttempt)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("complete delivery %d: %w", id, delivery.ErrNotInFlight)
	}
	return err
}

// Backlog implements delivery.Backlogger, feeding the backlog metrics.
func (a outboxAdapter) Backlog(ctx context.Context, dest string, _ time.Time) (delivery.Backlog, error) {
	stats, err := a.ob.Stats(ctx)
	if err != nil {
		return delivery.Backlog{}, err
	}
	for _, st := range stats {
		if st.Destination == dest {
			return delivery.Backlog{Pending: st.Pending, Dead: st.Dead, Oldest: st.OldestPending}, nil
		}
	}
	return delivery.Backlog{}, nil
}

// DeliveryObserver bridges the worker's events to OpenTelemetry metrics.
type DeliveryObserver struct{ Metrics *telemetry.Metrics }

// OnAttempt implements delivery.Observer.
func (o DeliveryObserver) OnAttempt(dest, outcome string, d time.Duration) {
	o.Metrics.DeliveryAttempt(context.Background(), dest, outcome, d)
}

// OnBacklog implements delivery.Observer (the backlog gauges read the
// store directly, see RegisterBacklog).
func (o DeliveryObserver) OnBacklog(string, delivery.Backlog) {}

// Routes turns destinations into the write path's routes.
func Routes(dests []delivery.Destination) []Route {
	out := make([]Route, len(dests))
	for i, d := range dests {
		out[i] = Route{Name: d.Name, Accepts: d.Accepts}
	}
	return out
}
