package ingest_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// vitalsAt is a vitals record version with its source.lastUpdated and
// measuredAt.
func vitalsAt(recordID, version, lastUpdated, measuredAt string) string {
	doc := rec(recordID, version, "P-1", "", `"timepoint": "pre-dose", "measuredAt": "`+measuredAt+`", "heartRate": 72`)
	return strings.Replace(doc, `"version": "`+version+`"`, `"version": "`+version+`", "lastUpdated": "`+lastUpdated+`"`, 1)
}

// TestLastUpdatedFuture: a source.lastUpdated more than
// ingest.LastUpdatedAhead ahead of the gateway's clock (a local time sent
// with Z: 13 hours in Auckland) is refused, stored or in a dry run, with
// how far ahead it is and never the value (finding p28 F1: it was stored,
// and then every correct later version was record-version-stale).
func TestLastUpdatedFuture(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 35, 0, 0, time.UTC)
	g := newGateway(t, app.Config{Now: func() time.Time { return now }})
	tests := []struct {
		name, lastUpdated string
		ahead             string // in the message; "" stored
	}{
		{"13 hours ahead: a local time sent with Z", "2026-12-06T14:35:00Z", "13 hours"},
		{"a year ahead: a typo", "2027-12-06T01:35:00Z", "365 days"},
		{"year 9999: beyond a Duration", "9999-12-06T01:35:00Z", "2912078 days"},
		{"6 minutes ahead", "2026-12-06T01:41:00Z", "6 minutes"},
		{"the wrong offset: 14:35 at -00:00 for +13:00", "2026-12-06T14:35:00-00:00", "13 hours"},
		{"5 minutes ahead: clocks differ", "2026-12-06T01:40:00Z", ""},
		{"now, in Auckland", "2026-12-06T14:35:00+13:00", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := vitalsAt("V-FUT-"+string(rune('a'+i)), "1", tt.lastUpdated, "2026-12-06T01:20:00Z")
			for _, dry := range []bool{true, false} {
				sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
				_, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindVitals, []byte(doc), dry, engine.Answer{})
				if tt.ahead == "" {
					if err != nil {
						t.Errorf("dryRun %v: %v", dry, err)
					}
					continue
				}
				wantIssues(t, err, outcome.Unprocessable, ingest.RuleLastUpdatedFuture, "/source/lastUpdated")
				_, issues := outcome.From(err)
				if msg := issues[0].Message; !strings.Contains(msg, tt.ahead) || !strings.Contains(msg, "offset") {
					t.Errorf("dryRun %v: message %q; want how far ahead (%s) and the likely cause", dry, msg, tt.ahead)
				}
			}
		})
	}
}

// TestClinicalTimeFuture: a clinical time (an assessment's or vitals'
// effective time, a session's start and end, an adverse event's onset,
// also of a session's nested records) more than ingest.LastUpdatedAhead
// ahead of the gateway's clock is refused as source.lastUpdated is, with
// or without a source.lastUpdated, stored or in a dry run: one issue per
// time at its pointer, saying how far ahead and the likely cause, never
// the value. A session not done's scheduled time may lie ahead (cancelled
// in advance), and a withdrawal is not refused for the times of what it
// withdraws (one stored before this check, whose time was wrong).
func TestClinicalTimeFuture(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 35, 0, 0, time.UTC)
	g := newGateway(t, app.Config{Now: func() time.Time { return now }})
	const later = "2026-12-06T14:35:00Z" // 13 hours ahead: a local time in Auckland sent with Z
	session := rec("S-FUT", "1", "P-1", "", `"infusion": {"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, `+
		`"bodyWeightKg": 80, "totalDoseMg": 40, "infusionStart": "`+later+`", "infusionEnd": "2026-12-06T15:15:00Z"}, `+
		`"vitals": [{"recordId": "V-S-FUT", "timepoint": "pre-dose", "measuredAt": "2026-12-06T01:20:00Z", "heartRate": 72}, `+
		`{"recordId": "V-S-FUT-2", "timepoint": "pre-dose", "measuredAt": "`+later+`", "heartRate": 72}]`)
	tests := []struct {
		name     string
		kind     mapping.Kind
		doc      string
		pointers []string // none: stored
		ahead    string
	}{
		{"vitals 13 hours ahead, no lastUpdated", mapping.KindVitals,
			rec("V-CF-1", "1", "P-1", "", `"timepoint": "pre-dose", "measuredAt": "`+later+`", "heartRate": 72`), []string{"/measuredAt"}, "13 hours"},
		{"vitals 8 minutes ahead of a lastUpdated of now", mapping.KindVitals,
			vitalsAt("V-CF-2", "1", "2026-12-06T01:35:00Z", "2026-12-06T01:43:00Z"), []string{"/measuredAt"}, "8 minutes"},
		{"an assessment a day ahead", mapping.KindAssessment,
			rec("A-CF-1", "1", "P-1", "", `"instrument": "PHQ-9", "takenAt": "2026-12-07T01:35:00Z", "total": 6`), []string{"/takenAt"}, "24 hours"},
		{"an adverse event's onset ahead", mapping.KindAdverseEvent,
			rec("AE-CF-1", "1", "P-1", "", aeBody("", later)[len(`"sessionId": "", `):]), []string{"/onsetAt"}, "13 hours"},
		{"a session's infusion and its nested vitals ahead", mapping.KindSession,
			session, []string{"/infusion/infusionStart", "/infusion/infusionEnd", "/vitals/1/measuredAt"}, "13 hours"},
		{"5 minutes ahead: clocks differ", mapping.KindVitals,
			rec("V-CF-3", "1", "P-1", "", `"timepoint": "pre-dose", "measuredAt": "2026-12-06T01:40:00Z", "heartRate": 72`), nil, ""},
		{"a withdrawal of a record sent with a time ahead", mapping.KindVitals,
			strings.Replace(rec("V-CF-4", "2", "P-1", "", `"timepoint": "pre-dose", "measuredAt": "`+later+`", "heartRate": 72`),
				`"version": "`, `"status": "entered-in-error", "version": "`, 1), nil, ""},
		{"a session not done scheduled ahead", mapping.KindInfusion,
			rec("I-CF-1", "1", "P-1", "", `"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "patient-no-show"}, `+
				`"scheduledAt": "`+later+`"`), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dry := range []bool{true, false} {
				sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
				_, err := g.a.Ingest.Ingest(context.Background(), sc, tt.kind, []byte(tt.doc), dry, engine.Answer{})
				if tt.pointers == nil {
					if err != nil {
						t.Errorf("dryRun %v: %v", dry, err)
					}
					continue
				}
				wantIssues(t, err, outcome.Unprocessable, ingest.RuleTimeFuture, tt.pointers...)
				_, issues := outcome.From(err)
				for _, is := range issues {
					if !strings.Contains(is.Message, tt.ahead) || !strings.Contains(is.Message, "offset") || is.Expression == "" {
						t.Errorf("dryRun %v: %s %q; want its FHIRPath, how far ahead (%s) and the likely cause", dry, is.Expression, is.Message, tt.ahead)
					}
				}
			}
		})
	}
}

