package jobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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
}

// Progress records how far the job got (total -1 while unknown); the
// runner saves it with the next renewal or Save.
func (r *Run) Progress(done, total int64) {
	r.done.Store(done)
	r.total.Store(total)
}

// Save commits, in one transaction, the progress, checkpoint (nil keeps
// the last one) and the file parts written since the last Save, and
// renews the lease. It returns ErrLost, having written nothing, once the
// job is no longer this runner's (and then ends the handler's context).
func (r *Run) Save(ctx context.Context, checkpoint []byte, parts []store.JobPart) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.s.st.SaveJob(ctx, r.Job.ID, r.claim, r.s.cfg.Now().Add(r.s.cfg.Lease),
		store.JobProgress{Done: r.done.Load(), Total: r.total.Load(), Checkpoint: checkpoint, Parts: parts})
	if errors.Is(err, store.ErrNotFound) {
		r.lost(ErrLost)
		return ErrLost
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

// loop claims and starts jobs of kinds until ctx ends, then waits for
// them.
func (s *Service) loop(ctx context.Context, done chan struct{}, kinds []string) {
	defer close(done)
	defer s.running.Wait()
	slots := make(chan struct{}, s.cfg.Workers)
	freed := make(chan struct{}, s.cfg.Workers)
	var nextPurge time.Time
	for ctx.Err() == nil {
		now := s.cfg.Now()
		if !now.Before(nextPurge) {
			nextPurge = now.Add(purgeEvery)
			if n, err := s.st.PurgeJobs(ctx, now, 10); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("jobs: purge failed", "error", err)
			} else if n > 0 {
				s.cfg.Logger.Info("jobs: purged expired jobs", "jobs", n)
			}
		}
		claimed := false
		select {
		case slots <- struct{}{}:
			j, err := s.st.ClaimJob(ctx, kinds, store.NewID(), now, s.cfg.Lease)
			if err != nil && ctx.Err() == nil {
				s.cfg.Logger.Error("jobs: claim failed", "error", err)
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
		s.finish(log, j, store.JobFailed, nil, fmt.Sprintf("gave up after %d attempts", j.Attempts-1))
		return
	}
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(parent))
	defer cancel(nil)
	stopOnClose := context.AfterFunc(parent, func() { cancel(errShutdown) })
	defer stopOnClose()
	r := &Run{Job: j, s: s, claim: j.Claim, lost: cancel}
	r.Progress(j.Done, j.Total)

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
	case errors.Is(cause, ErrLost):
		log.Warn("jobs: the job was cancelled or taken over; stopped")
	case errors.Is(cause, errShutdown) && err != nil:
		// Closing: another process (or this one, restarted) resumes it.
		s.finish(log, j, store.JobQueued, nil, "")
	case err == nil:
		s.finish(log, j, store.JobDone, result, "")
	case errors.Is(err, store.ErrUnavailable) && j.Attempts < s.cfg.MaxAttempts:
		log.Warn("jobs: the database is unavailable; the job is released to be tried again", "error", err)
		s.finish(log, j, store.JobQueued, nil, "")
	default:
		kind, issues := outcome.From(err)
		reason := "the job failed; the failure has been logged"
		if kind != outcome.Internal && len(issues) > 0 {
			reason = issues[0].Message
		}
		// The error's class and rules, never its text (it may quote values).
		log.Error("jobs: failed", "error_class", fmt.Sprintf("%T", err), "rules", outcome.Rules(err))
		s.finish(log, j, store.JobFailed, nil, reason)
	}
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
// it until ctx ends; a lost job ends ctx.
func (s *Service) renew(ctx context.Context, r *Run, log *slog.Logger) {
	every := s.cfg.Lease / 3
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := r.Save(ctx, nil, nil); err != nil && !errors.Is(err, ErrLost) && ctx.Err() == nil {
			log.Warn("jobs: renewing the lease failed", "error", err)
		}
	}
}

// finish records a job's end (or release) with a context of its own: the
// runner may be closing.
func (s *Service) finish(log *slog.Logger, j *store.Job, status string, result []byte, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.st.FinishJob(ctx, j.ID, j.Claim, status, result, reason, s.cfg.Now().Add(s.cfg.Retention))
	switch {
	case errors.Is(err, store.ErrNotFound):
		log.Info("jobs: the job was cancelled meanwhile", "status", status)
	case err != nil:
		// The lease runs out and the job is claimed again.
		log.Error("jobs: recording the job's end failed", "status", status, "error", err)
	default:
		log.Info("jobs: "+status, "status", status)
	}
}
