package mapping_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// sessionIssue maps the routine IV session with a patch and returns its
// DetectedIssue (nil when there is none), the method that writes it, the
// fullUrls of the resources by what they are, and the warnings.
func sessionIssue(t *testing.T, p patch, opts mapping.Options) (issue map[string]any, method string, urls map[string]string, warnings []string) {
	t.Helper()
	doc := applyPatch(t, "testdata/session/iv-routine.input.json", p)
	rec, err := mapping.Decode(mapping.KindSession, doc)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	res, err := mapping.Map(rec, opts)
	if err != nil {
		t.Fatalf("Map: %v", describe(err))
	}
	urls = map[string]string{}
	for _, e := range res.Entries {
		urls[e.ResourceType+" "+e.IdentifierValue] = e.FullURL
		if e.ResourceType != "DetectedIssue" {
			continue
		}
		if issue != nil {
			t.Fatal("two DetectedIssues")
		}
		raw, err := mapping.MarshalResource(e.Resource)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &issue); err != nil {
			t.Fatal(err)
		}
		method = string(e.Method.Code()) + " " + e.URL
	}
	for _, w := range res.Warnings {
		if w.Rule == "session.dosed-despite-critical-vitals" {
			if w.Expression == "" || strings.Contains(w.Message, "185") || strings.Contains(w.Message, "88") || strings.Contains(w.Message, "135") {
				t.Errorf("warning at %s: expression %q, message %q (a message names no value)", w.Pointer, w.Expression, w.Message)
			}
			warnings = append(warnings, w.Pointer)
		}
	}
	return issue, method, urls, warnings
}

// TestDosedDespiteCriticalVitals: a session that gave its drug after a
// critical (HH or LL) pre-dose vital sign carries a DetectedIssue that
// implicates the administration and the critical Observations, and the
// sender is warned at each critical value; a non-critical, post-dose or
// undosed session carries none; a later version that no longer raises it,
// and a withdrawn session, mark it entered-in-error.
func TestDosedDespiteCriticalVitals(t *testing.T) {
	const sbp185 = "/vitals/0/bloodPressure/systolic"
	withdrawn := mapping.Options{}
	tests := []struct {
		name     string
		p        patch
		opts     mapping.Options
		status   string // "" no DetectedIssue
		warnings string
		critical []string // identifier values of the critical Observations
	}{
		{"routine, no issue", patch{}, mapping.Options{}, "", "", nil},
		{"pre-dose SBP 185 HH", patch{sbp185: 185.0}, mapping.Options{}, "final", sbp185, []string{"V-1-85354-9"}},
		{"pre-dose SBP 170 H only", patch{sbp185: 170.0}, mapping.Options{}, "", "", nil},
		{"pre-dose SpO2 88 LL and heart rate 135 HH", patch{"/vitals/0/spo2": 88.0, "/vitals/0/heartRate": 135.0}, mapping.Options{}, "final",
			"/vitals/0/heartRate; /vitals/0/spo2", []string{"V-1-8867-4", "V-1-2708-6"}},
		{"critical only after the dose", patch{"/vitals/1/bloodPressure/systolic": 190.0}, mapping.Options{}, "", "", nil},
		{"not done", notDone(patch{sbp185: 185.0}), mapping.Options{}, "", "", nil},
		{"stopped early before any dose", patch{sbp185: 185.0, "/infusion/status": "stopped-early",
			"/infusion/statusReason": map[string]any{"code": "adverse-event"}, "/infusion/administeredDoseMg": 0.0,
			"/infusion/outcome": nil, "/infusion/rate": nil}, mapping.Options{}, "", "", nil},
		{"later version still critical", patch{sbp185: 185.0}, mapping.Options{Update: true}, "final", sbp185, []string{"V-1-85354-9"}},
		{"later version no longer critical", patch{}, mapping.Options{Update: true}, "entered-in-error", "", nil},
		{"later version not done", notDone(patch{sbp185: 185.0}), mapping.Options{Update: true}, "entered-in-error", "", nil},
		// A version whose pre-dose values are no longer critical for any
		// reason retires the issue (probe p45 F1 b): the ingest keeps the
		// entry only where one is stored (Entry.Withdraws).
		{"later version relabels the critical pre-dose record", patch{sbp185: 185.0, "/vitals/0/timepoint": "other",
			"/vitals/0/timepointText": "before the session"}, mapping.Options{Update: true}, "entered-in-error", "", nil},
		{"later version leaves the pre-dose record out", patch{"/vitals/0": nil}, mapping.Options{Update: true}, "entered-in-error", "", nil},
		{"later version without vitals", patch{"/vitals": nil}, mapping.Options{Update: true}, "entered-in-error", "", nil},
		{"withdrawn", patch{sbp185: 185.0, "/source/status": "entered-in-error"}, withdrawn, "entered-in-error", "", nil},
		// Every withdrawal voids the DetectedIssue a version may have
		// written, whatever the withdrawn body still says (docs/mapping.md
		// §7: "withdraw the session").
		{"withdrawn without vitals", patch{"/vitals": []any{}, "/source/status": "entered-in-error"}, withdrawn, "entered-in-error", "", nil},
		{"withdrawn without pre-dose vitals", patch{"/vitals": nil, "/source/status": "entered-in-error"}, withdrawn, "entered-in-error", "", nil},
		{"withdrawn not done", notDone(patch{"/source/status": "entered-in-error"}), withdrawn, "entered-in-error", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			issue, method, urls, warnings := sessionIssue(t, tc.p, tc.opts)
			if got := strings.Join(warnings, "; "); got != tc.warnings {
				t.Errorf("warnings at %q, want %q", got, tc.warnings)
			}
			if tc.status == "" {
				if issue != nil {
					t.Fatalf("DetectedIssue %v, want none", issue)
				}
				return
			}
			if issue == nil {
				t.Fatalf("no DetectedIssue, want one %s", tc.status)
			}
			if issue["status"] != tc.status {
				t.Errorf("status = %v, want %s", issue["status"], tc.status)
			}
			wantMethod := "POST DetectedIssue"
			if tc.opts.Update || tc.p["/source/status"] != nil {
				wantMethod = "PUT DetectedIssue?identifier=" + mapping.DefaultIdentifierBase + "/serenity-clinic-emr/infusion-session|S-2026-0001-critical-pre-dose-vitals"
			}
			if method != wantMethod {
				t.Errorf("request %s, want %s", method, wantMethod)
			}
			if tc.status != "final" {
				return
			}
			b, _ := json.Marshal(issue)
			s := string(b)
			for _, want := range []string{
				`"severity":"high"`, `"identifiedDateTime":"2026-03-02T09:00:00-05:00"`,
				`"code":"OBSA"`, `"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode"`,
				`"profile":["https://ketamine-gateway.org/fhir/StructureDefinition/kg-detected-issue"]`,
				`"code":"PSY"`, `"code":"R"`, `"value":"C-7"`,
				`"patient":{"reference":"` + urls["Patient P-1001"] + `"}`,
				`"reference":"` + urls["MedicationAdministration S-2026-0001-medication"] + `"`,
			} {
				if !strings.Contains(s, want) {
					t.Errorf("DetectedIssue lacks %s: %s", want, s)
				}
			}
			implicated, _ := issue["implicated"].([]any)
			evidence, _ := issue["evidence"].([]any)
			if len(implicated) != 1+len(tc.critical) || len(evidence) != 1 {
				t.Fatalf("implicated %v, evidence %v: want the administration and %d Observations", implicated, evidence, len(tc.critical))
			}
			details := evidence[0].(map[string]any)["detail"].([]any)
			for i, id := range tc.critical {
				u := urls["Observation "+id]
				if u == "" {
					t.Fatalf("no Observation %s", id)
				}
				if got := implicated[i+1].(map[string]any)["reference"]; got != u {
					t.Errorf("implicated[%d] = %v, want %s (%s)", i+1, got, u, id)
				}
				if got := details[i].(map[string]any)["reference"]; got != u {
					t.Errorf("evidence.detail[%d] = %v, want %s (%s)", i, got, u, id)
				}
			}
			detail, _ := issue["detail"].(string)
			if !strings.HasPrefix(detail, "Ketamine given after ") || !strings.Contains(detail, "critical pre-dose") {
				t.Errorf("detail = %q", detail)
			}
		})
	}
}

