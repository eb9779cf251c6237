package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// answerIssues ingests a record and returns its answer's issues as
// "severity rule pointer".
func (g *gw) answerIssues(t *testing.T, kind mapping.Kind, doc string) []string {
	t.Helper()
	var out []string
	for _, is := range g.answerIssuesRun(t, kind, doc, false) {
		out = append(out, is[:strings.IndexByte(is, '|')])
	}
	return out
}

// answerIssuesRun is answerIssues, a dry run when dryRun, with each
// issue's message after a "|".
func (g *gw) answerIssuesRun(t *testing.T, kind mapping.Kind, doc string, dryRun bool) []string {
	t.Helper()
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
	answer, err := g.a.Ingest.Ingest(context.Background(), sc, kind, []byte(doc), dryRun, engine.Answer{})
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
			got = append(got, is.Severity+" "+code+" "+strings.Join(is.Location, ",")+"|"+is.Diagnostics)
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
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			g := b.open(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true },
				AcceptsTenant: func(x string) bool { return x != search.AllTenants }}}})
			issues := g.answerIssues(t, mapping.KindSession, criticalSession("S-1", "1", "186"))
			// The Bundle delivered to the EHR is the session's, DetectedIssue included.
			items := g.deliveries(t, "", "serenity-clinic-emr", "S-1")
			if len(items) != 1 || !bytes.Contains(items[0].Payload, []byte(`"resourceType":"DetectedIssue"`)) {
				t.Errorf("%d deliveries; want one whose Bundle carries the DetectedIssue", len(items))
			}
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
		})
	}
}

// newGatewayPG is newGateway over PostgreSQL, in a fresh schema of
// GATEWAY_TEST_POSTGRES_URL (the test is skipped when it is not set).
func newGatewayPG(t *testing.T, cfg app.Config) *gw {
	t.Helper()
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t, "kgi", "the ingest tests")
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return gatewayOn(t, cfg, st, nil)
}

// backends open a gateway over each store the ingest runs on.
var backends = []struct {
	name string
	open func(*testing.T, app.Config) *gw
}{{"sqlite", newGateway}, {"postgres", newGatewayPG}}

// infusionAt is an IV infusion given from start to end.
func infusionAt(start, end string) string {
	return `"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80, "totalDoseMg": 40,
		"infusionStart": "` + start + `", "infusionEnd": "` + end + `"`
}

