// Package jobs is the gateway's one facility for durable background work:
// bulk exports, asynchronous imports and mapping replays are jobs kept in
// the database (store.Jobs), claimed by one process at a time under a
// lease it renews while it runs, with their progress, a checkpoint to
// resume from, their result and their files (written in parts beside the
// job, so every replica can serve them), cancelled by their owner and
// purged once expired.
//
// A Service submits jobs for a caller and shows, cancels and reads them for
// that caller only; its runner (Start, Close) claims jobs of the kinds it
// has a Handler for and runs them. A runner that dies leaves its job to be
// claimed again, by any process, when the lease runs out; a runner that is
// closed releases its jobs at once. Either way the job resumes from its last
// checkpoint: what a handler saves with Run.Save (its checkpoint and the
// file parts written since the last one) is committed atomically, so a
// resumed job never sees a part without its checkpoint nor a checkpoint
// without its parts. A runner that lost its job (cancelled, or claimed by
// another after a stall longer than the lease) is refused every write from
// then on (ErrLost) and stops.
package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Store is the part of the store the jobs use.
type Store = store.Jobs

// Handler runs one job of its kind: it resumes from run.Job.Checkpoint
// when that is set, saves its progress and files with run.Save, and
// returns the job's result (JSON). It must stop when ctx ends (the job was
// cancelled, lost, or the process is stopping): its error then does not
// matter. An error that wraps store.ErrUnavailable lets the job be tried
// again later; any other fails it, with the error's outcome message as the
// reason (never its text).
type Handler func(ctx context.Context, run *Run) (result []byte, err error)

// Config configures a Service. Zero values select the defaults.
type Config struct {
	// Store keeps the jobs (required).
	Store Store
	// Handlers run the jobs of each kind (more can be registered with
	// Handle); a Service claims only kinds it has a handler for.
	Handlers map[string]Handler
	// Lease is how long a claim lasts unless renewed (default 30 s): a
	// running job's lease is renewed every third of it, so the job of a
	// process that died is claimed again within Lease (plus Poll).
	Lease time.Duration
	// Poll is how often the runner looks for jobs without Notify
	// (default 1 s).
	Poll time.Duration
	// Workers is how many jobs one process runs at once (default 1).
	Workers int
	// Retention is how long a finished job, its result and its files are
	// kept (default 24 h); then they are purged.
	Retention time.Duration
	// MaxAttempts fails a job after that many claims in a row that saved
	// no checkpoint (default 5): a job that kills its process every time
	// is not tried for ever, one that advances each time is finished.
	MaxAttempts int
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Instance names this process among those on the database: its
	// claims carry it (ClaimHolder), so an operator sees which gateway
	// runs a job.
	Instance string
	// Logger gets PHI-free events (default: discarded).
	Logger *slog.Logger
	// Registry, when set, is the clients' current registration: a job
	// whose owner is a registered client (auth.IsClientKey) is run only
	// while that client is registered, in the job's tenant, with the
	// scopes its kind needs (Handle); otherwise the runner fails it when
	// it claims it (OwnerRevoked). Nil (development mode) checks nothing.
	Registry Registry
}

// Registry is the clients' current registration (auth.Server).
type Registry interface {
	// Registration returns the tenant and scopes the registered client id
	// has now; ok false when no client of that id is registered.
	Registration(id string) (tenant string, scopes auth.Scopes, ok bool)
}

// Service submits, shows, cancels and runs jobs.
type Service struct {
	st  Store
	cfg Config

	mu      sync.Mutex
	stop    context.CancelFunc // nil when not running
	done    chan struct{}
	wake    chan struct{}
	running sync.WaitGroup
	active  map[string]*Run     // the runs of this process, by job id
	needs   map[string][]string // the scopes each kind's owner must still have
}

