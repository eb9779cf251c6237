package store

import (
	"context"
	"time"
)

// Job statuses. A job is created uploading (its input still arriving,
// not claimable) or queued; a runner claims it (running, under a lease it
// renews); it ends done, failed or cancelled. A running job whose lease ran
// out (its process died) is claimable again, from its last checkpoint.
const (
	JobUploading = "uploading"
	JobQueued    = "queued"
	JobRunning   = "running"
	JobDone      = "done"
	JobFailed    = "failed"
	JobCancelled = "cancelled"
	// JobDeleted is a job that had ended (done or failed) when it was
	// cancelled (its client's DELETE of a finished export, the jobs
	// command): nothing was stopped, its files were deleted, and its
	// result, error and finish time are kept until it expires (an
	// operator's review: it was listed as cancelled, its finish time
	// overwritten).
	JobDeleted = "deleted"
)

// Withdrawn reports whether a job of status is cancelled or deleted: its
// files are gone, and its status answers 404 until it expires.
func Withdrawn(status string) bool { return status == JobCancelled || status == JobDeleted }

// Job is one durable background job (a bulk export, an import, a replay):
// its request, its progress, where it got to and what it produced. The
// files it writes (exports, reports; an import's uploaded input) are kept
// beside it as numbered parts (JobPart), so that every process sharing the
// database can serve them.
type Job struct {
	ID   string
	Kind string // "export", "import", "replay", ...
	// Tenant and Owner are the tenant (search.AllTenants for an all-tenant
	// client) and the client that asked for the job: only they may see it.
	Tenant, Owner string
	Status        string
	// Request is the job's parameters (JSON, the job kind's own).
	Request []byte
	// Done and Total count the job's work (Total -1 while unknown).
	Done, Total int64
	// Checkpoint is where a job resumes after its runner died (the job
	// kind's own; nil at first).
	Checkpoint []byte
	// Result is what a done job answers (JSON); Error why a failed one
	// failed (PHI-free).
	Result []byte
	Error  string
	// Attempts counts the claims since the job last saved a checkpoint
	// (SaveJob with one sets it back to 1, the current claim's): a job
	// that keeps advancing is not given up however often its process
	// stops. Claim is the token of the current one
	// ("" when no runner holds the job), LeaseUntil when it runs out.
	Attempts   int
	Claim      string
	LeaseUntil time.Time
	// Created, Updated and Finished (zero until it ends) are set by the
	// store; after Expires (zero: never) the job and its files are purged.
	Created, Updated, Finished, Expires time.Time
}

// JobPart is one piece of one file of a job: the parts of a file, in Part
// order from 0, are its bytes.
type JobPart struct {
	File, Part int
	Data       []byte
}

// JobProgress is what a runner records of a claimed job at once: its
// counts, its new checkpoint (nil keeps the old one) and the file parts
// written since the last one; the parts of the files Drop are deleted
// (an input the job no longer needs: an import's records, PHI, once it
// has done them all).
type JobProgress struct {
	Done, Total int64
	Checkpoint  []byte
	Parts       []JobPart
	Drop        []int
}

// JobEnd is how a job run ended (FinishJob).
type JobEnd struct {
	Status  string
	Result  []byte
	Error   string
	Expires time.Time
	// Done and Total are its progress at the end, as SaveJob's: a
	// cancelled job's counts up to the item it stopped after, which it
	// could not save (SaveJob refuses a cancelled job).
	Done, Total int64
}

// JobFilter selects jobs for a listing, newest first. Kind, Owner and
// Status filter when set; Tenant always does ("" is the default tenant,
// search.AllTenants every tenant's). Limit <= 0 or above 1000 means 100.
type JobFilter struct {
	Kind, Tenant, Owner, Status string
	Limit                       int
}

// JobLimit bounds CreateJob: a client may have at most Max jobs of a kind
// queued, running, or uploading and not expired at Now (an abandoned
// upload expires).
type JobLimit struct {
	Max int
	Now time.Time
}