// TestSessionSpacingStored: a session that gave its drug is warned about
// the same patient's other stored sessions whose infusion overlaps its own
// (session.overlap) or starts less than 20 hours from it
// (session.interval-short), each warning naming the other session's record
// id; never refused. Another patient's sessions, the session's own earlier
// version, sessions not done or withdrawn, and a dry run are not compared;
// the tenant's sessionMinIntervalHours applies; a long infusion that
// began the day before is found by the date-bounded search.
func TestSessionSpacingStored(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			g := b.open(t, app.Config{})
			step := func(name string, kind mapping.Kind, doc string, dryRun bool, want ...string) {
				t.Helper()
				got := g.answerIssuesRun(t, kind, doc, dryRun)
				var rules []string
				for _, is := range got {
					rule, msg, _ := strings.Cut(is, "|")
					if strings.Contains(msg, "2026") || strings.Contains(msg, "P-1") {
						t.Errorf("%s: a warning quotes a value: %q", name, msg)
					}
					named := ""
					for _, id := range []string{"S-1", "S-2", "S-3", "S-4", "S-5", "S-6"} {
						if strings.Contains(msg, "session "+id+",") {
							named = " " + id
						}
					}
					rules = append(rules, rule+named)
				}
				if strings.Join(rules, "; ") != strings.Join(want, "; ") {
					t.Errorf("%s: answer issues %q, want %q", name, rules, want)
				}
			}
			const day1, day2 = "2026-03-02T", "2026-03-03T"
			step("first session", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionAt(day1+"09:00:00-05:00", day1+"09:40:00-05:00")), false)
			step("another patient at the same time", mapping.KindInfusion, rec("S-9", "1", "P-2", "", infusionAt(day1+"09:00:00-05:00", day1+"09:40:00-05:00")), false)
			step("dry run of an overlapping session", mapping.KindSession,
				rec("S-2", "1", "P-1", "", `"infusion": {`+infusionAt(day1+"09:20:00-05:00", day1+"10:00:00-05:00")+`}`), true)
			step("overlapping session document", mapping.KindSession,
				rec("S-2", "1", "P-1", "", `"infusion": {`+infusionAt(day1+"09:20:00-05:00", day1+"10:00:00-05:00")+`}`), false,
				"warning session.overlap /infusion/infusionStart S-1")
			step("19 hours after both", mapping.KindInfusion, rec("S-3", "1", "P-1", "", infusionAt(day2+"04:30:00-05:00", day2+"05:10:00-05:00")), false,
				"warning session.interval-short /infusionStart S-1", "warning session.interval-short /infusionStart S-2")
			step("a new version of the first", mapping.KindInfusion, rec("S-1", "2", "P-1", "", infusionAt(day1+"09:00:00-05:00", day1+"09:30:00-05:00")), false,
				"warning session.overlap /infusionStart S-2", "warning session.interval-short /infusionStart S-3")
			step("not done at the same time", mapping.KindInfusion, rec("S-4", "1", "P-1", "",
				`"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "elevated-blood-pressure"}, "scheduledAt": "`+day1+`09:00:00-05:00"`), false)
			withdrawn := strings.Replace(rec("S-2", "2", "P-1", "", `"infusion": {`+infusionAt(day1+"09:20:00-05:00", day1+"10:00:00-05:00")+`}`),
				`"version": "2"`, `"version": "2", "status": "entered-in-error"`, 1)
			step("the overlapping one withdrawn", mapping.KindSession, withdrawn, false)
			step("a fifth after the withdrawal", mapping.KindInfusion, rec("S-5", "1", "P-1", "", infusionAt(day1+"09:10:00-05:00", day1+"09:50:00-05:00")), false,
				"warning session.overlap /infusionStart S-1", "warning session.interval-short /infusionStart S-3")
			// The search is bounded by date: a long infusion that began
			// the day before still overlaps.
			step("a long infusion a month later", mapping.KindInfusion, rec("S-6", "1", "P-1", "", infusionAt("2026-04-01T09:30:00-05:00", "2026-04-02T09:10:00-05:00")), false,
				"warning infusion.duration-atypical /infusionEnd")
			step("a session during it", mapping.KindInfusion, rec("S-7", "1", "P-1", "", infusionAt("2026-04-02T09:00:00-05:00", "2026-04-02T09:40:00-05:00")), false,
				"warning session.overlap /infusionStart S-6")
		})
	}
	t.Run("tenant threshold", func(t *testing.T) {
		s := mapping.DefaultSafety()
		s.SessionMinIntervalHours = 12
		g := newGateway(t, app.Config{Safety: &s})
		g.answerIssues(t, mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionAt("2026-03-02T09:00:00-05:00", "2026-03-02T09:40:00-05:00")))
		if got := g.answerIssues(t, mapping.KindInfusion, rec("S-2", "1", "P-1", "", infusionAt("2026-03-03T04:30:00-05:00", "2026-03-03T05:10:00-05:00"))); len(got) != 0 {
			t.Errorf("19 hours apart with sessionMinIntervalHours 12: %q, want no issues", got)
		}
		if got := g.answerIssues(t, mapping.KindInfusion, rec("S-3", "1", "P-1", "", infusionAt("2026-03-03T14:00:00-05:00", "2026-03-03T14:40:00-05:00"))); strings.Join(got, "; ") != "warning session.interval-short /infusionStart" {
			t.Errorf("9.5 hours after S-2 with sessionMinIntervalHours 12: %q, want one interval-short", got)
		}
	})
}

