package mapping_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// mapped maps a record (JSON) of kind with opts and returns its entries'
// resources decoded, with their request methods.
func mapped(t *testing.T, kind mapping.Kind, record string, opts mapping.Options) []map[string]any {
	t.Helper()
	rec, err := mapping.Decode(kind, []byte(record))
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	res, err := mapping.Map(rec, opts)
	if err != nil {
		t.Fatalf("Map: %v", describe(err))
	}
	var out []map[string]any
	for _, e := range res.Entries {
		raw, err := mapping.MarshalResource(e.Resource)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		if m == nil {
			m = map[string]any{}
		}
		m["(method)"] = string(e.Method.Code())
		out = append(out, m)
	}
	return out
}

// interpretations lists the interpretation codes of a decoded element.
func interpretations(el map[string]any) string {
	var codes []string
	list, _ := el["interpretation"].([]any)
	for _, i := range list {
		for _, c := range i.(map[string]any)["coding"].([]any) {
			codes = append(codes, c.(map[string]any)["code"].(string))
		}
	}
	return strings.Join(codes, ",")
}

// loinc is the first code of a decoded element's code.
func loinc(el map[string]any) string {
	return el["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
}

const envelope = `"source": {"system": "serenity-clinic-emr", "recordId": "R-1", "version": "1"}, "patient": {"id": "P-1"}`

// vitalsInterpretation maps a vitals record with one measurement (JSON
// members) and returns the interpretation of the Observation (or of the
// blood-pressure component code).
func vitalsInterpretation(t *testing.T, measurement, code string, opts mapping.Options) string {
	t.Helper()
	rec := `{` + envelope + `, "timepoint": "other", "timepointText": "check", "measuredAt": "2026-05-20T10:00:00Z", ` + measurement + `}`
	for _, r := range mapped(t, mapping.KindVitals, rec, opts) {
		if r["resourceType"] != "Observation" {
			continue
		}
		if loinc(r) == code {
			return interpretations(r)
		}
		comps, _ := r["component"].([]any)
		for _, c := range comps {
			if cm := c.(map[string]any); loinc(cm) == code {
				return interpretations(cm)
			}
		}
	}
	t.Fatalf("no Observation or component with code %s", code)
	return ""
}

// TestVitalThresholdEdges checks each default threshold on both sides of
// its edge: H and HH from the limit up, L and LL strictly below it.
func TestVitalThresholdEdges(t *testing.T) {
	bp := func(sys, dia float64) string {
		return fmt.Sprintf(`"bloodPressure": {"systolic": %g, "diastolic": %g}`, sys, dia)
	}
	num := func(name string) func(v float64) string {
		return func(v float64) string { return fmt.Sprintf(`%q: %g`, name, v) }
	}
	temp := func(unit string) func(v float64) string {
		return func(v float64) string { return fmt.Sprintf(`"temperature": {"value": %g, "unit": %q}`, v, unit) }
	}
	sys := func(v float64) string { return bp(v, 60) }
	dia := func(v float64) string { return bp(200, v) }
	tests := []struct {
		name  string
		rec   func(float64) string
		code  string
		value float64
		want  string
	}{
		{"systolic below H", sys, "8480-6", 139, ""},
		{"systolic H", sys, "8480-6", 140, "H"},
		{"systolic below HH", sys, "8480-6", 179, "H"},
		{"systolic HH", sys, "8480-6", 180, "HH"},
		{"systolic L", sys, "8480-6", 89, "L"},
		{"systolic not L", sys, "8480-6", 90, ""},
		{"diastolic below H", dia, "8462-4", 89, ""},
		{"diastolic H", dia, "8462-4", 90, "H"},
		{"diastolic below HH", dia, "8462-4", 109, "H"},
		{"diastolic HH", dia, "8462-4", 110, "HH"},
		{"diastolic not L", dia, "8462-4", 60, ""},
		{"diastolic L", dia, "8462-4", 59, "L"},
		{"heart rate 130", num("heartRate"), "8867-4", 130, "H"},
		{"heart rate 131", num("heartRate"), "8867-4", 131, "HH"},
		{"heart rate 110", num("heartRate"), "8867-4", 110, ""},
		{"heart rate 111", num("heartRate"), "8867-4", 111, "H"},
		{"heart rate 51", num("heartRate"), "8867-4", 51, ""},
		{"heart rate 50", num("heartRate"), "8867-4", 50, "L"},
		{"heart rate 41", num("heartRate"), "8867-4", 41, "L"},
		{"heart rate 40", num("heartRate"), "8867-4", 40, "LL"},
		{"respiratory rate 20", num("respiratoryRate"), "9279-1", 20, ""},
		{"respiratory rate 21", num("respiratoryRate"), "9279-1", 21, "H"},
		{"respiratory rate 24", num("respiratoryRate"), "9279-1", 24, "H"},
		{"respiratory rate 25", num("respiratoryRate"), "9279-1", 25, "HH"},
		{"respiratory rate 12", num("respiratoryRate"), "9279-1", 12, ""},
		{"respiratory rate 11", num("respiratoryRate"), "9279-1", 11, "L"},
		{"respiratory rate 9", num("respiratoryRate"), "9279-1", 9, "L"},
		{"respiratory rate 8", num("respiratoryRate"), "9279-1", 8, "LL"},
		{"spo2 94", num("spo2"), "2708-6", 94, ""},
		{"spo2 93.9", num("spo2"), "2708-6", 93.9, "L"},
		{"spo2 90", num("spo2"), "2708-6", 90, "L"},
		{"spo2 89.9", num("spo2"), "2708-6", 89.9, "LL"},
		{"temperature 38.0", temp("Cel"), "8310-5", 38.0, ""},
		{"temperature 38.1", temp("Cel"), "8310-5", 38.1, "H"},
		{"temperature 39.0", temp("Cel"), "8310-5", 39.0, "H"},
		{"temperature 39.1", temp("Cel"), "8310-5", 39.1, "HH"},
		{"temperature 36.1", temp("Cel"), "8310-5", 36.1, ""},
		{"temperature 36.0", temp("Cel"), "8310-5", 36.0, "L"},
		{"temperature 35.1", temp("Cel"), "8310-5", 35.1, "L"},
		{"temperature 35.0", temp("Cel"), "8310-5", 35.0, "LL"},
		{"temperature 100.5 degF (38.06 Cel)", temp("[degF]"), "8310-5", 100.5, ""},
		{"temperature 100.6 degF (38.11 Cel)", temp("[degF]"), "8310-5", 100.6, "H"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := vitalsInterpretation(t, tc.rec(tc.value), tc.code, mapping.Options{}); got != tc.want {
				t.Errorf("interpretation of %g = %q, want %q", tc.value, got, tc.want)
			}
		})
	}
}

