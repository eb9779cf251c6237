package replay_test

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// heartRateUnit is a mapping whose heart rate breaks the vital-signs
// profile (p42 F2): a valid UCUM unit, but not the one the R4 heart-rate
// profile fixes.
var heartRateUnit = alter(func(typ string, doc map[string]any) {
	if typ != "Observation" {
		return
	}
	for _, c := range codings(doc, "code") {
		if c.(map[string]any)["code"] != "8867-4" {
			continue
		}
		if q, ok := doc["valueQuantity"].(map[string]any); ok {
			q["code"], q["unit"] = "{beats}/min", "beats/min"
		}
	}
})

// TestOutputProfileRefusesRecord: a mapping whose output breaks a profile
// refuses the records it would write so, naming the rule and the element,
// in a dry run as in an apply; the apply goes on with the other records
// and writes nothing of the refused ones (before, the dry run reported
// them as "would change" and the apply stopped at the first).
func TestOutputProfileRefusesRecord(t *testing.T) {
	f := newFixture(t)
	f.load(t) // 3 sessions and 2 vitals records with heart rates, 3 PHQ-9s
	before := ledger(t, f)
	for _, apply := range []bool{false, true} {
		s := f.service(heartRateUnit)
		sum, got := run(t, s, replay.Options{Tenant: search.AllTenants, Apply: apply, Reason: "unit"})
		if sum.Refused != 5 || sum.Changed != 0 || sum.Unchanged != 3 {
			t.Fatalf("apply=%v: summary %+v; want the 5 records with heart rates refused, 3 unchanged", apply, sum)
		}
		for id, r := range got {
			if r.Status != replay.StatusRefused {
				continue
			}
			if len(r.Issues) < 2 || r.Issues[0].Rule != ingest.RuleMappingNonconformant || r.Issues[1].Rule != "profile.vital-unit" ||
				r.Issues[0].Expression == "" || r.Issues[0].Pointer != "" || r.Applied || len(r.Resources) != 0 {
				t.Errorf("apply=%v: %s: %+v; want ingest's verdict (%s, then the profile's rule) with the element's expression, nothing applied",
					apply, id, r, ingest.RuleMappingNonconformant)
			}
		}
	}
	if after := ledger(t, f); len(after) != len(before) {
		t.Fatalf("ledger changed: %d records, was %d", len(after), len(before))
	} else {
		for k, v := range before {
			if after[k] != v {
				t.Errorf("%s: mapping %s after the refused apply, was %s", k, after[k], v)
			}
		}
	}
}

// TestNewerMappingLeftAlone: an older build's replay leaves a record a
// newer mapping stored as it is, in a dry run and an apply (p42 F4: it
// undid the newer mapping's corrections); asked to downgrade, it writes
// its own mapping back.
func TestNewerMappingLeftAlone(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	older := replay.New(replay.Config{Store: f.st, Engine: f.a.Engine, Ingest: f.a.Ingest, Map: heartRateDisplay,
		MappingVersion: "0.0.1", Destinations: []string{"ehr", "ehr-main"}})
	for _, apply := range []bool{false, true} {
		sum, got := run(t, older, replay.Options{Tenant: "clinic-a", Apply: apply, Reason: "older"})
		if sum.Refused != 5 || sum.Changed != 0 {
			t.Fatalf("apply=%v: summary %+v; want the 5 changed records refused", apply, sum)
		}
		for id, r := range got {
			if r.Status == replay.StatusRefused && (len(r.Issues) != 1 || r.Issues[0].Rule != "replay-newer-mapping" || r.Applied) {
				t.Errorf("apply=%v: %s: %+v; want replay-newer-mapping, nothing applied", apply, id, r)
			}
		}
	}
	sum, _ := run(t, older, replay.Options{Tenant: "clinic-a", Apply: true, Reason: "undo", Downgrade: true})
	if sum.Changed != 5 || sum.Refused != 0 {
		t.Fatalf("downgrade: summary %+v; want the 5 records written", sum)
	}
	downgraded := 0
	for _, v := range ledger(t, f) {
		if v == "0.0.1" {
			downgraded++
		}
	}
	if downgraded != 5 {
		t.Errorf("%d records at mapping 0.0.1 after the downgrade; want 5", downgraded)
	}
}
