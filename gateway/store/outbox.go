package store

import (
	"context"
	"fmt"
	"time"
)

// Delivery statuses of an outbox item.
const (
	StatusPending  = "pending"
	StatusInFlight = "inflight"
	StatusDone     = "done"
	StatusDead     = "dead"
)

// Refused begins the LastError of a dead letter refused as its record
// was stored (its payload empty: it was never meant to be sent), followed
// by the rule id and the reason. Retry refuses such a dead letter
// (operator), and the worker dead-letters an empty payload again.
const Refused = "refused when stored: "

// WithheldWithdrawal begins the LastError (after Refused) of the dead
// letter that stands, at a destination that never had a record, for the
// record's withdrawal not sent there: unlike other dead letters, it
// supersedes the record's earlier dead letters there (Retry), so that
// none is sent without its withdrawal.
const WithheldWithdrawal = Refused + "record.withdrawn-not-delivered"

// Withheld is the whole LastError of such a dead letter, whether the ingest
// withholds the withdrawal as it is stored or the worker as it is sent.
const Withheld = WithheldWithdrawal + ": not sent: this destination never received the record it withdraws (every " +
	"earlier delivery of it there is a dead letter the EHR applied none of, or the destination was added since); a " +
	"withdrawal would give the EHR the patient and the record's values it never had"

// NotSent begins the error of an attempt that ended before any request
// left (the destination's filter no longer accepts the record, it has
// nothing to send, or it carries an MRN the destination does not know),
// followed by why: the delivery worker writes it, and audit verify looks
// for no delivery-send AuditEvent of such an attempt (no transmission).
const NotSent = "not sent: "

// ClaimGrace is how long after an in-flight item's claim ran out, by the
// caller's clock, Cancel waits before it takes the item (and the
// operator shows the claim as lapsed). The claim's end was written from
// the claiming gateway's clock (its lease, renewed ahead while its attempt
// runs), the lapse is judged by the caller's (a CLI host, another
// gateway): a caller whose clock is ahead would otherwise take a live
// worker's claim, and that worker's attempt, which may reach the EHR,
// would end on a cancelled dead letter sent again by a later retry. The
// hosts' clocks are assumed synchronised (NTP) to well within it
// (docs/deployment.md).
const ClaimGrace = time.Minute

// An item may have reached its destination (MayHaveReached) when it is
// not dead, or is a dead letter one of whose attempts the EHR may have
// applied anyway: it answered 2xx (a transaction-response with a failed
// entry: an EHR that did not apply it atomically holds the other
// entries), 409 (still processing an earlier attempt) or 504 (a proxy gave
// up waiting for it), or no answer came after the request left (an error
// beginning with one of AmbiguousErrors: a timeout, a connection reset or
// closed, a worker that stopped during the attempt). A refusal (another
// 4xx or 5xx) or a request that never left (connection refused, DNS, TLS,
// not sent) is not. The SQL stores judge it in one predicate.

// AmbiguousErrors begin the errors of attempts that got no answer after
// their request left (the delivery worker's reasons).
var AmbiguousErrors = []string{"timeout", "network error", "connection reset", "connection closed", "cancelled", "interrupted"}

// LeaseEnded is the LastError Claim gives an in-flight item whose lease
// ran out (its worker stopped, or could not record its attempt): that
// attempt may have reached the destination and has no attempt row. Claim
// then also sets the item's NextAttempt to the time of that claim, so the
// worker that claims it next records the interrupted attempt (and its
// AuditEvent) before sending again.
const LeaseEnded = "lease ended: the previous attempt was not recorded"

