package ingest

import (
	"encoding/json"
	"errors"
	"reflect"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// One record, two forms (docs/records.md, record identity): a record nested
// in a session is the same record as the one sent on its own with its
// record id, and an infusion is the same record as the session of that
// infusion. The ledger holds a version under the form it arrived in, so a
// version received in one form is looked up in the other before the record
// is applied: the same content again is the same version (nothing is
// written, the answer is the one that version got), other content is
// record-version-reused. Without it an unchanged PHQ-9 sent on its own
// after its session was written again as "amended" with a new inactive
// Flag, and an infusion's version was replaced by a session of the same
// version with other content.

// otherForm looks up rec's version (rec.version) in the ledger under the
// record's other form. It returns the ledger entry whose answer to give
// again when every form that holds the version holds rec's content and rec
// carries nothing new (l non-nil), the refusal of rec when one holds other
// content (reused, record-version-reused), or neither: rec is applied; err
// is the store's.
// home is the session whose stored resources a record sent on its own is
// part of (homeSession; "" for none).
func otherForm(st store.Tx, rec record, home string) (l *store.Ledger, reused, err error) {
	mine, ok := decodeRecord(rec.body)
	if !ok {
		return nil, nil, nil
	}
	src := rec.rec.Env().Source
	switch r := rec.rec.(type) {
	case *mapping.Session:
		return sessionForms(st, rec, r, mine)
	case *mapping.Infusion:
		l, err := ledgerAt(st, src.System, mapping.KindSession, src.RecordID, rec.version)
		if l == nil || err != nil {
			return nil, nil, err
		}
		if session, ok := decodeRecord(l.Input); ok && !sameContent(infusionForm(session), mine) {
			return nil, errVersionReused(src.Version == ""), nil
		}
		return l, nil, nil
	}
	for _, sid := range sessionsOf(rec, home) {
		l, err := ledgerAt(st, src.System, mapping.KindSession, sid, rec.version)
		if err != nil {
			return nil, nil, err
		}
		if l == nil {
			continue
		}
		session, ok := decodeRecord(l.Input)
		if !ok {
			continue
		}
		nested, ok := nestedForm(session, rec.kind, src.RecordID)
		if !ok {
			continue // that session version does not nest this record
		}
		if !sameContent(nested, mine) {
			return nil, errVersionReused(src.Version == ""), nil
		}
		return l, nil, nil
	}
	return nil, nil, nil
}

// sessionForms is otherForm for a session: its infusion and each record it
// nests, received on their own with the session's version. Other content
// in any of them refuses the session (an issue at each); the session
// answers as received when all of them were, with its content (the
// infusion's answer).
func sessionForms(st store.Tx, rec record, s *mapping.Session, mine map[string]any) (l *store.Ledger, reused, err error) {
	src := s.Env().Source
	var (
		issues []outcome.Issue
		first  *store.Ledger
		all    = true
	)
	infusion, err := ledgerAt(st, src.System, mapping.KindInfusion, src.RecordID, rec.version)
	if err != nil {
		return nil, nil, err
	}
	if infusion != nil {
		stored, ok := decodeRecord(infusion.Input)
		if ok && !sameContent(stored, infusionForm(mine)) {
			issues = append(issues, outcome.Issue{Severity: "error", Code: "conflict", Rule: RuleVersionReused,
				Pointer: "/infusion", Expression: "infusion",
				Message: "this infusion was received on its own with this version and other content"})
		}
		first = infusion
	} else {
		all = false
	}
	ptrs := nestedPointers(s)
	for j, n := range s.Nested() {
		l, err := ledgerAt(st, src.System, n.Kind, n.RecordID, rec.version)
		if err != nil {
			return nil, nil, err
		}
		if l == nil {
			all = false
			continue
		}
		stored, ok := decodeRecord(l.Input)
		nested, _ := nestedForm(mine, n.Kind, n.RecordID)
		if ok && !sameContent(stored, nested) {
			ptr := ptrs[j]
			issues = append(issues, outcome.Issue{Severity: "error", Code: "conflict", Rule: RuleVersionReused,
				Pointer: ptr + "/recordId", Expression: nestedExpression(ptr) + ".recordId",
				Message: "this nested record was received on its own with this version and other content"})
		}
	}
	if len(issues) > 0 {
		pointer, expr := "/source/version", "source.version"
		if src.Version == "" {
			pointer, expr = "/source/lastUpdated", "source.lastUpdated"
		}
		return nil, &outcome.Error{Kind: outcome.Conflict, Issues: append([]outcome.Issue{{Severity: "error",
			Code: "conflict", Rule: RuleVersionReused, Pointer: pointer, Expression: expr,
			Message: "records of this session (the issues after this one) were already received on their own with this " +
				"version and different content; a version is never changed: send the session as a new version (a new " +
				"source.version and a later source.lastUpdated)"}}, issues...)}, nil
	}
	if all && first != nil {
		return first, nil, nil
	}
	return nil, nil, nil
}

// sessionsOf are the ids of the sessions a record sent on its own may be
// nested in: the one it names (sessionId), and home, the one whose stored
// resources its stored main resource is part of (homeSession).
func sessionsOf(rec record, home string) []string {
	named, ok := namedSession(rec.rec)
	if !ok {
		return nil
	}
	out := []string{named}
	if home != "" && home != named {
		out = append(out, home)
	}
	return out
}

// namedSession is the session a record that may be part of one names
// (sessionId, "" for none); ok is false for the other kinds.
func namedSession(rec mapping.Record) (named string, ok bool) {
	switch r := rec.(type) {
	case *mapping.Assessment:
		return r.SessionID, true
	case *mapping.Vitals:
		return r.SessionID, true
	case *mapping.AdverseEvent:
		return r.SessionID, true
	}
	return "", false
}

// homeSession is the record id of the session the stored resource main is
// part of ("" for none, or main nil): the session a record stays in
// (inSession). A literal reference names a stored session's Procedure,
// which read reads; a logical one (logical true) names the session by
// identifier, as a record sent on its own naming its session is written,
// whether or not that session is stored.
func homeSession(read func(typ, id string) (*store.Resource, error), main *store.Resource) (home string, logical bool, err error) {
	if main == nil {
		return "", false, nil
	}
	proc, session, err := sessionLink(main)
	if err != nil || proc == "" {
		return session, session != "", err
	}
	p, err := read("Procedure", proc)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	home, err = sessionID(p)
	return home, false, err
}

// homeInHistory is homeSession over the earlier versions of main (the
// latest 20, newest first), for a stored resource whose current version
// has no link to a session: a release before records stayed in their
// session cut the link when a nested record was corrected on its own
// without sessionId. Its next version finds the session again.
func homeInHistory(st store.Tx, main *store.Resource) (home string, logical bool, err error) {
	if main == nil || main.Version <= 1 {
		return "", false, nil
	}
	versions, _, err := st.History(store.HistoryQuery{Type: main.Type, ID: main.ID, Count: 20})
	if err != nil {
		return "", false, err
	}
	for _, v := range versions {
		if v.Version >= main.Version || len(v.Body) == 0 {
			continue // the current one, or a deletion
		}
		if home, logical, err = homeSession(st.Read, v); err != nil || home != "" {
			return home, logical, err
		}
	}
	return "", false, nil
}

// sessionStored reports whether the session of record id session of rec's
// source system is stored.
func sessionStored(st store.Tx, rec record, session string) (bool, error) {
	sid := mapping.SessionNamed(rec.rec, rec.opts, session)
	procs, err := searchAll(st, "Procedure", "identifier", search.Token(sid.System, sid.Value))
	return len(procs) > 0, err
}

// RuleSessionChanged is the rule id of a new version of a record, sent on
// its own, that names another session than the one it is stored in.
const RuleSessionChanged = "record-session-changed"

// sessionChanged is the message of a RuleSessionChanged issue: what to do.
const sessionChanged = "a record stays in its session: this record (the same source system, kind and record id) is " +
	"stored as part of another infusion session than the one sessionId names, whose safety signals (its " +
	"DetectedIssue) stand on its values; if it was charted to the wrong session, withdraw it (send it again as it " +
	"was stored, with a new version and source.status entered-in-error) and send it under a new record id naming " +
	"the right session; otherwise give the session it is stored in, or leave sessionId out"

// inSession returns rec as it stays in its session home (homeSession of
// its stored version; "" for none): a new version of an assessment, vitals
// or adverse-event record sent on its own that names no session is still
// part of the session it is stored in (nested in its document, or named
// by an earlier version), and is mapped naming it, so that its resources
// keep their link to the session and a correction re-judges the session's
// DetectedIssue (mapping.IssueRetiredBy). Before, such a correction cut
// the link, and the session's DetectedIssue stayed final on a pre-dose
// value no longer critical. A version naming another session is refused
// (RuleSessionChanged, 409) when home is stored (homeStored, called only
// then): its safety signals stand on the record; one named by an earlier
// version and never stored may be corrected.
func inSession(rec mapping.Record, home string, homeStored func() (bool, error)) (mapping.Record, error) {
	named, ok := namedSession(rec)
	switch {
	case !ok || home == "" || named == home:
		return rec, nil
	case named != "":
		if stored, err := homeStored(); err != nil || !stored {
			return rec, err
		}
		return nil, &outcome.Error{Kind: outcome.Conflict, Issues: []outcome.Issue{{Severity: "error", Code: "conflict",
			Rule: RuleSessionChanged, Pointer: "/sessionId", Expression: "sessionId", Message: sessionChanged}}}
	}
	switch r := rec.(type) {
	case *mapping.Assessment:
		c := *r
		c.SessionID = home
		return &c, nil
	case *mapping.Vitals:
		c := *r
		c.SessionID = home
		return &c, nil
	case *mapping.AdverseEvent:
		c := *r
		c.SessionID = home
		return &c, nil
	}
	return rec, nil
}

// InSession is inSession for a replay: rec, the decoded input of a stored
// record version, in the session of its stored resources (stored returns
// their current versions; called only for a record that names no
// session), as the ingest stored it; read reads a stored Procedure.
func InSession(rec mapping.Record, stored func() ([]*store.Resource, error), read func(typ, id string) (*store.Resource, error)) (mapping.Record, error) {
	if named, ok := namedSession(rec); !ok || named != "" {
		return rec, nil
	}
	found, err := stored()
	if err != nil {
		return nil, err
	}
	for _, r := range found {
		home, _, err := homeSession(read, r)
		if err != nil {
			return nil, err
		}
		if home != "" {
			return inSession(rec, home, nil) // names none: never asks whether home is stored
		}
	}
	return rec, nil
}

// storedMain is the stored main resource of a mapped record (its first
// entry after the Patient) and that entry's index, nil when it is not
// stored: then the record is new, otherwise this is a new version of it.
// A record whose parts vary from version to version (a vitals record's
// measurements: a version adding a blood pressure maps it first) may be
// stored by another of its own resources: when the first is not stored
// and an earlier version of the record is in the ledger (src, kind), the
// record's other own entries are looked up in order, and the first stored
// is its main resource. Before, such a version was taken for a new
// record: its conditional creates matched the stored measurements, and a
// changed heart rate was answered 200 and never stored.
func storedMain(st store.Tx, ledgers *nestedLedgers, tenant string, res *mapping.Result, source string, kind mapping.Kind) (*store.Resource, int, error) {
	i := mainEntry(res)
	if i < 0 {
		return nil, -1, nil
	}
	r, err := storedEntry(st, tenant, &res.Entries[i])
	if r != nil || err != nil {
		return r, i, err
	}
	others := slices.ContainsFunc(res.Entries[i+1:], func(e mapping.Entry) bool { return ownPart(&e) })
	if !others || res.Source.RecordID == "" {
		return nil, i, nil
	}
	versions, err := ledgers.versions(source, kind, res.Source.RecordID)
	if err != nil || len(versions) == 0 {
		return nil, i, err
	}
	for j := i + 1; j < len(res.Entries); j++ {
		if !ownPart(&res.Entries[j]) {
			continue
		}
		if r, err := storedEntry(st, tenant, &res.Entries[j]); r != nil || err != nil {
			return r, j, err
		}
	}
	return nil, i, nil
}

// ownPart reports whether e is a part of the record itself, by which it
// is found stored: not its Patient, not a record it nests, not an entry
// that only retires what an earlier version made.
func ownPart(e *mapping.Entry) bool {
	return e.ResourceType != "Patient" && e.Record == "" && !e.Withdraws && e.IdentifierValue != ""
}

// mainEntry is the index of a mapped record's main resource, its first
// entry after the Patient; -1 for none.
func mainEntry(res *mapping.Result) int {
	return slices.IndexFunc(res.Entries, func(e mapping.Entry) bool { return e.ResourceType != "Patient" })
}

// storedNested are the records nested in session s (by their entries'
// Record pointer, "/vitals/0") whose main resource is stored, from an
// earlier version sent on its own, so that the session is a new version
// of them (mapping.Options.UpdateNested). A nested record received on its
// own with the session's version is not one (what is stored is that
// version already), nor one whose latest version received on its own
// says what the session says of it (nothing to amend).
func storedNested(st store.Tx, nestedL *nestedLedgers, tenant string, rec record, s *mapping.Session, res *mapping.Result) (map[string]bool, error) {
	var out map[string]bool
	src := s.Env().Source
	var session map[string]any // rec.body decoded, once a nested record was received on its own
	ptrs := nestedPointers(s)
	for j, n := range s.Nested() {
		ptr := ptrs[j]
		// The ledger first (one keyed read): a record never received on
		// its own has nothing stored of it to amend, which is the usual
		// case, and costs no search.
		versions, err := nestedL.versions(src.System, n.Kind, n.RecordID)
		if err != nil {
			return nil, err
		}
		if len(versions) == 0 || slices.ContainsFunc(versions, func(l *store.Ledger) bool { return l.Version == rec.version }) {
			continue // never on its own, or this version of it is what is stored
		}
		if session == nil {
			session, _ = decodeRecord(rec.body)
		}
		latest, ok := decodeRecord(versions[len(versions)-1].Input)
		nested, _ := nestedForm(session, n.Kind, n.RecordID)
		if ok && sameClinical(latest, nested) && !withdrawnInput(latest) {
			continue // it says what is stored already
		}
		i := slices.IndexFunc(res.Entries, func(e mapping.Entry) bool { return e.Record == ptr && e.ResourceType != "Patient" })
		if i < 0 {
			continue
		}
		main, err := storedEntry(st, tenant, &res.Entries[i]) // a nested record's first entry is its main resource
		if err != nil {
			return nil, err
		}
		if main == nil {
			// Received, but nothing of it is stored: unless its adverse
			// event was deleted (withdrawn), whose new version is mapped
			// in update mode, so that its Flag is active again.
			if gone, err := mainGone(st, tenant, &res.Entries[i]); err != nil || !gone {
				if err != nil {
					return nil, err
				}
				continue
			}
		}
		if out == nil {
			out = map[string]bool{}
		}
		out[ptr] = true
	}
	return out, nil
}

// mainGone reports whether e, a record's main entry, is an AdverseEvent
// deleted since it was stored: a withdrawal (or a client's DELETE) deletes
// it, where it marks every other resource entered-in-error, which
// storedEntry still finds. A version sent after it brings the record back
// and is a new version of it (update mode): in the first-version mode
// the conditional create of its suicidal-ideation Flag matched the Flag
// the withdrawal left entered-in-error, at the gateway and at the EHRs,
// and the safety signal stayed retired (an EHR review).
func mainGone(st store.Tx, tenant string, e *mapping.Entry) (bool, error) {
	if e.ResourceType != "AdverseEvent" {
		return false, nil
	}
	_, err := st.Read("AdverseEvent", tenantID(tenant, e.URL[len("AdverseEvent/"):]))
	switch {
	case errors.Is(err, store.ErrGone):
		return true, nil
	case err == nil, errors.Is(err, store.ErrNotFound):
		return false, nil
	}
	return false, err
}

// storedEntry is the stored resource a mapped entry writes, nil when
// there is none.
func storedEntry(st store.Tx, tenant string, e *mapping.Entry) (*store.Resource, error) {
	if e.ResourceType == "AdverseEvent" { // deterministic id
		r, err := st.Read("AdverseEvent", tenantID(tenant, e.URL[len("AdverseEvent/"):]))
		if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrGone) {
			return nil, nil
		}
		return r, err
	}
	found, err := searchAll(st, e.ResourceType, "identifier", search.Token(e.IdentifierSystem, e.IdentifierValue))
	if err != nil || len(found) == 0 {
		return nil, err
	}
	return found[0], nil
}

