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

// TestExcerptKeepsEntryResponses: a transaction- or batch-response over
// MaxOutcome (an EHR that ignores Prefer: return=minimal and returns every
// resource written) is recorded as JSON with each entry's response
// (status, location, etag, lastModified, and a failed entry's outcome) and
// without the resources, tagged with the gateway's note, so that the
// attempt still says where the EHR wrote each resource (p40 F5); it is
// not cut mid-JSON.
func TestExcerptKeepsEntryResponses(t *testing.T) {
	for _, typ := range []string{"transaction-response", "batch-response"} {
		t.Run(typ, func(t *testing.T) {
			var entries []string
			for i := range 60 {
				status, outcome := "201 Created", ""
				if i == 7 {
					status, outcome = "412 Precondition Failed", `,"outcome":{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"duplicate"}]}`
				}
				entries = append(entries, fmt.Sprintf(`{"resource":{"resourceType":"Observation","id":"o%d","note":[{"text":"%s"}]},`+
					`"response":{"status":"%s","location":"Observation/o%d/_history/1","etag":"W/\"1\"","lastModified":"2026-12-06T08:00:00Z"%s}}`,
					i, strings.Repeat("z", 2000), status, i, outcome))
			}
			big := []byte(`{"resourceType":"Bundle","type":"` + typ + `","entry":[` + strings.Join(entries, ",") + `]}`)
			if len(big) <= MaxOutcome {
				t.Fatalf("the answer is %d bytes, want over %d", len(big), MaxOutcome)
			}
			got := excerpt(big)
			var b struct {
				ResourceType, Type string
				Meta               struct {
					Tag []struct{ System, Code, Display string } `json:"tag"`
				} `json:"meta"`
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
					Response struct {
						Status, Location, Etag, LastModified string
						Outcome                              json.RawMessage
					} `json:"response"`
				} `json:"entry"`
			}
			if len(got) > MaxOutcome || json.Unmarshal(got, &b) != nil || b.ResourceType != "Bundle" || b.Type != typ || len(b.Entry) != 60 {
				t.Fatalf("excerpt = %d bytes (%.80s...), %d entries; want a %s of at most %d bytes with every entry", len(got), got, len(b.Entry), typ, MaxOutcome)
			}
			for i, e := range b.Entry {
				wantStatus := "201 Created"
				if i == 7 {
					wantStatus = "412 Precondition Failed"
					if !strings.Contains(string(e.Response.Outcome), "duplicate") {
						t.Errorf("entry %d: outcome %s, want the EHR's", i, e.Response.Outcome)
					}
				}
				if e.Resource != nil || e.Response.Status != wantStatus || e.Response.Location != fmt.Sprintf("Observation/o%d/_history/1", i) ||
					e.Response.Etag != `W/"1"` || e.Response.LastModified != "2026-12-06T08:00:00Z" {
					t.Errorf("entry %d = %+v (resource %d bytes), want its response and no resource", i, e.Response, len(e.Resource))
				}
			}
			if len(b.Meta.Tag) != 1 || b.Meta.Tag[0].System != store.AnswerNoteSystem || b.Meta.Tag[0].Code != store.AnswerTruncated ||
				!strings.Contains(b.Meta.Tag[0].Display, "60 resources") {
				t.Errorf("meta.tag = %+v, want the gateway's note that the resources were left out", b.Meta.Tag)
			}
		})
	}
}

// TestExcerptManyEntryResponses: a response whose entries' responses alone
// are over the limit (some thousands of entries) keeps the first that fit,
// as JSON, and says how many it kept: never a cut in the middle of the
// JSON (a reviewer).
func TestExcerptManyEntryResponses(t *testing.T) {
	var entries []string
	for i := range 3000 {
		entries = append(entries, fmt.Sprintf(`{"response":{"status":"201 Created","location":"Observation/o%d/_history/1","etag":"W/\"1\"","lastModified":"2026-12-06T08:00:00Z"}}`, i))
	}
	big := []byte(`{"resourceType":"Bundle","type":"batch-response","entry":[` + strings.Join(entries, ",") + `]}`)
	got := excerpt(big)
	var b struct {
		Meta struct {
			Tag []struct{ Code, Display string } `json:"tag"`
		} `json:"meta"`
		Entry []struct {
			Response struct{ Location string } `json:"response"`
		} `json:"entry"`
	}
	if len(got) > MaxOutcome || json.Unmarshal(got, &b) != nil || len(b.Entry) < 100 || len(b.Entry) >= 3000 {
		t.Fatalf("excerpt = %d bytes (%.80s...), %d entries; want JSON of at most %d bytes with the first entries", len(got), got, len(b.Entry), MaxOutcome)
	}
	for i, e := range b.Entry {
		if want := fmt.Sprintf("Observation/o%d/_history/1", i); e.Response.Location != want {
			t.Fatalf("entry %d location %q, want %q", i, e.Response.Location, want)
		}
	}
	if len(b.Meta.Tag) != 1 || b.Meta.Tag[0].Code != store.AnswerTruncated ||
		!strings.Contains(b.Meta.Tag[0].Display, fmt.Sprintf("first %d of the 3000 entries", len(b.Entry))) {
		t.Errorf("meta.tag = %+v, want the note naming how many entries it kept", b.Meta.Tag)
	}
}
