package delivery

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestExcerptCutsAnOperationOutcomeAtIssues: an OperationOutcome over
// MaxOutcome (a validation failure of a large Bundle) is recorded as JSON
// with the issues that fit and a note of how many were left out, not cut
// mid-JSON (which no view could show); other answers are cut at the limit.
func TestExcerptCutsAnOperationOutcomeAtIssues(t *testing.T) {
	var issues []string
	for i := range 400 {
		issues = append(issues, fmt.Sprintf(`{"severity":"error","code":"processing","diagnostics":"%s","expression":["Bundle.entry[%d]"]}`,
			strings.Repeat("x", 200), i))
	}
	big := []byte(`{"resourceType":"OperationOutcome","text":{"status":"generated","div":"<div>...</div>"},"issue":[` + strings.Join(issues, ",") + `]}`)
	if len(big) <= MaxOutcome {
		t.Fatalf("the answer is %d bytes, want over %d", len(big), MaxOutcome)
	}
	got := excerpt(big)
	var oo struct {
		ResourceType string `json:"resourceType"`
		Issue        []struct {
			Code        string   `json:"code"`
			Diagnostics string   `json:"diagnostics"`
			Expression  []string `json:"expression"`
			Details     struct {
				Coding []struct{ System, Code string } `json:"coding"`
			} `json:"details"`
		} `json:"issue"`
	}
	if len(got) > MaxOutcome || json.Unmarshal(got, &oo) != nil || oo.ResourceType != "OperationOutcome" || len(oo.Issue) < 100 {
		t.Fatalf("excerpt = %d bytes, %d issues; want an OperationOutcome of at most %d bytes with the issues that fit", len(got), len(oo.Issue), MaxOutcome)
	}
	kept := len(oo.Issue) - 1
	if oo.Issue[0].Expression[0] != "Bundle.entry[0]" || oo.Issue[kept-1].Expression[0] != fmt.Sprintf("Bundle.entry[%d]", kept-1) {
		t.Errorf("the issues kept are not the first ones: %+v ... %+v", oo.Issue[0], oo.Issue[kept-1])
	}
	note := oo.Issue[kept]
	if len(note.Details.Coding) != 1 || note.Details.Coding[0].Code != store.AnswerTruncated || note.Details.Coding[0].System != store.AnswerNoteSystem ||
		!strings.Contains(note.Diagnostics, fmt.Sprintf("first %d of the EHR's 400 issues (%d left out)", kept, 400-kept)) {
		t.Errorf("the last issue = %+v, want the gateway's note of how many issues were left out", note)
	}
	// Not an OperationOutcome: cut at the limit.
	text := []byte(strings.Repeat("y", MaxOutcome+10))
	if got := excerpt(text); len(got) != MaxOutcome {
		t.Errorf("excerpt of text = %d bytes, want %d", len(got), MaxOutcome)
	}
	if got := excerpt([]byte(`{"a":1}`)); string(got) != `{"a":1}` {
		t.Errorf("excerpt of a small answer = %s", got)
	}
}
