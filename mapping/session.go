package mapping

import "fmt"

// checkSession checks the session's parts and the rules that tie them
// together: record ids unique per kind, adverse events not before the
// infusion started.
func checkSession(s *Session, v *violations) {
	checkInfusion(&s.Infusion, "/infusion", v)
	seen := map[string]bool{}
	dup := func(kind, id, p string) {
		if seen[kind+"/"+id] {
			v.add("session.duplicate-record-id", p, "a record id appears twice among the session's %s", kind)
		}
		seen[kind+"/"+id] = true
	}
	for i := range s.Vitals {
		p := fmt.Sprintf("/vitals/%d", i)
		dup("vitals", s.Vitals[i].RecordID, p+"/recordId")
		checkVitals(&s.Vitals[i], p, v)
	}
	for i := range s.Assessments {
		p := fmt.Sprintf("/assessments/%d", i)
		dup("assessments", s.Assessments[i].RecordID, p+"/recordId")
		checkAssessment(&s.Assessments[i], p, v)
	}
	start, hasStart := parseTime(s.Infusion.InfusionStart)
	for i := range s.AdverseEvents {
		p := fmt.Sprintf("/adverseEvents/%d", i)
		ae := &s.AdverseEvents[i]
		dup("adverseEvents", ae.RecordID, p+"/recordId")
		checkAdverseEvent(ae, p, true, v)
		if onset, ok := parseTime(ae.OnsetAt); ok && hasStart && onset.Before(start) {
			v.add("session.time-window", p+"/onsetAt", "an adverse event of a session cannot start before the infusion")
		}
	}
}

// session maps the infusion and everything recorded around it into one
// Bundle whose resources reference each other by urn:uuid.
func (m *mapper) session(s *Session) {
	id := s.Source.RecordID
	m.infusion(&s.Infusion, id)
	for i := range s.Vitals {
		m.vitals(&s.Vitals[i], s.Vitals[i].RecordID, id)
	}
	for i := range s.Assessments {
		m.assessment(&s.Assessments[i], s.Assessments[i].RecordID, id)
	}
	for i := range s.AdverseEvents {
		m.adverseEvent(&s.AdverseEvents[i], s.AdverseEvents[i].RecordID, &id)
	}
}
