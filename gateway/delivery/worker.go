package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Observer receives delivery metrics; the gateway bridges it to
// OpenTelemetry. Its methods must be quick and safe for concurrent use.
type Observer interface {
	// OnAttempt is called after every attempt with the item's new state
	// as an outcome (OutcomeDone, OutcomeRetry, OutcomeDead) and the
	// attempt's duration.
	OnAttempt(destination, outcome string, d time.Duration)
	// OnBacklog is called for each destination every
	// WorkerOptions.BacklogInterval with its Outbox.Stats (zero counts
	// when it has no items).
	OnBacklog(s store.DestinationStats)
}

// WorkerOptions configure a Worker; zero values mean the defaults.
type WorkerOptions struct {
	// Clock (default: the system clock) and Rand (default math/rand/v2;
	// must return [0,1) and be safe for concurrent use) drive polling,
	// leases, backoff and jitter; tests inject fakes.
	Clock Clock
	Rand  func() float64
	// Logger gets PHI-free events (default: discarded).
	Logger *slog.Logger
	// Observer gets metrics (default: none).
	Observer Observer
	// TraceID returns the trace id of an attempt's context for
	// store.Attempt.TraceID (default: none).
	TraceID func(ctx context.Context) string
	// StartAttempt, when set, wraps every attempt, e.g. in a span: the
	// returned context is used for the attempt's requests and TraceID, and
	// end is called with the outcome. The item is the worker's (do not
	// modify it); its Payload is PHI.
	StartAttempt func(ctx context.Context, destination string, it *store.OutboxItem) (_ context.Context, end func(outcome string))
	// WrapTransport wraps every destination's HTTP transport.
	WrapTransport func(http.RoundTripper) http.RoundTripper
	// Audit, when set, makes an attempt's AuditEvent durable (it is told
	// the outcome: OutcomeDone, OutcomeRetry, OutcomeDead or
	// OutcomeInterrupted) and, for a batch or transaction the EHR
	// answered 2xx with an entry failed, that entry's status
	// (Result.EntryStatus; 0 otherwise). The worker calls it after the attempt and
	// before recording it, so that every transmission the outbox records
	// has its AuditEvent. When it fails, it is called again, and so is a
	// failed recording, for up to RecordRetry (the item's lease renewed
	// meanwhile); past that, or when the worker stops, the attempt is not
	// recorded, and the worker that claims the item after its lease ends
	// records and audits it as interrupted before sending again.
	Audit func(ctx context.Context, it *store.OutboxItem, a *store.Attempt, outcome string, entryStatus int) error
	// Withhold, when set, is asked before each item is sent: a reason
	// ("" to send) makes it a dead letter with that reason, nothing sent
	// (operator.Service.WithheldWithdrawal: a withdrawal whose record
	// never reached the destination). Its error is an attempt to retry.
	Withhold func(ctx context.Context, it *store.OutboxItem) (reason string, err error)
	// RecordRetry is how long an attempt's AuditEvent and attempt row are
	// retried when the database fails (locked, unreachable): default 2m.
	RecordRetry time.Duration
	// DeliveryID names an outbox item in log lines as operators name the
	// delivery (operator.IDs.Encode: the public id the admin API, the
	// console and the CLI show); default: the row's number.
	DeliveryID func(item int64) string
	// UserAgent is sent with every request (default "ketamine-gateway").
	UserAgent string
	// PollInterval is how often the outbox is polled without Notify
	// (default 5s).
	PollInterval time.Duration
	// Lease is how long a claim lasts unless renewed (default 30s): the
	// worker renews the claims of its running attempts every third of it,
	// so a claim of a process that died is claimed again by another within
	// Lease (plus a poll interval).
	Lease time.Duration
	// AttemptTimeout cuts an attempt off (default 4m); a destination's
	// request timeout must fit in it.
	AttemptTimeout time.Duration
	// BackoffBase and BackoffMax bound the exponential backoff: attempt n
	// waits a uniformly random time in [0, min(Max, Base*2^(n-1))) (full
	// jitter), at least the answer's Retry-After, which is honoured up to
	// BackoffMax (defaults 1s and 10m). No retry is due after the MaxAge
	// deadline.
	BackoffBase, BackoffMax time.Duration
	// MaxAttempts makes an item dead after that many failed attempts
	// (default 50); MaxAge after that long since Created (default 72h,
	// negative: no limit).
	MaxAttempts int
	MaxAge      time.Duration
	// CapabilityInterval is how often each destination's
	// CapabilityStatement is read (default 1h, negative: never, the
	// configured mode is used as it is).
	CapabilityInterval time.Duration
	// Resources are the resource types the gateway delivers, the
	// interactions its deliveries use on each and the kinds of record that
	// carry them (default mapping.Writes()): the capability check warns of
	// each one a destination receives (its filter's kinds) that its
	// CapabilityStatement does not list, or lists without one of those
	// interactions (Capabilities.Unsupported).
	Resources []mapping.Write
	// BacklogInterval is how often Observer.OnBacklog is fed (default 30s,
	// negative: never).
	BacklogInterval time.Duration
	// DrainTimeout is how long Run waits for in-flight attempts once its
	// context is cancelled before cancelling them (default 30s).
	DrainTimeout time.Duration
}

