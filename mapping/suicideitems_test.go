package mapping_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// scored is an assessment of instrument with n items scoring 0 but item
// (number) scoring score.
func scored(instrument string, n, item, score int) string {
	var items []string
	for i := 1; i <= n; i++ {
		s := 0
		if i == item {
			s = score
		}
		items = append(items, fmt.Sprintf(`{"number": %d, "score": %d}`, i, s))
	}
	return `{` + envelope + `, "instrument": "` + instrument + `", "takenAt": "2026-05-20T09:00:00Z", "items": [` +
		strings.Join(items, ", ") + `]}`
}

// flagCodes maps a record and returns its Flags as "code status".
func flagCodes(t *testing.T, kind mapping.Kind, rec string, opts mapping.Options) string {
	t.Helper()
	var got []string
	for _, r := range mapped(t, kind, rec, opts) {
		if r["resourceType"] == "Flag" {
			got = append(got, loinc(r)+" "+r["status"].(string))
		}
	}
	return strings.Join(got, ", ")
}

// TestSuicideItemFlags: the suicide items of MADRS (item 10, suicidal
// thoughts, 0-6) and QIDS-SR16 (item 12, thoughts of death or suicide,
// 0-3) at or above their thresholds mark the item POS and flag the
// patient, as PHQ-9 item 9 does.
func TestSuicideItemFlags(t *testing.T) {
	madrs6, qids3 := mapping.DefaultSafety(), mapping.DefaultSafety()
	madrs6.MADRSItem10, qids3.QIDSItem12 = 6, 3
	tests := []struct {
		name, rec, item string
		opts            mapping.Options
		flag, interp    string
	}{
		{"MADRS item 10 = 3", scored("MADRS", 10, 10, 3), "madrs-10", mapping.Options{}, "", ""},
		{"MADRS item 10 = 4", scored("MADRS", 10, 10, 4), "madrs-10", mapping.Options{}, "flag-madrs-item10 active", "POS"},
		{"MADRS item 10 = 6", scored("MADRS", 10, 10, 6), "madrs-10", mapping.Options{}, "flag-madrs-item10 active", "POS"},
		{"MADRS item 9 = 6", scored("MADRS", 10, 9, 6), "madrs-10", mapping.Options{}, "", ""},
		{"MADRS threshold 6, item 10 = 5", scored("MADRS", 10, 10, 5), "madrs-10", mapping.Options{Safety: &madrs6}, "", ""},
		{"MADRS later version, item 10 = 0", scored("MADRS", 10, 10, 0), "madrs-10", mapping.Options{Update: true}, "flag-madrs-item10 inactive", ""},
		{"QIDS item 12 = 1", scored("QIDS-SR16", 16, 12, 1), "qids-sr16-12", mapping.Options{}, "", ""},
		{"QIDS item 12 = 2", scored("QIDS-SR16", 16, 12, 2), "qids-sr16-12", mapping.Options{}, "flag-qids-item12 active", "POS"},
		{"QIDS threshold 3, item 12 = 2", scored("QIDS-SR16", 16, 12, 2), "qids-sr16-12", mapping.Options{Safety: &qids3}, "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := flagCodes(t, mapping.KindAssessment, tc.rec, tc.opts)
			interp := ""
			for _, r := range mapped(t, mapping.KindAssessment, tc.rec, tc.opts) {
				if r["resourceType"] == "Observation" && loinc(r) == tc.item {
					interp = interpretations(r)
				}
			}
			if got != tc.flag || interp != tc.interp {
				t.Errorf("flags %q, item interpretation %q; want %q, %q", got, interp, tc.flag, tc.interp)
			}
		})
	}
}

// TestSuicidalIdeationEventFlag: an adverse event of suicidal ideation
// flags the patient (on its own or in a session); a withdrawn one marks
// its Flag entered-in-error; other events raise none.
func TestSuicidalIdeationEventFlag(t *testing.T) {
	ae := func(event, status string) string {
		st := ""
		if status != "" {
			st = `, "status": "` + status + `"`
		}
		return `{"source": {"system": "serenity-clinic-emr", "recordId": "AE-1", "version": "1"` + st + `}, "patient": {"id": "P-1"},
			"event": "` + event + `", "onsetAt": "2026-05-20T09:10:00Z", "severity": "severe", "serious": false}`
	}
	session := `{` + envelope + `, "infusion": {"drug": "esketamine-nasal", "status": "completed", "totalDoseMg": 56,
		"infusionStart": "2026-05-20T09:00:00Z"}, "adverseEvents": [{"recordId": "AE-1", "event": "suicidal-ideation",
		"onsetAt": "2026-05-20T09:10:00Z", "severity": "moderate", "serious": false}]}`
	tests := []struct {
		name, rec string
		kind      mapping.Kind
		want      string
	}{
		{"suicidal ideation", ae("suicidal-ideation", ""), mapping.KindAdverseEvent, "flag-suicidal-ideation-event active"},
		{"nausea", ae("nausea", ""), mapping.KindAdverseEvent, ""},
		{"withdrawn", ae("suicidal-ideation", "entered-in-error"), mapping.KindAdverseEvent, "flag-suicidal-ideation-event entered-in-error"},
		{"in a session", session, mapping.KindSession, "flag-suicidal-ideation-event active"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := flagCodes(t, tc.kind, tc.rec, mapping.Options{}); got != tc.want {
				t.Errorf("flags %q, want %q", got, tc.want)
			}
		})
	}
}
