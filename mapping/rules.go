package mapping

import (
	"fmt"
	"strings"
	"time"
)

// Check enforces the clinical rules a JSON Schema cannot express on a
// decoded record. It returns a *RuleError listing every broken rule, or nil.
func Check(rec Record) error { return check(rec, false) }

// CheckSessionNamed is the check Options.SessionLater leaves out: a
// standalone adverse event with causality names its session.
func CheckSessionNamed(rec Record) error {
	var v violations
	if r, ok := rec.(*AdverseEvent); ok {
		checkCausalitySession(&r.AdverseEventBody, "", false, &v)
	}
	return v.err(rec.Kind())
}

// check is Check, leaving out CheckSessionNamed's rule when sessionLater.
func check(rec Record, sessionLater bool) error {
	var v violations
	env := rec.Env()
	if env.Source.Version == "" && env.Source.LastUpdated == "" {
		v.add("source.version-missing", "/source/version", "a record needs source.version or source.lastUpdated")
	}
	switch r := rec.(type) {
	case *Assessment:
		checkAssessment(&r.AssessmentBody, "", &v)
	case *Vitals:
		checkVitals(&r.VitalsBody, "", &v)
	case *Infusion:
		checkInfusion(&r.InfusionBody, "", &v)
	case *AdverseEvent:
		checkAdverseEvent(&r.AdverseEventBody, "", sessionLater, &v)
	case *Session:
		checkSession(r, &v)
	}
	checkBorn(rec, &v)
	checkLastUpdated(rec, &v)
	return v.err(rec.Kind())
}

// LastUpdatedSkew is how much later than the record's source.lastUpdated a
// clinical time may be: the clocks of devices and of the clinic's system
// differ by seconds or minutes, a wrong date or year by much more.
const LastUpdatedSkew = 10 * time.Minute

// ClinicalTime is one clinical time of a record: when something it
// describes happened (an assessment taken, vitals measured, an infusion's
// start and end, the end of monitoring, an adverse event's onset,
// detection and recording).
type ClinicalTime struct {
	// At is the time as the record writes it (RFC 3339).
	At string
	// Pointer is its JSON pointer in the record ("/vitals/0/measuredAt").
	Pointer string
}

// Expression is the time's location as a FHIRPath-style path over the
// native JSON ("vitals[0].measuredAt").
func (c ClinicalTime) Expression() string { return pointerPath(c.Pointer) }

// ClinicalTimes are rec's clinical times in document order, those of a
// session's nested records included. A session not done's scheduled time
// may lie ahead (a session cancelled in advance), so neither it nor the
// infusionStart that may stand for it is one; nor is an empty time.
func ClinicalTimes(rec Record) []ClinicalTime {
	var times []ClinicalTime
	add := func(prefix string, pairs ...string) {
		for i := 0; i < len(pairs); i += 2 {
			if pairs[i] != "" {
				times = append(times, ClinicalTime{At: pairs[i], Pointer: prefix + "/" + pairs[i+1]})
			}
		}
	}
	infusion := func(in *InfusionBody, prefix string) {
		if in.Status != "not-done" {
			add(prefix, in.InfusionStart, "infusionStart", in.InfusionEnd, "infusionEnd", in.MonitoringEnd, "monitoringEnd")
		}
	}
	ae := func(a *AdverseEventBody, prefix string) {
		add(prefix, a.OnsetAt, "onsetAt", a.DetectedAt, "detectedAt", a.RecordedAt, "recordedAt")
	}
	switch r := rec.(type) {
	case *Assessment:
		add("", r.TakenAt, "takenAt")
	case *Vitals:
		add("", r.MeasuredAt, "measuredAt")
	case *Infusion:
		infusion(&r.InfusionBody, "")
	case *AdverseEvent:
		ae(&r.AdverseEventBody, "")
	case *Session:
		infusion(&r.Infusion, "/infusion")
		for i := range r.Vitals {
			add(fmt.Sprintf("/vitals/%d", i), r.Vitals[i].MeasuredAt, "measuredAt")
		}
		for i := range r.Assessments {
			add(fmt.Sprintf("/assessments/%d", i), r.Assessments[i].TakenAt, "takenAt")
		}
		for i := range r.AdverseEvents {
			ae(&r.AdverseEvents[i], fmt.Sprintf("/adverseEvents/%d", i))
		}
	}
	return times
}

