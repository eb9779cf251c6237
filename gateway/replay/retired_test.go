package replay_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestRetiredSignalsUnchanged: records whose versions retired a safety
// signal, or never raised one, replay unchanged under the same mapping
// (probe p45 F1): an adverse event corrected from suicidal ideation (its
// Flag inactive), one withdrawn that never raised a Flag (the mapping's
// retiring entry, which the ingest dropped, is not the replay's to add),
// a pre-dose vitals record corrected on its own (the session's
// DetectedIssue entered-in-error, written with it), a later version of a
// corrected event (its inactive Flag left as stored) and a session version
// that leaves its critical pre-dose record out (its DetectedIssue left
// final, as stored).
func TestRetiredSignalsUnchanged(t *testing.T) {
	rec := func(id, version, lastUpdated, status, body string) []byte {
		return []byte(`{"source": {"system": "serenity-clinic-emr", "recordId": "` + id + `", "version": "` + version +
			`", "lastUpdated": "` + lastUpdated + `"` + status + `}, "patient": {"id": "P-1"}, ` + body + `}`)
	}
	ae := func(event string) string {
		return `"event": "` + event + `", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "moderate", "serious": false`
	}
	const withdrawn = `, "status": "entered-in-error"`
	session := `"infusion": {"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"}, "vitals": [{"recordId": "V-1", "timepoint": "pre-dose",
		"measuredAt": "2026-03-02T08:50:00-05:00", "bloodPressure": {"systolic": 186, "diastolic": 90}}]`
	f := newFixture(t)
	f.ingest(t, "", "adverse-event", rec("AE-1", "1", "2026-03-02T18:00:00Z", "", ae("suicidal-ideation")))
	f.ingest(t, "", "adverse-event", rec("AE-1", "2", "2026-03-03T12:00:00Z", "", ae("anxiety")))
	f.ingest(t, "", "adverse-event", rec("AE-1", "3", "2026-03-04T12:00:00Z", "", ae("nausea"))) // leaves the inactive Flag
	f.ingest(t, "", "adverse-event", rec("AE-2", "1", "2026-03-02T18:00:00Z", "", ae("nausea")))
	f.ingest(t, "", "adverse-event", rec("AE-2", "2", "2026-03-03T12:00:00Z", withdrawn, ae("nausea")))
	f.ingest(t, "", "session", rec("S-1", "1", "2026-03-02T18:00:00Z", "", session))
	f.ingest(t, "", "vitals", rec("V-1", "2", "2026-03-03T12:00:00Z", "", `"sessionId": "S-1", "timepoint": "pre-dose",
		"measuredAt": "2026-03-02T08:50:00-05:00", "bloodPressure": {"systolic": 128, "diastolic": 80}`))
	// A session version that leaves its critical pre-dose record out
	// leaves its DetectedIssue final, as stored.
	f.ingest(t, "", "session", rec("S-2", "1", "2026-03-02T18:00:00Z", "", strings.ReplaceAll(session, "V-1", "V-2")))
	f.ingest(t, "", "session", rec("S-2", "2", "2026-03-03T12:00:00Z", "", session[:strings.Index(session, `, "vitals"`)]))
	statuses := map[string]int{}
	for _, v := range f.versions(t, "", "DetectedIssue") {
		for _, st := range []string{"final", "entered-in-error"} {
			if strings.Contains(string(v.Body), `"status":"`+st+`"`) {
				statuses[st]++
			}
		}
	}
	if statuses["final"] != 1 || statuses["entered-in-error"] != 1 {
		t.Fatalf("DetectedIssues stored by status %v, want S-1's retired and S-2's final", statuses)
	}
	for _, typ := range []string{"Flag"} {
		vs := f.versions(t, "", typ)
		if len(vs) != 1 {
			t.Fatalf("%d %ss stored, want the one retired", len(vs), typ)
		}
		for _, v := range vs {
			if body := string(v.Body); !strings.Contains(body, `"status":"inactive"`) && !strings.Contains(body, `"status":"entered-in-error"`) {
				t.Fatalf("%s not retired: %s", typ, body)
			}
		}
	}
	_, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	for id, r := range got {
		want := replay.StatusUnchanged
		if id == "AE-2" {
			want = replay.StatusWithdrawn
		}
		if r.Status != want {
			t.Errorf("%s is %s %+v, want %s", id, r.Status, r.Resources, want)
		}
	}
	if len(got) == 0 {
		t.Fatal("nothing replayed")
	}
}

