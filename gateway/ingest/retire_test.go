package ingest_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestRetiredSignalNotRewritten: an entry that retires a safety signal is
// written only while the stored signal is in force and, for a session's
// DetectedIssue retired by a vitals record sent on its own, is the
// record's patient's: a signal already retired is not rewritten by every
// later version (its inactivation date moving), and another patient's
// withdrawal naming the session writes nothing (reviewer of p45, 1 and 6).
// A withdrawal still voids an adverse event's Flag, active or inactive:
// its flag-detail then names the AdverseEvent the withdrawal deletes by
// its id, not by the urn of a DELETE entry, which no Bundle resolves.
// want is the signal's stored status, version and patient after the last
// record.
func TestRetiredSignalNotRewritten(t *testing.T) {
	vitals := func(recordID, version, patient, session, sbp string) string {
		named := ""
		if session != "" {
			named = `"sessionId": "` + session + `", `
		}
		return rec(recordID, version, patient, "", named+`"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", `+
			`"bloodPressure": {"systolic": `+sbp+`, "diastolic": 80}`)
	}
	withdraw := func(doc, version string) string {
		return strings.Replace(doc, `"version": "`+version+`"`, `"version": "`+version+`", "status": "entered-in-error"`, 1)
	}
	session := func(patient string) string {
		return strings.Replace(criticalSession("S-1", "1", "186"), `"id": "P-1"`, `"id": "`+patient+`"`, 1)
	}
	ae := func(version, event string) string {
		doc := rec("AE-1", version, "P-1", "", `"event": "`+event+`", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "moderate", "serious": false`)
		// Each version changed at another time: an inactive Flag's period ends at the change.
		return strings.Replace(doc, `"version": "`+version+`"`, `"version": "`+version+`", "lastUpdated": "2026-03-1`+version+`T12:00:00Z"`, 1)
	}
	type step struct {
		kind mapping.Kind
		doc  string
	}
	tests := []struct {
		name    string
		typ     string
		steps   []step
		status  string
		version int64
		patient string // the stored signal's patient, "" not checked
	}{
		{"another patient's withdrawal naming the session, the issue retired", "DetectedIssue", []step{
			{mapping.KindSession, session("P-2")},
			{mapping.KindVitals, vitals("V-S-1", "2", "P-2", "S-1", "128")}, // retires it: v2
			{mapping.KindVitals, vitals("V-7", "1", "P-1", "", "128")},
			{mapping.KindVitals, withdraw(vitals("V-7", "2", "P-1", "S-1", "128"), "2")},
		}, "entered-in-error", 2, "P-2"},
		{"another patient's withdrawal naming the session, the issue in force", "DetectedIssue", []step{
			{mapping.KindSession, session("P-2")},
			{mapping.KindVitals, vitals("V-S-1", "2", "P-2", "", "128")}, // names no session: the issue stays
			{mapping.KindVitals, vitals("V-7", "1", "P-1", "", "128")},
			{mapping.KindVitals, withdraw(vitals("V-7", "2", "P-1", "S-1", "128"), "2")},
		}, "final", 1, "P-2"},
		{"a correction naming a session whose issue the session retired", "DetectedIssue", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindSession, criticalSession("S-1", "2", "128")}, // retires it: v2
			{mapping.KindVitals, vitals("V-8", "1", "P-1", "S-1", "130")},
			{mapping.KindVitals, vitals("V-8", "2", "P-1", "S-1", "128")},
		}, "entered-in-error", 2, "P-1"},
		{"an inactive Flag, a later version", "Flag", []step{
			{mapping.KindAdverseEvent, ae("1", "suicidal-ideation")},
			{mapping.KindAdverseEvent, ae("2", "anxiety")}, // inactive: v2
			{mapping.KindAdverseEvent, ae("3", "nausea")},
		}, "inactive", 2, ""},
		{"an active Flag, withdrawn", "Flag", []step{
			{mapping.KindAdverseEvent, ae("1", "suicidal-ideation")},
			{mapping.KindAdverseEvent, withdraw(ae("2", "suicidal-ideation"), "2")},
		}, "entered-in-error", 2, ""},
		{"an inactive Flag, withdrawn", "Flag", []step{ // a withdrawal still voids it
			{mapping.KindAdverseEvent, ae("1", "suicidal-ideation")},
			{mapping.KindAdverseEvent, ae("2", "anxiety")},
			{mapping.KindAdverseEvent, withdraw(ae("3", "anxiety"), "3")},
		}, "entered-in-error", 3, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true },
				AcceptsTenant: func(x string) bool { return x != search.AllTenants }}}})
			for _, s := range tc.steps {
				if err := g.ingest("", s.kind, s.doc); err != nil {
					t.Fatalf("ingest %s: %v", s.doc, err)
				}
			}
			r, err := g.a.Store.Read(context.Background(), tc.typ, g.one(t, tc.typ, ""))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Status  string
				Patient struct{ Reference string }
			}
			if err := json.Unmarshal(r.Body, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Status != tc.status || r.Version != tc.version {
				t.Errorf("%s: status %s, version %d; want %s, version %d", tc.typ, doc.Status, r.Version, tc.status, tc.version)
			}
			if tc.patient != "" {
				want := "Patient/" + g.one(t, "Patient", "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|"+tc.patient)
				if doc.Patient.Reference != want {
					t.Errorf("%s of patient %s, want %s", tc.typ, doc.Patient.Reference, want)
				}
			}
		})
	}
}

