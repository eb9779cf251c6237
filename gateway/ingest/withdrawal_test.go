package ingest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestWithdrawalRetiresEarlierVersions: a withdrawal retires what every
// earlier version of the record wrote, not only what its own content
// maps to (a review: after a withdrawal the dosing weight a later
// version left out, and a critical measurement and a fatal event a later
// session version no longer nested, stayed final), in the same
// transaction and in the delivery to the EHR; a nested record sent on
// its own since is its own record's, and stays.
func TestWithdrawalRetiresEarlierVersions(t *testing.T) {
	all := func(string, string) bool { return true }
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: all}}})
	const sys = "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/"
	esk := `"drug": "esketamine-nasal", "status": "completed", "totalDoseMg": 56, "infusionStart": "2026-03-02T09:00:00-05:00",
		"infusionEnd": "2026-03-02T09:10:00-05:00", "monitoringEnd": "2026-03-02T11:10:00-05:00"`
	nested := `, "vitals": [{"recordId": "V-3", "timepoint": "post-dose-40min", "measuredAt": "2026-03-02T09:50:00-05:00", "heartRate": 97},
		{"recordId": "V-4", "timepoint": "post-dose-40min", "measuredAt": "2026-03-02T09:51:00-05:00", "heartRate": 80}],
		"adverseEvents": [{"recordId": "E-3", ` + aeBodyNested("2026-03-02T09:20:00-05:00") + `}]`
	steps := []struct {
		kind mapping.Kind
		doc  string
	}{
		{mapping.KindInfusion, rec("I-1", "1", "P-1", "", infusionBody)}, // IV, with a dosing weight
		{mapping.KindInfusion, rec("I-1", "2", "P-1", "", esk)},          // esketamine: no weight
		{mapping.KindSession, rec("S-1", "1", "P-1", "", `"infusion": {`+esk+`}`+nested)},
		{mapping.KindSession, rec("S-1", "2", "P-1", "", `"infusion": {`+esk+`}`)},                                                                     // no longer nests V-3, V-4, E-3
		{mapping.KindVitals, rec("V-4", "3", "P-1", "", `"timepoint": "post-dose-40min", "measuredAt": "2026-03-02T09:51:00-05:00", "heartRate": 82`)}, // V-4 on its own since
	}
	for i, s := range steps {
		if err := g.ingest("", s.kind, s.doc); err != nil {
			_, is := outcome.From(err)
			t.Fatalf("step %d: %v %+v", i, err, is)
		}
	}
	withdrawn := func(r string) string {
		return strings.Replace(r, `"version": "3"}`, `"version": "3", "status": "entered-in-error"}`, 1)
	}
	for _, w := range []struct {
		kind mapping.Kind
		doc  string
	}{
		{mapping.KindInfusion, withdrawn(rec("I-1", "3", "P-1", "", esk))},
		{mapping.KindSession, withdrawn(rec("S-1", "3", "P-1", "", `"infusion": {`+esk+`}`))},
	} {
		if err := g.ingest("", w.kind, w.doc); err != nil {
			t.Fatalf("withdrawal of %s: %v", w.kind, err)
		}
	}
	status := func(typ, identifier string) string {
		r, err := g.a.Store.Read(context.Background(), typ, g.one(t, typ, "identifier="+identifier))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Status string }
		_ = json.Unmarshal(r.Body, &doc)
		return doc.Status
	}
	for _, tc := range []struct{ what, typ, identifier, want string }{
		{"the weight only version 1 gave", "Observation", sys + "infusion-session|I-1-29463-7", "entered-in-error"},
		{"the infusion's Procedure", "Procedure", sys + "infusion-session|I-1", "entered-in-error"},
		{"a measurement only session version 1 nested", "Observation", sys + "vitals|V-3-8867-4", "entered-in-error"},
		{"a measurement sent on its own since", "Observation", sys + "vitals|V-4-8867-4", "amended"},
	} {
		if got := status(tc.typ, tc.identifier); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.what, got, tc.want)
		}
	}
	// The event only session version 1 nested is deleted (R4 AdverseEvent
	// has no status), as a withdrawn event is.
	_, err := g.a.Store.Read(context.Background(), "AdverseEvent", mapping.ResourceUUID(sys+"adverse-event", "E-3"))
	if !errors.Is(err, store.ErrGone) {
		t.Errorf("the event only session version 1 nested: %v, want deleted", err)
	}
	// The EHR is sent the weight's withdrawal with the infusion's.
	// Its references are the Bundle's (the Patient's and the Procedure's
	// entries), not the gateway's ids, which the EHR does not know.
	sent := false
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "I-1") {
		if it.Kind != string(mapping.KindInfusion) || it.Version != "3" {
			continue
		}
		var b struct {
			Entry []struct {
				FullURL  string `json:"fullUrl"`
				Resource struct {
					ResourceType string
					Status       string
					Identifier   []struct{ Value string }
					Subject      struct{ Reference string }
					PartOf       []struct{ Reference string }
				}
			}
		}
		if err := json.Unmarshal(it.Payload, &b); err != nil {
			t.Fatal(err)
		}
		fullURLs := map[string]bool{}
		for _, e := range b.Entry {
			fullURLs[e.FullURL] = true
		}
		for _, e := range b.Entry {
			r := e.Resource
			if len(r.Identifier) == 0 || r.Identifier[0].Value != "I-1-29463-7" {
				continue
			}
			sent = r.Status == "entered-in-error"
			if !fullURLs[r.Subject.Reference] || len(r.PartOf) != 1 || !fullURLs[r.PartOf[0].Reference] {
				t.Errorf("the withdrawn weight refers to %q and %v, want the Bundle's Patient and Procedure entries", r.Subject.Reference, r.PartOf)
			}
		}
	}
	if !sent {
		t.Errorf("the withdrawal's delivery does not retire the weight")
	}
}

