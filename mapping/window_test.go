package mapping_test

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// decodeFile decodes testdata/<base>.input.json, patched, as its kind.
func decodeFile(t *testing.T, kind mapping.Kind, base string, p patch) mapping.Record {
	t.Helper()
	rec, err := mapping.Decode(kind, applyPatch(t, filepath.Join("testdata", base+".input.json"), p))
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

// wantRule checks that err is a *RuleError with exactly rule at pointer,
// or nil when rule is "".
func wantRule(t *testing.T, err error, rule, pointer string) {
	t.Helper()
	if rule == "" {
		if err != nil {
			t.Fatalf("got %v, want no error", describe(err))
		}
		return
	}
	var re *mapping.RuleError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want *RuleError %s", err, rule)
	}
	if len(re.Violations) != 1 || re.Violations[0].Rule != rule || re.Violations[0].Pointer != pointer {
		t.Fatalf("got %+v, want exactly %s at %s", re.Violations, rule, pointer)
	}
}

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestCheckLinked: a record sent on its own is checked against its stored
// session with the rules a session document gets.
func TestCheckLinked(t *testing.T) {
	w, ok := mapping.WindowFrom("2026-03-02T09:00:00-05:00", "2026-03-02T11:00:00-05:00")
	if !ok {
		t.Fatal("WindowFrom refused a start")
	}
	stored := mapping.StoredSession{Window: w, HasWindow: true}
	// A stored session without monitoringEnd: its performedPeriod ends
	// at its infusion's end.
	unmonitored, _ := mapping.WindowFrom("2026-03-02T09:00:00-05:00", "2026-03-02T09:40:00-05:00")
	unmonitored.InfusionEnd = unmonitored.End
	noMonitoring := mapping.StoredSession{Window: unmonitored, HasWindow: true}
	notDoneSession := mapping.StoredSession{NotDone: true}
	tests := []struct {
		name    string
		kind    mapping.Kind
		base    string
		patch   patch
		session mapping.StoredSession
		rule    string
		pointer string
	}{
		{"ae at the start", mapping.KindAdverseEvent, "adverse-event/nausea", patch{"/onsetAt": "2026-03-02T09:00:00-05:00"}, stored, "", ""},
		{"ae 15 hours before", mapping.KindAdverseEvent, "adverse-event/nausea", patch{"/onsetAt": "2026-03-01T18:00:00-05:00"}, stored, "session.time-window", "/onsetAt"},
		{"ae before a session without window", mapping.KindAdverseEvent, "adverse-event/nausea", patch{"/onsetAt": "2026-03-01T18:00:00-05:00"}, mapping.StoredSession{}, "", ""},
		{"ae of another patient's session", mapping.KindAdverseEvent, "adverse-event/nausea", patch{"/onsetAt": "2026-03-02T09:30:00-05:00"}, mapping.StoredSession{Window: w, HasWindow: true, OtherPatient: true}, "session.patient-mismatch", "/sessionId"},
		{"post-dose vitals inside", mapping.KindVitals, "vitals/post-40min-bp", patch{"/measuredAt": "2026-03-02T09:40:00-05:00"}, stored, "", ""},
		{"post-dose vitals after the end", mapping.KindVitals, "vitals/post-40min-bp", patch{"/measuredAt": "2026-03-02T11:00:01-05:00"}, stored, "session.time-window", "/measuredAt"},
		{"post-dose vitals before the start", mapping.KindVitals, "vitals/post-40min-bp", patch{"/measuredAt": "2026-03-02T08:59:59-05:00"}, stored, "session.time-window", "/measuredAt"},
		{"pre-dose vitals before the start", mapping.KindVitals, "vitals/post-40min-bp", patch{"/timepoint": "pre-dose", "/measuredAt": "2026-03-02T08:00:00-05:00"}, stored, "", ""},
		{"pre-dose vitals at the start", mapping.KindVitals, "vitals/post-40min-bp", patch{"/timepoint": "pre-dose", "/measuredAt": "2026-03-02T09:00:00-05:00"}, stored, "", ""},
		{"pre-dose vitals after the start", mapping.KindVitals, "vitals/post-40min-bp", patch{"/timepoint": "pre-dose", "/measuredAt": "2026-03-02T10:50:00-05:00"}, stored, "session.time-window", "/measuredAt"},
		{"discharge vitals before the start", mapping.KindVitals, "vitals/post-40min-bp", patch{"/timepoint": "discharge", "/measuredAt": "2026-03-02T08:00:00-05:00"}, stored, "session.time-window", "/measuredAt"},
		{"discharge vitals after the start", mapping.KindVitals, "vitals/post-40min-bp", patch{"/timepoint": "discharge", "/measuredAt": "2026-03-02T09:30:00-05:00"}, stored, "", ""},
		{"moaas after the end", mapping.KindAssessment, "assessment/moaas", patch{"/takenAt": "2026-03-02T11:30:00-05:00"}, stored, "session.time-window", "/takenAt"},
		{"baseline moaas before the start", mapping.KindAssessment, "assessment/moaas", patch{"/takenAt": "2026-03-02T08:15:00-05:00"}, stored, "", ""},
		{"moaas more than 2 hours before the start", mapping.KindAssessment, "assessment/moaas", patch{"/takenAt": "2026-03-02T06:59:59-05:00"}, stored, "session.time-window", "/takenAt"},
		{"moaas after the infusion end, no monitoring end", mapping.KindAssessment, "assessment/moaas", patch{"/takenAt": "2026-03-02T09:50:00-05:00"}, noMonitoring, "", ""},
		{"moaas over a day after the infusion end, no monitoring end", mapping.KindAssessment, "assessment/moaas", patch{"/takenAt": "2026-03-03T09:40:01-05:00"}, noMonitoring, "session.time-window", "/takenAt"},
		{"ae without causality before the start", mapping.KindAdverseEvent, "adverse-event/nausea", patch{"/onsetAt": "2026-03-02T08:45:00-05:00", "/causality": nil}, stored, "", ""},
		{"phq9 before the start", mapping.KindAssessment, "assessment/phq9-complete-with-total", patch{"/takenAt": "2026-03-02T08:00:00-05:00"}, stored, "", ""},
		{"ae causality, session not done", mapping.KindAdverseEvent, "adverse-event/nausea", nil, notDoneSession, "session.not-given", "/causality"},
		{"ae without causality, session not done", mapping.KindAdverseEvent, "adverse-event/nausea", patch{"/causality": nil}, notDoneSession, "", ""},
		{"moaas of a session not done", mapping.KindAssessment, "assessment/moaas", nil, notDoneSession, "session.not-given", "/sessionId"},
		{"post-dose vitals of a session not done", mapping.KindVitals, "vitals/post-40min-bp", nil, notDoneSession, "session.not-given", "/sessionId"},
		{"pre-dose vitals of a session not done", mapping.KindVitals, "vitals/pre-dose-full", nil, notDoneSession, "", ""},
		{"phq9 of a session not done", mapping.KindAssessment, "assessment/phq9-complete-with-total", nil, notDoneSession, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRule(t, mapping.CheckLinked(decodeFile(t, tc.kind, tc.base, tc.patch), tc.session), tc.rule, tc.pointer)
		})
	}
}

