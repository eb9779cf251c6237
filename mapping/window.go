package mapping

import (
	"fmt"
	"strings"
	"time"
)

// The session time window: records that belong to a session must fit the
// time the session covers, whether they travel in its session document or
// are sent on their own with its sessionId and checked against the stored
// session (gateway/ingest). One rule, session.time-window:
//   - an adverse event judged against the session's drug (with causality)
//     does not start before the infusion started: an event before the dose
//     cannot be caused by it, while one without causality (a pre-dose
//     hypertension that delayed or cancelled the session) is ordinary
//     documentation of the visit;
//   - a measurement taken during the session (vitals at the post-dose-40min
//     time point, a MOAA/S or CADSS assessment, which rate the drug's acute
//     sedation and dissociation) lies from infusionStart (for a MOAA/S or
//     CADSS rating, BaselineMinutes before it: a baseline) to the end of
//     monitoring: monitoringEnd, or, when no monitoring end is recorded
//     (monitoringEnd is optional), up to MaxMonitoringMinutes after
//     infusionEnd, the latest monitoringEnd the session could have: these
//     ratings are taken after the infusion ends, during monitoring;
//   - vitals at the pre-dose time point are not measured after infusionStart,
//     and at the discharge time point not before infusionEnd (infusionStart
//     for a stored session, whose window has no infusion end).
// A session that was not done (or has no start) has no window.

// Window is the time a session covers: Procedure.performedPeriod.
type Window struct {
	Start time.Time
	// End is the end of the session (monitoringEnd, else infusionEnd);
	// zero when it has none.
	End time.Time
	// InfusionEnd is when the infusion itself ended (a stored session's:
	// its MedicationAdministration's end); zero when unknown.
	InfusionEnd time.Time
}

// WindowFrom is the window of a stored session Procedure's performedPeriod
// (RFC 3339 start and end; end may be ""). ok is false without a start.
func WindowFrom(start, end string) (w Window, ok bool) {
	if w.Start, ok = parseTime(start); !ok {
		return Window{}, false
	}
	w.End, _ = parseTime(end)
	return w, true
}

// windowOf is the window of an infusion that was given (ok false when it
// was not done or has no start).
func windowOf(in *InfusionBody) (Window, bool) {
	if in.Status == "not-done" {
		return Window{}, false
	}
	end := in.MonitoringEnd
	if end == "" {
		end = in.InfusionEnd
	}
	w, ok := WindowFrom(in.InfusionStart, end)
	w.InfusionEnd, _ = parseTime(in.InfusionEnd)
	return w, ok
}

// monitored reports whether the window's end is a recorded end of
// monitoring (a monitoringEnd later than infusionEnd) rather than the
// infusion's end. A stored session's window tells them apart the same way
// (its performedPeriod ends at monitoringEnd, else infusionEnd; its
// InfusionEnd is the MedicationAdministration's end).
func (w Window) monitored() bool { return !w.End.IsZero() && !w.End.Equal(w.InfusionEnd) }

// duringEnd is the latest time of a measurement taken during the session:
// the recorded end of monitoring; without one, MaxMonitoringMinutes after
// the infusion's end (monitoring goes on after the infusion, and the
// latest monitoringEnd infusion.duration-plausible accepts is that); zero
// for no bound (a session with neither end).
func (w Window) duringEnd() time.Time {
	if w.End.IsZero() || w.monitored() {
		return w.End
	}
	return w.End.Add(MaxMonitoringMinutes * time.Minute)
}

// endPointer is the field of an infusion that sets the end of its window
// for a measurement taken during it (p the infusion's pointer).
func (w Window) endPointer(p string) string {
	if w.monitored() {
		return p + "/monitoringEnd"
	}
	return p + "/infusionEnd"
}

// onsetFits reports whether an adverse event starting at t fits w.
func (w Window) onsetFits(t time.Time) bool { return !t.Before(w.Start) }

// duringFits reports whether a measurement taken at t during the session
// fits w: not before the start, not after the end of monitoring.
func (w Window) duringFits(t time.Time) bool { return w.duringMiss(t) == "" }

// duringMiss says where a measurement taken during the session at t lies
// outside w, for a message naming the session's fields; "" when it fits.
func (w Window) duringMiss(t time.Time) string {
	if t.Before(w.Start) {
		return "this one is before the session's infusionStart"
	}
	end := w.duringEnd()
	switch {
	case end.IsZero() || !t.After(end):
		return ""
	case w.monitored():
		return "this one is after the session's monitoringEnd: if monitoring went on longer, send the session with the monitoringEnd it had; otherwise correct the time"
	}
	return fmt.Sprintf("this one is more than %d hours after the session's infusionEnd (the session gives no monitoringEnd)", MaxMonitoringMinutes/60)
}