// aeBodyNested is a nested adverse event's members (no sessionId).
func aeBodyNested(onset string) string {
	return `"event": "nausea", "onsetAt": "` + onset + `", "severity": "mild", "serious": false, "outcome": "resolved"`
}

// TestWithdrawalRetiresEarlierVersionsTenant: the same in a named tenant,
// whose resources have ids of its own.
func TestWithdrawalRetiresEarlierVersionsTenant(t *testing.T) {
	g := newGateway(t, app.Config{})
	const tenant = "clinic-a"
	esk := `"drug": "esketamine-nasal", "status": "completed", "totalDoseMg": 56, "infusionStart": "2026-03-02T09:00:00-05:00",
		"infusionEnd": "2026-03-02T09:10:00-05:00", "monitoringEnd": "2026-03-02T11:10:00-05:00"`
	for i, doc := range []string{
		rec("I-1", "1", "P-1", "", infusionBody),
		rec("I-1", "2", "P-1", "", esk),
		strings.Replace(rec("I-1", "3", "P-1", "", esk), `"version": "3"}`, `"version": "3", "status": "entered-in-error"}`, 1),
	} {
		if err := g.ingest(tenant, mapping.KindInfusion, doc); err != nil {
			t.Fatalf("version %d: %v", i+1, err)
		}
	}
	weight := "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/infusion-session|I-1-29463-7"
	if n := g.count(t, tenant, "Observation", weight+"&status=entered-in-error"); n != 1 {
		t.Errorf("%d weight Observations entered-in-error in the tenant, want 1", n)
	}
}

