package ingest_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// A record's parts are identified by its record id, "-" and a code: the
// item 1 of PHQ-9 Q-100 is Q-100-44250-9, which is also what an assessment
// with record id Q-100-44250-9 is identified by.
const (
	phq9Items = `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "items": [
		{"number": 1, "score": 3}, {"number": 2, "score": 0}, {"number": 3, "score": 0}, {"number": 4, "score": 0},
		{"number": 5, "score": 0}, {"number": 6, "score": 0}, {"number": 7, "score": 0}, {"number": 8, "score": 0},
		{"number": 9, "score": 0}], "total": 3`
	moaasBody = `"instrument": "MOAA-S", "takenAt": "2026-03-02T10:12:00-05:00", "total": 5`
	item1ID   = "Q-100-44250-9"
)

// TestRecordIDCollides: a record whose id is another record's id and a
// code would be identified as that record's part. In either order, in a
// session too, and for another patient, it is refused (409
// record-id-collides at its record id), and the stored part is left as
// it was; before, a MOAA/S sent after the PHQ-9 was written over its
// item 1 as an amendment (and for another patient refused as the same
// record stored for another patient), and a PHQ-9 sent after the MOAA/S
// took the MOAA/S as its item 1. The same record in its other forms
// (nested, then on its own; an infusion, then its session) is still a
// new version of itself.
func TestRecordIDCollides(t *testing.T) {
	item := "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/assessment|" + item1ID
	tests := []struct {
		name          string
		first         string
		firstKind     mapping.Kind
		then          string
		thenKind      mapping.Kind
		pointer, code string // the refusal's, and the code the stored Observation keeps
	}{
		{"record after the part", rec("Q-100", "1", "P-1", "", phq9Items), mapping.KindAssessment,
			rec(item1ID, "1", "P-1", "", moaasBody), mapping.KindAssessment, "/source/recordId", "44250-9"},
		{"record after the part, another patient", rec("Q-100", "1", "P-1", "", phq9Items), mapping.KindAssessment,
			rec(item1ID, "1", "P-2", "", moaasBody), mapping.KindAssessment, "/source/recordId", "44250-9"},
		{"part after the record", rec(item1ID, "1", "P-1", "", moaasBody), mapping.KindAssessment,
			rec("Q-100", "1", "P-1", "", phq9Items), mapping.KindAssessment, "/source/recordId", "moaa-s"},
		{"nested record after the part", rec("Q-100", "1", "P-1", "", phq9Items), mapping.KindAssessment,
			rec("S-1", "1", "P-1", "", `"infusion": {`+infusionBody+`}, "assessments": [{"recordId": "`+item1ID+`", `+moaasBody+`}]`),
			mapping.KindSession, "/assessments/0/recordId", "44250-9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{})
			if err := g.ingest("", tc.firstKind, tc.first); err != nil {
				t.Fatal(err)
			}
			err := g.ingest("", tc.thenKind, tc.then)
			wantIssues(t, err, outcome.Conflict, ingest.RuleRecordIDCollides, tc.pointer)
			r, gerr := g.a.Store.Read(context.Background(), "Observation", g.one(t, "Observation", item))
			if gerr != nil {
				t.Fatal(gerr)
			}
			var doc struct {
				Status string
				Code   struct{ Coding []struct{ Code string } }
			}
			if err := json.Unmarshal(r.Body, &doc); err != nil {
				t.Fatal(err)
			}
			if r.Version != 1 || doc.Status != "final" || len(doc.Code.Coding) == 0 || doc.Code.Coding[0].Code != tc.code {
				t.Errorf("the stored Observation is version %d, %s, code %+v; want version 1, final, %s", r.Version, doc.Status, doc.Code.Coding, tc.code)
			}
		})
	}

	// The same record in its other forms is not a collision.
	g := newGateway(t, app.Config{})
	steps := []struct {
		kind mapping.Kind
		doc  string
	}{
		{mapping.KindSession, rec("S-2", "1", "P-1", "", `"infusion": {`+infusionBody+`}, "assessments": [{"recordId": "A-9", `+moaasBody+`}]`)},
		{mapping.KindAssessment, rec("A-9", "2", "P-1", "", `"sessionId": "S-2", "instrument": "MOAA-S", "takenAt": "2026-03-02T10:12:00-05:00", "total": 4`)},
		{mapping.KindInfusion, rec("I-3", "1", "P-1", "", infusionBody)},
		{mapping.KindSession, rec("I-3", "2", "P-1", "", `"infusion": {`+infusionBody+`}`)},
		{mapping.KindInfusion, rec("I-3", "3", "P-1", "", infusionBody)},
	}
	for i, s := range steps {
		if err := g.ingest("", s.kind, s.doc); err != nil {
			t.Errorf("step %d (%s): %v", i, s.kind, err)
		}
	}
}
