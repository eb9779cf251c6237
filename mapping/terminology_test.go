package mapping_test

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// r4Seriousness is the R4 (4.0.1) CodeSystem adverse-event-seriousness: its
// eight codes with their displays.
var r4Seriousness = map[string]string{
	"Non-serious":                      "Non-serious",
	"Serious":                          "Serious",
	"SeriousResultsInDeath":            "Results in death",
	"SeriousIsLifeThreatening":         "Is Life-threatening",
	"SeriousResultsInHospitalization":  "Requires or prolongs inpatient hospitalization",
	"SeriousResultsInDisability":       "Results in persistent or significant disability/incapacity",
	"SeriousIsBirthDefect":             "Is a congenital anomaly/birth defect",
	"SeriousRequiresPreventImpairment": "Requires intervention to prevent permanent impairment",
}

// TestAESeriousnessCodesAreR4: every code the table puts under the R4
// adverse-event-seriousness system exists there, with its display (a local
// code under a standard system URI fails terminology validation).
func TestAESeriousnessCodesAreR4(t *testing.T) {
	n := 0
	for _, c := range mapping.Concepts() {
		if c.System != mapping.SystemAESerious {
			continue
		}
		n++
		want, ok := r4Seriousness[c.Code]
		if !ok {
			t.Errorf("%s: code %s is not in R4 adverse-event-seriousness", c.Key, c.Code)
		} else if c.Display != want {
			t.Errorf("%s: display %q, want %q", c.Key, c.Display, want)
		}
	}
	if n != len(r4Seriousness) {
		t.Errorf("%d seriousness codes in the table, want the %d of R4", n, len(r4Seriousness))
	}
}

// TestSpO2Text: the SpO2 Observation's code.text says what was measured, a
// pulse-oximeter reading (LOINC 59408-5's meaning), not a blood gas (the
// display of 2708-6, which the vital-signs profile requires first).
func TestSpO2Text(t *testing.T) {
	rec := `{` + envelope + `, "timepoint": "other", "timepointText": "check", "measuredAt": "2026-05-20T10:00:00Z", "spo2": 97}`
	for _, r := range mapped(t, mapping.KindVitals, rec, mapping.Options{}) {
		if r["resourceType"] == "Observation" && loinc(r) == "2708-6" {
			if got := r["code"].(map[string]any)["text"]; got != "Oxygen saturation by pulse oximetry" {
				t.Errorf("SpO2 code.text = %q, want %q", got, "Oxygen saturation by pulse oximetry")
			}
			return
		}
	}
	t.Fatal("no SpO2 Observation")
}
