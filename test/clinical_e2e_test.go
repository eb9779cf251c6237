package test

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Clinical truth across records, through the binary: records sent in every
// order, the identity of patients under concurrency, and bad input answered
// with a rule id and a pointer.

const sessionSystem = "https://ketamine-gateway.org/fhir/sid/e2e-clinic/infusion-session"

// native builds a native record of the e2e-clinic system: the envelope and
// the kind's own members.
func native(recordID, version, patientID, mrn, body string) string {
	m := ""
	if mrn != "" {
		m = `, "mrn": {"value": "` + mrn + `", "system": "https://hospital.example/mrn", "assigner": "Example Hospital"}`
	}
	return `{"source": {"system": "e2e-clinic", "recordId": "` + recordID + `", "version": "` + version +
		`"}, "patient": {"id": "` + patientID + `"` + m + `}, ` + body + `}`
}

const (
	// e2eInfusion runs 09:00-09:40 and is monitored until 11:00.
	e2eInfusion = `"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"`
	e2eAssessment = `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "total": 6`
)

func e2eAdverseEvent(session, onset string) string {
	s := ""
	if session != "" {
		s = `"sessionId": "` + session + `", `
	}
	return s + `"event": "hypertension", "onsetAt": "` + onset + `", "severity": "severe", "ctcaeGrade": 3,
		"serious": false, "outcome": "resolved"`
}

// ingestRecord posts a native record and returns the status and the answer.
func ingestRecord(t *testing.T, base, kind, body string) (int, map[string]any) {
	t.Helper()
	status, _, m := doReq(t, "POST", base+"/ingest/"+kind, body)
	return status, m
}

// issue is one OperationOutcome issue as the tests read it.
type issue struct{ rule, location, message string }

func issues(oo map[string]any) []issue {
	var out []issue
	list, _ := oo["issue"].([]any)
	for _, i := range list {
		m := i.(map[string]any)
		var is issue
		if d, ok := m["details"].(map[string]any); ok {
			is.message, _ = d["text"].(string)
			if c, ok := d["coding"].([]any); ok && len(c) > 0 {
				is.rule, _ = c[0].(map[string]any)["code"].(string)
			}
		}
		if l, ok := m["location"].([]any); ok && len(l) > 0 {
			is.location, _ = l[0].(string)
		}
		out = append(out, is)
	}
	return out
}

// wantRefused checks a refusal: the status and the rule at each location,
// in order, with no value of the record quoted.
func wantRefused(t *testing.T, status int, oo map[string]any, wantStatus int, rule string, record string, locations ...string) {
	t.Helper()
	got := issues(oo)
	if status != wantStatus || len(got) != len(locations) {
		t.Fatalf("answer %d %v; want %d with %d issues %s", status, oo, wantStatus, len(locations), rule)
	}
	for i, is := range got {
		if is.rule != rule || is.location != locations[i] {
			t.Errorf("issue %d: %s at %s; want %s at %s", i, is.rule, is.location, rule, locations[i])
		}
		for _, v := range []string{"P-", "MRN-", "S-", "AE-", "2026-", "e2e-clinic"} {
			if strings.Contains(is.message, v) && strings.Contains(record, v) {
				t.Errorf("issue %d quotes the record (%q): %s", i, v, is.message)
			}
		}
	}
}