// TestAdverseEventWithdrawnInTenant: a withdrawn adverse event is deleted
// in a named tenant too, whose AdverseEvent ids are its own; the
// withdrawal's DELETE named the mapping's id there and deleted nothing
// (found while testing withdrawals).
func TestAdverseEventWithdrawnInTenant(t *testing.T) {
	g := newGateway(t, app.Config{})
	body := aeBody("S-1", "2026-03-02T10:00:00-05:00")
	for _, tenant := range []string{"", "clinic-a", "clinic-b"} {
		if err := g.ingest(tenant, mapping.KindAdverseEvent, rec("E-1", "1", "P-1", "", body)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tenant := range []string{"", "clinic-a"} {
		w := strings.Replace(rec("E-1", "2", "P-1", "", body), `"version": "2"}`, `"version": "2", "status": "entered-in-error"}`, 1)
		if err := g.ingest(tenant, mapping.KindAdverseEvent, w); err != nil {
			t.Fatal(err)
		}
		if n := g.count(t, tenant, "AdverseEvent", ""); n != 0 {
			t.Errorf("tenant %q: %d AdverseEvents after the withdrawal, want 0", tenant, n)
		}
	}
	if n := g.count(t, "clinic-b", "AdverseEvent", ""); n != 1 {
		t.Errorf("another tenant's event of the same record id: %d, want 1 (untouched)", n)
	}
}

// TestWithdrawalOfRecordNeverStored: a withdrawal of a record the gateway
// holds no version of is stored, with a warning, and delivered nowhere
// (an EHR review: the EHR got a new Patient and resources entered in
// error for a record it never had); the version it withdraws, arriving
// after it, is refused as stale. A withdrawal of a stored record is
// delivered as before.
func TestWithdrawalOfRecordNeverStored(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	const vitals = `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 80`
	withdrawal := func(id string) string {
		return strings.Replace(rec(id, "2", "P-1", "", vitals), `"version": "2"}`,
			`"version": "2", "lastUpdated": "2026-03-02T16:00:00Z", "status": "entered-in-error"}`, 1)
	}
	warnings, err := g.ingestAnswer(t, "", withdrawal("V-9"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.HasPrefix(w, ingest.RuleWithdrawnNotStored+":") }) {
		t.Errorf("warnings %v, want %s", warnings, ingest.RuleWithdrawnNotStored)
	}
	if items := g.deliveries(t, "", "serenity-clinic-emr", "V-9"); len(items) != 0 {
		t.Errorf("%d deliveries of a withdrawal of a record never stored, want none", len(items))
	}
	v1 := strings.Replace(rec("V-9", "1", "P-1", "", vitals), `"version": "1"}`, `"version": "1", "lastUpdated": "2026-03-02T15:00:00Z"}`, 1)
	wantIssues(t, g.ingest("", mapping.KindVitals, v1), outcome.Conflict, ingest.RuleVersionStale, "/source/lastUpdated")

	if err := g.ingest("", mapping.KindVitals, rec("V-8", "1", "P-1", "", vitals)); err != nil {
		t.Fatal(err)
	}
	if warnings, err = g.ingestAnswer(t, "", withdrawal("V-8")); err != nil || len(warnings) != 0 {
		t.Errorf("withdrawal of a stored record: %v, warnings %v", err, warnings)
	}
	if items := g.deliveries(t, "", "serenity-clinic-emr", "V-8"); len(items) != 2 {
		t.Errorf("%d deliveries of a stored record and its withdrawal, want 2", len(items))
	}
}

// TestWithdrawnAdverseEventSentAgain: a version of an adverse event sent
// after its withdrawal brings it back as a new version (update mode): its
// suicidal-ideation Flag is active again at the gateway and in what the
// EHRs receive (a conditional update, not a conditional create that
// matches the Flag the withdrawal left entered-in-error), and its receipt
// is an UPDATE. Before, the safety signal stayed retired (an EHR review).
// The same for an adverse event nested in a session.
func TestWithdrawnAdverseEventSentAgain(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	ae := func(version, event, status string) string {
		doc := rec("AE-SI", version, "P-1", "", `"event": "`+event+`", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "moderate", "serious": false`)
		if status != "" {
			doc = strings.Replace(doc, `"version": "`+version+`"}`, `"version": "`+version+`", "status": "`+status+`"}`, 1)
		}
		return doc
	}
	for _, doc := range []string{ae("1", "suicidal-ideation", ""), ae("2", "anxiety", ""), ae("3", "anxiety", "entered-in-error"), ae("4", "suicidal-ideation", "")} {
		if err := g.ingest("", mapping.KindAdverseEvent, doc); err != nil {
			t.Fatal(err)
		}
	}
	flag, err := g.a.Store.Read(context.Background(), "Flag", g.one(t, "Flag", "_count=10"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(flag.Body), `"status":"active"`) {
		t.Errorf("the Flag after the event was sent again: %s, want active", flag.Body)
	}
	if n := g.count(t, "", "AdverseEvent", ""); n != 1 {
		t.Errorf("%d AdverseEvents after the event was sent again, want 1", n)
	}
	items := g.deliveries(t, "", "serenity-clinic-emr", "AE-SI")
	if len(items) != 4 {
		t.Fatalf("%d deliveries, want 4", len(items))
	}
	var last *store.OutboxItem
	for _, it := range items {
		if it.Version == "4" {
			last = it
		}
	}
	if last == nil || !strings.Contains(string(last.Payload), `"method":"PUT","url":"Flag?identifier=`) ||
		!strings.Contains(string(last.Payload), `"status":"active"`) {
		t.Errorf("the delivery of version 4 does not update the Flag to active: %s", last.Payload)
	}
	prov, err := g.a.Store.Read(context.Background(), "Provenance",
		audit.RecordProvenanceID("", "serenity-clinic-emr", string(mapping.KindAdverseEvent), "AE-SI", "4"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(prov.Body), `"code":"UPDATE"`) {
		t.Errorf("the receipt of version 4 is not an UPDATE: %s", prov.Body)
	}
}

// TestNewVersionMakesFinal: a vitals record's new version that adds a
// measurement is a new version (its changes stored), and an Observation a
// record's new version makes
// for the first time (a measurement the first version did not carry) is
// final, at the gateway and as the EHRs receive it: amended is "modified
// subsequent to being final" (R4 observation-status), and it never was
// (an EHR review: update mode stamped every Observation amended). A
// measurement the version changes is amended.
func TestNewVersionMakesFinal(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	const at = `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", `
	if err := g.ingest("", mapping.KindVitals, rec("V-NEW", "1", "P-1", "", at+`"heartRate": 80`)); err != nil {
		t.Fatal(err)
	}
	if err := g.ingest("", mapping.KindVitals, rec("V-NEW", "2", "P-1", "", at+`"heartRate": 84, "bloodPressure": {"systolic": 120, "diastolic": 80}`)); err != nil {
		t.Fatal(err)
	}
	status := func(code string) string {
		t.Helper()
		r, err := g.a.Store.Read(context.Background(), "Observation", g.one(t, "Observation", "code=http://loinc.org|"+code))
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Status string }
		if err := json.Unmarshal(r.Body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Status
	}
	if s := status("85354-9"); s != "final" {
		t.Errorf("the blood pressure the second version made is %s, want final", s)
	}
	if s := status("8867-4"); s != "amended" {
		t.Errorf("the heart rate the second version changed is %s, want amended", s)
	}
	// The change itself is stored: the version adding a measurement was
	// taken for a new record (its first entry, the blood pressure, not
	// stored), and its heart rate's conditional create matched the stored
	// one: 84 was answered 200 and never stored.
	if n := g.count(t, "", "Observation", "code=http://loinc.org|8867-4&value-quantity=84"); n != 1 {
		t.Errorf("the heart rate the second version sent is not stored (%d matches of 84)", n)
	}
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "V-NEW") {
		if it.Version != "2" {
			continue
		}
		var b struct {
			Entry []struct {
				Resource struct {
					ResourceType, Status string
					Code                 struct{ Coding []struct{ Code string } }
				}
			}
		}
		if err := json.Unmarshal(it.Payload, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			if r := e.Resource; r.ResourceType == "Observation" && len(r.Code.Coding) > 0 && r.Code.Coding[0].Code == "85354-9" && r.Status != "final" {
				t.Errorf("the EHRs receive the new blood pressure %s, want final", r.Status)
			}
		}
	}
}

// TestWithdrawalNamesRetiredNested: a session's withdrawal that retires
// the resources of a record an earlier version nested (and a later one no
// longer does) names that record in its Provenance, so that the record's
// lineage shows the withdrawal that retired it (an EHR review).
func TestWithdrawalNamesRetiredNested(t *testing.T) {
	g := newGateway(t, app.Config{})
	withVitals := criticalSession("S-9", "1", "120")
	without := func(version string) string {
		return rec("S-9", version, "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}}`)
	}
	withdrawn := strings.Replace(without("3"), `"version": "3"}`, `"version": "3", "status": "entered-in-error"}`, 1)
	for _, doc := range []string{withVitals, without("2"), withdrawn} {
		if err := g.ingest("", mapping.KindSession, doc); err != nil {
			t.Fatal(err)
		}
	}
	prov, err := g.a.Store.Read(context.Background(), "Provenance",
		audit.RecordProvenanceID("", "serenity-clinic-emr", string(mapping.KindSession), "S-9", "3"))
	if err != nil {
		t.Fatal(err)
	}
	want := `"system":"https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/vitals-record","value":"V-S-9"`
	if !strings.Contains(string(prov.Body), want) {
		t.Errorf("the withdrawal's Provenance does not name the vitals record it retired: %s", prov.Body)
	}
}

// TestWithdrawnAdverseEventNestedAgain: an adverse event withdrawn on its
// own and then nested in a session is a new version of it (the session's
// nested record in update mode): its suicidal-ideation Flag is active
// again, as for the event sent again on its own.
func TestWithdrawnAdverseEventNestedAgain(t *testing.T) {
	g := newGateway(t, app.Config{})
	const si = `"event": "suicidal-ideation", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "moderate", "serious": false`
	withdrawn := strings.Replace(rec("AE-N", "2", "P-1", "", `"sessionId": "S-N", `+si), `"version": "2"}`, `"version": "2", "status": "entered-in-error"}`, 1)
	for _, doc := range []string{rec("AE-N", "1", "P-1", "", `"sessionId": "S-N", `+si), withdrawn} {
		if err := g.ingest("", mapping.KindAdverseEvent, doc); err != nil {
			t.Fatal(err)
		}
	}
	session := rec("S-N", "3", "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}}, "adverseEvents": [{"recordId": "AE-N", `+si+`}]`)
	if err := g.ingest("", mapping.KindSession, session); err != nil {
		t.Fatal(err)
	}
	flag, err := g.a.Store.Read(context.Background(), "Flag", g.one(t, "Flag", "_count=10"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(flag.Body), `"status":"active"`) {
		t.Errorf("the Flag after the event was nested again: %s, want active", flag.Body)
	}
}

// TestWithdrawalRetiresLeftOutSignal: a session withdrawn after a version
// that left out a nested record raising a safety Flag (a PHQ-9 with item 9
// positive, a suicidal-ideation event) is stored, and the Flag retired:
// the retired Flag names the retired record it stands on by that record's
// entry, as its profile requires (a safety review: 500
// mapping-output-nonconformant, nothing stored, the Flag left active).
func TestWithdrawalRetiresLeftOutSignal(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	infusion := `"infusion": {` + infusionBody + `, "clinician": {"id": "C-7"}}`
	var items []string
	for i := 1; i <= 9; i++ {
		items = append(items, fmt.Sprintf(`{"number": %d, "score": 1}`, i))
	}
	phq9 := `"assessments": [{"recordId": "Q-LO", "instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "items": [` + strings.Join(items, ",") + `], "total": 9}]`
	si := `"adverseEvents": [{"recordId": "AE-LO", "event": "suicidal-ideation", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "moderate", "serious": false}]`
	for _, tc := range []struct{ name, nested string }{{"PHQ-9 item 9", phq9}, {"suicidal ideation", si}} {
		t.Run(tc.name, func(t *testing.T) {
			id := "S-LO-" + strings.ReplaceAll(tc.name, " ", "")
			withdrawn := strings.Replace(rec(id, "3", "P-1", "", infusion), `"version": "3"}`, `"version": "3", "status": "entered-in-error"}`, 1)
			for _, doc := range []string{rec(id, "1", "P-1", "", infusion+", "+tc.nested), rec(id, "2", "P-1", "", infusion), withdrawn} {
				if err := g.ingest("", mapping.KindSession, doc); err != nil {
					t.Fatal(err)
				}
			}
			items := g.deliveries(t, "", "serenity-clinic-emr", id)
			if len(items) != 3 {
				t.Fatalf("%d deliveries, want 3", len(items))
			}
		})
	}
	page, err := g.a.Store.Export(context.Background(), store.ExportQuery{Type: "Flag", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range page {
		if !strings.Contains(string(f.Body), `"status":"entered-in-error"`) {
			t.Errorf("a Flag of a withdrawn session is not retired: %s", f.Body)
		}
	}
	if len(page) != 2 {
		t.Errorf("%d Flags, want the 2 the sessions raised", len(page))
	}
}

// TestWithdrawalLeavesStandingSignal: a session whose nested PHQ-9 (item 9
// positive) or suicidal-ideation event was sent on its own since, still
// raising its Flag, is withdrawn by a version that nests neither: the
// withdrawal is stored (it answered 500, mapping-output-nonconformant,
// a safety review), the session's own resources are retired, and the
// Flag, whose cause is now the record sent on its own, stays active.
func TestWithdrawalLeavesStandingSignal(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	infusion := `"infusion": {` + infusionBody + `, "clinician": {"id": "C-7"}}`
	items := func(item9 int) string {
		var out []string
		for i := 1; i <= 9; i++ {
			score := 1
			if i == 9 {
				score = item9
			}
			out = append(out, fmt.Sprintf(`{"number": %d, "score": %d}`, i, score))
		}
		return `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "items": [` + strings.Join(out, ",") + `], "total": ` + fmt.Sprint(8+item9)
	}
	event := `"event": "suicidal-ideation", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "moderate", "serious": false`
	for _, tc := range []struct {
		name, nested string
		kind         mapping.Kind
		alone        string
	}{
		{"PHQ-9 item 9", `"assessments": [{"recordId": "Q-ST", ` + items(2) + `}]`, mapping.KindAssessment, rec("Q-ST", "2", "P-1", "", `"sessionId": "S-ST-PHQ-9item9", `+items(3))},
		{"suicidal ideation", `"adverseEvents": [{"recordId": "AE-ST", ` + event + `}]`, mapping.KindAdverseEvent,
			rec("AE-ST", "2", "P-1", "", `"sessionId": "S-ST-suicidalideation", `+strings.Replace(event, "moderate", "severe", 1))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "S-ST-" + strings.ReplaceAll(tc.name, " ", "")
			if err := g.ingest("", mapping.KindSession, rec(id, "1", "P-1", "", infusion+", "+tc.nested)); err != nil {
				t.Fatal(err)
			}
			if err := g.ingest("", tc.kind, tc.alone); err != nil {
				t.Fatal(err)
			}
			withdrawn := strings.Replace(rec(id, "3", "P-1", "", infusion), `"version": "3"}`, `"version": "3", "status": "entered-in-error"}`, 1)
			if err := g.ingest("", mapping.KindSession, withdrawn); err != nil {
				t.Fatalf("withdrawal: %v", err)
			}
			proc, err := g.a.Store.Read(context.Background(), "Procedure", g.one(t, "Procedure", "identifier="+mapping.DefaultIdentifierBase+"/serenity-clinic-emr/infusion-session|"+id))
			if err != nil || !strings.Contains(string(proc.Body), `"status":"entered-in-error"`) {
				t.Errorf("the withdrawn session's Procedure is not retired: %v", err)
			}
		})
	}
	page, err := g.a.Store.Export(context.Background(), store.ExportQuery{Type: "Flag", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range page {
		if !strings.Contains(string(f.Body), `"status":"active"`) {
			t.Errorf("a Flag whose cause stands is retired: %s", f.Body)
		}
	}
	if len(page) != 2 {
		t.Errorf("%d Flags, want 2", len(page))
	}
}

// TestWithdrawalNotSentWhereNeverDelivered: a withdrawal is not sent to a
// destination that never had the record, whose earlier delivery there an
// operator cancelled (sent to the wrong destination) or that became a
// dead letter: it would give that EHR the patient and the record's values
// (an EHR review). It stands there as a dead letter without payload,
// which the answer warns about and which supersedes the earlier dead
// letter (a retry of it is refused). A destination that had the record,
// on its own or nested in a session, gets the withdrawal.
func TestWithdrawalNotSentWhereNeverDelivered(t *testing.T) {
	all := func(string, string) bool { return true }
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: all}, {Name: "lab", Accepts: all}}})
	ctx := context.Background()
	const vitals = `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 80`
	version := func(id, v, status string) string {
		return strings.Replace(rec(id, v, "P-1", "", vitals), `"version": "`+v+`"}`,
			`"version": "`+v+`", "lastUpdated": "2026-03-02T2`+v+`:00:00Z"`+status+`}`, 1)
	}
	if err := g.ingest("", mapping.KindVitals, version("V-1", "1", "")); err != nil {
		t.Fatal(err)
	}
	var cancelled string
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "V-1") {
		if it.Destination == "lab" {
			cancelled = publicID(t, g, it.ID)
			if _, err := g.a.Operator.Cancel(ctx, "", cancelled, "record sent to the wrong destination"); err != nil {
				t.Fatal(err)
			}
		}
	}
	warnings, err := g.ingestAnswer(t, "", version("V-1", "2", `, "status": "entered-in-error"`))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(warnings, func(w string) bool { return strings.HasPrefix(w, ingest.RuleWithdrawnNotDelivered+":") }) {
		t.Errorf("warnings %v, want %s", warnings, ingest.RuleWithdrawnNotDelivered)
	}
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "V-1") {
		if it.Version != "2" {
			continue
		}
		switch it.Destination {
		case "lab":
			if it.Status != store.StatusDead || len(it.Payload) != 0 || !strings.HasPrefix(it.LastError, store.WithheldWithdrawal) {
				t.Errorf("the withdrawal to lab: %s %q, %d bytes; want a dead letter without payload", it.Status, it.LastError, len(it.Payload))
			}
		case "ehr":
			if it.Status == store.StatusDead || len(it.Payload) == 0 {
				t.Errorf("the withdrawal to ehr: %s, %d bytes; want it sent", it.Status, len(it.Payload))
			}
		}
	}
	if _, err := g.a.Operator.Retry(ctx, "", cancelled); !strings.Contains(fmt.Sprint(err), "delivery-superseded") {
		t.Errorf("retry of the cancelled first version: %v, want delivery-superseded", err)
	}

	// A vitals record nested in a session, delivered there, withdrawn on
	// its own: both destinations had it.
	session := rec("S-W", "1", "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}},
		"vitals": [{"recordId": "V-N", `+vitals+`}]`)
	if err := g.ingest("", mapping.KindSession, session); err != nil {
		t.Fatal(err)
	}
	warnings, err = g.ingestAnswer(t, "", strings.Replace(rec("V-N", "2", "P-1", "", vitals), `"version": "2"}`, `"version": "2", "status": "entered-in-error"}`, 1))
	if err != nil || len(warnings) != 0 {
		t.Fatalf("withdrawal of a nested record: %v, warnings %v", err, warnings)
	}
	if items := g.deliveries(t, "", "serenity-clinic-emr", "V-N"); len(items) != 2 || items[0].Status == store.StatusDead || items[1].Status == store.StatusDead {
		t.Errorf("%d deliveries of the nested record's withdrawal, want one to each destination, sent", len(items))
	}
}

// TestSessionWithdrawalSkipsSettledDelete: a session whose nested adverse
// event was withdrawn on its own, and that withdrawal delivered, is
// withdrawn without a second DELETE of the event, which an EHR that
// answers a DELETE of a missing resource with 404 fails the whole
// transaction for (the session's resources left completed there: an EHR
// review). While the event's deletion is not delivered somewhere (pending,
// or a dead letter), the DELETE is kept.
func TestSessionWithdrawalSkipsSettledDelete(t *testing.T) {
	ctx := context.Background()
	infusion := `"infusion": {` + infusionBody + `, "clinician": {"id": "C-7"}}`
	event := `"event": "nausea", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "mild", "serious": false`
	for _, tc := range []struct {
		name      string
		delivered bool // the event's withdrawal delivered before the session's
		delete    bool // the session's withdrawal carries the DELETE
	}{
		{"event's withdrawal delivered", true, false},
		{"event's withdrawal pending", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
			session := func(v, status, nested string) string {
				return strings.Replace(rec("S-D", v, "P-1", "", infusion+nested), `"version": "`+v+`"}`,
					`"version": "`+v+`", "lastUpdated": "2026-03-02T2`+v+`:00:00Z"`+status+`}`, 1)
			}
			if err := g.ingest("", mapping.KindSession, session("1", "", `, "adverseEvents": [{"recordId": "AE-D", `+event+`}]`)); err != nil {
				t.Fatal(err)
			}
			ae := strings.Replace(rec("AE-D", "2", "P-1", "", `"sessionId": "S-D", `+event), `"version": "2"}`,
				`"version": "2", "lastUpdated": "2026-03-02T22:00:00Z", "status": "entered-in-error"}`, 1)
			if err := g.ingest("", mapping.KindAdverseEvent, ae); err != nil {
				t.Fatal(err)
			}
			if tc.delivered {
				ob := store.Outbox(g.a.Store)
				for n := 0; n < 2; n++ { // the session, then the event's withdrawal (in order)
					items, err := ob.Claim(ctx, "ehr", time.Now(), time.Minute, 10)
					if err != nil || len(items) != 1 {
						t.Fatalf("claim: %d items, %v; want one", len(items), err)
					}
					if err := ob.Complete(ctx, &store.Attempt{ItemID: items[0].ID, At: time.Now(), HTTPStatus: 200}, store.StatusDone, time.Now()); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := g.ingest("", mapping.KindSession, session("3", `, "status": "entered-in-error"`, `, "adverseEvents": [{"recordId": "AE-D", `+event+`}]`)); err != nil {
				t.Fatalf("session withdrawal: %v", err)
			}
			var payload []byte
			for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "S-D") {
				if it.Version == "3" {
					payload = it.Payload
				}
			}
			if payload == nil {
				t.Fatal("no delivery of the session's withdrawal")
			}
			if got := bytes.Contains(payload, []byte(`"method":"DELETE"`)); got != tc.delete {
				t.Errorf("the session's withdrawal carries a DELETE: %v, want %v", got, tc.delete)
			}
			if !bytes.Contains(payload, []byte(`"entered-in-error"`)) {
				t.Error("the session's withdrawal retires nothing")
			}
		})
	}
}

// TestSessionWithdrawalReachesNestedRecord: a session withdrawal that
// nests a record goes to a destination that had that record only on its
// own (the session's own delivery there a dead letter): it withdraws the
// record there too (a safety review: the EHR kept an active suicide-risk
// Flag the gateway had retired).
func TestSessionWithdrawalReachesNestedRecord(t *testing.T) {
	ctx := context.Background()
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	const vitals = `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 80`
	session := func(v, status string) string {
		return strings.Replace(rec("S-R", v, "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}},
			"vitals": [{"recordId": "V-R", `+vitals+`}]`), `"version": "`+v+`"}`,
			`"version": "`+v+`", "lastUpdated": "2026-03-02T2`+v+`:00:00Z"`+status+`}`, 1)
	}
	if err := g.ingest("", mapping.KindSession, session("1", "")); err != nil {
		t.Fatal(err)
	}
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "S-R") {
		if _, err := g.a.Operator.Cancel(ctx, "", publicID(t, g, it.ID), "the EHR refused it"); err != nil {
			t.Fatal(err)
		}
	}
	v2 := strings.Replace(rec("V-R", "2", "P-1", "", `"sessionId": "S-R", `+strings.Replace(vitals, "80", "84", 1)), `"version": "2"}`,
		`"version": "2", "lastUpdated": "2026-03-02T22:00:00Z"}`, 1)
	if err := g.ingest("", mapping.KindVitals, v2); err != nil {
		t.Fatal(err)
	}
	if err := g.ingest("", mapping.KindSession, session("3", `, "status": "entered-in-error"`)); err != nil {
		t.Fatal(err)
	}
	var payload []byte
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "S-R") {
		if it.Version == "3" && it.Status != store.StatusDead {
			payload = it.Payload
		}
	}
	if len(payload) == 0 {
		t.Fatal("the session's withdrawal is not sent to the destination that had its nested record")
	}
	// Only what it had (an EHR review: it was sent the whole session):
	// the Patient and the nested record, whose link to the session is a
	// logical reference, the Procedure being no entry of the Bundle.
	var b struct {
		Entry []struct {
			FullURL  string `json:"fullUrl"`
			Resource map[string]any
		} `json:"entry"`
	}
	if err := json.Unmarshal(payload, &b); err != nil {
		t.Fatal(err)
	}
	urls := map[string]bool{}
	var types []string
	for _, e := range b.Entry {
		urls[e.FullURL] = true
		types = append(types, fmt.Sprint(e.Resource["resourceType"]))
	}
	if strings.Join(types, ",") != "Patient,Observation" {
		t.Errorf("the withdrawal sent there holds %v, want the Patient and the nested record's Observation", types)
	}
	for _, ref := range regexp.MustCompile(`"reference":"(urn:uuid:[^"]+)"`).FindAllStringSubmatch(string(payload), -1) {
		if !urls[ref[1]] {
			t.Errorf("reference %s resolves to no entry of the Bundle", ref[1])
		}
	}
	if !strings.Contains(string(payload), `"partOf":[{"identifier"`) || !strings.Contains(string(payload), `"entered-in-error"`) {
		t.Errorf("the nested record's withdrawal: %s", payload)
	}
}