func (o *WorkerOptions) setDefaults() {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.PollInterval, 5*time.Second)
	if o.DeliveryID == nil {
		o.DeliveryID = func(item int64) string { return strconv.FormatInt(item, 10) }
	}
	def(&o.Lease, 30*time.Second)
	def(&o.AttemptTimeout, 4*time.Minute)
	def(&o.BackoffBase, time.Second)
	def(&o.BackoffMax, 10*time.Minute)
	def(&o.MaxAge, 72*time.Hour)
	def(&o.CapabilityInterval, time.Hour)
	def(&o.BacklogInterval, 30*time.Second)
	def(&o.DrainTimeout, 30*time.Second)
	def(&o.RecordRetry, 2*time.Minute)
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 50
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Rand == nil {
		o.Rand = rand.Float64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Resources == nil {
		o.Resources = mapping.Writes()
	}
}

// Worker delivers the outbox to its destinations: per destination, one
// loop claims due items and sends them with bounded concurrency.
type Worker struct {
	outbox  Outbox
	opts    WorkerOptions
	dests   []*destWorker
	running atomic.Bool
}

// destWorker is one destination's loop and state.
type destWorker struct {
	w           *Worker
	dest        Destination // with defaults
	client      *Client
	itemTimeout time.Duration
	notify      chan struct{} // Notify
	wake        chan struct{} // an attempt finished
	inflight    atomic.Int64

	mu      sync.Mutex
	running map[int64]bool // the items of the attempts in progress (their leases are renewed)
	// settling are the items whose outcome is being recorded (Complete
	// called, not yet returned): once it commits they are no longer in
	// flight, and a renewal leaves them, without their lease running out.
	settling   map[int64]bool
	caps       *Capabilities // nil until read
	capsFailed string        // why the last capability check failed, "" if it did not (its recovery is logged)
	capsSince  time.Time     // when the failures of capsFailed began
	// recheck is set by a delivery that succeeded while the last check
	// failed: the destination answers, so its statement is read again at
	// once, not at the next interval (an operator's review: a check that
	// raced the EHR's start showed failed on /readyz for 5 minutes while
	// records were delivered).
	recheck bool
	hold    time.Time // no claims before (destination-wide failure)
	holdSet time.Time // when the current round of failures bumped streak
	streak  int       // consecutive rounds of destination-wide failures
	failing int       // consecutive attempts that failed but were retried (500s, timeouts), no success between
}

// failingWarnEvery is how many consecutive failed attempts to one
// destination (each retried: a 500, a timeout) make a warning: such
// failures do not hold the destination, and each record's retry is
// logged at INFO, so an EHR that fails everything would otherwise show
// at WARN only when its records become dead letters, hours later.
const failingWarnEvery = 10

// NewWorker validates the destinations (unique names), builds their
// clients and returns a Worker; nothing runs until Run.
func NewWorker(outbox Outbox, dests []Destination, opts WorkerOptions) (*Worker, error) {
	if outbox == nil {
		return nil, errors.New("delivery: no outbox")
	}
	opts.setDefaults()
	switch {
	case opts.Lease < 0 || opts.AttemptTimeout < 0 || opts.PollInterval < 0 || opts.BackoffBase < 0 || opts.BackoffMax < opts.BackoffBase:
		return nil, errors.New("delivery: lease, attempt timeout, poll interval and backoff must be positive, base <= max")
	case opts.MaxAttempts < 1:
		return nil, errors.New("delivery: max attempts must be at least 1")
	}
	w := &Worker{outbox: outbox, opts: opts}
	seen := map[string]bool{}
	for _, d := range dests {
		if seen[d.Name] {
			return nil, fmt.Errorf("delivery: destination %q configured twice", d.Name)
		}
		seen[d.Name] = true
		c, err := NewClient(d, ClientOptions{WrapTransport: opts.WrapTransport, Clock: opts.Clock, UserAgent: opts.UserAgent})
		if err != nil {
			return nil, err
		}
		dw := &destWorker{w: w, dest: c.Destination(), client: c, itemTimeout: opts.AttemptTimeout,
			notify: make(chan struct{}, 1), wake: make(chan struct{}, 1)}
		if dw.itemTimeout < dw.dest.Timeout {
			return nil, fmt.Errorf("delivery: destination %q: timeout %v does not fit in the attempt timeout %v", d.Name, dw.dest.Timeout, opts.AttemptTimeout)
		}
		w.dests = append(w.dests, dw)
	}
	return w, nil
}

