package mapping_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestSessionSpacing: a session that gave its drug is warned about each
// other stored session of its patient whose infusion overlaps its own
// (session.overlap) or starts less than SessionMinIntervalHours from it
// (session.interval-short), naming that session's record id and no value;
// itself, sessions far enough apart, an undosed or withdrawn record and a
// threshold of 0 are not.
func TestSessionSpacing(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// The infusion runs 2026-05-20 10:00-10:40Z.
	const iv = `"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80, "totalDoseMg": 40,
		"infusionStart": "2026-05-20T10:00:00Z", "infusionEnd": "2026-05-20T10:40:00Z"`
	infusion := `{` + envelope + `, ` + iv + `}`
	session := `{` + envelope + `, "infusion": {` + iv + `}}`
	other := func(id, start, end string) mapping.OtherSession {
		o := mapping.OtherSession{RecordID: id, Start: at(start)}
		if end != "" {
			o.End = at(end)
		}
		return o
	}
	twelve := 12.0
	zero := 0.0
	tests := []struct {
		name   string
		kind   mapping.Kind
		rec    string
		others []mapping.OtherSession
		hours  *float64
		want   string
	}{
		{"alone", mapping.KindInfusion, infusion, nil, nil, ""},
		{"itself stored before", mapping.KindInfusion, infusion, []mapping.OtherSession{other("R-1", "2026-05-20T10:00:00Z", "2026-05-20T10:40:00Z")}, nil, ""},
		{"overlapping", mapping.KindInfusion, infusion, []mapping.OtherSession{other("S-9", "2026-05-20T10:30:00Z", "2026-05-20T11:10:00Z")}, nil,
			"session.overlap /infusionStart S-9"},
		{"same start, no ends", mapping.KindSession, session, []mapping.OtherSession{other("S-9", "2026-05-20T10:00:00Z", "")}, nil,
			"session.overlap /infusion/infusionStart S-9"},
		{"ends as this starts", mapping.KindInfusion, infusion, []mapping.OtherSession{other("S-9", "2026-05-20T09:20:00Z", "2026-05-20T10:00:00Z")}, nil,
			"session.interval-short /infusionStart S-9"},
		{"19 hours before", mapping.KindSession, session, []mapping.OtherSession{other("S-8", "2026-05-19T15:00:00Z", "2026-05-19T15:40:00Z")}, nil,
			"session.interval-short /infusion/infusionStart S-8"},
		{"20 hours before", mapping.KindSession, session, []mapping.OtherSession{other("S-8", "2026-05-19T14:00:00Z", "2026-05-19T14:40:00Z")}, nil, ""},
		{"19 hours after, and one overlapping", mapping.KindInfusion, infusion, []mapping.OtherSession{
			other("S-10", "2026-05-21T05:00:00Z", ""), other("S-9", "2026-05-20T10:39:00Z", "")}, nil,
			"session.overlap /infusionStart S-9; session.interval-short /infusionStart S-10"},
		{"19 hours, threshold 12", mapping.KindInfusion, infusion, []mapping.OtherSession{other("S-8", "2026-05-19T15:00:00Z", "")}, &twelve, ""},
		{"11 hours, threshold 12", mapping.KindInfusion, infusion, []mapping.OtherSession{other("S-8", "2026-05-19T23:00:00Z", "")}, &twelve,
			"session.interval-short /infusionStart S-8"},
		{"threshold 0: overlap only", mapping.KindInfusion, infusion, []mapping.OtherSession{
			other("S-8", "2026-05-19T23:00:00Z", ""), other("S-9", "2026-05-20T10:10:00Z", "")}, &zero,
			"session.overlap /infusionStart S-9"},
		{"not done", mapping.KindInfusion, `{` + envelope + `, "drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "patient-no-show"},
			"scheduledAt": "2026-05-20T10:00:00Z"}`, []mapping.OtherSession{other("S-9", "2026-05-20T10:00:00Z", "")}, nil, ""},
		{"withdrawn", mapping.KindInfusion, strings.Replace(infusion, `"version": "1"`, `"version": "1", "status": "entered-in-error"`, 1),
			[]mapping.OtherSession{other("S-9", "2026-05-20T10:00:00Z", "")}, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := mapping.Decode(tc.kind, []byte(tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			if err := mapping.Check(rec); err != nil {
				t.Fatalf("Check: %v", describe(err))
			}
			opts := mapping.Options{}
			if tc.hours != nil {
				s := mapping.DefaultSafety()
				s.SessionMinIntervalHours = *tc.hours
				opts.Safety = &s
			}
			var got []string
			for _, w := range mapping.SessionSpacing(rec, tc.others, opts) {
				if w.Expression == "" || strings.Contains(w.Message, "2026") || strings.Contains(w.Message, "P-1") {
					t.Errorf("%s: expression %q, message %q (no value)", w.Rule, w.Expression, w.Message)
				}
				name := ""
				for _, o := range tc.others {
					if strings.Contains(w.Message, "session "+o.RecordID+",") {
						name = o.RecordID
					}
				}
				got = append(got, w.Rule+" "+w.Pointer+" "+name)
			}
			if s := strings.Join(got, "; "); s != tc.want {
				t.Errorf("SessionSpacing() = %q, want %q", s, tc.want)
			}
		})
	}
}

// TestOtherSessionOf reads a stored session's MedicationAdministration: its
// record id and infusion period; not one not done, withdrawn, of a dose of
// 0, or of another system.
func TestOtherSessionOf(t *testing.T) {
	id := mapping.SessionID{System: mapping.DefaultIdentifierBase + "/serenity-clinic-emr/infusion-session", Value: "R-1"}
	admin := func(status, value, dose string) map[string]any {
		var doc map[string]any
		d := json.NewDecoder(strings.NewReader(`{"resourceType": "MedicationAdministration", "status": "` + status + `",
			"identifier": [{"system": "` + id.System + `", "value": "` + value + `"}],
			"effectivePeriod": {"start": "2026-05-20T10:00:00Z", "end": "2026-05-20T10:40:00Z"},
			"dosage": {"dose": {"value": ` + dose + `, "unit": "mg"}}}`))
		d.UseNumber()
		if err := d.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		return doc
	}
	for _, tc := range []struct {
		name string
		doc  map[string]any
		want string
	}{
		{"completed", admin("completed", "S-9-medication", "40"), "S-9 2026-05-20T10:00:00Z 2026-05-20T10:40:00Z"},
		{"stopped", admin("stopped", "S-9-medication", "14"), "S-9 2026-05-20T10:00:00Z 2026-05-20T10:40:00Z"},
		{"stopped before any dose", admin("stopped", "S-9-medication", "0"), ""},
		{"not done", admin("not-done", "S-9-medication", "40"), ""},
		{"withdrawn", admin("entered-in-error", "S-9-medication", "40"), ""},
		{"not a session's administration", admin("completed", "S-9", "40"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ""
			if o, ok := mapping.OtherSessionOf(tc.doc, id); ok {
				got = o.RecordID + " " + o.Start.Format(time.RFC3339) + " " + o.End.Format(time.RFC3339)
			}
			if got != tc.want {
				t.Errorf("OtherSessionOf() = %q, want %q", got, tc.want)
			}
		})
	}
}
