package ingest

import (
	"context"
	"fmt"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
	"go.opentelemetry.io/otel/attribute"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/cpuslots"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry/stage"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// RuleMappingNonconformant is the rule of a record refused because the
// gateway's own mapping of it breaks a profile its resources claim: a
// defect of the gateway (its mapping), not of the record.
const RuleMappingNonconformant = "mapping-output-nonconformant"

// Verdict is what ingest makes of a record before it reads the store:
// the transaction Bundle it would write for a first version (or, with
// update, for a newer version of a stored record), and the warnings the
// record alone raises (a stored record's answer may carry more: those
// found against the stored records).
type Verdict struct {
	Result *mapping.Result
	// Bundle is the mapped transaction Bundle, as the EHRs would get it.
	Bundle []byte
	// Warnings are the mapping's warnings (mapping.Result.Warnings) as
	// warning issues.
	Warnings []outcome.Issue
}

// DryRun gives the verdict ingest gives a record of kind (body) of tenant
// without storing it or reading the store: the JSON Schema, the clinical
// rules, the clock (checkNotFuture), the mapping with the tenant's
// options (update: as a newer version of a stored record), the R4
// structure and the profiles of the mapped resources. It is the one
// function behind POST /ingest/{kind}?dryRun=true, the CLI's map and the
// console's playground, and Ingest runs the same stages before it stores.
// Client mistakes come back classified (package outcome); a profile the
// mapped resources break is an Internal error naming the rule and the
// entry (RuleMappingNonconformant).
func (s *Service) DryRun(ctx context.Context, tenant string, kind mapping.Kind, body []byte, update bool) (*Verdict, error) {
	opts := s.Options(tenant)
	opts.Update = update
	pr, err := s.prepare(ctx, kind, body, opts, tenant, nil, nil)
	if err != nil {
		return nil, err
	}
	return pr.answer()
}

// prepared is a record through the stages that need no store.
type prepared struct {
	kind mapping.Kind
	rec  mapping.Record
	opts mapping.Options
	res  *mapping.Result
	raws [][]byte
	docs []map[string]any
	// checked is the profile check of each of docs (checkProfiles).
	checked []error
	// spec is docs' new resources rendered ahead of the write transaction
	// (speculate), nil for none.
	spec *engine.Speculation
}

// prepare runs a record through the stages ingest runs before it reads the
// store: the schema, the clinical rules and the clock, the mapping with
// opts, the R4 structure and the profiles (whose result, checked, the
// caller reports: a dry run at once, a store where it would have run it).
// named, when not nil, is told the decoded record before its clinical
// rules are checked (the audit scope names it, refused or not). It runs
// in a CPU slot (package cpuslots), which leaves the write lane a core.
// storing, when not nil, is the scope of the request that stores the
// record: its new resources are then rendered ahead too (speculate).
func (s *Service) prepare(ctx context.Context, kind mapping.Kind, body []byte, opts mapping.Options, tenant string,
	named func(mapping.Record), storing *auditlog.Scope) (*prepared, error) {
	if !KnownKind(kind) {
		return nil, ErrKindUnknown
	}
	var pr *prepared
	err := cpuslots.Run(ctx, len(body), func() error {
		var err error
		if pr, err = s.prepareNow(ctx, kind, body, opts, tenant, named); err == nil && storing != nil {
			pr.spec = s.speculate(ctx, storing, pr, tenant)
		}
		return err
	})
	return pr, err
}

// speculate renders pr's new resources ahead of the write transaction
// (engine.Speculate), which puts them when they fit: its Patient's
// criteria are searched first, as the other resources reference it. nil
// when the profiles refused the record, or nothing could be guessed.
func (s *Service) speculate(ctx context.Context, sc *auditlog.Scope, pr *prepared, tenant string) *engine.Speculation {
	if s.engine == nil || pr.docs == nil {
		return nil
	}
	// The entries storeTx makes of a new record's documents (entries),
	// without changing the documents: storeTx reads them before it makes
	// its entries, and nothing may change them until the transaction
	// renders them (Speculation.Apply).
	entries := make([]*engine.Entry, len(pr.res.Entries))
	var patients []int
	for i, e := range pr.res.Entries {
		if pr.checked[i] != nil {
			return nil
		}
		url := e.URL
		if own := ownURL(e, tenant, nil); own != "" {
			url = own
		}
		en, err := s.engine.NewEntry(i, e.Method.Code(), url, e.FullURL, pr.docs[i], e.IfNoneExist)
		if err != nil {
			return nil
		}
		entries[i] = en
		if e.ResourceType == "Patient" {
			patients = append(patients, i)
		}
	}
	return s.engine.Speculate(ctx, sc, entries, patients)
}

// prepareNow is prepare once a CPU slot is free.
func (s *Service) prepareNow(ctx context.Context, kind mapping.Kind, body []byte, opts mapping.Options, tenant string,
	named func(mapping.Record)) (*prepared, error) {
	pr := &prepared{kind: kind, opts: opts}
	attrs := []attribute.KeyValue{attribute.String("ingest.kind", string(kind)), attribute.String("mapping.version", mapping.Version)}
	err := stage.Run(ctx, s.tracer, "ingest.schema", func(context.Context) error {
		return s.p.ValidateRecord(kind, body)
	}, attrs...)
	if err == nil {
		err = stage.Run(ctx, s.tracer, "ingest.map", func(context.Context) error {
			var err error
			if pr.rec, err = Decode(kind, body); err != nil {
				return err
			}
			if named != nil {
				named(pr.rec)
			}
			if err := checkNotFuture(pr.rec, s.now()); err != nil {
				return err
			}
			pr.res, err = mapping.Map(pr.rec, opts)
			return err
		}, attrs...)
	}
	if err == nil {
		err = stage.Run(ctx, s.tracer, "fhir.validate", func(context.Context) error {
			var err error
			if pr.raws, pr.docs, err = s.p.MarshalDecoded(pr.res); err != nil {
				return err
			}
			pr.checked = s.checkProfiles(pr.res, pr.docs, tenant)
			return nil
		}, append(attrs, attribute.Int("fhir.entry_count", len(pr.res.Entries)))...)
	}
	if err != nil {
		return nil, err
	}
	return pr, nil
}

// answer is the verdict of a prepared record not stored: its profile
// check's first failure, or its transaction Bundle and its warnings.
func (pr *prepared) answer() (*Verdict, error) {
	for i, err := range pr.checked {
		if err != nil {
			return nil, fmt.Errorf("mapped entry %d: %w", i, err)
		}
	}
	out, err := Transaction(pr.res, pr.raws)
	if err != nil {
		return nil, fmt.Errorf("render %s bundle: %w", pr.kind, err)
	}
	return &Verdict{Result: pr.res, Bundle: out, Warnings: dryRunWarnings(pr.res.Warnings)}, nil
}

// dryRunWarnings are the mapping's warnings of a record not stored, as
// warning issues.
func dryRunWarnings(ws []mapping.Violation) []outcome.Issue {
	return warningIssues(ws, "the record would be stored as sent; ")
}

// dryRunOutcome is the OperationOutcome a dry run answers instead of the
// Bundle when asked to (Prefer: return=OperationOutcome): that the record
// is valid and what it maps to, then its warnings.
func dryRunOutcome(v *Verdict) fhir.OperationOutcome {
	oo := outcome.Information(fmt.Sprintf("the record is valid and maps to a transaction Bundle of %d entries; "+
		"nothing was stored (a dry run). A stored record's answer may carry more warnings: those found against the "+
		"records already stored", len(v.Result.Entries)))
	oo.Issue = append(oo.Issue, outcome.Resource(v.Warnings).Issue...)
	return oo
}

// mappingDefect turns a profile the gateway's own output breaks (err, from
// the profile check of a mapped resource) into the gateway's failure:
// Internal (HTTP 500), never blaming the record, whose issues name the
// rule and where in the mapped Bundle it broke (rule ids and FHIRPaths of
// the gateway's own output, never a value), led by an issue of
// RuleMappingNonconformant that says what to do.
func mappingDefect(err error) error {
	_, issues := outcome.From(err)
	first, expr := "?", ""
	if len(issues) > 0 {
		first, expr = fmt.Sprintf("rule %s at %s", issues[0].Rule, issues[0].Expression), issues[0].Expression
	}
	out := []outcome.Issue{{Severity: "fatal", Code: "exception", Rule: RuleMappingNonconformant, Expression: expr,
		Message: fmt.Sprintf("the mapping produced a resource its profile refuses (%s): this is a defect of the "+
			"gateway's mapping %s, not of the record; nothing was stored. Report it to the gateway's mapping "+
			"developers (the rule and where are below); the record is accepted once the mapping is fixed",
			first, mapping.Version)}}
	for _, is := range issues {
		is.Severity, is.Code = "error", "exception"
		is.Message = fmt.Sprintf("the mapping produced a resource its profile refuses: rule %s at %s: %s",
			is.Rule, is.Expression, is.Message)
		out = append(out, is)
	}
	return &outcome.Error{Kind: outcome.Internal, Issues: out}
}