// BaselineMinutes is how long before the infusion starts a MOAA/S or CADSS
// rating of the session may be taken: protocols rate sedation and
// dissociation at baseline, shortly before the dose (with the pre-dose
// vitals), to compare the ratings after it with.
const BaselineMinutes = 120

// baselineStart is the earliest time of a baseline rating of the session.
func (w Window) baselineStart() time.Time { return w.Start.Add(-BaselineMinutes * time.Minute) }

// ratingMiss says where a MOAA/S or CADSS rating taken at t lies outside
// the session, and what the clinic can do; "" when it fits: from
// BaselineMinutes before the start to the end of monitoring.
func (w Window) ratingMiss(t time.Time) string {
	switch {
	case t.Before(w.baselineStart()):
		return fmt.Sprintf("this one is more than %d hours before the session's infusionStart: correct takenAt, or, for a rating that is not the session's baseline, send it on its own without sessionId", BaselineMinutes/60)
	case t.Before(w.Start):
		return ""
	}
	return w.duringMiss(t)
}

// preDoseFits reports whether a pre-dose measurement taken at t fits w:
// not after the infusion started.
func (w Window) preDoseFits(t time.Time) bool { return !t.After(w.Start) }

// dischargeFits reports whether a discharge measurement taken at t fits w:
// not before the infusion ended (not before it started when its end is
// unknown).
func (w Window) dischargeFits(t time.Time) bool {
	if !w.InfusionEnd.IsZero() {
		return !t.Before(w.InfusionEnd)
	}
	return !t.Before(w.Start)
}

// vitalsDuring reports whether a vitals record is taken during the session.
func vitalsDuring(vs *VitalsBody) bool { return vs.Timepoint == "post-dose-40min" }

// assessmentDuring reports whether an assessment rates the session's acute
// effects (sedation, dissociation) and so is taken during it.
func assessmentDuring(a *AssessmentBody) bool { return isRating(a.Instrument) }

// isRating reports whether the instrument named rates a session's acute
// effects: sedation (MOAA/S) or dissociation (CADSS).
func isRating(instrument string) bool { return instrument == "MOAA-S" || instrument == "CADSS" }

// checkWindowed checks one record of a session against its window: the
// adverse event's onset, or the time of a measurement taken during the
// session. p is the record's pointer ("" standalone, "/adverseEvents/0" in
// a session document).
func checkWindowed(rec any, w Window, p string, v *violations) {
	switch r := rec.(type) {
	case *AdverseEventBody:
		if t, ok := parseTime(r.OnsetAt); ok && r.Causality != "" && !w.onsetFits(t) {
			v.add("session.time-window", p+"/onsetAt", "an adverse event judged against the session's drug (causality) cannot start before the infusion: correct onsetAt, or, for an event that began before the dose, leave out causality")
		}
	case *VitalsBody:
		t, ok := parseTime(r.MeasuredAt)
		switch {
		case !ok:
		case vitalsDuring(r) && !w.duringFits(t):
			v.add("session.time-window", p+"/measuredAt", "vitals at a time point during the session are measured from the infusion's start to the end of monitoring; %s", w.duringMiss(t))
		case r.Timepoint == "pre-dose" && !w.preDoseFits(t):
			v.add("session.time-window", p+"/measuredAt", "pre-dose vitals are measured before the infusion starts; send the measurement under the time point it was taken at")
		case r.Timepoint == "discharge" && !w.dischargeFits(t):
			v.add("session.time-window", p+"/measuredAt", "discharge vitals are measured after the infusion ends; send the measurement under the time point it was taken at")
		}
	case *AssessmentBody:
		if t, ok := parseTime(r.TakenAt); ok && assessmentDuring(r) {
			if miss := w.ratingMiss(t); miss != "" {
				v.add("session.time-window", p+"/takenAt", "a sedation or dissociation rating of a session is taken from %d hours before the infusion's start (a baseline) to the end of monitoring; %s", BaselineMinutes/60, miss)
			}
		}
	}
}

