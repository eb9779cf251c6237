package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/ordered"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

// ImportOptions configure one import.
type ImportOptions struct {
	Kind mapping.Kind
	// Deliver enqueues the stored records for the delivery destinations,
	// as the API does; without it an import loads history the EHRs are
	// not sent.
	Deliver bool
	// Skip passes over the first Skip records (a resumed job did them).
	Skip int64
	// RunID names the import in its AuditEvents' request ids
	// ("<RunID>:<line or file>").
	RunID string
	// Workers is how many records are ingested at once (0: the
	// service's ImportWorkers).
	Workers int
	// Done is called, from one goroutine and in input order, after each
	// record with the counts so far, and Rejected with each rejected
	// record before that; an error of Rejected stops the import.
	Done     func(ImportCounts)
	Rejected func(Rejection) error
	// Stop, when it closes, stops the import at a record boundary: no
	// record is started after that (not those read ahead either), the
	// records being stored complete and are counted, and Import returns
	// ErrStopped with the counts of every record it stored or rejected.
	Stop <-chan struct{}
	// OwnFrom and OwnTo, when not zero, bound when an earlier run of this
	// import (a job resumed after its runner died, before it saved its
	// counts) stored records: a record version received before, first
	// received in [OwnFrom, OwnTo), counts as stored, not as already
	// stored. (A record repeated in the input within that earlier run's
	// unsaved records counts as stored twice.)
	OwnFrom, OwnTo time.Time
}

// ErrStopped is returned by Import when ImportOptions.Stop closed before
// every record was done.
var ErrStopped = ordered.ErrStopped

// ImportCounts counts an import's records.
type ImportCounts struct {
	// Records were read; Stored passed every check and were stored;
	// AlreadyStored were stored before (a record version sent again:
	// nothing written); Rejected broke a rule and changed nothing.
	Records, Stored, AlreadyStored, Rejected int64
	// Line is the input line of the last record done (0 for records of
	// files in an archive).
	Line int64 `json:",omitempty"`
}

// Rejection is one rejected record of an import report: where it is and
// which rules it broke where, never a value of it.
type Rejection struct {
	Line   int64            `json:"line,omitempty"`
	File   string           `json:"file,omitempty"`
	Status int              `json:"status"`
	Issues []RejectionIssue `json:"issues"`
}

// RejectionIssue is one broken rule of a Rejection.
type RejectionIssue struct {
	Rule       string `json:"rule"`
	Pointer    string `json:"pointer,omitempty"`
	Expression string `json:"expression,omitempty"`
	// Message is said only of a record of another kind
	// (schema.kind-mismatch: the kind it is, and how to send it), which
	// quotes nothing of the record; other issues are told by rule id.
	Message string `json:"message,omitempty"`
}

// OtherKind returns what a Rejection's first issue says of the kind the
// record is when it is a valid record of another kind
// (schema.kind-mismatch), "" otherwise.
func (r Rejection) OtherKind() string {
	if len(r.Issues) > 0 && r.Issues[0].Rule == schemas.RuleKindMismatch {
		return r.Issues[0].Message
	}
	return ""
}

// ErrKindUnknown is an import of a kind that does not exist.
var ErrKindUnknown = ingest.ErrKindUnknown

// Import ingests src's records of one kind as sc's caller, each through the
// ingest service exactly as the API would (schema, rules, mapping, ledger,
// Provenance and an AuditEvent per record, in one transaction per record),
// several at once, and reports them in input order. A record that breaks a
// rule is rejected and changes nothing; the rest go on. It returns the
// counts when src is exhausted, or with the error that stopped it: the
// database unavailable (nothing after the records counted is stored, and a
// run again continues: records already stored are recognised by the
// ledger), ctx ended, src failed or Rejected refused.
func (s *Service) Import(ctx context.Context, sc *auditlog.Scope, src Source, opts ImportOptions) (ImportCounts, error) {
	var counts ImportCounts
	if !ingest.KnownKind(opts.Kind) {
		return counts, ErrKindUnknown
	}
	svc := s.cfg.Ingest
	if !opts.Deliver {
		svc = svc.WithoutDelivery()
	}
	workers := s.cfg.ImportWorkers
	if opts.Workers > 0 {
		workers = opts.Workers
	}
	type result struct {
		rec   Record
		again bool
		err   error
	}
	err := ordered.RunUntil(ctx, opts.Stop, workers, func(yield func(Record) bool) error {
		for skipped := int64(0); ; {
			rec, err := src.Next()
			switch {
			case err == io.EOF:
				return nil
			case err != nil:
				return fmt.Errorf("read import input: %w", err)
			case skipped < opts.Skip:
				skipped++
			case !yield(rec):
				return nil
			}
		}
	}, func(ctx context.Context, rec Record) result {
		rsc := sc.Sub("ingest", sc.Principal)
		if rsc.TraceID == "" {
			// Each record a trace of its own, as each request to the API
			// has: its AuditEvent, Provenance and deliveries carry it (a
			// store id has the form of the trace ids the gateway mints).
			rsc.TraceID = store.NewID()
		}
		rsc.RequestID = fmt.Sprintf("%s:%s", opts.RunID, where(rec))
		if rec.Err != nil {
			// A record that could not be read is refused as a body POST
			// /ingest cannot read is: audited before it counts as done.
			if err := svc.Refused(rsc, rec.Err); err != nil {
				return result{rec: rec, err: err}
			}
			return result{rec: rec, err: rec.Err}
		}
		received, err := svc.Import(ctx, rsc, opts.Kind, rec.Body)
		rec.Body = nil
		own := !opts.OwnTo.IsZero() && !received.Before(opts.OwnFrom) && received.Before(opts.OwnTo)
		return result{rec: rec, again: !received.IsZero() && !own, err: err}
	}, func(r result) error {
		return s.account(&counts, r.rec, r.again, r.err, opts)
	})
	return counts, err
}

// account counts one record's outcome (again: a version stored before) and reports a rejection; it returns
// the error that must stop the import.
func (s *Service) account(counts *ImportCounts, rec Record, again bool, err error, opts ImportOptions) error {
	var kind outcome.Kind
	var issues []outcome.Issue
	if err != nil {
		kind, issues = outcome.From(err)
		if kind == outcome.Unavailable || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err // the record is not done: a run again does it
		}
	}
	counts.Records++
	counts.Line = max(counts.Line, rec.Line)
	if err == nil {
		if again {
			counts.AlreadyStored++
		} else {
			counts.Stored++
		}
		if opts.Done != nil {
			opts.Done(*counts)
		}
		return nil
	}
	counts.Rejected++
	rj := Rejection{Line: rec.Line, File: rec.File, Status: kind.HTTPStatus(), Issues: make([]RejectionIssue, 0, len(issues))}
	for _, i := range issues {
		ri := RejectionIssue{Rule: i.Rule, Pointer: i.Pointer, Expression: i.Expression}
		if i.Rule == schemas.RuleKindMismatch {
			ri.Message = i.Message // a first-hour review: 400 rejected, the report never said they were of another kind
		}
		rj.Issues = append(rj.Issues, ri)
	}
	if opts.Rejected != nil {
		if err := opts.Rejected(rj); err != nil {
			return err
		}
	}
	if opts.Done != nil {
		opts.Done(*counts)
	}
	return nil
}

// where names a record in a request id: its line or file.
func where(r Record) string {
	if r.File != "" {
		return r.File
	}
	return fmt.Sprint(r.Line)
}