// TestCriticalPreDoseAcrossRecords: the cross-record forms of the
// DetectedIssue are warnings (session.dosed-despite-critical-vitals): a
// pre-dose vitals record sent on its own with a critical value that names
// a stored session which gave its drug is warned at the value; a session
// that gave its drug, arriving after such a stored measurement, at its
// infusionStart, naming the vitals record. A session not done, a
// measurement not critical, and a session not stored yet are not.
func TestCriticalPreDoseAcrossRecords(t *testing.T) {
	vitals := func(id, session, sbp string) string {
		return rec(id, "1", "P-1", "", `"sessionId": "`+session+`", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00",
			"bloodPressure": {"systolic": `+sbp+`, "diastolic": 90}`)
	}
	notDone := `"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "elevated-blood-pressure"}, "scheduledAt": "2026-03-02T09:00:00-05:00"`
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			g := b.open(t, app.Config{})
			step := func(name string, kind mapping.Kind, doc string, want ...string) {
				t.Helper()
				var got []string
				for _, is := range g.answerIssuesRun(t, kind, doc, false) {
					rule, msg, _ := strings.Cut(is, "|")
					if strings.Contains(msg, "186") || strings.Contains(msg, "2026") {
						t.Errorf("%s: a warning quotes a value: %q", name, msg)
					}
					if strings.Contains(msg, "vitals record V-") {
						rule += " " + msg[strings.Index(msg, "vitals record V-")+len("vitals record "):][:3]
					}
					got = append(got, rule)
				}
				if strings.Join(got, "; ") != strings.Join(want, "; ") {
					t.Errorf("%s: answer issues %q, want %q", name, got, want)
				}
			}
			// The session first, the measurement after it.
			step("session S-1", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody))
			step("critical pre-dose vitals naming S-1", mapping.KindVitals, vitals("V-1", "S-1", "186"),
				"warning session.dosed-despite-critical-vitals /bloodPressure/systolic")
			step("pre-dose vitals not critical naming S-1", mapping.KindVitals, vitals("V-2", "S-1", "150"))
			step("session S-2 not done", mapping.KindInfusion, rec("S-2", "1", "P-1", "", notDone))
			step("critical pre-dose vitals naming S-2 (not done)", mapping.KindVitals, vitals("V-3", "S-2", "186"))
			// The measurement first, the session after it.
			step("critical pre-dose vitals naming S-3 (not stored)", mapping.KindVitals, vitals("V-4", "S-3", "186"))
			step("session S-3 dosed after it", mapping.KindInfusion, rec("S-3", "1", "P-1", "", strings.Replace(infusionBody, "2026-03-02", "2026-03-05", -1)),
				"warning session.dosed-despite-critical-vitals /infusionStart V-4")
			step("critical pre-dose vitals naming S-4 (not stored)", mapping.KindVitals, vitals("V-5", "S-4", "186"))
			step("session S-4 not done", mapping.KindInfusion, rec("S-4", "1", "P-1", "", strings.Replace(notDone, "2026-03-02", "2026-03-08", -1)))
		})
	}
}

// medCountStore counts, in its write transactions, the searches of
// MedicationAdministrations and the matches they return.
type medCountStore struct {
	store.Store
	searches, matches atomic.Int64
}

func (s *medCountStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Write(ctx, func(tx store.Tx) error { return fn(&medCountTx{Tx: tx, s: s}) })
}

type medCountTx struct {
	store.Tx
	s *medCountStore
}

func (t *medCountTx) Search(q *search.Query) (*store.Page, error) {
	page, err := t.Tx.Search(q)
	if q.Type == "MedicationAdministration" && err == nil {
		t.s.searches.Add(1)
		t.s.matches.Add(int64(len(page.Matches)))
	}
	return page, err
}