// checkNotGiven checks one record of a session that was not done: no drug
// was given, so an adverse event of it has no causality (the AdverseEvent
// would judge a MedicationAdministration that did not take place), and
// nothing rates the drug's effects during it (vitals at the post-dose-40min
// time point, MOAA/S and CADSS). p is the record's pointer; standalone
// records (p "") are pointed at their sessionId, the link that is wrong.
func checkNotGiven(rec any, p string, standalone bool, v *violations) {
	at := func(field string) string {
		if standalone {
			return "/sessionId"
		}
		return p + field
	}
	switch r := rec.(type) {
	case *AdverseEventBody:
		if r.Causality != "" {
			v.add("session.not-given", p+"/causality", "the session of this adverse event was not done: no drug was given whose causality could be judged; leave out causality")
		}
	case *VitalsBody:
		if vitalsDuring(r) {
			v.add("session.not-given", at("/timepoint"), "the session was not done: there are no vitals after a dose; send the measurement under the time point it was taken at")
		}
	case *AssessmentBody:
		if assessmentDuring(r) {
			v.add("session.not-given", at("/instrument"), "the session was not done: a sedation or dissociation rating of the drug's effects has no dose to rate")
		}
	}
}

// StoredSession is a stored session as the rules of a record that names it
// (sessionId) see it.
type StoredSession struct {
	// Window is the session's window; HasWindow is false for a session not
	// done, withdrawn or without a start.
	Window    Window
	HasWindow bool
	// OtherPatient: the session is about another patient than the record.
	OtherPatient bool
	// NotDone: the session was not done (no drug was given).
	NotDone bool
	// Withdrawn: the session was withdrawn (entered-in-error): charted as
	// never given.
	Withdrawn bool
}

// CheckLinked checks a standalone assessment, vitals or adverse-event record
// that names a stored session against it, with the rules a session document
// gets: session.time-window, and session.patient-mismatch when the session
// is another patient's. It returns a *RuleError, or nil.
func CheckLinked(rec Record, s StoredSession) error {
	var v violations
	if s.OtherPatient {
		v.add("session.patient-mismatch", "/sessionId", "the session this record names is about another patient")
	}
	var body any
	switch r := rec.(type) {
	case *Assessment:
		body = &r.AssessmentBody
	case *Vitals:
		body = &r.VitalsBody
	case *AdverseEvent:
		body = &r.AdverseEventBody
	}
	if s.HasWindow && body != nil {
		checkWindowed(body, s.Window, "", &v)
	}
	if s.NotDone && body != nil {
		checkNotGiven(body, "", true, &v)
	}
	if ae, ok := body.(*AdverseEventBody); ok && s.Withdrawn && ae.Causality != "" {
		// A safety review: an event judged "probably" caused by the drug
		// of a session charted as never given, accepted without a word.
		v.add("session.withdrawn", "/causality", "the session this adverse event names was withdrawn "+
			"(entered-in-error: charted as never given), so its drug's causality cannot be judged; leave out causality, "+
			"or send the session again first if it was given")
	}
	return v.err(rec.Kind())
}

// Linked is a record stored apart from a session that names it, as the
// rules of a new version of the session see it.
type Linked struct {
	// Onset is an adverse event's onset; During the time of a measurement
	// taken during the session; PreDose and Discharge the time of vitals at
	// those time points; zero when the record has no time the rules check.
	Onset, During, PreDose, Discharge time.Time
	// Rating: During is the time of a MOAA/S or CADSS rating, which may be
	// a baseline taken up to BaselineMinutes before the infusion starts.
	Rating bool
	// OtherPatient: the record is about another patient than the session.
	OtherPatient bool
	// Causality: an adverse event that judges the session's drug.
	Causality bool
	// Critical: a pre-dose vital sign charted critical (interpretation HH
	// or LL, on the Observation or a component).
	Critical bool
	// Kind and RecordID name the source record the resource was mapped
	// from (the clinic's own identifiers, no value of it), so that a
	// refusal says which stored record is at fault; empty when unknown.
	Kind     Kind
	RecordID string
}

// LinkedOf reads, from a stored resource the mappings wrote (decoded JSON),
// what the session rules check: an AdverseEvent's onset (date), a
// vital-sign Observation's time at the post-dose-40min time point, a MOAA/S
// score's or CADSS panel's time. An Observation entered in error counts for
// nothing.
func LinkedOf(doc map[string]any) Linked {
	var l Linked
	l.Kind, l.RecordID = recordOf(doc)
	switch doc["resourceType"] {
	case "AdverseEvent":
		l.Onset, _ = parseTime(str(doc, "date"))
		suspects, _ := doc["suspectEntity"].([]any)
		for _, se := range suspects {
			sm, _ := se.(map[string]any)
			if c, _ := sm["causality"].([]any); len(c) > 0 {
				l.Causality = true
			}
		}
	case "Observation":
		if str(doc, "status") == "entered-in-error" {
			return l
		}
		t, _ := parseTime(str(doc, "effectiveDateTime"))
		switch {
		case storedDuring(doc):
			l.During = t
			l.Rating = storedRating(doc)
		case storedAt(doc, "timepoint.pre-dose"):
			l.PreDose = t
			l.Critical = storedCritical(doc)
		case storedAt(doc, "timepoint.discharge"):
			l.Discharge = t
		}
	}
	return l
}