// Notify wakes every destination's loop to claim at once (call it after
// an enqueue commits). It never blocks.
func (w *Worker) Notify() {
	for _, d := range w.dests {
		signal(d.notify)
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Capabilities returns what is known of each destination's
// CapabilityStatement (destinations not read yet are absent).
func (w *Worker) Capabilities() map[string]Capabilities {
	out := map[string]Capabilities{}
	for _, d := range w.dests {
		d.mu.Lock()
		if d.caps != nil {
			out[d.dest.Name] = *d.caps
		}
		d.mu.Unlock()
	}
	return out
}

// CapabilityCheck is what the capability check knows of one destination:
// what the operator must see besides the log (readiness, the console, the
// metrics). It names resource types and interactions, never data.
type CapabilityCheck struct {
	Destination string
	// Checked is when the destination's CapabilityStatement was last read
	// (zero: not yet, or the check is off), and Unsupported what that
	// statement lacks (Capabilities.Unsupported); both stay while later
	// checks fail.
	Checked     time.Time
	Unsupported []TypeGap
	// Failed is why the last check failed ("metadata: http 503",
	// "metadata: not a CapabilityStatement", a connection's reason; no
	// URL, no body), "" when it succeeded or none ran; FailedSince is
	// when the checks began to fail.
	Failed      string
	FailedSince time.Time
}

// Counts are how many types of c.Unsupported the statement does not list
// or lists without an interaction the deliveries use (unsupported), and
// how many it lists with every interaction but without declaring a flag
// they rely on true (undeclaredFlags: many EHRs honour the flags
// undeclared, so those are no alarm).
func (c CapabilityCheck) Counts() (unsupported, undeclaredFlags int) {
	for _, g := range c.Unsupported {
		if len(g.Missing) > 0 {
			unsupported++
		} else if len(g.Flags) > 0 {
			undeclaredFlags++
		}
	}
	return unsupported, undeclaredFlags
}

// CapabilityChecks returns the capability check of every destination, in
// the order they are configured.
func (w *Worker) CapabilityChecks() []CapabilityCheck {
	out := make([]CapabilityCheck, 0, len(w.dests))
	for _, d := range w.dests {
		c := CapabilityCheck{Destination: d.dest.Name}
		d.mu.Lock()
		if d.caps != nil {
			c.Checked, c.Unsupported = d.caps.Checked, slices.Clone(d.caps.Unsupported)
		}
		c.Failed, c.FailedSince = d.capsFailed, d.capsSince
		d.mu.Unlock()
		out = append(out, c)
	}
	return out
}

// Run delivers until ctx is cancelled, then waits for in-flight attempts
// (at most DrainTimeout, then cancels them; their attempts are still
// recorded) and returns nil. Outbox errors are logged and retried, never
// returned. Run may be called once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("delivery: worker already run")
	}
	var wg sync.WaitGroup
	for _, d := range w.dests {
		wg.Go(func() { d.run(ctx) })
	}
	wg.Wait()
	return nil
}

func (d *destWorker) run(ctx context.Context) {
	o := &d.w.opts
	// The leases of running attempts are renewed until the last of them
	// has finished, also while Run drains (this defer runs last).
	renewCtx, stopRenewing := context.WithCancel(context.WithoutCancel(ctx))
	var renewing sync.WaitGroup
	renewing.Go(func() { d.renewLeases(renewCtx) })
	defer func() { stopRenewing(); renewing.Wait() }()
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	var sends sync.WaitGroup
	defer func() {
		done := make(chan struct{})
		go func() { sends.Wait(); close(done) }()
		c, stop := o.Clock.NewTimer(o.Clock.Now().Add(o.DrainTimeout))
		defer stop()
		select {
		case <-done:
		case <-c:
			cancelSends()
			<-done
		}
	}()
	var nextCaps, nextBacklog time.Time
	var failing store.FailureRun // claims failing in a row: an outage is logged once
	for ctx.Err() == nil {
		now := o.Clock.Now()
		wakeAt := now.Add(o.PollInterval)
		if o.CapabilityInterval > 0 && (!now.Before(nextCaps) || d.takeRecheck()) {
			nextCaps = now.Add(d.checkCapabilities(ctx))
		}
		if o.Observer != nil && o.BacklogInterval > 0 && !now.Before(nextBacklog) {
			nextBacklog = now.Add(o.BacklogInterval)
			d.reportBacklog(ctx)
		}
		hold, probing := d.holdState()
		free := int64(d.dest.Concurrency) - d.inflight.Load()
		if probing {
			// After a hold, one attempt probes the destination; the
			// others wait for its success (half-open).
			free = min(free, 1-d.inflight.Load())
		}
		if now.Before(hold) {
			wakeAt = hold
		} else if free > 0 {
			items, err := d.w.outbox.Claim(ctx, d.dest.Name, now, o.Lease, int(free))
			if err != nil {
				// Nothing was claimed: items a failed claim had in hand
				// are still pending (its commit may have failed), and a
				// send of one would reach the EHR again at the next claim
				// (probe p37 F1).
				items = nil
				if ctx.Err() == nil {
					level, n := failing.Failed(err)
					o.Logger.Log(ctx, level, "delivery: claim failed", "destination", d.dest.Name,
						"cause", store.FailureCause(err), "error_class", store.ErrorClass(err), "failures_in_a_row", n)
				}
			} else if n := failing.Succeeded(); n > 0 {
				o.Logger.Info("delivery: claims succeed again", "destination", d.dest.Name, "failures_in_a_row", n)
			}
			for _, it := range items {
				d.inflight.Add(1)
				d.setRunning(it.ID, true)
				sends.Go(func() { d.attempt(sendCtx, it, probing) })
			}
		}
		c, stop := o.Clock.NewTimer(wakeAt)
		select {
		case <-ctx.Done():
		case <-d.notify:
		case <-d.wake:
		case <-c:
		}
		stop()
	}
}