// TestRecordOrderE2E: an adverse event sent before, after and without its
// session; each is stored and linked by the session's identifier, and one
// that contradicts its stored session (or a session that would contradict
// a stored adverse event) is refused with nothing stored.
func TestRecordOrderE2E(t *testing.T) {
	g := start(t)
	linked := func(session string) int {
		return countOn(t, g, "AdverseEvent?substance:identifier="+url.QueryEscape(sessionSystem+"|"+session))
	}
	ok := func(kind, body string) {
		t.Helper()
		if status, m := ingestRecord(t, g.base, kind, body); status != 200 {
			t.Fatalf("%s: %d %v", kind, status, m)
		}
	}

	// Before: the adverse event arrives first and is accepted.
	ok("adverse-event", native("AE-1", "1", "P-1", "", e2eAdverseEvent("S-1", "2026-03-02T09:20:00-05:00")))
	ok("infusion", native("S-1", "1", "P-1", "", e2eInfusion))
	if n := linked("S-1"); n != 1 {
		t.Errorf("adverse event sent before its session: %d linked, want 1", n)
	}

	// After: the session is stored, then its adverse event.
	ok("session", native("S-2", "1", "P-2", "", `"infusion": {`+e2eInfusion+`}`))
	ok("adverse-event", native("AE-2", "1", "P-2", "", e2eAdverseEvent("S-2", "2026-03-02T09:30:00-05:00")))
	if n := linked("S-2"); n != 1 {
		t.Errorf("adverse event sent after its session: %d linked, want 1", n)
	}

	// Without a session: accepted, linked to none.
	ok("adverse-event", native("AE-3", "1", "P-3", "", e2eAdverseEvent("", "2026-03-02T09:30:00-05:00")))
	if n := countOn(t, g, "AdverseEvent"); n != 3 {
		t.Errorf("%d adverse events stored, want 3", n)
	}

	// Contradicting a stored session: judged against its drug (causality),
	// 15 hours before its infusion.
	const causality = `, "causality": "possible"`
	before := native("AE-4", "1", "P-2", "", e2eAdverseEvent("S-2", "2026-03-01T18:00:00-05:00")+causality)
	status, oo := ingestRecord(t, g.base, "adverse-event", before)
	wantRefused(t, status, oo, 422, "session.time-window", before, "/onsetAt")
	// A session that would leave a stored adverse event outside its window.
	ok("adverse-event", native("AE-5", "1", "P-5", "", e2eAdverseEvent("S-5", "2026-03-02T08:30:00-05:00")+causality))
	late := native("S-5", "1", "P-5", "", e2eInfusion)
	status, oo = ingestRecord(t, g.base, "infusion", late)
	wantRefused(t, status, oo, 422, "session.time-window", late, "/infusionStart")
	// Another patient's session.
	foreign := native("AE-6", "1", "P-6", "", e2eAdverseEvent("S-2", "2026-03-02T09:30:00-05:00"))
	status, oo = ingestRecord(t, g.base, "adverse-event", foreign)
	wantRefused(t, status, oo, 422, "session.patient-mismatch", foreign, "/sessionId")
	if n := countOn(t, g, "AdverseEvent"); n != 4 {
		t.Errorf("%d adverse events stored after the refusals, want 4", n)
	}
	if n := countOn(t, g, "Procedure?identifier="+url.QueryEscape(sessionSystem+"|S-5")); n != 0 {
		t.Errorf("the refused session was stored")
	}

	// The serious-or-severe adverse event is searchable as such.
	if n := countOn(t, g, "AdverseEvent?severity=severe"); n != 4 {
		t.Errorf("%d severe adverse events found, want 4", n)
	}
}

// TestBadClinicalInputE2E: a given dose above the plan, a stopped session
// without the dose it gave, a contradiction of the stored session and an
// MRN conflict are each a 4xx OperationOutcome naming the rule and the
// pointer, quoting no value, storing nothing.
func TestBadClinicalInputE2E(t *testing.T) {
	g := start(t)
	stopped := `"drug": "ketamine-iv", "status": "stopped-early", "statusReason": {"code": "elevated-blood-pressure"},
		"doseMgPerKg": 0.5, "bodyWeightKg": 92, "totalDoseMg": 46, "infusionStart": "2026-06-02T09:05:00-05:00",
		"infusionEnd": "2026-06-02T09:27:00-05:00"`
	for _, tc := range []struct {
		name, kind, record string
		status             int
		rule, location     string
	}{
		{"stopped without the dose given", "infusion", native("S-11", "1", "P-11", "", stopped),
			422, "infusion.administered-missing", "/administeredDoseMg"},
		{"given dose in a session not done", "infusion", native("S-12", "1", "P-12", "",
			`"drug": "ketamine-iv", "status": "not-done", "statusReason": {"code": "patient-no-show"},
			"scheduledAt": "2026-06-02T09:00:00-05:00", "administeredDoseMg": 10`),
			422, "infusion.administered-not-applicable", "/administeredDoseMg"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, oo := ingestRecord(t, g.base, tc.kind, tc.record)
			wantRefused(t, status, oo, tc.status, tc.rule, tc.record, tc.location)
		})
	}
	if n := countOn(t, g, "Procedure"); n != 0 {
		t.Errorf("%d Procedures stored, want 0", n)
	}
	// The stopped session with the dose it gave is charted as given.
	if status, m := ingestRecord(t, g.base, "infusion", native("S-13", "1", "P-13", "", stopped+`, "administeredDoseMg": 25`)); status != 200 {
		t.Fatalf("stopped session with its given dose: %d %v", status, m)
	}
	_, _, admin := doReq(t, "GET", g.base+"/fhir/MedicationAdministration?identifier="+url.QueryEscape(sessionSystem+"|S-13-medication"), "")
	dosage := admin["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["dosage"].(map[string]any)
	if dose := dosage["dose"].(map[string]any)["value"].(float64); dose != 25 || dosage["text"] != "Ketamine IV 25 mg over 22 min" {
		t.Errorf("MedicationAdministration.dosage = %v, want 25 mg given over 22 min", dosage)
	}
	if n := countOn(t, g, "MedicationRequest?status=stopped"); n != 1 {
		t.Errorf("%d stopped plans, want the session's MedicationRequest", n)
	}

	// The MRN conflict.
	if status, m := ingestRecord(t, g.base, "assessment", native("A-20", "1", "P-20", "MRN-20", e2eAssessment)); status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	second := native("A-21", "1", "P-21", "MRN-20", e2eAssessment)
	status, oo := ingestRecord(t, g.base, "assessment", second)
	wantRefused(t, status, oo, 409, "patient.identity-conflict", second, "/patient/id", "/patient/mrn/value")
	if n := countOn(t, g, "Patient?identifier="+url.QueryEscape("https://hospital.example/mrn|MRN-20")); n != 1 {
		t.Errorf("%d Patients with the MRN, want 1", n)
	}
}

