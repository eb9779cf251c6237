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