// TestCheckStored: a session version may not leave a record stored for it
// outside its window, nor be named by another patient's record.
func TestCheckStored(t *testing.T) {
	tests := []struct {
		name    string
		kind    mapping.Kind
		base    string
		patch   patch
		linked  mapping.Linked
		rule    string
		pointer string
	}{
		{"ae inside", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{Onset: at("2026-03-02T09:30:00-05:00")}, "", ""},
		{"ae before the start", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{Onset: at("2026-03-01T18:00:00-05:00"), Causality: true}, "session.time-window", "/infusionStart"},
		{"ae before the start, session document", mapping.KindSession, "session/iv-routine", nil, mapping.Linked{Onset: at("2026-03-01T18:00:00-05:00"), Causality: true}, "session.time-window", "/infusion/infusionStart"},
		{"ae without causality before the start", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{Onset: at("2026-03-02T08:45:00-05:00")}, "", ""},
		{"measurement after the end", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{During: at("2026-03-02T11:30:00-05:00")}, "session.time-window", "/monitoringEnd"},
		{"measurement after the infusion end, no monitoring", mapping.KindInfusion, "infusion/iv-completed", patch{"/monitoringEnd": nil}, mapping.Linked{During: at("2026-03-02T09:50:00-05:00")}, "", ""},
		{"measurement over a day after the infusion end, no monitoring", mapping.KindInfusion, "infusion/iv-completed", patch{"/monitoringEnd": nil}, mapping.Linked{During: at("2026-03-03T09:40:01-05:00")}, "session.time-window", "/infusionEnd"},
		{"measurement before the start", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{During: at("2026-03-02T08:59:00-05:00")}, "session.time-window", "/infusionStart"},
		{"baseline rating before the start", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{During: at("2026-03-02T08:00:00-05:00"), Rating: true}, "", ""},
		{"rating more than 2 hours before the start", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{During: at("2026-03-02T06:59:00-05:00"), Rating: true}, "session.time-window", "/infusionStart"},
		{"pre-dose measurement at the start", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{PreDose: at("2026-03-02T09:00:00-05:00")}, "", ""},
		{"pre-dose measurement after the start", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{PreDose: at("2026-03-02T09:00:01-05:00")}, "session.time-window", "/infusionStart"},
		{"discharge measurement at the infusion end", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{Discharge: at("2026-03-02T09:40:00-05:00")}, "", ""},
		{"discharge measurement before the infusion end", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{Discharge: at("2026-03-02T09:39:59-05:00")}, "session.time-window", "/infusionEnd"},
		{"discharge measurement before the start, no end", mapping.KindInfusion, "infusion/iv-stopped-early-hypertension", patch{"/infusionEnd": nil, "/administeredDurationMin": 22}, mapping.Linked{Discharge: at("2026-06-02T09:00:00-05:00")}, "session.time-window", "/infusionStart"},
		{"not done: no window", mapping.KindInfusion, "infusion/not-done", nil, mapping.Linked{Onset: at("2020-01-01T00:00:00Z")}, "", ""},
		{"not done: a stored ae judges the drug", mapping.KindInfusion, "infusion/not-done", nil, mapping.Linked{Onset: at("2026-03-05T09:30:00-05:00"), Causality: true}, "session.not-given", "/status"},
		{"not done: a stored measurement during it", mapping.KindInfusion, "infusion/not-done", nil, mapping.Linked{During: at("2026-03-05T09:30:00-05:00")}, "session.not-given", "/status"},
		{"not done, session document: a stored measurement during it", mapping.KindSession, "session/iv-routine", notDone(nil), mapping.Linked{During: at("2026-03-02T09:30:00-05:00")}, "session.not-given", "/infusion/status"},
		{"given: a stored ae judges the drug", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{Onset: at("2026-03-02T09:30:00-05:00"), Causality: true}, "", ""},
		{"another patient's record", mapping.KindInfusion, "infusion/iv-completed", nil, mapping.Linked{OtherPatient: true}, "session.patient-mismatch", "/patient/id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRule(t, mapping.CheckStored(decodeFile(t, tc.kind, tc.base, tc.patch), []mapping.Linked{tc.linked}), tc.rule, tc.pointer)
		})
	}
}

