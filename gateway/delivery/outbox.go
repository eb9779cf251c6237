package delivery

import (
	"context"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// MaxOutcome is the largest store.Attempt.Outcome the worker records (64
// KiB).
const MaxOutcome = store.MaxAttemptOutcome

// Outbox is what the worker uses of the store's outbox: the SQLite and
// PostgreSQL stores implement it as they are (every store.Outbox is one).
// The worker relies on the contract below. All methods must be safe for
// concurrent use, also by several worker processes sharing one database.
type Outbox interface {
	// Claim returns up to limit items of destination that are claimable at
	// now, and marks them in flight (store.StatusInFlight) with a lease
	// ending at now+lease, atomically (two concurrent Claims never return
	// the same item while its lease runs). An item is claimable when
	//
	//   - it is pending with NextAttempt <= now, or in flight with its
	//     lease ended (its worker crashed or stalled), and
	//   - no item of the same Destination, Tenant and OrderKey with a
	//     smaller ID is pending (due or not) or in flight (lease ended or
	//     not). Done and dead items never block.
	//
	// An in-flight item whose lease ended is returned with LastError
	// store.LeaseEnded and NextAttempt the time of the claim that lapsed
	// (the worker records that attempt: it may have been sent).
	//
	// So at most one item per order key is in flight, and it is the
	// earliest live one. Claim uses the now it is given, not the
	// database's clock, and does not change Attempts. Any order of the
	// claimable items is correct. Returning no items is not an error.
	Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]*store.OutboxItem, error)

	// Renew extends to until the leases of those of ids still in flight
	// and returns their ids: the worker renews the claims of the attempts
	// it is running, so a short lease finds a crashed worker's claims soon,
	// and the ids it does not get back are the attempts no longer in flight.
	Renew(ctx context.Context, ids []int64, until time.Time) ([]int64, error)

	// Complete records attempt a of item a.ItemID and moves the item to
	// status:
	//
	//   - store.StatusDone or store.StatusDead: final; the item stops
	//     blocking its order key.
	//   - store.StatusPending: retried when nextAttempt has come (it
	//     becomes NextAttempt); the item keeps blocking its order key.
	//
	// In the same database transaction it appends a to the item's
	// attempts, increments Attempts, sets a.N to the new count and ends
	// the lease. It returns store.ErrNotFound and changes nothing when the
	// item does not exist or is not in flight, so a late completion never
	// reopens a done or dead item; once a later Claim of the destination
	// has found the lease ended, a completion of that attempt may be
	// refused the same way (the item is sent again). Status
	// store.StatusInFlight is invalid.
	Complete(ctx context.Context, a *store.Attempt, status string, nextAttempt time.Time) error

	// Stats reports the backlog of each destination that has items, for
	// Observer.OnBacklog.
	Stats(ctx context.Context) ([]store.DestinationStats, error)
}

// Every store outbox is an Outbox.
var _ Outbox = store.Outbox(nil)