// reportBacklog passes the destination's Outbox.Stats to the Observer.
func (d *destWorker) reportBacklog(ctx context.Context) {
	stats, err := d.w.outbox.Stats(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.w.opts.Logger.Warn("delivery: outbox stats failed", "destination", d.dest.Name, "error", err)
		}
		return
	}
	s := store.DestinationStats{Destination: d.dest.Name}
	for _, st := range stats {
		if st.Destination == d.dest.Name {
			s = st
			break
		}
	}
	d.w.opts.Observer.OnBacklog(s)
}

// checkCapabilities reads the CapabilityStatement and returns when to read
// it again.
func (d *destWorker) checkCapabilities(ctx context.Context) time.Duration {
	o := &d.w.opts
	caps, err := d.client.Capabilities(ctx)
	if err != nil {
		if ctx.Err() == nil {
			o.Logger.Warn("delivery: capability check failed", "destination", d.dest.Name, "error", err)
			d.mu.Lock()
			if d.capsFailed == "" {
				d.capsSince = o.Clock.Now()
			}
			d.capsFailed = err.Error()
			d.mu.Unlock()
		}
		return min(o.CapabilityInterval, 5*time.Minute)
	}
	caps.Unsupported = caps.Gaps(d.needs())
	d.mu.Lock()
	old, failed := d.caps, d.capsFailed != ""
	d.caps, d.capsFailed, d.capsSince = &caps, "", time.Time{}
	d.mu.Unlock()
	if failed {
		o.Logger.Info("delivery: capability check recovered", "destination", d.dest.Name, "fhir_version", caps.FHIRVersion)
	}
	if mode := caps.Mode(d.dest.Mode); old == nil || old.Mode(d.dest.Mode) != mode {
		o.Logger.Info("delivery: destination capabilities", "destination", d.dest.Name, "configured_mode", d.dest.Mode,
			"mode", mode, "fhir_version", caps.FHIRVersion, "software", caps.Software)
	}
	if !caps.R4() {
		o.Logger.Warn("delivery: destination is not FHIR R4", "destination", d.dest.Name, "fhir_version", caps.FHIRVersion)
	}
	d.logGaps(old, caps)
	return o.CapabilityInterval
}

// takeRecheck reports, once, that a delivery succeeded since a failed
// capability check (recheck).
func (d *destWorker) takeRecheck() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	r := d.recheck
	d.recheck = false
	return r
}

// needs are the resource types the destination is sent
// (WorkerOptions.Resources of the kinds its filter accepts) and the
// interactions their deliveries use.
func (d *destWorker) needs() []mapping.Write {
	if len(d.dest.Filter.Kinds) == 0 {
		return d.w.opts.Resources
	}
	var out []mapping.Write
	for _, w := range d.w.opts.Resources {
		if len(w.Kinds) == 0 || slices.ContainsFunc(w.Kinds, func(k mapping.Kind) bool { return slices.Contains(d.dest.Filter.Kinds, string(k)) }) {
			out = append(out, w)
		}
	}
	return out
}

// logGaps warns of each resource type the gateway delivers that the
// destination's statement caps does not support (Capabilities.Unsupported),
// when they differ from the last statement read (old; nil for none), and
// says when none is left: a missing type is the EHR's configuration to
// change (or the destination's filter), not a record's fault, and each
// delivery with such a resource would otherwise fail on its own. The
// worker still delivers: the EHR may accept what it does not declare.
func (d *destWorker) logGaps(old *Capabilities, caps Capabilities) {
	o := &d.w.opts
	var before []TypeGap
	if old != nil {
		before = old.Unsupported
	}
	if slices.EqualFunc(before, caps.Unsupported, func(a, b TypeGap) bool {
		return a.Type == b.Type && a.Listed == b.Listed && slices.Equal(a.Missing, b.Missing) && slices.Equal(a.Flags, b.Flags)
	}) {
		return
	}
	for _, g := range caps.Unsupported {
		o.Logger.Warn("delivery: destination does not support a resource type the gateway delivers", "destination", d.dest.Name,
			"resource_type", g.Type, "listed", g.Listed, "missing_interactions", strings.Join(g.Missing, ","),
			"missing_flags", strings.Join(g.Flags, ","),
			"hint", "its CapabilityStatement (rest.resource) does not list the type or these interactions, or does not "+
				"declare these flags true (conditionalCreate: the Patient's conditional create; conditionalUpdate: new "+
				"versions' conditional updates; updateCreate: a PUT of an id the EHR does not hold yet): deliveries "+
				"carrying it may be refused or duplicate resources; enable them at the EHR, or keep such records from this destination")
	}
	if len(caps.Unsupported) == 0 && len(before) > 0 {
		o.Logger.Info("delivery: destination supports every resource type the gateway delivers", "destination", d.dest.Name)
	}
}

