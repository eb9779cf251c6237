package delivery

import (
	"context"
	"errors"
	"time"
)

// Status is the state of an outbox item. Its values are stable strings
// meant to be stored as they are (e.g. in a TEXT column).
type Status string

// The states of an outbox item. Pending and InFlight are live; Done and
// Dead are final.
const (
	// Pending: waiting to be claimed once NextAttempt has come.
	Pending Status = "pending"
	// InFlight: claimed by a worker until its lease ends.
	InFlight Status = "inflight"
	// Done: delivered; final.
	Done Status = "done"
	// Dead: given up (a permanent rejection, MaxAttempts or MaxAge);
	// final. A dead letter never blocks later items of its OrderKey.
	Dead Status = "dead"
)

// Valid reports whether s is one of the four states.
func (s Status) Valid() bool {
	switch s {
	case Pending, InFlight, Done, Dead:
		return true
	}
	return false
}

// MaxOutcome is the largest Attempt.Outcome the worker records (64 KiB).
const MaxOutcome = 64 << 10

// ErrNotInFlight is returned (wrapped or as is) by Outbox.Complete when the
// item does not exist or is not in flight (it was already completed). The
// worker logs it and carries on.
var ErrNotInFlight = errors.New("delivery: outbox item is not in flight")

// Item is one Bundle to deliver to one destination.
type Item struct {
	// ID is assigned by the outbox, increasing in enqueue order. Within an
	// OrderKey a smaller ID is an earlier version.
	ID int64
	// Destination is the Destination.Name the item is for.
	Destination string
	// OrderKey groups the versions of one record (source|kind|recordId):
	// an item is claimed only when no earlier item of its key and
	// destination is pending or in flight.
	OrderKey string
	// Patient is the clinic's patient key (PHI: never logged here).
	Patient string
	// Kind, Source, RecordID and Version describe the native record.
	Kind, Source, RecordID, Version string
	// TraceID is the trace of the request that stored the record, if
	// known (for linking an attempt's span to it).
	TraceID string
	// Payload is the FHIR transaction Bundle JSON.
	Payload []byte
	// Attempts is the number of attempts recorded so far by Complete.
	Attempts int
	// NextAttempt is when the item becomes due.
	NextAttempt time.Time
	// Created is when the item was enqueued (MaxAge counts from it).
	Created time.Time
}

// Attempt is the record of one delivery attempt of an item.
type Attempt struct {
	// N is the attempt number, 1 for the first (Item.Attempts+1 at claim).
	N int
	// At is when the attempt started, Duration how long it took.
	At       time.Time
	Duration time.Duration
	// HTTPStatus is the decisive HTTP status (for batch and single mode,
	// of the request that decided the outcome), 0 without an answer.
	HTTPStatus int
	// Outcome is the EHR's answer, at most MaxOutcome bytes: the
	// transaction-response (or a synthesized one in batch and single
	// mode) on success, the OperationOutcome or a response excerpt on
	// failure. It may contain what the EHR echoes of the record.
	Outcome []byte
	// TraceID is WorkerOptions.TraceID of the attempt's context.
	TraceID string
	// Error is a PHI-free reason, empty on success: "http 503",
	// "connection refused", "timeout", "response is not a
	// transaction-response", ...
	Error string
}

// Backlog is a summary of one destination's outbox, for metrics.
type Backlog struct {
	// Pending counts pending items, due or not; InFlight claimed items;
	// Dead dead letters.
	Pending, InFlight, Dead int
	// Due counts pending items whose NextAttempt has come.
	Due int
	// Oldest is the Created time of the oldest pending or in-flight item
	// (zero when there is none).
	Oldest time.Time
}

// Outbox is the durable queue the worker delivers from. It is implemented
// by the store (SQLite, PostgreSQL), and in the tests by an in-memory
// outbox. All methods must be safe for concurrent use, also by
// several worker processes sharing one database.
type Outbox interface {
	// Claim returns up to limit items of destination that are claimable at
	// now, and marks them InFlight with a lease ending at now+lease,
	// atomically (two concurrent Claims never return the same item while
	// its lease runs). An item is claimable when
	//
	//   - it is Pending with NextAttempt <= now, or InFlight with its lease
	//     ended (its worker crashed or stalled), and
	//   - no item of the same Destination and OrderKey with a smaller ID
	//     is Pending (due or not) or InFlight (lease ended or not). Done
	//     and Dead items never block.
	//
	// So at most one item per OrderKey is in flight, and it is the
	// earliest live one. Claim does not change Attempts. Items should come
	// oldest first (by NextAttempt, then ID) so that none starves. Returning
	// no items is not an error.
	Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]Item, error)

	// Complete records attempt a of item id and moves it to next:
	//
	//   - Done or Dead: final; the item stops blocking its OrderKey.
	//   - Pending: retried when nextAttempt has come (NextAttempt =
	//     nextAttempt); it keeps blocking its OrderKey.
	//
	// In the same database transaction it appends a to the item's attempt
	// history and increments Attempts. It must return ErrNotInFlight
	// and change nothing when the item does not exist or is not InFlight
	// (a Done or Dead item is never reopened by a late Complete). next
	// InFlight is invalid. A Complete after the lease ended but before
	// another Claim is applied normally.
	Complete(ctx context.Context, id int64, a Attempt, next Status, nextAttempt time.Time) error
}

// Backlogger is optionally implemented by an Outbox to report its backlog;
// the worker then calls it every WorkerOptions.BacklogInterval and passes
// the result to Observer.OnBacklog.
type Backlogger interface {
	Backlog(ctx context.Context, destination string, now time.Time) (Backlog, error)
}
