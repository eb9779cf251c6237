package replay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	operatorsvc "github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fixture is an application over a SQLite database with a delivery
// destination for each tenant ("ehr": clinic-a's, "ehr-main": the default
// tenant's; their records share a source system, which two tenants may not
// deliver to one destination), and records stored through ingest.
type fixture struct {
	st store.Store
	a  *app.App
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "replay.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := app.New(app.Config{Store: st, NoJobRunner: true, BacklogEvery: -1,
		Routes: []ingest.Route{
			{Name: "ehr", Accepts: func(string, string) bool { return true }, AcceptsTenant: func(t string) bool { return t == "clinic-a" }},
			{Name: "ehr-main", Accepts: func(string, string) bool { return true }, AcceptsTenant: func(t string) bool { return t == "" }},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return &fixture{st: st, a: a}
}

// record is a stored record of the fixture.
type record struct{ tenant, kind, id string }

// example is an example record file made the n-th of its own: every
// recordId, the patient's id and MRN suffixed.
func example(t testing.TB, path string, n int) ([]byte, string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", path))
	if err != nil {
		t.Fatal(err)
	}
	out, err := schemas.Renumbered(raw, fmt.Sprintf("-n%05d", n))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Source struct{ RecordID string }
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		t.Fatal(err)
	}
	return out, doc.Source.RecordID
}

// ingest stores a record of tenant through the ingest service.
func (f *fixture) ingest(t testing.TB, tenant, kind string, body []byte) {
	t.Helper()
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "clinic", Tenant: tenant,
		Scopes: auth.ParseScopes("gateway/ingest system/*.cruds")})
	if _, err := f.a.Ingest.Ingest(context.Background(), sc, mapping.Kind(kind), body, false, engine.Answer{}); err != nil {
		t.Fatalf("ingest %s: %v", kind, err)
	}
}

// load stores 3 sessions and 2 vitals records (with heart rates) of
// clinic-a and 3 PHQ-9 assessments (without) of the default tenant.
func (f *fixture) load(t testing.TB) []record {
	t.Helper()
	var out []record
	add := func(tenant, kind, path string, n int) {
		body, id := example(t, path, n)
		f.ingest(t, tenant, kind, body)
		out = append(out, record{tenant, kind, id})
	}
	for i := range 3 {
		add("clinic-a", "session", "session/routine-ketamine-iv-session.json", i)
	}
	// Numbered apart from the sessions, whose vitals and assessments have
	// the same record ids as these examples.
	for i := range 2 {
		add("clinic-a", "vitals", "vitals/pre-dose-baseline.json", 10+i)
	}
	for i := range 3 {
		add("", "assessment", "assessment/phq9-moderate.json", 20+i)
	}
	return out
}

// alter is a mapping with one detail changed: fn edits each resource as
// JSON after mapping.Map.
func alter(fn func(typ string, doc map[string]any)) replay.MapFunc {
	return func(rec mapping.Record, opts mapping.Options) (*mapping.Result, error) {
		res, err := mapping.Map(rec, opts)
		if err != nil {
			return nil, err
		}
		for i, e := range res.Entries {
			raw, err := mapping.MarshalResource(e.Resource)
			if err != nil {
				return nil, err
			}
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				return nil, err
			}
			fn(e.ResourceType, doc)
			out, _ := json.Marshal(doc)
			res.Entries[i].Resource = json.RawMessage(out)
		}
		return res, nil
	}
}

// codings returns the codings of a CodeableConcept member.
func codings(doc map[string]any, member string) []any {
	cc, _ := doc[member].(map[string]any)
	c, _ := cc["coding"].([]any)
	return c
}

// Test mappings: one detail changed each.
var (
	heartRateDisplay = alter(func(typ string, doc map[string]any) {
		if typ != "Observation" {
			return
		}
		for _, c := range codings(doc, "code") {
			if m := c.(map[string]any); m["code"] == "8867-4" {
				m["display"] = "Heart rate (beats per minute)"
			}
		}
	})
	doseUnit = alter(func(typ string, doc map[string]any) {
		if typ != "MedicationAdministration" {
			return
		}
		if d, ok := doc["dosage"].(map[string]any); ok {
			if q, ok := d["dose"].(map[string]any); ok {
				q["unit"] = "milligram"
			}
		}
	})
	addedPHQCode = alter(func(typ string, doc map[string]any) {
		if typ != "Observation" {
			return
		}
		cc, _ := doc["code"].(map[string]any)
		for _, c := range codings(doc, "code") {
			if c.(map[string]any)["code"] == "44261-6" {
				cc["coding"] = append(cc["coding"].([]any), map[string]any{"system": "http://snomed.info/sct", "code": "720433000"})
				return
			}
		}
	})
)

// operator is an all-tenant operator's scope.
func operator() *auditlog.Scope {
	return auditlog.NewScope("mapping-replay", &auth.Principal{ClientID: "ops", Tenant: search.AllTenants,
		Scopes: auth.ParseScopes("system/*.cruds gateway/operator")})
}

func (f *fixture) service(m replay.MapFunc) *replay.Service {
	return replay.New(replay.Config{Store: f.st, Engine: f.a.Engine, Ingest: f.a.Ingest, Map: m, MappingVersion: "2.0.0-test",
		Destinations: []string{"ehr", "ehr-main"}})
}

