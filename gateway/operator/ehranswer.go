package operator

import (
	"encoding/json"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The EHR's answer to a delivery is PHI as much as the payload: a
// transaction-response may carry the resources written (an EHR that
// ignores Prefer: return=minimal), an OperationOutcome may quote the values
// it refused. Without payload=true an operator sees it summarised to what
// triage needs and what names no one: the statuses, locations and
// versions of the entries, and each issue's severity, code, coded details
// (rule ids) and FHIRPath expression. Diagnostics, texts, displays and
// resources are left out.

// summarizeAnswer returns the PHI-free summary of an EHR answer (valid
// JSON), or nil when it is not a FHIR resource, and how many texts and
// resources it left out (diagnostics, details texts, displays, narratives,
// the resources returned), so a reader knows whether the answer in full
// says more.
func summarizeAnswer(raw []byte) (json.RawMessage, int) {
	var r map[string]any
	if json.Unmarshal(raw, &r) != nil {
		return nil, 0
	}
	typ, ok := r["resourceType"].(string)
	if !ok {
		return nil, 0
	}
	withheld := 0
	out := map[string]any{"resourceType": typ}
	switch typ {
	case "Bundle":
		copyStrings(out, r, "type")
		var entries []any
		for _, e := range list(r["entry"]) {
			if mapOf(e)["resource"] != nil {
				withheld++
			}
			resp, _ := mapOf(e)["response"].(map[string]any)
			if resp == nil {
				entries = append(entries, map[string]any{})
				continue
			}
			sr := map[string]any{}
			copyStrings(sr, resp, "status", "location", "etag", "lastModified")
			if oo, n := summarizeOutcome(mapOf(resp["outcome"])); oo != nil {
				sr["outcome"] = oo
				withheld += n
			}
			entries = append(entries, map[string]any{"response": sr})
		}
		if entries != nil {
			out["entry"] = entries
		}
	case "OperationOutcome":
		out, withheld = summarizeOutcome(r)
	default:
		if len(r) > 1 {
			withheld++ // the resource itself
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, 0
	}
	return b, withheld
}

// summarizeOutcome keeps of an OperationOutcome each issue's severity,
// code, details.coding (system and code) and expression, and counts the
// texts it leaves out; nil if r is not one.
func summarizeOutcome(r map[string]any) (map[string]any, int) {
	if r == nil || r["resourceType"] != "OperationOutcome" {
		return nil, 0
	}
	withheld := 0
	if r["text"] != nil {
		withheld++ // the narrative
	}
	var issues []any
	for _, x := range list(r["issue"]) {
		i := mapOf(x)
		si := map[string]any{}
		copyStrings(si, i, "severity", "code")
		switch {
		case gatewayNote(i):
			// The gateway's own note on a cut answer: no PHI.
			copyStrings(si, i, "diagnostics")
		case i["diagnostics"] != nil:
			withheld++
		}
		if mapOf(i["details"])["text"] != nil {
			withheld++
		}
		var codings []any
		for _, c := range list(mapOf(i["details"])["coding"]) {
			sc := map[string]any{}
			copyStrings(sc, mapOf(c), "system", "code")
			if mapOf(c)["display"] != nil {
				withheld++
			}
			codings = append(codings, sc)
		}
		if codings != nil {
			si["details"] = map[string]any{"coding": codings}
		}
		var exprs []any
		for _, e := range list(i["expression"]) {
			if s, ok := e.(string); ok {
				exprs = append(exprs, s)
			}
		}
		if exprs != nil {
			si["expression"] = exprs
		}
		issues = append(issues, si)
	}
	out := map[string]any{"resourceType": "OperationOutcome"}
	if issues != nil {
		out["issue"] = issues
	}
	return out, withheld
}

func copyStrings(dst, src map[string]any, keys ...string) {
	for _, k := range keys {
		if s, ok := src[k].(string); ok {
			dst[k] = s
		}
	}
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func mapOf(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// gatewayNote reports whether issue i is the one the delivery worker adds
// to an answer it cut (store.AnswerTruncated).
func gatewayNote(i map[string]any) bool {
	for _, c := range list(mapOf(i["details"])["coding"]) {
		if mapOf(c)["system"] == store.AnswerNoteSystem && mapOf(c)["code"] == store.AnswerTruncated {
			return true
		}
	}
	return false
}