// recordOf names the source record of a stored AdverseEvent or
// Observation the mappings wrote, from its identifier
// (<base>/<source>/<kind>|<record id>, or <record id>-<code> for a vitals
// measurement, whose value is the record's id and the Observation's code);
// "" when it is none of theirs.
func recordOf(doc map[string]any) (Kind, string) {
	var ident map[string]any
	switch ids := doc["identifier"].(type) {
	case map[string]any: // AdverseEvent.identifier is single
		ident = ids
	case []any:
		if len(ids) > 0 {
			ident, _ = ids[0].(map[string]any)
		}
	}
	system, value := str(ident, "system"), str(ident, "value")
	var kind Kind
	switch {
	case value == "":
		return "", ""
	case doc["resourceType"] == "AdverseEvent" && strings.HasSuffix(system, "/"+nsAdverseEvent):
		kind = KindAdverseEvent
	case doc["resourceType"] == "Observation" && strings.HasSuffix(system, "/"+nsAssessment):
		kind = KindAssessment // a MOAA/S score or a panel: the record's own id
	case doc["resourceType"] == "Observation" && strings.HasSuffix(system, "/"+nsVitals):
		kind = KindVitals
		code, _ := doc["code"].(map[string]any)
		codings, _ := code["coding"].([]any)
		if len(codings) == 0 {
			return "", ""
		}
		first, _ := codings[0].(map[string]any)
		id, ok := strings.CutSuffix(value, "-"+str(first, "code"))
		if !ok || id == "" {
			return "", ""
		}
		value = id
	default:
		return "", ""
	}
	return kind, value
}

// storedDuring reports whether a stored Observation is one the mappings
// make of a measurement taken during the session.
func storedDuring(doc map[string]any) bool {
	during := map[string]bool{}
	for _, key := range []string{"timepoint.post-dose-40min", "moaas.total", "cadss.panel"} {
		during[concept(key).System+"|"+concept(key).Code] = true
	}
	code, _ := doc["code"].(map[string]any)
	return timepointIn(doc, during) || codedAs(code, during)
}

// storedRating reports whether a stored Observation is a MOAA/S score or a
// CADSS panel (a rating, which may be a baseline before the infusion).
func storedRating(doc map[string]any) bool {
	code, _ := doc["code"].(map[string]any)
	codings, _ := code["coding"].([]any)
	for _, c := range codings {
		cm, _ := c.(map[string]any)
		if name, ok := InstrumentCoded(str(cm, "system"), str(cm, "code")); ok && isRating(name) {
			return true
		}
	}
	return false
}

// storedCritical reports whether a stored Observation, or one of its
// components, is interpreted critical (HH or LL).
func storedCritical(doc map[string]any) bool {
	set := map[string]bool{}
	for _, key := range []string{"interp.HH", "interp.LL"} {
		set[concept(key).System+"|"+concept(key).Code] = true
	}
	critical := func(m map[string]any) bool {
		ins, _ := m["interpretation"].([]any)
		for _, in := range ins {
			if im, _ := in.(map[string]any); codedAs(im, set) {
				return true
			}
		}
		return false
	}
	if critical(doc) {
		return true
	}
	comps, _ := doc["component"].([]any)
	for _, c := range comps {
		if cm, _ := c.(map[string]any); critical(cm) {
			return true
		}
	}
	return false
}

// storedAt reports whether a stored Observation is a vitals measurement at
// the time point of concept key (timepoint.pre-dose, timepoint.discharge).
func storedAt(doc map[string]any, key string) bool {
	return timepointIn(doc, map[string]bool{concept(key).System + "|" + concept(key).Code: true})
}

// timepointIn reports whether a stored Observation's monitoring time point
// extension is coded as one of set (system|code).
func timepointIn(doc map[string]any, set map[string]bool) bool {
	exts, _ := doc["extension"].([]any)
	for _, e := range exts {
		em, _ := e.(map[string]any)
		if str(em, "url") != extensionURL("monitoring-timepoint") {
			continue
		}
		vc, _ := em["valueCodeableConcept"].(map[string]any)
		if codedAs(vc, set) {
			return true
		}
	}
	return false
}

