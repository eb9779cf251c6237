package bulk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// An export with _since lists the resources of its types deleted since
// then, up to its transaction time, in the manifest's deleted files (Bulk
// Data IG v2, "Response - Complete Status"): a client that keeps a copy by
// incremental exports deletes them from it. Each line is a Bundle of type
// transaction with one entry, DELETE Type/id, whose meta.lastUpdated is
// the time of the deletion. A deleted resource is listed when its last
// version before the deletion is one the export would have held: the
// exporting tenant's, of a type the scopes cover, and, for a Patient
// export, about a patient, for a Group export about a member (the
// patients auditlog.PatientsIn finds in it). A _typeFilter cannot be
// evaluated on a deleted resource (it has no index rows): every deletion
// of the type is listed.

// exportDeleted writes the deletions of typ since the export's _since,
// from the checkpoint.
func (x *exporter) exportDeleted(ctx context.Context, typ string) error {
	q := store.ExportQuery{Type: typ, Tenant: x.tenant(), Since: x.req.Since, After: x.cp.After, Limit: exportPage, Deleted: true}
	for {
		page, err := x.s.cfg.Store.Export(ctx, q)
		if err != nil {
			return err
		}
		for _, r := range page {
			q.After = r.ID
			if r.LastUpdated.After(x.req.TransactionTime) {
				// Deleted during the export: it is in neither part, and the
				// next export with _since = this transaction time lists it.
				continue
			}
			last, err := x.lastVersion(ctx, r)
			if err != nil {
				return err
			}
			if last == nil || !x.s.cfg.Visible(x.sc, last) {
				continue
			}
			var patients []string
			ok := false
			if x.byTargets(typ) {
				// A Provenance is the export's by what its targets are
				// about (export_provenance.go), as they are now.
				if patients, err = x.provenancePatients(ctx, last); err != nil {
					return err
				}
				ok = len(patients) > 0
			} else {
				patients, ok = x.deletedAbout(last)
			}
			if !ok {
				continue
			}
			line, err := deletionBundle(r)
			if err != nil {
				return err
			}
			if err := x.write(ctx, line, patients, last.Tenant, q.After); err != nil {
				return err
			}
		}
		if len(page) < q.Limit {
			return nil
		}
	}
}

// lastVersion returns the version of a deleted resource before its
// deletion (nil if there is none to read).
func (x *exporter) lastVersion(ctx context.Context, del *store.Resource) (*store.Resource, error) {
	if del.Version < 2 {
		return nil, nil
	}
	last, err := x.s.cfg.Store.VRead(ctx, del.Type, del.ID, del.Version-1)
	switch {
	case errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone):
		return nil, nil
	case err != nil:
		return nil, err
	case last.Deleted:
		return nil, nil
	}
	return last, nil
}

// deletedAbout says whether the export would have held last (the last
// version of a deleted resource) by its level, and the patients its
// deletion names: every patient last is about, for a Group export only
// the members (its files name nobody else).
func (x *exporter) deletedAbout(last *store.Resource) ([]string, bool) {
	patients := auditlog.PatientsIn(last.Type, last.ID, last.Body)
	switch x.req.Level {
	case LevelPatient:
		return patients, len(patients) > 0
	case LevelGroup:
		in := x.confiner.onlyMembers(patients)
		return in, len(in) > 0
	}
	return patients, true
}

// deletionBundle is the line of a deleted file for the deletion del.
func deletionBundle(del *store.Resource) ([]byte, error) {
	type request struct {
		Method string `json:"method"`
		URL    string `json:"url"`
	}
	type entry struct {
		Request request `json:"request"`
	}
	return json.Marshal(struct {
		ResourceType string            `json:"resourceType"`
		Meta         map[string]string `json:"meta"`
		Type         string            `json:"type"`
		Entry        []entry           `json:"entry"`
	}{"Bundle", map[string]string{"lastUpdated": del.LastUpdated.UTC().Format("2006-01-02T15:04:05.000Z")}, "transaction",
		[]entry{{request{"DELETE", del.Type + "/" + del.ID}}}})
}

// writeNotes writes the error file naming the parameters Prefer:
// handling=lenient ignored (one OperationOutcome, informational), as the
// Bulk Data IG has a server say what it did not apply.
func (x *exporter) writeNotes(ctx context.Context) error {
	oo := outcome.Information("the server ignored the kick-off parameters " + strings.Join(x.req.Ignored, ", ") +
		" (Prefer: handling=lenient): they are not supported, and ignoring them does not widen the export")
	line, err := json.Marshal(oo)
	if err != nil {
		return err
	}
	cp := x.cp
	cp.Notes = cp.NextFile
	cp.NextFile++
	cp.Files = append(slices.Clone(cp.Files), outputFile{Type: "OperationOutcome", N: cp.Notes, Count: 1, Part: partError})
	if err := x.save(ctx, cp, []store.JobPart{{File: cp.Notes, Part: 0, Data: append(line, '\n')}}); err != nil {
		return err
	}
	x.cp = cp
	return nil
}

// CheckDownload decides whether the caller of sc may download file n of
// export job j: the file's resources must be of a type its scopes let it
// read or search, checked with the scopes of the download's own token (a
// token of the same client with narrower scopes, an ingest-only one, say,
// gets none of the files a full token's export wrote). An error file
// holds no resource and needs no scope. Returns auth's insufficient_scope
// failure (403) naming the scope needed; nil for jobs of other kinds.
func (s *Service) CheckDownload(sc *auditlog.Scope, j *store.Job, n int) error {
	if j.Kind != KindExport || len(j.Checkpoint) == 0 {
		return nil
	}
	var cp exportCheckpoint
	if err := json.Unmarshal(j.Checkpoint, &cp); err != nil {
		return fmt.Errorf("export checkpoint: %w", err)
	}
	for _, f := range cp.Files {
		if f.N == n && f.Part != partError && !allowedType(sc, f.Type) {
			return auth.InsufficientScope(sc.ClientID, "system/"+f.Type+".rs")
		}
	}
	return nil
}