// checkLastUpdated refuses a record that describes what happened after it
// was last changed: a clinical time later than source.lastUpdated (beyond
// LastUpdatedSkew). One of the two is wrong. A session not done's
// scheduled time may lie ahead (a session cancelled in advance), so it and
// the infusionStart that may stand for it are not compared. One issue, at
// source.lastUpdated, naming the first field found.
func checkLastUpdated(rec Record, v *violations) {
	last, ok := parseTime(rec.Env().Source.LastUpdated)
	if !ok {
		return
	}
	for _, c := range ClinicalTimes(rec) {
		if t, ok := parseTime(c.At); ok && t.Sub(last) > LastUpdatedSkew {
			v.add("time.after-last-updated", "/source/lastUpdated",
				"source.lastUpdated is before the record's %s: a record cannot describe what happened after it was last changed; correct the one that is wrong", c.Expression())
			return
		}
	}
}

// checkBorn refuses a record whose patient's birth date is after the day of
// one of the record's clinical times (as written, in its own offset): one of
// the two is wrong. A session's times are its infusion's start and the
// times of its nested records. One issue, at the birth date, naming the
// first field found (never a value).
func checkBorn(rec Record, v *violations) {
	born := rec.Env().Patient.BirthDate
	if born == "" {
		return
	}
	type clinicalTime struct{ at, field string }
	var times []clinicalTime
	switch r := rec.(type) {
	case *Assessment:
		times = []clinicalTime{{r.TakenAt, "takenAt"}}
	case *Vitals:
		times = []clinicalTime{{r.MeasuredAt, "measuredAt"}}
	case *Infusion:
		times = []clinicalTime{{r.InfusionStart, "infusionStart"}}
	case *AdverseEvent:
		times = []clinicalTime{{r.OnsetAt, "onsetAt"}}
	case *Session:
		times = []clinicalTime{{r.Infusion.InfusionStart, "infusion.infusionStart"}}
		for i := range r.Vitals {
			times = append(times, clinicalTime{r.Vitals[i].MeasuredAt, fmt.Sprintf("vitals[%d].measuredAt", i)})
		}
		for i := range r.Assessments {
			times = append(times, clinicalTime{r.Assessments[i].TakenAt, fmt.Sprintf("assessments[%d].takenAt", i)})
		}
		for i := range r.AdverseEvents {
			times = append(times, clinicalTime{r.AdverseEvents[i].OnsetAt, fmt.Sprintf("adverseEvents[%d].onsetAt", i)})
		}
	}
	for _, c := range times {
		if t, ok := parseTime(c.at); ok && born > t.Format(time.DateOnly) {
			v.add("patient.born-after-record", "/patient/birthDate",
				"patient.birthDate is after the day of the record's %s: correct the birth date or the record's time", c.field)
			return
		}
	}
}

// Rule describes one clinical rule of Check.
type Rule struct{ ID, Description string }

