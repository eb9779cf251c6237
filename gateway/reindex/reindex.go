// Package reindex rebuilds the search index from the stored bodies, a
// pass at a time over the store's Reindexer: the reindex command runs a
// pass in its own process (Pass), and POST /admin/reindex runs one as a
// durable job (Service), which resumes where it stopped.
package reindex

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// Options are what a pass covers.
type Options struct {
	// Type restricts the pass to one resource type ("" every type).
	Type string `json:"type,omitempty"`
	// Tenant restricts the pass to one tenant's resources (""
	// the default tenant; search.AllTenants, the command's, every tenant's).
	Tenant string `json:"tenant"`
	// DryRun compares and counts only.
	DryRun bool `json:"dryRun,omitempty"`
	// Batch is how many resources a write transaction covers (0:
	// store.DefaultReindexCount).
	Batch int `json:"batch,omitempty"`
}

// MaxBatch bounds Options.Batch.
const MaxBatch = 10000

// Check reports options a pass cannot run with, as an Invalid outcome
// naming the option.
func (o Options) Check() error {
	if o.Type != "" && !r4.IsResourceType(o.Type) {
		return outcome.New(outcome.Invalid, "value", "reindex-type-unknown",
			fmt.Sprintf("type %q is not a FHIR R4 resource type", o.Type))
	}
	if o.Batch < 0 || o.Batch > MaxBatch {
		return outcome.New(outcome.Invalid, "value", "reindex-batch-range",
			fmt.Sprintf("batch must be between 1 and %d", MaxBatch))
	}
	return nil
}

// CheckTenant refuses a tenant (not search.AllTenants) that holds no
// resource, with an Invalid outcome naming the tenants that hold some: a
// pass over it would check nothing, most likely for a misspelt name.
func CheckTenant(ctx context.Context, st store.Reindexer, tenant string) error {
	if tenant == search.AllTenants {
		return nil
	}
	tenants, err := st.Tenants(ctx)
	if err != nil {
		return err
	}
	if slices.Contains(tenants, tenant) {
		return nil
	}
	names := make([]string, len(tenants))
	for i, t := range tenants {
		names[i] = search.TenantName(t)
	}
	msg := "tenant: no resource of this tenant is stored"
	if len(names) > 0 {
		msg += "; the tenants with resources are " + strings.Join(names, ", ")
	}
	return outcome.New(outcome.Invalid, "value", "reindex-tenant-unknown", msg)
}

// maxUnreadable bounds the resources a report names as unreadable.
const maxUnreadable = 100

// Report is what a pass did so far: what the command prints and a job's
// result.
type Report struct {
	Type    string `json:"type,omitempty"`
	DryRun  bool   `json:"dryRun"`
	Checked int    `json:"checked"`
	Changed int    `json:"changed"`
	// ChangedTypes counts Changed by resource type.
	ChangedTypes map[string]int `json:"changedTypes,omitempty"`
	// Unreadable names the resources whose stored body could not be read
	// (their rows are left as they are), the first maxUnreadable of them.
	Unreadable      []string `json:"unreadable,omitempty"`
	UnreadableCount int      `json:"unreadableCount,omitempty"`
	Done            bool     `json:"done"`
	Seconds         float64  `json:"seconds,omitempty"`
	// IndexVersion is the version the database records for its index
	// rows after the pass (a complete pass records this build's,
	// BuildIndexVersion).
	IndexVersion      int `json:"indexVersion"`
	BuildIndexVersion int `json:"buildIndexVersion"`
	// Note says, when a finished pass left IndexVersion below
	// BuildIndexVersion, why it did not record the version and what
	// records it (the start-up warning stays until then).
	Note string `json:"note,omitempty"`

	// After is the last resource checked: where the pass goes on.
	After store.ResourceKey `json:"-"`
}

// add counts one batch into r.
func (r *Report) add(b store.ReindexBatch) {
	r.Checked += b.Checked
	r.Changed += b.Changed
	for typ, n := range b.ChangedTypes {
		if r.ChangedTypes == nil {
			r.ChangedTypes = map[string]int{}
		}
		r.ChangedTypes[typ] += n
	}
	for _, k := range b.Unreadable {
		if len(r.Unreadable) < maxUnreadable {
			r.Unreadable = append(r.Unreadable, k.Type+"/"+k.ID)
		}
		r.UnreadableCount++
	}
	r.Done = b.Done
	r.After = b.Last
}

