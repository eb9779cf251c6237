package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// RuleResourceForeign is the rule id of a record whose conditional create
// matched a resource no native record wrote.
const RuleResourceForeign = "record-resource-foreign"

// RuleRecordIDCollides is the rule id of a record whose resources'
// identifiers are those the gateway minted for another record's: a child
// resource's identifier value is the record id, "-" and a code
// (mapping ident.child), so record A-100-44250-9 of an assessment is
// the identifier of item 44250-9 of assessment A-100.
const RuleRecordIDCollides = "record-id-collides"

// checkMatchedOwn checks the resources the record's conditional creates
// matched (current, by entry of res: engine.Tx.RunChecked). A record's
// resource is a conditional create on the identifier the mapping mints
// for it, and a match is taken as the resource already stored, so nothing
// is written for it: that is right only for a resource this record wrote
// (the same resource of a nested record stored before, a record stored
// again). One that a client wrote with that identifier (the engine
// refuses it now, identifier-reserved, but a database may hold one
// written before) would stand in for the record's measurement, which
// would never be stored while the answer said 200: a resource a record
// wrote is the target of that record's Provenance (audit.RecordProvenanceID,
// ids no client may write), so a match without one is 409 naming the
// entry (RuleResourceForeign). So would one another record wrote whose
// id and a code make this record's identifier (RuleRecordIDCollides):
// the Provenance names the record it stored (and those its session
// nests), which must be this one (names, by entry: recordNames). The
// record's Patient (entry 0) is not checked: it is resolved by its own
// rules (identity.go), and a Patient matched is the record's patient,
// not a measurement lost. Only matches are looked up, which for a
// record's own resources happen only when it is stored again in another
// form.
func checkMatchedOwn(st store.Tx, res *mapping.Result, current []*store.Resource, names func(e *mapping.Entry) map[string]bool) error {
	var issues []outcome.Issue
	for i, r := range current {
		if i == 0 || r == nil || i >= len(res.Entries) || res.Entries[i].Method.Code() != "POST" {
			continue
		}
		e := &res.Entries[i]
		o, err := ownersOf(st, r)
		if err != nil {
			return err
		}
		switch {
		case !o.reserved:
			issues = append(issues, outcome.Issue{Severity: "error", Code: "conflict", Rule: RuleResourceForeign,
				Expression: fmt.Sprintf("Bundle.entry[%d]", i),
				Message: fmt.Sprintf("entry %d (a %s) matched a stored resource carrying the identifier the gateway mints for "+
					"it, which no native record wrote (a client's resource): the record is not stored, so that its "+
					"%s is not lost; an operator must remove or re-identify that resource, then send the record again",
					i, r.Type, r.Type)})
		case !o.own(e, names(e)):
			issues = append(issues, collides(e, fmt.Sprintf("entry %d (a %s)", i, r.Type)))
		}
	}
	if len(issues) == 0 {
		return nil
	}
	return &outcome.Error{Kind: outcome.Conflict, Issues: issues}
}

// checkStoredOwn refuses a record whose main resource (entry i), found
// stored by its identifier (storedMain: the record would be a new version
// of it),
// another record wrote (RuleRecordIDCollides): a first version would
// otherwise be written over that record's resource as an amendment.
// A resource no record wrote is left to checkMatchedOwn's rule.
func checkStoredOwn(st store.Tx, res *mapping.Result, stored *store.Resource, i int, names func(e *mapping.Entry) map[string]bool) error {
	if stored == nil || i < 0 {
		return nil
	}
	o, err := ownersOf(st, stored)
	if err != nil || !o.reserved || o.own(&res.Entries[i], names(&res.Entries[i])) {
		return err
	}
	return &outcome.Error{Kind: outcome.Conflict, Issues: []outcome.Issue{collides(&res.Entries[i], "its "+stored.Type)}}
}