// setRunning records that the attempt of item id runs (or ended).
func (d *destWorker) setRunning(id int64, on bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.running == nil {
		d.running = map[int64]bool{}
	}
	if on {
		d.running[id] = true
	} else {
		delete(d.running, id)
	}
}

// complete records an attempt's outcome (Outbox.Complete). The item is
// settling meanwhile, and once recorded no longer running, in one step:
// a renewal that finds it no longer in flight never takes it for a lease
// that ran out (p32 F6: it did when the outcome committed before the
// attempt's deferred bookkeeping ran).
func (d *destWorker) complete(ctx context.Context, a *store.Attempt, status string, next time.Time) error {
	d.mu.Lock()
	if d.settling == nil {
		d.settling = map[int64]bool{}
	}
	d.settling[a.ItemID] = true
	d.mu.Unlock()
	err := d.w.outbox.Complete(ctx, a, status, next)
	d.mu.Lock()
	delete(d.settling, a.ItemID)
	if err == nil {
		delete(d.running, a.ItemID)
	}
	d.mu.Unlock()
	return err
}

// unsettled returns those of ids whose attempts are still running and
// not recording their outcome.
func (d *destWorker) unsettled(ids []int64) []int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int64
	for _, id := range ids {
		if d.running[id] && !d.settling[id] {
			out = append(out, id)
		}
	}
	return out
}

// renewLeases renews the claims of the running attempts every third of
// the lease until ctx ends.
func (d *destWorker) renewLeases(ctx context.Context) {
	o := &d.w.opts
	for {
		c, stop := o.Clock.NewTimer(o.Clock.Now().Add(o.Lease / 3))
		select {
		case <-ctx.Done():
			stop()
			return
		case <-c:
		}
		d.mu.Lock()
		ids := make([]int64, 0, len(d.running))
		for id := range d.running {
			ids = append(ids, id)
		}
		d.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		renewed, err := d.w.outbox.Renew(ctx, ids, o.Clock.Now().Add(o.Lease))
		if err != nil {
			if ctx.Err() == nil {
				o.Logger.Warn("delivery: renewing leases failed", "destination", d.dest.Name, "items", len(ids), "error", err)
			}
			continue
		}
		if len(renewed) == len(ids) {
			continue
		}
		// An attempt that ended between the snapshot and the renewal, or
		// whose outcome is being recorded, is no longer in flight: not
		// renewed, and not lost. One not renewed that is still running
		// (looked at after the renewal: an outcome recorded meanwhile is
		// not) outlived its lease (a stall longer than the lease): another
		// worker may send the item too; the EHR's conditional requests keep
		// that from duplicating anything.
		for _, id := range d.unsettled(ids) {
			if !slices.Contains(renewed, id) {
				o.Logger.Warn("delivery: a lease ran out during its attempt", "destination", d.dest.Name,
					"delivery", o.DeliveryID(id))
			}
		}
	}
}

// mode is the effective mode: the configured one lowered by the
// capabilities read, if any.
func (d *destWorker) mode() Mode {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.caps == nil {
		return d.dest.Mode
	}
	return d.caps.Mode(d.dest.Mode)
}

// holdState returns until when the destination is held and whether it is
// on probation (failures since the last success).
func (d *destWorker) holdState() (time.Time, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hold, d.streak > 0
}

// Release ends the hold of destination (an operator made one of its
// deliveries due now): the next claim probes it with one attempt, as after
// a hold that ran out. Returns whether it was held; an unknown name is
// not.
func (w *Worker) Release(destination string) bool {
	for _, d := range w.dests {
		if d.dest.Name != destination {
			continue
		}
		d.mu.Lock()
		held := w.opts.Clock.Now().Before(d.hold)
		d.hold = time.Time{}
		d.mu.Unlock()
		if held {
			w.opts.Logger.Info("delivery: destination hold released by an operator's retry", "destination", destination)
			signal(d.notify)
		}
		return held
	}
	return false
}

// Holds returns, for each destination held after destination-wide
// failures (429, 503, 401, 3xx, unreachable), until when it is held: no
// delivery to it is attempted before. Destinations not held are absent.
func (w *Worker) Holds() map[string]time.Time {
	now := w.opts.Clock.Now()
	out := map[string]time.Time{}
	for _, d := range w.dests {
		if hold, _ := d.holdState(); now.Before(hold) {
			out[d.dest.Name] = hold
		}
	}
	return out
}