// Pass runs a pass of opts over st from rep.After (zero: the first
// resource), counting into rep, and calls batch after each batch (a nil
// batch is skipped; its error ends the pass). When the pass is complete
// (every type of every tenant, not a dry run, every body read) it records
// this build's index version (store.Reindexer.MarkIndexed). rep.IndexVersion
// is then the database's version, BuildIndexVersion this build's. Errors
// are the store's (or batch's), with the counts so far in rep.
func Pass(ctx context.Context, st store.Reindexer, opts Options, rep *Report, batch func(*Report) error) error {
	rep.Type, rep.DryRun, rep.BuildIndexVersion = opts.Type, opts.DryRun, search.IndexVersion
	q := store.ReindexQuery{Type: opts.Type, Tenant: opts.Tenant, Count: opts.Batch, DryRun: opts.DryRun, After: rep.After}
	for !rep.Done {
		b, err := st.Reindex(ctx, q)
		if err != nil {
			return err
		}
		rep.add(b)
		q.After = rep.After
		if batch != nil {
			if err := batch(rep); err != nil {
				return err
			}
		}
	}
	if !opts.DryRun && opts.Type == "" && opts.Tenant == search.AllTenants && rep.UnreadableCount == 0 {
		if err := st.MarkIndexed(ctx, search.IndexVersion); err != nil {
			return fmt.Errorf("every resource was checked (%d changed), but the index version could not be recorded: %w", rep.Changed, err)
		}
	}
	v, err := st.IndexVersion(ctx)
	if err != nil {
		return err
	}
	rep.IndexVersion = v
	rep.Note = ""
	if v < search.IndexVersion {
		rep.Note = unrecordedNote(opts, rep)
	}
	return nil
}

// unrecordedNote says why a finished pass of opts did not record this
// build's index version, and what to run instead.
func unrecordedNote(opts Options, rep *Report) string {
	const run = "run 'ketamine-gateway reindex --db ...' beside the gateway (every tenant, every type), " +
		"or POST /admin/reindex as an operator of every tenant"
	switch {
	case opts.DryRun:
		return "a dry run records nothing: the index version is recorded by a pass that rewrites the rows; " + run
	case opts.Tenant != search.AllTenants:
		return "this pass covered one tenant's resources only (an operator bound to a tenant; in development mode " +
			"the client is bound to the default tenant), so it did not record the index version and the start-up " +
			"warning stays; " + run
	case opts.Type != "":
		return "this pass covered one resource type only, so it did not record the index version; " + run
	case rep.UnreadableCount > 0:
		return fmt.Sprintf("%d resources could not be read (see unreadable), so the index version was not recorded; "+
			"it is recorded by a pass that reads every resource", rep.UnreadableCount)
	}
	return ""
}

// KindReindex is the kind of the reindex jobs.
const KindReindex = "reindex"

// Config configures a Service.
type Config struct {
	Store store.Store
	// Jobs runs the passes asked over HTTP (nil: none).
	Jobs *jobs.Service
}

// Service runs passes as jobs.
type Service struct {
	cfg Config
}

// New returns the Service of cfg and registers its job handler.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg}
	if cfg.Jobs != nil {
		cfg.Jobs.Handle(KindReindex, s.runJob, auth.ScopeOperator)
	}
	return s
}

// Submit checks opts and submits a pass as a job of sc's caller, an
// operator: over the resources of the caller's tenant (an operator of
// every tenant: every tenant's), whatever opts.Tenant says.
func (s *Service) Submit(ctx context.Context, sc *auditlog.Scope, opts Options) (*store.Job, error) {
	opts.Tenant = sc.TenantOf()
	if err := opts.Check(); err != nil {
		return nil, err
	}
	if s.cfg.Jobs == nil {
		return nil, fmt.Errorf("reindex: no job runner")
	}
	raw, err := json.Marshal(opts)
	if err != nil {
		return nil, err
	}
	j, err := s.cfg.Jobs.Submit(ctx, sc, KindReindex, raw, false)
	if err != nil {
		return nil, err
	}
	what := "reindex"
	if opts.DryRun {
		what = "reindex dry run"
	}
	sc.Description = fmt.Sprintf("%s queued: job %s", what, j.ID)
	return j, nil
}

// checkpoint is where a reindex job got to.
type checkpoint struct {
	Report Report            `json:"report"`
	After  store.ResourceKey `json:"after"`
}

// runJob is the reindex jobs' handler: a pass, its report saved with the
// resource it got to after every batch, so that a job taken over by
// another process (or after a restart) goes on from there.
func (s *Service) runJob(ctx context.Context, run *jobs.Run) ([]byte, error) {
	var opts Options
	if err := json.Unmarshal(run.Job.Request, &opts); err != nil {
		return nil, fmt.Errorf("reindex request: %w", err)
	}
	var cp checkpoint
	if run.Job.Checkpoint != nil {
		if err := json.Unmarshal(run.Job.Checkpoint, &cp); err != nil {
			return nil, fmt.Errorf("reindex checkpoint: %w", err)
		}
	}
	rep := cp.Report
	rep.After = cp.After
	err := Pass(ctx, s.cfg.Store, opts, &rep, func(r *Report) error {
		run.Progress(int64(r.Checked), -1)
		raw, err := json.Marshal(checkpoint{Report: *r, After: r.After})
		if err != nil {
			return err
		}
		return run.Save(ctx, raw, nil)
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(rep)
}