// New returns a Service. It does no I/O and starts nothing: see Start.
func New(cfg Config) *Service {
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&cfg.Lease, 30*time.Second)
	def(&cfg.Poll, time.Second)
	def(&cfg.Retention, 24*time.Hour)
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = 5
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{st: cfg.Store, cfg: cfg, wake: make(chan struct{}, 1)}
}

// Handle registers the handler of a kind of job; the runner claims jobs
// of the kinds registered before Start. needs are the scopes (auth.Scopes
// Has names) a registered client must still hold for its job of this kind
// to run (see Config.Registry): those its submission needed.
func (s *Service) Handle(kind string, h Handler, needs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cfg.Handlers == nil {
		s.cfg.Handlers = map[string]Handler{}
	}
	s.cfg.Handlers[kind] = h
	if len(needs) > 0 {
		if s.needs == nil {
			s.needs = map[string][]string{}
		}
		s.needs[kind] = needs
	}
}

// FileURL is where file n of job id is downloaded from a gateway reached
// at base ("https://gw").
func FileURL(base, id string, n int) string { return fmt.Sprintf("%s/jobs/%s/files/%d", base, id, n) }

// Scope is the scope a job acts with: its owner's, as the owner was when
// it asked (tenant and scopes, recorded with the request), with the job's
// id as the request id.
func Scope(j *store.Job, interaction, scopes string) *auditlog.Scope {
	sc := auditlog.NewScope(interaction, &auth.Principal{ClientID: j.Owner, Tenant: j.Tenant, Scopes: auth.ParseScopes(scopes)})
	sc.RequestID = j.ID
	return sc
}

// ClaimToken is a new claim of the process named instance: a random
// token that tells its holder (ClaimHolder).
func ClaimToken(instance string) string {
	if instance == "" {
		return store.NewID()
	}
	return instance + "#" + store.NewID()
}

// ClaimHolder is the name of the process that holds claim (ClaimToken),
// "" when the claim does not tell (a process of an older release, or none).
func ClaimHolder(claim string) string {
	if i := strings.LastIndexByte(claim, '#'); i > 0 {
		return claim[:i]
	}
	return ""
}

// Retention is how long finished jobs are kept.
func (s *Service) Retention() time.Duration { return s.cfg.Retention }

// Errors of the caller-facing methods.
var (
	// ErrUnknown: no job of that id for this caller (it never existed,
	// is another client's or tenant's, was cancelled, or expired).
	ErrUnknown = outcome.New(outcome.NotFound, "not-found", "job-unknown",
		"no such job for this client: it never existed, was cancelled or has expired")
	// ErrFileUnknown: the job has no file of that number for a client
	// (files are numbered from 1; a job's other files, such as an
	// export's PatientsFile or an import's input, are never served).
	ErrFileUnknown = outcome.New(outcome.NotFound, "not-found", "job-file-unknown", "the job has no such file")
	// ErrLost is returned by Run.Save once the job is no longer this
	// runner's (claimed by another process, or cancelled when the
	// handler does not watch Run.Cancelled).
	ErrLost = errors.New("the job is no longer this runner's")
	// ErrCancelled is returned by Run.Save once the job is cancelled and
	// its handler watches Run.Cancelled: nothing was written, and the
	// handler stops at its next item.
	ErrCancelled = errors.New("the job was cancelled")
	// errShutdown ends the jobs of a runner that is closing.
	errShutdown = errors.New("the runner is closing")
)

// MaxActive bounds the jobs of one kind (imports, replays, reindexes, ...)
// a client has uploading, queued or running: an import's input waits in the
// database until it runs, and a client's queue must neither fill the disk
// nor grow without end (probe p30 F4). Exports have their own, equal,
// bound (bulk: export-too-many).
const MaxActive = 3

// tooMany is the Throttled answer to a client with MaxActive jobs of kind.
func tooMany(kind string) error {
	return &outcome.Error{Kind: outcome.Throttled, RetryAfter: 60, Issues: []outcome.Issue{{Severity: "error",
		Code: "throttled", Rule: "job-too-many", Message: fmt.Sprintf("this client has %d %s jobs waiting or running; "+
			"wait for one to finish (poll its status) or cancel one, then retry", MaxActive, kind)}}}
}

