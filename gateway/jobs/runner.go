package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Run is one claim of a job, as its handler sees it.
type Run struct {
	// Job is the job as claimed: its request, its checkpoint (nil on the
	// first attempt), its tenant and owner, its attempts.
	Job *store.Job

	s           *Service
	claim       string
	done, total atomic.Int64
	mu          sync.Mutex // one save at a time
	lost        context.CancelCauseFunc

	// stop closes when the job is cancelled; a handler that watches it
	// (Cancelled) stops at its next item and returns its final state,
	// any other has its context ended.
	stop     chan struct{}
	stopOnce sync.Once
	graceful atomic.Bool
	// ended closes once the run's end is recorded.
	ended chan struct{}
}

// Cancelled returns a channel that closes when the job is cancelled (its
// client's DELETE, in this process or another). A handler that calls it
// takes over its cancellation: its context is no longer ended by a cancel,
// so that what it is writing completes; it must stop starting work once
// the channel closes and return its final state as its result (kept, as
// the cancelled job's, until the job expires). Other handlers have their
// context ended by a cancel.
func (r *Run) Cancelled() <-chan struct{} {
	r.graceful.Store(true)
	return r.stop
}

// cancel tells the handler its job was cancelled.
func (r *Run) cancel() {
	r.stopOnce.Do(func() { close(r.stop) })
	if !r.graceful.Load() {
		r.lost(ErrLost)
	}
}

// cancelled reports whether the job was cancelled while it ran.
func (r *Run) cancelled() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// fenced handles a write refused because the job is no longer this
// runner's: a cancelled job is cancelled (ErrCancelled), any other is
// lost (ErrLost: another process claimed it).
func (r *Run) fenced(ctx context.Context) error {
	if j, err := r.s.st.Job(ctx, r.Job.ID); err == nil && j.Status == store.JobCancelled && j.Claim == r.claim {
		r.cancel()
		if r.graceful.Load() {
			return ErrCancelled
		}
		return ErrLost
	}
	r.lost(ErrLost)
	return ErrLost
}

// Progress records how far the job got (total -1 while unknown); the
// runner saves it with the next renewal or Save.
func (r *Run) Progress(done, total int64) {
	r.done.Store(done)
	r.total.Store(total)
}

// Save commits, in one transaction, the progress, checkpoint (nil keeps
// the last one) and the file parts written since the last Save, and
// renews the lease. It returns ErrCancelled, having written nothing, once
// the job is cancelled (see Cancelled), and ErrLost once it is no longer
// this runner's otherwise (and then ends the handler's context).
func (r *Run) Save(ctx context.Context, checkpoint []byte, parts []store.JobPart) error {
	return r.save(ctx, checkpoint, parts, nil)
}

// SaveDropping is Save that also deletes the parts of the files drop, in
// the same transaction: an input the job has done with (an import's
// records, PHI, kept no longer than needed: docs/bulk.md).
func (r *Run) SaveDropping(ctx context.Context, checkpoint []byte, parts []store.JobPart, drop ...int) error {
	return r.save(ctx, checkpoint, parts, drop)
}

func (r *Run) save(ctx context.Context, checkpoint []byte, parts []store.JobPart, drop []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.s.st.SaveJob(ctx, r.Job.ID, r.claim, r.s.cfg.Now().Add(r.s.cfg.Lease),
		store.JobProgress{Done: r.done.Load(), Total: r.total.Load(), Checkpoint: checkpoint, Parts: parts, Drop: drop})
	if errors.Is(err, store.ErrNotFound) {
		return r.fenced(ctx)
	}
	return err
}

// File calls fn with the parts of file n of the run's own job, in order
// (an import reads its uploaded input this way).
func (r *Run) File(ctx context.Context, n int, fn func([]byte) error) error {
	return r.s.st.JobFile(ctx, r.Job.ID, n, fn)
}