// TestStoredSessionsReadBounded: the rules across records read what they
// need of the stored sessions and no more. A session's spacing reads the
// patient's administrations near its own infusion (an overlapping long
// infusion, a session starting 13 hours before), not the patient's older
// sessions; a pre-dose measurement naming a stored session reads the
// session's administration once (its infusion's end and its dose).
func TestStoredSessionsReadBounded(t *testing.T) {
	var st *medCountStore
	g := newGatewayOver(t, app.Config{}, func(inner store.Store) store.Store {
		st = &medCountStore{Store: inner}
		return st
	})
	for d := 1; d <= 6; d++ {
		day := fmt.Sprintf("2025-01-%02dT", d)
		if err := g.ingest("", mapping.KindInfusion, rec(fmt.Sprintf("S-old-%d", d), "1", "P-1", "",
			infusionAt(day+"09:00:00-05:00", day+"09:40:00-05:00"))); err != nil {
			t.Fatal(err)
		}
	}
	for _, doc := range []string{
		rec("S-near", "1", "P-1", "", infusionAt("2026-03-01T20:00:00-05:00", "2026-03-01T20:40:00-05:00")),
		rec("S-long", "1", "P-1", "", infusionAt("2026-03-01T09:30:00-05:00", "2026-03-02T09:10:00-05:00")),
	} {
		if err := g.ingest("", mapping.KindInfusion, doc); err != nil {
			t.Fatal(err)
		}
	}
	st.searches.Store(0)
	st.matches.Store(0)
	var got []string
	for _, is := range g.answerIssuesRun(t, mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody), false) {
		rule, msg, _ := strings.Cut(is, "|")
		for _, id := range []string{"S-near", "S-long", "S-old"} {
			if strings.Contains(msg, "session "+id) {
				rule += " " + id
			}
		}
		got = append(got, rule)
	}
	if want := "warning session.overlap /infusionStart S-long; warning session.interval-short /infusionStart S-near"; strings.Join(got, "; ") != want {
		t.Errorf("answer issues %q, want %q", got, want)
	}
	if n := st.matches.Load(); n != 2 {
		t.Errorf("the spacing read %d stored administrations, want the 2 near the session (not the 6 older ones)", n)
	}
	st.searches.Store(0)
	vitals := rec("V-1", "1", "P-1", "", `"sessionId": "S-1", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00",
		"bloodPressure": {"systolic": 186, "diastolic": 90}`)
	if got := g.answerIssues(t, mapping.KindVitals, vitals); strings.Join(got, "; ") != "warning session.dosed-despite-critical-vitals /bloodPressure/systolic" {
		t.Errorf("critical pre-dose vitals naming S-1: %q", got)
	}
	if n := st.searches.Load(); n != 1 {
		t.Errorf("a measurement naming a stored session searched its administration %d times, want 1", n)
	}
}

// TestNoPhantomWithdrawals: a corrected or withdrawn record that never
// raised a DetectedIssue or a safety Flag makes none (the mapping's
// entered-in-error or inactive entry only withdraws a stored one), at the
// gateway and in the Bundle for the EHR (probe p31 F1: every corrected
// session with pre-dose vitals left a DetectedIssue entered-in-error).
func TestNoPhantomWithdrawals(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true },
		AcceptsTenant: func(x string) bool { return x != search.AllTenants }}}})
	g.answerIssues(t, mapping.KindSession, criticalSession("S-9", "1", "130"))
	g.answerIssues(t, mapping.KindSession, criticalSession("S-9", "2", "132"))
	withdrawn := strings.Replace(criticalSession("S-9", "3", "132"), `"version": "3"`, `"version": "3", "status": "entered-in-error"`, 1)
	g.answerIssues(t, mapping.KindSession, withdrawn)
	if n := g.count(t, "", "DetectedIssue", ""); n != 0 {
		t.Errorf("%d DetectedIssues stored for a session never dosed after a critical value, want none", n)
	}
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "S-9") {
		if bytes.Contains(it.Payload, []byte(`"resourceType":"DetectedIssue"`)) {
			t.Errorf("delivery %d carries a DetectedIssue", it.ID)
		}
	}
	// A PHQ-9 whose item 9 was never positive: its new version and its
	// withdrawal make no Flag.
	phq := func(version, status string) string {
		return rec("A-9", version, "P-1", "", `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", `+
			`"items": [{"number": 1, "score": 1}, {"number": 2, "score": 1}, {"number": 3, "score": 0}, {"number": 4, "score": 0}, `+
			`{"number": 5, "score": 0}, {"number": 6, "score": 0}, {"number": 7, "score": 0}, {"number": 8, "score": 0}, {"number": 9, "score": 0}]`)
	}
	g.answerIssues(t, mapping.KindAssessment, phq("1", ""))
	g.answerIssues(t, mapping.KindAssessment, phq("2", ""))
	g.answerIssues(t, mapping.KindAssessment, strings.Replace(phq("3", ""), `"version": "3"`, `"version": "3", "status": "entered-in-error"`, 1))
	if n := g.count(t, "", "Flag", ""); n != 0 {
		t.Errorf("%d Flags stored for a PHQ-9 never positive, want none", n)
	}
	// One that was: its correction still withdraws the Flag (inactive).
	positive := strings.Replace(phq("1", ""), `{"number": 9, "score": 0}`, `{"number": 9, "score": 1}`, 1)
	positive = strings.Replace(positive, `"recordId": "A-9"`, `"recordId": "A-10"`, 1)
	g.answerIssues(t, mapping.KindAssessment, positive)
	g.answerIssues(t, mapping.KindAssessment, strings.Replace(phq("2", ""), `"recordId": "A-9"`, `"recordId": "A-10"`, 1))
	r, err := g.a.Store.Read(context.Background(), "Flag", g.one(t, "Flag", ""))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(r.Body, []byte(`"status":"inactive"`)) {
		t.Errorf("the positive PHQ-9's Flag after its correction: %s, want inactive", r.Body)
	}
}

