// Package operator is the operator's view of the gateway: deliveries to
// EHRs by status, destination, patient and time, one delivery with every
// attempt and the EHR's answer, retry of a dead letter, replay of a
// destination since a time, and readiness. The HTTP operator API, the CLI
// and the console all call it; it knows no HTTP.
package operator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/text"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// View is a delivery as the operator sees it. The payload (the FHIR
// Bundle) and the EHR's full answers, which are PHI, are shown only on
// request.
type View struct {
	// ID is the delivery's public id (IDs), never the outbox row's number.
	ID          string `json:"id"`
	Destination string `json:"destination"`
	Status      string `json:"status"`
	Kind        string `json:"kind"`
	Source      string `json:"source"`
	RecordID    string `json:"recordId"`
	Version     string `json:"version"`
	Patient     string `json:"patient"`
	TraceID     string `json:"traceId,omitempty"`
	Attempts    int    `json:"attempts"`
	// OutageProbes is how many of Attempts probed the destination while
	// it was on hold and failed on the outage (no connection, timeout,
	// 5xx, 429): they do not count toward the attempt limit.
	OutageProbes int        `json:"outageProbes,omitempty"`
	NextAttempt  *time.Time `json:"nextAttempt,omitempty"` // pending and in-flight deliveries only
	// ClaimUntil is, for a delivery in flight, when the claim of the
	// gateway sending it ends: a live gateway renews it while its attempt
	// runs. ClaimLapsed tells that it has passed (that gateway is gone:
	// stopped, killed, or the database restored), and ClaimNote says, in
	// words, what either means for the operator (Service.noteClaim).
	ClaimUntil  *time.Time `json:"claimUntil,omitempty"`
	ClaimLapsed bool       `json:"claimLapsed,omitempty"`
	ClaimNote   string     `json:"claimNote,omitempty"`
	LastError   string     `json:"lastError,omitempty"`
	// WaitingFor is, for a pending delivery, the id of the delivery of an
	// earlier version of its record that is pending or in flight: it goes
	// first (order per source record), so this one waits for it.
	WaitingFor string `json:"waitingFor,omitempty"`
	// SupersededBy is, for a dead letter, the id of a later delivery of
	// its record to the same destination, delivered, pending or in flight
	// (SupersededStatus): the record's later version went or goes there,
	// and a retry of this one is refused (delivery-superseded). Cancel it
	// to take it off the dead count.
	SupersededBy     string `json:"supersededBy,omitempty"`
	SupersededStatus string `json:"supersededStatus,omitempty"`
	// EHRWarnings is, for a delivered one, how many warnings the EHR's
	// answer to the attempt that delivered it carried (AttemptView).
	EHRWarnings int `json:"ehrWarnings,omitempty"`
	// Correction marks the delivery of a mapping replay's correction of
	// its record version (nil: the record as received; markCorrections).
	Correction *Correction `json:"correction,omitempty"`
	// Withdrawal marks the delivery of a record version that withdraws
	// the record (source.status entered-in-error; markWithdrawals).
	Withdrawal bool            `json:"withdrawal,omitempty"`
	Created    time.Time       `json:"created"`
	Updated    time.Time       `json:"updated"`
	History    []AttemptView   `json:"attemptHistory,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
	// Tenant is the delivery's tenant (not shown: the caller's own, or
	// any for an all-tenant operator).
	Tenant string `json:"-"`
}

// AttemptView is one delivery attempt.
type AttemptView struct {
	N          int             `json:"n"`
	At         time.Time       `json:"at"`
	DurationMS int64           `json:"durationMs"`
	HTTPStatus int             `json:"httpStatus,omitempty"`
	Error      string          `json:"error,omitempty"`
	TraceID    string          `json:"traceId,omitempty"`
	Outcome    json.RawMessage `json:"ehrResponse,omitempty"`
	// Withheld is how many texts and resources the summary of the EHR's
	// answer left out (0 when the answer is shown in full).
	Withheld int `json:"withheld,omitempty"`
	// AnswerNote says why an answer received is not (or not all) in
	// Outcome: not JSON, cut, or not a FHIR resource.
	AnswerNote string `json:"ehrResponseNote,omitempty"`
	// AnswerText is an answer that is not JSON, as text (payload only),
	// and AnswerType its content type as detected from its bytes (the
	// header is not recorded).
	AnswerText string `json:"ehrResponseText,omitempty"`
	AnswerType string `json:"ehrResponseContentType,omitempty"`
	// EHRWarnings is how many issues of severity warning the EHR's answer
	// carried (its OperationOutcome, or its entries' outcomes).
	EHRWarnings int `json:"ehrWarnings,omitempty"`
}

// sniffType guesses the media type of an answer that is not JSON from its
// first bytes (the attempt does not keep the answer's Content-Type): an
// HTML page (a proxy's error page), XML, text, or bytes.
func sniffType(b []byte) string {
	head := bytes.ToLower(bytes.TrimSpace(b[:min(len(b), 512)]))
	switch {
	case bytes.HasPrefix(head, []byte("<!doctype html")) || bytes.HasPrefix(head, []byte("<html")):
		return "text/html; charset=utf-8"
	case bytes.HasPrefix(head, []byte("<")):
		return "text/xml; charset=utf-8"
	case utf8.Valid(b[:max(0, len(b)-utf8.UTFMax+1)]): // an answer cut at a byte may end inside a character
		return "text/plain; charset=utf-8"
	}
	return "application/octet-stream"
}

// setAnswer puts the EHR's answer raw into av: whole with withPayload,
// else summarised; an answer that is not JSON as text with payload only,
// and a note whenever an answer received is not shown (in full).
func (av *AttemptView) setAnswer(raw []byte, withPayload bool) {
	switch {
	case len(raw) == 0:
	case !json.Valid(raw):
		av.AnswerType = sniffType(raw)
		what := fmt.Sprintf("the EHR's answer (%d bytes, %s) is not JSON", len(raw), av.AnswerType)
		if len(raw) >= store.MaxAttemptOutcome {
			what = fmt.Sprintf("the EHR's answer was cut at the %d KiB an attempt records and is no longer JSON", store.MaxAttemptOutcome>>10)
		}
		if withPayload {
			av.AnswerText = strings.ToValidUTF8(string(raw), "\uFFFD")
			av.AnswerNote = what + "; shown as text (ehrResponseText)"
		} else {
			av.AnswerNote = what + "; withheld: shown as text only with payload=true"
			av.Withheld = 1
		}
	case withPayload:
		av.Outcome = raw
	default:
		av.Outcome, av.Withheld = summarizeAnswer(raw) // PHI-free (ehranswer.go)
		if av.Outcome == nil {
			av.AnswerNote = "the EHR's answer is JSON but not a FHIR resource; withheld: shown only with payload=true"
			av.Withheld = 1
		}
	}
}

// NewView converts a stored item (and its attempts) for display, its id
// by ids. The payload and the EHR's full answers are PHI: without
// withPayload the payload is left out and each answer summarised
// (summarizeAnswer).
func NewView(ids *IDs, it *store.OutboxItem, attempts []*store.Attempt, withPayload bool) View {
	v := View{ID: ids.Encode(it.ID), Destination: it.Destination, Status: it.Status, Kind: it.Kind, Source: it.Source,
		RecordID: it.RecordID, Version: it.Version, Patient: it.Patient, TraceID: it.TraceID, Attempts: it.Attempts,
		OutageProbes: it.Probes, LastError: it.LastError, Created: it.Created, Updated: it.Updated, Tenant: it.Tenant}
	if (it.Status == store.StatusPending || it.Status == store.StatusInFlight) && !it.NextAttempt.IsZero() {
		next := it.NextAttempt
		v.NextAttempt = &next
	}
	if it.Status == store.StatusInFlight && !it.LeaseUntil.IsZero() {
		until := it.LeaseUntil
		v.ClaimUntil = &until
	}
	for _, a := range attempts {
		av := AttemptView{N: a.N, At: a.At, DurationMS: a.Duration.Milliseconds(), HTTPStatus: a.HTTPStatus, Error: a.Error, TraceID: a.TraceID}
		av.setAnswer(a.Outcome, withPayload)
		av.EHRWarnings = fhirwire.Warnings(a.Outcome)
		v.History = append(v.History, av)
	}
	if it.Status == store.StatusDone && len(v.History) > 0 {
		v.EHRWarnings = v.History[len(v.History)-1].EHRWarnings
	}
	if withPayload {
		v.Payload = it.Payload
	}
	return v
}

// Service answers the operator's questions from one store.
type Service struct {
	store        store.Store
	destinations []string
	notify       func()
	now          func() time.Time
	hist         history

	mu      sync.Mutex
	worker  Worker        // SetWorker
	upgrade *UpgradeWatch // SetUpgradeWatch
	ids     *IDs          // IDs: loaded from the store once
}

// Worker is what the service uses of the serving gateway's delivery
// worker (delivery.Worker).
type Worker interface {
	// Holds returns until when each destination on hold is held.
	Holds() map[string]time.Time
	// Release ends the hold of a destination.
	Release(destination string) bool
	// CapabilityGaps returns what the capability check found wrong with
	// the destinations (none: empty).
	CapabilityGaps() []CapabilityGap
}

// CapabilityGap is what the delivery worker's capability check found
// wrong with one destination: resource types the gateway sends it that
// its CapabilityStatement does not support, or a check that failed (its
// metadata could not be read). It is a warning, not unreadiness: the
// gateway still stores records and the worker still delivers them (the
// EHR may take what it does not declare). Names and types only, no data.
type CapabilityGap struct {
	Destination string `json:"destination"`
	// Unsupported are the types the destination's last statement read
	// does not list, or lists without an interaction the deliveries use or
	// without declaring a flag they rely on.
	Unsupported []UnsupportedType `json:"unsupported,omitempty"`
	// CheckFailed is why the last check failed ("metadata: http 503"), and
	// CheckFailedSince when the checks began to fail.
	CheckFailed      string     `json:"checkFailed,omitempty"`
	CheckFailedSince *time.Time `json:"checkFailedSince,omitempty"`
}

// UnsupportedType is a resource type the gateway sends a destination that
// its CapabilityStatement does not support.
type UnsupportedType struct {
	ResourceType string `json:"resourceType"`
	// Listed is whether the statement lists the type at all;
	// MissingInteractions the interactions the deliveries use on it that
	// it does not list (every one when the type is not listed).
	Listed              bool     `json:"listed"`
	MissingInteractions []string `json:"missingInteractions"`
	// MissingFlags are the capability flags the deliveries rely on for it
	// (conditionalCreate, conditionalUpdate, updateCreate: each names the
	// interaction it qualifies) that the statement declares false or
	// leaves out (R4's default: false).
	MissingFlags []string `json:"missingFlags,omitempty"`
}

// New returns the operator service over st; destinations are the names of
// the delivery destinations configured, non-nil (maybe empty) for a
// serving gateway; nil for a command on the database, which knows no
// configuration (then a destination is one the outbox holds deliveries
// to); notify (may be nil) wakes the delivery worker after a retry or
// replay.
func New(st store.Store, destinations []string, notify func(), now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	if notify == nil {
		notify = func() {}
	}
	return &Service{store: st, destinations: destinations, notify: notify, now: now}
}

// errUnknown answers a delivery the caller cannot see, and an id that is
// none (one answer for both: which ids exist is not the caller's to learn).
var errUnknown = outcome.New(outcome.NotFound, "not-found", "delivery-unknown",
	"no such delivery (a delivery's id is the 13 letters and digits the deliveries list shows)")

// filterTenant is the DeliveryFilter.Tenant of a caller acting for tenant:
// its own, or "" (every tenant) for an all-tenant operator.
func filterTenant(tenant string) string {
	if tenant == search.AllTenants {
		return ""
	}
	return tenant
}

// visible reports whether an item of owner may be shown to tenant.
func visible(tenant, owner string) bool { return tenant == search.AllTenants || tenant == owner }

// List returns the deliveries f selects, newest first, confined to tenant
// (the caller's: "" the default tenant, search.AllTenants every tenant).
// A parameter that names nothing is Invalid (CheckFilter).
func (s *Service) List(ctx context.Context, tenant string, f store.DeliveryFilter) ([]View, error) {
	if err := s.CheckFilter(ctx, f); err != nil {
		return nil, err
	}
	f.Tenant = filterTenant(tenant)
	items, err := s.store.Deliveries(ctx, f)
	if err != nil {
		return nil, err
	}
	ids, err := s.IDs(ctx)
	if err != nil {
		return nil, err
	}
	var dead []int64
	for _, it := range items {
		if it.Status == store.StatusDead {
			dead = append(dead, it.ID)
		}
	}
	later := map[int64]store.Superseding{}
	if len(dead) > 0 {
		if later, err = s.store.Superseders(ctx, dead); err != nil {
			return nil, err
		}
	}
	out := make([]View, 0, len(items))
	now := s.now()
	for _, it := range items {
		v := NewView(ids, it, nil, false)
		v.noteClaim(now)
		v.supersededBy(ids, later[it.ID])
		out = append(out, v)
	}
	if err := s.mark(ctx, tenant, out); err != nil {
		return nil, err
	}
	return out, nil
}

// IDs returns the codec of the deliveries' public ids, read from the store
// on first use. Returns the store's errors (ErrUnavailable).
func (s *Service) IDs(ctx context.Context) (*IDs, error) {
	s.mu.Lock()
	ids := s.ids
	s.mu.Unlock()
	if ids != nil {
		return ids, nil
	}
	ids, err := LoadIDs(ctx, s.store)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids = ids
	return ids, nil
}

// Show returns one delivery with its attempts; id is its public id (as
// View.ID). NotFound, the same answer, for an id that is not one (a row's
// number, a garbled id), that names no delivery or that names another
// tenant's.
func (s *Service) Show(ctx context.Context, tenant, id string, withPayload bool) (View, error) {
	it, attempts, err := s.find(ctx, tenant, id)
	if err != nil {
		return View{}, err
	}
	ids, err := s.IDs(ctx)
	if err != nil {
		return View{}, err
	}
	v := NewView(ids, it, attempts, withPayload)
	v.noteClaim(s.now())
	if it.Status == store.StatusPending {
		if v.WaitingFor, err = s.blocker(ctx, ids, it.ID); err != nil {
			return View{}, err
		}
	}
	if err := s.superseded(ctx, ids, it, &v); err != nil {
		return View{}, err
	}
	one := []View{v}
	if err := s.mark(ctx, tenant, one); err != nil {
		return View{}, err
	}
	return one[0], nil
}

// superseded sets v.SupersededBy when it, a dead letter, is superseded
// by a later delivery of its record (store.Outbox.Superseder; an EHR
// review: the views showed such a dead letter as any other, and only a
// retry told).
func (s *Service) superseded(ctx context.Context, ids *IDs, it *store.OutboxItem, v *View) error {
	if it.Status != store.StatusDead {
		return nil
	}
	later, status, err := s.store.Superseder(ctx, it.ID)
	if err != nil {
		return err
	}
	v.supersededBy(ids, store.Superseding{ID: later, Status: status})
	return nil
}

// supersededBy sets v.SupersededBy and v.SupersededStatus to l, the later
// delivery that supersedes v's dead letter, if any (l.ID 0: none).
func (v *View) supersededBy(ids *IDs, l store.Superseding) {
	if l.ID == 0 {
		return
	}
	if l.Status == store.StatusDead {
		l.Status = "withheld" // a withdrawal never sent: its record never reached the destination
	}
	v.SupersededBy, v.SupersededStatus = ids.Encode(l.ID), l.Status
}

// blocker returns the public id of the delivery that item id waits for
// (store.Outbox.Blocker), "" if none.
func (s *Service) blocker(ctx context.Context, ids *IDs, id int64) (string, error) {
	b, err := s.store.Blocker(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return ids.Encode(b), nil
}

// find returns the item of public id (and its attempts) if tenant may see
// it; errUnknown otherwise.
func (s *Service) find(ctx context.Context, tenant, id string) (*store.OutboxItem, []*store.Attempt, error) {
	ids, err := s.IDs(ctx)
	if err != nil {
		return nil, nil, err
	}
	n, ok := ids.Decode(id)
	if !ok {
		return nil, nil, errUnknown
	}
	it, attempts, err := s.store.Delivery(ctx, n)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !visible(tenant, it.Tenant)) {
		return nil, nil, errUnknown
	}
	if err != nil {
		return nil, nil, err
	}
	return it, attempts, nil
}

// Retry puts a dead letter back in the queue, due now, or makes a pending
// delivery (waiting for its next attempt, e.g. after a long Retry-After)
// due now, ending its destination's hold (SetWorker). NotFound as for
// Show; Conflict when the delivery is in flight or delivered, a dead
// letter that a later delivery of its record to the destination
// supersedes (delivery-superseded: store.LaterDeliveryError), or a dead
// letter refused as its record was stored (store.Refused: it has nothing
// to send, and sending the record there is what the refusal prevents).
// Forbidden (tenant-required) for a caller acting for every tenant.
//
// The delivery is sent only after the deliveries of earlier versions of
// its record that are pending or in flight (order per source record): it
// returns the public id of the first of them, "" when there is none, so
// the caller can say what the retried delivery waits for (retry or cancel
// that one to let it go).
func (s *Service) Retry(ctx context.Context, tenant, id string) (waitingFor string, err error) {
	if tenant == search.AllTenants {
		return "", errAllTenantWrite
	}
	it, _, err := s.find(ctx, tenant, id)
	if err != nil {
		return "", err
	}
	if it.Status == store.StatusDead && strings.HasPrefix(it.LastError, store.Refused) {
		return "", errRefusedWhenStored
	}
	var later *store.LaterDeliveryError
	if err := s.store.Retry(ctx, it.ID, s.now()); errors.Is(err, store.ErrNotFound) {
		return "", outcome.New(outcome.Conflict, "conflict", "delivery-not-dead",
			"only a dead letter or a pending delivery can be retried; "+s.stateNow(ctx, it.ID, false))
	} else if errors.As(err, &later) {
		ids, err := s.IDs(ctx)
		if err != nil {
			return "", err
		}
		return "", supersededError(ids.Encode(later.ID), later.Status)
	} else if err != nil {
		return "", err
	}
	if w := s.deliveryWorker(); w != nil {
		// Due now means now, also when the destination is on hold.
		w.Release(it.Destination)
	}
	s.notify()
	ids, err := s.IDs(ctx)
	if err != nil {
		return "", err
	}
	return s.blocker(ctx, ids, it.ID)
}

// supersededError refuses the retry of a dead letter that a later
// delivery of the same record (a later version, a session nesting it, a
// withdrawal) to the same destination supersedes: sent now, its older
// version would overwrite the later one at the EHR.
func supersededError(later, status string) error {
	if status == store.StatusDead { // store.WithheldWithdrawal
		return outcome.New(outcome.Conflict, "conflict", "delivery-superseded",
			"delivery "+later+", a later delivery of the same record to this destination, is its withdrawal, not sent "+
				"there as the destination never had the record: sent now, this dead letter would give the destination a "+
				"record the clinic withdrew, so it is not retried")
	}
	state := map[string]string{store.StatusDone: "was delivered", store.StatusPending: "is pending",
		store.StatusInFlight: "is being sent"}[status]
	return outcome.New(outcome.Conflict, "conflict", "delivery-superseded",
		"delivery "+later+", a later delivery of the same record to this destination, "+state+
			": this dead letter's older version would overwrite it there, so it is not retried. "+
			"To send the record's current version again, use `deliveries replay` (the API's replay) for the destination")
}

// WaitingMessage says that a retried delivery waits for delivery
// blocker (Retry's waitingFor).
func WaitingMessage(blocker string) string {
	return "queued again, but it is sent only after delivery " + blocker +
		" (an earlier version of the same record, pending or in flight): retry or cancel that one to let this one go"
}

// ParseTime reads a time parameter as the CLI's time flags and the admin
// API's take it: RFC 3339 (2026-12-01T08:00:00Z), a date (2026-12-01, its
// midnight UTC) or a duration before now (90m, 24h, 7d). ok is false for
// anything else (its message: TimeHelp).
func ParseTime(v string, now time.Time) (t time.Time, ok bool) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, true
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, true
	}
	if d, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.Atoi(d); err == nil && n >= 0 && n <= 100_000 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), true
		}
	} else if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), true
	}
	return time.Time{}, false
}

// TimeHelp says what ParseTime takes.
const TimeHelp = "RFC 3339 (2026-12-01T08:00:00Z), a date (2026-12-01, its midnight UTC) or a duration before now (90m, 24h, 7d)"

// CancelledPrefix begins the last error of a delivery an operator
// cancelled (Cancel), before the operator's reason.
const CancelledPrefix = "cancelled by operator: "

// MaxCancelReason is the longest reason Cancel takes, in characters.
const MaxCancelReason = 200

// errAllTenantWrite refuses a retry or cancel by a caller acting for
// every tenant: it reads every tenant and writes none (a clinic's cancel
// is how it withholds a record from an EHR, and a retry undoes it). The
// database's administrator (the CLI) acts as the delivery's tenant.
var errAllTenantWrite = outcome.New(outcome.Forbidden, "forbidden", "tenant-required",
	"a caller acting for every tenant reads every tenant's deliveries but may not retry or cancel one: "+
		"use an operator of the delivery's tenant")

var (
	errCancelReasonMissing = outcome.New(outcome.Invalid, "required", "delivery-cancel-reason-missing",
		"reason: say why the delivery is cancelled (it is kept with the delivery as the dead letter's last error; "+
			"the delivery-cancel AuditEvent records that it was cancelled, not the reason)")
	errCancelReasonInvalid = outcome.New(outcome.Invalid, "value", "delivery-cancel-reason-invalid",
		fmt.Sprintf("reason: at most %d characters, without control characters (line breaks, tabs)", MaxCancelReason))
)

// claimLapsedNote is what a delivery in flight whose claim lapsed at
// (formatted) means for the operator (View.ClaimNote).
func claimLapsedNote(at string) string {
	return "claim lapsed at " + at + ": the gateway sending it stopped before recording its attempt (which may have " +
		"reached the EHR); the next gateway to start or poll recovers it, records that attempt as interrupted and sends " +
		"it again, unless it is cancelled first (deliveries cancel)"
}

// claimLiveNote is what a live claim until at means.
func claimLiveNote(at string) string {
	return "in flight: a gateway holds its claim until " + at + ", renewed while its attempt runs"
}

// claimEndingNote is what a claim that ran out at at, by this host's
// clock, less than store.ClaimGrace ago means.
func claimEndingNote(at, lapses string) string {
	return "in flight: its claim ran out at " + at + " by this host's clock; it counts as lapsed, and may be cancelled, " +
		"from " + lapses + " (the claiming gateway's clock may be behind this one's, its attempt still running)"
}

// noteClaim says, for a delivery in flight, whether its claim has lapsed
// at now and what that means (ClaimLapsed, ClaimNote). Lapsed means over
// for store.ClaimGrace, as store.Outbox.Cancel has it: the claim's end was
// written from the claiming gateway's clock, now is this host's, and the
// hosts' clocks are assumed synchronised (NTP) to within it.
func (v *View) noteClaim(now time.Time) {
	if v.ClaimUntil != nil {
		v.ClaimLapsed, v.ClaimNote = claimState(*v.ClaimUntil, now)
	}
}

// claimState is noteClaim's verdict on a claim that ends at until.
func claimState(until, now time.Time) (lapsed bool, note string) {
	at := until.UTC().Format(time.RFC3339)
	lapses := until.Add(store.ClaimGrace)
	switch {
	case !lapses.After(now):
		return true, claimLapsedNote(at)
	case !until.After(now):
		return false, claimEndingNote(at, lapses.UTC().Format(time.RFC3339))
	}
	return false, claimLiveNote(at)
}

// stateNow says, for a retry or cancel the store refused, the state the
// delivery (row id) is in now, read again: delivered, another status, or
// in flight as show says it (View.noteClaim: a live claim until when, one
// that ran out within store.ClaimGrace, or lapsed); for a cancel, when it
// may be cancelled.
func (s *Service) stateNow(ctx context.Context, id int64, cancel bool) string {
	it, _, err := s.store.Delivery(ctx, id)
	switch {
	case err != nil:
		return "it is in flight or delivered"
	case it.Status == store.StatusDone:
		return "this one was delivered"
	case it.Status != store.StatusInFlight:
		return "this one is " + it.Status + " now: try again"
	}
	if it.LeaseUntil.IsZero() {
		return "this one is in flight"
	}
	lapsed, note := claimState(it.LeaseUntil, s.now())
	switch {
	case lapsed && cancel: // taken again, or renewed, since
		return "this one is in flight and its " + note + "; try again"
	case lapsed:
		return "this one is in flight and its " + note
	case cancel:
		return "this one is " + note + ". Cancel it once its attempt has ended (it is then pending or a dead " +
			"letter, or delivered), or, if that gateway is gone, once the claim has lapsed"
	}
	return "this one is " + note + "; its attempt's end decides (delivered, pending or a dead letter)"
}

// CheckCancelReason refuses a cancel's reason that is empty or not one
// line of at most MaxCancelReason characters (Invalid).
func CheckCancelReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return errCancelReasonMissing
	}
	if !text.OneLine(reason, MaxCancelReason) {
		return errCancelReasonInvalid
	}
	return nil
}

// Cancel makes a pending delivery, a dead letter or a delivery in flight
// whose claim has lapsed (its gateway is gone: store.Outbox.Cancel) a dead
// letter that is never sent, its last error "cancelled by operator: " and
// reason, so that the later versions of its record no longer wait for it
// (a record version the EHR keeps refusing, a record sent in error, one an
// EHR received before a restore). A retry sends it again. A dead letter's
// last error (why the EHR refused it) stays after the reason. It returns
// the last error recorded.
// NotFound as for Show; Invalid for a reason CheckCancelReason refuses;
// Conflict, naming the state, when the delivery is in flight with a live
// claim or delivered, was cancelled already (a second reason would
// overwrite the first, the only record of it), or is a dead letter refused
// as its record was stored (its last error says why, which a cancel would
// overwrite). Forbidden (tenant-required) for a caller acting for every
// tenant.
func (s *Service) Cancel(ctx context.Context, tenant, id, reason string) (string, error) {
	if err := CheckCancelReason(reason); err != nil {
		return "", err
	}
	if tenant == search.AllTenants {
		return "", errAllTenantWrite
	}
	it, _, err := s.find(ctx, tenant, id)
	if err != nil {
		return "", err
	}
	last := CancelledPrefix + strings.TrimSpace(reason)
	if it.Status == store.StatusDead {
		switch {
		case strings.HasPrefix(it.LastError, store.Refused):
			return "", outcome.New(outcome.Conflict, "conflict", "delivery-not-cancellable",
				"this delivery was refused when its record was stored and is never sent; there is nothing to cancel")
		case strings.HasPrefix(it.LastError, CancelledPrefix):
			return "", outcome.New(outcome.Conflict, "conflict", "delivery-cancelled-already",
				"this delivery was cancelled already (its lastError gives the reason) and is never sent; "+
					"to send it, retry it (POST /admin/deliveries/{id}/retry, deliveries retry)")
		case it.LastError != "":
			last += "; it was a dead letter: " + it.LastError
		}
	}
	if err := s.store.Cancel(ctx, it.ID, last, s.now()); errors.Is(err, store.ErrNotFound) {
		return "", outcome.New(outcome.Conflict, "conflict", "delivery-not-cancellable",
			"only a pending delivery, a dead letter or a delivery in flight whose claim has lapsed can be cancelled; "+
				s.stateNow(ctx, it.ID, true))
	} else if err != nil {
		return "", err
	}
	s.notify() // the record's next version may go now
	return last, nil
}

// errRefusedWhenStored answers a retry of a dead letter refused as its
// record was stored.
var errRefusedWhenStored = outcome.New(outcome.Conflict, "conflict", "delivery-refused-when-stored",
	"this delivery was refused when its record was stored (its last error says why) and has nothing to send; "+
		"a retry cannot deliver it: remove the cause (for source-system-other-tenant: the clinic sends its records "+
		"under a source.system of its own, or the destination gets a filter.tenants) and have the clinic send the record again")

// Replay enqueues again, for each record delivered to dest, its latest
// delivery when that is done and was created at or after since
// (store.Outbox.Replay: not its superseded versions, nor a dead letter)
// and returns how many. A destination the serving gateway does not have
// is Invalid. A since in the future is Invalid (CheckSince). It re-sends every tenant's records, so only an
// all-tenant operator (or the default tenant, development mode) may.
func (s *Service) Replay(ctx context.Context, tenant, dest string, since time.Time) (int, error) {
	if dest == "" || since.IsZero() {
		return 0, outcome.New(outcome.Invalid, "required", "parameter-missing", "replay needs destination and since")
	}
	if tenant != "" && tenant != search.AllTenants {
		return 0, outcome.New(outcome.Forbidden, "forbidden", "tenant-replay", "a replay re-sends every tenant's records; it needs an all-tenant operator")
	}
	if err := s.CheckSince(since); err != nil {
		return 0, err
	}
	if err := s.checkDestination(ctx, dest); err != nil {
		return 0, err
	}
	if s.destinations != nil && !slices.Contains(s.destinations, dest) {
		// Queued for a destination no worker sends to, the copies would
		// stay pending for ever.
		msg := "destination is not configured in this gateway, so nothing replayed to it would be sent; "
		if len(s.destinations) == 0 {
			msg += "no destination is configured"
		} else {
			msg += "the configured destinations are " + strings.Join(s.destinations, ", ")
		}
		return 0, ParamInvalid(msg)
	}
	n, err := s.store.Replay(ctx, dest, since, s.now())
	if err != nil {
		return 0, err
	}
	s.notify()
	return n, nil
}

// Readiness is the readiness probe's answer.
type Readiness struct {
	Ready bool
	// Database is "ok", "unavailable" (it does not answer), "locked"
	// (it answers reads, but another process holds its write lock, or
	// a lock on a table requests write, so every write would wait or
	// fail), "timeout" (it did not answer the probe within ProbeTimeout),
	// "circuit-open" (connection attempts failed repeatedly: the store
	// refuses calls at once while a probe connection retries), "full",
	// "read-only" or "io-error" (the last write failed so and none has
	// committed since: see databaseState), or "superseded" (a later
	// release migrated it past a schema this gateway can serve:
	// UpgradeWatch).
	Database string
	// Backlog is each destination's: pending, dead and the oldest pending
	// item's age.
	Backlog []Backlog
	// CapabilityGaps is what the delivery worker's capability check found
	// wrong with the destinations (Worker.CapabilityGaps; empty, not nil,
	// when nothing is), nil without a worker (a command on the database,
	// a gateway without destinations). It does not change Ready.
	CapabilityGaps []CapabilityGap
}

// Backlog is one destination's delivery backlog.
type Backlog struct {
	Destination      string  `json:"destination"`
	Pending          int     `json:"backlog"`
	Dead             int     `json:"dead"`
	OldestPendingAge float64 `json:"oldestPendingAgeSeconds"`
	// HeldUntil is set while the destination is on hold after failures
	// that concern the whole destination (429, 503, 401, unreachable): no
	// delivery to it is attempted before.
	HeldUntil *time.Time `json:"heldUntil,omitempty"`
	// NotConfigured is set for a destination with deliveries (pending
	// or dead) that the serving gateway does not have: nothing sends the
	// pending ones, and its dead letters are those of a destination
	// removed or renamed (an EHR review: they showed as any other's).
	NotConfigured bool `json:"notConfigured,omitempty"`
}

// SetWorker gives the service the serving gateway's delivery worker: Ready
// shows its holds and capability gaps, and Retry releases the hold of the delivery's
// destination. Call it before serving.
func (s *Service) SetWorker(w Worker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.worker = w
}

// SetUpgradeWatch gives the service the serving gateway's UpgradeWatch:
// Ready answers unready ("superseded") once a later release superseded
// this gateway. Call it before serving.
func (s *Service) SetUpgradeWatch(w *UpgradeWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.upgrade = w
}

func (s *Service) deliveryWorker() Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.worker
}

// Unconfigured returns the backlog of the destinations with deliveries
// pending that the serving gateway does not have (none for a command on
// the database, which knows no configuration): nothing sends them.
func (s *Service) Unconfigured(ctx context.Context) ([]Backlog, error) {
	r, err := s.Ready(ctx)
	if err != nil {
		return nil, err
	}
	var out []Backlog
	for _, b := range r.Backlog {
		if b.NotConfigured && b.Pending > 0 {
			out = append(out, b)
		}
	}
	return out, nil
}

// databaseState is Readiness.Database for err, a write probe's
// ErrUnavailable: "locked" (another process holds SQLite's write lock),
// "full", "read-only" or "io-error" (the last write failed so, and no
// write has committed since), "unavailable" otherwise.
func databaseState(err error) string {
	switch store.UnavailableCause(err) {
	case store.CauseLocked:
		return "locked"
	case store.CauseFull:
		return "full"
	case store.CauseReadOnly:
		return "read-only"
	case store.CauseIO, store.CauseCantOpen:
		return "io-error"
	case store.CauseTimeout:
		return "timeout"
	case store.CauseCircuitOpen:
		return "circuit-open"
	}
	return "unavailable"
}

// ProbeTimeout bounds the database calls of one readiness check
// together: a load balancer's probe waits a few seconds, and a database
// that takes longer than that to answer them is not ready ("timeout").
const ProbeTimeout = 4 * time.Second

// Ready checks the database (that it answers, and, where the store can
// tell, that it could take a write now) and reports the delivery backlog,
// all within ProbeTimeout. Ready is false (with a nil error) when the
// database does not answer, could not take a write, or takes longer.
func (s *Service) Ready(ctx context.Context) (Readiness, error) {
	s.mu.Lock()
	up := s.upgrade
	s.mu.Unlock()
	if up.Superseded() {
		return Readiness{Database: "superseded"}, nil
	}
	pctx, cancel := context.WithTimeout(ctx, ProbeTimeout)
	defer cancel()
	notReady := func(err error) (Readiness, bool) {
		switch {
		case ctx.Err() == nil && pctx.Err() != nil:
			return Readiness{Database: "timeout"}, true
		case errors.Is(err, store.ErrUnavailable):
			return Readiness{Database: databaseState(err)}, true
		}
		return Readiness{}, false
	}
	if err := s.store.Ping(pctx); err != nil {
		if r, ok := notReady(err); ok && (r.Database == "timeout" || r.Database == "circuit-open") {
			return r, nil
		}
		return Readiness{Database: "unavailable"}, nil
	}
	if p, ok := s.store.(store.WriteProber); ok {
		if err := p.ProbeWrite(pctx); err != nil {
			if r, ok := notReady(err); ok {
				return r, nil
			}
			return Readiness{}, err
		}
	}
	stats, err := s.store.Stats(pctx)
	if err != nil {
		// The backlog's query waits on a lock the probe did not see, or
		// the database stopped answering: not ready, said so.
		if r, ok := notReady(err); ok {
			return r, nil
		}
		return Readiness{}, err
	}
	out := Readiness{Ready: true, Database: "ok", Backlog: []Backlog{}}
	now := s.now()
	var holds map[string]time.Time
	if w := s.deliveryWorker(); w != nil {
		holds = w.Holds()
		for _, g := range w.CapabilityGaps() {
			// A flags-only gap lists its missing interactions as [], not
			// null: the answer's shape does not change with its content.
			g.Unsupported = slices.Clone(g.Unsupported)
			for i := range g.Unsupported {
				if g.Unsupported[i].MissingInteractions == nil {
					g.Unsupported[i].MissingInteractions = []string{}
				}
			}
			out.CapabilityGaps = append(out.CapabilityGaps, g)
		}
		if out.CapabilityGaps == nil {
			out.CapabilityGaps = []CapabilityGap{}
		}
	}
	for _, st := range stats {
		b := Backlog{Destination: st.Destination, Pending: st.Pending, Dead: st.Dead}
		if !st.OldestPending.IsZero() {
			b.OldestPendingAge = now.Sub(st.OldestPending).Seconds()
		}
		if until, ok := holds[st.Destination]; ok {
			b.HeldUntil = &until
		}
		b.NotConfigured = s.destinations != nil && st.Pending+st.Dead > 0 && !slices.Contains(s.destinations, st.Destination)
		out.Backlog = append(out.Backlog, b)
	}
	// Every configured destination is listed, one without deliveries yet
	// with zeros (it did not show until its first delivery).
	for _, d := range s.destinations {
		if !slices.ContainsFunc(out.Backlog, func(b Backlog) bool { return b.Destination == d }) {
			out.Backlog = append(out.Backlog, Backlog{Destination: d})
		}
	}
	return out, nil
}
