package mapping_test

import (
	"encoding/json"
	"strings"
	"testing"

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
		{"withdrawn", patch{sbp185: 185.0, "/source/status": "entered-in-error"}, withdrawn, "entered-in-error", "", nil},
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
