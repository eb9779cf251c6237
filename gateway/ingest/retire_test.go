package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// preDoseVitals is a pre-dose vitals record of patient with a systolic
// pressure sbp, naming session ("" none).
func preDoseVitals(recordID, version, patient, session, sbp string) string {
	named := ""
	if session != "" {
		named = `"sessionId": "` + session + `", `
	}
	return rec(recordID, version, patient, "", named+`"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", `+
		`"bloodPressure": {"systolic": `+sbp+`, "diastolic": 80}`)
}

// withdrawVersion is doc, of version version, as a withdrawal.
func withdrawVersion(doc, version string) string {
	return strings.Replace(doc, `"version": "`+version+`"`, `"version": "`+version+`", "status": "entered-in-error"`, 1)
}

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
	vitals, withdraw := preDoseVitals, withdrawVersion
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
			{mapping.KindVitals, vitals("V-S-1", "2", "P-2", "", "190")}, // still critical: the issue stays
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

// TestRecordStaysInSession: a record nested in a session, or sent on its
// own naming one, stays in that session: a later version sent on its own
// that names no session is still part of it (its Observations keep their
// partOf, and a correction that holds no critical pre-dose value any more
// retires the session's DetectedIssue, re-judged as when it names the
// session), and a version naming another session is refused (409
// record-session-changed at /sessionId), nothing written. Before, the
// correction cut the link and left the DetectedIssue final on a value no
// longer critical.
func TestRecordStaysInSession(t *testing.T) {
	vitals := func(recordID, version, session, sbp string) string {
		return preDoseVitals(recordID, version, "P-1", session, sbp)
	}
	withdraw := withdrawVersion
	type step struct {
		kind mapping.Kind
		doc  string
	}
	tests := []struct {
		name    string
		steps   []step
		refused string // the last step's refusal ("" stored)
		issue   string // the DetectedIssue's status after the steps
		session string // the session the vitals record's blood pressure is part of ("" not checked)
	}{
		{"nested, corrected on its own naming no session", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindVitals, vitals("V-S-1", "2", "", "128")},
		}, "", "entered-in-error", "S-1"},
		{"nested, withdrawn on its own naming no session", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindVitals, withdraw(vitals("V-S-1", "2", "", "186"), "2")},
		}, "", "entered-in-error", ""},
		{"nested, still critical on its own naming no session", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindVitals, vitals("V-S-1", "2", "", "190")},
		}, "", "final", "S-1"},
		{"nested, moved to another session", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindSession, criticalSession("S-2", "1", "120")},
			{mapping.KindVitals, vitals("V-S-1", "2", "S-2", "128")},
		}, "409 record-session-changed /sessionId", "final", "S-1"},
		{"on its own naming the session, then another", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindSession, criticalSession("S-2", "1", "120")},
			{mapping.KindVitals, vitals("V-9", "1", "S-1", "120")},
			{mapping.KindVitals, vitals("V-9", "2", "S-2", "125")},
		}, "409 record-session-changed /sessionId", "final", "S-1"},
		{"on its own naming a session never stored, then another", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindVitals, vitals("V-9", "1", "S-7", "120")},
			{mapping.KindVitals, vitals("V-9", "2", "S-1", "125")}, // a typo corrected
		}, "", "final", "S-1"},
		{"on its own naming the session, then naming none", []step{
			{mapping.KindSession, criticalSession("S-1", "1", "186")},
			{mapping.KindVitals, vitals("V-9", "1", "S-1", "120")},
			{mapping.KindVitals, vitals("V-9", "2", "", "125")},
		}, "", "final", "S-1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{})
			last := tc.steps[len(tc.steps)-1]
			for _, s := range tc.steps[:len(tc.steps)-1] {
				if err := g.ingest("", s.kind, s.doc); err != nil {
					t.Fatalf("ingest %s: %v", s.doc, err)
				}
			}
			err := g.ingest("", last.kind, last.doc)
			if got := refusal(err); got != tc.refused {
				t.Fatalf("last record: %q (%v), want %q", got, err, tc.refused)
			}
			r, err := g.a.Store.Read(context.Background(), "DetectedIssue", g.one(t, "DetectedIssue", ""))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct{ Status string }
			if err := json.Unmarshal(r.Body, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Status != tc.issue {
				t.Errorf("DetectedIssue %s, want %s", doc.Status, tc.issue)
			}
			if tc.session != "" {
				recordID := strings.SplitN(strings.SplitN(last.doc, `"recordId": "`, 2)[1], `"`, 2)[0]
				sys := mapping.DefaultIdentifierBase + "/serenity-clinic-emr/vitals|" + recordID + "-85354-9"
				r, err := g.a.Store.Read(context.Background(), "Observation", g.one(t, "Observation", "identifier="+sys))
				if err != nil {
					t.Fatal(err)
				}
				var obs struct {
					PartOf []struct {
						Reference  string
						Identifier struct{ Value string }
					}
				}
				if err := json.Unmarshal(r.Body, &obs); err != nil {
					t.Fatal(err)
				}
				if len(obs.PartOf) != 1 || (!strings.HasPrefix(obs.PartOf[0].Reference, "Procedure/") && obs.PartOf[0].Identifier.Value != tc.session) {
					t.Errorf("the blood pressure of %s is not part of its session: partOf %+v", recordID, obs.PartOf)
				}
			}
		})
	}
}