// Start starts the runner: it claims jobs of the kinds it has handlers
// for and runs up to Workers of them at once, and purges expired jobs.
// Close stops it.
func (s *Service) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil || len(s.cfg.Handlers) == 0 || s.st == nil {
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop, s.done = stop, make(chan struct{})
	go s.loop(ctx, s.done, slices.Sorted(maps.Keys(s.cfg.Handlers)))
}

// Close stops claiming, ends the running jobs' handlers and releases their
// jobs (claimable at once by another process, from their checkpoints), and
// returns when every handler has returned. It is safe to call twice.
func (s *Service) Close() error {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.stop = nil
	s.mu.Unlock()
	if stop == nil {
		return nil
	}
	stop()
	<-done
	return nil
}

// purgeEvery is how often a runner purges expired jobs.
const purgeEvery = time.Minute

// purgeBatch is how many expired jobs one purge transaction deletes (with
// their files: an export's parts can be large), and purgeBudget how long
// one round of purging may go on before the runner claims jobs again.
const (
	purgeBatch  = 10
	purgeBudget = 5 * time.Second
)

// purge deletes the jobs expired by now, with their files, in batches of
// purgeBatch until none is left, so that retention holds however many
// jobs finish a minute; it returns how many it deleted, and more when
// purgeBudget ran out first (the runner purges again at once then).
func (s *Service) purge(ctx context.Context, now time.Time) (deleted int, more bool) {
	start := time.Now() // the work's own duration, whatever the clock
	for {
		n, err := s.st.PurgeJobs(ctx, now, purgeBatch)
		deleted += n
		if err != nil {
			if ctx.Err() == nil {
				s.cfg.Logger.Warn("jobs: purge failed", "error", err)
			}
			break
		}
		if n < purgeBatch {
			break
		}
		if time.Since(start) >= purgeBudget {
			more = true
			break
		}
	}
	if deleted > 0 {
		s.cfg.Logger.Info("jobs: purged expired jobs", "jobs", deleted)
	}
	return deleted, more
}

// loop claims and starts jobs of kinds until ctx ends, then waits for
// them.
func (s *Service) loop(ctx context.Context, done chan struct{}, kinds []string) {
	defer close(done)
	defer s.running.Wait()
	slots := make(chan struct{}, s.cfg.Workers)
	freed := make(chan struct{}, s.cfg.Workers)
	var nextPurge time.Time
	var failing store.FailureRun // claims failing in a row: an outage is logged once
	for ctx.Err() == nil {
		now := s.cfg.Now()
		if !now.Before(nextPurge) {
			nextPurge = now.Add(purgeEvery)
			if _, more := s.purge(ctx, now); more {
				nextPurge = now // after a look for jobs to run
			}
		}
		claimed := false
		select {
		case slots <- struct{}{}:
			j, err := s.st.ClaimJob(ctx, kinds, ClaimToken(s.cfg.Instance), now, s.cfg.Lease)
			if err != nil {
				j = nil // a failed claim claimed nothing: never run what it returned
				if ctx.Err() == nil {
					level, n := failing.Failed(err)
					s.cfg.Logger.Log(ctx, level, "jobs: claim failed", "cause", store.FailureCause(err), "error_class", store.ErrorClass(err),
						"failures_in_a_row", n)
				}
			} else if n := failing.Succeeded(); n > 0 {
				s.cfg.Logger.Info("jobs: claims succeed again", "failures_in_a_row", n)
			}
			if j == nil {
				<-slots
				break
			}
			claimed = true
			s.running.Go(func() {
				defer func() { <-slots; freed <- struct{}{} }()
				s.run(ctx, j)
			})
		default:
		}
		if claimed {
			continue // another slot may be free, another job waiting
		}
		t := time.NewTimer(s.cfg.Poll)
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-freed:
		case <-t.C:
		}
		t.Stop()
	}
}