// OutboxItem is one record to deliver to one destination. It is enqueued
// in the same transaction that stores the record, so nothing committed is
// ever lost between commit and send.
type OutboxItem struct {
	ID          int64
	Destination string
	// OrderKey orders the items of one source record (source|kind|record):
	// an item is sent only when no earlier item of its key and tenant is
	// pending or in flight, so an amendment never overtakes its original
	// (and one tenant's items never hold up another's).
	OrderKey string
	// OrderKeys are the item's other order keys, those of the further
	// records it delivers (a session: its infusion's and each nested
	// record's; an infusion: its session's): it is ordered on each of
	// them as on OrderKey, so that a session and the same vitals record
	// sent on its own are never sent out of order (docs/records.md,
	// "Record identity"). Enqueue stores them; Claim and the listings do
	// not return them.
	OrderKeys []string
	// Tenant is the tenant the record belongs to ("" the default
	// tenant), returned by Claim, Deliveries and Delivery; Replay copies
	// it.
	Tenant string
	// Patient is the clinic patient key, for the operator's listing.
	Patient                         string
	Kind, Source, RecordID, Version string
	// TraceID is the trace of the request that stored the record.
	TraceID  string
	Payload  []byte
	Status   string
	Attempts int
	// Probes counts the attempts among Attempts that probed the
	// destination while it was on hold and failed (Attempt.Probe): they do
	// not count toward the worker's attempt limit.
	Probes      int
	NextAttempt time.Time
	// LeaseUntil is, for an item in flight, when its claim ends: a live
	// worker renews it while its attempt runs; once it has passed, the
	// worker is gone (stopped, killed, or a restored database) and the
	// next Claim takes the item again. Zero for an item not in flight.
	LeaseUntil time.Time
	LastError  string
	Created    time.Time
	Updated    time.Time
}

// MaxAttemptOutcome is the most of an answer an attempt records (64 KiB):
// the delivery worker cuts a longer one (delivery.MaxOutcome), and what
// reads attempts can tell a cut answer by its length.
const MaxAttemptOutcome = 64 << 10

// Attempt is one delivery attempt of an item.
type Attempt struct {
	ItemID     int64
	N          int
	At         time.Time
	Duration   time.Duration
	HTTPStatus int
	// Outcome is the EHR's OperationOutcome or response excerpt.
	Outcome []byte
	TraceID string
	// Error is a PHI-free reason ("http 503", "timeout", ...).
	Error string
	// Probe marks a failed attempt that probed its destination while it
	// was on hold (a destination-wide outage): Complete counts it in the
	// item's Probes as well as in its Attempts.
	Probe bool
}

// AnswerTruncated is the code (system AnswerNoteSystem, the gateway's
// rule system) of the issue the delivery worker adds to an EHR's
// OperationOutcome it cut to fit an Attempt's Outcome: its diagnostics,
// the gateway's own text, say how many issues were left out.
const (
	AnswerTruncated  = "ehr-answer-truncated"
	AnswerNoteSystem = "https://ketamine-gateway.org/fhir/CodeSystem/validation-rule"
)

// Superseding is the later item that supersedes a dead letter
// (Outbox.Superseders): its id and status.
type Superseding struct {
	ID     int64
	Status string
}

// DeliveryFilter selects items for the operator's listing. Each string
// field that is not empty must match exactly; Since and Until bound
// Created (Since inclusive, Until exclusive) when not zero. Limit <= 0 or
// above 1000 means 100.
//
// Unlike search.Query.Tenant and HistoryQuery.Tenant, an empty Tenant
// here means every tenant (like the other fields, it filters only when
// set), so a listing cannot be narrowed to the default tenant "" alone.
// A caller acting for one tenant must set Tenant to it, and must not
// list for the default tenant when other tenants share the store.
type DeliveryFilter struct {
	Status, Destination, Patient    string
	Source, Kind, RecordID, TraceID string
	Tenant                          string
	Since, Until                    time.Time
	Limit, Offset                   int
}

// DestinationStats is the backlog of one destination.
type DestinationStats struct {
	Destination   string
	Pending       int // pending + in flight
	InFlight      int // of those, in flight
	Dead          int
	OldestPending time.Time // zero when nothing is pending
}