// collides is the RuleRecordIDCollides issue of entry e (what names it),
// at the record id of the record it belongs to. No id is repeated.
func collides(e *mapping.Entry, what string) outcome.Issue {
	is := outcome.Issue{Severity: "error", Code: "conflict", Rule: RuleRecordIDCollides,
		Pointer: "/source/recordId", Expression: "source.recordId",
		Message: "the record is not stored: " + what + " would carry the identifier of a resource the gateway " +
			"stored for another record of this source (a record's parts are identified by its record id, a hyphen " +
			"and a code, so an id such as A-100-44250-9 is a part of record A-100); send this record under a record " +
			"id that is not another record's id followed by a hyphen and a code"}
	if e.Record != "" {
		is.Pointer, is.Expression = e.Record+"/recordId", nestedExpression(e.Record)+".recordId"
	}
	return is
}

// owners is what the record Provenances targeting a stored resource say
// of who wrote it.
type owners struct {
	reserved bool            // a record's Provenance targets it
	names    map[string]bool // the records they name (system|value), nested ones included
	// sessionAlone: one is a session's Provenance naming no nested
	// record, which a build before the nested records were named wrote
	// for every session: it may have written a nested record's resources.
	sessionAlone bool
}

// stringExt is an extension with a valueString.
type stringExt struct {
	URL         string `json:"url"`
	ValueString string `json:"valueString"`
}

// ownersOf reads the record Provenances targeting r.
func ownersOf(st store.Tx, r *store.Resource) (owners, error) {
	var o owners
	provs, err := searchAll(st, "Provenance", "target", r.Type+"/"+r.ID)
	if err != nil {
		return o, fmt.Errorf("provenance of %s/%s: %w", r.Type, r.ID, err)
	}
	for _, p := range provs {
		if !audit.ReservedProvenanceID(p.ID) {
			continue
		}
		o.reserved = true
		var doc struct {
			Entity []struct {
				Role string `json:"role"`
				What struct {
					Identifier struct{ System, Value string } `json:"identifier"`
				} `json:"what"`
				Extension []stringExt `json:"extension"`
			} `json:"entity"`
		}
		if err := json.Unmarshal(p.Body, &doc); err != nil {
			return o, fmt.Errorf("provenance %s: %w", p.ID, err)
		}
		sources := 0
		for _, en := range doc.Entity {
			if en.Role != "source" || en.What.Identifier.Value == "" {
				continue
			}
			sources++
			if o.names == nil {
				o.names = map[string]bool{}
			}
			o.names[en.What.Identifier.System+"|"+en.What.Identifier.Value] = true
		}
		if sources == 1 && len(doc.Entity) > 0 && slices.ContainsFunc(doc.Entity[0].Extension, func(x stringExt) bool {
			return x.URL == audit.ExtRecordKind && x.ValueString == string(mapping.KindSession)
		}) {
			o.sessionAlone = true
		}
	}
	return o, nil
}

// own reports whether the records o names include one of names, the
// record entry e belongs to (a nested record also when a session's
// Provenance of an older build names none).
func (o owners) own(e *mapping.Entry, names map[string]bool) bool {
	for n := range names {
		if o.names[n] {
			return true
		}
	}
	return e.Record != "" && o.sessionAlone
}

// recordNames returns, for an entry of a record's mapping, the names
// (system|value, as its Provenance names records) of the record it
// belongs to: the record itself, in each kind that is the same record
// (an infusion and its session), or the record a session nests at the
// entry's pointer.
func recordNames(base string, rec mapping.Record, kind mapping.Kind) func(e *mapping.Entry) map[string]bool {
	src := rec.Env().Source
	return func(e *mapping.Entry) map[string]bool {
		if e.Record != "" {
			if n, ok := nestedAt(rec, e.Record); ok {
				return map[string]bool{mapping.RecordSystem(base, src.System, n.Kind) + "|" + n.RecordID: true}
			}
			return nil
		}
		out := map[string]bool{}
		for _, k := range recordKinds(kind) {
			out[mapping.RecordSystem(base, src.System, k)+"|"+src.RecordID] = true
		}
		return out
	}
}

// nestedAt is the record a session nests at pointer ptr ("/vitals/0").
func nestedAt(rec mapping.Record, ptr string) (mapping.NestedRecord, bool) {
	s, ok := rec.(*mapping.Session)
	if !ok {
		return mapping.NestedRecord{}, false
	}
	if i := slices.Index(nestedPointers(s), ptr); i >= 0 {
		return s.Nested()[i], true
	}
	return mapping.NestedRecord{}, false
}

