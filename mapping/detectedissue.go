package mapping

import (
	"fmt"
	"slices"
	"strings"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// criticalValue is one pre-dose measurement of a session that the Safety
// thresholds interpret as critical (HH or LL).
type criticalValue struct {
	// vitals is the index of the session's vitals record.
	vitals int
	// key is the code table key of the Observation that charts it.
	key string
	// name says what was measured, for DetectedIssue.detail.
	name string
	// interp is the interpretation's code table key (interp.HH, interp.LL).
	interp string
	// pointer is the JSON pointer of the value in the session document.
	pointer string
}

// criticalPreDose lists the critical values among a session's vitals at
// the pre-dose time point, in document order.
func criticalPreDose(s *Session, lim Safety) []criticalValue {
	var out []criticalValue
	for i := range s.Vitals {
		for _, c := range criticalVitals(&s.Vitals[i], fmt.Sprintf("/vitals/%d", i), lim) {
			c.vitals = i
			out = append(out, c)
		}
	}
	return out
}

// criticalVitals lists the critical values of one vitals record at the
// pre-dose time point (none at another time point), at pointer p.
func criticalVitals(vs *VitalsBody, p string, lim Safety) []criticalValue {
	if vs.Timepoint != "pre-dose" {
		return nil
	}
	var out []criticalValue
	for _, x := range measurements(vs, lim) {
		if severity(x.interp) == 2 {
			out = append(out, criticalValue{key: x.key, name: x.name, interp: x.interp, pointer: p + x.pointer})
		}
	}
	return out
}

// dosed reports whether a session gave its drug: not not-done, and a dose
// given above 0.
func dosed(in *InfusionBody) bool {
	if in.Status == "not-done" {
		return false
	}
	a := administered(in)
	return a.doseMg != nil && *a.doseMg > 0
}

// sessionWarnings warns the sender of a session that gave its drug after a
// critical pre-dose measurement, one warning at each critical value (none
// for a withdrawal: its DetectedIssue is entered-in-error).
func sessionWarnings(s *Session, lim Safety, w *violations) {
	if !dosed(&s.Infusion) { // a withdrawal has no warnings (warnings)
		return
	}
	for _, c := range criticalPreDose(s, lim) {
		w.add("session.dosed-despite-critical-vitals", c.pointer,
			"the session gave its drug after a critical pre-dose %s (%s): the session is charted with a DetectedIssue for the receiving clinician",
			c.name, concept(c.interp).Code)
	}
}

// issueSuffix derives the DetectedIssue's identifier from the session's.
const issueSuffix = "critical-pre-dose-vitals"

// detectedIssue adds, to a session that gave its drug after a critical
// pre-dose measurement, a DetectedIssue implicating the administration and
// the critical Observations: final. A later version (update mode) always
// carries it, entered-in-error when it no longer raises it for any reason
// (a value corrected, the pre-dose record relabelled or left out, the
// session not done or given no dose: charted in error, since the session
// happened once), which the ingest keeps only while no pre-dose value of
// the session stored apart from the version is critical (IssueRetiredBy:
// a record left out stays as stored); a withdrawn session always carries it entered-in-error,
// whatever its body still holds (as the Flag of a withdrawn assessment),
// so a withdrawal voids what a version wrote. The ingest drops such an
// entry where no DetectedIssue is stored (Entry.Withdraws).
func (m *mapper) detectedIssue(s *Session, recordID string) {
	in := &s.Infusion
	crit := criticalPreDose(s, m.opts.safety())
	raised := dosed(in) && len(crit) > 0
	if !raised && !m.opts.Update { // a withdrawal maps in update mode
		return
	}
	status := fhir.ObservationStatusFinal
	if m.withdrawn || !raised {
		status = fhir.ObservationStatusEnteredInError
	}
	id, medID := m.sessionIssueIDs(recordID)
	issue := m.sessionIssue(id, status, literal(medID.fullURL()))
	issue.IdentifiedDateTime = strp(in.InfusionStart)
	issue.Author = m.practitioner(in.Clinician)
	if raised {
		var evidence []fhir.Reference
		var names []string
		seen := map[string]bool{}
		for _, c := range crit {
			names = append(names, fmt.Sprintf("%s (%s)", c.name, concept(c.interp).Code))
			obs := m.ident(nsVitals, s.Vitals[c.vitals].RecordID).child(concept(c.key).Code)
			if seen[obs.Value] {
				continue // both blood pressures of one panel
			}
			seen[obs.Value] = true
			evidence = append(evidence, literal(obs.fullURL()))
		}
		issue.Implicated = append(issue.Implicated, evidence...)
		issue.Evidence = []fhir.DetectedIssueEvidence{{Detail: evidence}}
		what := "a critical pre-dose " + names[0]
		if len(names) > 1 {
			what = "critical pre-dose values: " + strings.Join(names, ", ")
		}
		issue.Detail = ptr(fmt.Sprintf("%s given after %s", drugs[in.Drug].medText, what))
	}
	m.add("DetectedIssue", id, issue)
	m.entries[len(m.entries)-1].Withdraws = status == fhir.ObservationStatusEnteredInError
}

// sessionIssueIDs are the identifiers of the DetectedIssue of the session
// recordID and of its MedicationAdministration.
func (m *mapper) sessionIssueIDs(recordID string) (issue, med ident) {
	procID, medID, _ := m.sessionIDs(recordID)
	return procID.child(issueSuffix), medID
}

// sessionIssue is the part of a session's DetectedIssue (id) that every
// version says, of status status, implicating the session's
// MedicationAdministration (med).
func (m *mapper) sessionIssue(id ident, status fhir.ObservationStatus, med fhir.Reference) fhir.DetectedIssue {
	return fhir.DetectedIssue{
		Meta:       meta(profile("kg-detected-issue")),
		Identifier: []fhir.Identifier{identifier(id)},
		Status:     status,
		Code:       ptr(cc("", "issue.observation-alert")),
		Severity:   ptr(fhir.DetectedIssueSeverityHigh),
		Patient:    ptr(m.patient),
		Implicated: []fhir.Reference{med},
	}
}

// retireSessionIssue adds, to a later version (update mode) of a vitals
// record sent on its own that names its session (sessionId) and holds no
// critical pre-dose value any more (corrected, relabelled to another time
// point, withdrawn), the session's DetectedIssue entered-in-error: the
// entry a session version that no longer raises it carries. The mapping
// does not know the session's other pre-dose measurements nor whether the
// session raised the issue: the ingest keeps the entry only where the
// DetectedIssue is stored and still final (Entry.Withdraws), of the
// record's patient, and no other stored pre-dose measurement of the
// session is charted critical (docs/mapping.md §9).
// The administration is referenced by identifier: it is not in the Bundle.
func (m *mapper) retireSessionIssue(vs *VitalsBody) {
	if vs.SessionID == "" || !m.opts.Update || (!m.withdrawn && len(criticalVitals(vs, "", m.opts.safety())) > 0) {
		return
	}
	id, medID := m.sessionIssueIDs(vs.SessionID)
	m.add("DetectedIssue", id, m.sessionIssue(id, fhir.ObservationStatusEnteredInError, logical("MedicationAdministration", medID, "")))
	m.entries[len(m.entries)-1].Withdraws = true
}

// IssueRetiredBy reports whether entry e of rec's mapping is a session
// DetectedIssue entered-in-error that the ingest re-judges against the
// stored records (keeping it only while no pre-dose measurement of the
// session stored apart from rec is critical): the one a vitals record
// sent on its own retires (retireSessionIssue), and the one a session
// version that gave its drug carries when its own pre-dose values are no
// longer critical, since a record the version leaves out, or one sent on
// its own, stays as stored. Not a withdrawn session's, nor one that gave
// no drug: those retire it whatever is stored.
func IssueRetiredBy(rec Record, e *Entry) bool {
	if e.ResourceType != "DetectedIssue" || !e.Withdraws {
		return false
	}
	switch r := rec.(type) {
	case *Vitals:
		return true
	case *Session:
		return r.Source.Status != "entered-in-error" && dosed(&r.Infusion)
	}
	return false
}

// IssueStandsWarnings warns the sender of a record whose version would
// retire its session's DetectedIssue (IssueRetiredBy) that the ingest
// leaves it final, as stored, because pre-dose measurements of the session
// stored apart from the record (critical, Linked.Critical) still raise it:
// the issue's evidence and detail stay as they were raised and may still
// name the value this version corrected. One warning per vitals record
// that keeps it, naming it, at /sessionId of a vitals record and at
// infusionStart of a session. The issue is not rewritten from the stored
// values: a record's mapping writes the resources of that record only.
func IssueStandsWarnings(rec Record, critical []Linked) []Violation {
	p := "/sessionId"
	if _, at := infusionOf(rec); at != "" {
		p = at + "/infusionStart"
	}
	var w violations
	for _, id := range criticalVitalsRecords(critical) {
		w.add("session.critical-issue-stands", p,
			"this version no longer raises its session's DetectedIssue, but vitals record %s, a pre-dose measurement of the session stored apart from this record, is charted critical (HH or LL): the DetectedIssue stays final as stored, its evidence and detail as they were raised, which may still name a value this version corrected; to have them rewritten, send the session document again with its pre-dose vitals as they now stand (that record among them)", id)
	}
	if len(w) == 0 {
		return nil
	}
	return w
}

// PreDoseWarnings warns the sender of a pre-dose vitals record sent on its
// own that names a session (sessionId) at each critical value, for the
// ingest to answer when the named session is stored and gave its drug
// (the cross-record form of the DetectedIssue: a warning only; the
// DetectedIssue is the session document's). Nil for other records and a
// withdrawal.
func PreDoseWarnings(rec Record, opts Options) []Violation {
	r, ok := rec.(*Vitals)
	if !ok || r.SessionID == "" || r.Source.Status == "entered-in-error" {
		return nil
	}
	var w violations
	for _, c := range criticalVitals(&r.VitalsBody, "", opts.safety()) {
		w.add("session.dosed-despite-critical-vitals", c.pointer,
			"the session this measurement is part of (sessionId, or the one its stored version is part of), stored before, gave its drug after this critical pre-dose %s (%s): tell the session's clinician",
			c.name, concept(c.interp).Code)
	}
	if len(w) == 0 {
		return nil
	}
	return w.err(KindVitals).(*RuleError).Violations
}

// StoredCriticalWarnings warns the sender of a session that gave its drug
// (DosedSession) about the pre-dose vitals records stored apart from it
// that name it and were charted critical (Linked.Critical): one warning
// per vitals record, at infusionStart, naming it (the cross-record form
// of the DetectedIssue). linked is what CheckStored accepted: none of
// another patient.
func StoredCriticalWarnings(rec Record, linked []Linked, opts Options) []Violation {
	if _, ok := DosedSession(rec, opts); !ok {
		return nil
	}
	_, p := infusionOf(rec)
	var w violations
	for _, id := range criticalVitalsRecords(linked) {
		w.add("session.dosed-despite-critical-vitals", p+"/infusionStart",
			"the session gave its drug after a pre-dose measurement charted critical (HH or LL), vitals record %s stored before: check the measurement and the session", id)
	}
	if len(w) == 0 {
		return nil
	}
	return w
}

// criticalVitalsRecords are the ids of the vitals records among linked
// charted critical (Linked.Critical), each once, in order.
func criticalVitalsRecords(linked []Linked) []string {
	var ids []string
	for _, l := range linked {
		if l.Critical && l.Kind == KindVitals && !slices.Contains(ids, l.RecordID) {
			ids = append(ids, l.RecordID)
		}
	}
	return ids
}
