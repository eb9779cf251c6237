package mapping_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// suspects describes a mapped AdverseEvent's link to its session: each
// suspectEntity as "<what it references> <causality code or ->", and the
// related-session extension's reference ("" for none).
func suspects(t *testing.T, kind mapping.Kind, doc []byte) (suspect []string, related string, urls map[string]string) {
	t.Helper()
	rec, err := mapping.Decode(kind, doc)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	res, err := mapping.Map(rec, mapping.Options{})
	if err != nil {
		t.Fatalf("Map: %v", describe(err))
	}
	urls = map[string]string{}
	var ae map[string]any
	for _, e := range res.Entries {
		urls[e.FullURL] = e.ResourceType
		if e.ResourceType != "AdverseEvent" {
			continue
		}
		raw, err := mapping.MarshalResource(e.Resource)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &ae); err != nil {
			t.Fatal(err)
		}
	}
	name := func(ref map[string]any) string {
		if r, ok := ref["reference"].(string); ok {
			return urls[r]
		}
		id, _ := ref["identifier"].(map[string]any)
		return ref["type"].(string) + " " + id["value"].(string)
	}
	list, _ := ae["suspectEntity"].([]any)
	for _, s := range list {
		sm := s.(map[string]any)
		causality := "-"
		if c, ok := sm["causality"].([]any); ok {
			causality = c[0].(map[string]any)["assessment"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"].(string)
		}
		suspect = append(suspect, name(sm["instance"].(map[string]any))+" "+causality)
	}
	exts, _ := ae["extension"].([]any)
	for _, x := range exts {
		xm := x.(map[string]any)
		if xm["url"] == mapping.ExtRelatedSession {
			related = name(xm["valueReference"].(map[string]any))
		}
	}
	return suspect, related, urls
}

// TestSuspectEntity: an adverse event names the session's drug (the
// MedicationAdministration) and the session (the Procedure) as suspected
// causes (R4 suspectEntity: "the entity that is suspected to have caused
// the adverse event") only where the drug can have caused it: the drug was
// given (the session is not not-done) and the event did not begin before
// the infusion (probe p45 F2). Otherwise the event is linked to its session
// by the related-session extension and names no suspect. A causality
// assessment goes with the suspects.
func TestSuspectEntity(t *testing.T) {
	const session = "testdata/session/iv-routine.input.json" // infusion 09:00 to 09:40 -05:00
	both := func(c string) string { return "MedicationAdministration " + c + "; Procedure " + c }
	tests := []struct {
		name    string
		p       patch
		suspect string
		related string
	}{
		{"causality given", patch{}, both("Probably-Likely"), ""},
		{"no causality, onset during the infusion", patch{"/adverseEvents/0/causality": nil}, both("-"), ""},
		{"no causality, onset at the infusion start", patch{"/adverseEvents/0/causality": nil,
			"/adverseEvents/0/onsetAt": "2026-03-02T14:00:00Z"}, both("-"), ""},
		{"no causality, onset before the infusion start", patch{"/adverseEvents/0/causality": nil,
			"/adverseEvents/0/onsetAt": "2026-03-02T08:55:00-05:00"}, "", "Procedure"},
		{"no causality, onset a second before, in another offset", patch{"/adverseEvents/0/causality": nil,
			"/adverseEvents/0/onsetAt": "2026-03-02T13:59:59Z"}, "", "Procedure"},
		{"session not done", notDone(patch{"/adverseEvents/0/onsetAt": "2026-03-02T08:55:00-05:00"}), "", "Procedure"},
		{"session not done, onset at the scheduled time", notDone(patch{"/adverseEvents/0/onsetAt": "2026-03-02T09:05:00-05:00"}), "", "Procedure"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, related, _ := suspects(t, mapping.KindSession, applyPatch(t, session, tc.p))
			if s := strings.Join(got, "; "); s != tc.suspect || related != tc.related {
				t.Errorf("suspectEntity %q, related session %q; want %q, %q", s, related, tc.suspect, tc.related)
			}
		})
	}

	// Sent on its own the event's mapping does not know the session: the
	// clinic's sessionId names its drug and session as suspects, as before
	// (the ingest checks a causality against the stored session).
	standalone := `{"source": {"system": "serenity-clinic-emr", "recordId": "AE-9", "version": "1"}, "patient": {"id": "P-1"},
		"sessionId": "S-1", "event": "nausea", "onsetAt": "2026-05-20T09:00:00Z", "severity": "mild", "serious": false`
	for _, tc := range []struct{ name, rec, suspect string }{
		{"standalone, causality given", standalone + `, "causality": "possible"}`,
			"MedicationAdministration S-1-medication Possible; Procedure S-1 Possible"},
		{"standalone, no causality", standalone + `}`, "MedicationAdministration S-1-medication -; Procedure S-1 -"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, related, _ := suspects(t, mapping.KindAdverseEvent, []byte(tc.rec))
			if s := strings.Join(got, "; "); s != tc.suspect || related != "" {
				t.Errorf("suspectEntity %q, related session %q; want %q, none", s, related, tc.suspect)
			}
		})
	}
}
