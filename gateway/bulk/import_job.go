package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// An asynchronous import (POST /ingest/{kind}/$import) is a job whose
// input, the NDJSON body, is file 0 of the job; its report of rejected
// records (NDJSON, one Rejection a line) is file 1.
const (
	importInput  = 0
	importReport = 1
)

// importRequest is what an import job was asked.
type importRequest struct {
	Kind    mapping.Kind `json:"kind"`
	Deliver bool         `json:"deliver"`
	Scopes  string       `json:"scopes"`
	Base    string       `json:"base"`
	Addr    string       `json:"addr,omitempty"`
}

// importCheckpoint is where an import got to: its counts (Records done,
// in input order) and its report.
type importCheckpoint struct {
	Counts ImportCounts   `json:"counts"`
	Report jobs.FileParts `json:"report"`
	// Mappings are the mapping versions of its runs, in order, each once
	// (ImportResult.MappingVersions).
	Mappings []string `json:"mappings,omitempty"`
}

// unrecordedMapping stands for the mapping of a run of a release that did
// not record it in the checkpoint.
const unrecordedMapping = "unrecorded"

// ImportResult is a finished import job's result.
type ImportResult struct {
	Kind    mapping.Kind `json:"kind"`
	Records int64        `json:"records"`
	Stored  int64        `json:"stored"`
	// AlreadyStored were stored before (the same record version again:
	// nothing written).
	AlreadyStored int64 `json:"alreadyStored"`
	Rejected      int64 `json:"rejected"`
	// Report is the URL of the report of rejected records (none when no
	// record was rejected, or the import was cancelled: its files are
	// deleted).
	Report string `json:"report,omitempty"`
	// Cancelled is set when the client cancelled the import: it stopped
	// after LastLine, the input line of the last record it stored or
	// rejected (the records counted here are every record it stored, no
	// record after them was), and Summary says so in words.
	Cancelled bool   `json:"cancelled,omitempty"`
	LastLine  int64  `json:"lastLine,omitempty"`
	Summary   string `json:"summary,omitempty"`
	// MappingVersions are the mappings that stored its records, in the
	// order its runs used them, when more than one did (an import cut off
	// and resumed by a gateway of another release, p38 F4: it continues,
	// and says so here and in Summary; each record's ledger entry names
	// its own). "unrecorded" is a run of a release that did not record it.
	MappingVersions []string `json:"mappingVersions,omitempty"`
}

// errNotNDJSON refuses a body that is one JSON document (Shape), as the
// import command does, before any record is read.
var errNotNDJSON = map[string]error{
	"array": outcome.New(outcome.Invalid, "invalid", "import-not-ndjson", "the body looks like one JSON array, not NDJSON "+
		"(one record per line): put one record per line, e.g. jq -c '.[]' FILE > records.ndjson; nothing was imported"),
	"object": outcome.New(outcome.Invalid, "invalid", "import-not-ndjson", "the body looks like one JSON document spread "+
		"over several lines, not NDJSON (one record per line): compact each record to one line, e.g. "+
		"jq -c . FILE > records.ndjson; nothing was imported"),
}

var errImportEmpty = outcome.New(outcome.Invalid, "invalid", "import-empty", "the body holds no records: send one native record per line (NDJSON)")

// SubmitImport stores body, NDJSON native records of kind (at most limit
// bytes), as the input of an import job for sc's caller and queues it;
// base is where the gateway is reached, for the report's URL. A body
// beyond limit is TooLarge, an empty one Invalid, and the job and what was
// uploaded are deleted then (no job is left for jobs list to show); a read
// error of body is returned as it is.
func (s *Service) SubmitImport(ctx context.Context, sc *auditlog.Scope, kind mapping.Kind, deliver bool, body io.Reader, limit int64, base string) (*store.Job, error) {
	if !ingest.KnownKind(kind) {
		return nil, ErrKindUnknown
	}
	req, err := json.Marshal(importRequest{Kind: kind, Deliver: deliver, Scopes: sc.Principal.Scopes.String(), Base: base, Addr: sc.Addr})
	if err != nil {
		return nil, err
	}
	j, err := s.cfg.Jobs.Submit(ctx, sc, KindImport, req, true)
	if err != nil {
		return nil, err
	}
	lines, err := s.upload(ctx, j.ID, body, limit)
	if err == nil && lines == 0 {
		err = errImportEmpty
	}
	if err != nil {
		if derr := s.cfg.Jobs.Drop(context.WithoutCancel(ctx), j.ID); derr != nil && !errors.Is(derr, store.ErrNotFound) {
			err = errors.Join(err, derr) // left, it expires as an abandoned upload (Submit)
		}
		return nil, err
	}
	if err := s.cfg.Jobs.Queue(ctx, j.ID, lines); err != nil {
		return nil, err
	}
	sc.Description = fmt.Sprintf("bulk import of %d %s records queued: job %s", lines, kind, j.ID)
	return j, nil
}

