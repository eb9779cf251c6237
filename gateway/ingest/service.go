package ingest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry/stage"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Route is a delivery destination as ingest sees it: every stored record
// a route accepts is enqueued for it in the transaction that stores it.
type Route struct {
	Name string
	// Accepts reports whether records of kind from source go there.
	Accepts func(kind, source string) bool
	// AcceptsTenant reports whether records of a tenant go there (nil:
	// every tenant's).
	AcceptsTenant func(tenant string) bool
	// MRNSystems are the identifier systems of the MRNs the destination
	// knows as its own (delivery.Destination.MRNSystems): the Patient it
	// receives carries, and is matched by, only MRNs of those systems
	// besides the clinic identifier (TransactionFor). nil: every MRN the
	// gateway holds for the patient; empty: none.
	MRNSystems []string
}

// receives reports, for the records of source, whether records of a tenant
// and kind go to r.
func (r Route) receives(source string) func(tenant, kind string) bool {
	return func(tenant, kind string) bool {
		return r.Accepts(kind, source) && (r.AcceptsTenant == nil || r.AcceptsTenant(tenant))
	}
}

// Metrics counts ingested records by kind and outcome.
type Metrics interface {
	IngestRecord(ctx context.Context, kind, outcome string)
}

// Config configures a Service.
type Config struct {
	// Engine stores the mapped resources (nil: dry runs only).
	Engine *engine.Engine
	// Pipeline validates and maps records (required).
	Pipeline *Pipeline
	// Routes are the delivery destinations.
	Routes []Route
	// Notify is called after records were enqueued (wakes the worker).
	Notify func()
	// Metrics counts records (none by default).
	Metrics Metrics
	// Tracer traces the stages (none by default).
	Tracer trace.TracerProvider
	// Safety holds the safety thresholds of the tenants that override the
	// pipeline's (mapping.Options.Safety; DefaultSafety when unset).
	Safety map[string]mapping.Safety
	// Now is the clock a record's source.lastUpdated is compared with
	// (checkNotFuture; time.Now when nil).
	Now func() time.Time
}

// Service ingests native records.
type Service struct {
	engine  *engine.Engine
	p       *Pipeline
	routes  []Route
	notify  func()
	metrics Metrics
	tracer  trace.Tracer
	safety  map[string]mapping.Safety
	now     func() time.Time
}

type noMetrics struct{}

func (noMetrics) IngestRecord(context.Context, string, string) {}

