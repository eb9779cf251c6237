// Package replay shows what the current mapping would change in the
// records already stored, and sends the corrections. Every native record
// the gateway stored keeps its validated input and the mapping version
// that produced its resources (the ledger); a replay maps each stored
// input again with the current mapping, without writing, and compares the
// result, resource by resource and element by element, with what is
// stored: unchanged, changed (the element paths added, removed and
// changed; values only on request) or now refused (the rules broken). With
// Apply it writes the changed resources as new versions (an Observation
// becomes corrected), with a Provenance naming both mapping versions and
// the reason, and enqueues the corrections for the destinations that
// received the record before. A second apply finds nothing to change; an
// apply interrupted midway applies, when run again, what it had not.
//
// The comparison is fair to what happened since: a stored resource that a
// later write of another source (a client's update, another record of the
// patient) changed is not the record's any more, and is reported and left
// as it is; one that a later version of the same record wrote (a record
// nested in a session sent on its own after it, or a later session nesting
// it) is that version's to compare, and not reported. Each record is applied in a transaction of its own that checks
// the version it mapped is still the record's latest and the resources it
// compared are still current, so a replay running beside live ingest never
// writes an older version's content over what arrived meanwhile.
package replay

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/ordered"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/text"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Store is what a replay reads and enqueues through, beyond the engine.
type Store interface {
	store.Bulk
	Search(ctx context.Context, q *search.Query) (*store.Page, error)
	// Read is the current version (ErrGone with the deletion's metadata).
	Read(ctx context.Context, typ, id string) (*store.Resource, error)
	Deliveries(ctx context.Context, f store.DeliveryFilter) ([]*store.OutboxItem, error)
	// MayHaveReached tells whether a delivery (a dead letter) may have
	// reached its destination (store.Outbox.MayHaveReached).
	MayHaveReached(ctx context.Context, id int64) (bool, error)
}

// MapFunc maps a decoded record (mapping.Map; a test build swaps in one
// with a detail changed).
type MapFunc func(rec mapping.Record, opts mapping.Options) (*mapping.Result, error)

// Config configures a Service. Zero values select the defaults.
type Config struct {
	// Store, Engine and Ingest are the application's (required).
	Store  Store
	Engine *engine.Engine
	Ingest *ingest.Service
	// Jobs runs replays asked over HTTP; New registers their handler.
	Jobs *jobs.Service
	// Map is the mapping replayed (mapping.Map) and MappingVersion its
	// version (mapping.Version).
	Map            MapFunc
	MappingVersion string
	// IdentifierBase is the deployment's identifier namespace ("" the
	// default), which names records in Provenance.
	IdentifierBase string
	// Destinations are the delivery destinations configured now: an
	// apply enqueues a correction for those of them that had the record.
	Destinations []string
	// MRNSystems are, by destination, the MRN systems of those that set
	// them (ingest.Route.MRNSystems): a correction's Patient carries only
	// their MRNs there. A destination not in it receives every MRN.
	MRNSystems map[string][]string
	// Notify wakes the delivery worker after corrections were enqueued.
	Notify func()
	// Workers is how many records are compared at once (default 4).
	Workers int
	// Now is the clock (time.Now by default).
	Now func() time.Time
}

// Service replays stored records.
type Service struct {
	cfg Config
	// beforeCompare, set by tests only, runs as a record's replay starts,
	// after the walk read its ledger entry.
	beforeCompare func(l *store.Ledger)
}

