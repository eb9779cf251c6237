package mapping

import (
	"cmp"
	"fmt"
	"sort"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// checkAssessment enforces the scoring rules of an assessment at pointer p.
func checkAssessment(a *AssessmentBody, p string, v *violations) {
	in := instruments[a.Instrument]
	if in == nil { // the schema's enum makes this unreachable
		v.add("assessment.instrument-unknown", p+"/instrument", "instrument is not supported")
		return
	}
	seen := map[int]bool{}
	scores := make([]int, in.items)
	before := len(*v)
	valid := 0
	for i, it := range a.Items {
		ip := fmt.Sprintf("%s/items/%d", p, i)
		switch {
		case in.items == 0:
			v.add("assessment.item-unknown", ip+"/number", "%s has no items; send its score as total", in.name)
			continue
		case it.Number < 1 || it.Number > in.items:
			v.add("assessment.item-unknown", ip+"/number", "%s has items 1 to %d", in.name, in.items)
			continue
		case seen[it.Number]:
			v.add("assessment.item-duplicate", ip+"/number", "item number appears more than once")
			continue
		}
		seen[it.Number] = true
		if in.yesNo() {
			if it.Answer == nil {
				v.add("assessment.item-answer-missing", ip, "a %s item needs a yes/no answer", in.name)
				continue
			}
		} else {
			if it.Score == nil {
				v.add("assessment.item-answer-missing", ip, "a %s item needs a score", in.name)
				continue
			}
			if *it.Score < 0 || *it.Score > in.maxScore {
				v.add("assessment.score-range", ip+"/score", "%s item scores range from 0 to %d", in.name, in.maxScore)
				continue
			}
			scores[it.Number-1] = *it.Score
		}
		valid++
	}
	itemsOK := len(*v) == before // total checks would only repeat an item's fault
	if in.yesNo() && itemsOK {
		checkSkipLogic(a, p, v)
	}
	// The schema refuses difficulty too, from a list of instruments kept by
	// hand; the mapping refuses it from the instrument's definition.
	if a.Difficulty != "" && in.difficulty == "" {
		v.add("assessment.difficulty-not-applicable", p+"/difficulty", "%s has no difficulty question (only %s has)", in.name, withDifficulty())
	}
	switch {
	case in.items > 0 && len(a.Items) == 0 && a.Total == nil:
		v.add("assessment.empty", p+"/items", "an assessment needs its items, its total or both")
	case in.items == 0 && a.Total == nil:
		v.add("assessment.total-missing", p+"/total", "%s is recorded as a total score", in.name)
	case in.yesNo() && a.Total != nil:
		v.add("assessment.total-not-applicable", p+"/total", "%s has no total score; its risk level is derived from the answers", in.name)
	default:
		// Each problem of the total and the items is reported, not the
		// first only (records.md: each stage reports every problem it
		// finds; a mapping developer's review: a total out of range hid
		// the items missing).
		inRange := a.Total == nil || *a.Total >= 0 && *a.Total <= in.maxTotal
		if !inRange {
			v.add("assessment.total-range", p+"/total", "%s totals range from 0 to %d", in.name, in.maxTotal)
		}
		if a.Total != nil && len(a.Items) > 0 && itemsOK {
			if len(seen) != in.items {
				v.add("assessment.items-incomplete", p+"/items", "with a total, all %d %s items are needed (or none)", in.items, in.name)
			} else if inRange && valid == in.items && in.total(scores) != *a.Total {
				v.add("assessment.total-mismatch", p+"/total", "total does not equal the %s scoring rule applied to the items", in.name)
			}
		}
	}
}

// checkSkipLogic refuses C-SSRS screener answers the form cannot give:
// questions 3-5 are asked only when question 2 is yes, question 7 only
// when question 6 is yes (LOINC 93373-9), so a yes to one of them after a
// no to the question it depends on contradicts it. One issue per
// contradicting answer, at that answer.
func checkSkipLogic(a *AssessmentBody, p string, v *violations) {
	answers := map[int]bool{}
	for _, it := range a.Items {
		answers[it.Number] = *it.Answer
	}
	for i, it := range a.Items {
		ip := fmt.Sprintf("%s/items/%d/answer", p, i)
		switch {
		case it.Number >= 3 && it.Number <= 5 && *it.Answer && answeredNo(answers, 2):
			v.add("assessment.skip-logic", ip, "C-SSRS screener question %d is asked only when question 2 is yes, and question 2 is answered no; correct the one that is wrong", it.Number)
		case it.Number == 7 && *it.Answer && answeredNo(answers, 6):
			v.add("assessment.skip-logic", ip, "C-SSRS screener question 6 'within the past 3 months' (item 7) is asked only when question 6 (item 6) is yes, and item 6 is answered no; correct the one that is wrong")
		}
	}
}

// assessmentWarnings reports what an assessment at pointer p leaves
// unknown that its reader must know: a C-SSRS screener whose answers do
// not settle the risk level, and a PHQ-9 that does not tell item 9
// (thoughts of death or self-harm) among the items it sends.
func assessmentWarnings(a *AssessmentBody, p string, w *violations) {
	switch a.Instrument {
	case "C-SSRS-screener":
		answers := map[int]bool{}
		for _, it := range a.Items {
			answers[it.Number] = *it.Answer
		}
		if lo, hi := cssrsRiskBounds(answers); lo != hi && len(a.Items) > 0 {
			w.add("assessment.cssrs-incomplete", p+"/items", "the C-SSRS screener's answers do not settle the suicide risk level (questions 1, 2 and 6 are always asked, 3-5 when 2 is yes, 7 when 6 is yes): the risk level is charted unknown (dataAbsentReason), not as no risk, and any yes still raises the safety Flag; send the unanswered questions in a new version when they are asked")
		}
	case "PHQ-9":
		if len(a.Items) == 0 { // the total only: no item claimed (mapping.md)
			return
		}
		for _, it := range a.Items {
			if it.Number == 9 {
				return
			}
		}
		w.add("assessment.phq9-item9-unanswered", p+"/items", "the PHQ-9 does not tell item 9 (thoughts of being better off dead or of self-harm): no safety Flag is raised from it, which does not mean the patient has no such thoughts; send item 9 when it was asked")
	case "MOAA-S":
		if a.Total != nil && *a.Total <= MOAASDeepSedation {
			w.add("assessment.moaas-deep-sedation", p+"/total", "a MOAA/S score of %d or less is deep sedation (the patient responds only to a painful stimulus, or not at all), beyond the dissociation the session intends: check the patient's airway and monitoring record, and send an adverse-event record (event sedation) if it was one", MOAASDeepSedation)
		}
	}
}

// MOAASDeepSedation is the highest MOAA/S score of deep sedation: 1
// responds only to a painful stimulus, 0 does not respond (the scale's
// anchors; 2 responds to mild prodding, still moderate sedation).
const MOAASDeepSedation = 1

// assessment maps an assessment: a panel Observation whose members are one
// Observation per item plus the total (or, for the C-SSRS screener, the risk
// level). MOAA/S is a single score Observation with no panel.
func (m *mapper) assessment(a *AssessmentBody, recordID, sessionInBundle string) {
	in := instruments[a.Instrument]
	id := m.ident(nsAssessment, recordID)
	partOf := m.sessionRef(a.SessionID, false)
	if sessionInBundle != "" {
		partOf = m.sessionRef(sessionInBundle, true)
	}
	performer := m.practitioner(a.AdministeredBy)
	obs := func(oid ident, code fhir.CodeableConcept, prof string) fhir.Observation {
		return m.observation(oid, "category.survey", code, a.TakenAt, performer, partOf, profile(prof))
	}

	if in.items == 0 { // MOAA/S: one score
		o := obs(id, cc("", in.rootKey()), "kg-survey-score")
		o.ValueQuantity = scoreQuantity(*a.Total)
		m.add("Observation", id, o)
		m.entries[len(m.entries)-1].Instrument = in.name
		return
	}

	items := append([]Item(nil), a.Items...)
	sort.Slice(items, func(i, j int) bool { return items[i].Number < items[j].Number })
	safety := m.opts.safety()
	var signal *safetySignal
	var members []fhir.Reference
	var scores []int
	yes := map[int]bool{}
	for _, it := range items {
		code := concept(fmt.Sprintf("%s.%d", in.key, it.Number))
		iid := id.child(code.Code)
		o := obs(iid, cc("", fmt.Sprintf("%s.%d", in.key, it.Number)), "kg-survey-item")
		if in.yesNo() {
			yes[it.Number] = *it.Answer
			ans := "answer.no"
			if *it.Answer {
				ans = "answer.yes"
			}
			o.ValueCodeableConcept = ptr(cc("", ans))
		} else {
			scores = append(scores, *it.Score)
			o.ValueCodeableConcept = ptr(ordinalAnswer(in.answer(*it.Score), *it.Score))
			if flag, min, ok := safety.suicideItem(in.key, it.Number); ok {
				signal = &safetySignal{flag: flag, source: iid, positive: *it.Score >= min}
				o.Interpretation = signal.interpretation()
			}
		}
		m.add("Observation", iid, o)
		members = append(members, literal(iid.fullURL()))
	}
	itemRefs := append([]fhir.Reference(nil), members...)

	if a.Difficulty != "" && in.difficulty != "" {
		did := id.child(concept(in.difficulty).Code)
		o := obs(did, cc("", in.difficulty), "kg-survey-item")
		o.ValueCodeableConcept = ptr(cc("", "answer.difficulty."+a.Difficulty))
		m.add("Observation", did, o)
		members = append(members, literal(did.fullURL()))
	}

	// The total: as recorded, or computed when every item is answered.
	total := a.Total
	if total == nil && !in.yesNo() && len(scores) == in.items {
		full := make([]int, in.items)
		for _, it := range items {
			full[it.Number-1] = *it.Score
		}
		total = ptr(in.total(full))
	}
	tkey := in.key + ".total"
	tid := id.child(concept(tkey).Code)
	switch {
	case in.yesNo() && len(items) > 0:
		o := obs(tid, cc("", tkey), "kg-survey-score")
		// An unanswered question is unknown, not no: only a level the
		// answers settle is charted; otherwise the level is absent and the
		// lowest level the answers allow decides the Flag.
		risk, highest := cssrsRiskBounds(yes)
		if risk == highest {
			o.ValueCodeableConcept = ptr(cc("", risk))
		} else {
			o.DataAbsentReason = ptr(cc("", "data-absent.unknown"))
		}
		signal = &safetySignal{flag: "flag.cssrs", source: tid, positive: safety.cssrsFlags(risk)}
		o.Interpretation = signal.interpretation()
		o.DerivedFrom = itemRefs
		m.add("Observation", tid, o)
		members = append(members, literal(tid.fullURL()))
	case total != nil:
		o := obs(tid, cc("", tkey), "kg-survey-score")
		o.ValueQuantity = scoreQuantity(*total)
		o.DerivedFrom = itemRefs
		if b := in.bandFor(*total); b != "" {
			o.Interpretation = []fhir.CodeableConcept{cc("", b)}
		}
		if in.key == "phq9" && signal == nil {
			// A PHQ-9 sent as its total: the eight other items score at
			// most 24, so a total above that says item 9 scored at least
			// the rest, and the total raises item 9's Flag.
			signal = &safetySignal{flag: "flag.phq9-item9", source: tid, positive: *total-phq9OtherItemsMax >= safety.PHQ9Item9}
			o.Interpretation = append(o.Interpretation, signal.interpretation()...)
		}
		m.add("Observation", tid, o)
		members = append(members, literal(tid.fullURL()))
	}

	panel := obs(id, cc("", in.rootKey()), "kg-survey-panel")
	panel.HasMember = members
	// The panel goes first so the Bundle reads top-down.
	at := len(m.entries) - len(members)
	m.insertBefore(at, "Observation", id, panel)
	m.entries[at].Instrument = in.name
	if signal != nil {
		m.flag(id, *signal, a.TakenAt, performer)
	}
}

// phq9OtherItemsMax is the most PHQ-9 items 1-8 can score together.
const phq9OtherItemsMax = 8 * 3

// safetySignal is an answer that may raise a safety Flag: the flag's code
// table key, the Observation that shows it and whether it reached the
// threshold.
type safetySignal struct {
	flag     string
	source   ident
	positive bool
	// ref is the reference flag-detail makes to the source when it is not
	// the source's fullUrl: a withdrawn adverse event's id, as its Bundle
	// deletes it (no Bundle resolves the urn of a DELETE entry).
	ref string
}

// interpretation marks the source Observation of a positive signal POS.
func (s *safetySignal) interpretation() []fhir.CodeableConcept {
	if !s.positive {
		return nil
	}
	return interpretation("interp.POS")
}

// flag adds the safety Flag of an assessment on the patient, pointing at
// the Observation that raised it (flag-detail): active for a positive
// signal. A later version (update mode) always carries it, inactive when
// the signal is no longer positive (its period ending then), so a
// corrected record withdraws its flag; a withdrawn record marks it
// entered-in-error.
func (m *mapper) flag(record ident, s safetySignal, when string, author *fhir.Reference) {
	if !s.positive && !m.opts.Update {
		return
	}
	status := fhir.FlagStatusActive
	switch {
	case m.withdrawn:
		status = fhir.FlagStatusEnteredInError
	case !s.positive:
		status = fhir.FlagStatusInactive
	}
	// Flag.period runs from the flag's activation to its inactivation: an
	// inactive flag ends when the clinic changed the record so that it no
	// longer raises it (source.lastUpdated), or else, and never before its
	// start, at the assessment's time.
	period := &fhir.Period{Start: ptr(when)}
	if status == fhir.FlagStatusInactive {
		period.End = ptr(when)
		start, _ := parseTime(when)
		if t, ok := parseTime(m.src.LastUpdated); ok && !t.Before(start) {
			period.End = ptr(m.src.LastUpdated)
		}
	}
	id := record.child(concept(s.flag).Code)
	m.add("Flag", id, fhir.Flag{
		Meta:       meta(profile("kg-safety-flag")),
		Extension:  []fhir.Extension{{Url: ExtFlagDetail, ValueReference: ptr(literal(cmp.Or(s.ref, s.source.fullURL())))}},
		Identifier: []fhir.Identifier{identifier(id)},
		Status:     status,
		Category:   []fhir.CodeableConcept{cc("", "flag.category.safety")},
		Code:       cc("", s.flag),
		Subject:    m.patient,
		Period:     period,
		Author:     author,
	})
	m.entries[len(m.entries)-1].Withdraws = status != fhir.FlagStatusActive
}

// interpretation is Observation.interpretation for a code table key (nil
// for "").
func interpretation(key string) []fhir.CodeableConcept {
	if key == "" {
		return nil
	}
	return []fhir.CodeableConcept{cc("", key)}
}

// insertBefore adds an entry at position i instead of at the end.
func (m *mapper) insertBefore(i int, resourceType string, id ident, res any) {
	m.add(resourceType, id, res)
	last := m.entries[len(m.entries)-1]
	copy(m.entries[i+1:], m.entries[i:len(m.entries)-1])
	m.entries[i] = last
}

// ordinalAnswer is an answer coding carrying its score in the ordinalValue extension.
func ordinalAnswer(key string, score int) fhir.CodeableConcept {
	c := coding(key)
	c.Extension = []fhir.Extension{{Url: ExtOrdinalValue, ValueDecimal: decimal(float64(score))}}
	return fhir.CodeableConcept{Coding: []fhir.Coding{c}, Text: c.Display}
}

// scoreQuantity is a total score as a UCUM {score} quantity.
func scoreQuantity(total int) *fhir.Quantity {
	return quantity(float64(total), "{score}", "{score}")
}