// TestIssueStandsWarning: a record whose version would retire its
// session's DetectedIssue while another pre-dose value of the session
// stored apart from it is charted critical leaves the issue final, as
// stored, whose evidence and detail may still name the corrected value:
// the answer warns the sender (session.critical-issue-stands), naming the
// record that keeps it, and how to have it rewritten (review of fix-clin,
// finding 3). No warning where the issue is retired, nor for another
// patient's session.
func TestIssueStandsWarning(t *testing.T) {
	const normal, critical = `"bloodPressure": {"systolic": 128, "diastolic": 80}`, `"bloodPressure": {"systolic": 186, "diastolic": 90}`
	vitals := func(recordID, version, patient, session, measurements string) string {
		return rec(recordID, version, patient, "", `"sessionId": "`+session+`", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:52:00-05:00", `+measurements)
	}
	twoCritical := rec("S-5", "1", "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}},
		"vitals": [{"recordId": "V-S-5", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", `+critical+`},
		{"recordId": "V-S-5b", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:52:00-05:00", "heartRate": 135}]`)
	type step struct {
		kind mapping.Kind
		doc  string
	}
	tests := []struct {
		name  string
		steps []step // the last one's answer is checked
		want  string // the warning, "" none
	}{
		{"a correction on its own, another nested value critical", []step{
			{mapping.KindSession, twoCritical},
			{mapping.KindVitals, vitals("V-S-5", "2", "P-1", "S-5", normal)},
		}, "warning session.critical-issue-stands /sessionId"},
		{"a session version, a value sent on its own critical", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindVitals, vitals("V-9", "1", "P-1", "S-1", `"heartRate": 135`)},
			{mapping.KindSession, criticalSession("S-1", "2", "128")},
		}, "warning session.critical-issue-stands /infusion/infusionStart"},
		{"a correction on its own, nothing else critical", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindVitals, vitals("V-S-1", "2", "P-1", "S-1", normal)},
		}, ""},
		{"another patient's withdrawal", []step{
			{mapping.KindSession, twoCritical},
			{mapping.KindVitals, vitals("V-7", "1", "P-2", "S-9", normal)},
			{mapping.KindVitals, strings.Replace(vitals("V-7", "2", "P-2", "S-5", normal), `"version": "2"`, `"version": "2", "status": "entered-in-error"`, 1)},
		}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{})
			var got []string
			for i, s := range tc.steps {
				issues := g.answerIssuesRun(t, s.kind, s.doc, false)
				if i < len(tc.steps)-1 {
					continue
				}
				for _, is := range issues {
					if strings.Contains(is, "critical-issue-stands") {
						got = append(got, is[:strings.IndexByte(is, '|')])
						if msg := is[strings.IndexByte(is, '|')+1:]; !strings.Contains(msg, "V-") || strings.Contains(msg, "135") {
							t.Errorf("the warning names no record, or quotes a value: %q", msg)
						}
					}
				}
			}
			if s := strings.Join(got, "; "); s != tc.want {
				t.Errorf("answer warnings %q, want %q", s, tc.want)
			}
		})
	}
}