// upload stores body as file 0 of job id in parts, and counts its records.
func (s *Service) upload(ctx context.Context, id string, body io.Reader, limit int64) (int64, error) {
	var total int64
	var lines lineCounter
	part := 0
	buf := make([]byte, s.cfg.PartBytes)
	for {
		n, err := io.ReadFull(body, buf)
		if n > 0 {
			if part == 0 {
				if err := errNotNDJSON[Shape(buf[:n])]; err != nil {
					return 0, err
				}
			}
			total += int64(n)
			if total > limit {
				return 0, outcome.New(outcome.TooLarge, "too-costly", "import-too-large",
					fmt.Sprintf("the import is larger than %d bytes; split it, or use the import command", limit))
			}
			lines.Write(buf[:n])
			if perr := s.cfg.Jobs.Upload(ctx, id, []store.JobPart{{File: importInput, Part: part, Data: buf[:n]}}); perr != nil {
				return 0, perr
			}
			part++
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			return lines.Lines(), nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// saveEvery is the longest an import job goes without saving its counts
// (and its report) while records are done.
const saveEvery = time.Second

// runImport is the import jobs' handler: it ingests the uploaded records
// from where the checkpoint says, saving the counts and the report every
// 200 records, or every saveEvery.
func (s *Service) runImport(ctx context.Context, run *jobs.Run) ([]byte, error) {
	var req importRequest
	if err := json.Unmarshal(run.Job.Request, &req); err != nil {
		return nil, fmt.Errorf("import request: %w", err)
	}
	cp := importCheckpoint{Report: jobs.FileParts{File: importReport}}
	if run.Job.Checkpoint != nil {
		if err := json.Unmarshal(run.Job.Checkpoint, &cp); err != nil {
			return nil, fmt.Errorf("import checkpoint: %w", err)
		}
	}
	// A run under another mapping than the last one's (the gateway was
	// upgraded while the import ran) continues: the result says so.
	if len(cp.Mappings) == 0 && cp.Counts.Records > 0 {
		cp.Mappings = []string{unrecordedMapping}
	}
	if n := len(cp.Mappings); n == 0 || cp.Mappings[n-1] != mapping.Version {
		cp.Mappings = append(cp.Mappings, mapping.Version)
	}
	total := run.Job.Total
	sc := jobs.Scope(run.Job, "ingest", req.Scopes)
	sc.Addr = req.Addr

	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feed := make(chan struct{})
	go func() {
		defer close(feed)
		err := run.File(ctx, importInput, func(p []byte) error { _, err := pw.Write(p); return err })
		pw.CloseWithError(err) // nil: EOF
	}()
	defer func() { pr.Close(); <-feed }()

	// A cancel stops the import after the records being stored (never in
	// the middle of one's transaction); its counts are then its result.
	stop := run.Cancelled()
	base := cp.Counts
	// save saves the counts and the report's new parts; with drop, the
	// last save, it deletes the input too: the records posted (PHI) are
	// kept only while the job needs them (a run resumed after it finds
	// every record done).
	save := func(drop ...int) error {
		parts := cp.Report.Take()
		raw, err := json.Marshal(cp)
		if err != nil {
			return err
		}
		return run.SaveDropping(ctx, raw, parts, drop...)
	}
	// A run that resumes the job after its runner died (a claim since the
	// last checkpoint before this one) finds the records that runner
	// stored after it in the ledger: those are this job's own, stored,
	// not records the client sent that were stored before the job.
	var ownFrom, ownTo time.Time
	if run.Job.Attempts > 1 {
		ownFrom, ownTo = run.Job.Created, s.cfg.Now()
	}
	var since int64
	lastSave := s.cfg.Now()
	var saveErr error
	_, err := s.Import(ctx, sc, NDJSON(pr, s.cfg.MaxRecordBytes), ImportOptions{
		Kind: req.Kind, Deliver: req.Deliver, Skip: base.Records, RunID: run.Job.ID, Stop: stop,
		OwnFrom: ownFrom, OwnTo: ownTo,
		Rejected: func(r Rejection) error { return cp.Report.WriteLine(r) },
		Done: func(c ImportCounts) {
			cp.Counts = ImportCounts{Records: base.Records + c.Records, Stored: base.Stored + c.Stored,
				AlreadyStored: base.AlreadyStored + c.AlreadyStored, Rejected: base.Rejected + c.Rejected,
				Line: max(base.Line, c.Line)}
			run.Progress(cp.Counts.Records, total)
			// Every 200 records, or a second after the last save: a job's
			// status shows its progress as saved, and an import of
			// slower records (sessions) showed 0% for its first 200 (a
			// first-hour review).
			if since++; since >= 200 || cp.Report.Len() >= s.cfg.PartBytes || s.cfg.Now().Sub(lastSave) >= saveEvery {
				since, lastSave = 0, s.cfg.Now()
				if err := save(); err != nil && !errors.Is(err, jobs.ErrCancelled) {
					saveErr = err // lost, or the database failed: the import stops
					cancel()
				} // cancelled: stop closed, the import stops at the next record
			}
		},
	})
	select {
	case <-stop:
		if saveErr == nil && (err == nil || errors.Is(err, ErrStopped)) {
			res := cancelledResult(req.Kind, cp.Counts, total)
			mappingsOf(&res, cp.Mappings)
			return json.Marshal(res)
		}
	default:
	}
	if saveErr != nil {
		return nil, saveErr
	}
	if err != nil {
		return nil, err
	}
	if err := save(importInput); err != nil {
		return nil, err
	}
	res := ImportResult{Kind: req.Kind, Records: cp.Counts.Records, Stored: cp.Counts.Stored,
		AlreadyStored: cp.Counts.AlreadyStored, Rejected: cp.Counts.Rejected}
	if res.Rejected > 0 {
		res.Report = jobs.FileURL(req.Base, run.Job.ID, importReport)
	}
	mappingsOf(&res, cp.Mappings)
	return json.Marshal(res)
}

// cancelledResult is the final state of an import cancelled after counts
// (of total records, -1 unknown).
func cancelledResult(kind mapping.Kind, c ImportCounts, total int64) ImportResult {
	of := ""
	if total >= 0 {
		of = fmt.Sprintf(" of %d", total)
	}
	at := ""
	if c.Line > 0 {
		at = fmt.Sprintf(" (up to line %d)", c.Line)
	}
	return ImportResult{Kind: kind, Records: c.Records, Stored: c.Stored, AlreadyStored: c.AlreadyStored,
		Rejected: c.Rejected, Cancelled: true, LastLine: c.Line,
		Summary: fmt.Sprintf("the import stopped after %d%s records%s: %d stored, %d already stored, %d rejected; "+
			"no record after those was imported", c.Records, of, at, c.Stored, c.AlreadyStored, c.Rejected)}
}

// mappingsOf sets res's MappingVersions, and says so in its Summary, when
// more than one mapping stored its records.
func mappingsOf(res *ImportResult, mappings []string) {
	if len(mappings) < 2 {
		return
	}
	res.MappingVersions = mappings
	note := fmt.Sprintf("the import was resumed by a gateway of another release: its records were stored by mappings %s "+
		"in turn (each record's lineage names its own); replay them to bring them to mapping %s",
		strings.Join(mappings, ", then "), mappings[len(mappings)-1])
	if res.Summary == "" {
		res.Summary = note
	} else {
		res.Summary += "; " + note
	}
}