// TestVersionStaleFuture: against a stored version whose
// source.lastUpdated is ahead of the gateway's clock (stored before the
// gateway refused such times), record-version-stale says so and what to
// do, rather than asking for a later source.lastUpdated, which the clinic
// cannot truthfully send (finding p28 F1).
func TestVersionStaleFuture(t *testing.T) {
	// The clock is read by the app's background work too (race-free).
	var now atomic.Pointer[time.Time]
	set := func(t time.Time) { now.Store(&t) }
	set(time.Date(2026, 12, 6, 14, 35, 0, 0, time.UTC))
	g := newGateway(t, app.Config{Now: func() time.Time { return *now.Load() }})
	// Stored while the clock read 14:35, as a build without the check
	// stored it at 01:35.
	if err := g.ingest("", mapping.KindVitals, vitalsAt("V-FUT-S", "1", "2026-12-06T14:30:00Z", "2026-12-06T14:20:00Z")); err != nil {
		t.Fatal(err)
	}
	set(time.Date(2026, 12, 6, 1, 35, 0, 0, time.UTC))
	for _, tt := range []struct{ name, doc string }{
		{"a correction", vitalsAt("V-FUT-S", "2", "2026-12-06T01:35:00Z", "2026-12-06T01:20:00Z")},
		{"a withdrawal", strings.Replace(vitalsAt("V-FUT-S", "3", "2026-12-06T01:36:00Z", "2026-12-06T01:20:00Z"),
			`"version": "`, `"status": "entered-in-error", "version": "`, 1)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := g.ingest("", mapping.KindVitals, tt.doc)
			wantIssues(t, err, outcome.Conflict, ingest.RuleVersionStale, "/source/lastUpdated")
			_, issues := outcome.From(err)
			msg := issues[0].Message
			if !strings.Contains(msg, "12 hours 55 minutes ahead of the gateway's clock") || strings.Contains(msg, "later source.lastUpdated") {
				t.Errorf("message %q; want it to say the stored version is 12 hours 55 minutes ahead, and not to ask for a later time", msg)
			}
		})
	}
}

// TestCanonicallyEquivalentContent: a record version re-sent with its
// names decomposed (NFD: an engine on macOS, Java's Normalizer) is the
// same version again, and a new version with the names so written is the
// same patient's demographics: canonically equivalent text is one text
// (finding p28 F5).
func TestCanonicallyEquivalentContent(t *testing.T) {
	g := newGateway(t, app.Config{})
	nfc := `"name": {"family": "Te Wh\u0101riki", "given": ["M\u0101ui"]}`
	nfd := `"name": {"family": "Te Wha\u0304riki", "given": ["Ma\u0304ui"]}`
	doc := func(version, name string) string {
		d := rec("A-NFC", version, "P-NFC", "", phq9Body)
		return strings.Replace(d, `"patient": {"id": "P-NFC"`, `"patient": {"id": "P-NFC", `+name, 1)
	}
	send := func(body string) (string, error) {
		sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
		out, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAssessment, []byte(body), false, engine.Answer{})
		return string(out), err
	}
	first, err := send(doc("1", nfc))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := send(doc("1", nfd)); err != nil || again != first {
		t.Errorf("version 1 again in NFD = %v; want the first answer again", err)
	}
	out, err := send(doc("2", nfd))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, ingest.RuleDemographicsNotApplied) {
		t.Errorf("version 2 in NFD warns %s: the name is the same", ingest.RuleDemographicsNotApplied)
	}
}