// dropPhantoms returns res (and its parallel raws, docs and checked, each
// nil or one per entry) without the entries that only withdraw a resource an
// earlier version may have made (mapping.Entry.Withdraws: a DetectedIssue
// entered-in-error, a Flag no longer active) where none is stored under
// their identifier: a corrected or withdrawn record that never raised one
// would otherwise make one, at the gateway and at every EHR (probe p31
// F1). Nor where the stored one is retired already (retired): every later
// version would write it again, and deliver it, an inactive Flag's
// period.end moving to that version's lastUpdated, and a record that
// names a session would overwrite the session's retired DetectedIssue
// with its thinner one. stored is, for each entry kept, the stored
// resource a withdrawing entry retires, decoded (nil for the others), for
// keepRetiredIssue. One identifier search per such entry, which only new
// versions and withdrawals have.
func dropPhantoms(st store.Tx, res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error) (*mapping.Result, [][]byte, []map[string]any, []error, []map[string]any, error) {
	keep := make([]bool, len(res.Entries))
	stored := make([]map[string]any, len(res.Entries))
	dropped := false
	for i, e := range res.Entries {
		keep[i] = true
		if !e.Withdraws {
			continue
		}
		found, err := searchAll(st, e.ResourceType, "identifier", e.IdentifierSystem+"|"+e.IdentifierValue)
		if err != nil {
			return nil, nil, nil, nil, nil, fmt.Errorf("%s stored: %w", e.ResourceType, err)
		}
		if len(found) > 0 {
			if stored[i], err = decode(found[0]); err != nil {
				return nil, nil, nil, nil, nil, err
			}
		}
		if stored[i] == nil || retired(stored[i], entryStatus(raws, docs, i)) {
			keep[i], dropped = false, true
		}
	}
	if !dropped {
		return res, raws, docs, checked, stored, nil
	}
	res, raws, docs, checked = keepEntries(res, raws, docs, checked, keep)
	return res, raws, docs, checked, keepOnly(stored, keep), nil
}

// dropSettledDeletes returns res (and its parallel raws, docs and
// checked) without the DELETE of an AdverseEvent that is not stored (a
// withdrawn session nesting an event never sent) or is deleted already
// where every delivery destination (routes) has the deletion: the latest
// delivery there of the record the event is (on its own, or nested) was
// delivered, or is the withdrawal withheld from a destination that never
// had it, or there is none. Sent again, the DELETE of a resource the EHR
// no longer holds fails the whole transaction at an EHR that answers it
// 404 (HAPI before 5.7, FHIR Works on AWS), and the session's withdrawal
// became a dead letter, its Procedure left completed there (an EHR
// review). Where a destination's delivery of the deletion is pending or
// a dead letter, the DELETE is kept.
func dropSettledDeletes(st store.Tx, routes []Route, tenant string, rec mapping.Record, kind mapping.Kind, res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error) (*mapping.Result, [][]byte, []map[string]any, []error, error) {
	keep := make([]bool, len(res.Entries))
	dropped := false
	for i, e := range res.Entries {
		keep[i] = true
		id, ok := strings.CutPrefix(e.URL, "AdverseEvent/")
		if e.Method != fhir.HTTPVerbDELETE || !ok {
			continue
		}
		_, err := st.Read("AdverseEvent", tenantID(tenant, id))
		switch {
		case err == nil:
			continue
		case errors.Is(err, store.ErrNotFound):
			keep[i], dropped = false, true
			continue
		case !errors.Is(err, store.ErrGone):
			return nil, nil, nil, nil, err
		}
		key := OrderKey(res.Source.System, kind, res.Source.RecordID)
		if n, ok := nestedAt(rec, e.Record); ok {
			key = OrderKey(res.Source.System, n.Kind, n.RecordID)
		}
		settled := true
		for _, r := range routes {
			status, lastError, err := st.LatestItem("", r.Name, key)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			if status != "" && status != store.StatusDone && !strings.HasPrefix(lastError, store.WithheldWithdrawal) {
				settled = false
				break
			}
		}
		if settled {
			keep[i], dropped = false, true
		}
	}
	if !dropped {
		return res, raws, docs, checked, nil
	}
	res, raws, docs, checked = keepEntries(res, raws, docs, checked, keep)
	return res, raws, docs, checked, nil
}