// TestCheckStoredNamesRecord: a session refused because of records stored
// before it names each of them (kind and record id, the clinic's own
// identifiers), one issue per record, and no value.
func TestCheckStoredNamesRecord(t *testing.T) {
	rec := decodeFile(t, mapping.KindInfusion, "infusion/iv-completed", nil)
	err := mapping.CheckStored(rec, []mapping.Linked{
		{During: at("2026-03-02T11:30:00-05:00"), Kind: mapping.KindVitals, RecordID: "V-7"},
		{During: at("2026-03-02T11:40:00-05:00"), Kind: mapping.KindAssessment, RecordID: "A-8"},
		{OtherPatient: true, Kind: mapping.KindAdverseEvent, RecordID: "AE-9"},
	})
	var re *mapping.RuleError
	if !errors.As(err, &re) || len(re.Violations) != 3 {
		t.Fatalf("CheckStored() = %v, want 3 violations", describe(err))
	}
	for _, want := range []string{"vitals record V-7", "assessment record A-8", "adverse-event record AE-9"} {
		found := false
		for _, v := range re.Violations {
			found = found || strings.Contains(v.Message, want)
		}
		if !found {
			t.Errorf("no violation names the stored %s: %+v", want, re.Violations)
		}
	}
	for _, v := range re.Violations {
		if strings.Contains(v.Message, "2026") || strings.Contains(v.Message, "11:") {
			t.Errorf("message quotes a time: %q", v.Message)
		}
	}
}