// ledgerAt is the ledger entry of a record version with its input, nil
// when there is none or it was stored before the ledger kept inputs
// (nothing to compare).
func ledgerAt(st store.Tx, system string, kind mapping.Kind, recordID, version string) (*store.Ledger, error) {
	if recordID == "" {
		return nil, nil
	}
	l, err := st.Ledger(system, string(kind), recordID, version) // one row by key: usually none
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	case len(l.Input) == 0:
		return nil, nil
	}
	return l, nil
}

// infusionForm is the infusion record a session document carries: its
// infusion with the session's envelope.
func infusionForm(session map[string]any) map[string]any {
	in, _ := session["infusion"].(map[string]any)
	out := make(map[string]any, len(in)+2)
	for k, v := range in {
		out[k] = v
	}
	out["source"], out["patient"] = session["source"], session["patient"]
	return out
}

// nestedForm is the record of kind with id recordID that a session
// document nests, as it is sent on its own: its members but recordId, the
// session's envelope with the record's id, and the session's id as its
// sessionId. ok is false when the session does not nest it.
func nestedForm(session map[string]any, kind mapping.Kind, recordID string) (map[string]any, bool) {
	list, _ := session[nestedMember[kind]].([]any)
	for _, item := range list {
		m, _ := item.(map[string]any)
		if m == nil || m["recordId"] != recordID {
			continue
		}
		out := make(map[string]any, len(m)+2)
		for k, v := range m {
			if k != "recordId" {
				out[k] = v
			}
		}
		srcIn, _ := session["source"].(map[string]any)
		src := make(map[string]any, len(srcIn))
		for k, v := range srcIn {
			src[k] = v
		}
		src["recordId"] = recordID
		out["source"], out["patient"], out["sessionId"] = src, session["patient"], srcIn["recordId"]
		return out, true
	}
	return nil, false
}

// sameClinical reports whether two forms of a record say the same of the
// patient's care: the same members but their envelopes (source, patient),
// which a new version's and a session's differ in.
func sameClinical(a, b map[string]any) bool {
	if a == nil || b == nil {
		return false
	}
	bare := func(d map[string]any) map[string]any {
		c := make(map[string]any, len(d))
		for k, v := range d {
			if k != "source" && k != "patient" {
				c[k] = v
			}
		}
		return c
	}
	return reflect.DeepEqual(bare(a), bare(b))
}

// withdrawnInput reports whether rec, a record as received (decoded),
// withdraws the record (source.status entered-in-error): a version that
// says what it says otherwise brings the record back, which is something
// to amend.
func withdrawnInput(rec map[string]any) bool {
	src, _ := rec["source"].(map[string]any)
	return src["status"] == "entered-in-error"
}

// decodeRecord decodes a record as the content hash sees it (numbers as
// float64: 76 and 76.0 are the same content).
func decodeRecord(b []byte) (map[string]any, bool) {
	var m map[string]any
	return m, len(b) > 0 && json.Unmarshal(b, &m) == nil && m != nil
}
