package mapping

import (
	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// gradeSeverity maps a CTCAE grade to the required-bound AE severity.
func gradeSeverity(grade int) string {
	switch {
	case grade <= 1:
		return "mild"
	case grade == 2:
		return "moderate"
	default:
		return "severe"
	}
}

// checkCausalitySession enforces that an event with causality names its
// session (sessionId), unless inSession.
func checkCausalitySession(ae *AdverseEventBody, p string, inSession bool, v *violations) {
	if ae.Causality != "" && ae.SessionID == "" && !inSession {
		v.add("adverse-event.causality-without-session", p+"/causality", "a causality assessment needs sessionId: it judges that session's drug")
	}
}

// checkAdverseEvent enforces the adverse-event rules at pointer p.
// inSession is true for an event nested in a session document.
func checkAdverseEvent(ae *AdverseEventBody, p string, inSession bool, v *violations) {
	checkCausalitySession(ae, p, inSession, v)
	switch {
	case ae.Severity == "" && ae.CTCAEGrade == nil:
		v.add("adverse-event.severity-missing", p+"/severity", "an adverse event needs a severity or a CTCAE grade")
	case ae.Severity != "" && ae.CTCAEGrade != nil && gradeSeverity(*ae.CTCAEGrade) != ae.Severity:
		v.add("adverse-event.severity-grade-mismatch", p+"/severity", "CTCAE grade 1 is mild, 2 moderate, 3 to 5 severe")
	}
	serious := ae.Serious != nil && *ae.Serious
	if g := ae.CTCAEGrade; g != nil && *g >= 4 && !serious {
		v.add("adverse-event.grade-implies-serious", p+"/serious", "CTCAE grade 4 or 5 events are serious")
	}
	switch {
	case !serious && len(ae.SeriousnessCriteria) > 0:
		v.add("adverse-event.criteria-without-serious", p+"/seriousnessCriteria", "seriousness criteria apply only to serious events")
	case serious && len(ae.SeriousnessCriteria) == 0:
		v.add("adverse-event.criteria-without-serious", p+"/seriousnessCriteria", "a serious event needs at least one seriousness criterion")
	}
	if g := ae.CTCAEGrade; g != nil && *g == 5 {
		hasDeath := false
		for _, c := range ae.SeriousnessCriteria {
			hasDeath = hasDeath || c == "death"
		}
		if ae.Outcome != "fatal" || !hasDeath {
			v.add("adverse-event.fatal-grade", p+"/outcome", "a CTCAE grade 5 event has outcome fatal and the criterion death")
		}
	} else {
		checkFatal(ae, p, serious, v)
	}
	for _, a := range ae.ActionTaken {
		if a == "none" && len(ae.ActionTaken) > 1 {
			v.add("adverse-event.action-none-alone", p+"/actionTaken", "the action none stands alone: leave it out when an action was taken")
			break
		}
	}
	onset, _ := parseTime(ae.OnsetAt)
	if t, ok := parseTime(ae.DetectedAt); ok && t.Before(onset) {
		v.add("time.order", p+"/detectedAt", "detectedAt must not be before onsetAt")
	}
	recorded, hasRecorded := parseTime(ae.RecordedAt)
	switch detected, ok := parseTime(ae.DetectedAt); {
	case hasRecorded && recorded.Before(onset):
		v.add("time.order", p+"/recordedAt", "recordedAt must not be before onsetAt")
	case hasRecorded && ok && recorded.Before(detected):
		v.add("time.order", p+"/recordedAt", "recordedAt must not be before detectedAt: an event is documented once it is noticed")
	}
}

// adverseEventWarnings reports what an adverse event at pointer p records
// that does not agree without being a rule broken: an outcome fatal
// with a severity mild or moderate (an event that results in death is
// severe, CTCAE grade 5; a grade given is checked by the grade rules).
func adverseEventWarnings(ae *AdverseEventBody, p string, w *violations) {
	if ae.Outcome == "fatal" && ae.CTCAEGrade == nil && (ae.Severity == "mild" || ae.Severity == "moderate") {
		w.add("adverse-event.fatal-severity", p+"/severity", "the event's outcome is fatal while its severity is not severe: an event that results in death is severe (CTCAE grade 5); check the severity and the outcome, and send the corrected record as a new version")
	}
}

// checkFatal: an event that results in death is serious, with the
// criterion death (ICH E2A), and the criterion death is an event whose
// outcome is fatal. A grade 5 event is checked by adverse-event.fatal-grade
// instead. One issue at the field to correct.
func checkFatal(ae *AdverseEventBody, p string, serious bool, v *violations) {
	hasDeath := false
	for _, c := range ae.SeriousnessCriteria {
		hasDeath = hasDeath || c == "death"
	}
	switch {
	case ae.Outcome == "fatal" && !serious:
		v.add("adverse-event.fatal-outcome", p+"/serious", "an event with outcome fatal is serious, with the criterion death")
	case ae.Outcome == "fatal" && !hasDeath:
		v.add("adverse-event.fatal-outcome", p+"/seriousnessCriteria", "an event with outcome fatal has the seriousness criterion death")
	case hasDeath && serious && ae.Outcome != "fatal":
		v.add("adverse-event.fatal-outcome", p+"/outcome", "the seriousness criterion death needs outcome fatal")
	}
}

// eventConcept codes the event: SNOMED (or local) and MedDRA where known,
// with the clinic's text when it sent one.
func eventConcept(ae *AdverseEventBody) fhir.CodeableConcept {
	keys := []string{"ae." + ae.Event}
	if hasConcept("ae." + ae.Event + ".meddra") {
		keys = append(keys, "ae."+ae.Event+".meddra")
	}
	return cc(ae.EventText, keys...)
}

// adverseEvent maps an adverse event. R4 cannot search AdverseEvent by
// identifier, so it gets a deterministic id derived from its identifier and
// is written with PUT AdverseEvent/<id> (idempotent), or deleted when the
// record is withdrawn (R4 AdverseEvent has no status to mark it).
// nestedIn is the session document the event is nested in (its Procedure
// and MedicationAdministration travel in the same Bundle), nil for an
// event sent on its own.
func (m *mapper) adverseEvent(ae *AdverseEventBody, recordID string, nestedIn *Session) {
	id := m.ident(nsAdverseEvent, recordID)
	rid := id.uuid()
	url := "AdverseEvent/" + rid
	// An event of suicidal ideation flags the patient, as a positive
	// suicide screen does (the Flag points at the AdverseEvent). A later
	// version always carries the Flag, as a later PHQ-9 does: inactive
	// when the event is no longer suicidal ideation (a correction retires
	// the signal), entered-in-error when the record is withdrawn, whatever
	// event the withdrawn body names; the ingest drops such an entry where
	// no Flag is stored (Entry.Withdraws).
	// A withdrawal's Flag names the AdverseEvent it deletes by its id.
	signal := safetySignal{flag: "flag.suicidal-ideation-event", source: id, positive: ae.Event == "suicidal-ideation"}
	if m.withdrawn {
		signal.ref = url
	}
	defer func() { m.flag(id, signal, ae.OnsetAt, m.practitioner(ae.Recorder)) }()
	if m.withdrawn {
		m.entries = append(m.entries, Entry{FullURL: id.fullURL(), ResourceType: "AdverseEvent",
			IdentifierSystem: id.System, IdentifierValue: id.Value, Method: fhir.HTTPVerbDELETE, URL: url})
		return
	}
	res := fhir.AdverseEvent{
		Id:           ptr(rid),
		Meta:         meta(profile("kg-adverse-event")),
		Identifier:   ptr(identifier(id)),
		Actuality:    fhir.AdverseEventActualityActual,
		Event:        ptr(eventConcept(ae)),
		Subject:      m.patient,
		Date:         ptr(ae.OnsetAt),
		Detected:     strp(ae.DetectedAt),
		RecordedDate: strp(ae.RecordedAt),
		Recorder:     m.practitioner(ae.Recorder),
	}
	severity := ae.Severity
	if g := ae.CTCAEGrade; g != nil {
		severity = gradeSeverity(*g)
		res.Extension = append(res.Extension, fhir.Extension{Url: extensionURL("ctcae-grade"), ValueInteger: ptr(*g)})
	}
	res.Severity = ptr(cc("", "ae.severity."+severity))
	if ae.Serious != nil && *ae.Serious {
		res.Seriousness = ptr(cc("", "ae.serious.true"))
		for _, c := range ae.SeriousnessCriteria {
			res.Extension = append(res.Extension, fhir.Extension{Url: extensionURL("seriousness-criterion"),
				ValueCodeableConcept: ptr(cc("", "ae.criterion."+c))})
		}
	} else {
		res.Seriousness = ptr(cc("", "ae.serious.false"))
	}
	for _, a := range ae.ActionTaken {
		res.Extension = append(res.Extension, fhir.Extension{Url: extensionURL("adverse-event-action-taken"),
			ValueCodeableConcept: ptr(cc("", "ae.action."+a))})
	}
	if ae.Outcome != "" {
		res.Outcome = ptr(cc("", "ae.outcome."+ae.Outcome))
	}

	// The suspected cause: the drug given in the session and the session,
	// where the drug can have caused the event (suspectCause); else only
	// the link to the session (related-session).
	sessionID := ae.SessionID
	if nestedIn != nil {
		sessionID = nestedIn.Source.RecordID
	}
	if sessionID != "" {
		procID, medID, _ := m.sessionIDs(sessionID)
		medRef, procRef := logical("MedicationAdministration", medID, ""), logical("Procedure", procID, "")
		if nestedIn != nil {
			medRef, procRef = literal(medID.fullURL()), literal(procID.fullURL())
		}
		if suspectCause(ae, nestedIn) {
			var causality []fhir.AdverseEventSuspectEntityCausality
			if ae.Causality != "" {
				causality = []fhir.AdverseEventSuspectEntityCausality{{
					Assessment: ptr(cc("", "ae.causality."+ae.Causality)),
					Author:     m.practitioner(ae.Recorder),
				}}
			}
			res.SuspectEntity = []fhir.AdverseEventSuspectEntity{
				{Instance: medRef, Causality: causality},
				{Instance: procRef, Causality: causality},
			}
		} else {
			res.Extension = append(res.Extension, fhir.Extension{Url: ExtRelatedSession, ValueReference: &procRef})
		}
	}
	m.entries = append(m.entries, Entry{FullURL: id.fullURL(), ResourceType: "AdverseEvent", Resource: res,
		IdentifierSystem: id.System, IdentifierValue: id.Value, Method: fhir.HTTPVerbPUT, URL: url})
}

// suspectCause reports whether an adverse event names its session's drug
// and session as suspected causes (R4 suspectEntity: "the entity that is
// suspected to have caused the adverse event"): always with a causality
// assessment (the clinic judged the drug; the rules keep it to a session
// that gave it, from its start), and otherwise unless the session document
// it is nested in says the drug cannot have caused it: the session was not
// done, or the event began before the infusion started. An event sent on
// its own is mapped without its session: its sessionId names the suspects.
func suspectCause(ae *AdverseEventBody, nestedIn *Session) bool {
	if ae.Causality != "" || nestedIn == nil {
		return true
	}
	in := &nestedIn.Infusion
	if in.Status == "not-done" {
		return false
	}
	onset, ok1 := parseTime(ae.OnsetAt)
	start, ok2 := parseTime(in.InfusionStart)
	return !ok1 || !ok2 || !onset.Before(start)
}

// SuspectWarnings warns the sender of an adverse event sent on its own
// without causality whose stored session (s, as checkNamedSession reads it)
// says the drug cannot have caused it: the session was not done or was
// withdrawn, or its infusion began after the event's onset. Its mapping, which does not know
// the session, names the session's drug and session as suspected causes
// (suspectCause); the warning says so and how to chart the event without a
// suspect. Nil for other records, an event with causality (the rules
// refuse those against such a session) and a withdrawal.
func SuspectWarnings(rec Record, s StoredSession) []Violation {
	r, ok := rec.(*AdverseEvent)
	if !ok || r.SessionID == "" || r.Causality != "" || r.Source.Status == "entered-in-error" {
		return nil
	}
	onset, ok := parseTime(r.OnsetAt)
	var why string
	switch {
	case s.NotDone:
		why = "was not done (no drug was given)"
	case s.Withdrawn:
		why = "was withdrawn (entered-in-error: charted as never given)"
	case s.HasWindow && ok && onset.Before(s.Window.Start):
		why = "began its infusion after this event's onset"
	default:
		return nil
	}
	var w violations
	w.add("adverse-event.suspect-not-dosed", "/sessionId",
		"the session this event names %s, yet the event is charted with the session's drug and session as its suspected causes (AdverseEvent.suspectEntity: an event sent on its own is mapped without its session): to chart it linked to the session without a suspect, send it (a new version, the same record id) in the session document, and its later versions there too (a version sent on its own names the suspects again)",
		why)
	return w.err(KindAdverseEvent).(*RuleError).Violations
}