// TestBloodPressurePanelInterpretation: the panel carries the more severe
// of its components' interpretations.
func TestBloodPressurePanelInterpretation(t *testing.T) {
	for _, tc := range []struct {
		sys, dia float64
		want     string
	}{{120, 80, ""}, {150, 80, "H"}, {150, 112, "HH"}, {185, 95, "HH"}, {88, 58, "L"}, {142, 58, "H"}} {
		got := vitalsInterpretation(t, fmt.Sprintf(`"bloodPressure": {"systolic": %g, "diastolic": %g}`, tc.sys, tc.dia), "85354-9", mapping.Options{})
		if got != tc.want {
			t.Errorf("panel interpretation of %g/%g = %q, want %q", tc.sys, tc.dia, got, tc.want)
		}
	}
}

// TestThresholdOverride: a tenant's thresholds replace the defaults, and a
// zero limit is not applied.
func TestThresholdOverride(t *testing.T) {
	s := mapping.DefaultSafety()
	s.Systolic.CriticalHigh = 170
	s.SpO2.Low = 0
	opts := mapping.Options{Safety: &s}
	if got := vitalsInterpretation(t, `"bloodPressure": {"systolic": 169, "diastolic": 80}`, "8480-6", opts); got != "H" {
		t.Errorf("systolic 169 with HH at 170 = %q, want H", got)
	}
	if got := vitalsInterpretation(t, `"bloodPressure": {"systolic": 170, "diastolic": 80}`, "8480-6", opts); got != "HH" {
		t.Errorf("systolic 170 with HH at 170 = %q, want HH", got)
	}
	if got := vitalsInterpretation(t, `"spo2": 92`, "2708-6", opts); got != "" {
		t.Errorf("spo2 92 with no low limit = %q, want none", got)
	}
	if got := vitalsInterpretation(t, `"spo2": 89`, "2708-6", opts); got != "LL" {
		t.Errorf("spo2 89 = %q, want LL", got)
	}
}

