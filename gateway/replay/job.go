package replay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/ordered"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// A replay asked over HTTP (POST /admin/replay) is a job: its result is
// the Summary with the URL of its report, file 1 of the job (NDJSON, one
// RecordResult a line, in ledger order).
const replayReport = 1

// jobRequest is what a replay job was asked.
type jobRequest struct {
	Options jobOptions `json:"options"`
	Scopes  string     `json:"scopes"`
	Base    string     `json:"base"`
	Addr    string     `json:"addr,omitempty"`
	// MappingVersion is the mapping the replay was submitted under
	// (jobMapping); "" in a job an older release queued.
	MappingVersion string `json:"mappingVersion,omitempty"`
}

// jobOptions are Options as a job keeps them.
type jobOptions struct {
	Kind       string `json:"kind,omitempty"`
	Source     string `json:"source,omitempty"`
	Tenant     string `json:"tenant"`
	Since      string `json:"since,omitempty"`
	Apply      bool   `json:"apply,omitempty"`
	Reason     string `json:"reason,omitempty"`
	ShowValues bool   `json:"showValues,omitempty"`
	Downgrade  bool   `json:"downgrade,omitempty"`
}

// jobCheckpoint is where a replay job got to.
type jobCheckpoint struct {
	Summary Summary         `json:"summary"`
	After   store.LedgerKey `json:"after"`
	Report  jobs.FileParts  `json:"report"`
	// Patients is the report's companion file (jobs.PatientsFile): the
	// patients whose values a report with ShowValues holds, named by its
	// download's AuditEvent.
	Patients jobs.FileParts `json:"patients"`
}

// JobResult is a finished replay job's result.
type JobResult struct {
	Summary
	// Report is the URL of the per-record report (NDJSON).
	Report string `json:"report,omitempty"`
	// Cancelled is set in the final state of a cancelled job, and Stopped
	// then says how far it got (the job-cancelled answer and the cancel's
	// AuditEvent quote it).
	Cancelled bool   `json:"cancelled,omitempty"`
	Stopped   string `json:"summary,omitempty"`
}

// Submit checks a replay's options and submits it as a job of sc's caller
// (an operator): a tenant-bound operator replays its tenant's records
// only, whatever opts.Tenant says. base is where the gateway is reached,
// for the report's URL.
func (s *Service) Submit(ctx context.Context, sc *auditlog.Scope, opts Options, base string) (*store.Job, error) {
	if opts.Apply && sc.TenantOf() == search.AllTenants {
		// An all-tenant principal (an API client or a console operator
		// with tenant *) reads every tenant and writes none
		// (docs/security.md); an apply writes new versions into the
		// tenants' records and sends them to their EHRs.
		return nil, errAllTenantApply
	}
	if t := sc.TenantOf(); t != search.AllTenants {
		if opts.Tenant != search.AllTenants && opts.Tenant != t {
			return nil, errTenantOther
		}
		opts.Tenant = t
	}
	if err := s.Check(ctx, opts); err != nil {
		return nil, err
	}
	jo := jobOptions{Kind: string(opts.Kind), Source: opts.Source, Tenant: opts.Tenant, Apply: opts.Apply, Reason: opts.Reason,
		ShowValues: opts.ShowValues, Downgrade: opts.Downgrade}
	if !opts.Since.IsZero() {
		jo.Since = opts.Since.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	}
	scopes := ""
	if sc.Principal != nil {
		scopes = sc.Principal.Scopes.String()
	}
	raw, err := json.Marshal(jobRequest{Options: jo, Scopes: scopes, Base: base, Addr: sc.Addr, MappingVersion: s.cfg.MappingVersion})
	if err != nil {
		return nil, err
	}
	j, err := s.cfg.Jobs.Submit(ctx, sc, KindReplay, raw, false)
	if err != nil {
		return nil, err
	}
	what := "dry run"
	if opts.Apply {
		what = "apply"
	}
	if opts.ShowValues {
		what += ", with values: the report shows the old and new values of the records' changed elements"
	}
	sc.Description = fmt.Sprintf("mapping replay (%s) queued: job %s", what, j.ID)
	return j, nil
}

// ValuesDisclosed is what the AuditEvent of a report showing values says
// was disclosed (auditlog.Scope.Disclosed): the API's download of such a
// report and the CLI's replay --show-values say the same.
const ValuesDisclosed = "the old and new values of the records' changed elements disclosed (showValues)"

// ShowsValues reports whether a replay job's report shows values (it was
// asked with ShowValues): its download discloses the patients' data,
// which its AuditEvent says (and names them: the report's
// jobs.PatientsFile).
func ShowsValues(j *store.Job) bool {
	var req jobRequest
	return j.Kind == KindReplay && json.Unmarshal(j.Request, &req) == nil && req.Options.ShowValues
}