// attempt sends one claimed item and records the attempt.
//
// probe tells that the attempt probes the destination after a hold: if it
// fails (and the record is not a dead letter for its own sake, OutcomeDead),
// it does not count toward the record's MaxAttempts (Attempt.Probe), or
// the oldest record would take every failure of a long outage.
func (d *destWorker) attempt(ctx context.Context, it *store.OutboxItem, probe bool) {
	o := &d.w.opts
	defer func() {
		if p := recover(); p != nil {
			// A hook or the outbox panicked: the item stays in flight
			// until its lease ends, then is sent again.
			o.Logger.Error("delivery: panic while recording an attempt", "destination", d.dest.Name, "delivery", o.DeliveryID(it.ID),
				"panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
		}
		d.setRunning(it.ID, false)
		d.inflight.Add(-1)
		signal(d.wake)
	}()
	if strings.HasPrefix(it.LastError, store.LeaseEnded) {
		d.interrupted(ctx, it)
		return
	}
	stop := ctx // ends only when the worker stops and its drain is over
	ctx, cancel := context.WithTimeout(ctx, d.itemTimeout)
	defer cancel()
	end := func(string) {}
	if o.StartAttempt != nil {
		ctx, end = o.StartAttempt(ctx, d.dest.Name, it)
	}
	start := o.Clock.Now()
	res := d.send(ctx, it)
	now := o.Clock.Now()
	if res.RetryAfter > o.BackoffMax {
		// An absurd Retry-After (a millisecond value, a date far ahead)
		// would park the record, and hold the destination, for days:
		// honour it up to the backoff's maximum.
		o.Logger.Warn("delivery: Retry-After capped", "destination", d.dest.Name, "delivery", o.DeliveryID(it.ID),
			"retry_after_s", res.RetryAfter.Seconds(), "cap_s", o.BackoffMax.Seconds())
		res.RetryAfter = o.BackoffMax
	}
	probe = probe && res.Outcome == OutcomeRetry && res.Outage
	status, next := d.decide(it, &res, now, probe)
	a := &store.Attempt{ItemID: it.ID, N: it.Attempts + 1, At: start, Duration: now.Sub(start), HTTPStatus: res.HTTPStatus,
		Outcome: excerpt(res.Body), Error: res.Error, Probe: probe}
	if o.TraceID != nil {
		a.TraceID = o.TraceID(ctx)
	}
	d.track(res, start, now)
	outcome := map[string]string{store.StatusDone: OutcomeDone, store.StatusPending: OutcomeRetry, store.StatusDead: OutcomeDead}[status]
	cctx := context.WithoutCancel(ctx)
	if o.Audit != nil && !res.NotSent { // nothing left, nothing disclosed: no transmission to audit
		if err := d.persist(cctx, stop, it, a.N, "AuditEvent", func(ctx context.Context) error { return o.Audit(ctx, it, a, outcome, res.EntryStatus) }); err != nil {
			end(outcome)
			o.Logger.Error("delivery: the attempt's AuditEvent could not be written; the record is sent again when its lease ends, and this attempt recorded as interrupted",
				"destination", d.dest.Name, "delivery", o.DeliveryID(it.ID), "attempt", a.N, "error", err)
			return
		}
	}
	err := d.persist(cctx, stop, it, a.N, "attempt", func(ctx context.Context) error { return d.complete(ctx, a, status, next) })
	end(outcome)
	if o.Observer != nil {
		o.Observer.OnAttempt(d.dest.Name, outcome, a.Duration)
	}
	// One line per attempt an operator can triage from: delivered
	// (info), retry (info), dead letter (warn).
	level, msg := slog.LevelInfo, "delivery: delivered"
	switch {
	case status == store.StatusDead:
		level, msg = slog.LevelWarn, "delivery: dead letter"
	case status == store.StatusPending:
		msg = "delivery: retry"
	}
	attrs := []any{"destination", d.dest.Name, "delivery", o.DeliveryID(it.ID), "attempt", a.N, "outcome", outcome, "mode", res.Mode,
		"http_status", a.HTTPStatus, "duration_ms", float64(a.Duration.Microseconds()) / 1000, "trace_id", a.TraceID}
	if status != store.StatusDone {
		attrs = append(attrs, "error", a.Error)
	}
	if status == store.StatusDead && len(a.Outcome) > 0 {
		// The EHR's answer may say why (a field it refused); it is kept
		// with the attempt, never logged (it may quote the record): say
		// where to read it (an operator's review).
		attrs = append(attrs, "answer", "kept with the attempt: deliveries show "+o.DeliveryID(it.ID)+" --payload")
	}
	if status == store.StatusPending {
		// A dead letter has no next attempt (next is the zero time).
		attrs = append(attrs, "next_attempt", next)
	}
	if status == store.StatusDone {
		// The EHR took the record but warned: the count, never its texts
		// (the answer is read for them only once the record is delivered).
		if n := fhirwire.Warnings(res.Body); n > 0 {
			level, msg = slog.LevelWarn, "delivery: delivered with EHR warnings"
			attrs = append(attrs, "ehr_warnings", n)
		}
	}
	o.Logger.Log(ctx, level, msg, attrs...)
	if err != nil {
		// The item stays in flight until its lease ends, then is re-sent
		// (idempotently).
		o.Logger.Error("delivery: recording the attempt failed", "destination", d.dest.Name, "delivery", o.DeliveryID(it.ID), "error", err)
	}
}

// interrupted records, and audits, the attempt of a worker that stopped
// (or could not record it) while it was claimed: the destination may have
// received the record. The item is then pending and due, so the worker's
// loop claims it again at once and sends it; were it sent now, two
// attempts would share one claim.
func (d *destWorker) interrupted(ctx context.Context, it *store.OutboxItem) {
	o := &d.w.opts
	a := &store.Attempt{ItemID: it.ID, N: it.Attempts + 1, At: it.NextAttempt, Error: interruptedError, TraceID: it.TraceID}
	cctx := context.WithoutCancel(ctx)
	if o.Audit != nil {
		if err := d.persist(cctx, ctx, it, a.N, "AuditEvent", func(ctx context.Context) error { return o.Audit(ctx, it, a, OutcomeInterrupted, 0) }); err != nil {
			o.Logger.Error("delivery: an interrupted attempt's AuditEvent could not be written; tried again when the lease ends",
				"destination", d.dest.Name, "delivery", o.DeliveryID(it.ID), "attempt", a.N, "error", err)
			return
		}
	}
	if err := d.persist(cctx, ctx, it, a.N, "attempt", func(ctx context.Context) error {
		return d.complete(ctx, a, store.StatusPending, o.Clock.Now())
	}); err != nil {
		o.Logger.Error("delivery: recording an interrupted attempt failed", "destination", d.dest.Name, "delivery", o.DeliveryID(it.ID), "error", err)
		return
	}
	if o.Observer != nil {
		o.Observer.OnAttempt(d.dest.Name, OutcomeInterrupted, 0)
	}
	o.Logger.Warn("delivery: interrupted attempt recorded; the record is sent again",
		"destination", d.dest.Name, "delivery", o.DeliveryID(it.ID), "attempt", a.N, "claimed_at", a.At)
}

// persist runs write (an attempt's AuditEvent or its row) until it
// succeeds, for up to RecordRetry: a database locked or briefly
// unreachable must not cost the record of a transmission that happened
// (re-sending it and leaving the first unrecorded). It stops early on
// store.ErrNotFound (the item is no longer this worker's) and when stop
// ends (the worker stopped and its drain is over). Each failure is logged
// at WARN; the last error is returned.
func (d *destWorker) persist(ctx, stop context.Context, it *store.OutboxItem, n int, what string, write func(context.Context) error) error {
	o := &d.w.opts
	deadline := o.Clock.Now().Add(o.RecordRetry)
	wait := 250 * time.Millisecond
	for try := 1; ; try++ {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := write(wctx)
		cancel()
		if err == nil || errors.Is(err, store.ErrNotFound) {
			return err
		}
		next := o.Clock.Now().Add(wait)
		if next.After(deadline) || stop.Err() != nil {
			return err
		}
		o.Logger.Warn("delivery: recording an attempt failed; trying again", "destination", d.dest.Name,
			"delivery", o.DeliveryID(it.ID), "attempt", n, "what", what, "try", try, "error", err)
		c, release := o.Clock.NewTimer(next)
		select {
		case <-c:
		case <-stop.Done():
		}
		release()
		wait = min(2*wait, 5*time.Second)
	}
}

// send delivers it, turning a panic into a retryable Result.
func (d *destWorker) send(ctx context.Context, it *store.OutboxItem) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			d.w.opts.Logger.Error("delivery: panic while sending", "destination", d.dest.Name, "delivery", d.w.opts.DeliveryID(it.ID),
				"panic_type", fmt.Sprintf("%T", p), "stack", string(debug.Stack()))
			res = Result{Outcome: OutcomeRetry, Error: "internal error (panic)"}
		}
	}()
	// The destination's filter may have changed since the record was
	// queued: a clinic, kind or source taken off a destination has none of
	// its records sent there. Each refusal names the filter's field.
	switch {
	case !d.dest.acceptsKind(it.Kind):
		return notSent(store.NotSent + "the destination's filter.kinds does not accept this record's kind")
	case !d.dest.acceptsSource(it.Source):
		return notSent(store.NotSent + "the destination's filter.sources does not accept this record's source")
	case !d.dest.AcceptsTenant(it.Tenant):
		return notSent(store.NotSent + "the destination's filter.tenants does not accept this record's tenant")
	case len(it.Payload) == 0 && strings.HasPrefix(it.LastError, store.Refused):
		// Refused as its record was stored (and put back by hand): the
		// reason stands.
		return notSent(it.LastError)
	case len(it.Payload) == 0:
		return notSent(store.NotSent + "empty payload")
	case d.dest.MRNSystems != nil && !d.dest.knowsMRNs(it.Payload):
		// Built before mrnSystems was set or changed (queued, retried,
		// or a dead letter put back): sending it would disclose another
		// hospital's MRN. A new version of the record builds it anew (docs/configuration.md).
		return notSent(store.NotSent + "built before mrnSystems was set; it carries an MRN of a system this destination does not know")
	}
	if w := d.w.opts.Withhold; w != nil {
		reason, err := w(ctx, it)
		if err != nil {
			// Nothing sent: tried again, as an attempt the EHR never saw.
			return Result{Outcome: OutcomeRetry, Error: store.NotSent + "could not check whether the record reached this destination; tried again", NotSent: true}
		}
		if reason != "" {
			return notSent(reason)
		}
	}
	return d.client.Deliver(ctx, it.Payload, d.mode())
}