// flags maps an assessment and returns its Flags' statuses and the
// interpretation of the Observation with code.
func flags(t *testing.T, rec, code string, opts mapping.Options) (statuses []string, interp string) {
	t.Helper()
	for _, r := range mapped(t, mapping.KindAssessment, rec, opts) {
		switch r["resourceType"] {
		case "Flag":
			statuses = append(statuses, r["status"].(string))
		case "Observation":
			if loinc(r) == code {
				interp = interpretations(r)
			}
		}
	}
	return statuses, interp
}

func phq9(item9 int) string {
	items := ""
	for i := 1; i <= 8; i++ {
		items += fmt.Sprintf(`{"number": %d, "score": 1}, `, i)
	}
	return `{` + envelope + `, "instrument": "PHQ-9", "takenAt": "2026-05-20T09:00:00Z", "items": [` + items +
		fmt.Sprintf(`{"number": 9, "score": %d}]}`, item9)
}

// TestPHQ9Item9Flag: item 9 at or above the threshold flags the patient
// (and marks item 9 POS); below it nothing, unless a later version clears
// a flag (inactive).
func TestPHQ9Item9Flag(t *testing.T) {
	two := mapping.DefaultSafety()
	two.PHQ9Item9 = 2
	tests := []struct {
		name   string
		item9  int
		opts   mapping.Options
		flags  string
		interp string
	}{
		{"item 9 = 0", 0, mapping.Options{}, "", ""},
		{"item 9 = 1", 1, mapping.Options{}, "active", "POS"},
		{"item 9 = 3", 3, mapping.Options{}, "active", "POS"},
		{"threshold 2, item 9 = 1", 1, mapping.Options{Safety: &two}, "", ""},
		{"threshold 2, item 9 = 2", 2, mapping.Options{Safety: &two}, "active", "POS"},
		{"later version, item 9 = 0", 0, mapping.Options{Update: true}, "inactive", ""},
		{"later version, item 9 = 1", 1, mapping.Options{Update: true}, "active", "POS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, interp := flags(t, phq9(tc.item9), "44260-8", tc.opts)
			if strings.Join(got, ",") != tc.flags || interp != tc.interp {
				t.Errorf("flags %v, item 9 interpretation %q; want %q, %q", got, interp, tc.flags, tc.interp)
			}
		})
	}
}

