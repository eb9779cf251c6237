package audit

import (
	"strings"
	"testing"
	"time"
)

// TestOutcomeDescNoHTTP: a record of a CLI command (NoHTTP), which had no
// HTTP exchange, says what was done without claiming an HTTP status; its
// outcome still says whether it succeeded, was refused or failed.
func TestOutcomeDescNoHTTP(t *testing.T) {
	for _, tc := range []struct {
		name          string
		status        int
		desc          string
		outcome, want string
	}{
		{"a replay applied", 200, "vitals record replayed under mapping 2.3.1", "0", "vitals record replayed under mapping 2.3.1"},
		{"a record refused by an import", 422, "rejected: assessment.total-mismatch", "4", "rejected: assessment.total-mismatch"},
		{"a failure", 500, "failed: internal", "8", "failed: internal"},
		{"no description", 200, "", "0", "succeeded"},
		{"no description, refused", 409, "", "4", "rejected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Record{ID: "a1", Recorded: time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC), Interaction: "mapping-replay",
				Status: tc.status, ClientID: "cli-replay:root", Observer: "gw-1", NoHTTP: true, Description: tc.desc}
			ev := Event(r)
			if ev["outcomeDesc"] != tc.want || ev["outcome"] != tc.outcome {
				t.Errorf("Event(NoHTTP, %d, %q) outcome %v outcomeDesc %q, want %s %q", tc.status, tc.desc, ev["outcome"], ev["outcomeDesc"], tc.outcome, tc.want)
			}
			body, _ := Render(r)
			if !strings.Contains(string(body), `"outcomeDesc":"`+tc.want+`"`) || strings.Contains(string(body), "HTTP ") {
				t.Errorf("Render(NoHTTP) = %s, want outcomeDesc %q and no HTTP status", body, tc.want)
			}
		})
	}
}
