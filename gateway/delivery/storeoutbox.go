package delivery

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// StoreOutbox adapts the store's outbox (store.Outbox, kept by the SQLite
// and PostgreSQL stores) to Outbox and Backlogger, so the gateway wires a
// Worker as
//
//	ob, _ := st.(store.Outbox)
//	w, err := delivery.NewWorker(delivery.StoreOutbox{Store: ob}, dests, opts)
type StoreOutbox struct {
	Store store.Outbox
}

var (
	_ Outbox     = StoreOutbox{}
	_ Backlogger = StoreOutbox{}
)

// Claim implements Outbox.
func (s StoreOutbox) Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]Item, error) {
	items, err := s.Store.Claim(ctx, destination, now, lease, limit)
	if err != nil {
		return nil, err
	}
	out := make([]Item, len(items))
	for i, it := range items {
		out[i] = Item{ID: it.ID, Destination: it.Destination, OrderKey: it.OrderKey, Patient: it.Patient,
			Kind: it.Kind, Source: it.Source, RecordID: it.RecordID, Version: it.Version, TraceID: it.TraceID,
			Payload: it.Payload, Attempts: it.Attempts, NextAttempt: it.NextAttempt, Created: it.Created}
	}
	return out, nil
}

// Complete implements Outbox; the store's ErrNotFound (absent or not in
// flight) becomes ErrNotInFlight.
func (s StoreOutbox) Complete(ctx context.Context, id int64, a Attempt, next Status, nextAttempt time.Time) error {
	err := s.Store.Complete(ctx, &store.Attempt{ItemID: id, N: a.N, At: a.At, Duration: a.Duration,
		HTTPStatus: a.HTTPStatus, Outcome: a.Outcome, TraceID: a.TraceID, Error: a.Error}, string(next), nextAttempt)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("item %d: %w", id, ErrNotInFlight)
	}
	return err
}

// Backlog implements Backlogger from store.Outbox.Stats, which does not
// tell pending from in-flight items: Pending counts both, and InFlight and
// Due are 0.
func (s StoreOutbox) Backlog(ctx context.Context, destination string, now time.Time) (Backlog, error) {
	stats, err := s.Store.Stats(ctx)
	if err != nil {
		return Backlog{}, err
	}
	for _, st := range stats {
		if st.Destination == destination {
			return Backlog{Pending: st.Pending, Dead: st.Dead, Oldest: st.OldestPending}, nil
		}
	}
	return Backlog{}, nil
}
