package ingest_test

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestRecordInstrumentChanged: a new version of an assessment that names
// another instrument than the stored one describes another assessment; it
// is refused (409 at its instrument), on its own and nested in a session,
// and nothing is written: the stored instrument's resources would stay
// final and unreferenced otherwise (p20 F4). Another version with the
// same instrument is accepted.
func TestRecordInstrumentChanged(t *testing.T) {
	const (
		gad7Body  = `"instrument": "GAD-7", "takenAt": "2026-03-02T08:45:00-05:00", "total": 6`
		moaasBody = `"instrument": "MOAA-S", "takenAt": "2026-03-02T08:45:00-05:00", "total": 5`
	)
	session := func(id, version, assessment string) string {
		return rec(id, version, "P-1", "", `"infusion": {`+infusionBody+`}, "assessments": [{"recordId": "A-9", `+assessment+`}]`)
	}
	withdrawn := func(doc string) string {
		return strings.Replace(doc, `"version": "`, `"status": "entered-in-error", "version": "`, 1)
	}
	for _, tc := range []struct {
		name    string
		stored  []string // kind|document, stored first
		kind    mapping.Kind
		doc     string
		pointer string
	}{
		{"PHQ-9 then GAD-7", []string{"assessment|" + rec("A-1", "1", "P-1", "", phq9Body)},
			mapping.KindAssessment, rec("A-1", "2", "P-1", "", gad7Body), "/instrument"},
		{"a panel then a single score", []string{"assessment|" + rec("A-1", "1", "P-1", "", phq9Body)},
			mapping.KindAssessment, rec("A-1", "2", "P-1", "", moaasBody), "/instrument"},
		{"a single score then a panel", []string{"assessment|" + rec("A-1", "1", "P-1", "", moaasBody)},
			mapping.KindAssessment, rec("A-1", "2", "P-1", "", phq9Body), "/instrument"},
		{"withdrawn as another instrument", []string{"assessment|" + rec("A-1", "1", "P-1", "", phq9Body)},
			mapping.KindAssessment, withdrawn(rec("A-1", "2", "P-1", "", gad7Body)), "/instrument"},
		{"a session's nested assessment", []string{"session|" + session("S-1", "1", phq9Body)},
			mapping.KindSession, session("S-1", "2", gad7Body), "/assessments/0/instrument"},
		{"a session's nested assessment sent on its own", []string{"session|" + session("S-1", "1", phq9Body)},
			mapping.KindAssessment, rec("A-9", "2", "P-1", "", gad7Body), "/instrument"},
		{"a standalone assessment nested in a session", []string{"assessment|" + rec("A-9", "1", "P-1", "", phq9Body)},
			mapping.KindSession, session("S-1", "2", gad7Body), "/assessments/0/instrument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{})
			for _, s := range tc.stored {
				kind, doc, _ := strings.Cut(s, "|")
				if err := g.ingest("", mapping.Kind(kind), doc); err != nil {
					t.Fatal(err)
				}
			}
			observations := g.count(t, "", "Observation", "")
			err := g.ingest("", tc.kind, tc.doc)
			wantIssues(t, err, outcome.Conflict, ingest.RuleInstrumentChanged, tc.pointer)
			_, issues := outcome.From(err)
			for _, want := range []string{"cannot change", "new record id", "entered-in-error"} {
				if !strings.Contains(issues[0].Message, want) {
					t.Errorf("message %q does not say %q", issues[0].Message, want)
				}
			}
			if n := g.count(t, "", "Observation", ""); n != observations {
				t.Errorf("%d Observations after the refusal, want %d", n, observations)
			}
			if n := g.count(t, "", "Observation", "status=amended,entered-in-error"); n != 0 {
				t.Errorf("%d Observations changed by the refused record", n)
			}
		})
	}
	// The same instrument: new versions, a withdrawal, a session nesting
	// the stored record.
	g := newGateway(t, app.Config{})
	for i, s := range []struct {
		kind mapping.Kind
		doc  string
	}{
		{mapping.KindAssessment, rec("A-1", "1", "P-1", "", phq9Body)},
		{mapping.KindAssessment, rec("A-1", "2", "P-1", "", strings.Replace(phq9Body, `"total": 6`, `"total": 7`, 1))},
		{mapping.KindAssessment, rec("A-2", "1", "P-1", "", moaasBody)},
		{mapping.KindAssessment, rec("A-2", "2", "P-1", "", strings.Replace(moaasBody, `"total": 5`, `"total": 4`, 1))},
		{mapping.KindSession, session("S-1", "1", phq9Body)},
		{mapping.KindAssessment, rec("A-9", "2", "P-1", "", phq9Body)},
		{mapping.KindAssessment, withdrawn(rec("A-1", "3", "P-1", "", phq9Body))},
	} {
		if err := g.ingest("", s.kind, s.doc); err != nil {
			t.Errorf("step %d: %v", i, err)
		}
	}
}