// Rules lists every clinical rule, for documentation and for the gateway's
// validation-rule CodeSystem: those Check enforces on a record, and those
// the ingest checks against stored records (CheckLinked, CheckStored and
// the one Patient per person, patient.identity-conflict, a record's
// versions, record-patient-changed and record-version-stale, and a source
// system's tenant at a destination, source-system-other-tenant).
func Rules() []Rule {
	return []Rule{
		{"source.version-missing", "A record carries source.version or source.lastUpdated."},
		{"assessment.instrument-unknown", "The instrument is one the gateway supports."},
		{"assessment.item-unknown", "Item numbers lie within the instrument's items (" + instrumentRanges(itemRange) + ")."},
		{"assessment.item-duplicate", "Each item is answered at most once."},
		{"assessment.item-answer-missing", "An item has a score (or, for the C-SSRS screener, a yes/no answer)."},
		{"assessment.score-range", "Item scores lie within the instrument's range (" + instrumentRanges(scoreRange) + ")."},
		{"assessment.items-incomplete", "A scored instrument with a total has all its items, or none."},
		{"assessment.total-mismatch", "The total equals the instrument's scoring rule applied to its items (the sum; for QIDS-SR16 the highest of items 1-4, item 5, the highest of 6-9, items 10-14 and the highest of 15-16)."},
		{"assessment.total-range", "The total lies within the instrument's range (" + instrumentRanges(totalRange) + ")."},
		{"assessment.empty", "An assessment has its items, its total or both."},
		{"assessment.total-missing", "MOAA/S is recorded as a total score."},
		{"assessment.difficulty-not-applicable", "Only an instrument with a difficulty question (PHQ-9's item 10) has difficulty."},
		{"assessment.total-not-applicable", "The C-SSRS screener has no total; its risk level is derived from the answers."},
		{"assessment.skip-logic", "C-SSRS screener answers follow the form's skip logic (LOINC 93373-9): questions 3-5 are asked only when question 2 is yes, question 7 only when question 6 is yes; a yes to one of them after a no to the question it depends on is refused."},
		{"assessment.cssrs-incomplete", "A warning, the record being stored: the C-SSRS screener's answers do not settle the risk level (questions 1, 2 and 6 unanswered, or 3-5 after a yes to 2, or 7 after a yes to 6); the risk level Observation has no value and dataAbsentReason unknown, and a yes among the answers still raises the safety Flag."},
		{"infusion.dose-atypical", "A warning, the record being stored: an IV ketamine plan above 1.0 mg/kg or above 200 mg, beyond the protocols for depression (0.5 mg/kg, titrated up to about 1.0 mg/kg)."},
		{"infusion.duration-atypical", "A warning, the record being stored: an IV ketamine infusion given as planned ran under 20 minutes or over 2 hours (protocols run about 40 minutes)."},
		{"infusion.esketamine-monitoring-short", "A warning, the record being stored: an esketamine session that gave a dose records less than 2 hours of monitoring after the administration (monitoringEnd after infusionEnd, else infusionStart), or no monitoringEnd; the esketamine REMS requires at least 2 hours."},
		{"infusion.administered-above-plan", "A warning, the record being stored: the dose actually given (administeredDoseMg) is above the planned totalDoseMg; it is charted as given, with a note on the MedicationAdministration."},
		{"session.dosed-despite-critical-vitals", "A warning, the record being stored: a session gave its drug (not not-done, a dose above 0) after a pre-dose vital sign the safety thresholds interpret as critical (HH or LL); one warning at each critical value, and the session's Bundle carries a DetectedIssue (profile kg-detected-issue) for the receiving clinician. Across records, a warning only: a pre-dose vitals record sent on its own with a critical value that names a stored session which gave its drug (at each critical value), and a session that gave its drug arriving after a stored pre-dose measurement of it charted critical (at infusionStart, naming the vitals record)."},
		{"assessment.phq9-item9-unanswered", "A warning, the record being stored: a PHQ-9 sent with its items does not include item 9, so no safety Flag comes from item 9; that is not a negative answer. (A PHQ-9 sent as its total only claims no item and is not warned on.)"},
		{"vitals.empty", "A vitals record has at least one measurement."},
		{"vitals.bp-order", "Systolic blood pressure is greater than diastolic."},
		{"vitals.plausible-range", "Measurements lie in plausible ranges (systolic 50-300, diastolic 20-200 mm[Hg]; heart rate 20-300 and respiratory rate 4-80 /min; SpO2 50-100 %; temperature 30-45 Cel or 86-113 [degF]; weight 2-500 kg or 4.4-1100 [lb_av]); an infusion's dosing weight (bodyWeightKg) 2-500 kg like a measured one."},
		{"infusion.dose-missing", "A given session states its planned dose: totalDoseMg, and for IV ketamine doseMgPerKg and bodyWeightKg."},
		{"infusion.dose-weight-mismatch", "The planned totalDoseMg equals doseMgPerKg x bodyWeightKg within 2% of the product or 2.5 mg, whichever is more (a dose rounded to the nearest 5 mg passes)."},
		{"infusion.administered-missing", "A session stopped early states the dose actually given (administeredDoseMg) and, for IV ketamine, when it stopped (infusionEnd) or how long it ran (administeredDurationMin)."},
		{"infusion.administered-not-applicable", "A session not done states no dose given, no run time, no infusion or monitoring end and no outcome; administeredDurationMin is for IV infusions only."},
		{"infusion.administered-none", "A completed session gave a dose: administeredDoseMg 0 is a session not done (or stopped early)."},
		{"infusion.dose-plausible", "IV ketamine is dosed at 0.1-2.0 mg/kg, and a dose given is at most 2.0 mg/kg of bodyWeightKg; esketamine nasal at 28, 56 or 84 mg planned, and given in whole 28 mg devices (0, 28, 56 or 84 mg), or, for a session stopped early, whole 14 mg sprays (two to a device), at most 84 mg."},
		{"infusion.iv-only", "A weight-based dose (doseMgPerKg) and an infusion rate (rate) are for IV ketamine only; esketamine nasal spray is dosed in 28 mg devices."},
		{"infusion.rate-mismatch", "For an IV session given as planned, whose administration charts the planned rate, a rate in mg over the time the infusion ran (administeredDurationMin, else infusionEnd - infusionStart) gives totalDoseMg within 10% (at least 0.5 mg)."},
		{"infusion.duration-plausible", "An administration runs 1 minute to 24 hours (infusionEnd - infusionStart, and administeredDurationMin), and monitoring ends at most 24 hours after the infusion."},
		{"infusion.time-missing", "A session that was not done states when it was scheduled."},
		{"time.order", "Times are in order: infusion end after start, monitoring end not before infusion end, the infusion's run time (administeredDurationMin) not longer than from its start to its end, detection and recording not before onset, recording not before detection."},
		{"time.after-last-updated", "A record's clinical times are not later than its source.lastUpdated (by more than 10 minutes, for clocks that differ): a record cannot describe what happened after it was last changed. A session not done's scheduled time is not compared."},
		{"source.last-updated-future", "A record's source.lastUpdated is not more than 5 minutes ahead of the gateway's clock (checked by the gateway when it receives the record, also in a dry run): a record is not changed in the future; most often a local time was sent with Z or with another zone's offset."},
		{"record.time-future", "A record's clinical times (takenAt, measuredAt, infusionStart, infusionEnd, monitoringEnd, onsetAt, detectedAt, recordedAt, also of a session's nested records; not a session not done's scheduled time; a withdrawal is not checked) are not more than 5 minutes ahead of the gateway's clock (checked by the gateway when it receives the record, also in a dry run, with or without source.lastUpdated): a record does not describe what has not happened yet; most often a local time was sent with Z or with another zone's offset."},
		{"adverse-event.severity-missing", "An adverse event has a severity or a CTCAE grade."},
		{"adverse-event.severity-grade-mismatch", "Severity agrees with the CTCAE grade (1 mild, 2 moderate, 3-5 severe)."},
		{"adverse-event.grade-implies-serious", "CTCAE grade 4 and 5 events are serious."},
		{"adverse-event.criteria-without-serious", "Serious events have at least one seriousness criterion; non-serious events have none."},
		{"adverse-event.causality-without-session", "A causality assessment names the session (sessionId) whose drug it judges; R4 carries causality on the suspect entity."},
		{"adverse-event.fatal-grade", "A CTCAE grade 5 event has outcome fatal and the criterion death."},
		{"adverse-event.fatal-severity", "A warning, the record being stored: an event with outcome fatal whose severity is mild or moderate (and no CTCAE grade, which the grade rules check): an event that results in death is severe (CTCAE grade 5)."},
		{"adverse-event.fatal-outcome", "An event with outcome fatal is serious, with the seriousness criterion death, and the criterion death goes with outcome fatal (ICH E2A: an event that results in death is serious)."},
		{"adverse-event.action-none-alone", "The action taken none is the only action listed."},
		{"adverse-event.suspect-not-dosed", "A warning, the record being stored: an adverse event sent on its own without causality names (sessionId) a stored session that was not done, or whose infusion began after the event's onset; its AdverseEvent names the session's drug and session as suspected causes (suspectEntity), as the mapping of an event sent on its own does. Send it (a new version, the same record id) in the session document to chart it linked to the session (extension related-session) without a suspect, and its later versions there too: a version sent on its own names the suspects again. Checked against the store, not in a dry run."},
		{"session.critical-issue-stands", "A warning, the record being stored: a new version or withdrawal of a pre-dose vitals record sent on its own (sessionId), or a session version that gave its drug, no longer raises the session's DetectedIssue, but a pre-dose measurement of the session stored apart from it is charted critical, so the DetectedIssue stays final as stored, its evidence and detail as they were raised (they may still name the corrected value); the warning names the vitals record that keeps it. Send the session document again with its pre-dose vitals as they now stand to have the issue rewritten. Checked against the store, not in a dry run."},
		{"session.time-window", "A session's records fit its time: adverse events judged against its drug (with causality) do not start before the infusion; vitals at the post-dose-40min time point and MOAA/S and CADSS assessments are taken from infusionStart to the end of monitoring (monitoringEnd; without one, at most 24 hours after infusionEnd); pre-dose vitals are not measured after infusionStart, discharge vitals not before infusionEnd (for a stored session: infusionStart). Checked within a session document, for a record sent on its own against its stored session, and for a new session version against the records stored for it."},
		{"session.withdrawn", "An adverse event sent on its own that names a withdrawn session (entered-in-error: charted as never given) carries no causality: there is no dose whose causality could be judged; send the session again first if it was given."},
		{"session.not-given", "A session not done gave no drug: its adverse events carry no causality, and it has no ratings of the drug's effects (vitals at the post-dose-40min time point, MOAA/S, CADSS); within a session document, for a record sent on its own against its stored session, and for a session version made not done against the records stored for it."},
		{"assessment.moaas-deep-sedation", "A warning, the record being stored: a MOAA/S score of 1 or 0 (responds only to a painful stimulus, or not at all) is deep sedation, beyond the dissociation a ketamine session intends; check the airway and monitoring record, and send an adverse-event record (event sedation) if it was one."},
		{"session.overlap", "A warning, the record being stored: a session that gave its drug (an infusion or session record, not not-done, a dose above 0) whose infusion (infusionStart to infusionEnd; without an end, its start) overlaps that of another session of the same patient stored before (another record id, not not-done or withdrawn, a dose above 0); the warning names the other session's record id. Checked against the store, not in a dry run."},
		{"session.interval-short", "A warning, the record being stored: a session that gave its drug whose infusion starts less than sessionMinIntervalHours (default 20 hours; safety configuration) from the start of another session of the same patient stored before that gave its drug, without overlapping it; the warning names the other session's record id. Checked against the store, not in a dry run."},
		{"session.duplicate-record-id", "Record ids are unique per kind within a session."},
		{"session.patient-mismatch", "A record that names a stored session (sessionId) is about the session's patient; a session version is not named by another patient's stored records."},
		{"record-patient-changed", "A stored record stays about its patient: a new version of a record (same source system, kind and record id, also one nested in a session) about another patient, or a session nesting a record id stored for another patient, is refused (HTTP 409); withdraw the wrong record and send it under a new record id."},
		{"record-session-changed", "A stored record stays in its session: a new version (or a withdrawal) of an assessment, vitals or adverse-event record sent on its own, stored as part of a stored session (nested in its document, or naming it), that names another session (sessionId) is refused (HTTP 409), as the stored session's safety signals stand on it; one that names no session stays in the session it is stored in. Withdraw it and send it under a new record id naming the right session."},
		{"record-instrument-changed", "A stored assessment stays an assessment of its instrument: a new version (or a withdrawal) of an assessment (also one nested in a session) that names another instrument than the stored version is refused (HTTP 409), as the stored instrument's panel, items and score would stay beside the new one's; send it as a new record id, and withdraw the stored one if it was sent in error."},
		{"patient.demographics-not-applied", "A warning, the record being stored: the patient's name, birth date or gender differ from the Patient the gateway holds for the patient id, which keeps the first record's (only an MRN added or changed updates it); update the Patient through the FHIR API to correct it."},
		{"record-version-stale", "A new version of a stored record is not older than the newest version stored: its source.lastUpdated is not earlier than that version's (HTTP 409)."},
		{"record-resource-foreign", "A record's resource is the one the gateway mints its identifier for: when a stored resource no native record wrote (a FHIR client's, stored before those identifiers were reserved) carries the identifier of one of the record's resources, the record is refused (HTTP 409) rather than have that resource stand in for its own."},
		{"record-id-collides", "A record's resources are identified by its record id, a hyphen and a code for its parts (an assessment's items, a session's administration): a record whose resources would carry the identifier of a resource the gateway stored for another record of the same source (an assessment A-100-44250-9 beside the item 44250-9 of assessment A-100, in either order, on its own or nested in a session) is refused (HTTP 409) at its record id, and the stored resource is left as it is; send it under another record id."},
		{"record.withdrawn-not-delivered", "A warning, the withdrawal being stored: a withdrawal (source.status entered-in-error) is not sent to a delivery destination that never received the record (every earlier delivery of it there is a dead letter, one an operator cancelled among them, or the destination was added since); that destination gets a dead letter in its place, so that no earlier one is retried without it."},
		{"record.withdrawn-again", "A warning, the record being stored: a withdrawal of a record withdrawn already, whose resources an earlier withdrawal retired (an adverse event deleted), changes nothing and is not delivered; a destination that did not receive the earlier withdrawal gets it by a retry of that delivery."},
		{"record.withdrawn-not-stored", "A warning, the record being stored: a withdrawal (source.status entered-in-error) of a record no version of which is stored (in either form) is stored, so that an earlier version arriving after it is refused as stale, but not delivered to any EHR, which never received the record."},
		{"record-version-reused", "A version label (source.version, else source.lastUpdated) names one content: a label received before with other content is refused (HTTP 409); send the change as a new version."},
		{"patient.identity-ambiguous", "A record's clinic patient id names one stored Patient: when Patients written through the FHIR API in the gateway's identifier namespace carry it too, the record is refused (HTTP 409) until the gateway's administrator removes or corrects the extra one."},
		{"patient.identity-conflict", "One Patient per person per tenant: a hospital MRN (same system) belongs to one clinic patient id; a record whose new clinic patient id comes with another Patient's MRN is refused (HTTP 409), never merged."},
		{"patient.born-after-record", "A record is not older than its patient: patient.birthDate is not after the day of the record's clinical time (takenAt, measuredAt, infusionStart, onsetAt; a session's infusionStart and the times of its nested records)."},
		{"source-system-other-tenant", "One clinic per source system at an EHR: the identifier systems are named after source.system, so a record of a source system another tenant of the gateway stored records of first is stored but not delivered to a destination that tenant delivers to (a warning in the answer, a dead letter for the operator); give each clinic's system its own source system name."},
	}
}