// TestWithdrawalLeavesRecordSentApart: a session withdrawal retires
// nothing of a record an earlier version nested and that was sent on its
// own since, not even the parts the correction left as the session wrote
// them (a safety review: the PHQ-9's panel and items were retired, its
// total, item 9 and Flag left standing).
func TestWithdrawalLeavesRecordSentApart(t *testing.T) {
	g := newGateway(t, app.Config{})
	infusion := `"infusion": {` + infusionBody + `, "clinician": {"id": "C-7"}}`
	phq9 := func(item9 int) string {
		var items []string
		for i := 1; i <= 9; i++ {
			score := 1
			if i == 9 {
				score = item9
			}
			items = append(items, fmt.Sprintf(`{"number": %d, "score": %d}`, i, score))
		}
		return `"instrument": "PHQ-9", "takenAt": "2026-03-02T08:45:00-05:00", "items": [` + strings.Join(items, ",") + `], "total": ` + fmt.Sprint(8+item9)
	}
	session := func(v, status, nested string) string {
		return strings.Replace(rec("S-A", v, "P-1", "", infusion+nested), `"version": "`+v+`"}`,
			`"version": "`+v+`", "lastUpdated": "2026-03-03T1`+v+`:00:00Z"`+status+`}`, 1)
	}
	steps := []struct {
		kind mapping.Kind
		doc  string
	}{
		{mapping.KindSession, session("1", "", `, "assessments": [{"recordId": "Q-A", `+phq9(1)+`}]`)},
		{mapping.KindAssessment, strings.Replace(rec("Q-A", "2", "P-1", "", `"sessionId": "S-A", `+phq9(3)), `"version": "2"}`,
			`"version": "2", "lastUpdated": "2026-03-03T12:30:00Z"}`, 1)},
		{mapping.KindSession, session("3", "", "")},
		{mapping.KindSession, session("4", `, "status": "entered-in-error"`, "")},
	}
	for i, s := range steps {
		if err := g.ingest("", s.kind, s.doc); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
	page, err := g.a.Store.Export(context.Background(), store.ExportQuery{Type: "Observation", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range page {
		if strings.Contains(string(r.Body), "/assessment") {
			n++
			if strings.Contains(string(r.Body), `"status":"entered-in-error"`) {
				t.Errorf("a part of the PHQ-9 sent on its own since is retired: %s", r.Body)
			}
		}
	}
	if n < 10 {
		t.Errorf("%d Observations of the PHQ-9, want its panel, items and total", n)
	}
	proc, err := g.a.Store.Read(context.Background(), "Procedure", g.one(t, "Procedure", ""))
	if err != nil || !strings.Contains(string(proc.Body), `"status":"entered-in-error"`) {
		t.Errorf("the session's Procedure is not retired: %v", err)
	}
}

// TestAdverseEventWithdrawnAgain: a second withdrawal of an adverse event
// withdrawn already (deleted) is stored and sent nowhere, with a warning
// that says so, not that the record was never stored (an EHR review).
func TestAdverseEventWithdrawnAgain(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	event := `"event": "nausea", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "mild", "serious": false`
	version := func(v, status string) string {
		return strings.Replace(rec("AE-W", v, "P-1", "", event), `"version": "`+v+`"}`, `"version": "`+v+`"`+status+`}`, 1)
	}
	for _, doc := range []string{version("1", ""), version("2", `, "status": "entered-in-error"`)} {
		if err := g.ingest("", mapping.KindAdverseEvent, doc); err != nil {
			t.Fatal(err)
		}
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test"})
	out, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindAdverseEvent, []byte(version("3", `, "status": "entered-in-error"`)), false, engine.Answer{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(out, []byte(ingest.RuleWithdrawnAgain)) || bytes.Contains(out, []byte(ingest.RuleWithdrawnNotStored)) {
		t.Errorf("answer %s, want the %s warning only", out, ingest.RuleWithdrawnAgain)
	}
	if items := g.deliveries(t, "", "serenity-clinic-emr", "AE-W"); len(items) != 2 {
		t.Errorf("%d deliveries, want the first version's and the first withdrawal's", len(items))
	}
}

// TestWithdrawalReachJudgedByAttempts: whether a destination may hold a
// record is told by what its earlier deliveries' attempts did (an EHR
// review), at the withdrawal's store and again as it is sent:
//   - an earlier delivery pending as the withdrawal was stored, that then
//     ended a dead letter the EHR applied none of (a 400 after a 500; an
//     operator's cancel), leaves the withdrawal withheld as it is sent: it
//     would have given the EHR the patient and values it never had;
//   - a dead letter the EHR may have applied (a transaction-response with
//     a failed entry, a timeout, an interrupted attempt) counts as having
//     reached it, at store and send alike: the EHR may hold the record's
//     resources, final, and needs the withdrawal.
func TestWithdrawalReachJudgedByAttempts(t *testing.T) {
	ctx := context.Background()
	const vitals = `"timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00", "heartRate": 80`
	version := func(id, v, status string) string {
		return strings.Replace(rec(id, v, "P-1", "", vitals), `"version": "`+v+`"}`,
			`"version": "`+v+`", "lastUpdated": "2026-03-02T2`+v+`:00:00Z"`+status+`}`, 1)
	}
	for _, tc := range []struct {
		name     string
		attempts []store.Attempt // v1's, the last one making it dead; none: cancelled
		atStore  bool            // v1 ended before the withdrawal was stored
		withheld bool
	}{
		{"refused after a 500, pending at store", []store.Attempt{{HTTPStatus: 500, Error: "http 500"}, {HTTPStatus: 400, Error: "http 400 (invalid)"}}, false, true},
		{"cancelled, pending at store", nil, false, true},
		{"partly applied, pending at store", []store.Attempt{{HTTPStatus: 200, Error: "entry 1 (POST Observation): http 400; the EHR applied the transaction's other entries (2 of 3 answered 2xx)"}}, false, false},
		{"partly applied before the store", []store.Attempt{{HTTPStatus: 200, Error: "entry 1 (POST Observation): http 400; the EHR applied the transaction's other entries (2 of 3 answered 2xx)"}}, true, false},
		{"timed out, then refused, before the store", []store.Attempt{{Error: "timeout"}, {HTTPStatus: 400, Error: "http 400 (invalid)"}}, true, false},
		{"interrupted, then refused, pending at store", []store.Attempt{{Error: "interrupted: the gateway stopped during this attempt"}, {HTTPStatus: 422, Error: "http 422"}}, false, false},
		{"refused before the store", []store.Attempt{{HTTPStatus: 400, Error: "http 400 (invalid)"}}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			all := func(string, string) bool { return true }
			g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: all}}})
			if err := g.ingest("", mapping.KindVitals, version("V-1", "1", "")); err != nil {
				t.Fatal(err)
			}
			v1 := g.deliveries(t, "", "serenity-clinic-emr", "V-1")[0]
			end := func() {
				if tc.attempts == nil {
					if _, err := g.a.Operator.Cancel(ctx, "", publicID(t, g, v1.ID), "sent to the wrong destination"); err != nil {
						t.Fatal(err)
					}
					return
				}
				for i, a := range tc.attempts {
					if got, err := g.a.Store.Claim(ctx, "ehr", time.Now().Add(time.Hour), time.Minute, 1); err != nil || len(got) != 1 || got[0].ID != v1.ID {
						t.Fatalf("Claim = %v %v, want v1", got, err)
					}
					a.ItemID, a.N, a.At = v1.ID, i+1, time.Now()
					status := store.StatusPending
					if i == len(tc.attempts)-1 {
						status = store.StatusDead
					}
					if err := g.a.Store.Complete(ctx, &a, status, time.Now()); err != nil {
						t.Fatal(err)
					}
				}
			}
			if tc.atStore {
				end()
			}
			if _, err := g.ingestAnswer(t, "", version("V-1", "2", `, "status": "entered-in-error"`)); err != nil {
				t.Fatal(err)
			}
			if !tc.atStore {
				end()
			}
			var w *store.OutboxItem
			for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "V-1") {
				if it.Version == "2" {
					w = it
				}
			}
			if w == nil {
				t.Fatal("no delivery of the withdrawal")
			}
			reason := w.LastError // withheld as it was stored
			if w.Status != store.StatusDead {
				var err error
				if reason, err = g.a.Operator.WithheldWithdrawal(ctx, w); err != nil {
					t.Fatal(err)
				}
			}
			if withheld := strings.HasPrefix(reason, store.WithheldWithdrawal); withheld != tc.withheld {
				t.Errorf("the withdrawal withheld: %v (%q), want %v", withheld, reason, tc.withheld)
			}
		})
	}
	// A record version that is no withdrawal is never withheld.
	all := func(string, string) bool { return true }
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: all}}})
	if err := g.ingest("", mapping.KindVitals, version("V-2", "1", "")); err != nil {
		t.Fatal(err)
	}
	if reason, err := g.a.Operator.WithheldWithdrawal(ctx, g.deliveries(t, "", "serenity-clinic-emr", "V-2")[0]); err != nil || reason != "" {
		t.Errorf("WithheldWithdrawal of a first version = %q, %v; want it sent", reason, err)
	}
}