// TestStaleNestedSignalKept: a replay that would retire a session's
// DetectedIssue (a threshold raised) while the pre-dose record it stands
// on was changed since by its own later version, sent on its own, leaves
// the issue as stored and reports it: the session's copy of that record
// is stale (a mapping developer's review: the apply retired an issue whose
// stored pressure was still critical under the new threshold).
func TestStaleNestedSignalKept(t *testing.T) {
	rec := func(id, version, lastUpdated, body string) []byte {
		return []byte(`{"source": {"system": "serenity-clinic-emr", "recordId": "` + id + `", "version": "` + version +
			`", "lastUpdated": "` + lastUpdated + `"}, "patient": {"id": "P-1"}, ` + body + `}`)
	}
	const session = `"infusion": {"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"}, "vitals": [{"recordId": "V-Z", "timepoint": "pre-dose",
		"measuredAt": "2026-03-02T08:50:00-05:00", "bloodPressure": {"systolic": 185, "diastolic": 90}}]`
	f := newFixture(t)
	f.ingest(t, "", "session", rec("S-Z", "1", "2026-03-02T18:00:00Z", session))
	f.ingest(t, "", "vitals", rec("V-Z", "2", "2026-03-03T12:00:00Z", `"sessionId": "S-Z", "timepoint": "pre-dose",
		"measuredAt": "2026-03-02T08:50:00-05:00", "bloodPressure": {"systolic": 190, "diastolic": 90}`))
	// A mapping (or threshold) change that retires the session's issue.
	retire := alter(func(typ string, doc map[string]any) {
		if typ == "DetectedIssue" {
			doc["status"] = "entered-in-error"
		}
	})
	_, got := run(t, f.service(retire), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	r := got["S-Z"]
	skipped := false
	for _, d := range r.Resources {
		if strings.HasPrefix(d.Resource, "DetectedIssue/") {
			skipped = strings.Contains(d.Skipped, "changed since by a later version of its own")
		}
	}
	if !skipped {
		t.Errorf("S-Z: %s %+v, want its DetectedIssue left as stored (stale nested record)", r.Status, r.Resources)
	}
	for _, v := range f.versions(t, "", "DetectedIssue") {
		if !strings.Contains(string(v.Body), `"status":"final"`) {
			t.Errorf("the apply retired the issue: %s", v.Body)
		}
	}
}

// TestStaleEventLeavesIssue: a session's DetectedIssue stands on its
// pre-dose vitals only, so a nested adverse event changed since on its own
// does not freeze it: a replay under lower thresholds raises the issue its
// later version retired and
// a second replay finds nothing left to change (a mapping developer's
// review: the issue was reported diverged on every run, never raised).
func TestStaleEventLeavesIssue(t *testing.T) {
	rec := func(id, version, lastUpdated, body string) []byte {
		return []byte(`{"source": {"system": "serenity-clinic-emr", "recordId": "` + id + `", "version": "` + version +
			`", "lastUpdated": "` + lastUpdated + `"}, "patient": {"id": "P-1"}, ` + body + `}`)
	}
	event := func(severity string) string {
		return `"event": "nausea", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "` + severity + `", "serious": false`
	}
	session := func(heartRate string) string {
		return `"infusion": {"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"}, "vitals": [{"recordId": "V-E", "timepoint": "pre-dose",
		"measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": ` + heartRate + `}],
		"adverseEvents": [{"recordId": "AE-E", ` + event("severe") + `}]`
	}
	f := newFixture(t)
	// Raised by a critical pre-dose heart rate, retired by the version
	// that corrected it.
	f.ingest(t, "", "session", rec("S-E", "1", "2026-03-02T18:00:00Z", session("140")))
	f.ingest(t, "", "session", rec("S-E", "2", "2026-03-02T19:00:00Z", session("80")))
	f.ingest(t, "", "adverse-event", rec("AE-E", "3", "2026-03-03T12:00:00Z", `"sessionId": "S-E", `+event("moderate")))
	for _, v := range f.versions(t, "", "DetectedIssue") {
		if !strings.Contains(string(v.Body), `"status":"entered-in-error"`) {
			t.Fatalf("DetectedIssue not retired before the replay: %s", v.Body)
		}
	}
	// Thresholds under which the stored pre-dose heart rate is critical.
	lower := func(rec mapping.Record, opts mapping.Options) (*mapping.Result, error) {
		s := mapping.DefaultSafety()
		s.HeartRate.High, s.HeartRate.CriticalHigh = 70, 75
		opts.Safety = &s
		return mapping.Map(rec, opts)
	}
	_, got := run(t, f.service(lower), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if r := got["S-E"]; r.Status != replay.StatusChanged || !r.Applied {
		t.Fatalf("S-E: %s (applied %v) %+v, want changed and applied", r.Status, r.Applied, r.Resources)
	}
	issues := f.versions(t, "", "DetectedIssue")
	if len(issues) != 1 {
		t.Fatalf("%d DetectedIssues after the apply, want the one raised", len(issues))
	}
	for _, v := range issues {
		if !strings.Contains(string(v.Body), `"status":"final"`) {
			t.Errorf("DetectedIssue not raised: %s", v.Body)
		}
	}
	sum, got := run(t, f.service(lower), replay.Options{Tenant: search.AllTenants})
	if r := got["S-E"]; r.Status != replay.StatusUnchanged {
		t.Errorf("S-E replayed again: %s %+v, want unchanged", r.Status, r.Resources)
	}
	if sum.Diverged != 0 {
		t.Errorf("%d diverged on the second run, want none", sum.Diverged)
	}
}

// TestWithdrawalAfterReplayRetiresItsWrites: a session withdrawn (sent
// without what it nested) after a replay rewrote some of its resources
// retires those too: the replay's Provenance is a receipt of the record,
// and what it wrote last is the record's to retire (a safety review: the
// PHQ-9's item 9 and its Flag, rewritten by a replay under a raised
// threshold, stayed standing after the session's withdrawal).
func TestWithdrawalAfterReplayRetiresItsWrites(t *testing.T) {
	rec := func(version, lastUpdated, status, body string) []byte {
		return []byte(`{"source": {"system": "serenity-clinic-emr", "recordId": "S-W", "version": "` + version +
			`", "lastUpdated": "` + lastUpdated + `"` + status + `}, "patient": {"id": "P-1"}, ` + body + `}`)
	}
	infusion := `"infusion": {"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"}`
	phq := `"assessments": [{"recordId": "PHQ-W", "instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00",
		"items": [{"number": 1, "score": 2}, {"number": 2, "score": 2}, {"number": 3, "score": 1}, {"number": 4, "score": 2},
		{"number": 5, "score": 1}, {"number": 6, "score": 1}, {"number": 7, "score": 1}, {"number": 8, "score": 1},
		{"number": 9, "score": 1}], "total": 12}]`
	f := newFixture(t)
	f.ingest(t, "", "session", rec("1", "2026-03-02T18:00:00Z", "", infusion+", "+phq))
	raised := func(rec mapping.Record, opts mapping.Options) (*mapping.Result, error) {
		s := mapping.DefaultSafety()
		s.PHQ9Item9 = 2
		opts.Safety = &s
		return mapping.Map(rec, opts)
	}
	_, got := run(t, f.service(raised), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if r := got["S-W"]; r.Status != replay.StatusChanged || !r.Applied {
		t.Fatalf("S-W: %s (applied %v) %+v, want changed and applied", r.Status, r.Applied, r.Resources)
	}
	for _, v := range f.versions(t, "", "Flag") {
		if !strings.Contains(string(v.Body), `"status":"inactive"`) {
			t.Fatalf("the replay left the Flag: %s", v.Body)
		}
	}
	f.ingest(t, "", "session", rec("2", "2026-03-03T12:00:00Z", `, "status": "entered-in-error"`, infusion))
	for _, typ := range []string{"Flag", "Observation"} {
		for _, v := range f.versions(t, "", typ) {
			if !strings.Contains(string(v.Body), `"status":"entered-in-error"`) {
				t.Errorf("%s/%s standing after the withdrawal: %s", typ, v.ID, v.Body)
			}
		}
	}
}

// madrs is a MADRS whose item 10 (3) raises no Flag under the default
// thresholds (4) and one under loweredSignals.
const madrs = `"instrument": "MADRS", "takenAt": "2026-03-02T08:45:00-05:00", "items": [{"number": 1, "score": 4},
	{"number": 2, "score": 4}, {"number": 3, "score": 3}, {"number": 4, "score": 3}, {"number": 5, "score": 2},
	{"number": 6, "score": 4}, {"number": 7, "score": 3}, {"number": 8, "score": 3}, {"number": 9, "score": 3},
	{"number": 10, "score": 3}], "total": 32`

// loweredSignals maps under thresholds that raise a MADRS Flag at item 10
// of 3 and a DetectedIssue at a pre-dose heart rate of 95 and above.
func loweredSignals(rec mapping.Record, opts mapping.Options) (*mapping.Result, error) {
	s := mapping.DefaultSafety()
	s.MADRSItem10 = 3
	s.HeartRate.High, s.HeartRate.CriticalHigh = 90, 95
	opts.Safety = &s
	return mapping.Map(rec, opts)
}

// signalStatus is the status of the one resource of typ f stores.
func signalStatus(t *testing.T, f *fixture, typ string) string {
	t.Helper()
	vs := f.versions(t, "", typ)
	if len(vs) != 1 {
		t.Fatalf("%d %ss, want one", len(vs), typ)
	}
	for _, v := range vs {
		var doc struct{ Status string }
		if err := json.Unmarshal(v.Body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Status
	}
	return ""
}

// TestReplayRaisedSignalsRetired: a safety signal a replay raised (a
// MADRS Flag, a session's DetectedIssue, under lowered thresholds) is
// retired by a replay under the thresholds before (the Flag inactive, the
// issue entered-in-error), and a replay after that finds nothing to
// change (a safety review: the record's last answer, from its ingest,
// does not list what a replay added, so the signals stayed standing at
// the gateway and the EHR while dry runs showed nothing to fix).
func TestReplayRaisedSignalsRetired(t *testing.T) {
	rec := func(id, body string) []byte {
		return []byte(`{"source": {"system": "serenity-clinic-emr", "recordId": "` + id + `", "version": "1",
			"lastUpdated": "2026-03-02T18:00:00Z"}, "patient": {"id": "P-1"}, ` + body + `}`)
	}
	session := `"infusion": {"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"}, "vitals": [{"recordId": "V-R", "timepoint": "pre-dose",
		"measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 100}]`
	f := newFixture(t)
	f.ingest(t, "", "assessment", rec("MAD-R", madrs))
	f.ingest(t, "", "session", rec("S-R", session))
	if n := len(f.versions(t, "", "Flag")) + len(f.versions(t, "", "DetectedIssue")); n != 0 {
		t.Fatalf("%d signals raised at the ingest, want none under the default thresholds", n)
	}
	status := func(typ string) string { t.Helper(); return signalStatus(t, f, typ) }
	run(t, f.service(loweredSignals), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "lowered"})
	if flag, issue := status("Flag"), status("DetectedIssue"); flag != "active" || issue != "final" {
		t.Fatalf("after the lowered replay: Flag %s, DetectedIssue %s; want active and final", flag, issue)
	}
	_, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "back"})
	for _, id := range []string{"MAD-R", "S-R"} {
		if r := got[id]; r.Status != replay.StatusChanged || !r.Applied {
			t.Errorf("%s back: %s (applied %v) %+v, want changed and applied", id, r.Status, r.Applied, r.Resources)
		}
	}
	if flag, issue := status("Flag"), status("DetectedIssue"); flag != "inactive" || issue != "entered-in-error" {
		t.Errorf("after the replay back: Flag %s, DetectedIssue %s; want inactive and entered-in-error", flag, issue)
	}
	_, got = run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	for _, id := range []string{"MAD-R", "S-R"} {
		if r := got[id]; r.Status != replay.StatusUnchanged {
			t.Errorf("%s on the run after: %s %+v, want unchanged", id, r.Status, r.Resources)
		}
	}
}

// TestReplayRaisedSignalsRetiredNested: as TestReplayRaisedSignalsRetired
// for a session whose nested MADRS was also sent on its own: the Flag the
// MADRS's own replay raised (its record's, which the session leaves to
// it) does not keep the session's DetectedIssue from being retired (a
// mapping developer's review).
func TestReplayRaisedSignalsRetiredNested(t *testing.T) {
	rec := func(id, version, body string) []byte {
		return []byte(`{"source": {"system": "serenity-clinic-emr", "recordId": "` + id + `", "version": "` + version + `",
			"lastUpdated": "2026-03-02T18:00:00Z"}, "patient": {"id": "P-1"}, ` + body + `}`)
	}
	session := `"infusion": {"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80,
		"totalDoseMg": 40, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00",
		"monitoringEnd": "2026-03-02T11:00:00-05:00"}, "vitals": [{"recordId": "V-N", "timepoint": "pre-dose",
		"measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 100}], "assessments": [{"recordId": "MAD-N", ` + madrs + `}]`
	f := newFixture(t)
	f.ingest(t, "", "session", rec("S-N", "1", session))
	f.ingest(t, "", "assessment", rec("MAD-N", "2", `"sessionId": "S-N", `+madrs))
	status := func(typ string) string { t.Helper(); return signalStatus(t, f, typ) }
	// Applied until nothing is left to change (a run may meet its own
	// write of the other form's Flag: conflict, run again).
	settle := func(m replay.MapFunc, reason string) {
		t.Helper()
		for range 3 {
			sum, _ := run(t, f.service(m), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: reason})
			if sum.Changed == 0 && sum.Conflicts == 0 {
				return
			}
		}
	}
	settle(loweredSignals, "lowered")
	if flag, issue := status("Flag"), status("DetectedIssue"); flag != "active" || issue != "final" {
		t.Fatalf("after the lowered replay: Flag %s, DetectedIssue %s; want active and final", flag, issue)
	}
	settle(nil, "back")
	if flag, issue := status("Flag"), status("DetectedIssue"); flag != "inactive" || issue != "entered-in-error" {
		t.Errorf("after the replay back: Flag %s, DetectedIssue %s; want inactive and entered-in-error", flag, issue)
	}
	sum, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if sum.Unchanged != sum.Records {
		t.Errorf("the run after: %+v %+v, want every record unchanged", sum, got)
	}
}