// decide turns an attempt's Result into the item's next status (done,
// pending or dead) and retry time, adding to res.Error when giving up.
// The failed probes of a destination on hold (probe: this one, and
// it.Probes) do not count toward MaxAttempts; MaxAge still applies.
func (d *destWorker) decide(it *store.OutboxItem, res *Result, now time.Time, probe bool) (string, time.Time) {
	o := &d.w.opts
	switch res.Outcome {
	case OutcomeDone:
		return store.StatusDone, time.Time{}
	case OutcomeDead:
		return store.StatusDead, time.Time{}
	}
	if res.Error == "" {
		res.Error = "unknown failure"
	}
	n := it.Attempts + 1
	counted := n - it.Probes
	if probe {
		counted--
	}
	if counted >= o.MaxAttempts {
		res.Error += fmt.Sprintf(" (gave up after %d attempts)", n)
		return store.StatusDead, time.Time{}
	}
	conflict := res.HTTPStatus == http.StatusConflict || res.EntryStatus == http.StatusConflict
	if conflict && n >= ConflictAttempts {
		res.Error += fmt.Sprintf(" (gave up after %d attempts: a conflict that does not clear)", n)
		return store.StatusDead, time.Time{}
	}
	if o.MaxAge > 0 && !it.Created.IsZero() && now.Sub(it.Created) >= o.MaxAge {
		res.Error += fmt.Sprintf(" (gave up after %v)", o.MaxAge)
		return store.StatusDead, time.Time{}
	}
	wait := max(d.backoff(n), res.RetryAfter)
	if conflict {
		// The EHR may still be processing an earlier attempt of the
		// record (one that timed out): not before it could be done.
		wait = max(wait, d.dest.Timeout)
	}
	next := now.Add(wait)
	if o.MaxAge > 0 && !it.Created.IsZero() {
		// Never wait past the dead-letter deadline: the attempt at the
		// deadline is the last one.
		if deadline := it.Created.Add(o.MaxAge); next.After(deadline) {
			next = deadline
		}
	}
	return store.StatusPending, next
}