// run replays and returns the summary and each record's result by id.
func run(t testing.TB, s *replay.Service, opts replay.Options) (*replay.Summary, map[string]replay.RecordResult) {
	t.Helper()
	got := map[string]replay.RecordResult{}
	sum, err := s.Run(context.Background(), operator(), opts, func(r replay.RecordResult) error {
		got[r.RecordID] = r
		return nil
	}, nil)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return sum, got
}

func TestUnchangedMapping(t *testing.T) {
	f := newFixture(t)
	recs := f.load(t)
	sum, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if sum.Records != len(recs) || sum.Unchanged != len(recs) {
		t.Errorf("summary = %+v, want %d records unchanged", sum, len(recs))
	}
	for id, r := range got {
		if r.Status != replay.StatusUnchanged || r.MappingVersion != mapping.Version {
			t.Errorf("%s: %+v", id, r)
		}
	}
}

// TestOneDetailChanged: each test mapping changes exactly the records it
// concerns, at the right paths; the others are unchanged.
func TestOneDetailChanged(t *testing.T) {
	f := newFixture(t)
	recs := f.load(t)
	cases := []struct {
		name    string
		m       replay.MapFunc
		kinds   []string // the kinds of the records it changes
		typ     string
		path    string // a changed path of each changed record
		group   string
		changed int
	}{
		{"display", heartRateDisplay, []string{"session", "vitals"}, "Observation", "Observation.code.coding[0].display",
			"Observation.code.coding.display changed", 5},
		{"unit", doseUnit, []string{"session"}, "MedicationAdministration", "MedicationAdministration.dosage.dose.unit",
			"MedicationAdministration.dosage.dose.unit changed", 3},
		// A session document holds a PHQ-9 too.
		{"added code", addedPHQCode, []string{"session", "assessment"}, "Observation", "Observation.code.coding[1]",
			"Observation.code.coding added", 6},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sum, got := run(t, f.service(tc.m), replay.Options{Tenant: search.AllTenants})
			if sum.Changed != tc.changed || sum.Unchanged != len(recs)-tc.changed || sum.Refused+sum.Diverged+sum.NoInput != 0 {
				t.Errorf("summary = %+v", sum)
			}
			if len(sum.Groups) == 0 || sum.Groups[0].Change != tc.group || sum.Groups[0].Records != tc.changed {
				t.Errorf("groups = %+v, want %q first with %d records", sum.Groups, tc.group, tc.changed)
			}
			for _, rec := range recs {
				r := got[rec.id]
				want := replay.StatusUnchanged
				if slices.Contains(tc.kinds, rec.kind) {
					want = replay.StatusChanged
				}
				if r.Status != want {
					t.Errorf("%s %s: %s, want %s", rec.kind, rec.id, r.Status, want)
					continue
				}
				if want == replay.StatusUnchanged {
					continue
				}
				found := false
				for _, d := range r.Resources {
					if !strings.HasPrefix(d.Resource, tc.typ+"/") || d.Change != replay.OpChanged {
						t.Errorf("%s: unexpected diff %+v", rec.id, d)
					}
					for _, c := range d.Changes {
						if c.Path == tc.path {
							found = true
						} else {
							t.Errorf("%s: unexpected change %+v", rec.id, c)
						}
						if c.Old != nil || c.New != nil {
							t.Errorf("%s: values shown without ShowValues: %+v", rec.id, c)
						}
					}
				}
				if !found {
					t.Errorf("%s: no change at %s in %+v", rec.id, tc.path, r.Resources)
				}
			}
		})
	}
	// Values on request.
	_, got := run(t, f.service(heartRateDisplay), replay.Options{Tenant: search.AllTenants, ShowValues: true})
	c := got[recs[0].id].Resources[0].Changes[0]
	if c.Old != "Heart rate" || c.New != "Heart rate (beats per minute)" {
		t.Errorf("with values: %+v", c)
	}
}