// OutboxTx is the part of a Tx that writes to the outbox.
type OutboxTx interface {
	// Enqueue adds items (ID, Status, Created, Updated and a zero
	// NextAttempt are set by the store, the times to the store's now). An
	// item whose Tenant is search.AllTenants, not valid UTF-8 or holds a
	// NUL byte is an error. An item with Status StatusDead is added as a
	// dead letter with its LastError (a delivery refused as the record was
	// stored, Refused); every other is pending.
	Enqueue(items ...*OutboxItem) error
	// Reached reports whether the tenant's outbox holds an item to
	// destination with one of the order keys keys (OutboxItem.OrderKey or
	// OrderKeys) that may have reached it, or may yet: delivered, pending
	// or in flight, or a dead letter one of whose attempts the EHR may
	// have applied (MayHaveReached); whether the destination has, or
	// may have, the record those keys name. A tenant "" is the default
	// tenant's.
	Reached(tenant, destination string, keys []string) (bool, error)
	// LatestItem returns the status and LastError of the tenant's latest
	// item to destination with the order key key (both "" for none).
	LatestItem(tenant, destination, key string) (status, lastError string, err error)
}

// Outbox is the part of a Store that delivers the outbox: claims,
// completions and the operator's listings. Every method returns
// ErrUnavailable when the database cannot be reached.
type Outbox interface {
	// Claim marks up to limit due items of destination in flight until
	// now+lease and returns them: pending items whose NextAttempt has come
	// (or in-flight items whose lease expired: their LastError becomes
	// LeaseEnded and their NextAttempt the time they were claimed) that are
	// the earliest undelivered item of each of their order keys (OrderKey
	// and OrderKeys; dead items do not block), in id order; an item without
	// keys (a release before them enqueued it) waits for RepairOrder.
	// limit <= 0 means 1. With an error it returns no items: none is claimed.
	Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]*OutboxItem, error)
	// Renew extends the leases of the given items that are still in flight
	// to until (a worker renews the claims of the attempts it is running,
	// so that a short lease finds a crashed worker's claims quickly) and
	// returns the ids of those it extended, in ascending order: an item no
	// longer in flight (completed, or claimed again after its lease ran
	// out) is left alone, and its id is not returned.
	Renew(ctx context.Context, ids []int64, until time.Time) ([]int64, error)
	// Complete records an attempt and sets the item's status (done,
	// pending for a retry at nextAttempt, or dead). It returns ErrNotFound
	// and changes nothing when the item is absent or not in flight (a late
	// completion never reopens a finished item); a status other than
	// done, pending or dead is an error.
	Complete(ctx context.Context, a *Attempt, status string, nextAttempt time.Time) error
	// Deliveries lists the items f selects, newest first (f.Tenant ""
	// selects every tenant's).
	Deliveries(ctx context.Context, f DeliveryFilter) ([]*OutboxItem, error)
	// Delivery returns one item with its attempts in order (N ascending);
	// ErrNotFound if absent. It does not filter by tenant: a caller acting
	// for one tenant compares the item's Tenant (as before Retry).
	Delivery(ctx context.Context, id int64) (*OutboxItem, []*Attempt, error)
	// AttemptsAfter returns up to limit delivery attempts in the order
	// they began (At, then ItemID and N), after the attempt after (one of
	// an earlier page) or, when after is nil, from the first begun at or
	// after since (zero: every one): their ItemID, N, At, Duration,
	// HTTPStatus and Error, never the EHR's answer. audit verify pages
	// through them to find the attempts no AuditEvent names; an index on
	// the time makes a page from a time on read only what began since.
	// limit <= 0 means 1000.
	AttemptsAfter(ctx context.Context, after *Attempt, since time.Time, limit int) ([]*Attempt, error)
	// DeliveryIDKey returns the deployment's secret key for the ids of
	// deliveries shown outside the store (operator.IDs: not the row's
	// number, one sequence over every tenant), made once by the migration
	// that added it, so that every process on the database, and a backup
	// restored, show the same ids. ErrNotFound if it is missing.
	DeliveryIDKey(ctx context.Context) ([]byte, error)
	// Retry puts a dead item back to pending, due now, and makes a
	// pending item (waiting for its next attempt) due now; ErrNotFound if
	// it is neither (absent, in flight or done). It refuses a dead item,
	// changing nothing, with a *LaterDeliveryError when a later item to
	// its destination and tenant shares one of its order keys and is
	// done, pending or in flight (or a withdrawal withheld there,
	// WithheldWithdrawal): sent again, the dead item's older version
	// would overwrite that later one at the destination.
	Retry(ctx context.Context, id int64, now time.Time) error
	// Cancel makes a pending or dead item, or an in-flight one whose
	// claim has lapsed (LeaseUntil at least ClaimGrace before now: its
	// worker is gone; the hosts' clocks are assumed synchronised), a
	// dead letter with lastError, as of now, so that it is never sent and
	// no longer holds back the later items of its order keys; ErrNotFound
	// if it is none of these (absent, done, or in flight with a live
	// claim). The lapse is checked by the update itself: a claim taken
	// again or renewed before it keeps the item.
	Cancel(ctx context.Context, id int64, lastError string, now time.Time) error
	// Blocker returns the id of the earliest item that is pending or in
	// flight to the same destination, sharing an order key (OrderKey or
	// OrderKeys) and the tenant of item id, with an id below it: the item Claim sends first. ErrNotFound
	// if there is none (or item id is absent).
	Blocker(ctx context.Context, id int64) (int64, error)
	// Superseder returns the later item that supersedes item id, as Retry
	// refuses a dead letter for it (a *LaterDeliveryError), and its
	// status: the latest item to the same destination, of its tenant,
	// sharing one of its order keys and with a larger id, that is not a
	// dead letter (or is a withheld withdrawal); 0 if there is none.
	Superseder(ctx context.Context, id int64) (int64, string, error)
	// Superseders is Superseder of each of ids in one read (a listing's
	// page of dead letters): the items without one are absent from the
	// map.
	Superseders(ctx context.Context, ids []int64) (map[int64]Superseding, error)
	// EarlierReached reports whether an item to item id's destination, of
	// its tenant, sharing one of its order keys and with a smaller id may
	// have reached the destination, as Reached tells: delivered, pending
	// or in flight, or a dead letter the EHR may have applied. The worker
	// asks it of a withdrawal about to be sent: one whose record never
	// reached the destination (each earlier delivery refused, cancelled,
	// given up before the EHR took any of it) is not sent there.
	EarlierReached(ctx context.Context, id int64) (bool, error)
	// MayHaveReached reports whether item id may have reached its
	// destination (see AmbiguousErrors): a mapping replay sends its
	// correction where one of the record's deliveries may have. ErrNotFound
	// if there is no such item.
	MayHaveReached(ctx context.Context, id int64) (bool, error)
	// Replay enqueues again (as new pending items, of the same tenant) the
	// latest item of each record (tenant and order key) of destination
	// when that item is done and was created at or after since, and
	// returns how many; it spans every tenant. Superseded versions, earlier
	// copies, and records whose latest item is pending, in flight or dead
	// are not enqueued.
	Replay(ctx context.Context, destination string, since, now time.Time) (int, error)
	// Stats reports the backlog per destination, over every tenant.
	Stats(ctx context.Context) ([]DestinationStats, error)
	// RepairOrder makes the order keys agree with the items where a
	// gateway of a release before them (SQLite schema 17, PostgreSQL 19)
	// wrote the outbox during a rolling upgrade: it gives each pending, in
	// flight or dead item without keys its OrderKey, and clears the live
	// flag of the keys of items done or dead. It reads the open items and
	// the live keys only (their partial indexes), never the delivered
	// history; the gateway runs it at start and then periodically.
	RepairOrder(ctx context.Context) (OrderRepair, error)
}

// OrderRepair is what Outbox.RepairOrder changed: Keyed items given their
// keys, the live flags of Cleared keys cleared.
type OrderRepair struct {
	Keyed, Cleared int
}

// LaterDeliveryError is Retry's refusal of a dead item that a later item
// of the same record (a shared order key) to the same destination
// supersedes: ID is the latest such item, Status its status (done,
// pending or in flight).
type LaterDeliveryError struct {
	ID     int64
	Status string
}

func (e *LaterDeliveryError) Error() string {
	return fmt.Sprintf("outbox: a later delivery of the record (%d, %s) supersedes this one", e.ID, e.Status)
}
