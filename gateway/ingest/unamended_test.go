package ingest_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestCorrectionAmendsOnlyWhatChanged: a new version of a record that
// changes one value writes a new version (status amended) of the resource
// that holds it, and of no other: a resource whose only difference from
// the stored one is the status amended (and meta) keeps its version and
// its status, and is delivered with that status (as the conditional update
// it was mapped as: an EHR that holds it finds nothing to change), not as
// amended, which would flag an unchanged value at the EHR (p40 F7). The
// changed one is delivered as the update it is, amended.
func TestCorrectionAmendsOnlyWhatChanged(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	raw, err := os.ReadFile("../../schemas/examples/vitals/pre-dose-baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	v2 := strings.NewReplacer(`"version": "1"`, `"version": "2"`, `"2026-03-10T09:16:40-05:00"`, `"2026-03-10T10:00:00-05:00"`,
		`"heartRate": 76`, `"heartRate": 77`).Replace(string(raw))
	for _, doc := range []string{string(raw), v2} {
		if err := g.ingest("", mapping.KindVitals, doc); err != nil {
			t.Fatal(err)
		}
	}
	q, err := search.Parse("Observation", nil, false)
	if err != nil {
		t.Fatal(err)
	}
	page, err := g.a.Store.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	const heartRate = "8867-4" // LOINC
	amended := 0
	for _, r := range page.Matches {
		var o struct {
			Status string
			Code   struct{ Coding []struct{ Code string } }
		}
		if err := json.Unmarshal(r.Body, &o); err != nil {
			t.Fatal(err)
		}
		hr := len(o.Code.Coding) > 0 && o.Code.Coding[0].Code == heartRate
		switch {
		case hr && (r.Version != 2 || o.Status != "amended"):
			t.Errorf("heart rate: version %d %s, want version 2 amended", r.Version, o.Status)
		case !hr && (r.Version != 1 || o.Status != "final"):
			t.Errorf("unchanged Observation %v: version %d %s, want version 1 final", o.Code.Coding, r.Version, o.Status)
		case hr:
			amended++
		}
	}
	if amended != 1 || len(page.Matches) < 4 {
		t.Fatalf("%d Observations, %d heart rates amended; want several, one", len(page.Matches), amended)
	}
	items := g.deliveries(t, "", "serenity-clinic-emr", "VIT-2026-0310-001")
	if len(items) != 2 {
		t.Fatalf("%d deliveries, want 2", len(items))
	}
	second := items[0]
	if second.Version != "2" {
		second = items[1]
	}
	var b struct {
		Entry []struct {
			Resource json.RawMessage
			Request  struct{ Method, URL, IfNoneExist string }
		}
	}
	if err := json.Unmarshal(second.Payload, &b); err != nil {
		t.Fatal(err)
	}
	updates := 0
	for _, e := range b.Entry {
		if !strings.HasPrefix(e.Request.URL, "Observation") {
			continue
		}
		var o struct {
			Status string
			Code   struct{ Coding []struct{ Code string } }
		}
		if err := json.Unmarshal(e.Resource, &o); err != nil {
			t.Fatal(err)
		}
		hr := len(o.Code.Coding) > 0 && o.Code.Coding[0].Code == heartRate
		switch {
		case hr && (e.Request.Method != "PUT" || o.Status != "amended"):
			t.Errorf("delivered heart rate: %s %s %s, want a PUT, amended", e.Request.Method, e.Request.URL, o.Status)
		case !hr && (e.Request.Method != "PUT" || !strings.HasPrefix(e.Request.URL, "Observation?identifier=") || o.Status != "final"):
			// Still the conditional update: an EHR whose copy is older
			// (an earlier version dead-lettered) is brought up to date.
			t.Errorf("delivered unchanged Observation %v: %s %s %s, want a conditional update, final",
				o.Code.Coding, e.Request.Method, e.Request.URL, o.Status)
		case hr:
			updates++
		}
	}
	if updates != 1 {
		t.Errorf("%d heart rates delivered, want 1", updates)
	}
}