// refusal is err's HTTP status, rules and pointers ("" for nil).
func refusal(err error) string {
	if err == nil {
		return ""
	}
	var re *mapping.RuleError
	if errors.As(err, &re) {
		out := "422"
		for _, v := range re.Violations {
			out += " " + v.Rule + " " + v.Pointer
		}
		return out
	}
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		return err.Error()
	}
	out := fmt.Sprint(oe.Kind.HTTPStatus())
	for _, is := range oe.Issues {
		out += " " + is.Rule + " " + is.Pointer
	}
	return out
}

// TestEventStaysInSessionWithCausality: an adverse event nested in a
// session with causality, corrected or withdrawn on its own without
// sessionId, stays in the session (it was refused 422
// adverse-event.causality-without-session: a mapping developer's
// review); a new event with causality and no session is still refused,
// and so is a dry run, which reads nothing stored.
func TestEventStaysInSessionWithCausality(t *testing.T) {
	event := func(id, version, extra string) string {
		return rec(id, version, "P-1", "", extra+`"event": "nausea", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "mild", "serious": false, "causality": "probably-likely"`)
	}
	g := newGateway(t, app.Config{})
	session := rec("S-C", "1", "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}},
		"adverseEvents": [{"recordId": "AE-C", "event": "nausea", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "mild", "serious": false, "causality": "possible"}]`)
	if err := g.ingest("", mapping.KindSession, session); err != nil {
		t.Fatal(err)
	}
	other := strings.ReplaceAll(strings.Replace(session, `"recordId": "AE-C"`, `"recordId": "AE-D"`, 1), "S-C", "S-D")
	if err := g.ingest("", mapping.KindSession, other); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, doc string
		refused   string
	}{
		{"corrected on its own", event("AE-C", "2", ""), ""},
		{"corrected again on its own", event("AE-C", "3", ""), ""},
		// Its session is the Procedure its suspects name, not the
		// administration beside it (a safety review: the event was homed
		// in "S-C-medication", and a version naming S-D was taken).
		{"moved to another session", event("AE-C", "4", `"sessionId": "S-D", `), "409 record-session-changed /sessionId"},
		{"withdrawn on its own", strings.Replace(event("AE-C", "5", ""), `"version": "5"`, `"version": "5", "status": "entered-in-error"`, 1), ""},
		{"a new event", event("AE-N", "1", ""), "422 adverse-event.causality-without-session /causality"},
	} {
		if got := refusal(g.ingest("", mapping.KindAdverseEvent, tc.doc)); got != tc.refused {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.refused)
		}
		if tc.name == "corrected again on its own" {
			ae, err := g.a.Store.Read(context.Background(), "AdverseEvent", g.one(t, "AdverseEvent", "identifier="+mapping.DefaultIdentifierBase+"/serenity-clinic-emr/adverse-event|AE-C"))
			if err != nil {
				t.Fatal(err)
			}
			if body := string(ae.Body); strings.Contains(body, "-medication-medication") || !strings.Contains(body, `"S-C-medication"`) {
				t.Errorf("the event's suspects do not name its session's administration: %s", body)
			}
		}
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
	_, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAdverseEvent, []byte(event("AE-C", "4", "")), true, engine.Answer{})
	if got := refusal(err); got != "422 adverse-event.causality-without-session /causality" {
		t.Errorf("dry run: %q, want the refusal", got)
	}
}

// TestLinkCutBeforeFoundInHistory: a nested record whose link to its
// session an earlier release cut (corrected on its own without
// sessionId, before records stayed in their session) finds its session
// again in its resource's history at its next version: the link comes
// back and the session's DetectedIssue is re-judged (a mapping
// developer's review: after the upgrade the issue stayed final on a value
// no longer critical).
func TestLinkCutBeforeFoundInHistory(t *testing.T) {
	g := newGateway(t, app.Config{})
	ctx := context.Background()
	if err := g.ingest("", mapping.KindSession, criticalSession("S-1", "1", "186")); err != nil {
		t.Fatal(err)
	}
	// What the earlier release stored: the blood pressure without partOf.
	sys := mapping.DefaultIdentifierBase + "/serenity-clinic-emr/vitals|V-S-1-85354-9"
	id := g.one(t, "Observation", "identifier="+sys)
	err := g.a.Store.Write(ctx, func(tx store.Tx) error {
		cur, err := tx.Read("Observation", id)
		if err != nil {
			return err
		}
		var doc map[string]any
		if err := json.Unmarshal(cur.Body, &doc); err != nil {
			return err
		}
		delete(doc, "partOf")
		r, entries, err := store.NewVersion("Observation", id, cur.Version+1, doc, time.Now())
		if err != nil {
			return err
		}
		return tx.Put(r, entries)
	})
	if err != nil {
		t.Fatal(err)
	}
	v := rec("V-S-1", "3", "P-1", "", `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "bloodPressure": {"systolic": 128, "diastolic": 90}`)
	if err := g.ingest("", mapping.KindVitals, v); err != nil {
		t.Fatal(err)
	}
	r, err := g.a.Store.Read(ctx, "Observation", id)
	if err != nil || !strings.Contains(string(r.Body), `"partOf"`) {
		t.Errorf("the blood pressure's link to its session is not back: %v", err)
	}
	issue, err := g.a.Store.Read(ctx, "DetectedIssue", g.one(t, "DetectedIssue", ""))
	if err != nil || !strings.Contains(string(issue.Body), `"status":"entered-in-error"`) {
		t.Errorf("the session's DetectedIssue is not retired: %v", err)
	}
}

// TestRulesAcrossRecordsInSession: the rules across records judge a
// record corrected on its own without sessionId in the session it stays
// in, as one naming it: a critical pre-dose value is warned about, and a
// time outside the session refused (a safety review: 200 without a
// warning, and a post-dose measurement ten days later taken).
func TestRulesAcrossRecordsInSession(t *testing.T) {
	g := newGateway(t, app.Config{})
	if err := g.ingest("", mapping.KindSession, criticalSession("S-1", "1", "128")); err != nil {
		t.Fatal(err)
	}
	warnings, err := g.ingestAnswer(t, "", preDoseVitals("V-S-1", "2", "P-1", "", "190"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.HasPrefix(w, "session.dosed-despite-critical-vitals:") }) {
		t.Errorf("warnings %v, want session.dosed-despite-critical-vitals", warnings)
	}
	late := rec("V-S-1", "3", "P-1", "", `"timepoint": "post-dose-40min", "measuredAt": "2026-03-12T09:50:00-05:00", `+
		`"bloodPressure": {"systolic": 120, "diastolic": 80}`)
	if got := refusal(g.ingest("", mapping.KindVitals, late)); !strings.HasPrefix(got, "422 session.time-window") {
		t.Errorf("a post-dose measurement ten days after the session: %q, want 422 session.time-window", got)
	}
}