// New returns the replay service and registers its job handler with
// cfg.Jobs. It does no I/O.
func New(cfg Config) *Service {
	if cfg.Map == nil {
		cfg.Map = mapping.Map
	}
	if cfg.MappingVersion == "" {
		cfg.MappingVersion = mapping.Version
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	s := &Service{cfg: cfg}
	if cfg.Jobs != nil {
		cfg.Jobs.Handle(KindReplay, s.runJob, auth.ScopeOperator)
	}
	return s
}

// MappingVersion is the version the service replays.
func (s *Service) MappingVersion() string { return s.cfg.MappingVersion }

// Options select the records of a replay and what it does.
type Options struct {
	// Kind, Source (a clinic system) and Tenant select records ("" every
	// kind and source; Tenant search.AllTenants every tenant); Since keeps
	// those received since then.
	Kind   mapping.Kind
	Source string
	Tenant string
	Since  time.Time
	// Apply writes the changes; Reason says why (in the Provenance).
	Apply  bool
	Reason string
	// ShowValues puts the old and new values in the diffs (PHI).
	ShowValues bool
	// Downgrade replays records a newer mapping stored too: without it,
	// such a record is refused (replay-newer-mapping) and left as the
	// newer mapping made it, so that an older build's replay does not undo
	// a newer one's corrections by accident. With it (to undo a replay),
	// the older mapping's resources are written back as corrections.
	Downgrade bool

	// after resumes a replay after a record (a job's checkpoint).
	after store.LedgerKey
}

// Record statuses.
const (
	StatusUnchanged = "unchanged" // the mapping makes what is stored
	StatusChanged   = "changed"   // the mapping makes something else (Apply: written)
	StatusRefused   = "refused"   // the record breaks a rule now; left as it is
	StatusDiverged  = "diverged"  // only resources another source changed since differ; left as they are
	StatusNoInput   = "no-input"  // stored before inputs were kept: nothing to replay
	StatusWithdrawn = "withdrawn" // the latest version withdraws the record: its retired resources are left as they are
	StatusConflict  = "conflict"  // (Apply) changed by a concurrent write while replayed; run again
)

// RecordResult is what a replay found for one stored record.
type RecordResult struct {
	Tenant   string `json:"tenant,omitempty"`
	Source   string `json:"source"`
	Kind     string `json:"kind"`
	RecordID string `json:"recordId"`
	Version  string `json:"version"`
	// MappingVersion is the mapping version that produced the stored
	// resources ("" for a record stored before versions were kept).
	MappingVersion string         `json:"mappingVersion,omitempty"`
	Status         string         `json:"status"`
	Resources      []ResourceDiff `json:"resources,omitempty"`
	// Issues are the rules a refused record breaks now.
	Issues []Issue `json:"issues,omitempty"`
	// Applied is true when the changes were written; Deliveries counts
	// the corrections enqueued.
	Applied    bool `json:"applied,omitempty"`
	Deliveries int  `json:"deliveries,omitempty"`

	// patient is the record's stored Patient ("Patient/<id>"; "" when
	// none is stored), whom a report showing its values names.
	patient string
}

// DisclosedPatient is the patient whose data r's report discloses: its
// stored Patient ("Patient/<id>") when r's diffs carry values
// (Options.ShowValues), "" otherwise (a record reported without values, or
// of no stored Patient). The AuditEvent of a report with values names it
// (a replay job's download; the CLI's report).
func (r *RecordResult) DisclosedPatient() string {
	if r.patient == "" || !r.showsValues() {
		return ""
	}
	return r.patient
}

// showsValues reports whether r's diffs carry values (Options.ShowValues).
func (r *RecordResult) showsValues() bool {
	for _, d := range r.Resources {
		for _, c := range d.Changes {
			if c.Old != nil || c.New != nil {
				return true
			}
		}
	}
	return false
}

// ResourceDiff is one resource of a record that the mapping now makes
// differently.
type ResourceDiff struct {
	// Resource is the stored resource ("Observation/<id>"), or the type
	// alone for a resource the mapping adds.
	Resource string `json:"resource"`
	// Change is "changed", "added" (the mapping makes a resource that is
	// not stored) or "removed" (the record's stored resource is no longer
	// made; a replay leaves it).
	Change  string       `json:"change"`
	Changes []PathChange `json:"changes,omitempty"`
	// Skipped says why the difference is left as it is (the reason only:
	// the reports print "left as it is: " before it).
	Skipped string `json:"skipped,omitempty"`
	// Written is the version an apply wrote.
	Written string `json:"written,omitempty"`
}

// Issue is one rule a refused record breaks: its id and where, never a
// value. Pointer is the JSON pointer into the record; Expression the
// FHIRPath of the mapped resource's element, for a rule the mapping's
// output breaks (a profile's: the mapping is at fault, not the record).
type Issue struct {
	Rule       string `json:"rule"`
	Pointer    string `json:"pointer,omitempty"`
	Expression string `json:"expression,omitempty"`
}

// Summary counts a replay's records by status and groups the changes.
type Summary struct {
	MappingVersion string `json:"mappingVersion"`
	Applied        bool   `json:"apply"`
	Records        int    `json:"records"`
	Unchanged      int    `json:"unchanged"`
	Changed        int    `json:"changed"`
	Refused        int    `json:"refused"`
	Diverged       int    `json:"diverged"`
	// PartlyDiverged counts the changed records that also hold resources
	// another source changed since (left as they are, as a diverged
	// record's): an apply writes the rest, and each run reports them
	// again (a mapping developer's review: an apply that left one said
	// "0 diverged" and exited 0, and the dry run after it exited 1).
	PartlyDiverged int `json:"partlyDiverged"`
	NoInput        int `json:"noInput"`
	// Withdrawn counts the records whose latest version withdraws them
	// (StatusWithdrawn): not compared, never corrected.
	Withdrawn  int `json:"withdrawn"`
	Conflicts  int `json:"conflicts"`
	Deliveries int `json:"deliveries"`
	// Groups count the records of each change ("Observation.code.coding.
	// display changed"), most records first.
	Groups []Group `json:"groups"`

	last   store.LedgerKey // the last record counted
	groups map[string]int  // Groups while counting (sortGroups lists them)
}

// Group is one kind of change and how many records have it.
type Group struct {
	Change  string `json:"change"`
	Records int    `json:"records"`
}

// Errors of a replay's request.
var (
	errKindUnknown = outcome.New(outcome.Invalid, "invalid", "replay-kind-unknown",
		"kind: unknown record kind; the kinds are assessment, vitals, infusion, adverse-event and session")
	// errTenantOther refuses a tenant named by a caller that acts for
	// another (one) tenant, whose replay covers its own records only.
	// errAllTenantApply refuses an applied replay to an all-tenant
	// principal, at the apply parameter.
	errAllTenantApply = outcome.New(outcome.Forbidden, "forbidden", "tenant-required",
		"a client acting for every tenant (tenant *) reads every tenant and writes none, and a replay with apply=true "+
			"writes corrected versions into the tenants' records: apply it as an operator of each tenant, or "+
			"run the replay command on the database; a dry run (without apply) is open to it").At("apply")
	errTenantOther = outcome.New(outcome.Invalid, "invalid", "replay-tenant-unknown",
		"tenant: this client replays its own tenant's records only; leave tenant out")
	// errSourceUnknown refuses a source of which no record is stored (a
	// misspelt one would replay nothing and exit 0, as if every record
	// were up to date).
	errSourceUnknown = outcome.New(outcome.Invalid, "invalid", "replay-source-unknown",
		"source: no record of this clinic system is stored (for the tenant replayed); check its spelling: it is the records' source.system")
	// errSinceFuture refuses a since in the future (a mistyped year),
	// which no record was received after.
	errSinceFuture = outcome.New(outcome.Invalid, "invalid", "replay-since-future",
		"since: the time is in the future, so no record was received after it (check the year)")
	// errReasonMissing refuses an apply without a reason: the corrections
	// go to hospitals' EHRs, and the gateway's Provenance of each says why
	// (the EHRs receive the corrected resources, not the reason).
	errReasonMissing = outcome.New(outcome.Invalid, "required", "replay-reason-missing",
		"reason: say why the changes are applied (the gateway keeps it in each correction's Provenance, shown in the record's lineage; the EHRs receive the corrected resources, not the reason)")
	// errReasonInvalid refuses a reason that is not one short line.
	errReasonInvalid = outcome.New(outcome.Invalid, "value", "replay-reason-invalid",
		fmt.Sprintf("reason: at most %d characters, without control characters (line breaks, tabs)", MaxReason))
)

// MaxReason is the longest reason a replay takes, in characters.
const MaxReason = 200

// tenantUnknown names the valid tenants of a replay.
func tenantUnknown(valid []string) error {
	names := make([]string, len(valid))
	for i, t := range valid {
		names[i] = search.TenantName(t)
	}
	msg := "tenant: no record of this tenant is stored"
	if len(names) > 0 {
		msg += "; the tenants with records are " + text.JoinAnd(names)
	}
	return outcome.New(outcome.Invalid, "invalid", "replay-tenant-unknown", msg)
}

// Check checks a replay's options: a kind that does not exist, or a
// tenant of which no record is stored, is an Invalid error naming the
// valid values; a source of which the tenant (or, for every tenant, no
// tenant) stored no record, and a since in the future, are Invalid too:
// the replay would find nothing and look like "nothing to replay".
func (s *Service) Check(ctx context.Context, opts Options) error {
	if opts.Kind != "" && !ingest.KnownKind(opts.Kind) {
		return errKindUnknown
	}
	if err := CheckReason(opts); err != nil {
		return err
	}
	if !opts.Since.IsZero() && opts.Since.After(s.cfg.Now()) {
		return errSinceFuture
	}
	if opts.Tenant == search.AllTenants && opts.Source == "" {
		return nil
	}
	tenants, err := s.cfg.Store.LedgerTenants(ctx)
	if err != nil {
		return err
	}
	if opts.Tenant != search.AllTenants {
		if !slices.Contains(tenants, opts.Tenant) {
			return tenantUnknown(tenants)
		}
		tenants = []string{opts.Tenant}
	}
	if opts.Source != "" {
		for _, t := range tenants {
			// The ledger is in source order: the first entry from the
			// tenant's name of the source on is of that source if any is.
			src := store.Namespaced(t, opts.Source)
			page, err := s.cfg.Store.LedgerEntries(ctx, store.LedgerQuery{Tenant: t, After: store.LedgerKey{Source: src}, Limit: 1})
			if err != nil {
				return err
			}
			if len(page) == 1 && page[0].Source == src {
				return nil
			}
		}
		return errSourceUnknown
	}
	return nil
}

// CheckReason checks a replay's reason: an apply needs one, and a reason
// is one line of at most MaxReason characters.
func CheckReason(opts Options) error {
	if opts.Apply && strings.TrimSpace(opts.Reason) == "" {
		return errReasonMissing
	}
	if !text.OneLine(opts.Reason, MaxReason) {
		return errReasonInvalid
	}
	return nil
}

// Run replays the stored records opts selects, as sc's caller (its tenant
// confines them unless it acts for every tenant), calls emit with each
// record's result in ledger order and progress with the records done, and
// returns the summary. It stops at the first store error (ErrUnavailable),
// or when ctx ends or emit fails, with the summary so far.
func (s *Service) Run(ctx context.Context, sc *auditlog.Scope, opts Options, emit func(RecordResult) error, progress func(done int)) (*Summary, error) {
	if err := s.Check(ctx, opts); err != nil {
		return nil, err
	}
	return s.run(ctx, sc, opts, &Summary{MappingVersion: s.cfg.MappingVersion, Applied: opts.Apply}, emit, progress, nil)
}

// run is Run from where sum (and opts.after) say it got to. Once stop
// closes (nil never does) it starts no other record: the records being
// replayed finish and are counted, and it returns ordered.ErrStopped.
func (s *Service) run(ctx context.Context, sc *auditlog.Scope, opts Options, sum *Summary, emit func(RecordResult) error, progress func(done int), stop <-chan struct{}) (*Summary, error) {
	sum.groups = map[string]int{}
	for _, g := range sum.Groups {
		sum.groups[g.Change] = g.Records
	}
	type item struct {
		l    *store.Ledger
		last store.LedgerKey // the record's last ledger row
		res  RecordResult
		err  error
	}
	err := ordered.RunUntil(ctx, stop, s.cfg.Workers, func(yield func(item) bool) error {
		return s.walk(ctx, opts, func(l *store.Ledger, last store.LedgerKey) bool {
			return yield(item{l: l, last: last})
		})
	}, func(ctx context.Context, it item) item {
		it.res, it.err = s.record(ctx, sc, it.l, opts)
		it.l = nil
		return it
	}, func(it item) error {
		if it.err != nil {
			return it.err
		}
		sum.count(it.res)
		sum.last = it.last
		if emit != nil {
			if err := emit(it.res); err != nil {
				return err
			}
		}
		if progress != nil {
			progress(sum.Records)
		}
		return nil
	})
	sum.sortGroups()
	return sum, err
}

// count adds one record's result to the summary.
func (sum *Summary) count(r RecordResult) {
	sum.Records++
	switch r.Status {
	case StatusUnchanged:
		sum.Unchanged++
	case StatusChanged:
		sum.Changed++
	case StatusRefused:
		sum.Refused++
	case StatusDiverged:
		sum.Diverged++
	case StatusNoInput:
		sum.NoInput++
	case StatusWithdrawn:
		sum.Withdrawn++
	case StatusConflict:
		sum.Conflicts++
	}
	sum.Deliveries += r.Deliveries
	if r.Status != StatusChanged {
		return
	}
	if slices.ContainsFunc(r.Resources, func(d ResourceDiff) bool { return d.Skipped != "" }) {
		sum.PartlyDiverged++
	}
	seen := map[string]bool{}
	for _, d := range r.Resources {
		if d.Skipped != "" {
			continue
		}
		typ, _, _ := strings.Cut(d.Resource, "/")
		keys := []string{typ + " " + d.Change}
		if d.Change == OpChanged {
			keys = keys[:0]
			for _, c := range d.Changes {
				keys = append(keys, groupKey(c))
			}
		}
		for _, k := range keys {
			if !seen[k] {
				seen[k] = true
				sum.groups[k]++
			}
		}
	}
}

// stopped is the final state of a replay stopped (its job cancelled)
// after the records sum counts: what it had already written and enqueued,
// which stays (each record was applied in a transaction of its own).
func (sum *Summary) stopped() string {
	withdrawn := ""
	if sum.Withdrawn > 0 {
		withdrawn = fmt.Sprintf(", %d withdrawn (left as they are)", sum.Withdrawn)
	}
	partly := ""
	if sum.PartlyDiverged > 0 {
		partly = fmt.Sprintf(" (%d of them partly diverged)", sum.PartlyDiverged)
	}
	if !sum.Applied {
		return fmt.Sprintf("the replay (dry run) stopped after %d records: %d unchanged, %d would change%s, %d refused now, %d diverged, "+
			"%d without a stored input%s; nothing was written", sum.Records, sum.Unchanged, sum.Changed, partly, sum.Refused, sum.Diverged,
			sum.NoInput, withdrawn)
	}
	return fmt.Sprintf("the replay (apply) stopped after %d records: %d changed (written)%s, %d unchanged, %d refused now, %d diverged, "+
		"%d in conflict, %d without a stored input%s; %d corrections enqueued; those records stay corrected, "+
		"and a replay run again goes on with the others", sum.Records, sum.Changed, partly, sum.Unchanged, sum.Refused, sum.Diverged,
		sum.Conflicts, sum.NoInput, withdrawn, sum.Deliveries)
}

// sortGroups lists the groups counted in Groups, most records first.
func (sum *Summary) sortGroups() {
	out := make([]Group, 0, len(sum.groups))
	for k, n := range sum.groups {
		out = append(out, Group{Change: k, Records: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Records != out[j].Records {
			return out[i].Records > out[j].Records
		}
		return out[i].Change < out[j].Change
	})
	sum.Groups = out
}

// walk pages through the ledger and calls fn with the latest version of
// each record opts selects (and the key of the record's last row), until
// fn returns false.
func (s *Service) walk(ctx context.Context, opts Options, fn func(l *store.Ledger, last store.LedgerKey) bool) error {
	q := store.LedgerQuery{Tenant: opts.Tenant, Kind: string(opts.Kind), Since: opts.Since, Limit: 500, After: opts.after}
	var group []*store.Ledger // the versions of one record
	flush := func() bool {
		if len(group) == 0 {
			return true
		}
		latest := latest(group)
		end := group[len(group)-1]
		last := store.LedgerKey{Source: end.Source, Kind: end.Kind, RecordID: end.RecordID, Version: end.Version}
		group = group[:0]
		if opts.Source != "" && latest.RecordSource() != opts.Source {
			return true
		}
		return fn(latest, last)
	}
	for {
		page, err := s.cfg.Store.LedgerEntries(ctx, q)
		if err != nil {
			return err
		}
		for _, l := range page {
			if len(group) > 0 {
				g := group[0]
				if g.Source != l.Source || g.Kind != l.Kind || g.RecordID != l.RecordID {
					if !flush() {
						return nil
					}
				}
			}
			group = append(group, l)
		}
		if len(page) < q.Limit {
			flush()
			return nil
		}
		last := page[len(page)-1]
		q.After = store.LedgerKey{Source: last.Source, Kind: last.Kind, RecordID: last.RecordID, Version: last.Version}
	}
}

// latest is the latest of a record's ledger entries (versions): the one
// received last, of those received in the same millisecond the greatest
// version label. The walk replays it, and an apply writes only while it is
// still the latest.
func latest(versions []*store.Ledger) *store.Ledger {
	l := versions[0]
	for _, v := range versions[1:] {
		if v.Received.After(l.Received) || v.Received.Equal(l.Received) && v.Version > l.Version {
			l = v
		}
	}
	return l
}
