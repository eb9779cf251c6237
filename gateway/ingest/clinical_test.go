package ingest_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// answerIssues ingests a record and returns its answer's issues as
// "severity rule pointer".
func (g *gw) answerIssues(t *testing.T, kind mapping.Kind, doc string) []string {
	t.Helper()
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
	answer, err := g.a.Ingest.Ingest(context.Background(), sc, kind, []byte(doc), false, engine.Answer{})
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	var b struct {
		Entry []struct {
			Response struct {
				Outcome *struct {
					Issue []struct {
						Severity    string
						Details     struct{ Coding []struct{ Code string } }
						Location    []string
						Diagnostics string
					}
				}
			}
		}
	}
	if err := json.Unmarshal(answer, &b); err != nil {
		t.Fatal(err)
	}
	var got []string
	if oo := b.Entry[0].Response.Outcome; oo != nil {
		for _, is := range oo.Issue {
			code := ""
			if len(is.Details.Coding) == 1 {
				code = is.Details.Coding[0].Code
			}
			got = append(got, is.Severity+" "+code+" "+strings.Join(is.Location, ","))
		}
	}
	return got
}

// one returns the id of the only current resource of typ matching params.
func (g *gw) one(t *testing.T, typ, params string) string {
	t.Helper()
	vals, err := url.ParseQuery(params)
	if err != nil {
		t.Fatal(err)
	}
	q, err := search.Parse(typ, vals, false)
	if err != nil {
		t.Fatal(err)
	}
	page, err := g.a.Store.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Matches) != 1 {
		t.Fatalf("%s?%s: %d matches, want 1", typ, params, len(page.Matches))
	}
	return page.Matches[0].ID
}

// criticalSession is a session whose pre-dose systolic pressure is sbp.
func criticalSession(recordID, version, sbp string) string {
	return rec(recordID, version, "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}},
		"vitals": [{"recordId": "V-`+recordID+`", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00",
		"bloodPressure": {"systolic": `+sbp+`, "diastolic": 90}}]`)
}

// TestDosedDespiteCriticalVitalsStored: a session dosed after a critical
// pre-dose systolic pressure is stored with its DetectedIssue, found by
// patient, by implicated (the administration) and by identifier, and the
// answer warns at the critical value; a corrected version marks it
// entered-in-error, and so does a withdrawal.
func TestDosedDespiteCriticalVitalsStored(t *testing.T) {
	g := newGateway(t, app.Config{})
	issues := g.answerIssues(t, mapping.KindSession, criticalSession("S-1", "1", "186"))
	if want := "warning session.dosed-despite-critical-vitals /vitals/0/bloodPressure/systolic"; strings.Join(issues, "; ") != want {
		t.Fatalf("answer issues %q, want %q", issues, want)
	}
	sys := mapping.DefaultIdentifierBase + "/serenity-clinic-emr/"
	patient := g.one(t, "Patient", "identifier="+sys+"patient|P-1")
	admin := g.one(t, "MedicationAdministration", "identifier="+sys+"infusion-session|S-1-medication")
	issue := g.one(t, "DetectedIssue", "identifier="+sys+"infusion-session|S-1-critical-pre-dose-vitals")
	for _, params := range []string{"patient=Patient/" + patient, "implicated=MedicationAdministration/" + admin,
		"code=http://terminology.hl7.org/CodeSystem/v3-ActCode|OBSA", "author:identifier=" + sys + "practitioner|C-7"} {
		if n := g.count(t, "", "DetectedIssue", params); n != 1 {
			t.Errorf("DetectedIssue?%s: %d, want 1", params, n)
		}
	}
	status := func() string {
		r, err := g.a.Store.Read(context.Background(), "DetectedIssue", issue)
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Status string }
		if err := json.Unmarshal(r.Body, &d); err != nil {
			t.Fatal(err)
		}
		return d.Status
	}
	if s := status(); s != "final" {
		t.Fatalf("status %s, want final", s)
	}
	if issues := g.answerIssues(t, mapping.KindSession, criticalSession("S-1", "2", "150")); len(issues) != 0 {
		t.Errorf("corrected version: answer issues %q, want none", issues)
	}
	if s := status(); s != "entered-in-error" {
		t.Errorf("after the corrected version: status %s, want entered-in-error", s)
	}
	g.answerIssues(t, mapping.KindSession, criticalSession("S-1", "3", "186"))
	if s := status(); s != "final" {
		t.Errorf("after version 3: status %s, want final", s)
	}
	withdrawn := strings.Replace(criticalSession("S-1", "4", "186"), `"version": "4"`, `"version": "4", "status": "entered-in-error"`, 1)
	g.answerIssues(t, mapping.KindSession, withdrawn)
	if s := status(); s != "entered-in-error" {
		t.Errorf("after the withdrawal: status %s, want entered-in-error", s)
	}
}