// TestPHQ9TotalOnlyFlag: a PHQ-9 sent as its total raises item 9's Flag
// when the total says item 9 reached the threshold (the other eight items
// score at most 24), and marks the total POS.
func TestPHQ9TotalOnlyFlag(t *testing.T) {
	two := mapping.DefaultSafety()
	two.PHQ9Item9 = 2
	tests := []struct {
		name   string
		total  int
		opts   mapping.Options
		flags  string
		interp string
	}{
		{"total 24", 24, mapping.Options{}, "", "band-severe"},
		{"total 25", 25, mapping.Options{}, "active", "band-severe,POS"},
		{"total 27", 27, mapping.Options{}, "active", "band-severe,POS"},
		{"threshold 2, total 25", 25, mapping.Options{Safety: &two}, "", "band-severe"},
		{"threshold 2, total 26", 26, mapping.Options{Safety: &two}, "active", "band-severe,POS"},
		{"later version, total 20", 20, mapping.Options{Update: true}, "inactive", "band-severe"},
		{"later version, total 25", 25, mapping.Options{Update: true}, "active", "band-severe,POS"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := `{` + envelope + fmt.Sprintf(`, "instrument": "PHQ-9", "takenAt": "2026-05-20T09:00:00Z", "total": %d}`, tc.total)
			got, interp := flags(t, rec, "44261-6", tc.opts)
			if strings.Join(got, ",") != tc.flags || interp != tc.interp {
				t.Errorf("flags %v, total interpretation %q; want %q, %q", got, interp, tc.flags, tc.interp)
			}
		})
	}
}

// TestInactiveFlagPeriod: a Flag made inactive by a later version ends
// its period: at the version's source.lastUpdated, else (or when that is
// before the assessment) at the assessment's time.
func TestInactiveFlagPeriod(t *testing.T) {
	tests := []struct {
		name, lastUpdated, item9 string
		opts                     mapping.Options
		want                     string
	}{
		{"inactive, no lastUpdated", "", "0", mapping.Options{Update: true}, "2026-05-20T09:00:00Z"},
		{"inactive, lastUpdated after", "2026-05-21T10:00:00-04:00", "0", mapping.Options{Update: true}, "2026-05-21T10:00:00-04:00"},
		{"inactive, lastUpdated a little before", "2026-05-20T08:55:00Z", "0", mapping.Options{Update: true}, "2026-05-20T09:00:00Z"},
		{"active", "2026-05-21T10:00:00Z", "1", mapping.Options{Update: true}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := strings.Replace(phq9(0), `"score": 0}]`, `"score": `+tc.item9+`}]`, 1)
			if tc.lastUpdated != "" {
				rec = strings.Replace(rec, `"version": "1"`, `"version": "1", "lastUpdated": "`+tc.lastUpdated+`"`, 1)
			}
			var flags int
			for _, r := range mapped(t, mapping.KindAssessment, rec, tc.opts) {
				if r["resourceType"] != "Flag" {
					continue
				}
				flags++
				period := r["period"].(map[string]any)
				end, _ := period["end"].(string)
				if period["start"] != "2026-05-20T09:00:00Z" || end != tc.want {
					t.Errorf("Flag.period = %v, want start 2026-05-20T09:00:00Z, end %q", period, tc.want)
				}
			}
			if flags != 1 {
				t.Errorf("%d Flags, want 1", flags)
			}
		})
	}
}

// TestCSSRSFlag: the screener flags at or above the configured risk level.
func TestCSSRSFlag(t *testing.T) {
	screener := func(yes ...int) string {
		var items []string
		for i := 1; i <= 7; i++ {
			answer := false
			for _, y := range yes {
				answer = answer || y == i
			}
			items = append(items, fmt.Sprintf(`{"number": %d, "answer": %t}`, i, answer))
		}
		return `{` + envelope + `, "instrument": "C-SSRS-screener", "takenAt": "2026-05-20T09:00:00Z", "items": [` +
			strings.Join(items, ", ") + `]}`
	}
	level := func(l string) mapping.Options {
		s := mapping.DefaultSafety()
		s.CSSRSRisk = l
		return mapping.Options{Safety: &s}
	}
	tests := []struct {
		name string
		rec  string
		opts mapping.Options
		want string
	}{
		{"no yes", screener(), mapping.Options{}, ""},
		{"wish to be dead (low)", screener(1), mapping.Options{}, "active"},
		{"low, threshold moderate", screener(2), level("moderate"), ""},
		{"method (moderate), threshold moderate", screener(1, 2, 3), level("moderate"), "active"},
		{"moderate, threshold high", screener(6), level("high"), ""},
		{"behaviour in 3 months (high), threshold high", screener(6, 7), level("high"), "active"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, interp := flags(t, tc.rec, "93374-7", tc.opts)
			wantInterp := ""
			if tc.want != "" {
				wantInterp = "POS"
			}
			if strings.Join(got, ",") != tc.want || interp != wantInterp {
				t.Errorf("flags %v, risk interpretation %q; want %q, %q", got, interp, tc.want, wantInterp)
			}
		})
	}
}

