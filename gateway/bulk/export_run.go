package bulk

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// exportPage is how many resources one store read returns.
const exportPage = 1000

// exportCheckpoint is where an export got to: everything before it is in
// the job's committed file parts. The parts and the checkpoint are saved
// together, so a resumed export starts exactly after the last resource
// saved.
type exportCheckpoint struct {
	// Type is the index in the request's Types of the type being
	// exported; from len(Types) on, of the type whose deletions are
	// listed (Type - len(Types)), in an export with _since.
	Type  int    `json:"type"`
	After string `json:"after"` // the last id of that type saved
	// File is the number of the open file (0: none), Part its next part
	// and Count its resources; NextFile the number of the next file.
	File, Part, Count, NextFile int
	// PatientsPart is the next part of the open file's companion file
	// (jobs.PatientsFile), which has a part only where the file's part
	// names a patient first.
	PatientsPart int `json:"patientsPart,omitempty"`
	// Files are the closed files.
	Files []outputFile `json:"files"`
	Done  int64        `json:"done"`
	// Notes is the number of the error file naming the parameters
	// Prefer: handling=lenient ignored, once saved (0: none yet).
	Notes int `json:"notes,omitempty"`
}

// outputFile is one NDJSON file of an export.
type outputFile struct {
	// Type is the resource type of the file's resources (of a deleted
	// file, of the resources its Bundles delete; of an error file,
	// OperationOutcome).
	Type  string `json:"type"`
	N     int    `json:"n"`
	Count int    `json:"count"`
	// Part is the manifest's part the file is in: "" output, "deleted"
	// or "error".
	Part string `json:"part,omitempty"`
}

// The manifest parts of a file other than output.
const (
	partDeleted = "deleted"
	partError   = "error"
)

// Manifest is the Bulk Data complete-status body.
type Manifest struct {
	TransactionTime     string         `json:"transactionTime"`
	Request             string         `json:"request"`
	RequiresAccessToken bool           `json:"requiresAccessToken"`
	Output              []ManifestFile `json:"output"`
	// Deleted lists, for an export with _since, the files of the
	// resources deleted since then (Bulk Data IG v2): each line a Bundle
	// of type transaction whose entry DELETEs one resource: [] when
	// nothing was deleted (omitzero keeps an empty list, omitempty did
	// not), absent (nil) without _since.
	Deleted []ManifestFile `json:"deleted,omitzero"`
	Error   []ManifestFile `json:"error"`
}

// ManifestFile is one file of a Manifest.
type ManifestFile struct {
	Type  string `json:"type"`
	URL   string `json:"url"`
	Count int    `json:"count,omitempty"`
}

// exporter is one run of an export job.
type exporter struct {
	s   *Service
	run *jobs.Run
	req *exportRequest
	sc  *auditlog.Scope
	cp  exportCheckpoint
	buf []byte
	// seen are the patients of the open file named so far, patients those
	// not yet saved (its companion file's next part: jobs.PatientsFile).
	seen     map[string]bool
	patients []byte
	// confiner keeps a Group export to its members' data (nil at the
	// other levels).
	confiner *confiner
	// targets caches the patients the resources Provenances target are
	// about, by "Type/id" (provenancePatients).
	targets map[string][]string
}

