package delivery

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// excerpt keeps at most MaxOutcome bytes of an answer, copied. An
// OperationOutcome over the limit (a validation failure of a large Bundle:
// one issue per problem) is cut at an issue boundary, so the issues that
// fit stay readable JSON, with a last issue of the gateway's saying how
// many were left out (store.AnswerTruncated); any other answer is cut at
// the limit.
func excerpt(b []byte) []byte {
	if len(b) <= MaxOutcome {
		return slices.Clone(b)
	}
	if cut := cutOutcome(b, MaxOutcome); cut != nil {
		return cut
	}
	return slices.Clone(b[:MaxOutcome])
}

// cutOutcome returns the OperationOutcome b with as many of its first
// issues as fit in limit bytes, its narrative left out, and a note issue;
// nil if b is not an OperationOutcome.
func cutOutcome(b []byte, limit int) []byte {
	var r map[string]json.RawMessage
	if json.Unmarshal(b, &r) != nil {
		return nil
	}
	var typ string
	var issues []json.RawMessage
	if json.Unmarshal(r["resourceType"], &typ) != nil || typ != "OperationOutcome" || json.Unmarshal(r["issue"], &issues) != nil {
		return nil
	}
	delete(r, "text") // the narrative repeats the issues
	delete(r, "issue")
	base, err := json.Marshal(r)
	if err != nil {
		return nil
	}
	const noteRoom = 1024
	size, keep := len(base)+len(`,"issue":[]`)+noteRoom, 0
	for _, is := range issues {
		if size+len(is)+1 > limit {
			break
		}
		size += len(is) + 1
		keep++
	}
	note, err := json.Marshal(map[string]any{"severity": "information", "code": "too-costly",
		"details": map[string]any{"coding": []any{map[string]any{"system": store.AnswerNoteSystem, "code": store.AnswerTruncated}}},
		"diagnostics": fmt.Sprintf("the gateway kept the first %d of the EHR's %d issues (%d left out): the answer, %d bytes, "+
			"was over the %d KiB an attempt records", keep, len(issues), len(issues)-keep, len(b), limit>>10)})
	if err != nil {
		return nil
	}
	r["issue"], err = json.Marshal(append(slices.Clone(issues[:keep]), note))
	if err != nil {
		return nil
	}
	out, err := json.Marshal(r)
	if err != nil || len(out) > limit {
		return nil
	}
	return out
}