// TestAdverseEventSummary: a session's serious events and events of at
// least the configured grade are named in its Procedure's complications.
func TestAdverseEventSummary(t *testing.T) {
	session := func(ae string) string {
		return `{` + envelope + `, "infusion": {"drug": "esketamine-nasal", "status": "completed", "totalDoseMg": 56,
			"infusionStart": "2026-05-20T09:00:00Z"}, "adverseEvents": [{"recordId": "AE-1", "event": "nausea",
			"onsetAt": "2026-05-20T09:10:00Z", "outcome": "resolved", ` + ae + `}]}`
	}
	grade2 := mapping.DefaultSafety()
	grade2.AdverseEventGrade = 2
	grade4 := mapping.DefaultSafety()
	grade4.AdverseEventGrade = 4
	tests := []struct {
		name string
		ae   string
		opts mapping.Options
		want int
	}{
		{"grade 2, not serious", `"ctcaeGrade": 2, "serious": false`, mapping.Options{}, 0},
		{"grade 3, not serious", `"ctcaeGrade": 3, "serious": false`, mapping.Options{}, 1},
		{"serious, no grade", `"severity": "moderate", "serious": true, "seriousnessCriteria": ["medically-important"]`, mapping.Options{}, 1},
		{"grade 2 with threshold 2", `"ctcaeGrade": 2, "serious": false`, mapping.Options{Safety: &grade2}, 1},
		{"grade 1 with threshold 2", `"ctcaeGrade": 1, "serious": false`, mapping.Options{Safety: &grade2}, 0},
		{"severe, no grade", `"severity": "severe", "serious": false`, mapping.Options{}, 1},
		{"moderate, no grade", `"severity": "moderate", "serious": false`, mapping.Options{}, 0},
		{"moderate, no grade, threshold 2", `"severity": "moderate", "serious": false`, mapping.Options{Safety: &grade2}, 1},
		{"mild, no grade, threshold 2", `"severity": "mild", "serious": false`, mapping.Options{Safety: &grade2}, 0},
		{"severe, no grade, threshold 4", `"severity": "severe", "serious": false`, mapping.Options{Safety: &grade4}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range mapped(t, mapping.KindSession, session(tc.ae), tc.opts) {
				if r["resourceType"] == "Procedure" {
					got, _ := r["complication"].([]any)
					if len(got) != tc.want {
						t.Errorf("Procedure.complication = %v, want %d", got, tc.want)
					}
				}
			}
		})
	}
}