// TestNestedAmendedAloneKeepsUnchanged: a vitals record a session nested,
// then sent on its own with one value changed, amends that value only:
// its other measurements, whose only difference is their partOf written
// as a logical reference to the session's Procedure (the record on its
// own does not carry it) where the stored one is literal, keep their
// version, status and literal link (a mapping developer's review: every
// measurement was written again, amended, with its link to the session
// cut). The changed one keeps its literal link too (a later review: it
// was stored with the reference by identifier).
func TestNestedAmendedAloneKeepsUnchanged(t *testing.T) {
	g := newGateway(t, app.Config{})
	session := rec("S-PO", "1", "P-1", "", `"infusion": {`+infusionBody+`, "clinician": {"id": "C-7"}},
		"vitals": [{"recordId": "V-PO", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00",
		"bloodPressure": {"systolic": 128, "diastolic": 82}, "spo2": 98, "heartRate": 76}]`)
	alone := rec("V-PO", "2", "P-1", "", `"sessionId": "S-PO", "timepoint": "pre-dose", "measuredAt": "2026-03-02T08:50:00-05:00",
		"bloodPressure": {"systolic": 131, "diastolic": 82}, "spo2": 98, "heartRate": 76`)
	for kind, doc := range map[mapping.Kind]string{mapping.KindSession: session} {
		if err := g.ingest("", kind, doc); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.ingest("", mapping.KindVitals, alone); err != nil {
		t.Fatal(err)
	}
	for code, want := range map[string]int64{"59408-5": 1, "8867-4": 1, "85354-9": 2} { // SpO2, heart rate: unchanged; BP changed
		r, err := g.a.Store.Read(context.Background(), "Observation", g.one(t, "Observation", "code=http://loinc.org|"+code))
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != want {
			t.Errorf("Observation %s: version %d, want %d", code, r.Version, want)
		}
		if !strings.Contains(string(r.Body), `"partOf":[{"reference":"Procedure/`) {
			t.Errorf("Observation %s lost its literal link to the session: %s", code, r.Body)
		}
	}
}

// TestNestedEventCorrectedAloneKeepsLinks: an adverse event a session
// nested, then corrected on its own (its severity changed), is stored with
// its literal links to the session's administration and Procedure, so a
// search by substance still finds it; the EHRs receive it as mapped, its
// links by identifier (a mapping developer's review: the stored copy lost
// its literal links, and AdverseEvent?substance= no longer found it).
func TestNestedEventCorrectedAloneKeepsLinks(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	event := func(severity string) string {
		return `"event": "nausea", "onsetAt": "2026-03-02T09:25:00-05:00", "severity": "` + severity + `", "serious": false`
	}
	session := rec("S-AL", "1", "P-1", "", `"infusion": {`+infusionBody+`},
		"adverseEvents": [{"recordId": "AE-AL", `+event("severe")+`}]`)
	if err := g.ingest("", mapping.KindSession, session); err != nil {
		t.Fatal(err)
	}
	if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-AL", "2", "P-1", "", `"sessionId": "S-AL", `+event("moderate"))); err != nil {
		t.Fatal(err)
	}
	med := g.one(t, "MedicationAdministration", "")
	found := g.one(t, "AdverseEvent", "substance=MedicationAdministration/"+med)
	r, err := g.a.Store.Read(context.Background(), "AdverseEvent", found)
	if err != nil {
		t.Fatal(err)
	}
	body := string(r.Body)
	if r.Version != 2 || !strings.Contains(body, `"moderate"`) {
		t.Errorf("AdverseEvent version %d, want 2, moderate: %s", r.Version, body)
	}
	if !strings.Contains(body, `"reference":"Procedure/`) {
		t.Errorf("AdverseEvent lost its literal link to the session's Procedure: %s", body)
	}
	var sent []string
	for _, it := range g.deliveries(t, "", "serenity-clinic-emr", "AE-AL") {
		if it.Version != "2" {
			continue
		}
		var b struct {
			Entry []struct{ Resource json.RawMessage }
		}
		if err := json.Unmarshal(it.Payload, &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Entry {
			if strings.Contains(string(e.Resource), `"resourceType":"AdverseEvent"`) {
				sent = append(sent, string(e.Resource))
			}
		}
	}
	if len(sent) != 1 {
		t.Fatalf("%d AdverseEvents delivered of version 2, want 1", len(sent))
	}
	if strings.Contains(sent[0], `"reference":"MedicationAdministration/`) || !strings.Contains(sent[0], `"identifier"`) {
		t.Errorf("the EHR received the gateway's ids, not the links as mapped: %s", sent[0])
	}
}