// TestLinkedOf reads back, from the resources the mappings write, what the
// window rule checks.
func TestLinkedOf(t *testing.T) {
	find := func(kind mapping.Kind, base, typ, code string) map[string]any {
		b, err := json.Marshal(decodeFile(t, kind, base, nil))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range mapped(t, kind, string(b), mapping.Options{}) {
			if r["resourceType"] == typ && (code == "" || loinc(r) == code) {
				return r
			}
		}
		t.Fatalf("%s: no %s %s", base, typ, code)
		return nil
	}
	ae := mapping.LinkedOf(find(mapping.KindAdverseEvent, "adverse-event/nausea", "AdverseEvent", ""))
	if ae.Onset.IsZero() || !ae.During.IsZero() || !ae.Causality {
		t.Errorf("adverse event: %+v, want an onset and a causality", ae)
	}
	noCausality := find(mapping.KindAdverseEvent, "adverse-event/nausea", "AdverseEvent", "")
	for _, se := range noCausality["suspectEntity"].([]any) {
		delete(se.(map[string]any), "causality")
	}
	if l := mapping.LinkedOf(noCausality); l.Causality {
		t.Errorf("adverse event without causality: %+v, want none", l)
	}
	post := mapping.LinkedOf(find(mapping.KindVitals, "vitals/post-40min-bp", "Observation", "8867-4"))
	if post.During.IsZero() || post.Rating {
		t.Errorf("post-dose vitals: %+v, want a time during the session, not a rating", post)
	}
	pre := mapping.LinkedOf(find(mapping.KindVitals, "vitals/pre-dose-full", "Observation", "8867-4"))
	if !pre.During.IsZero() || !pre.Onset.IsZero() || pre.PreDose.IsZero() || !pre.Discharge.IsZero() {
		t.Errorf("pre-dose vitals: %+v, want a pre-dose time only", pre)
	}
	discharge := mapping.LinkedOf(find(mapping.KindVitals, "vitals/discharge-imperial", "Observation", ""))
	if discharge.Discharge.IsZero() || !discharge.PreDose.IsZero() || !discharge.During.IsZero() {
		t.Errorf("discharge vitals: %+v, want a discharge time only", discharge)
	}
	moaas := mapping.LinkedOf(find(mapping.KindAssessment, "assessment/moaas", "Observation", "moaa-s"))
	if moaas.During.IsZero() || !moaas.Rating {
		t.Errorf("MOAA/S: %+v, want a rating's time during the session", moaas)
	}
	cadss := mapping.LinkedOf(find(mapping.KindAssessment, "assessment/cadss", "Observation", "cadss"))
	if cadss.During.IsZero() || !cadss.Rating {
		t.Errorf("CADSS panel: %+v, want a rating's time during the session", cadss)
	}
	phq := mapping.LinkedOf(find(mapping.KindAssessment, "assessment/gad7", "Observation", ""))
	if !phq.During.IsZero() {
		t.Errorf("GAD-7: %+v, want nothing", phq)
	}
	// Each names its source record: kind and record id.
	for _, tc := range []struct {
		l        mapping.Linked
		kind     mapping.Kind
		recordID string
	}{
		{ae, mapping.KindAdverseEvent, "AE-100"},
		{post, mapping.KindVitals, "V-101"},
		{mapping.LinkedOf(find(mapping.KindVitals, "vitals/post-40min-bp", "Observation", "85354-9")), mapping.KindVitals, "V-101"},
		{pre, mapping.KindVitals, "V-100"},
		{discharge, mapping.KindVitals, "V-102"},
		{moaas, mapping.KindAssessment, "A-109"},
		{cadss, mapping.KindAssessment, "A-108"},
	} {
		if tc.l.Kind != tc.kind || tc.l.RecordID != tc.recordID {
			t.Errorf("LinkedOf() names %s record %q, want %s record %q", tc.l.Kind, tc.l.RecordID, tc.kind, tc.recordID)
		}
	}
	withdrawn := find(mapping.KindVitals, "vitals/post-40min-bp", "Observation", "8867-4")
	withdrawn["status"] = "entered-in-error"
	if l := mapping.LinkedOf(withdrawn); !l.During.IsZero() {
		t.Errorf("withdrawn Observation: %+v, want nothing", l)
	}
}

// TestSessionWeight: the dosing weight and a vitals weight of a session
// are one Observation when they agree within WeightAgreementKg.
func TestSessionWeight(t *testing.T) {
	tests := []struct {
		name   string
		weight string
		want   int // body-weight Observations
	}{
		{"same kg", `{"value": 80, "unit": "kg"}`, 1},
		{"0.05 kg more", `{"value": 80.05, "unit": "kg"}`, 1},
		{"0.06 kg more", `{"value": 80.06, "unit": "kg"}`, 2},
		{"pounds agreeing", `{"value": 176.4, "unit": "[lb_av]"}`, 1},
		{"pounds differing", `{"value": 176.5, "unit": "[lb_av]"}`, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var w any
			_ = json.Unmarshal([]byte(tc.weight), &w)
			b, _ := json.Marshal(decodeFile(t, mapping.KindSession, "session/iv-routine", patch{"/vitals/0/bodyWeight": w}))
			n := 0
			var medRefs []any
			for _, r := range mapped(t, mapping.KindSession, string(b), mapping.Options{}) {
				if r["resourceType"] == "Observation" && loinc(r) == "29463-7" {
					n++
				}
				if r["resourceType"] == "MedicationAdministration" {
					medRefs, _ = r["supportingInformation"].([]any)
				}
			}
			if n != tc.want || len(medRefs) != 1 {
				t.Errorf("%d body-weight Observations, %d weights referenced by the administration; want %d and 1", n, len(medRefs), tc.want)
			}
		})
	}
}