// New returns the ingest service. It does no I/O.
func New(cfg Config) *Service {
	if cfg.Notify == nil {
		cfg.Notify = func() {}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{engine: cfg.Engine, p: cfg.Pipeline, routes: cfg.Routes, notify: cfg.Notify, metrics: cfg.Metrics,
		tracer: stage.Tracer(cfg.Tracer), safety: cfg.Safety, now: cfg.Now}
}

// Options are the mapping options for a tenant's records: the pipeline's,
// with the tenant's safety thresholds.
func (s *Service) Options(tenant string) mapping.Options {
	opts := s.p.opts
	if t, ok := s.safety[tenant]; ok {
		opts.Safety = &t
	}
	return opts
}

// Pipeline returns the service's pipeline.
func (s *Service) Pipeline() *Pipeline { return s.p }

// WithoutDelivery returns the service as it is, but enqueueing nothing for
// the delivery destinations (a bulk import of history the EHRs already
// hold).
func (s *Service) WithoutDelivery() *Service {
	cp := *s
	cp.routes = nil
	return &cp
}

// errNoStore answers a store request to a gateway without a store.
var errNoStore = outcome.New(outcome.NotImplemented, "not-supported", "storage-unavailable",
	"this gateway runs without a store; use dryRun=true to validate and map")

// Ingest validates, maps and (unless dryRun) stores one native record of
// kind, body being its JSON. It answers the JSON to send: the mapped
// transaction Bundle for a dry run, else the transaction-response (the same
// answer again for a record version already received). ans is how the
// client wants written resources answered. Client mistakes are classified
// errors (package outcome); nothing is stored then.
func (s *Service) Ingest(ctx context.Context, sc *auditlog.Scope, kind mapping.Kind, body []byte, dryRun bool, ans engine.Answer) ([]byte, error) {
	out, _, err := s.ingest(ctx, sc, kind, body, dryRun, ans, nil)
	return out, err
}

// Import stores one native record of a bulk import as Ingest does (no dry
// run, no answer). For a record version received before, which wrote
// nothing, received is when it was first received (its ledger entry's
// time: an import resumed after its runner died tells its own records,
// stored before, from others'); zero when Import stored it.
//
// A refused record leaves the AuditEvent a refused POST /ingest leaves (the
// record, and the stored patients it was read against), committed before
// Import returns (Refused).
func (s *Service) Import(ctx context.Context, sc *auditlog.Scope, kind mapping.Kind, body []byte) (received time.Time, err error) {
	_, again, err := s.ingest(ctx, sc, kind, body, false, engine.Answer{}, &received)
	if !again {
		received = time.Time{}
	}
	// Every refusal is audited as the edge audits it (a write conflict
	// left after the retries too).
	if refusal(err) {
		if aerr := s.Refused(sc, err); aerr != nil {
			return time.Time{}, aerr
		}
	}
	return received, err
}

// errRefusalUnaudited is a refused record of an import whose AuditEvent
// could not be committed: the record is not done, a run again does it.
var errRefusalUnaudited = outcome.New(outcome.Unavailable, "transient", "audit-unavailable",
	"the refused record could not be audited; run the import again to continue")

// Refused commits the AuditEvent of a record refused with err outside an
// HTTP request (a bulk import's record: one the import could not read, or
// one Import refused), as the edge does for a refused POST /ingest: the
// broken rules, with err's status, and whatever sc names. It returns an
// error of kind Unavailable when the AuditEvent could not be committed.
func (s *Service) Refused(sc *auditlog.Scope, err error) error {
	if s.engine == nil {
		return nil
	}
	kind, _ := outcome.From(err)
	sc.Rules = outcome.Rules(err)
	if aerr := s.engine.Audit(sc, kind.HTTPStatus()); aerr != nil {
		return errors.Join(errRefusalUnaudited, fmt.Errorf("audit refused record: %w", aerr))
	}
	return nil
}

// ingest is Ingest, also reporting whether the version was received before.
// received, when not nil, is set to when a version received before was
// first received.
func (s *Service) ingest(ctx context.Context, sc *auditlog.Scope, kind mapping.Kind, body []byte, dryRun bool, ans engine.Answer,
	received *time.Time) ([]byte, bool, error) {
	tenant := sc.TenantOf()
	opts := s.Options(tenant)
	// A stored record stays in its session (inSession): whether an event
	// with causality names its session is checked once the session it is
	// stored in is known (storeTx). A dry run reads nothing stored.
	opts.SessionLater = !dryRun
	var storing *auditlog.Scope // a record stored: its new resources are rendered ahead
	if !dryRun && s.engine != nil {
		storing = sc
	}
	pr, err := s.prepare(ctx, kind, body, opts, tenant, func(rec mapping.Record) { s.nameRecords(sc, kind, rec) }, storing)
	if err != nil {
		s.metrics.IngestRecord(ctx, string(kind), "rejected")
		s.nameRefusedBySchema(sc, kind, body, err)
		return nil, false, err
	}
	if dryRun {
		out, err := pr.answer()
		if err != nil {
			s.metrics.IngestRecord(ctx, string(kind), "failed")
			return nil, false, err
		}
		sc.Description = fmt.Sprintf("%s record dry run: nothing stored", kind)
		sc.SetAction("E") // mapped and answered, nothing created
		if ans.Return == engine.ReturnOutcome {
			// Prefer: return=OperationOutcome (http.html#ops): the hints
			// and warnings instead of the Bundle.
			b, err := fhirwire.Marshal(dryRunOutcome(out))
			return b, false, err
		}
		return out.Bundle, false, nil
	}
	if s.engine == nil {
		return nil, false, errNoStore
	}
	answer, again, err := s.store(ctx, sc, record{kind: kind, body: body, rec: pr.rec, opts: pr.opts, received: received}, pr.res, pr.raws, pr.docs, pr.checked, pr.spec, ans)
	if err != nil {
		s.metrics.IngestRecord(ctx, string(kind), "failed")
		return nil, false, err
	}
	s.metrics.IngestRecord(ctx, string(kind), "stored")
	return answer, again, nil
}

// store stores a mapped record in one transaction together with its
// ledger entry, and answers the transaction-response. It is idempotent on
// (source system, kind, record id, version): the same record again changes
// nothing and gets the first answer again; the same version with other
// content is a Conflict; a new version of a stored record updates its
// resources (conditional updates, Observations amended).
//
// firstDocs are first's rendered resources decoded (Pipeline.MarshalDecoded):
// the first attempt of the transaction works on them, so that the write
// lane does not decode what the pipeline decoded already; an attempt after
// it decodes firstRaws again (an attempt changes the documents it writes).
// checked is the profile check of firstDocs (checkProfiles): it needs no
// database, so it ran before the transaction every writer waits for, and
// storeTx reports its result where it would have run it (a version
// received before gets its stored answer again).
func (s *Service) store(ctx context.Context, sc *auditlog.Scope, rec record, first *mapping.Result,
	firstRaws [][]byte, firstDocs []map[string]any, checked []error, spec *engine.Speculation, ans engine.Answer) (answer []byte, again bool, err error) {
	if rec.hash, err = contentHash(rec.body); err != nil {
		return nil, false, err
	}
	rec.version = first.Source.Version
	if rec.version == "" {
		rec.version = first.Source.LastUpdated
	}
	err = stage.Run(ctx, s.tracer, "store.transaction", func(ctx context.Context) error {
		err := s.engine.Write(ctx, sc, func(tx *engine.Tx) (int, error) {
			docs, pre := firstDocs, checked
			firstDocs, checked = nil, nil // a second run decodes firstRaws afresh (the first rewrote docs)
			var err error
			answer, again, err = s.storeTx(ctx, tx, sc, rec, first, firstRaws, docs, pre, spec, ans)
			return fhirwire.StatusOK, err
		})
		if spec != nil {
			// How many of the resources the transaction created were
			// rendered ahead of it (engine.Speculate): a count, no data.
			trace.SpanFromContext(ctx).SetAttributes(attribute.Int("ingest.rendered_ahead", spec.Used()))
		}
		return err
	}, attribute.String("ingest.kind", string(rec.kind)), attribute.Int("fhir.entry_count", len(first.Entries)))
	if err != nil {
		return nil, false, err
	}
	s.notify()
	return answer, again, nil
}

// record is one native record version being stored.
type record struct {
	kind          mapping.Kind
	body          []byte
	rec           mapping.Record  // body decoded
	opts          mapping.Options // the tenant's mapping options
	hash, version string
	// received, when not nil, is set to when a version received before
	// was first received (setReceived).
	received *time.Time
}

// setReceived notes when the version was first received, for Import.
func (r record) setReceived(t time.Time) {
	if r.received != nil {
		*r.received = t
	}
}

// storeTx is store's database transaction; it returns the answer.
// firstRaws are first's rendered resources (Pipeline.Marshal), firstDocs
// them decoded or nil (then decoded here), and checked the profile check
// of firstDocs (checkProfiles) or nil (then checked here).
//
// The request's AuditEvent names the record (and the records a session
// nests) and, when the record is refused or is a version received before,
// the stored patients it concerns (concerned), so that the patient's audit
// trail and the record's lineage find those requests too.
func (s *Service) storeTx(ctx context.Context, tx *engine.Tx, sc *auditlog.Scope, rec record, first *mapping.Result,
	firstRaws [][]byte, firstDocs []map[string]any, checked []error, spec *engine.Speculation, ans engine.Answer) (answer []byte, again bool, err error) {
	src, st := first.Source, tx.Store()
	nested := newNestedLedgers(st)
	s.nameRecords(sc, rec.kind, rec.rec) // again: each attempt starts from a reset scope
	var (
		id        *identity
		ledgerNew bool // the ledger held no entry of this version
		wrote     bool // the record's resources are written (in this transaction)
	)
	defer func() {
		if !refused(err) {
			return
		}
		racedID := id
		if wrote {
			racedID = nil // its own Patient is written: identity resolves to it now
		}
		if rerr := raced(st, rec, first, ledgerNew, racedID); rerr != nil {
			err = rerr
			return
		}
		if cerr := concerned(st, sc, rec, id); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	l, err := st.Ledger(src.System, string(rec.kind), src.RecordID, rec.version)
	ledgerNew = errors.Is(err, store.ErrNotFound)
	same := err == nil && l.ContentHash == rec.hash
	if ledgerNew {
		// The version label is the record's source.lastUpdated: the same
		// instant written otherwise is the same version.
		var ierr error
		if l, same, ierr = sameInstantVersion(st, rec); ierr != nil {
			return nil, false, ierr
		} else if l != nil {
			err = nil
		}
	}
	// reused refuses a version received before with other content, once
	// the checks that say more (a newer version stored, the record stored
	// for another patient: what the clinic must resolve first) passed.
	var reused error
	switch {
	case err == nil && same:
		sc.Description = fmt.Sprintf("%s record version already received: nothing written", rec.kind)
		sc.SetAction("R") // the stored answer read again; nothing created
		sc.Concern(patientsAnswered(l.Response)...)
		rec.setReceived(l.Received)
		return l.Response, true, nil
	case err == nil:
		// A retry whose source.lastUpdated writes the same instant
		// otherwise (an integration engine normalising timestamps) is the
		// same version again.
		switch in, ierr := ledgerAt(st, src.System, rec.kind, src.RecordID, rec.version); {
		case ierr != nil:
			return nil, false, ierr
		case in != nil && sameButNotation(in.Input, rec.body):
			sc.Description = fmt.Sprintf("%s record version already received: nothing written", rec.kind)
			sc.SetAction("R")
			sc.Concern(patientsAnswered(in.Response)...)
			rec.setReceived(in.Received)
			return in.Response, true, nil
		}
		reused = errVersionReused(first.Source.Version == "")
	case !errors.Is(err, store.ErrNotFound):
		return nil, false, err
	}
	tenant := sc.TenantOf()
	// The record's main resource as stored, nil for a new record.
	stored, mainAt, err := storedMain(st, nested, tenant, first, src.System, rec.kind)
	if err != nil {
		return nil, false, err
	}
	names := recordNames(s.p.opts.IdentifierBase, rec.rec, rec.kind) // whose resources are the record's own
	withdrawal := src.Status == "entered-in-error"
	// revived: the record's main resource, an AdverseEvent, was deleted
	// (withdrawn): this version brings it back as a new version.
	revived := false
	if stored == nil && !withdrawal {
		if i := mainEntry(first); i >= 0 {
			if revived, err = mainGone(st, tenant, &first.Entries[i]); err != nil {
				return nil, false, err
			}
		}
	}
	if tx.Audited() {
		if err := checkStoredOwn(st, first, stored, mainAt, names); err != nil {
			return nil, false, err
		}
	}
	// The session the record's stored version is part of: a record stays
	// in its session (inSession).
	var (
		home    string
		logical bool // home named by identifier only
	)
	if _, ok := namedSession(rec.rec); ok {
		if home, logical, err = homeSession(st.Read, stored); err != nil {
			return nil, false, err
		}
		if home == "" {
			if home, logical, err = homeInHistory(st, stored); err != nil {
				return nil, false, err
			}
		}
	}
	if reused == nil {
		// The version received in the record's other form (nested in a
		// session, or on its own; an infusion, or its session).
		other, refusal, err := otherForm(st, rec, home)
		switch {
		case err != nil:
			return nil, false, err
		case other != nil:
			sc.Description = fmt.Sprintf("%s record version already received as a %s record: nothing written", rec.kind, other.Kind)
			sc.SetAction("R")
			sc.Concern(patientsAnswered(other.Response)...)
			return other.Response, true, nil
		}
		reused = refusal
	}
	if err := checkNotStale(nested, rec, s.now()); err != nil {
		return nil, false, err
	}
	// homed is the record as mapped, and as the rules across records
	// judge it (checkStored, below): in the session it stays in.
	homed, err := inSession(rec.rec, home, func() (bool, error) {
		if !logical {
			return true, nil
		}
		return sessionStored(st, rec, home)
	})
	if err != nil {
		return nil, false, err
	}
	if err := mapping.CheckSessionNamed(homed); err != nil {
		return nil, false, err
	}
	res, raws, docs := first, firstRaws, firstDocs
	opts := rec.opts
	opts.SessionLater = false
	switch {
	case stored != nil || revived: // this is a new version
		sc.SetAction("U")
		// A new version: mapped again in update mode, and rendered and
		// validated again too.
		opts.Update = true
	case rec.kind == mapping.KindSession:
		// A new session may carry new versions of records sent on their
		// own before: those are mapped in update mode (conditional
		// updates, amended), else their conditional creates would keep
		// the old values.
		if opts.UpdateNested, err = storedNested(st, nested, tenant, rec, rec.rec.(*mapping.Session), first); err != nil {
			return nil, false, err
		}
	}
	if opts.Update || len(opts.UpdateNested) > 0 {
		if res, err = mapping.Map(homed, opts); err != nil {
			return nil, false, err
		}
		if raws, err = s.p.Marshal(res); err != nil {
			return nil, false, err
		}
		docs, checked = nil, nil
	}
	if res, raws, docs, checked, err = dropSettledDeletes(st, s.routes, tenant, rec.rec, rec.kind, res, raws, docs, checked); err != nil {
		return nil, false, err
	}
	var retiring []map[string]any // the stored signals res retires
	if res, raws, docs, checked, retiring, err = dropPhantoms(st, res, raws, docs, checked); err != nil {
		return nil, false, err
	}
	// What is stored: one Patient per person, and the rules across records.
	id, err = resolveIdentity(st, rec.rec, res)
	if err != nil {
		return nil, false, err
	}
	var standing []mapping.Violation // the issue kept final on another record's value
	if res, raws, docs, checked, standing, err = keepRetiredIssue(st, homed, rec.opts, id.patientID, retiring, res, raws, docs, checked); err != nil {
		return nil, false, err
	}
	var retiredNested []audit.NestedRecord // records earlier versions nested whose resources the withdrawal retires
	if withdrawal && stored != nil {
		// A withdrawal retires what earlier versions wrote too.
		if res, raws, docs, checked, retiredNested, err = s.retireLeftovers(st, rec, res, raws, docs, checked); err != nil {
			return nil, false, err
		}
	}
	DeliverMatching(rec.rec, res, id.stored)
	// The rules across records judge the record in the session it stays
	// in (a safety review: a critical pre-dose correction that names no
	// session got no warning, and a time outside the session was taken),
	// but one whose session is another patient's is stored for another
	// patient: refused as that (record-patient-changed, RunChecked), not
	// for naming a session it never named.
	across, err := checkStored(st, homed, res, rec.opts, id.patientID)
	if err != nil && homed != rec.rec && slices.Contains(outcome.Rules(err), "session.patient-mismatch") {
		across, err = checkStored(st, rec.rec, res, rec.opts, id.patientID)
	}
	if err != nil {
		return nil, false, err
	}
	// The patient's other sessions: warnings, never a refusal.
	spacing, err := sessionSpacing(st, rec.rec, rec.opts, id.patientID)
	if err != nil {
		return nil, false, err
	}
	// The MRN added or changed makes a new version of the same Patient,
	// which keeps everything else it holds.
	var patient map[string]any
	if id.mrnNew {
		mapped := map[string]any(nil)
		if docs != nil {
			mapped = docs[0]
		} else if mapped, err = engine.DecodeResource(raws[0]); err != nil {
			return nil, false, fmt.Errorf("mapped Patient: %w", err)
		}
		patient = id.nextPatient(mapped)
	}
	entries, entryDocs, err := s.entries(res, raws, docs, checked, tenant, patient)
	if err != nil {
		return nil, false, err
	}
	// The resources rendered ahead (prepare), for the entries made of the
	// documents they were rendered from: the first attempt's, unchanged.
	spec.Apply(entries)
	var kept map[int]string // the resources the new version leaves as they are (keepUnchanged)
	err = tx.RunChecked(entries, func(current []*store.Resource) error {
		if err := samePatientFound(current, id); err != nil {
			return err
		}
		if err := checkSamePatient(res, current, id.patientID); err != nil {
			for _, r := range current { // the patients the record is stored for
				if r != nil {
					sc.Concern(auditlog.PatientsIn(r.Type, r.ID, r.Body)...)
				}
			}
			return err
		}
		if err := checkSameInstrument(res, current); err != nil {
			return err
		}
		if tx.Audited() { // without the audit trail (app.Config.NoAudit) no Provenance tells who wrote a resource
			if err := checkMatchedOwn(st, res, current, names); err != nil {
				return err
			}
		}
		if err := checkNestedNotStale(st, nested, rec, res, current, s.now()); err != nil {
			return err
		}
		if reused != nil {
			return reused
		}
		if opts.Update || len(opts.UpdateNested) > 0 {
			var err error
			kept, err = keepUnchanged(st, res, entries, entryDocs, current)
			return err
		}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	wrote = true
	if err := id.claim(st, entries[0].Result().Resource.ID); err != nil {
		return nil, false, err
	}
	// v3-DataOperation: a withdrawal (entered-in-error) is NULLIFY, so
	// that withdrawals are found by Provenance, not only by the statuses
	// of their targets.
	activity := "CREATE"
	switch {
	case withdrawal:
		activity = "NULLIFY"
	case stored != nil || revived:
		activity = "UPDATE"
	}
	err = tx.Provenance(audit.Provenance{
		ID:       audit.RecordProvenanceID(tenant, src.System, string(rec.kind), src.RecordID, rec.version),
		Activity: activity, Source: src.System, MappingVersion: mapping.Version,
		WhatSystem: mapping.RecordSystem(s.p.opts.IdentifierBase, src.System, rec.kind), WhatValue: src.RecordID,
		WhatDisplay: fmt.Sprintf("%s record version %s", rec.kind, rec.version), ContentHash: rec.hash,
		RecordKind: string(rec.kind), RecordVersion: rec.version,
		Nested:  withRetired(NestedRecords(s.p.opts.IdentifierBase, src.System, rec.rec), retiredNested),
		Patient: "Patient/" + entries[0].Result().Resource.ID, // the record's Patient, written or matched
	}, engine.Written(entries, nil))
	if err != nil {
		return nil, false, err
	}
	sc.Description = fmt.Sprintf("%s record: %d entries", rec.kind, len(entries))
	if withdrawal {
		// An auditor finds withdrawals among the AuditEvents too, not only
		// by the Provenances' NULLIFY.
		sc.Description = fmt.Sprintf("%s record withdrawn (entered-in-error): %d entries", rec.kind, len(entries))
	}
	var notSent []string // destinations another tenant holds the source at
	// A withdrawal of a record no version of which (in either form) is
	// stored withdraws nothing an EHR holds: it is stored, so that a
	// version sent before it that arrives after it is refused as stale,
	// but not delivered, which would give an EHR a patient and resources
	// it never had (an EHR review).
	unsent := withdrawal && stored == nil
	var unreached []string // destinations a withdrawal is not sent to: they never had the record
	err = stage.Run(ctx, s.tracer, "outbox.enqueue", func(context.Context) error {
		if unsent {
			return nil
		}
		var err error
		sentRaws, err := deliveredKept(raws, kept)
		if err != nil {
			return err
		}
		var reached func(dest string) (bool, map[string]bool, error)
		if withdrawal {
			reached = withdrawalReach(st, src.System, rec)
		}
		notSent, unreached, err = s.enqueue(st, tenant, rec.kind, rec.rec, res, sentRaws, rec.version, sc.TraceID, tx.ClaimSource, reached)
		return err
	}, attribute.String("ingest.kind", string(rec.kind)))
	if err != nil {
		return nil, false, err
	}
	if len(notSent) > 0 {
		sc.Description += fmt.Sprintf("; not delivered to %s (%s)", strings.Join(notSent, ", "), engine.RuleSourceOtherTenant)
	}
	if len(unreached) > 0 {
		sc.Description += fmt.Sprintf("; not delivered to %s (%s)", strings.Join(unreached, ", "), RuleWithdrawnNotDelivered)
	}
	b := s.engine.Response(fhirwire.TypeTransactionResponse, entries, nil, ans)
	warnings := append(mappingWarnings(slices.Concat(res.Warnings, across, spacing, standing)), demographicsWarning(id.unapplied, id.stored)...)
	if unsent {
		// A record whose earlier versions are stored, its resources
		// retired already (an adverse event deleted by a withdrawal): a
		// withdrawal again changes nothing (an EHR review: it was told the
		// record had never been stored).
		known := false
		for _, k := range recordKinds(rec.kind) {
			versions, err := nested.versions(src.System, k, src.RecordID)
			if err != nil {
				return nil, false, err
			}
			known = known || len(versions) > 0
		}
		w, rule := withdrawnNotStored, RuleWithdrawnNotStored
		if known {
			w, rule = withdrawnAgain, RuleWithdrawnAgain
		}
		warnings = append(warnings, w)
		sc.Description += fmt.Sprintf("; not delivered (%s)", rule)
	}
	if err := warn(&b, slices.Concat(warnings, notSentWarning(notSent), unreachedWarning(unreached))); err != nil {
		return nil, false, err
	}
	if len(id.unapplied) > 0 {
		sc.Description += fmt.Sprintf("; patient demographics not applied (%s)", RuleDemographicsNotApplied)
	}
	if answer, err = fhirwire.Marshal(b); err != nil {
		return nil, false, err
	}
	return answer, false, st.PutLedger(&store.Ledger{Source: src.System, Kind: string(rec.kind), RecordID: src.RecordID,
		Version: rec.version, ContentHash: rec.hash, Response: answer, Received: tx.Now().UTC(),
		MappingVersion: mapping.Version, Input: rec.body})
}

// nameRecords names, in sc, the record and the records a session nests
// (they keep their own identity), by the identifiers their Provenance
// names them by.
func (s *Service) nameRecords(sc *auditlog.Scope, kind mapping.Kind, r mapping.Record) {
	src := r.Env().Source
	if src.System == "" || src.RecordID == "" {
		return
	}
	base := s.p.opts.IdentifierBase
	sc.NameRecord(mapping.RecordSystem(base, src.System, kind), src.RecordID)
	for _, n := range NestedRecords(base, src.System, r) {
		sc.NameRecord(n.System, n.Value)
	}
}

// nameRefusedBySchema names, in sc, the record a body its JSON Schema
// refused is, when the schema found nothing wrong with its identity
// (source.system and source.recordId, strings, neither named by an
// issue): a value out of range refuses a record whose identity is sound,
// and "every request about this source record" must find that refusal
// too (auditor review). The records a session nests are not named: the
// body was not decoded as a record.
func (s *Service) nameRefusedBySchema(sc *auditlog.Scope, kind mapping.Kind, body []byte, err error) {
	_, issues := outcome.From(err)
	if len(issues) == 0 || !strings.HasPrefix(issues[0].Rule, "schema.") {
		return
	}
	for _, is := range issues {
		switch p := is.Pointer; {
		case p == "" || p == "/" || p == "/source" || strings.HasPrefix(p, "/source/system") || strings.HasPrefix(p, "/source/recordId"):
			return
		}
	}
	var doc struct {
		Source struct {
			System   *string `json:"system"`
			RecordID *string `json:"recordId"`
		} `json:"source"`
	}
	if json.Unmarshal(body, &doc) != nil || doc.Source.System == nil || doc.Source.RecordID == nil ||
		*doc.Source.System == "" || *doc.Source.RecordID == "" {
		return
	}
	sc.NameRecord(mapping.RecordSystem(s.p.opts.IdentifierBase, *doc.Source.System, kind), *doc.Source.RecordID)
}

// refused reports whether err refuses the record (a client's mistake the
// gateway classified), as opposed to a failure of the gateway or a
// transaction to run again.
func refused(err error) bool {
	if errors.Is(err, store.ErrConflict) {
		return false // a concurrent write: the transaction runs again
	}
	return refusal(err)
}

// refusal reports whether err refuses the record: every classified
// refusal a client gets as a 4xx (the gateway's own *outcome.Error and the
// clinical rules' *mapping.RuleError, the rules against the stored session
// among them), and a mapped resource breaking its profile, which is the
// gateway's defect (500 RuleMappingNonconformant, mappingDefect) but
// refuses the record all the same: audited, naming the patients it
// concerns, as a 4xx refusal is.
func refusal(err error) bool {
	if err == nil {
		return false
	}
	kind, _ := outcome.From(err)
	return kind.HTTPStatus() < 500 || slices.Contains(outcome.Rules(err), RuleMappingNonconformant)
}

// raced tells a refusal that a concurrent write made from one that stands.
// On PostgreSQL (READ COMMITTED) each statement of the transaction sees
// what committed before it, so a request that read no ledger entry and no
// Patient may, a statement later, read the resources a concurrent request
// of the same record (or of the same new patient) just stored, and find
// them "stored for another patient". It returns store.ErrConflict, so the
// transaction runs again and sees one state, when the ledger now holds the
// version it did not (ledgerNew), or the record's patient now resolves to
// another stored Patient than identity resolution found (id: nil when it
// did not run, or once the transaction wrote the record's own Patient);
// else nil, and the refusal stands.
func raced(st store.Tx, rec record, res *mapping.Result, ledgerNew bool, id *identity) error {
	src := res.Source
	if ledgerNew {
		switch _, err := st.Ledger(src.System, string(rec.kind), src.RecordID, rec.version); {
		case err == nil:
			return fmt.Errorf("record version stored by a concurrent request: %w", store.ErrConflict)
		case !errors.Is(err, store.ErrNotFound):
			return err
		}
	}
	if id == nil {
		return nil
	}
	now, err := resolveIdentity(st, rec.rec, res)
	switch {
	case errors.Is(err, store.ErrConflict):
		return err
	case now != nil && now.patientID != id.patientID:
		return fmt.Errorf("patient stored by a concurrent request: %w", store.ErrConflict)
	}
	return nil // (another refusal of the identity: the first stands)
}

// concerned names, in sc, the stored patients a refused record concerns:
// the patient the record is stored for (what the ledger answered its
// newest stored version with: a record never changes its patient), and
// the record's own stored Patient and the holder of its MRN as identity
// resolution found them (id, nil when it did not run). A refused record
// with a stored version was an update (action U).
func concerned(st store.Tx, sc *auditlog.Scope, rec record, id *identity) error {
	src := rec.rec.Env().Source
	for _, kind := range mapping.SameRecord(rec.kind) {
		versions, err := st.LedgerVersions(src.System, string(kind), src.RecordID)
		if err != nil {
			return err
		}
		var newest *store.Ledger
		for _, v := range versions {
			if newest == nil || v.Received.After(newest.Received) {
				newest = v
			}
		}
		if newest == nil {
			continue
		}
		l, err := st.Ledger(src.System, string(kind), src.RecordID, newest.Version)
		if err != nil {
			return err
		}
		sc.Concern(patientsAnswered(l.Response)...)
		sc.SetAction("U")
	}
	if id != nil {
		for _, p := range []string{id.patientID, id.holder} {
			if p != "" {
				sc.Concern("Patient/" + p)
			}
		}
	}
	return nil
}

// patientsAnswered are the Patients a stored transaction-response (a
// ledger answer) names in its entries' locations.
func patientsAnswered(response []byte) []string {
	var b struct {
		Entry []struct {
			Response struct {
				Location string `json:"location"`
			} `json:"response"`
		} `json:"entry"`
	}
	if json.Unmarshal(response, &b) != nil {
		return nil // an answer the gateway wrote; nothing to name otherwise
	}
	var out []string
	for _, e := range b.Entry {
		if strings.HasPrefix(e.Response.Location, "Patient/") {
			out = append(out, e.Response.Location)
		}
	}
	return out
}

// withRetired is nested with the records of retired not in it.
func withRetired(nested, retired []audit.NestedRecord) []audit.NestedRecord {
	for _, n := range retired {
		if !slices.Contains(nested, n) {
			nested = append(nested, n)
		}
	}
	return nested
}

// NestedRecords are the records a session nests, as its Provenance names
// them (audit.Provenance.Nested; a replay's correction names them the
// same way); none for another record.
func NestedRecords(base, source string, r mapping.Record) []audit.NestedRecord {
	sess, ok := r.(*mapping.Session)
	if !ok {
		return nil
	}
	var out []audit.NestedRecord
	for _, n := range sess.Nested() {
		out = append(out, audit.NestedRecord{System: mapping.RecordSystem(base, source, n.Kind), Value: n.RecordID, Kind: string(n.Kind)})
	}
	return out
}

// enqueue puts the mapped record in the outbox of every route that accepts
// it, inside the transaction that stores it. The payload is the mapped
// transaction Bundle, built from the resources' rendered bytes, with only
// the MRNs a route's destination knows (TransactionFor). A route
// where another tenant holds the record's source system (claim:
// engine.Tx.ClaimSource) gets a dead letter without payload instead, whose
// reason the operator sees; those routes are returned (notSent). The record
// is stored all the same: the clinic needs it in its record. reached, for
// a withdrawal (nil otherwise), tells whether a route's destination has or
// will have the record (an earlier delivery of it, in either form, not
// dead): one that never had it (each delivery a dead letter, an operator's
// cancel of one sent to the wrong destination, or a destination added
// since) gets a dead letter without payload (RuleWithdrawnNotDelivered;
// those routes are returned, unreached), which still supersedes the
// earlier dead letters there, so that none is retried without it. Sent,
// the withdrawal would give the EHR the patient and the record's values
// it never had (an EHR review).
func (s *Service) enqueue(tx store.Tx, tenant string, kind mapping.Kind, rec mapping.Record, res *mapping.Result, raws [][]byte, version, traceID string,
	claim func(system, dest string, receives func(tenant, kind string) bool) (bool, error),
	reached func(dest string) (bool, map[string]bool, error)) (notSent, unreached []string, err error) {
	var items []*store.OutboxItem
	var dests []string // those that receive it
	systems := map[string][]string{}
	partial := map[string][]byte{} // the payloads of those that had only some of a session's nested records
	for _, r := range s.routes {
		if !r.Accepts(string(kind), res.Source.System) || (r.AcceptsTenant != nil && !r.AcceptsTenant(tenant)) {
			continue
		}
		ok, err := claim(res.Source.System, r.Name, r.receives(res.Source.System))
		if err != nil {
			return nil, nil, err
		}
		if !ok {
			it := OutboxItem(r.Name, kind, rec, res, version, nil, traceID)
			it.Status, it.LastError = store.StatusDead, store.Refused+engine.RuleSourceOtherTenant+": "+notSentReason
			items, notSent = append(items, it), append(notSent, r.Name)
			continue
		}
		if reached != nil {
			had, some, err := reached(r.Name)
			if err != nil {
				return nil, nil, err
			}
			if !had && len(some) == 0 {
				it := OutboxItem(r.Name, kind, rec, res, version, nil, traceID)
				it.Status, it.LastError = store.StatusDead, store.Withheld
				items, unreached = append(items, it), append(unreached, r.Name)
				continue
			}
			if !had {
				sub, subRaws, err := nestedOnly(res, raws, some)
				if err != nil {
					return nil, nil, err
				}
				p, err := Payloads(sub, subRaws, []string{r.Name}, func(string) []string { return r.MRNSystems })
				if err != nil {
					return nil, nil, err
				}
				partial[r.Name] = p[r.Name]
				items = append(items, OutboxItem(r.Name, kind, rec, res, version, nil, traceID))
				continue
			}
		}
		dests, systems[r.Name] = append(dests, r.Name), r.MRNSystems
		items = append(items, OutboxItem(r.Name, kind, rec, res, version, nil, traceID)) // its payload below
	}
	payloads, err := Payloads(res, raws, dests, func(d string) []string { return systems[d] })
	if err != nil {
		return nil, nil, err
	}
	for _, it := range items {
		if it.Status == store.StatusDead {
			continue
		}
		if p, ok := partial[it.Destination]; ok {
			it.Payload = p
		} else {
			it.Payload = payloads[it.Destination]
		}
	}
	if len(items) == 0 {
		return nil, nil, nil
	}
	return notSent, unreached, tx.Enqueue(items...)
}

// withdrawalReach tells, for a withdrawal of rec, whether a destination
// had the record (an earlier delivery of it in either form, not dead:
// Tx.Reached) and, when it did not and rec is a session, which of the
// records the session nests it had on their own (their entries' pointers,
// "/vitals/0"): it needs their withdrawal, and only theirs (nestedOnly).
// A safety review found an EHR that had only a nested PHQ-9 keeping its
// active suicide-risk Flag when the session's withdrawal was not sent
// there; an EHR review found the same EHR then sent the whole session,
// which it never had, when it was.
func withdrawalReach(st store.Tx, system string, rec record) func(dest string) (bool, map[string]bool, error) {
	src := rec.rec.Env().Source
	keys := recordOrderKeys(system, rec.kind, src.RecordID)
	return func(dest string) (bool, map[string]bool, error) {
		had, err := st.Reached("", dest, keys)
		if err != nil || had {
			return had, nil, err
		}
		s, ok := rec.rec.(*mapping.Session)
		if !ok {
			return false, nil, nil
		}
		var some map[string]bool
		ptrs := nestedPointers(s)
		for i, n := range s.Nested() {
			got, err := st.Reached("", dest, []string{OrderKey(system, n.Kind, n.RecordID)})
			if err != nil {
				return false, nil, err
			}
			if got {
				if some == nil {
					some = map[string]bool{}
				}
				some[ptrs[i]] = true
			}
		}
		return false, some, nil
	}
}

// nestedOnly is the part of res (and raws) a destination that had only
// some of a session's nested records (ptrs: their pointers) receives of
// the session's withdrawal: the Patient and those records' entries, their
// references to the entries left out (the session's Procedure, its
// administration) written as logical references by identifier, which no
// entry of the Bundle resolves now.
func nestedOnly(res *mapping.Result, raws [][]byte, ptrs map[string]bool) (*mapping.Result, [][]byte, error) {
	keep := make([]bool, len(res.Entries))
	logical := map[string]map[string]any{} // by fullUrl: the logical references of the entries left out
	for i, e := range res.Entries {
		keep[i] = e.ResourceType == "Patient" || (e.Record != "" && ptrs[e.Record])
		if !keep[i] && e.FullURL != "" && e.IdentifierValue != "" {
			logical[e.FullURL] = map[string]any{"type": e.ResourceType,
				"identifier": map[string]any{"system": e.IdentifierSystem, "value": e.IdentifierValue}}
		}
	}
	sub := *res
	sub.Entries = keepOnly(res.Entries, keep)
	subRaws := keepOnly(raws, keep)
	for i, raw := range subRaws {
		if raw == nil {
			continue // a DELETE
		}
		doc, err := fhirwire.Decode(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("mapped entry %d: %w", i, err)
		}
		if !logicalRefs(doc, logical) {
			continue
		}
		if subRaws[i], err = fhirwire.Marshal(doc); err != nil {
			return nil, nil, fmt.Errorf("mapped entry %d: %w", i, err)
		}
	}
	return &sub, subRaws, nil
}

// logicalRefs rewrites each reference of v to a fullUrl in logical as that
// logical reference; it reports whether it rewrote one.
func logicalRefs(v any, logical map[string]map[string]any) bool {
	changed := false
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			changed = logicalRefs(e, logical) || changed
		}
	case map[string]any:
		if ref, ok := x["reference"].(string); ok {
			if to, ok := logical[ref]; ok {
				delete(x, "reference")
				maps.Copy(x, to)
				return true
			}
		}
		for _, e := range x {
			changed = logicalRefs(e, logical) || changed
		}
	}
	return changed
}

// recordOrderKeys are the order keys of a record in each of its forms (an
// infusion and its session; a record nested in a session is one of the
// session's items' keys, OrderKeys).
func recordOrderKeys(system string, kind mapping.Kind, recordID string) []string {
	var keys []string
	for _, k := range recordKinds(kind) {
		keys = append(keys, OrderKey(system, k, recordID))
	}
	return keys
}

// RuleWithdrawnNotDelivered is the rule id of a withdrawal not delivered
// to a destination that never had the record (store.WithheldWithdrawal's).
const RuleWithdrawnNotDelivered = "record.withdrawn-not-delivered"

// unreachedWarning is a warning per destination (unreached) a withdrawal
// is not sent to, as it never had the record.
func unreachedWarning(unreached []string) []outcome.Issue {
	var issues []outcome.Issue
	for _, dest := range unreached {
		issues = append(issues, outcome.Issue{Severity: "warning", Code: "business-rule", Rule: RuleWithdrawnNotDelivered,
			Pointer: "/source/status", Expression: "source.status",
			Message: "the withdrawal is stored, but not sent to the destination " + dest + ", which never received the " +
				"record (its earlier deliveries there were not delivered, or the destination was added since): nothing " +
				"needs to be done there"})
	}
	return issues
}

// RuleWithdrawnNotStored is the rule id of the warning that a withdrawal
// of a record the gateway holds no version of is stored and not
// delivered.
const RuleWithdrawnNotStored = "record.withdrawn-not-stored"

// withdrawnNotStored is the RuleWithdrawnNotStored warning.
var withdrawnNotStored = outcome.Issue{Severity: "warning", Code: "business-rule", Rule: RuleWithdrawnNotStored,
	Pointer: "/source/status", Expression: "source.status",
	Message: "no version of this record was stored before this withdrawal: the withdrawal is stored (a version of " +
		"the record sent with an earlier source.lastUpdated is refused as stale) and is not sent to any EHR, which " +
		"never received the record; nothing needs to be done if the record was never meant to be sent"}

// RuleWithdrawnAgain is the rule id of the warning that a withdrawal of a
// record withdrawn already changes nothing and is not delivered.
const RuleWithdrawnAgain = "record.withdrawn-again"

// withdrawnAgain is the RuleWithdrawnAgain warning.
var withdrawnAgain = outcome.Issue{Severity: "warning", Code: "business-rule", Rule: RuleWithdrawnAgain,
	Pointer: "/source/status", Expression: "source.status",
	Message: "the record was withdrawn already (an earlier version's withdrawal retired its resources): this " +
		"withdrawal is stored and changes nothing, and is not sent to the EHRs, which were sent the earlier one; if a " +
		"destination did not receive it (a dead letter), have the gateway's operator retry that delivery"}

// notSentReason is why a record is not delivered to a destination where
// another tenant holds its source system (the dead letter's reason, for
// the operator), never naming that tenant.
const notSentReason = "another tenant of this gateway stored records of this source system first and delivers them to " +
	"this destination: the identifiers minted from the source (patients, records) would be the same for both " +
	"clinics' patients there; the record is stored at the gateway but never sent here. Give the clinic's system " +
	"its own source.system name, or the destination a filter.tenants"

// notSentWarning is a warning per destination (notSent) that will not
// receive the record because another tenant holds its source system
// there.
func notSentWarning(notSent []string) []outcome.Issue {
	var issues []outcome.Issue
	for _, dest := range notSent {
		issues = append(issues, outcome.Issue{Severity: "warning", Code: "business-rule", Rule: engine.RuleSourceOtherTenant,
			Pointer: "/source/system", Expression: "source.system",
			Message: "the record is stored, but it is not delivered to the destination " + dest + ": another clinic " +
				"(tenant) of this gateway sent records from this source system before and delivers them there, and " +
				"the identifiers the gateway mints from it (patients, records) would be the same for both clinics' " +
				"patients; give this clinic's system its own source.system name (for example with the clinic's name " +
				"appended) to have its records delivered, or ask the gateway's operator"})
	}
	return issues
}

// mappingWarnings are the mapping's warnings (what the record leaves
// unknown that a clinician must know, mapping.Result.Warnings) as warning
// issues of the answer.
func mappingWarnings(ws []mapping.Violation) []outcome.Issue {
	return warningIssues(ws, "the record is stored as sent; ")
}

// warningIssues are the mapping's warnings as warning issues, each message
// after lead.
func warningIssues(ws []mapping.Violation, lead string) []outcome.Issue {
	var issues []outcome.Issue
	for _, w := range ws {
		issues = append(issues, outcome.Issue{Severity: "warning", Code: "business-rule", Rule: w.Rule,
			Pointer: w.Pointer, Expression: w.Expression, Message: lead + w.Message})
	}
	return issues
}

// warn adds issues (warnings) to the answer b, in its first entry's
// outcome.
func warn(b *fhirwire.Bundle, issues []outcome.Issue) error {
	if len(issues) == 0 || len(b.Entry) == 0 || b.Entry[0].Response == nil {
		return nil
	}
	oo := outcome.Resource(issues)
	r := b.Entry[0].Response
	if len(r.Outcome) > 0 {
		var had fhir.OperationOutcome
		if err := json.Unmarshal(r.Outcome, &had); err != nil {
			return fmt.Errorf("answer's outcome: %w", err)
		}
		oo.Issue = append(had.Issue, oo.Issue...)
	}
	raw, err := fhirwire.Marshal(oo)
	if err != nil {
		return err
	}
	r.Outcome = raw
	return nil
}

// OutboxItem is the outbox item that delivers payload, the transaction
// Bundle of version of record rec mapped as res, to dest: ordered after
// the earlier deliveries of each record identity it carries (OrderKey,
// OrderKeys: OrderKeys) and with its patient's (Patient). A replay's
// correction is enqueued the same way.
func OutboxItem(dest string, kind mapping.Kind, rec mapping.Record, res *mapping.Result, version string, payload []byte, traceID string) *store.OutboxItem {
	patient := ""
	if len(res.Entries) > 0 && res.Entries[0].ResourceType == "Patient" {
		patient = res.Entries[0].IdentifierValue
	}
	return &store.OutboxItem{
		Destination: dest, OrderKey: OrderKey(res.Source.System, kind, res.Source.RecordID),
		OrderKeys: OrderKeys(res.Source.System, kind, res.Source.RecordID, rec),
		Patient:   res.Source.System + "|" + patient, Kind: string(kind), Source: res.Source.System,
		RecordID: res.Source.RecordID, Version: version, Payload: payload, TraceID: traceID,
	}
}

// OrderKey is the outbox order key of a record: its identity (source
// system, kind, record id).
func OrderKey(system string, kind mapping.Kind, recordID string) string {
	return system + "|" + string(kind) + "|" + recordID
}

// OrderKeys are the further record identities a record of kind carries
// (docs/records.md, "Record identity"), as order keys: a session's
// infusion (the session's record id) and its nested records; an
// infusion's session. rec may be nil for a kind other than session.
func OrderKeys(system string, kind mapping.Kind, recordID string, rec mapping.Record) []string {
	switch kind {
	case mapping.KindInfusion:
		return []string{OrderKey(system, mapping.KindSession, recordID)}
	case mapping.KindSession:
		keys := []string{OrderKey(system, mapping.KindInfusion, recordID)}
		if sess, ok := rec.(*mapping.Session); ok {
			for _, n := range sess.Nested() {
				keys = append(keys, OrderKey(system, n.Kind, n.RecordID))
			}
		}
		return keys
	}
	return nil
}

// entries turns mapped entries into engine entries: typed, straight from
// the rendered resources (docs, or raws decoded when docs is nil), with
// no Bundle to parse. With a patient (the stored Patient's new version:
// identity.nextPatient) the record's Patient (entry 0) is a conditional
// update on its clinic identifier writing it, for the gateway's store
// only: the Bundle the EHRs receive keeps its conditional create
// (DECISIONS.md 7).
func (s *Service) entries(res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error, tenant string, patient map[string]any) ([]*engine.Entry, []map[string]any, error) {
	out := make([]*engine.Entry, len(res.Entries))
	written := make([]map[string]any, len(res.Entries))
	for i, e := range res.Entries {
		url, method, ifNoneExist := e.URL, e.Method.Code(), e.IfNoneExist
		var doc map[string]any
		if i == 0 && patient != nil {
			url, method, ifNoneExist = "Patient?identifier="+e.IdentifierSystem+"|"+e.IdentifierValue, "PUT", ""
			doc = patient
		} else if docs != nil {
			doc = docs[i]
		} else if raw := raws[i]; raw != nil {
			var err error
			if doc, err = engine.DecodeResource(raw); err != nil {
				return nil, nil, fmt.Errorf("mapped entry %d: %w", i, err)
			}
		}
		if own := ownURL(e, tenant, doc); own != "" {
			url = own
		}
		en, err := s.engine.NewEntry(i, method, url, e.FullURL, doc, ifNoneExist)
		if err != nil {
			return nil, nil, fmt.Errorf("mapped entry %d: %w", i, err)
		}
		en.VersionAlways() // each record version has its own versions, Provenance and delivery

		var perr error
		if checked != nil && !(i == 0 && patient != nil) {
			perr = checked[i]
		} else {
			perr = s.CheckProfile(i, doc)
		}
		if perr != nil {
			return nil, nil, fmt.Errorf("mapped entry %d: %w", i, perr)
		}
		out[i], written[i] = en, doc
	}
	return out, written, nil
}

// ownURL gives e's deterministic id (PUT or DELETE Type/id) its form in
// tenant's namespace and returns the entry's URL with it, setting it in
// doc, the resource of a PUT (nil for a DELETE); "" when e has no such id
// or tenant is the default one (the mapping's id stays). A withdrawn
// AdverseEvent's DELETE named the mapping's id, which deleted nothing in a
// named tenant. A conditional update (PUT Type?criteria, as a record
// stored before is mapped) has no id: its criteria are not cut at the
// first "/", which is in the identifier system they name (that made the
// criteria of every update in a named tenant find nothing:
// conditional-criteria-unmatched).
func ownURL(e mapping.Entry, tenant string, doc map[string]any) string {
	if m := e.Method.Code(); tenant == "" || m != "PUT" && m != "DELETE" || strings.Contains(e.URL, "?") {
		return ""
	}
	typ, id, ok := strings.Cut(e.URL, "/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return ""
	}
	if doc != nil {
		doc["id"] = tenantID(tenant, id)
	}
	return typ + "/" + tenantID(tenant, id)
}

// checkProfiles checks docs, res's rendered resources, against the
// profiles they claim, as entries would (each with its tenant's id): the
// error of each, nil for none; nil when docs is nil.
func (s *Service) checkProfiles(res *mapping.Result, docs []map[string]any, tenant string) []error {
	if docs == nil {
		return nil
	}
	out := make([]error, len(docs))
	for i, doc := range docs {
		if doc != nil {
			ownURL(res.Entries[i], tenant, doc)
		}
		out[i] = s.CheckProfile(i, doc)
	}
	return out
}

// CheckProfile checks doc, the resource of entry i, against the profiles
// it claims (nil for a nil doc). A profile the gateway's own output breaks
// is the mapping's defect, not the record's (mappingDefect: rule
// RuleMappingNonconformant, then the profile's). Replay checks what it
// would write with it too.
func (s *Service) CheckProfile(i int, doc map[string]any) error {
	if doc == nil {
		return nil
	}
	if err := s.p.profiles(doc, fmt.Sprintf("Bundle.entry[%d].resource", i)); err != nil {
		return mappingDefect(err)
	}
	return nil
}

// ResourceID is the id, in tenant's namespace, of a resource the mappings
// give the deterministic id id (as ingest stores it).
func ResourceID(tenant, id string) string { return tenantID(tenant, id) }

// tenantID is the id, in tenant's namespace, of a resource the mappings
// give a deterministic id: tenants sending the same record ids never
// collide (the default tenant keeps the mapping's id). The EHR still gets
// the mapping's own id.
func tenantID(tenant, id string) string {
	if tenant == "" {
		return id
	}
	h := sha256.Sum256([]byte(tenant + "|" + id))
	h[6], h[8] = (h[6]&0x0f)|0x50, (h[8]&0x3f)|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

// contentHash is the SHA-256 of the record's canonical JSON (keys sorted,
// insignificant white space removed), so a re-sent record with other
// formatting is recognised as the same.
func contentHash(body []byte) (string, error) {
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return "", fmt.Errorf("canonicalise record: %w", err)
	}
	canon, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("canonicalise record: %w", err)
	}
	sum := sha256.Sum256(canon)
	return hex.EncodeToString(sum[:]), nil
}