// keepEntries returns res and its parallel raws, docs and checked with
// only the entries keep marks. res is copied: it may be the record's first
// mapping, which a run again (a conflict) starts from.
func keepEntries(res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error, keep []bool) (*mapping.Result, [][]byte, []map[string]any, []error) {
	kept := *res
	kept.Entries = keepOnly(res.Entries, keep)
	return &kept, keepOnly(raws, keep), keepOnly(docs, keep), keepOnly(checked, keep)
}

// retired reports whether a stored signal (a Flag, a DetectedIssue) that
// an entry of status status retires is retired already: entered-in-error,
// or of that status (an inactive Flag made inactive again). An inactive
// Flag is still voided by a withdrawal (entered-in-error).
func retired(stored map[string]any, status string) bool {
	s := str(stored, "status")
	return s == "entered-in-error" || s == status
}

// entryStatus is the status of the mapped resource of entry i, from its
// decoded form when there is one, else from its rendered bytes ("" for
// none).
func entryStatus(raws [][]byte, docs []map[string]any, i int) string {
	if docs != nil && docs[i] != nil {
		return str(docs[i], "status")
	}
	var r struct{ Status string }
	if raws != nil {
		_ = json.Unmarshal(raws[i], &r) // a resource without one retires nothing twice
	}
	return r.Status
}

// keepRetiredIssue returns res (and its parallel raws, docs and checked)
// without the session DetectedIssue entered-in-error that a vitals record
// sent on its own, or a session version, retires (mapping.IssueRetiredBy:
// a correction that holds no critical pre-dose value any more, a version
// that leaves the critical record out) where it is not the record's to
// retire: the stored issue (stored, from dropPhantoms, so only one still
// in force) is another patient's than patientID (a withdrawal, which the
// rules across records do not check, may name any session), or the issue
// still stands: a pre-dose measurement of the session stored apart from
// this record (in the session document or on its own) is charted critical
// (its stored interpretation, mapping.LinkedOf). The re-judgment runs in
// the write transaction on the session's Observations found as
// checkSessionRecords finds them, leaving out this record's own and those
// entered-in-error. warnings tell the sender when the issue stands on
// another record's value (mapping.IssueStandsWarnings).
func keepRetiredIssue(st store.Tx, rec mapping.Record, opts mapping.Options, patientID string, stored []map[string]any, res *mapping.Result, raws [][]byte, docs []map[string]any, checked []error) (*mapping.Result, [][]byte, []map[string]any, []error, []mapping.Violation, error) {
	at := -1
	for i := range res.Entries {
		if mapping.IssueRetiredBy(rec, &res.Entries[i]) {
			at = i
		}
	}
	id, ok := mapping.NamedSession(rec, opts)
	if !ok {
		id, ok = mapping.OwnSession(rec, opts)
	}
	if at < 0 || !ok {
		return res, raws, docs, checked, nil, nil
	}
	var warnings []mapping.Violation
	if samePatientOf(stored[at], "patient", patientID) {
		critical, err := issueStands(st, id, res, patientID)
		if err != nil || len(critical) == 0 {
			return res, raws, docs, checked, nil, err
		}
		warnings = mapping.IssueStandsWarnings(rec, critical)
	}
	keep := make([]bool, len(res.Entries))
	for i := range keep {
		keep[i] = i != at
	}
	res, raws, docs, checked = keepEntries(res, raws, docs, checked, keep)
	return res, raws, docs, checked, warnings, nil
}

// issueStands returns the pre-dose measurements of the session id,
// stored apart from the record being written (res), that are charted
// critical: the issue stands while there is one.
// Only the patient's own: another patient's record naming the session
// (which checkSessionRecords refuses) neither keeps the issue nor is named
// in this sender's warning.
func issueStands(st store.Tx, id mapping.SessionID, res *mapping.Result, patientID string) ([]mapping.Linked, error) {
	linked, docs, _, err := sessionLinked(st, id, ownIdentifiers(res))
	if err != nil {
		return nil, err
	}
	var critical []mapping.Linked
	for i, l := range linked {
		if l.Critical && samePatient(docs[i], patientID) {
			critical = append(critical, l)
		}
	}
	return critical, nil
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