// TestCriticalPreDoseAcrossRecords: the cross-record forms warn, as
// session.dosed-despite-critical-vitals: a pre-dose vitals record sent on
// its own with a critical value, at each critical value (whether its
// session gave the drug is the caller's to know), and a session that gave
// its drug after a stored pre-dose measurement charted critical (HH, LL),
// at infusionStart naming the vitals record. LinkedOf reads the stored
// interpretation.
func TestCriticalPreDoseAcrossRecords(t *testing.T) {
	vitals := func(timepoint, bp string) string {
		return `{` + envelope + `, "sessionId": "S-1", "timepoint": "` + timepoint + `", "measuredAt": "2026-05-20T09:50:00Z", "bloodPressure": ` + bp + `, "spo2": 97}`
	}
	for _, tc := range []struct{ name, rec, want string }{
		{"pre-dose SBP 186", vitals("pre-dose", `{"systolic": 186, "diastolic": 90}`), "/bloodPressure/systolic"},
		{"pre-dose SBP 186, DBP 112", vitals("pre-dose", `{"systolic": 186, "diastolic": 112}`), "/bloodPressure/diastolic; /bloodPressure/systolic"},
		{"pre-dose SBP 150", vitals("pre-dose", `{"systolic": 150, "diastolic": 90}`), ""},
		{"discharge SBP 186", vitals("discharge", `{"systolic": 186, "diastolic": 90}`), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := mapping.Decode(mapping.KindVitals, []byte(tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range mapping.PreDoseWarnings(rec, mapping.Options{}) {
				if w.Rule != "session.dosed-despite-critical-vitals" || strings.Contains(w.Message, "186") {
					t.Errorf("warning %s: %q", w.Rule, w.Message)
				}
				got = append(got, w.Pointer)
			}
			if s := strings.Join(got, "; "); s != tc.want {
				t.Errorf("PreDoseWarnings() at %q, want %q", s, tc.want)
			}

			// The same record stored: what a session arriving after it reads.
			critical := false
			for _, r := range mapped(t, mapping.KindVitals, tc.rec, mapping.Options{}) {
				if r["resourceType"] == "Observation" {
					critical = critical || mapping.LinkedOf(r).Critical
				}
			}
			if critical != (tc.want != "") {
				t.Errorf("LinkedOf(stored).Critical = %v, want %v", critical, tc.want != "")
			}
		})
	}

	const iv = `"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80, "totalDoseMg": 40,
		"infusionStart": "2026-05-20T10:00:00Z", "infusionEnd": "2026-05-20T10:40:00Z"`
	linked := []mapping.Linked{
		{Kind: mapping.KindVitals, RecordID: "V-7", Critical: true},
		{Kind: mapping.KindVitals, RecordID: "V-7", Critical: true}, // its SpO2 too
		{Kind: mapping.KindVitals, RecordID: "V-8"},
	}
	for _, tc := range []struct{ name, kind, rec, want string }{
		{"infusion", "infusion", `{` + envelope + `, ` + iv + `}`, "/infusionStart V-7"},
		{"session", "session", `{` + envelope + `, "infusion": {` + iv + `}}`, "/infusion/infusionStart V-7"},
		{"not done", "infusion", `{` + envelope + `, "drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "elevated-blood-pressure"}, "scheduledAt": "2026-05-20T10:00:00Z"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := mapping.Decode(mapping.Kind(tc.kind), []byte(tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range mapping.StoredCriticalWarnings(rec, linked, mapping.Options{}) {
				if w.Rule != "session.dosed-despite-critical-vitals" || !strings.Contains(w.Message, "vitals record V-7") {
					t.Errorf("warning %s: %q", w.Rule, w.Message)
				}
				got = append(got, w.Pointer+" V-7")
			}
			if s := strings.Join(got, "; "); s != tc.want {
				t.Errorf("StoredCriticalWarnings() = %q, want %q", s, tc.want)
			}
		})
	}
}

// TestRetireSessionIssue: a later version or withdrawal of a vitals record
// sent on its own that names its session and holds no critical pre-dose
// value carries the session's DetectedIssue entered-in-error (a
// withdrawing entry, for the ingest to re-judge); a first version, a
// still-critical correction and a record without a session carry none.
func TestRetireSessionIssue(t *testing.T) {
	vitals := func(session, timepoint, status string, sbp int) string {
		s := ""
		if session != "" {
			s = `"sessionId": "` + session + `", `
		}
		return `{"source": {"system": "serenity-clinic-emr", "recordId": "V-1", "version": "2"` + status + `}, "patient": {"id": "P-1"}, ` + s +
			`"timepoint": "` + timepoint + `", "timepointText": "x", "measuredAt": "2026-05-20T09:50:00Z", "bloodPressure": {"systolic": ` + fmt.Sprint(sbp) + `, "diastolic": 80}}`
	}
	update := mapping.Options{Update: true}
	for _, tc := range []struct {
		name, rec string
		opts      mapping.Options
		want      bool
	}{
		{"correction below the band", vitals("S-1", "pre-dose", "", 128), update, true},
		{"correction relabelled", vitals("S-1", "other", "", 186), update, true},
		{"withdrawal, still critical", vitals("S-1", "pre-dose", `, "status": "entered-in-error"`, 186), mapping.Options{}, true},
		{"correction still critical", vitals("S-1", "pre-dose", "", 186), update, false},
		{"first version", vitals("S-1", "pre-dose", "", 128), mapping.Options{}, false},
		{"no session", vitals("", "pre-dose", "", 128), update, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := mapping.Decode(mapping.KindVitals, []byte(tc.rec))
			if err != nil {
				t.Fatal(err)
			}
			res, err := mapping.Map(rec, tc.opts)
			if err != nil {
				t.Fatalf("Map: %v", describe(err))
			}
			last := res.Entries[len(res.Entries)-1]
			got := last.ResourceType == "DetectedIssue"
			if got != tc.want {
				t.Fatalf("last entry %s, want a DetectedIssue: %v", last.ResourceType, tc.want)
			}
			if !got {
				return
			}
			issue := last.Resource.(fhir.DetectedIssue)
			if issue.Status.Code() != "entered-in-error" || !last.Withdraws || !mapping.IssueRetiredBy(rec, &last) ||
				last.IdentifierValue != "S-1-critical-pre-dose-vitals" || len(issue.Implicated) != 1 || issue.Implicated[0].Identifier == nil {
				t.Errorf("DetectedIssue %s %s (withdraws %v), implicated %v", last.IdentifierValue, issue.Status.Code(), last.Withdraws, issue.Implicated)
			}
		})
	}
}