// versions returns the current version of every resource of a type of
// tenant, by id.
func (f *fixture) versions(t testing.TB, tenant, typ string) map[string]*store.Resource {
	t.Helper()
	out := map[string]*store.Resource{}
	after := ""
	for {
		page, err := f.st.Export(context.Background(), store.ExportQuery{Type: typ, Tenant: tenant, After: after, Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page {
			out[r.ID] = r
		}
		if len(page) < 1000 {
			return out
		}
		after = page[len(page)-1].ID
	}
}

// TestApply: apply writes new versions (Observations corrected), a
// Provenance with both mapping versions and the reason, the ledger's new
// mapping version, and deliveries to the destination that had the old
// versions; a second apply changes nothing.
func TestApply(t *testing.T) {
	f := newFixture(t)
	recs := f.load(t)
	ctx := context.Background()
	before := f.versions(t, "clinic-a", "Observation")
	items, _ := f.st.Deliveries(ctx, store.DeliveryFilter{Limit: 1000})
	s := f.service(heartRateDisplay)
	sum, got := run(t, s, replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "heart rate display fixed"})
	if sum.Changed != 5 || sum.Deliveries != 5 {
		t.Fatalf("apply summary = %+v", sum)
	}
	after := f.versions(t, "clinic-a", "Observation")
	corrected := 0
	for id, r := range after {
		var doc map[string]any
		_ = json.Unmarshal(r.Body, &doc)
		isHR := false
		for _, c := range codings(doc, "code") {
			isHR = isHR || c.(map[string]any)["code"] == "8867-4"
		}
		switch {
		case isHR && (r.Version != before[id].Version+1 || doc["status"] != "corrected"):
			t.Errorf("heart rate Observation %s: v%d status %v, want v%d corrected", id, r.Version, doc["status"], before[id].Version+1)
		case isHR && (r.Method != "PUT" || r.Status != 200):
			// history shows a correction as the update it is
			t.Errorf("heart rate Observation %s: v%d made by %q %d, want PUT 200", id, r.Version, r.Method, r.Status)
		case isHR:
			corrected++
		case r.Version != before[id].Version:
			t.Errorf("Observation %s was written (v%d), though unchanged", id, r.Version)
		}
	}
	if corrected == 0 {
		t.Fatal("no heart rate Observation corrected")
	}
	for _, rec := range recs[:5] {
		r := got[rec.id]
		if !r.Applied || r.Deliveries != 1 || r.Resources[0].Written == "" {
			t.Errorf("%s: %+v", rec.id, r)
		}
	}
	// The Provenance of the correction.
	q, _ := search.Parse("Provenance", map[string][]string{"entity:identifier": {"https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/session-record|" + recs[0].id}}, false)
	q.Tenant = "clinic-a"
	page, err := f.st.Search(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var replayProv map[string]any
	for _, p := range page.Matches {
		if strings.Contains(string(p.Body), "2.0.0-test") {
			_ = json.Unmarshal(p.Body, &replayProv)
		}
	}
	if replayProv == nil {
		t.Fatalf("no Provenance of the replay among %d", len(page.Matches))
	}
	raw, _ := json.Marshal(replayProv)
	// The record's patient (audit.ExtReceiptPatient), as the ingest's
	// receipt names it: reading the correction's receipt names the patient.
	var patient string
	for _, p := range page.Matches {
		var receipt struct {
			Extension []struct {
				URL            string
				ValueReference struct{ Reference string }
			}
		}
		_ = json.Unmarshal(p.Body, &receipt)
		for _, x := range receipt.Extension {
			if x.URL == audit.ExtReceiptPatient && !strings.Contains(string(p.Body), "2.0.0-test") {
				patient = x.ValueReference.Reference
			}
		}
	}
	if patient == "" {
		t.Fatal("the record's ingest receipt names no patient")
	}
	for _, want := range []string{`"code":"UPDATE"`, `"value":"2.0.0-test"`, `"role":"revision"`, `"value":"` + mapping.Version + `"`, "heart rate display fixed",
		`"url":"` + audit.ExtTraceID + `"`, // a trace of its own: the operator's scope has none
		`{"url":"` + audit.ExtReceiptPatient + `","valueReference":{"reference":"` + patient + `"}}`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("replay Provenance lacks %s: %s", want, raw)
		}
	}
	// Its AuditEvent names the source record by identifier, as the
	// record's ingest did: AuditEvent?entity:identifier=<record> finds it.
	named := false
	_ = f.st.AuditChainAfter(ctx, 0, func(e audit.ChainEntry) error {
		var ev struct {
			Subtype []struct{ Code string }
			Entity  []struct {
				What struct {
					Identifier struct{ System, Value string }
				} `json:"what"`
			} `json:"entity"`
		}
		_ = json.Unmarshal(e.Body, &ev)
		for _, en := range ev.Entity {
			id := en.What.Identifier
			named = named || len(ev.Subtype) > 0 && ev.Subtype[0].Code == "mapping-replay" &&
				id.System == "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/session-record" && id.Value == recs[0].id
		}
		return nil
	})
	if !named {
		t.Errorf("no mapping-replay AuditEvent names the source record %s", recs[0].id)
	}
	// The deliveries: one more per changed record, to the destination that
	// had it, with the corrected Observations as conditional updates.
	itemsAfter, _ := f.st.Deliveries(ctx, store.DeliveryFilter{Limit: 1000})
	if len(itemsAfter) != len(items)+5 {
		t.Errorf("%d outbox items after apply, want %d", len(itemsAfter), len(items)+5)
	}
	newest := itemsAfter[0]
	if newest.Destination != "ehr" || !strings.Contains(string(newest.Payload), `"status":"corrected"`) ||
		!strings.Contains(string(newest.Payload), `"method":"PUT","url":"Observation?identifier=`) {
		t.Errorf("correction payload = %.600s", newest.Payload)
	}
	// It follows the record's original delivery in the destination's order.
	original := false
	for _, it := range items {
		if it.Destination == newest.Destination && it.RecordID == newest.RecordID {
			original = true
			if it.OrderKey != newest.OrderKey || it.Patient != newest.Patient || it.Source != newest.Source {
				t.Errorf("correction ordered as %q (patient %q, source %q), the original as %q (%q, %q)",
					newest.OrderKey, newest.Patient, newest.Source, it.OrderKey, it.Patient, it.Source)
			}
		}
	}
	if !original {
		t.Errorf("no original delivery of record %s", newest.RecordID)
	}
	// The lineage of a corrected record: the original receipt lists the
	// original delivery, the replay's receipt the correction, each once.
	lin, err := auditlog.BuildLineage(ctx, f.st, auditlog.LineageQuery{Source: "serenity-clinic-emr", RecordID: recs[0].id, Tenant: search.AllTenants})
	if err != nil {
		t.Fatal(err)
	}
	if len(lin.Receipts) != 2 {
		t.Fatalf("lineage of a corrected record: %d receipts, want the ingest's and the replay's", len(lin.Receipts))
	}
	ids, err := operatorsvc.LoadIDs(ctx, f.st)
	if err != nil {
		t.Fatal(err)
	}
	seenItem := map[int64]bool{}
	for i, rc := range lin.Receipts {
		if len(rc.Deliveries) != 1 {
			t.Errorf("receipt %d (%s, mapping %s): %d deliveries, want its own one", i, rc.Activity, rc.MappingVersion, len(rc.Deliveries))
			continue
		}
		d := rc.Deliveries[0]
		row, ok := ids.Decode(d.ID)
		if !ok {
			t.Fatalf("receipt %d lists delivery %q, not a public id", i, d.ID)
		}
		if seenItem[row] {
			t.Errorf("delivery %d listed under two receipts", row)
		}
		seenItem[row] = true
		corr := strings.Contains(rc.MappingVersion, "2.0.0-test")
		if corr != (row > items[0].ID) {
			t.Errorf("receipt %d (mapping %s) lists delivery %d (newest before the replay: %d)", i, rc.MappingVersion, row, items[0].ID)
		}
		// The replay's receipt gives its reason (p20 F8); the ingest's has none.
		if want := map[bool]string{true: "heart rate display fixed"}[corr]; rc.Reason != want {
			t.Errorf("receipt %d (mapping %s): reason %q, want %q", i, rc.MappingVersion, rc.Reason, want)
		}
	}
	entries := ledger(t, f)
	for _, rec := range recs {
		want := mapping.Version
		if rec.kind != "assessment" {
			want = "2.0.0-test"
		}
		if entries[rec.id] != want {
			t.Errorf("%s: ledger mapping version %q, want %q", rec.id, entries[rec.id], want)
		}
	}

	// A second apply changes nothing.
	sum, _ = run(t, s, replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if sum.Changed != 0 || sum.Unchanged != len(recs) {
		t.Errorf("second apply summary = %+v", sum)
	}
	again := f.versions(t, "clinic-a", "Observation")
	for id, r := range again {
		if r.Version != after[id].Version {
			t.Errorf("second apply wrote %s", id)
		}
	}
	if items2, _ := f.st.Deliveries(ctx, store.DeliveryFilter{Limit: 1000}); len(items2) != len(itemsAfter) {
		t.Errorf("second apply enqueued %d items", len(items2)-len(itemsAfter))
	}
}

// ledger maps record ids to their ledger mapping versions.
func ledger(t testing.TB, f *fixture) map[string]string {
	t.Helper()
	page, err := f.st.LedgerEntries(context.Background(), store.LedgerQuery{Tenant: search.AllTenants, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range page {
		out[l.RecordID] = l.MappingVersion
	}
	return out
}

// TestRefusedAndDiverged: a record the new rules refuse is reported with
// the rule and left untouched; a resource a client changed since is
// reported and left as it is; a record stored without its input says so.
func TestRefusedAndDiverged(t *testing.T) {
	f := newFixture(t)
	recs := f.load(t)
	ctx := context.Background()
	refuse := recs[3].id // a vitals record
	m := func(rec mapping.Record, opts mapping.Options) (*mapping.Result, error) {
		if rec.Env().Source.RecordID == refuse {
			return nil, &mapping.RuleError{Kind: rec.Kind(), Violations: []mapping.Violation{{Rule: "vitals.test-rule",
				Pointer: "/heartRate", Message: "a rule of the test mapping"}}}
		}
		return heartRateDisplay(rec, opts)
	}
	// A client corrects one heart rate Observation of the first session
	// itself.
	_, dry := run(t, f.service(heartRateDisplay), replay.Options{Tenant: search.AllTenants})
	_, hrID, _ := strings.Cut(dry[recs[0].id].Resources[0].Resource, "/")
	hr := f.versions(t, "clinic-a", "Observation")[hrID]
	if hr == nil {
		t.Fatal("no heart rate Observation of the first session")
	}
	sc := auditlog.NewScope("update", &auth.Principal{ClientID: "clinic", Tenant: "clinic-a", Scopes: auth.ParseScopes("system/*.cruds")})
	body := strings.Replace(string(hr.Body), `"status":"final"`, `"status":"amended"`, 1)
	if _, err := f.a.Engine.Update(ctx, sc, "Observation", hr.ID, func() ([]byte, error) { return []byte(body), nil }, engine.Preconditions{}); err != nil {
		t.Fatal(err)
	}
	// A record stored before inputs were kept.
	err := f.st.Write(ctx, func(tx store.Tx) error {
		return tx.PutLedger(&store.Ledger{Source: "old-emr", Kind: "vitals", RecordID: "old-1", Version: "1", ContentHash: "x"})
	})
	if err != nil {
		t.Fatal(err)
	}
	before := f.versions(t, "clinic-a", "Observation")
	sum, got := run(t, f.service(m), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if r := got[refuse]; r.Status != replay.StatusRefused || len(r.Issues) != 1 || r.Issues[0].Rule != "vitals.test-rule" ||
		r.Issues[0].Pointer != "/heartRate" || r.Applied {
		t.Errorf("refused record: %+v", r)
	}
	if r := got["old-1"]; r.Status != replay.StatusNoInput {
		t.Errorf("record without input: %+v", r)
	}
	first := got[recs[0].id]
	skipped := 0
	for _, d := range first.Resources {
		if d.Resource == "Observation/"+hr.ID {
			if d.Skipped == "" || d.Written != "" {
				t.Errorf("the client's Observation: %+v", d)
			}
			// Skipped is the reason; the reports say "left as it is"
			// before it (the CLI's text, the console's page).
			if strings.Contains(d.Skipped, "left as it is") {
				t.Errorf("Skipped = %q repeats what the reports say before it", d.Skipped)
			}
			skipped++
		}
	}
	if skipped != 1 || first.Status != replay.StatusChanged || !first.Applied {
		t.Errorf("first session: %+v", first)
	}
	after := f.versions(t, "clinic-a", "Observation")
	if after[hr.ID].Version != before[hr.ID].Version {
		t.Errorf("the client's Observation was overwritten")
	}
	for id, r := range after {
		if strings.Contains(string(r.Body), refuse) && r.Version != before[id].Version {
			t.Errorf("an Observation of the refused record was written: %s", id)
		}
	}
	// The first session was written but for the client's Observation:
	// partly diverged, counted apart (the CLI exits 1 on it).
	if sum.Refused != 1 || sum.NoInput != 1 || sum.Changed != 4 || sum.PartlyDiverged != 1 {
		t.Errorf("summary = %+v", sum)
	}
}

// TestFilters: kind, tenant, source and since select records; a filter
// that matches nothing gives zero counts; an unknown kind or tenant is an
// error naming the valid ones.
func TestFilters(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	s := f.service(nil)
	for _, tc := range []struct {
		opts replay.Options
		n    int
	}{
		{replay.Options{Tenant: search.AllTenants, Kind: "session"}, 3},
		{replay.Options{Tenant: "clinic-a"}, 5},
		{replay.Options{Tenant: ""}, 3},
		{replay.Options{Tenant: search.AllTenants, Source: "serenity-clinic-emr"}, 8},
		{replay.Options{Tenant: "clinic-a", Source: "serenity-clinic-emr"}, 5},
		{replay.Options{Tenant: search.AllTenants, Since: time.Now().Add(-time.Hour)}, 8},
		{replay.Options{Tenant: "clinic-a", Kind: "assessment"}, 0},
	} {
		sum, _ := run(t, s, tc.opts)
		if sum.Records != tc.n {
			t.Errorf("%+v: %d records, want %d", tc.opts, sum.Records, tc.n)
		}
	}
	_, err := s.Run(context.Background(), operator(), replay.Options{Tenant: "clinic-z"}, nil, nil)
	_, issues := outcome.From(err)
	if err == nil || !strings.Contains(fmt.Sprint(err), "replay-tenant-unknown") || len(issues) == 0 || !strings.Contains(issues[0].Message, `the default tenant ("")`) {
		t.Errorf("unknown tenant: %v %+v; want the default tenant named as such", err, issues)
	}
	_, err = s.Run(context.Background(), operator(), replay.Options{Tenant: search.AllTenants, Kind: "nope"}, nil, nil)
	if err == nil || !strings.Contains(fmt.Sprint(err), "replay-kind-unknown") {
		t.Errorf("unknown kind: %v", err)
	}
	// A misspelt source, and a since in the future (a mistyped year),
	// would replay nothing and look like "nothing to replay": refused,
	// by Run and Submit alike.
	for _, tc := range []struct {
		opts replay.Options
		rule string
	}{
		{replay.Options{Tenant: search.AllTenants, Source: "serenity-clinc-emr"}, "replay-source-unknown"},
		{replay.Options{Tenant: "clinic-a", Source: "nope"}, "replay-source-unknown"},
		{replay.Options{Tenant: search.AllTenants, Since: time.Now().Add(time.Hour)}, "replay-since-future"},
		{replay.Options{Tenant: "", Since: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), Apply: true, Reason: "x"}, "replay-since-future"},
	} {
		_, err := s.Run(context.Background(), operator(), tc.opts, nil, nil)
		kind, issues := outcome.From(err)
		if kind != outcome.Invalid || !strings.Contains(fmt.Sprint(err), tc.rule) || len(issues) == 0 {
			t.Errorf("Run %+v: %v, want Invalid %s", tc.opts, err, tc.rule)
		}
		sc := operator()
		if tc.opts.Apply { // an all-tenant principal applies nothing: the tenant's operator
			sc = auditlog.NewScope("mapping-replay", &auth.Principal{ClientID: "ops-main", Tenant: tc.opts.Tenant,
				Scopes: auth.ParseScopes("system/*.cruds gateway/operator")})
		}
		if _, err := s.Submit(context.Background(), sc, tc.opts, ""); !strings.Contains(fmt.Sprint(err), tc.rule) {
			t.Errorf("Submit %+v: %v, want %s", tc.opts, err, tc.rule)
		}
	}
}

// TestApplyNeedsReason: an apply without a reason, or with one that is not
// one short line, is refused before anything is read or written (Run and
// Submit alike); a dry run needs none.
func TestApplyNeedsReason(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	s := f.service(mapping.Map)
	for _, tc := range []struct {
		opts replay.Options
		rule string
	}{
		{replay.Options{Apply: true}, "replay-reason-missing"},
		{replay.Options{Apply: true, Reason: " \t "}, "replay-reason-missing"},
		{replay.Options{Apply: true, Reason: "fix\nline two"}, "replay-reason-invalid"},
		{replay.Options{Apply: true, Reason: strings.Repeat("é", replay.MaxReason+1)}, "replay-reason-invalid"},
		{replay.Options{Reason: "fix\x00"}, "replay-reason-invalid"},
		{replay.Options{Apply: true, Reason: strings.Repeat("é", replay.MaxReason)}, ""},
		{replay.Options{}, ""},
	} {
		tc.opts.Tenant = search.AllTenants
		err := s.Check(context.Background(), tc.opts)
		kind, issues := outcome.From(err)
		if tc.rule == "" {
			if err != nil {
				t.Errorf("%q (apply %v): %v, want accepted", tc.opts.Reason, tc.opts.Apply, err)
			}
			continue
		}
		if kind != outcome.Invalid || len(issues) == 0 || !strings.Contains(fmt.Sprint(err), tc.rule) || !strings.HasPrefix(issues[0].Message, "reason: ") {
			t.Errorf("%q (apply %v): %v %+v, want Invalid %s naming reason", tc.opts.Reason, tc.opts.Apply, err, issues, tc.rule)
		}
		// It says where the reason is kept, and not that the EHRs get it:
		// a correction Bundle carries the corrected resources only.
		if tc.rule == "replay-reason-missing" && (!strings.Contains(issues[0].Message, "the gateway keeps it in each correction's Provenance") ||
			strings.Contains(issues[0].Message, "sent with it")) {
			t.Errorf("%s: %q, want where the reason is kept (the gateway's Provenance), not that it is sent", tc.rule, issues[0].Message)
		}
		if _, err := s.Run(context.Background(), operator(), tc.opts, nil, nil); !strings.Contains(fmt.Sprint(err), tc.rule) {
			t.Errorf("Run %q: %v, want %s", tc.opts.Reason, err, tc.rule)
		}
		clinicOperator := auditlog.NewScope("mapping-replay", &auth.Principal{ClientID: "ops-a", Tenant: "clinic-a",
			Scopes: auth.ParseScopes("system/*.cruds gateway/operator")})
		if _, err := s.Submit(context.Background(), clinicOperator, tc.opts, ""); !strings.Contains(fmt.Sprint(err), tc.rule) {
			t.Errorf("Submit %q: %v, want %s", tc.opts.Reason, err, tc.rule)
		}
	}
	// An all-tenant principal (an API client, or a console operator with
	// tenant *) writes none: its apply is refused in Submit, which the
	// console calls too (TestAllTenantReplayApply: its dry run is not).
	_, err := s.Submit(context.Background(), operator(), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "fix"}, "")
	if kind, _ := outcome.From(err); kind != outcome.Forbidden || !strings.Contains(fmt.Sprint(err), "tenant-required") {
		t.Errorf("an all-tenant apply: %v, want Forbidden tenant-required", err)
	}
}

// TestApplyInterrupted: an apply stopped after two records, then run
// again, corrects each record once.
func TestApplyInterrupted(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	s := f.service(heartRateDisplay)
	stop := errors.New("stop")
	n := 0
	_, err := s.Run(context.Background(), operator(), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"}, func(r replay.RecordResult) error {
		if r.Applied {
			n++
		}
		if n == 2 {
			return stop
		}
		return nil
	}, nil)
	if !errors.Is(err, stop) {
		t.Fatalf("first run: %v", err)
	}
	// Records the first run's workers had already applied when it stopped
	// are done too.
	if sum, _ := run(t, s, replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"}); sum.Changed > 5-n {
		t.Errorf("second run changed %d records after %d were applied; want at most %d", sum.Changed, n, 5-n)
	}
	if sum, _ := run(t, s, replay.Options{Tenant: search.AllTenants}); sum.Changed != 0 {
		t.Errorf("after the second run %d records still change", sum.Changed)
	}
	for id, r := range f.versions(t, "clinic-a", "Observation") {
		if strings.Contains(string(r.Body), "8867-4") && r.Version != 2 {
			t.Errorf("heart rate Observation %s at version %d, want 2 (corrected once)", id, r.Version)
		}
	}
}

// TestReplayBesideIngest: an apply runs while new records are ingested;
// neither blocks the other and every ingested record is stored.
func TestReplayBesideIngest(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	s := f.service(heartRateDisplay)
	var wg sync.WaitGroup
	const n = 20
	errs := make(chan error, n)
	wg.Go(func() {
		for i := range n {
			body, _ := example(t, "vitals/post-dose-40min.json", 100+i)
			sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "clinic", Tenant: "clinic-a",
				Scopes: auth.ParseScopes("gateway/ingest")})
			if _, err := f.a.Ingest.Ingest(context.Background(), sc, "vitals", body, false, engine.Answer{}); err != nil {
				errs <- err
			}
		}
	})
	sum, err := s.Run(context.Background(), operator(), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"}, nil, nil)
	wg.Wait()
	close(errs)
	if err != nil {
		t.Fatalf("replay beside ingest: %v", err)
	}
	for err := range errs {
		t.Errorf("ingest beside replay: %v", err)
	}
	if got := len(ledger(t, f)); got != 8+n {
		t.Errorf("%d ledger entries, want %d", got, 8+n)
	}
	// Whatever the replay saw is consistent: a second apply finishes the
	// records ingested after the first had passed them, and then nothing
	// is left.
	run(t, s, replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if sum2, _ := run(t, s, replay.Options{Tenant: search.AllTenants}); sum2.Changed != 0 || sum2.Conflicts != 0 {
		t.Errorf("after two applies: %+v (first: %+v)", sum2, sum)
	}
}

// TestMatchedPatientUnchanged: the shipped session examples, imported as
// they are and replayed with the same mapping, are all unchanged, though
// two of them are of one patient and only the first carries a name and a
// gender: the second record matched the Patient by its conditional create
// and never wrote it, so its differences from what that record would make
// are not the record's to report. A client's write to the Patient the
// first record created is still reported, as a divergence of that record.
func TestMatchedPatientUnchanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	files := []string{"esketamine-nasal-session.json", "minimal-not-done-session.json",
		"routine-ketamine-iv-session.json", "stopped-early-serious-adverse-event-session.json"}
	ids := map[string]string{}
	for _, name := range files {
		raw, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "session", name))
		if err != nil {
			t.Fatal(err)
		}
		f.ingest(t, "", "session", raw)
		var doc struct{ Source struct{ RecordID string } }
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		ids[name] = doc.Source.RecordID
	}
	sum, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if sum.Unchanged != len(files) || sum.Diverged != 0 || sum.Changed != 0 {
		t.Errorf("summary = %+v, want %d unchanged", sum, len(files))
	}
	for id, r := range got {
		if r.Status != replay.StatusUnchanged || len(r.Resources) != 0 {
			t.Errorf("%s: %+v, want unchanged", id, r)
		}
	}

	// A client changes the Patient the first record created.
	var pat *store.Resource
	for _, r := range f.versions(t, "", "Patient") {
		if strings.Contains(string(r.Body), "Riley") {
			pat = r
		}
	}
	if pat == nil {
		t.Fatal("no Patient of the esketamine session")
	}
	sc := auditlog.NewScope("update", &auth.Principal{ClientID: "clinic", Scopes: auth.ParseScopes("system/*.cruds")})
	update := func(body string) {
		t.Helper()
		if _, err := f.a.Engine.Update(ctx, sc, "Patient", pat.ID, func() ([]byte, error) { return []byte(body), nil }, engine.Preconditions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A correction of the demographics (docs/mapping.md 8: an
	// administrator's, through the FHIR API) is no divergence of the record:
	// ingest never writes them after the first record.
	update(strings.Replace(string(pat.Body), `"gender":"other"`, `"gender":"unknown"`, 1))
	sum, got = run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if sum.Unchanged != len(files) || sum.Diverged != 0 {
		t.Errorf("after a client corrected the Patient's gender: summary = %+v, want %d unchanged", sum, len(files))
	}
	// A client's change of an identifier the record gave is.
	cur, err := f.a.Engine.Read(ctx, sc, "Patient", pat.ID)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(cur.Body, &doc); err != nil {
		t.Fatal(err)
	}
	ident := doc["identifier"].([]any)
	ident[0].(map[string]any)["use"] = "old" // the identifiers still find the Patient
	changed, _ := json.Marshal(doc)
	update(string(changed))
	sum, got = run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if r := got[ids["esketamine-nasal-session.json"]]; r.Status != replay.StatusDiverged || len(r.Resources) != 1 ||
		r.Resources[0].Resource != "Patient/"+pat.ID || r.Resources[0].Skipped == "" {
		t.Errorf("the record that created the Patient: %+v, want diverged at Patient/%s", r, pat.ID)
	}
	if r := got[ids["minimal-not-done-session.json"]]; r.Status != replay.StatusUnchanged {
		t.Errorf("the record that only matched the Patient: %+v, want unchanged", r)
	}
	if sum.Diverged != 1 || sum.Unchanged != len(files)-1 {
		t.Errorf("summary = %+v, want 1 diverged", sum)
	}
}

// TestMRNChangeUnchanged: a later record that changes the patient's MRN
// and leaves the demographics out writes the Patient with its new MRN and
// the demographics kept (ingest); a replay with the same mapping finds
// neither record changed (probe p12 F14: the second was "changed:
// Patient.name removed", and its apply would have erased them).
func TestMRNChangeUnchanged(t *testing.T) {
	f := newFixture(t)
	first, _ := example(t, "vitals/pre-dose-baseline.json", 1)
	f.ingest(t, "", "vitals", first)
	var doc map[string]any
	if err := json.Unmarshal(first, &doc); err != nil {
		t.Fatal(err)
	}
	src := doc["source"].(map[string]any)
	src["recordId"] = src["recordId"].(string) + "-b"
	patient := doc["patient"].(map[string]any)
	patient["mrn"].(map[string]any)["value"] = "MRN-TEST-NEW-1"
	delete(patient, "name")
	delete(patient, "birthDate")
	second, _ := json.Marshal(doc)
	f.ingest(t, "", "vitals", second)

	sum, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if sum.Records != 2 || sum.Unchanged != 2 {
		t.Errorf("summary = %+v, want 2 records unchanged", sum)
		for id, r := range got {
			t.Logf("%s: %+v", id, r)
		}
	}
}

// TestJobMapping: a replay job records the mapping it was submitted
// under; a gateway running another mapping fails it, naming both (p38 F4:
// an apply queued and reviewed under 2.0.1 ran under 2.3.0 after the
// upgrade, writing 23 versions nobody had reviewed). An apply queued by a
// release that did not record its mapping is failed too; a dry run of it
// runs.
func TestJobMapping(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	ctx := context.Background()
	clinicOperator := auditlog.NewScope("mapping-replay", &auth.Principal{ClientID: "ops-a", Tenant: "",
		Scopes: auth.ParseScopes("system/*.cruds gateway/operator")})
	with := func(version string) *replay.Service {
		return replay.New(replay.Config{Store: f.st, Engine: f.a.Engine, Ingest: f.a.Ingest, Jobs: f.a.Jobs, MappingVersion: version})
	}
	old, cur := with("2.0.1"), with("2.3.0")
	apply, err := old.Submit(ctx, clinicOperator, replay.Options{Apply: true, Reason: "reviewed-dry-run-2.0.1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	dry, err := old.Submit(ctx, clinicOperator, replay.Options{}, "")
	if err != nil {
		t.Fatal(err)
	}
	unrecorded := func(j *store.Job) *store.Job {
		var req map[string]any
		if err := json.Unmarshal(j.Request, &req); err != nil {
			t.Fatal(err)
		}
		delete(req, "mappingVersion")
		c := *j
		c.Request, _ = json.Marshal(req)
		return &c
	}
	for _, tc := range []struct {
		name string
		s    *replay.Service
		job  *store.Job
		want []string // in the reason; none: it runs
	}{
		{"apply, same mapping", old, apply, nil},
		{"apply, other mapping", cur, apply, []string{"replay-mapping-changed", "2.0.1", "2.3.0"}},
		{"dry run, other mapping", cur, dry, []string{"replay-mapping-changed", "2.0.1", "2.3.0"}},
		{"apply of an older release", cur, unrecorded(apply), []string{"replay-mapping-changed", "2.3.0"}},
		{"dry run of an older release", cur, unrecorded(dry), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := replay.CheckJobMapping(tc.s, tc.job)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("CheckJobMapping = %v, want it run", err)
				}
				return
			}
			kind, issues := outcome.From(err)
			if kind == outcome.Internal || len(issues) != 1 {
				t.Fatalf("CheckJobMapping = %v (%v), want a reason the job's owner reads", err, kind)
			}
			for _, w := range tc.want {
				if !strings.Contains(issues[0].Rule+" "+issues[0].Message, w) {
					t.Errorf("CheckJobMapping = %s %q, want %q in it", issues[0].Rule, issues[0].Message, w)
				}
			}
		})
	}
}

// TestApplyMRNSystems: a correction a replay enqueues for a destination
// with MRN systems set carries, as the ingest's deliveries do, only the
// MRNs of those systems (here none of the records'), in the Patient's
// identifiers and in its ifNoneExist.
func TestApplyMRNSystems(t *testing.T) {
	f := newFixture(t)
	f.load(t)
	ctx := context.Background()
	const mrnSystem = "https://serenity-test-hospital.example/fhir/mrn"
	items, _ := f.st.Deliveries(ctx, store.DeliveryFilter{Destination: "ehr", Limit: 1000})
	before := map[int64]bool{}
	carried := false // the originals carry the MRN: the test can fail
	for _, it := range items {
		before[it.ID] = true
		carried = carried || strings.Contains(string(it.Payload), mrnSystem)
	}
	if !carried {
		t.Fatal("no original delivery carries the records' MRN")
	}
	s := replay.New(replay.Config{Store: f.st, Engine: f.a.Engine, Ingest: f.a.Ingest, Map: heartRateDisplay, MappingVersion: "2.0.0-test",
		Destinations: []string{"ehr", "ehr-main"}, MRNSystems: map[string][]string{"ehr": {"https://other-hospital.example/mrn"}}})
	if sum, _ := run(t, s, replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "heart rate display fixed"}); sum.Deliveries == 0 {
		t.Fatalf("apply summary = %+v, want corrections", sum)
	}
	after, _ := f.st.Deliveries(ctx, store.DeliveryFilter{Destination: "ehr", Limit: 1000})
	n := 0
	for _, it := range after {
		if before[it.ID] {
			continue
		}
		n++
		if !strings.Contains(string(it.Payload), `"url":"Patient"`) {
			t.Errorf("correction %d has no Patient entry", it.ID)
		}
		if strings.Contains(string(it.Payload), mrnSystem) {
			t.Errorf("correction %d to ehr carries an MRN of a system it does not know", it.ID)
		}
	}
	if n == 0 {
		t.Fatal("no correction enqueued for ehr")
	}
}