// CheckActive returns a Throttled error (rule job-too-many) when the
// caller of sc has MaxActive jobs of kind waiting or running: queued,
// running, or uploading and not expired (an abandoned upload expires).
// It is advisory, for a caller to check before costly work: Submit's own
// check, in the store, is the one that holds.
//
// Each status is its own read, and a job may change status between them
// (claimed from queued to running, released back to queued): it is
// counted once, by its id, never twice (a client with two exports had its
// third refused when one was claimed between the reads, CI of session 30).
func (s *Service) CheckActive(ctx context.Context, sc *auditlog.Scope, kind string) error {
	now, active := s.cfg.Now(), map[string]bool{}
	for _, status := range []string{store.JobQueued, store.JobRunning, store.JobUploading} {
		f := store.JobFilter{Kind: kind, Tenant: sc.TenantOf(), Owner: sc.ClientID, Status: status, Limit: MaxActive}
		if status == store.JobUploading {
			f.Limit = 100 // expired ones wait for the purge
		}
		js, err := s.st.ListJobs(ctx, f)
		if err != nil {
			return fmt.Errorf("submit %s job: %w", kind, err)
		}
		for _, j := range js {
			if status != store.JobUploading || j.Expires.IsZero() || now.Before(j.Expires) {
				active[j.ID] = true
			}
		}
	}
	if len(active) >= MaxActive {
		return tooMany(kind)
	}
	return nil
}

// TooMany reports whether err is CheckActive's refusal.
func TooMany(err error) bool {
	var oe *outcome.Error
	return errors.As(err, &oe) && len(oe.Issues) == 1 && oe.Issues[0].Rule == "job-too-many"
}

// Submit creates a job of kind for the caller of sc with request (JSON):
// queued, or JobUploading when its input follows (Upload, then Queue).
// Returns a Throttled error (rule job-too-many) if the caller has MaxActive
// jobs of kind uploading, queued or running; store errors. The store
// counts and creates in one step for the whole database: a client's
// requests sent at once, to one gateway or to several sharing the
// database, cannot together pass the bound (probe p33 F1).
func (s *Service) Submit(ctx context.Context, sc *auditlog.Scope, kind string, request []byte, uploading bool) (*store.Job, error) {
	j := &store.Job{ID: store.NewID(), Kind: kind, Tenant: sc.TenantOf(), Owner: sc.ClientID, Request: request, Total: -1}
	if uploading {
		// An upload abandoned half way is purged after the retention.
		j.Status, j.Expires = store.JobUploading, s.cfg.Now().Add(s.cfg.Retention)
	}
	err := s.st.CreateJob(ctx, j, &store.JobLimit{Max: MaxActive, Now: s.cfg.Now()})
	if errors.Is(err, store.ErrLimit) {
		return nil, tooMany(kind)
	}
	if err != nil {
		return nil, fmt.Errorf("submit %s job: %w", kind, err)
	}
	if !uploading {
		s.Notify()
	}
	return j, nil
}

// Upload adds parts of an uploading job's input; Queue makes it claimable.
func (s *Service) Upload(ctx context.Context, id string, parts []store.JobPart) error {
	return s.st.PutJobParts(ctx, id, parts)
}

// Drop deletes a job whose upload was refused before it was queued, and
// what was uploaded: its client never learnt its id, and jobs list shows
// no job for it.
func (s *Service) Drop(ctx context.Context, id string) error {
	return s.st.DropUpload(ctx, id)
}

// Queue makes an uploaded job claimable, with total the work the upload
// holds (-1 unknown), and wakes the runner.
func (s *Service) Queue(ctx context.Context, id string, total int64) error {
	if err := s.st.QueueJob(ctx, id, total); err != nil {
		return err
	}
	s.Notify()
	return nil
}

