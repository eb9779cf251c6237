package mapping

import (
	"encoding/json"
	"sort"
	"strings"
	"time"
)

// The spacing of a patient's sessions (docs/mapping.md §9): a session that
// gave its drug is compared, by the ingest inside the transaction that
// stores it, with the same patient's other stored sessions that gave
// theirs. Two infusions that overlap, or that start closer together than
// Safety.SessionMinIntervalHours, are a warning to the sender, never a
// refusal: the clinic charted what happened, and a refusal would leave a
// real double session unchartable.

// OtherSession is another stored session of the patient that gave its
// drug: its record id (the clinic's own) and its infusion's period.
type OtherSession struct {
	RecordID string
	// Start is the infusion's start; End its end (zero: none recorded).
	Start, End time.Time
}

// OtherSessionOf reads a stored session's MedicationAdministration (its
// identifier <sessionId>-medication in the system of id): ok is false
// for an administration of no session of that system, one not done,
// withdrawn (entered-in-error) or of a dose of 0, and one without an
// effectivePeriod start.
func OtherSessionOf(doc map[string]any, id SessionID) (s OtherSession, ok bool) {
	switch str(doc, "status") {
	case "not-done", "entered-in-error":
		return s, false
	}
	ids, _ := doc["identifier"].([]any)
	for _, i := range ids {
		m, _ := i.(map[string]any)
		if v, found := strings.CutSuffix(str(m, "value"), "-medication"); found && str(m, "system") == id.System && v != "" {
			s.RecordID = v
		}
	}
	if s.RecordID == "" {
		return s, false
	}
	dosage, _ := doc["dosage"].(map[string]any)
	if dose, _ := dosage["dose"].(map[string]any); dose != nil {
		if v, isNum := number(dose["value"]); isNum && v <= 0 {
			return s, false
		}
	}
	// The mapping charts a session that gave its drug with an
	// effectivePeriod (infusionStart is required then); effectiveDateTime
	// is a session not done's.
	period, _ := doc["effectivePeriod"].(map[string]any)
	if s.Start, ok = parseTime(str(period, "start")); !ok {
		return s, false
	}
	s.End, _ = parseTime(str(period, "end"))
	return s, true
}

// DosedSession returns the session an infusion or session record is when
// it gave its drug (not not-done, a dose above 0; the schema requires its
// infusionStart then) and is not a withdrawal: the records whose spacing
// SessionSpacing checks.
func DosedSession(rec Record, opts Options) (id SessionID, ok bool) {
	in, _ := infusionOf(rec)
	if in == nil || rec.Env().Source.Status == "entered-in-error" || !dosed(in) {
		return SessionID{}, false
	}
	return OwnSession(rec, opts)
}

// SpacingRange is the time within which another session's infusion must
// lie for SessionSpacing to warn about it, for a session that gave its
// drug (DosedSession): from its start less SessionMinIntervalHours to its
// end (its start when it has none) plus as much; the margin is at least
// the longest run infusion.duration-plausible accepts (MaxRunMinutes), so
// a session charted by its start alone is found too. The ingest bounds
// its search of the patient's sessions with it: an infusion whose period
// shares no time with it can neither overlap nor start close enough.
func SpacingRange(rec Record, opts Options) (from, to time.Time, ok bool) {
	if _, ok := DosedSession(rec, opts); !ok {
		return from, to, false
	}
	in, _ := infusionOf(rec)
	start, ok := parseTime(in.InfusionStart)
	if !ok {
		return from, to, false
	}
	end, hasEnd := parseTime(in.InfusionEnd)
	if !hasEnd || end.Before(start) {
		end = start
	}
	margin := time.Duration(max(opts.safety().SessionMinIntervalHours*60, MaxRunMinutes) * float64(time.Minute))
	return start.Add(-margin), end.Add(margin), true
}

// infusionOf returns an infusion or session record's infusion and its
// pointer prefix (nil for other records).
func infusionOf(rec Record) (*InfusionBody, string) {
	switch r := rec.(type) {
	case *Infusion:
		return &r.InfusionBody, ""
	case *Session:
		return &r.Infusion, "/infusion"
	}
	return nil, ""
}

// SessionSpacing returns the warnings of a session that gave its drug
// (DosedSession) against the patient's other stored sessions: one per
// other session (another record id), session.overlap when the infusions'
// periods overlap (an infusion without an end is its start), else
// session.interval-short when their starts lie less than
// SessionMinIntervalHours apart (0: not checked). Each names the other
// session's record id, never a clinical value; at infusionStart.
func SessionSpacing(rec Record, others []OtherSession, opts Options) []Violation {
	id, ok := DosedSession(rec, opts)
	if !ok {
		return nil
	}
	in, p := infusionOf(rec)
	start, ok := parseTime(in.InfusionStart)
	if !ok {
		return nil
	}
	end, _ := parseTime(in.InfusionEnd)
	hours := opts.safety().SessionMinIntervalHours
	sorted := append([]OtherSession(nil), others...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if !sorted[i].Start.Equal(sorted[j].Start) {
			return sorted[i].Start.Before(sorted[j].Start)
		}
		return sorted[i].RecordID < sorted[j].RecordID
	})
	var w violations
	seen := map[string]bool{}
	for _, o := range sorted {
		if o.RecordID == id.Value || seen[o.RecordID] {
			continue
		}
		seen[o.RecordID] = true
		gap := o.Start.Sub(start)
		if gap < 0 {
			gap = -gap
		}
		switch {
		case overlaps(start, end, o.Start, o.End):
			w.add("session.overlap", p+"/infusionStart",
				"the infusion overlaps that of session %s, another session of this patient stored before: two sessions at once is a double entry or a second dose; withdraw the one sent in error, else check the times", o.RecordID)
		case hours > 0 && gap < time.Duration(hours*float64(time.Hour)):
			w.add("session.interval-short", p+"/infusionStart",
				"the infusion starts less than %g hours (sessionMinIntervalHours) from that of session %s, another session of this patient stored before: no ketamine or esketamine protocol doses more than once a day; check for a double entry or the date", hours, o.RecordID)
		}
	}
	if len(w) == 0 {
		return nil
	}
	return w
}

// overlaps reports whether two infusion periods share time: each starts
// before the other ends (an infusion without an end is its start; two
// that start at the same instant overlap; one that ends as the other
// starts does not).
func overlaps(s1, e1, s2, e2 time.Time) bool {
	if e1.IsZero() {
		e1 = s1
	}
	if e2.IsZero() {
		e2 = s2
	}
	return s1.Equal(s2) || (s1.Before(e2) && s2.Before(e1))
}

// number reads a decoded JSON number (json.Number, as the gateway decodes
// stored resources, or float64).
func number(v any) (float64, bool) {
	switch n := v.(type) {
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	case float64:
		return n, true
	}
	return 0, false
}