// TestCorrectionRetiresSignal: a new version that removes the cause of a
// safety signal retires the stored signal, and one of a record that never
// raised it writes none (probe p45 F1): a suicidal-ideation adverse event
// corrected to another event makes its Flag inactive, and a session whose
// critical pre-dose record is relabelled makes its DetectedIssue
// entered-in-error. A session version that leaves the critical record out
// leaves it as stored (docs/records.md: a record left out stays as
// stored), so its DetectedIssue stays final, as it does for a correction
// while a critical pre-dose value sent on its own is stored (the rule the
// vitals path, keepRetiredIssue, applies).
func TestCorrectionRetiresSignal(t *testing.T) {
	ae := func(id, version, event string) string {
		return rec(id, version, "P-1", "", `"event": "`+event+`", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "moderate", "serious": false`)
	}
	relabelled := func(recordID, version, sbp string) string {
		return strings.Replace(criticalSession(recordID, version, sbp), `"timepoint": "pre-dose"`, `"timepoint": "other", "timepointText": "at check-in"`, 1)
	}
	leftOut := func(recordID, version, sbp string) string {
		return rec(recordID, version, "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}}`)
	}
	tests := []struct {
		name, typ   string
		kind        mapping.Kind
		first, next string
		want        string // the stored resource's status; "" none stored
	}{
		{"suicidal ideation corrected to anxiety", "Flag", mapping.KindAdverseEvent, ae("AE-1", "1", "suicidal-ideation"), ae("AE-1", "2", "anxiety"), "inactive"},
		{"anxiety corrected to nausea", "Flag", mapping.KindAdverseEvent, ae("AE-2", "1", "anxiety"), ae("AE-2", "2", "nausea"), ""},
		{"critical pre-dose record relabelled", "DetectedIssue", mapping.KindSession, criticalSession("S-1", "1", "186"), relabelled("S-1", "2", "186"), "entered-in-error"},
		{"critical pre-dose record left out", "DetectedIssue", mapping.KindSession, criticalSession("S-2", "1", "186"), leftOut("S-2", "2", "186"), "final"},
		{"corrected, a critical value sent on its own stored", "DetectedIssue", mapping.KindSession, criticalSession("S-4", "1", "186"), criticalSession("S-4", "2", "128"), "final"},
		{"routine pre-dose record relabelled", "DetectedIssue", mapping.KindSession, criticalSession("S-3", "1", "130"), relabelled("S-3", "2", "130"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true },
				AcceptsTenant: func(x string) bool { return x != search.AllTenants }}}})
			g.answerIssues(t, tc.kind, tc.first)
			if strings.HasPrefix(tc.name, "corrected, a critical value sent on its own") {
				g.answerIssues(t, mapping.KindVitals, rec("V-9", "1", "P-1", "", `"sessionId": "S-4", "timepoint": "pre-dose", `+
					`"measuredAt": "2026-03-02T08:52:00-05:00", "heartRate": 135`))
			}
			g.answerIssues(t, tc.kind, tc.next)
			if tc.want == "" {
				if n := g.count(t, "", tc.typ, ""); n != 0 {
					t.Errorf("%d %ss stored for a record that never raised one, want none", n, tc.typ)
				}
				return
			}
			r, err := g.a.Store.Read(context.Background(), tc.typ, g.one(t, tc.typ, ""))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Status string
				Period struct{ End string }
			}
			if err := json.Unmarshal(r.Body, &doc); err != nil {
				t.Fatal(err)
			}
			version := int64(2) // retired by the correction
			if tc.want == "final" {
				version = 1 // as stored
			}
			if doc.Status != tc.want || r.Version != version {
				t.Errorf("%s after the correction: status %s, version %d; want %s, version %d", tc.typ, doc.Status, r.Version, tc.want, version)
			}
			if tc.typ == "Flag" && doc.Period.End == "" {
				t.Errorf("inactive Flag without period.end: %s", r.Body)
			}
		})
	}
}