// Job returns the caller's job: ErrUnknown for a job that is not the
// caller's (another client or tenant) or has expired (even if not purged
// yet); for a cancelled one, until it expires, a not-found error (rule
// job-cancelled, as the Bulk Data specification has a deleted job's status
// answer 404) whose message says how far the job got.
func (s *Service) Job(ctx context.Context, sc *auditlog.Scope, id string) (*store.Job, error) {
	j, err := s.st.Job(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, ErrUnknown
	case err != nil:
		return nil, err
	case j.Tenant != sc.TenantOf() || j.Owner != sc.ClientID:
		return nil, ErrUnknown
	case !j.Expires.IsZero() && !s.cfg.Now().Before(j.Expires):
		return nil, ErrUnknown
	case store.Withdrawn(j.Status):
		return nil, cancelledError(j)
	}
	return j, nil
}

// cancelledError answers for a cancelled job: 404 with its final state,
// as its handler summed it up (its result's "summary"), or its progress
// as last saved.
func cancelledError(j *store.Job) error {
	msg := "the job was cancelled (by its client's DELETE, or by the administrator: the jobs command) and its files deleted"
	var res struct{ Summary string }
	switch {
	case j.Status == store.JobDeleted:
		ended := map[bool]string{true: "failed", false: "done"}[j.Error != ""]
		if !j.Finished.IsZero() {
			ended += ", " + j.Finished.UTC().Format(time.RFC3339)
		}
		msg = fmt.Sprintf("the job had ended (%s) and was then deleted (by its client's DELETE, or by the administrator: "+
			"the jobs command), and its files with it", ended)
	case len(j.Result) > 0 && json.Unmarshal(j.Result, &res) == nil && res.Summary != "":
		msg += ": " + res.Summary
	case len(j.Result) > 0:
		// A result without a summary (an export's manifest) is a job that
		// ended before it was deleted (by a release before JobDeleted):
		// nothing was cut short.
		msg = "the job had ended and was then deleted (by its client's DELETE, or by the administrator: the jobs command), and its files with it"
	case j.Done > 0:
		msg += fmt.Sprintf("; %d items were done when it was last saved", j.Done)
	}
	return outcome.New(outcome.NotFound, "not-found", "job-cancelled", msg)
}

// cancelWait bounds how long Cancel waits for this process's run of the
// job to stop (it stops after the item it is writing).
const cancelWait = 30 * time.Second

// Cancel cancels the caller's job, running or ended (a client deletes a
// finished export this way, as the Bulk Data specification has it), and
// deletes its files: ErrUnknown as for Job, and the job-cancelled error
// for a job cancelled already. A run of the job in this process is told at
// once and Cancel returns once it has stopped (it completes the items it
// is writing, nothing after them) and recorded its final state; a run in
// another process finds the job cancelled within a Poll, or at its next
// save. The cancelled job answers Job (with its final state) until it
// expires, Retention after the cancel; sc's Description (its AuditEvent's)
// says how far it got.
func (s *Service) Cancel(ctx context.Context, sc *auditlog.Scope, id string) error {
	j, err := s.Job(ctx, sc, id)
	if err != nil {
		return err
	}
	desc, err := s.cancel(ctx, j)
	if err != nil {
		return err
	}
	sc.Description = desc
	return nil
}

// CancelAny is the database administrator's cancel (the jobs command):
// it cancels job id whoever owns it, as Cancel does for its owner (a job
// of a client that can no longer authenticate, or one that should not
// go on). It returns what the job did before it stopped, as Cancel's
// AuditEvent says it: ErrUnknown when there is no such job, the
// job-cancelled error for a job cancelled already. A run of the job in
// another process (serve) stops within its Poll, after the items it is
// writing.
func (s *Service) CancelAny(ctx context.Context, id string) (string, error) {
	j, err := s.st.Job(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", ErrUnknown
	case err != nil:
		return "", err
	case store.Withdrawn(j.Status):
		return "", cancelledError(j)
	}
	return s.cancel(ctx, j)
}