// Jobs is the part of a Store that keeps durable jobs and their files.
// Every method returns ErrUnavailable when the database cannot be reached.
type Jobs interface {
	// CreateJob inserts j (ID, Kind, Tenant, Owner, Request, Total and
	// Expires from j; Status JobUploading or JobQueued, JobQueued when
	// empty); Created and Updated are set to now, and written back into
	// j. ErrConflict if the id exists. With limit (nil: none) it is
	// ErrLimit, with nothing written, when j's Owner has limit.Max jobs of
	// j.Kind in j.Tenant already waiting or running (see JobLimit): the
	// count and the insert are one step for every process on the
	// database, so gateways sharing it cannot together pass the bound.
	CreateJob(ctx context.Context, j *Job, limit *JobLimit) error
	// Job returns a job; ErrNotFound if there is none (or it was purged).
	Job(ctx context.Context, id string) (*Job, error)
	// ListJobs lists the jobs f selects, newest first, without their
	// checkpoints and results.
	ListJobs(ctx context.Context, f JobFilter) ([]*Job, error)
	// PutJobParts adds parts to a job that is uploading; ErrNotFound if
	// it is not (ErrConflict for a part that exists).
	PutJobParts(ctx context.Context, id string, parts []JobPart) error
	// QueueJob makes an uploading job queued (claimable), sets its Total
	// (what the upload told) and clears its Expires; ErrNotFound if it is
	// not uploading.
	QueueJob(ctx context.Context, id string, total int64) error
	// ClaimJob claims a claimable job of one of kinds (queued, or running
	// with its lease run out): the oldest of the tenant with the fewest
	// jobs running under a live lease (all-tenant clients' jobs, tenant
	// search.AllTenants, count as one tenant), so no tenant's queue holds
	// up another's. The job becomes running under claim
	// until now+lease, Attempts + 1, and is returned. It returns nil and
	// no error when there is none. Concurrent claims, from any process,
	// never return the same job while its lease runs.
	ClaimJob(ctx context.Context, kinds []string, claim string, now time.Time, lease time.Duration) (*Job, error)
	// SaveJob records p for a job running under claim and extends its
	// lease to until, all in one transaction; ErrNotFound, with nothing
	// written, when the job no longer runs under claim (cancelled,
	// finished, or claimed again after the lease ran out).
	SaveJob(ctx context.Context, id, claim string, until time.Time, p JobProgress) error
	// FinishJob ends a job running under claim as e says: JobDone or
	// JobFailed with its result or error, progress and when it expires,
	// or JobQueued to release it (claimable at once, from its checkpoint;
	// the rest of e ignored), or JobCancelled for a job cancelled while it
	// ran under claim, to record its final state as its result and how
	// far it got as its progress (its status and expiry stay). ErrNotFound
	// when it no longer runs under claim (or, for JobCancelled, was not
	// cancelled under it).
	FinishJob(ctx context.Context, id, claim string, e JobEnd) error
	// CancelJob cancels a job, whatever its status (a runner sees it at
	// its next SaveJob, and may then record its final state with
	// FinishJob), deletes its files and lets it expire at expires.
	// ErrNotFound if there is no such job or it is cancelled already.
	CancelJob(ctx context.Context, id string, expires time.Time) error
	// DropUpload deletes a job that is still uploading, with its parts:
	// an upload refused before it was queued leaves no job behind (its
	// client was never told its id). ErrNotFound if it is not uploading.
	DropUpload(ctx context.Context, id string) error
	// JobFile calls fn with each part of one file of a job, in order,
	// reading a few parts at a time (fn's error stops it and is returned
	// unchanged). A file without parts calls fn never.
	JobFile(ctx context.Context, id string, file int, fn func(data []byte) error) error
	// PurgeJobs deletes up to limit jobs whose Expires is set and has
	// passed by now, with their files, and returns how many it deleted.
	PurgeJobs(ctx context.Context, now time.Time, limit int) (int, error)
}