// TestStandaloneVitalsRetireIssue: a pre-dose vitals record corrected on
// its own (sessionId, a new version) so that the session's pre-dose values
// are no longer critical makes the session's stored DetectedIssue
// entered-in-error, in the same write, and in the Bundle for the EHR
// (probe p45 F1 c); it stays final while another stored pre-dose value of
// the session is critical, and a session that never raised one gets none.
func TestStandaloneVitalsRetireIssue(t *testing.T) {
	vitals := func(recordID, version, session, timepoint, measurements string) string {
		return rec(recordID, version, "P-1", "", `"sessionId": "`+session+`", "timepoint": "`+timepoint+`", "measuredAt": "2026-03-02T08:50:00-05:00", `+measurements)
	}
	const normal, critical = `"bloodPressure": {"systolic": 128, "diastolic": 80}`, `"bloodPressure": {"systolic": 186, "diastolic": 90}`
	twoCritical := rec("S-5", "1", "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}},
		"vitals": [{"recordId": "V-S-5", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", `+critical+`},
		{"recordId": "V-S-5b", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:52:00-05:00", "heartRate": 135}]`)
	withdrawn := func(doc string) string {
		return strings.Replace(doc, `"version": "2"`, `"version": "2", "status": "entered-in-error"`, 1)
	}
	tests := []struct {
		name, session, correction string
		want                      string // the DetectedIssue's status; "" none stored
		delivered                 bool   // the correction's Bundle carries it
	}{
		{"corrected below the critical band", criticalSession("S-1", "1", "186"), vitals("V-S-1", "2", "S-1", "pre-dose", normal), "entered-in-error", true},
		{"relabelled", criticalSession("S-2", "1", "186"), vitals("V-S-2", "2", "S-2", "other", `"timepointText": "at check-in", `+critical), "entered-in-error", true},
		{"withdrawn", criticalSession("S-3", "1", "186"), withdrawn(vitals("V-S-3", "2", "S-3", "pre-dose", critical)), "entered-in-error", true},
		{"still critical", criticalSession("S-4", "1", "186"), vitals("V-S-4", "2", "S-4", "pre-dose", `"bloodPressure": {"systolic": 190, "diastolic": 90}`), "final", false},
		{"another pre-dose value still critical", twoCritical, vitals("V-S-5", "2", "S-5", "pre-dose", normal), "final", false},
		{"never raised", criticalSession("S-6", "1", "130"), vitals("V-S-6", "2", "S-6", "pre-dose", normal), "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true },
				AcceptsTenant: func(x string) bool { return x != search.AllTenants }}}})
			g.answerIssues(t, mapping.KindSession, tc.session)
			g.answerIssues(t, mapping.KindVitals, tc.correction)
			var corr struct{ Source struct{ RecordID string } }
			if err := json.Unmarshal([]byte(tc.correction), &corr); err != nil {
				t.Fatal(err)
			}
			items := g.deliveries(t, "", "serenity-clinic-emr", corr.Source.RecordID)
			if len(items) != 1 {
				t.Fatalf("%d deliveries of the correction, want 1", len(items))
			}
			if got := bytes.Contains(items[0].Payload, []byte(`"resourceType":"DetectedIssue"`)); got != tc.delivered {
				t.Errorf("the correction's Bundle carries a DetectedIssue: %v, want %v", got, tc.delivered)
			}
			if tc.want == "" {
				if n := g.count(t, "", "DetectedIssue", ""); n != 0 {
					t.Errorf("%d DetectedIssues stored for a session that never raised one, want none", n)
				}
				return
			}
			r, err := g.a.Store.Read(context.Background(), "DetectedIssue", g.one(t, "DetectedIssue", ""))
			if err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Status     string
				Implicated []struct{ Reference string }
			}
			if err := json.Unmarshal(r.Body, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Status != tc.want {
				t.Errorf("DetectedIssue after the correction: %s, want %s", doc.Status, tc.want)
			}
			if tc.delivered && (r.Version != 2 || len(doc.Implicated) == 0) {
				t.Errorf("DetectedIssue version %d, implicated %v: want version 2 implicating the administration", r.Version, doc.Implicated)
			}
		})
	}
}