// runExport is the export jobs' handler.
func (s *Service) runExport(ctx context.Context, run *jobs.Run) ([]byte, error) {
	var req exportRequest
	if err := json.Unmarshal(run.Job.Request, &req); err != nil {
		return nil, fmt.Errorf("export request: %w", err)
	}
	x := &exporter{s: s, run: run, req: &req, sc: jobs.Scope(run.Job, "", req.Scopes), cp: exportCheckpoint{NextFile: 1}}
	if req.Level == LevelGroup {
		x.confiner = newConfiner(s.cfg.Store, req.Members)
	}
	if run.Job.Checkpoint != nil {
		if err := json.Unmarshal(run.Job.Checkpoint, &x.cp); err != nil {
			return nil, fmt.Errorf("export checkpoint: %w", err)
		}
	}
	phases := len(req.Types)
	if !req.Since.IsZero() {
		phases *= 2 // then the deletions of each type
	}
	for ; x.cp.Type < phases; x.cp.Type++ {
		var err error
		if x.cp.Type < len(req.Types) {
			err = x.exportType(ctx, req.Types[x.cp.Type])
		} else {
			err = x.exportDeleted(ctx, req.Types[x.cp.Type-len(req.Types)])
		}
		if err != nil {
			return nil, err
		}
		if err := x.closeFile(ctx, true); err != nil {
			return nil, err
		}
		x.cp.After = ""
	}
	if len(req.Ignored) > 0 && x.cp.Notes == 0 {
		if err := x.writeNotes(ctx); err != nil {
			return nil, err
		}
	}
	m := Manifest{TransactionTime: req.TransactionTime.Format("2006-01-02T15:04:05.000Z"), Request: req.Request,
		RequiresAccessToken: !req.NoToken, Output: []ManifestFile{}, Error: []ManifestFile{}}
	if !req.Since.IsZero() {
		m.Deleted = []ManifestFile{}
	}
	for _, f := range x.cp.Files {
		mf := ManifestFile{Type: f.Type, URL: jobs.FileURL(req.Base, run.Job.ID, f.N), Count: f.Count}
		switch f.Part {
		case partDeleted:
			mf.Type = "Bundle"
			m.Deleted = append(m.Deleted, mf)
		case partError:
			m.Error = append(m.Error, mf)
		default:
			m.Output = append(m.Output, mf)
		}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // the request URL keeps its '&'
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return bytes.TrimSpace(b.Bytes()), nil
}

// exportType writes the resources of one type, from the checkpoint.
func (x *exporter) exportType(ctx context.Context, typ string) error {
	q := store.ExportQuery{Type: typ, Tenant: x.tenant(), Since: x.req.Since, After: x.cp.After, Limit: exportPage}
	filters, err := x.filters(typ)
	if err != nil {
		return err
	}
	q.Filters = filters
	if filters != nil && len(filters) == 0 {
		return nil // a Group without members: nothing of the compartment
	}
	if filters != nil {
		// The store filters current versions: those changed since the
		// transaction time come whatever they match now, and are
		// exported when their version of then matched (selectsAsOf).
		q.ChangedAfter = x.req.TransactionTime
	}
	for {
		page, err := x.s.cfg.Store.Export(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range page {
			q.After = r.ID
			changed := r.LastUpdated.After(x.req.TransactionTime)
			if r, err = x.asOf(ctx, r); err != nil {
				return err
			}
			if r == nil || !x.s.cfg.Visible(x.sc, r) {
				continue
			}
			if changed && filters != nil && !selectsAsOf(filters, r) {
				continue
			}
			var patients []string
			if x.byTargets(typ) {
				if patients, err = x.provenancePatients(ctx, r); err != nil {
					return err
				}
				if len(patients) == 0 {
					continue // about no patient (of the Group)
				}
			} else {
				patients = auditlog.PatientsIn(r.Type, r.ID, r.Body)
			}
			if x.confiner != nil {
				if r, err = x.confiner.confine(ctx, r); err != nil {
					return err
				}
				if r == nil {
					continue // names patients outside the Group
				}
			}
			if err := x.write(ctx, r.Body, patients, r.Tenant, q.After); err != nil {
				return err
			}
		}
		if len(page) < q.Limit {
			return nil
		}
	}
}

// tenant is the tenant whose resources the export reads: the caller's
// (every tenant's for an all-tenant client), but for an all-tenant
// client's Group export the Group's: a patient's chart is its tenant's, as
// for $everything and compartment searches (docs/security.md), so
// another clinic's resource about a member, and a member Patient of
// another tenant, are not the Group's data (a tenant's own Group export
// reads the same).
func (x *exporter) tenant() string {
	if x.req.Level == LevelGroup && x.sc.TenantOf() == search.AllTenants {
		return x.req.GroupTenant
	}
	return x.sc.TenantOf()
}

// filters are the conditions of typ's resources: the Group's or the
// Patient compartment's, each combined with the type's _typeFilters (nil:
// every resource of the type; empty: none).
func (x *exporter) filters(typ string) ([]*search.Query, error) {
	var base *search.Query
	switch x.req.Level {
	case LevelPatient:
		if typ != "Patient" && !x.byTargets(typ) {
			f := false
			base = &search.Query{Clauses: []search.Clause{{Param: compartmentParam(typ), Type: search.TypeReference, Modifier: "missing", Missing: &f}}}
		}
	case LevelGroup:
		if len(x.req.Members) == 0 {
			return []*search.Query{}, nil
		}
		if x.byTargets(typ) {
			break
		}
		cl := search.Clause{Param: compartmentParam(typ), Type: search.TypeReference}
		if typ == "Patient" {
			cl = search.Clause{Param: "_id", Type: search.TypeToken}
		}
		for _, id := range x.req.Members {
			if typ == "Patient" {
				cl.Values = append(cl.Values, search.Value{Code: id})
			} else {
				cl.Values = append(cl.Values, search.Value{RefType: "Patient", RefID: id})
			}
		}
		base = &search.Query{Clauses: []search.Clause{cl}}
	}
	// A type the caller reads through granular scopes is exported as if
	// their restriction were a _typeFilter ANDed with the others (each
	// resource passes Visible besides).
	restriction, err := engine.Restriction(x.sc, typ)
	if err != nil {
		return nil, err
	}
	if len(restriction) > 0 {
		if base == nil {
			base = &search.Query{}
		}
		base.Clauses = append(base.Clauses, restriction...)
	}
	tf := x.req.TypeFilters[typ]
	if len(tf) == 0 {
		if base == nil {
			return nil, nil
		}
		return []*search.Query{base}, nil
	}
	out := make([]*search.Query, 0, len(tf))
	for _, f := range tf {
		q, _, err := parseFilter(typ, f)
		if err != nil {
			return nil, err
		}
		if base != nil {
			q.Clauses = append(q.Clauses, base.Clauses...)
		}
		out = append(out, q)
	}
	return out, nil
}

// asOf returns r as it was at the export's transaction time: a resource
// changed since is exported in its version of then (nil if it was created
// later or deleted then).
func (x *exporter) asOf(ctx context.Context, r *store.Resource) (*store.Resource, error) {
	tt := x.req.TransactionTime
	if !r.LastUpdated.After(tt) {
		return r, nil
	}
	for v := r.Version - 1; v >= 1; v-- {
		old, err := x.s.cfg.Store.VRead(ctx, r.Type, r.ID, v)
		if errors.Is(err, store.ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		if !old.LastUpdated.After(tt) {
			if old.Deleted || !x.req.Since.IsZero() && !old.LastUpdated.After(x.req.Since) {
				return nil, nil
			}
			return old, nil
		}
	}
	return nil, nil
}

// write adds one line to the open file (opening one if needed), noting
// the patients it is about (of tenant), and saves the file's buffered
// part, with the checkpoint, when it is full or the file is.
func (x *exporter) write(ctx context.Context, line []byte, patients []string, tenant, after string) error {
	if x.cp.File == 0 || x.seen == nil {
		if x.cp.File == 0 {
			x.cp.File, x.cp.Part, x.cp.Count, x.cp.PatientsPart = x.cp.NextFile, 0, 0, 0
			x.cp.NextFile++
		}
		// (A file resumed after its runner died may name a patient of its
		// saved parts again: the download names each once.)
		x.seen = map[string]bool{}
	}
	x.buf = append(x.buf, line...)
	x.buf = append(x.buf, '\n')
	for _, p := range patients {
		if !x.seen[p] {
			x.seen[p] = true
			x.patients = append(x.patients, p...)
			if x.sc.TenantOf() == search.AllTenants {
				// An export of every tenant notes whose each patient is
				// (a resource's patients are its tenant's), for the share
				// of its download's AuditEvent each tenant gets.
				x.patients = strconv.AppendQuote(append(x.patients, ' '), tenant)
			}
			x.patients = append(x.patients, '\n')
		}
	}
	x.cp.Count++
	x.cp.Done++
	x.cp.After = after
	x.run.Progress(x.cp.Done, -1)
	switch {
	case x.cp.Count >= x.s.cfg.FileResources:
		return x.closeFile(ctx, false)
	case len(x.buf) >= x.s.cfg.PartBytes:
		return x.flush(ctx)
	}
	return nil
}

// flush saves the buffered part of the open file with the checkpoint.
func (x *exporter) flush(ctx context.Context) error {
	parts := x.takePart()
	return x.save(ctx, x.cp, parts)
}

// closeFile saves the open file's last part and closes it: it becomes one
// of the manifest's files. typeDone tells that the type is finished (the
// checkpoint moves to the next type).
func (x *exporter) closeFile(ctx context.Context, typeDone bool) error {
	if x.cp.File == 0 {
		// A type that wrote nothing saves nothing: a resumed export reads
		// it again and finds nothing again.
		return nil
	}
	f := outputFile{N: x.cp.File, Count: x.cp.Count}
	if n := len(x.req.Types); x.cp.Type < n {
		f.Type = x.req.Types[x.cp.Type]
	} else {
		f.Type, f.Part = x.req.Types[x.cp.Type-n], partDeleted
	}
	x.cp.Files = append(x.cp.Files, f)
	parts := x.takePart()
	x.cp.File, x.cp.Part, x.cp.Count, x.cp.PatientsPart = 0, 0, 0, 0
	x.seen = nil
	cp := x.cp
	if typeDone {
		cp.Type, cp.After = cp.Type+1, ""
	}
	return x.save(ctx, cp, parts)
}

// takePart returns the open file's buffered bytes as its next part, with
// the part of its companion file naming the patients first seen in it
// (none when nothing is buffered).
func (x *exporter) takePart() []store.JobPart {
	if len(x.buf) == 0 {
		return nil
	}
	p := []store.JobPart{{File: x.cp.File, Part: x.cp.Part, Data: x.buf}}
	if len(x.patients) > 0 {
		p = append(p, store.JobPart{File: jobs.PatientsFile(x.cp.File), Part: x.cp.PatientsPart, Data: x.patients})
		x.cp.PatientsPart++
	}
	x.cp.Part++
	return p
}

// save commits cp with parts and empties the buffer they were taken from.
func (x *exporter) save(ctx context.Context, cp exportCheckpoint, parts []store.JobPart) error {
	raw, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if err := x.run.Save(ctx, raw, parts); err != nil {
		return err
	}
	x.buf, x.patients = x.buf[:0], x.patients[:0]
	return nil
}
