package delivery

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
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
	if cut := cutResponses(b, MaxOutcome); cut != nil {
		return cut
	}
	return slices.Clone(b[:MaxOutcome])
}

// cutResponses returns the transaction- or batch-response b without the
// resources its entries return (an EHR that ignores Prefer:
// return=minimal), keeping each entry's response: status, location,
// etag, lastModified, and the outcomes when they all fit in limit bytes,
// tagged with the gateway's note (store.AnswerTruncated), and of the
// first entries only when all their responses do not fit (the note says
// how many); nil if b is no such Bundle. So an attempt still records where the EHR wrote each
// resource.
func cutResponses(b []byte, limit int) []byte {
	var in fhirwire.Bundle
	if json.Unmarshal(b, &in) != nil || in.ResourceType != "Bundle" ||
		(in.Type != fhirwire.TypeTransactionResponse && in.Type != fhirwire.TypeBatchResponse) {
		return nil
	}
	type tag struct {
		System  string `json:"system"`
		Code    string `json:"code"`
		Display string `json:"display"`
	}
	type entry struct {
		Response *fhirwire.Response `json:"response,omitempty"`
	}
	out := struct {
		ResourceType string `json:"resourceType"`
		Meta         struct {
			Tag []tag `json:"tag"`
		} `json:"meta"`
		Type  string  `json:"type"`
		Entry []entry `json:"entry"`
	}{ResourceType: "Bundle", Type: in.Type, Entry: make([]entry, len(in.Entry))}
	resources := 0
	for i, e := range in.Entry {
		if len(e.Resource) > 0 {
			resources++
		}
		if e.Response != nil {
			r := *e.Response
			out.Entry[i].Response = &r
		}
	}
	note := func(outcomes string) {
		out.Meta.Tag = []tag{{System: store.AnswerNoteSystem, Code: store.AnswerTruncated,
			Display: fmt.Sprintf("the EHR's answer, %d bytes, was over the %d KiB an attempt records: the gateway kept each "+
				"entry's response and left out the %d resources the EHR returned%s", len(b), limit>>10, resources, outcomes)}}
	}
	note("")
	raw, err := json.Marshal(out)
	if err != nil {
		return nil
	}
	if len(raw) <= limit {
		return raw
	}
	// The outcomes too large: left out, and the note says so.
	dropped := 0
	for _, e := range out.Entry {
		if e.Response != nil && e.Response.Outcome != nil {
			e.Response.Outcome = nil
			dropped++
		}
	}
	note(fmt.Sprintf(", and the entries' %d outcomes", dropped))
	if raw, err = json.Marshal(out); err != nil {
		return nil
	}
	// The responses alone too many (some 500 entries and more): the first
	// that fit, and the note says how many were left out; never a cut in
	// the middle of the JSON.
	for all := len(out.Entry); len(raw) > limit; {
		n := len(out.Entry) * limit / len(raw) * 9 / 10
		if n >= len(out.Entry) {
			n = len(out.Entry) - 1
		}
		if n < 1 {
			return nil
		}
		out.Entry = out.Entry[:n]
		note(fmt.Sprintf(", and the entries' %d outcomes; it kept the responses of the first %d of the %d entries", dropped, n, all))
		if raw, err = json.Marshal(out); err != nil {
			return nil
		}
	}
	return raw
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