// TestSafetyValidate: thresholds out of range or in the wrong order are
// refused, naming the setting.
func TestSafetyValidate(t *testing.T) {
	if err := mapping.DefaultSafety().Validate(); err != nil {
		t.Fatalf("DefaultSafety().Validate() = %v", err)
	}
	tests := []struct {
		name string
		edit func(*mapping.Safety)
		want string
	}{
		{"phq9 item 9 of 0", func(s *mapping.Safety) { s.PHQ9Item9 = 0 }, "phq9Item9Min"},
		{"cssrs none", func(s *mapping.Safety) { s.CSSRSRisk = "none" }, "cssrsMinRisk"},
		{"grade 6", func(s *mapping.Safety) { s.AdverseEventGrade = 6 }, "adverseEventMinGrade"},
		{"session interval -1 hours", func(s *mapping.Safety) { s.SessionMinIntervalHours = -1 }, "sessionMinIntervalHours"},
		{"session interval 8 days", func(s *mapping.Safety) { s.SessionMinIntervalHours = 192 }, "sessionMinIntervalHours"},
		{"madrs item 10 of 7", func(s *mapping.Safety) { s.MADRSItem10 = 7 }, "madrsItem10Min"},
		{"madrs item 10 of 0", func(s *mapping.Safety) { s.MADRSItem10 = 0 }, "madrsItem10Min"},
		{"qids item 12 of 4", func(s *mapping.Safety) { s.QIDSItem12 = 4 }, "qidsItem12Min"},
		{"critical below high", func(s *mapping.Safety) { s.Systolic.CriticalHigh = 130 }, "vitals.systolic"},
		{"critical low above low", func(s *mapping.Safety) { s.SpO2.CriticalLow = 95 }, "vitals.spo2"},
		{"negative", func(s *mapping.Safety) { s.HeartRate.Low = -1 }, "vitals.heartRate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mapping.DefaultSafety()
			tc.edit(&s)
			if err := s.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

// TestAdverseEventFlag: an adverse event of suicidal ideation flags the
// patient; a later version that changes the event to another one retires
// the Flag (inactive, its period ending at the version's lastUpdated, as
// a PHQ-9 corrected at item 9 does: probe p45 F1 a), and a withdrawal
// marks it entered-in-error whatever the withdrawn body says. The ingest
// keeps a retiring entry only where a Flag is stored (Entry.Withdraws).
func TestAdverseEventFlag(t *testing.T) {
	ae := func(event, status string) string {
		src := `"source": {"system": "serenity-clinic-emr", "recordId": "AE-1", "version": "2", "lastUpdated": "2026-05-21T10:00:00Z"` + status + `}`
		return `{` + src + `, "patient": {"id": "P-1"}, "event": "` + event + `", "onsetAt": "2026-05-20T09:00:00Z", "severity": "moderate", "serious": false}`
	}
	const withdrawn = `, "status": "entered-in-error"`
	tests := []struct {
		name, rec string
		opts      mapping.Options
		want      string // status, period end, Withdraws
	}{
		{"suicidal ideation", ae("suicidal-ideation", ""), mapping.Options{}, "active  false"},
		{"anxiety", ae("anxiety", ""), mapping.Options{}, ""},
		{"later version still suicidal ideation", ae("suicidal-ideation", ""), mapping.Options{Update: true}, "active  false"},
		{"later version corrected to anxiety", ae("anxiety", ""), mapping.Options{Update: true}, "inactive 2026-05-21T10:00:00Z true"},
		{"withdrawn suicidal ideation", ae("suicidal-ideation", withdrawn), mapping.Options{}, "entered-in-error  true"},
		{"withdrawn anxiety", ae("anxiety", withdrawn), mapping.Options{}, "entered-in-error  true"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := mapping.Decode(mapping.KindAdverseEvent, []byte(tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			res, err := mapping.Map(rec, tc.opts)
			if err != nil {
				t.Fatalf("Map: %v", describe(err))
			}
			var got []string
			for _, e := range res.Entries {
				if e.ResourceType != "Flag" {
					continue
				}
				f := e.Resource.(fhir.Flag)
				end := ""
				if f.Period != nil && f.Period.End != nil {
					end = *f.Period.End
				}
				if e.IdentifierValue != "AE-1-flag-suicidal-ideation-event" {
					t.Errorf("Flag identifier %s", e.IdentifierValue)
				}
				got = append(got, fmt.Sprintf("%s %s %v", f.Status.Code(), end, e.Withdraws))
			}
			if s := strings.Join(got, "; "); s != tc.want {
				t.Errorf("Flags = %q, want %q", s, tc.want)
			}
		})
	}
}