// TestIdentityConcurrentE2E: two records with the same MRN and different
// clinic ids posted at the same moment: one Patient, one 409. On SQLite,
// and on PostgreSQL with the two records sent to two replicas when
// GATEWAY_TEST_POSTGRES_URL is set.
func TestIdentityConcurrentE2E(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		g := start(t)
		identityRace(t, g, g)
	})
	t.Run("postgres-replicas", func(t *testing.T) {
		gs := startReplicas(t, 2, freshPostgres(t))
		identityRace(t, gs[0], gs[1])
	})
}

// identityRace posts pairs of records with one MRN and two clinic ids, one
// to each gateway, at the same moment, round after round.
func identityRace(t *testing.T, a, b *gateway) {
	t.Helper()
	for round := range 5 {
		mrn := fmt.Sprintf("MRN-RACE-%d", round)
		var wg sync.WaitGroup
		statuses, errs := make([]int, 2), make([]error, 2)
		for i, g := range []*gateway{a, b} {
			wg.Add(1)
			go func() { // tryReq, not ingestRecord: t.Fatal belongs to the test's goroutine
				defer wg.Done()
				statuses[i], _, _, errs[i] = tryReq("POST", g.base+"/ingest/assessment",
					native(fmt.Sprintf("A-%d-%d", round, i), "1", fmt.Sprintf("P-%d-%d", round, i), mrn, e2eAssessment))
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if !(statuses[0] == 200 && statuses[1] == 409 || statuses[0] == 409 && statuses[1] == 200) {
			t.Errorf("round %d: statuses %v, want one 200 and one 409", round, statuses)
		}
		if n := countOn(t, a, "Patient?identifier="+url.QueryEscape("https://hospital.example/mrn|"+mrn)); n != 1 {
			t.Errorf("round %d: %d Patients with the MRN, want 1", round, n)
		}
	}
}

// TestSafetyConfigE2E: thresholds from --config reach the mapped output,
// and a nonsensical one stops serve naming it.
func TestSafetyConfigE2E(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, []byte(`{"safety": {"vitals": {"heartRate": {"high": 90, "criticalHigh": 100}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	g := start(t, "--config", cfg)
	vitals := native("V-1", "1", "P-1", "", `"timepoint": "other", "timepointText": "check",
		"measuredAt": "2026-03-02T10:00:00-05:00", "heartRate": 100, "spo2": 89`)
	if status, m := ingestRecord(t, g.base, "vitals", vitals); status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	for code, want := range map[string]string{"8867-4": "HH", "2708-6": "LL"} {
		_, _, b := doReq(t, "GET", g.base+"/fhir/Observation?code="+code, "")
		got := b["entry"].([]any)[0].(map[string]any)["resource"].(map[string]any)["interpretation"].([]any)[0].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"]
		if got != want {
			t.Errorf("interpretation of %s = %v, want %s", code, got, want)
		}
	}

	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"safety": {"vitals": {"spo2": {"low": 80, "criticalLow": 90}}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := execServe(t, "--config", bad)
	if err == nil || !strings.Contains(out, "safety.vitals.spo2") {
		t.Errorf("serve with a nonsensical threshold: %v %s; want an exit naming it", err, out)
	}
}

// execServe runs serve expecting it to stop at once (a configuration it
// refuses) and returns its output.
func execServe(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "kg.db")}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