// runJob is the replay jobs' handler.
func (s *Service) runJob(ctx context.Context, run *jobs.Run) ([]byte, error) {
	var req jobRequest
	if err := json.Unmarshal(run.Job.Request, &req); err != nil {
		return nil, fmt.Errorf("replay request: %w", err)
	}
	if err := s.jobMapping(req); err != nil {
		return nil, err
	}
	opts, err := req.Options.options()
	if err != nil {
		return nil, err
	}
	cp := jobCheckpoint{Summary: Summary{MappingVersion: s.cfg.MappingVersion, Applied: opts.Apply},
		Report: jobs.FileParts{File: replayReport}, Patients: jobs.FileParts{File: jobs.PatientsFile(replayReport)}}
	if run.Job.Checkpoint != nil {
		if err := json.Unmarshal(run.Job.Checkpoint, &cp); err != nil {
			return nil, fmt.Errorf("replay checkpoint: %w", err)
		}
		cp.Patients.File = jobs.PatientsFile(replayReport) // a checkpoint saved before it was kept
	}
	opts.after = cp.After
	sc := jobs.Scope(run.Job, "mapping-replay", req.Scopes)
	sc.Addr = req.Addr
	var since int
	var saveErr error
	stop := run.Cancelled() // a cancel lets the records being applied finish
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	save := func(sum *Summary) error {
		sum.sortGroups()
		cp.Summary, cp.After = *sum, sum.last
		parts := append(cp.Report.Take(), cp.Patients.Take()...)
		raw, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		return run.Save(ctx, raw, parts)
	}
	var sum *Summary
	start := cp.Summary
	sum, err = s.run(ctx, sc, opts, &start, func(r RecordResult) error {
		if p := r.DisclosedPatient(); p != "" {
			cp.Patients.WriteText(p + " " + strconv.Quote(r.Tenant))
		}
		return cp.Report.WriteLine(r)
	}, func(done int) {
		run.Progress(int64(done), -1)
		if since++; since >= 100 || cp.Report.Len() >= 1<<20 {
			since = 0
			if err := save(&start); err != nil && !errors.Is(err, jobs.ErrCancelled) {
				saveErr = err // lost, or the database failed: the replay stops
				cancel()
			} // cancelled: stop closed, the replay stops after the records being replayed
		}
	}, stop)
	if saveErr != nil {
		return nil, saveErr
	}
	if errors.Is(err, ordered.ErrStopped) {
		sum.sortGroups()
		return json.Marshal(JobResult{Summary: *sum, Cancelled: true, Stopped: sum.stopped()})
	}
	if err != nil {
		return nil, err
	}
	if err := save(sum); err != nil {
		return nil, err
	}
	return json.Marshal(JobResult{Summary: *sum, Report: jobs.FileURL(req.Base, run.Job.ID, replayReport)})
}

// options turns a job's options back into Options.
func (o jobOptions) options() (Options, error) {
	opts := Options{Kind: mapping.Kind(o.Kind), Source: o.Source, Tenant: o.Tenant, Apply: o.Apply, Reason: o.Reason, ShowValues: o.ShowValues,
		Downgrade: o.Downgrade}
	if o.Since != "" {
		t, err := time.Parse(time.RFC3339Nano, o.Since)
		if err != nil {
			return opts, fmt.Errorf("replay since: %w", err)
		}
		opts.Since = t
	}
	return opts, nil
}

// jobMapping refuses a job submitted under another mapping than this
// service's (p38 F4): its dry run, and the review an apply's reason
// names, were of that mapping, and a gateway of another release claimed
// it (an upgrade while it was queued, or an older replica during a rolling
// one). An apply that a release before this check queued, which did not
// record its mapping, is refused as well; a dry run of it writes nothing,
// and its report names the mapping it ran.
func (s *Service) jobMapping(req jobRequest) error {
	switch {
	case req.MappingVersion == s.cfg.MappingVersion:
		return nil
	case req.MappingVersion != "":
		return outcome.New(outcome.Conflict, "conflict", "replay-mapping-changed", fmt.Sprintf(
			"the replay was submitted under mapping %s, and the gateway that took it runs mapping %s (it was upgraded "+
				"while the replay was queued): nothing was replayed; run a dry replay under mapping %s, review it, "+
				"and submit the replay again", req.MappingVersion, s.cfg.MappingVersion, s.cfg.MappingVersion))
	case req.Options.Apply:
		return outcome.New(outcome.Conflict, "conflict", "replay-mapping-changed", fmt.Sprintf(
			"the replay was submitted by an older release, which did not record its mapping, and the gateway that "+
				"took it runs mapping %s: nothing was applied; run a dry replay under mapping %s, review it, and "+
				"submit the apply again", s.cfg.MappingVersion, s.cfg.MappingVersion))
	}
	return nil
}
