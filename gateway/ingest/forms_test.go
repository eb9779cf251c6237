package ingest_test

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestOneVersionTwoForms: a record version received in one of its two
// forms (nested in a session or on its own; an infusion or its session) is
// the same version in the other (docs/records.md, record identity): the
// same content again writes nothing, other content is
// record-version-reused. It used to be applied a second time: an
// unchanged PHQ-9 written again "amended" with an inactive Flag, an
// infusion's version replaced by other content.
func TestOneVersionTwoForms(t *testing.T) {
	const phq9 = `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "items": [{"number": 1, "score": 1},
		{"number": 2, "score": 1}, {"number": 3, "score": 1}, {"number": 4, "score": 1}, {"number": 5, "score": 0},
		{"number": 6, "score": 0}, {"number": 7, "score": 0}, {"number": 8, "score": 0}, {"number": 9, "score": 0}],
		"total": 4`
	session := rec("S-1", "3", "P-1", "", `"infusion": {`+infusionBody+`}, "assessments": [{"recordId": "A-1", `+phq9+`}]`)
	alone := rec("A-1", "3", "P-1", "", `"sessionId": "S-1", `+phq9)

	t.Run("nested, then on its own", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindSession, session); err != nil {
			t.Fatal(err)
		}
		provenances := g.count(t, "", "Provenance", "")
		if err := g.ingest("", mapping.KindAssessment, alone); err != nil {
			t.Fatalf("the same version on its own: %v", err)
		}
		if n := g.count(t, "", "Observation", "status=amended"); n != 0 {
			t.Errorf("%d Observations amended, want 0", n)
		}
		if n := g.count(t, "", "Flag", ""); n != 0 {
			t.Errorf("%d Flags, want 0", n)
		}
		if n := g.count(t, "", "Provenance", ""); n != provenances {
			t.Errorf("%d Provenances, want %d (nothing written)", n, provenances)
		}
		// A version whose source.lastUpdated is written otherwise in the
		// other form is the same version.
		at := func(doc, lastUpdated string) string {
			return strings.Replace(doc, `"version": "3"`, `"version": "5", "lastUpdated": "`+lastUpdated+`"`, 1)
		}
		if err := g.ingest("", mapping.KindSession, at(session, "2026-03-02T16:15:00Z")); err != nil {
			t.Fatal(err)
		}
		if err := g.ingest("", mapping.KindAssessment, at(alone, "2026-03-02T11:15:00-05:00")); err != nil {
			t.Errorf("the same version on its own, lastUpdated in another zone: %v", err)
		}
		other := strings.Replace(alone, `{"number": 1, "score": 1}`, `{"number": 1, "score": 2}`, 1)
		other = strings.Replace(other, `"total": 4`, `"total": 5`, 1)
		wantIssues(t, g.ingest("", mapping.KindAssessment, other), outcome.Conflict, "record-version-reused", "/source/version")
		noSession := strings.Replace(alone, `"sessionId": "S-1", `, "", 1)
		wantIssues(t, g.ingest("", mapping.KindAssessment, noSession), outcome.Conflict, "record-version-reused", "/source/version")
		v4 := strings.Replace(other, `"version": "3"`, `"version": "4"`, 1)
		if err := g.ingest("", mapping.KindAssessment, v4); err != nil {
			t.Errorf("a new version on its own: %v", err)
		}
	})
	t.Run("on its own, then nested", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		other := strings.Replace(alone, `{"number": 1, "score": 1}`, `{"number": 1, "score": 2}`, 1)
		other = strings.Replace(other, `"total": 4`, `"total": 5`, 1)
		if err := g.ingest("", mapping.KindAssessment, other); err != nil {
			t.Fatal(err)
		}
		wantIssues(t, g.ingest("", mapping.KindSession, session), outcome.Conflict, "record-version-reused",
			"/source/version", "/assessments/0/recordId")
	})
	t.Run("infusion, then its session", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
			t.Fatal(err)
		}
		provenances := g.count(t, "", "Provenance", "")
		if err := g.ingest("", mapping.KindSession, rec("S-1", "1", "P-1", "", `"infusion": {`+infusionBody+`}`)); err != nil {
			t.Fatalf("the same version as a session: %v", err)
		}
		if n := g.count(t, "", "Provenance", ""); n != provenances {
			t.Errorf("%d Provenances, want %d (nothing written)", n, provenances)
		}
		notDone := `"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "other", "text": "no show"},
			"scheduledAt": "2026-03-02T09:00:00-05:00"`
		wantIssues(t, g.ingest("", mapping.KindSession, rec("S-1", "1", "P-1", "", `"infusion": {`+notDone+`}`)),
			outcome.Conflict, "record-version-reused", "/source/version", "/infusion")
	})
	t.Run("session, then its infusion", func(t *testing.T) {
		g := newGateway(t, app.Config{})
		if err := g.ingest("", mapping.KindSession, session); err != nil {
			t.Fatal(err)
		}
		provenances := g.count(t, "", "Provenance", "")
		if err := g.ingest("", mapping.KindInfusion, rec("S-1", "3", "P-1", "", infusionBody)); err != nil {
			t.Fatalf("the same version as an infusion: %v", err)
		}
		if n := g.count(t, "", "Provenance", ""); n != provenances {
			t.Errorf("%d Provenances, want %d (nothing written)", n, provenances)
		}
		other := strings.Replace(infusionBody, `"totalDoseMg": 40`, `"totalDoseMg": 40, "notes": "x"`, 1)
		wantIssues(t, g.ingest("", mapping.KindInfusion, rec("S-1", "3", "P-1", "", other)), outcome.Conflict,
			"record-version-reused", "/source/version")
	})
}
