package mapping

import (
	"fmt"
	"math"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// checkSession checks the session's parts and the rules that tie them
// together: record ids unique per kind, and every record within the
// session's time window (window.go).
func checkSession(s *Session, v *violations) {
	checkInfusion(&s.Infusion, "/infusion", v)
	w, hasWindow := windowOf(&s.Infusion)
	windowed := func(rec any, p string) {
		if hasWindow {
			checkWindowed(rec, w, p, v)
		}
	}
	seen := map[string]bool{}
	dup := func(kind, id, p string) {
		if seen[kind+"/"+id] {
			v.add("session.duplicate-record-id", p, "a record id appears twice among the session's %s", kind)
		}
		seen[kind+"/"+id] = true
	}
	notGiven := func(rec any, p string) {
		if s.Infusion.Status == "not-done" {
			checkNotGiven(rec, p, false, v)
		}
	}
	for i := range s.Vitals {
		p := fmt.Sprintf("/vitals/%d", i)
		dup("vitals", s.Vitals[i].RecordID, p+"/recordId")
		checkVitals(&s.Vitals[i], p, v)
		windowed(&s.Vitals[i], p)
		notGiven(&s.Vitals[i], p)
	}
	for i := range s.Assessments {
		p := fmt.Sprintf("/assessments/%d", i)
		dup("assessments", s.Assessments[i].RecordID, p+"/recordId")
		checkAssessment(&s.Assessments[i], p, v)
		windowed(&s.Assessments[i], p)
		notGiven(&s.Assessments[i], p)
	}
	for i := range s.AdverseEvents {
		p := fmt.Sprintf("/adverseEvents/%d", i)
		ae := &s.AdverseEvents[i]
		dup("adverseEvents", ae.RecordID, p+"/recordId")
		checkAdverseEvent(ae, p, true, v)
		windowed(ae, p)
		notGiven(ae, p)
	}
}

// session maps the infusion and everything recorded around it into one
// Bundle whose resources reference each other by urn:uuid. The body weight
// measured at the session is one Observation: when a vitals record holds
// the infusion's dosing weight, the MedicationRequest and the
// MedicationAdministration reference that vitals Observation and the
// infusion makes none of its own. The session's serious (or high-grade)
// adverse events are named in the Procedure's complications, and a drug
// given after a critical pre-dose measurement is a DetectedIssue
// (detectedissue.go).
func (m *mapper) session(s *Session) {
	id := s.Source.RecordID
	extra := sessionExtras{complications: m.complications(s)}
	if i := sessionWeight(s); i >= 0 {
		w := m.ident(nsVitals, s.Vitals[i].RecordID).child(concept("vitals.body-weight").Code)
		extra.weight = &w
	}
	m.infusion(&s.Infusion, id, extra)
	nested := func(p string, i int, mapRecord func()) {
		from, ptr := len(m.entries), fmt.Sprintf("/%s/%d", p, i)
		if m.opts.UpdateNested[ptr] && !m.opts.Update {
			// A new version of a record stored on its own before.
			m.opts.Update = true
			defer func() { m.opts.Update = false }()
		}
		mapRecord()
		for j := from; j < len(m.entries); j++ {
			m.entries[j].Record = ptr
		}
	}
	for i := range s.Vitals {
		nested("vitals", i, func() { m.vitals(&s.Vitals[i], s.Vitals[i].RecordID, id) })
	}
	for i := range s.Assessments {
		nested("assessments", i, func() { m.assessment(&s.Assessments[i], s.Assessments[i].RecordID, id) })
	}
	for i := range s.AdverseEvents {
		nested("adverseEvents", i, func() { m.adverseEvent(&s.AdverseEvents[i], s.AdverseEvents[i].RecordID, s) })
	}
	m.detectedIssue(s, id)
}

// WeightAgreementKg is how far a vitals body weight may differ from the
// infusion's dosing weight (after converting pounds) and still be the same
// measurement: half the 0.1 kg resolution of a clinical scale.
const WeightAgreementKg = 0.05

// poundKg is the mass of the avoirdupois pound (UCUM [lb_av]) in kg.
const poundKg = 0.45359237

// sessionWeight returns the index of the first vitals record of a given
// session whose body weight is the infusion's dosing weight, or -1 (no
// dosing weight, not given, or no vitals weight agrees: then both are
// charted, as different facts).
func sessionWeight(s *Session) int {
	w := s.Infusion.BodyWeightKg
	if w == nil || s.Infusion.Status == "not-done" {
		return -1
	}
	for i := range s.Vitals {
		bw := s.Vitals[i].BodyWeight
		if bw == nil {
			continue
		}
		kg := bw.Value
		if bw.Unit == "[lb_av]" {
			kg *= poundKg
		}
		if math.Abs(kg-*w) <= WeightAgreementKg {
			return i
		}
	}
	return -1
}

// complications names a session's adverse events that are serious or of at
// least the configured CTCAE grade, for Procedure.complication: the event's
// coding with a text that says why it is named. An event sent with a
// severity and no grade counts as the lowest grade of its severity (mild 1,
// moderate 2, severe 3), the grades the mapping charts as that severity, so
// a severe event is named whichever way the clinic says it. R4's
// complication is "during the procedure, or in the immediate
// post-performance period": a session not done has none, and an event the
// drug cannot have caused (one that began before the infusion, without a
// causality assessment: suspectCause) is not one (a mapping developer's
// review: both were named).
func (m *mapper) complications(s *Session) []fhir.CodeableConcept {
	if s.Infusion.Status == "not-done" {
		return nil
	}
	minGrade := m.opts.safety().AdverseEventGrade
	var out []fhir.CodeableConcept
	aes := s.AdverseEvents
	for i := range aes {
		ae := &aes[i]
		if !suspectCause(ae, s) {
			continue
		}
		serious := ae.Serious != nil && *ae.Serious
		grade := severityGrade[ae.Severity]
		if ae.CTCAEGrade != nil {
			grade = *ae.CTCAEGrade
		}
		graded := grade > 0 && grade >= minGrade
		if !serious && !graded {
			continue
		}
		c := eventConcept(ae)
		why := "serious adverse event"
		switch {
		case serious && ae.CTCAEGrade != nil:
			why = fmt.Sprintf("serious adverse event, CTCAE grade %d", *ae.CTCAEGrade)
		case !serious && ae.CTCAEGrade != nil:
			why = fmt.Sprintf("adverse event of CTCAE grade %d", *ae.CTCAEGrade)
		case !serious:
			why = ae.Severity + " adverse event"
		}
		c.Text = ptr(fmt.Sprintf("%s (%s)", *c.Text, why))
		out = append(out, c)
	}
	return out
}

// severityGrade is the lowest CTCAE grade of each severity (gradeSeverity).
var severityGrade = map[string]int{"mild": 1, "moderate": 2, "severe": 3}