// backoff is the full-jitter delay after the n-th consecutive failure.
func (d *destWorker) backoff(n int) time.Duration {
	o := &d.w.opts
	ceil := o.BackoffBase
	for i := 1; i < n && ceil < o.BackoffMax; i++ {
		ceil *= 2 // no overflow: stops at the first value >= BackoffMax
	}
	return time.Duration(o.Rand() * float64(min(ceil, o.BackoffMax)))
}

// track holds the whole destination after a destination-wide failure
// (backoff over the consecutive rounds of such failures, at least the
// Retry-After) and releases it after a success. The attempts that were
// already running when a round's first failure set the hold are the same
// round: they do not lengthen the backoff (with concurrency 4, one short
// outage would otherwise count as 4 failures a round and hold the
// destination for minutes after it recovered); they only lengthen the
// hold to their own Retry-After. Holding (once a round, with until when
// the round's first failure holds it) and resuming are logged.
func (d *destWorker) track(res Result, start, now time.Time) {
	log := d.w.opts.Logger
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case res.Outcome == OutcomeDone:
		d.recheck = d.capsFailed != ""
		if d.failing >= failingWarnEvery {
			log.Info("delivery: destination answering again", "destination", d.dest.Name, "failed_attempts", d.failing)
		}
		d.failing = 0
	case res.Outcome == OutcomeRetry && !res.DestinationWide:
		d.failing++
		if d.failing%failingWarnEvery == 0 {
			log.Warn("delivery: destination failing", "destination", d.dest.Name, "consecutive_failures", d.failing,
				"http_status", res.HTTPStatus, "error", res.Error)
		}
	}
	switch {
	case res.Outcome == OutcomeDone || (!res.DestinationWide && d.streak > 0 && start.After(d.holdSet)):
		// A success, or any other answer to an attempt made after the hold
		// (the EHR answers again): full concurrency.
		if d.streak > 0 {
			log.Info("delivery: destination resumed", "destination", d.dest.Name, "failed_rounds", d.streak)
		}
		d.streak, d.hold, d.holdSet = 0, time.Time{}, time.Time{}
	case res.Outcome == OutcomeRetry && res.DestinationWide:
		// The round's first failure sets the hold and logs it; an attempt
		// of the same round only lengthens it to its own Retry-After, not
		// logged: "destination on hold" is one line a round (p44 F5: with
		// a Retry-After, each of 4 concurrent attempts logged one).
		wait, first := res.RetryAfter, start.After(d.holdSet)
		if first {
			d.streak++
			d.holdSet = now
			wait = max(d.backoff(d.streak), wait)
		}
		if until := now.Add(wait); until.After(d.hold) {
			d.hold = until
			if first {
				log.Warn("delivery: destination on hold", "destination", d.dest.Name, "until", until,
					"failed_rounds", d.streak, "http_status", res.HTTPStatus, "error", res.Error)
			}
		}
	}
}