// codedAs reports whether a decoded CodeableConcept has a coding whose
// system|code is in set.
func codedAs(concept map[string]any, set map[string]bool) bool {
	codings, _ := concept["coding"].([]any)
	for _, c := range codings {
		cm, _ := c.(map[string]any)
		if set[str(cm, "system")+"|"+str(cm, "code")] {
			return true
		}
	}
	return false
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// CheckStored checks an infusion or session record against the records
// stored apart from it that name it: none may fall outside the window the
// record gives the session (session.time-window, at the infusion field
// that moves the bound) or be about another patient
// (session.patient-mismatch). It returns a *RuleError, or nil.
func CheckStored(rec Record, linked []Linked) error {
	var in *InfusionBody
	p := ""
	switch r := rec.(type) {
	case *Infusion:
		in = &r.InfusionBody
	case *Session:
		in, p = &r.Infusion, "/infusion"
	default:
		return nil
	}
	var v violations
	seen := map[string]bool{}
	w, hasWindow := windowOf(in)
	for _, l := range linked {
		// Each issue names the stored record at fault (its kind and
		// record id, the clinic's identifiers), once per rule and field.
		add := func(rule, pointer, msg string) {
			if l.RecordID != "" {
				msg += fmt.Sprintf(" (the stored %s record %s)", l.Kind, l.RecordID)
			}
			if !seen[rule+pointer+msg] {
				seen[rule+pointer+msg] = true
				v.add(rule, pointer, "%s", msg)
			}
		}
		if l.OtherPatient {
			add("session.patient-mismatch", "/patient/id", "a record stored for another patient names this session")
		}
		if in.Status == "not-done" {
			if l.Causality {
				add("session.not-given", p+"/status", "a stored adverse event judges this session's drug: a session not done gave none")
			}
			if !l.During.IsZero() {
				add("session.not-given", p+"/status", "a stored measurement rates this session's drug effects: a session not done gave no dose")
			}
		}
		if !hasWindow {
			continue
		}
		switch {
		case !l.Onset.IsZero() && l.Causality && !w.onsetFits(l.Onset):
			add("session.time-window", p+"/infusionStart", "a stored adverse event that judges this session's drug (causality) would start before the infusion")
		case !l.During.IsZero() && l.Rating && l.During.Before(w.baselineStart()):
			add("session.time-window", p+"/infusionStart", fmt.Sprintf("a stored sedation or dissociation rating of this session would lie more than %d hours before its start (the earliest baseline)", BaselineMinutes/60))
		case !l.During.IsZero() && !l.Rating && l.During.Before(w.Start):
			add("session.time-window", p+"/infusionStart", "a stored measurement taken during this session would lie before its start")
		case !l.During.IsZero() && !l.During.Before(w.Start) && !w.duringFits(l.During):
			msg := "a stored measurement taken during this session would lie after its monitoringEnd"
			if !w.monitored() {
				msg = fmt.Sprintf("a stored measurement taken during this session would lie more than %d hours after its infusionEnd", MaxMonitoringMinutes/60)
			}
			add("session.time-window", w.endPointer(p), msg)
		case !l.PreDose.IsZero() && !w.preDoseFits(l.PreDose):
			add("session.time-window", p+"/infusionStart", "a stored pre-dose measurement of this session would lie after its start")
		case !l.Discharge.IsZero() && !w.dischargeFits(l.Discharge):
			ptr := "/infusionEnd"
			if w.InfusionEnd.IsZero() {
				ptr = "/infusionStart"
			}
			add("session.time-window", p+ptr, "a stored discharge measurement of this session would lie before the infusion ends")
		}
	}
	return v.err(rec.Kind())
}

// SessionID is the identifier of a session's Procedure.
type SessionID struct{ System, Value string }

// NamedSession returns the session a standalone assessment, vitals or
// adverse-event record names (sessionId); ok is false for other records.
func NamedSession(rec Record, opts Options) (id SessionID, ok bool) {
	var named string
	switch r := rec.(type) {
	case *Assessment:
		named = r.SessionID
	case *Vitals:
		named = r.SessionID
	case *AdverseEvent:
		named = r.SessionID
	}
	if named == "" {
		return SessionID{}, false
	}
	return sessionID(rec, opts, named), true
}

// OwnSession returns the session an infusion or session record is; ok is
// false for other records.
func OwnSession(rec Record, opts Options) (id SessionID, ok bool) {
	switch rec.(type) {
	case *Infusion, *Session:
		return sessionID(rec, opts, rec.Env().Source.RecordID), true
	}
	return SessionID{}, false
}

// SessionNamed is the session value of rec's source system.
func SessionNamed(rec Record, opts Options, value string) SessionID {
	return sessionID(rec, opts, value)
}

func sessionID(rec Record, opts Options, value string) SessionID {
	return SessionID{System: identSystem(opts.base(), rec.Env().Source.System, nsSession), Value: value}
}