// itemRange, scoreRange and totalRange give an instrument's item numbers,
// item scores and totals ("1-9", "0-3"), "" for what it does not have.
func itemRange(in Instrument) string  { return span(1, in.Items) }
func scoreRange(in Instrument) string { return span(0, in.MaxScore) }
func totalRange(in Instrument) string { return span(0, in.MaxTotal) }

func span(lo, hi int) string {
	if hi == 0 {
		return ""
	}
	return fmt.Sprintf("%d-%d", lo, hi)
}

// instrumentRanges describes a range of each instrument, from its
// definition: the instruments with the same range together ("GAD-7, PHQ-9
// 0-3; MADRS 0-6"), and those without one last ("none for MOAA-S").
func instrumentRanges(of func(Instrument) string) string {
	var order []string
	byRange := map[string][]string{}
	for _, in := range Instruments() {
		r := of(in)
		if _, ok := byRange[r]; !ok {
			order = append(order, r)
		}
		byRange[r] = append(byRange[r], in.Name)
	}
	var parts []string
	for _, r := range order {
		if r != "" {
			parts = append(parts, strings.Join(byRange[r], ", ")+" "+r)
		}
	}
	if none := byRange[""]; len(none) > 0 {
		parts = append(parts, "none for "+strings.Join(none, ", "))
	}
	return strings.Join(parts, "; ")
}