// run runs one claimed job to its end, its release or its loss.
func (s *Service) run(parent context.Context, j *store.Job) {
	log := s.cfg.Logger.With("job", j.ID, "kind", j.Kind, "attempt", j.Attempts)
	if j.Attempts > s.cfg.MaxAttempts {
		s.finish(log, j, nil, store.JobFailed, nil, givenUp(j))
		return
	}
	if why := s.revoked(j); why != "" {
		// De-registering a client revokes its pending work too: nothing
		// more is written in its name (what it wrote before stays).
		log.Warn("jobs: the job's client is no longer registered with the rights it was submitted with; the job is failed",
			"owner", j.Owner, "tenant", j.Tenant, "why", why)
		s.finish(log, j, nil, store.JobFailed, nil, OwnerRevoked+": "+why)
		return
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	defer cancel(nil)
	stopOnClose := context.AfterFunc(parent, func() { cancel(errShutdown) })
	defer stopOnClose()
	r := &Run{Job: j, s: s, claim: j.Claim, lost: cancel, stop: make(chan struct{}), ended: make(chan struct{})}
	r.Progress(j.Done, j.Total)
	s.mu.Lock()
	if s.active == nil {
		s.active = map[string]*Run{}
	}
	s.active[j.ID] = r
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.active, j.ID)
		s.mu.Unlock()
		close(r.ended)
	}()

	renewDone := make(chan struct{})
	go func() {
		defer close(renewDone)
		s.renew(ctx, r, log)
	}()
	log.Info("jobs: started")
	result, err := s.handle(ctx, r)
	cancel(nil)
	<-renewDone

	cause := context.Cause(ctx)
	switch {
	case r.cancelled():
		// Its final state, when the handler returned one, stays readable
		// until the job expires.
		if err != nil {
			result = nil
		}
		s.finish(log, j, r, store.JobCancelled, result, "")
	case errors.Is(cause, ErrLost):
		log.Warn("jobs: the job was cancelled or taken over; stopped")
	case errors.Is(cause, errShutdown) && err != nil:
		// Closing: another process (or this one, restarted) resumes it.
		s.finish(log, j, r, store.JobQueued, nil, "")
	case err == nil:
		s.finish(log, j, r, store.JobDone, result, "")
	case errors.Is(err, store.ErrUnavailable) && j.Attempts < s.cfg.MaxAttempts:
		log.Warn("jobs: the database is unavailable; the job is released to be tried again", "error", err)
		s.finish(log, j, r, store.JobQueued, nil, "")
	default:
		kind, issues := outcome.From(err)
		reason := "the job failed; the failure has been logged"
		if kind != outcome.Internal && len(issues) > 0 {
			reason = issues[0].Message
		}
		// The error's class and rules, never its text (it may quote values).
		log.Error("jobs: failed", "error_class", fmt.Sprintf("%T", err), "rules", outcome.Rules(err))
		s.finish(log, j, r, store.JobFailed, nil, reason)
	}
}

// OwnerRevoked begins the reason of a job failed because its owner, a
// registered client, is no longer registered with the rights it was
// submitted with (FailureRule).
const OwnerRevoked = "its client is no longer registered with the rights it was submitted with"

// FailureRule is the rule id of a failed job's outcome: job-owner-revoked
// for a job failed as its client was removed, moved to another tenant or
// lost the scope the job needs; job-failed for any other.
func FailureRule(j *store.Job) string {
	if strings.HasPrefix(j.Error, OwnerRevoked) {
		return "job-owner-revoked"
	}
	return "job-failed"
}