// Ended reports whether the job, as read before a cancel, had ended (done
// or failed): its cancel stopped nothing, it only deleted the job and its
// files.
func Ended(j *store.Job) bool { return j.Status == store.JobDone || j.Status == store.JobFailed }

// cancel cancels j and deletes its files, waits for this process's run
// of it to stop, and says how far the job got.
func (s *Service) cancel(ctx context.Context, j *store.Job) (string, error) {
	err := s.st.CancelJob(ctx, j.ID, s.cfg.Now().Add(s.cfg.Retention))
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrUnknown
	}
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	r := s.active[j.ID]
	s.mu.Unlock()
	if r != nil {
		r.cancel()
		t := time.NewTimer(cancelWait)
		defer t.Stop()
		select {
		case <-r.ended:
		case <-ctx.Done():
		case <-t.C:
		}
	}
	if Ended(j) {
		// Nothing was stopped: said so, not "cancelled" with its count
		// of items as if cut short (p45).
		return fmt.Sprintf("%s job %s had ended (%s) before it was cancelled: its files deleted", j.Kind, j.ID, j.Status), nil
	}
	// The cancel's AuditEvent says how far the job got (counts, no values).
	desc := fmt.Sprintf("%s job %s cancelled, its files deleted", j.Kind, j.ID)
	cur, err := s.st.Job(ctx, j.ID)
	if err == nil {
		if _, issues := outcome.From(cancelledError(cur)); len(issues) == 1 {
			desc = fmt.Sprintf("%s job %s: %s", j.Kind, j.ID, issues[0].Message)
		}
	}
	if err == nil && r == nil && j.Status == store.JobRunning && len(cur.Result) == 0 {
		// Run by another process (serve, for the jobs command): it stops
		// within a poll, after the items it is writing, and records how
		// far it got then (an operator's review: the count saved last
		// was read as the final one, and 206 more records went in).
		desc += "; it was running in another gateway process, which stops it within a few seconds after the items " +
			"it is writing: the jobs list shows how far it got once it has stopped"
	}
	return desc, nil
}

// PatientsFile is the number of the companion file of a job's file n
// (n >= 1): the patients whose data file n holds, one "Patient/id" a line
// (a line may repeat), followed, in an all-tenant export's, by a space and
// the patient's tenant as a Go-quoted string; a job writes it beside each
// file that holds patients' data (an export's). No client downloads it:
// File names those patients in the download's AuditEvent (each with its
// tenant, where noted, for that tenant's share).
func PatientsFile(n int) int { return -n }

// File calls fn with the parts of file n of the caller's job, in order:
// ErrUnknown as for Job. It first names, in sc, every patient whose data
// the file holds (its PatientsFile), so that the download's AuditEvent,
// which the caller commits before the first part leaves, finds its way
// into each patient's audit trail.
func (s *Service) File(ctx context.Context, sc *auditlog.Scope, id string, n int, fn func([]byte) error) error {
	if n < 1 {
		return ErrFileUnknown
	}
	if _, err := s.Job(ctx, sc, id); err != nil {
		return err
	}
	err := s.st.JobFile(ctx, id, PatientsFile(n), func(part []byte) error {
		for line := range bytes.Lines(part) {
			p, quoted, ok := strings.Cut(string(bytes.TrimSpace(line)), " ")
			tenant, err := strconv.Unquote(quoted)
			switch {
			case p == "":
			case ok && err == nil:
				sc.ConcernIn(tenant, p)
			default:
				sc.Concern(p)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.st.JobFile(ctx, id, n, fn)
}

// List returns the jobs of a tenant (search.AllTenants: every tenant's),
// of kind when set, newest first, without their results.
func (s *Service) List(ctx context.Context, f store.JobFilter) ([]*store.Job, error) {
	return s.st.ListJobs(ctx, f)
}

// Notify wakes the runner to claim at once (after a job was queued). It
// never blocks.
func (s *Service) Notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
