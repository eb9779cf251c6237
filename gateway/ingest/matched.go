package ingest

import (
	"fmt"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// RuleResourceForeign is the rule id of a record whose conditional create
// matched a resource no native record wrote.
const RuleResourceForeign = "record-resource-foreign"

// checkMatchedOwn checks the resources the record's conditional creates
// matched (current, by entry of res: engine.Tx.RunChecked). A record's
// resource is a conditional create on the identifier the mapping mints
// for it, and a match is taken as the resource already stored, so nothing
// is written for it: that is right only for a resource a record wrote
// (the same resource of a nested record stored before, a record stored
// again). One that a client wrote with that identifier (the engine
// refuses it now, identifier-reserved, but a database may hold one
// written before) would stand in for the record's measurement, which
// would never be stored while the answer said 200. A resource a record
// wrote is the target of that record's Provenance (audit.RecordProvenanceID,
// ids no client may write), so a match without one is 409 naming the
// entry, and nothing of the record is stored. The record's Patient (entry
// 0) is not checked: it is resolved by its own rules (identity.go), and
// a Patient matched is the record's patient, not a measurement lost.
// Only matches are looked up, which for a record's own resources happen
// only when it is stored again in another form.
func checkMatchedOwn(st store.Tx, res *mapping.Result, current []*store.Resource) error {
	var issues []outcome.Issue
	for i, r := range current {
		if i == 0 || r == nil || i >= len(res.Entries) || res.Entries[i].Method.Code() != "POST" {
			continue
		}
		provs, err := searchAll(st, "Provenance", "target", r.Type+"/"+r.ID)
		if err != nil {
			return fmt.Errorf("provenance of %s/%s: %w", r.Type, r.ID, err)
		}
		own := false
		for _, p := range provs {
			if audit.ReservedProvenanceID(p.ID) {
				own = true
				break
			}
		}
		if !own {
			issues = append(issues, outcome.Issue{Severity: "error", Code: "conflict", Rule: RuleResourceForeign,
				Expression: fmt.Sprintf("Bundle.entry[%d]", i),
				Message: fmt.Sprintf("entry %d (a %s) matched a stored resource carrying the identifier the gateway mints for "+
					"it, which no native record wrote (a client's resource): the record is not stored, so that its "+
					"%s is not lost; an operator must remove or re-identify that resource, then send the record again",
					i, r.Type, r.Type)})
		}
	}
	if len(issues) == 0 {
		return nil
	}
	return &outcome.Error{Kind: outcome.Conflict, Issues: issues}
}

// dropPhantoms returns res (and its parallel raws, docs and checked, each
// nil or one per entry) without the entries that only withdraw a resource an
// earlier version may have made (mapping.Entry.Withdraws: a DetectedIssue
// entered-in-error, a Flag no longer active) where none is stored under
// their identifier: a corrected or withdrawn record that never raised one
// would otherwise make one, at the gateway and at every EHR (probe p31
// F1). One identifier search per such entry, which only new versions and
// withdrawals have.
func dropPhantoms(st store.Tx, res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error) (*mapping.Result, [][]byte, []map[string]any, []error, error) {
	keep := make([]bool, len(res.Entries))
	dropped := false
	for i, e := range res.Entries {
		keep[i] = true
		if !e.Withdraws {
			continue
		}
		stored, err := searchAll(st, e.ResourceType, "identifier", e.IdentifierSystem+"|"+e.IdentifierValue)
		if err != nil {
			return nil, nil, nil, nil, fmt.Errorf("%s stored: %w", e.ResourceType, err)
		}
		if len(stored) == 0 {
			keep[i], dropped = false, true
		}
	}
	if !dropped {
		return res, raws, docs, checked, nil
	}
	// A copy: res may be the record's first mapping, which a run again
	// (a conflict) starts from.
	kept := *res
	kept.Entries = keepOnly(res.Entries, keep)
	return &kept, keepOnly(raws, keep), keepOnly(docs, keep), keepOnly(checked, keep), nil
}

// keepRetiredIssue returns res (and its parallel raws, docs and checked)
// without the session DetectedIssue entered-in-error that a vitals record
// sent on its own retires (mapping.IssueRetiredBy: a correction that holds
// no critical pre-dose value any more) while the issue still stands: a
// pre-dose measurement of the session stored apart from this record (in
// the session document or on its own) is charted critical (its stored
// interpretation, mapping.LinkedOf). The re-judgment runs in the write
// transaction, after dropPhantoms (so only where the DetectedIssue is
// stored), on the session's Observations found as checkSessionRecords
// finds them, leaving out this record's own and those entered-in-error.
func keepRetiredIssue(st store.Tx, rec mapping.Record, opts mapping.Options, res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error) (*mapping.Result, [][]byte, []map[string]any, []error, error) {
	at := -1
	for i := range res.Entries {
		if mapping.IssueRetiredBy(rec, &res.Entries[i]) {
			at = i
		}
	}
	id, ok := mapping.NamedSession(rec, opts)
	if at < 0 || !ok {
		return res, raws, docs, checked, nil
	}
	stands, err := issueStands(st, id, res)
	if err != nil || !stands {
		return res, raws, docs, checked, err
	}
	keep := make([]bool, len(res.Entries))
	for i := range keep {
		keep[i] = i != at
	}
	kept := *res
	kept.Entries = keepOnly(res.Entries, keep)
	return &kept, keepOnly(raws, keep), keepOnly(docs, keep), keepOnly(checked, keep), nil
}

// issueStands reports whether a pre-dose measurement of the session id,
// stored apart from the record being written (res), is charted critical.
func issueStands(st store.Tx, id mapping.SessionID, res *mapping.Result) (bool, error) {
	token := search.Token(id.System, id.Value)
	queries := [][2]string{{"part-of:identifier", token}}
	procs, err := searchAll(st, "Procedure", "identifier", token)
	if err != nil {
		return false, err
	}
	if len(procs) > 0 {
		queries = append(queries, [2]string{"part-of", "Procedure/" + procs[0].ID})
	}
	own := map[string]bool{}
	for _, e := range res.Entries {
		own[e.IdentifierSystem+"|"+e.IdentifierValue] = true
	}
	for _, q := range queries {
		found, err := searchAll(st, "Observation", q[0], q[1])
		if err != nil {
			return false, err
		}
		for _, r := range found {
			doc, err := decode(r)
			if err != nil {
				return false, err
			}
			if ownResource(doc, own) {
				continue
			}
			if mapping.LinkedOf(doc).Critical { // nothing for one entered in error
				return true, nil
			}
		}
	}
	return false, nil
}

// keepOnly is the elements of s that keep marks (nil for nil).
func keepOnly[T any](s []T, keep []bool) []T {
	if s == nil {
		return nil
	}
	out := make([]T, 0, len(s))
	for i, v := range s {
		if keep[i] {
			out = append(out, v)
		}
	}
	return out
}
