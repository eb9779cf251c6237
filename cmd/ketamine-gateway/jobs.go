package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/reindex"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

var jobSubcommands = []string{"list", "cancel"}

// jobKinds are the kinds of job the gateway runs (--kind).
var jobKinds = []string{bulk.KindExport, bulk.KindImport, replay.KindReplay, reindex.KindReindex}

// jobStatuses are the statuses jobs list --status takes.
var jobStatuses = []string{store.JobUploading, store.JobQueued, store.JobRunning, store.JobDone, store.JobFailed, store.JobCancelled, store.JobDeleted}

// jobsCommand is the administrator's view of the background jobs of every
// client (exports, imports, replays, reindexes), on the database directly:
// list them, and cancel any (a client may cancel only its own, and a
// removed client none).
func jobsCommand(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) == 1 {
			fs, _ := jobFlags("jobs", getenv)
			printHelp(stdout, fs, "jobs")
			return errHelp
		}
		return usageError("jobs", "give a subcommand: %s", strings.Join(jobSubcommands, ", "))
	}
	sub, args := args[0], args[1:]
	if err := oneOf("jobs", "subcommand", sub, jobSubcommands); err != nil {
		return err
	}
	name := "jobs " + sub
	fs, a := jobFlags(name, getenv)
	pos, err := parse(fs, name, args, stdout)
	if err != nil {
		return err
	}
	switch {
	case sub == "list" && len(pos) > 0:
		return usageError(name, "takes no arguments")
	case sub == "cancel" && len(pos) != 1:
		return usageError(name, "give one job id (as jobs list shows it)")
	}
	if a.filter.Status != "" {
		if err := oneOf(name, "--status", a.filter.Status, jobStatuses); err != nil {
			return err
		}
	}
	if a.filter.Kind != "" {
		// A kind mistyped listed nothing, as if there were no such jobs
		// (p45).
		if err := oneOf(name, "--kind", a.filter.Kind, jobKinds); err != nil {
			return err
		}
	}
	if a.filter.Limit < 1 || a.filter.Limit > 1000 {
		return usageError(name, "--limit: from 1 to 1000")
	}
	use := dbRead
	if sub == "cancel" {
		use = dbWrite
	}
	st, err := openExisting(ctx, name, *a.db, use)
	if err != nil {
		return err
	}
	defer st.Close()
	svc := jobs.New(jobs.Config{Store: st}) // no runner: serve runs the jobs
	if sub == "cancel" {
		desc, err := svc.CancelAny(ctx, pos[0])
		if errors.Is(err, jobs.ErrUnknown) {
			// The administrator's view is every client's: "for this
			// client" (the API's answer) would mislead.
			return &exitError{code: exitNotFound, msg: name + ": no job has this id: it never existed, or it expired and was removed (jobs list shows the jobs)"}
		}
		if err != nil {
			return opError(name, err)
		}
		status := store.JobCancelled
		if j, err := st.Job(ctx, pos[0]); err == nil {
			status = j.Status // deleted, for a job that had ended
		}
		return printJSON(stdout, map[string]any{"id": pos[0], "status": status, "message": desc})
	}
	list, err := svc.List(ctx, a.filter)
	if err != nil {
		return opError(name, err)
	}
	out := make([]jobView, len(list))
	for i, j := range list {
		out[i] = newJobView(j)
	}
	return printJSON(stdout, map[string]any{"jobs": out})
}

// jobView is a job as jobs list prints it (no request, checkpoint or
// result: a request may name patients).
type jobView struct {
	ID     string `json:"id"`
	Kind   string `json:"kind"`
	Tenant string `json:"tenant"`
	Owner  string `json:"owner"`
	Status string `json:"status"`
	Done   int64  `json:"done"`
	Total  *int64 `json:"total,omitempty"` // absent while not known (-1 in the store), as the API's job view
	Error  string `json:"error,omitempty"`
	// ClaimedBy and LeaseUntil are, for a running job, the gateway
	// (serve --instance and its process id) that holds it and when its
	// claim runs out unless that gateway renews it: a lease in the past
	// is a gateway that stopped, whose job another claims at its next poll.
	ClaimedBy  string     `json:"claimedBy,omitempty"`
	LeaseUntil *time.Time `json:"leaseUntil,omitempty"`
	Created    time.Time  `json:"created"`
	Updated    time.Time  `json:"updated"`
	Finished   *time.Time `json:"finished,omitempty"`
	Expires    *time.Time `json:"expires,omitempty"`
}

func newJobView(j *store.Job) jobView {
	v := jobView{ID: j.ID, Kind: j.Kind, Tenant: j.Tenant, Owner: j.Owner, Status: j.Status, Done: j.Done,
		Error: j.Error, Created: j.Created.UTC(), Updated: j.Updated.UTC()}
	if j.Total >= 0 {
		total := j.Total
		v.Total = &total
	}
	if j.Status == store.JobRunning {
		v.ClaimedBy = jobs.ClaimHolder(j.Claim)
		if !j.LeaseUntil.IsZero() {
			t := j.LeaseUntil.UTC()
			v.LeaseUntil = &t
		}
	}
	if !j.Finished.IsZero() {
		t := j.Finished.UTC()
		v.Finished = &t
	}
	if !j.Expires.IsZero() {
		t := j.Expires.UTC()
		v.Expires = &t
	}
	return v
}

// jobArgs are the flags of the jobs subcommands.
type jobArgs struct {
	db     *string
	filter store.JobFilter
}

// jobFlags are the flags of the jobs subcommands (one set: cancel uses
// only --db), for parsing and for help.
func jobFlags(name string, getenv func(string) string) (*flag.FlagSet, *jobArgs) {
	fs := newFlags(name)
	a := &jobArgs{db: dbFlag(fs, getenv)}
	fs.StringVar(&a.filter.Tenant, "tenant", search.AllTenants, "list: only this tenant's jobs (default \"*\": every tenant's, the all-tenant clients' too; \"\" is the default tenant)")
	fs.StringVar(&a.filter.Owner, "owner", "", "list: only the jobs of this client (as jobs list names it: a client id, person:NAME, ISSUER|ID)")
	fs.StringVar(&a.filter.Kind, "kind", "", "list: only jobs of this kind: "+strings.Join(jobKinds, ", "))
	fs.StringVar(&a.filter.Status, "status", "", "list: one of "+strings.Join(jobStatuses, ", "))
	fs.IntVar(&a.filter.Limit, "limit", 100, "list: at most this many, newest first (1 to 1000)")
	return fs, a
}