// revoked says why j's owner may no longer run it ("" when it may): a
// registered client that is no longer registered, is registered in
// another tenant, or lacks a scope the job's kind needs. Owners that are
// not registered clients (console people, external issuers' clients,
// development mode's caller) are not checked: the registration does not
// list them.
func (s *Service) revoked(j *store.Job) string {
	if s.cfg.Registry == nil || !auth.IsClientKey(j.Owner) {
		return ""
	}
	tenant, scopes, ok := s.cfg.Registry.Registration(j.Owner)
	switch {
	case !ok:
		return fmt.Sprintf("client %q was removed from the configuration", j.Owner)
	case tenant != j.Tenant:
		return fmt.Sprintf("client %q now acts for another tenant than the job's", j.Owner)
	}
	s.mu.Lock()
	needs := s.needs[j.Kind]
	s.mu.Unlock()
	for _, n := range needs {
		if !scopes.Has(n) {
			return fmt.Sprintf("client %q no longer has the scope %s that its %s job needs", j.Owner, n, j.Kind)
		}
	}
	return ""
}

// givenUp is why a job claimed MaxAttempts times running without saving
// a checkpoint is failed, with how far it got: what its last checkpoint
// holds is done (an import's records up to there are stored or
// rejected; records after it found in the ledger change nothing when the
// input is posted again).
func givenUp(j *store.Job) string {
	msg := fmt.Sprintf("gave up after %d attempts since it last saved progress (runs that stopped before saving "+
		"any: a process that dies on this job)", j.Attempts-1)
	switch {
	case j.Total > 0:
		msg += fmt.Sprintf("; %d of %d items were done when it last saved its progress", j.Done, j.Total)
	case j.Done > 0:
		msg += fmt.Sprintf("; %d items were done when it last saved its progress", j.Done)
	}
	return msg
}

// handle runs the job's handler, turning a panic into an error.
func (s *Service) handle(ctx context.Context, r *Run) (result []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.cfg.Logger.Error("jobs: handler panicked", "job", r.Job.ID, "kind", r.Job.Kind, "stack", string(debug.Stack()))
			result, err = nil, fmt.Errorf("%s job handler panicked", r.Job.Kind)
		}
	}()
	s.mu.Lock()
	h := s.cfg.Handlers[r.Job.Kind]
	s.mu.Unlock()
	return h(ctx, r)
}

// renew renews the lease (and saves the progress counts) every third of
// it until ctx ends, and between renewals looks every Poll whether the job
// was cancelled (by a client of another process: this process's own
// cancels reach the run at once); a lost job ends ctx.
func (s *Service) renew(ctx context.Context, r *Run, log *slog.Logger) {
	every := s.cfg.Lease / 3
	look := min(s.cfg.Poll, every)
	t := time.NewTicker(look)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if r.cancelled() {
			continue
		}
		if time.Since(last) < every {
			if j, err := s.st.Job(ctx, r.Job.ID); err == nil && j.Status == store.JobCancelled {
				r.cancel()
			}
			continue
		}
		last = time.Now()
		if err := r.Save(ctx, nil, nil); err != nil && !errors.Is(err, ErrLost) && !errors.Is(err, ErrCancelled) && ctx.Err() == nil {
			log.Warn("jobs: renewing the lease failed", "error", err)
		}
	}
}

// finish records a job's end (or release) with a context of its own: the
// runner may be closing. Its progress is r's (nil: the job ended before
// it ran, with the progress it was claimed with).
func (s *Service) finish(log *slog.Logger, j *store.Job, r *Run, status string, result []byte, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := store.JobEnd{Status: status, Result: result, Error: reason, Expires: s.cfg.Now().Add(s.cfg.Retention),
		Done: j.Done, Total: j.Total}
	if r != nil {
		e.Done, e.Total = r.done.Load(), r.total.Load()
	}
	err := s.st.FinishJob(ctx, j.ID, j.Claim, e)
	switch {
	case errors.Is(err, store.ErrNotFound) && status == store.JobCancelled:
		log.Warn("jobs: the cancelled job's final state could not be recorded")
	case errors.Is(err, store.ErrNotFound):
		log.Info("jobs: the job was cancelled meanwhile", "status", status)
	case err != nil:
		// The lease runs out and the job is claimed again.
		log.Error("jobs: recording the job's end failed", "status", status, "error", err)
	default:
		log.Info("jobs: "+status, "status", status)
	}
}