// TestStandaloneEventSuspectWarning: an adverse event sent on its own
// without causality names its session's drug as suspected cause (its
// mapping does not know the session); when the stored session says the
// drug cannot have caused it (not done, or the infusion began after the
// onset) the answer warns the sender, at /sessionId, and how to chart it
// without a suspect (probe p45 F2: ae-1004). Nothing is refused.
func TestStandaloneEventSuspectWarning(t *testing.T) {
	notDone := `"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "elevated-blood-pressure"},
		"scheduledAt": "2026-03-02T09:00:00-05:00"`
	const warn = "warning adverse-event.suspect-not-dosed /sessionId"
	tests := []struct {
		name, session, event, want string
	}{
		{"onset before the infusion", infusionBody, aeBody("S-1", "2026-03-02T08:45:00-05:00"), warn},
		{"onset a second before, in another offset", infusionBody, aeBody("S-1", "2026-03-02T13:59:59Z"), warn},
		{"session not done", notDone, aeBody("S-1", "2026-03-02T09:30:00-05:00"), warn},
		{"onset during the infusion", infusionBody, aeBody("S-1", "2026-03-02T09:10:00-05:00"), ""},
		{"onset at the infusion start", infusionBody, aeBody("S-1", "2026-03-02T14:00:00Z"), ""},
		{"with causality, during", infusionBody, aeBody("S-1", "2026-03-02T09:10:00-05:00") + `, "causality": "possible"`, ""},
		{"session not stored", infusionBody, aeBody("S-9", "2026-03-02T08:45:00-05:00"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{})
			if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", tc.session)); err != nil {
				t.Fatal(err)
			}
			got := g.answerIssuesRun(t, mapping.KindAdverseEvent, rec("AE-1", "1", "P-1", "", tc.event), false)
			var issues []string
			for _, is := range got {
				msg := is[strings.IndexByte(is, '|')+1:]
				if strings.Contains(msg, "2026") || strings.Contains(msg, "S-1") {
					t.Errorf("the warning quotes a value: %q", msg)
				}
				// The event nested in the session document is the same
				// AdverseEvent (PUT by its id): a withdrawal first would
				// deliver a DELETE and a NULLIFY Provenance for nothing.
				if strings.Contains(msg, "withdraw") {
					t.Errorf("the warning advises a withdrawal: %q", msg)
				}
				issues = append(issues, is[:strings.IndexByte(is, '|')])
			}
			if s := strings.Join(issues, "; "); s != tc.want {
				t.Errorf("answer issues %q, want %q", s, tc.want)
			}
		})
	}
}

// TestEventNamesWithdrawnSession: an adverse event sent on its own naming
// a withdrawn session (entered-in-error: charted as never given) is
// refused with causality (session.withdrawn at /causality), and warned
// without it (adverse-event.suspect-not-dosed: its mapping names the
// withdrawn drug as suspect) (a safety review: "probably caused" by the
// drug of a session that never happened, accepted without a word).
func TestEventNamesWithdrawnSession(t *testing.T) {
	g := newGateway(t, app.Config{})
	if err := g.ingest("", mapping.KindInfusion, rec("S-1", "1", "P-1", "", infusionBody)); err != nil {
		t.Fatal(err)
	}
	withdrawn := strings.Replace(rec("S-1", "2", "P-1", "", infusionBody), `"version": "2"}`, `"version": "2", "status": "entered-in-error"}`, 1)
	if err := g.ingest("", mapping.KindInfusion, withdrawn); err != nil {
		t.Fatal(err)
	}
	during := aeBody("S-1", "2026-03-02T09:10:00-05:00")
	err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-1", "", during+`, "causality": "probably-likely"`))
	wantIssues(t, err, outcome.Unprocessable, "session.withdrawn", "/causality")
	got := g.answerIssuesRun(t, mapping.KindAdverseEvent, rec("AE-2", "1", "P-1", "", during), false)
	if len(got) != 1 || !strings.HasPrefix(got[0], "warning adverse-event.suspect-not-dosed /sessionId|") || !strings.Contains(got[0], "withdrawn") {
		t.Errorf("answer issues %q, want the suspect warning saying the session was withdrawn", got)
	}
}
