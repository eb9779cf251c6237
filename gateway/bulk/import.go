package bulk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
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
}

// ImportCounts counts an import's records.
type ImportCounts struct {
	// Records were read; Stored passed every check and are stored (or
	// were already: a record version sent again changes nothing);
	// Rejected broke a rule and changed nothing.
	Records, Stored, Rejected int64
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
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	type item struct {
		seq int64
		rec Record
		err error
	}
	workers := s.cfg.ImportWorkers
	if opts.Workers > 0 {
		workers = opts.Workers
	}
	todo := make(chan item, workers)
	results := make(chan item, 2*workers)
	var wg sync.WaitGroup
	var readErr error
	wg.Go(func() { // the reader
		defer close(todo)
		var seq, skipped int64
		for {
			rec, err := src.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				readErr = fmt.Errorf("read import input: %w", err)
				cancel(readErr)
				return
			}
			if skipped < opts.Skip {
				skipped++
				continue
			}
			select {
			case todo <- item{seq: seq, rec: rec}:
				seq++
			case <-ctx.Done():
				return
			}
		}
	})
	var ingesters sync.WaitGroup
	for range workers {
		ingesters.Go(func() {
			for it := range todo {
				if it.rec.Err == nil {
					rsc := auditlog.NewScope("ingest", sc.Principal)
					rsc.Addr, rsc.TraceID = sc.Addr, sc.TraceID
					rsc.RequestID = fmt.Sprintf("%s:%s", opts.RunID, where(it.rec))
					_, it.err = svc.Ingest(ctx, rsc, opts.Kind, it.rec.Body, false, engine.Answer{})
				} else {
					it.err = it.rec.Err
				}
				it.rec.Body = nil
				select {
				case results <- it:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() { ingesters.Wait(); close(results) }()

	// Report in input order: results come back in any order, at most a
	// few ahead of the next one due.
	pending := map[int64]item{}
	var next int64
	var stop error
	for it := range results {
		if stop != nil {
			continue // drain
		}
		pending[it.seq] = it
		for {
			cur, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if err := s.account(&counts, cur.rec, cur.err, opts); err != nil {
				stop = err
				cancel(err)
				break
			}
		}
	}
	wg.Wait()
	switch {
	case stop != nil:
		return counts, stop
	case readErr != nil:
		return counts, readErr
	case ctx.Err() != nil:
		return counts, context.Cause(ctx)
	}
	return counts, nil
}

// account counts one record's outcome and reports a rejection; it returns
// the error that must stop the import.
func (s *Service) account(counts *ImportCounts, rec Record, err error, opts ImportOptions) error {
	var kind outcome.Kind
	var issues []outcome.Issue
	if err != nil {
		kind, issues = outcome.From(err)
		if kind == outcome.Unavailable || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return err // the record is not done: a run again does it
		}
	}
	counts.Records++
	if err == nil {
		counts.Stored++
		if opts.Done != nil {
			opts.Done(*counts)
		}
		return nil
	}
	counts.Rejected++
	rj := Rejection{Line: rec.Line, File: rec.File, Status: kind.HTTPStatus(), Issues: make([]RejectionIssue, 0, len(issues))}
	for _, i := range issues {
		rj.Issues = append(rj.Issues, RejectionIssue{Rule: i.Rule, Pointer: i.Pointer, Expression: i.Expression})
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
