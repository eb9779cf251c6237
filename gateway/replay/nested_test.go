package replay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestNestedRecordSentOnItsOwn: a record nested in a session and the same
// record sent on its own are one record (docs/records.md, record
// identity), and a replay compares each record at its latest version
// (mapping.md §10). After the CADSS assessment the routine session nests
// is sent on its own, the session's copy of it is an older version: the
// session's replay does not compare it with what the later version wrote
// (which is not "another source"), in either order of arrival, and an
// apply of a changed mapping writes each resource from its latest version
// only.
func TestNestedRecordSentOnItsOwn(t *testing.T) {
	session, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	cadss, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "cadss-post-infusion.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ids struct{ Source struct{ RecordID string } }
	_ = json.Unmarshal(session, &ids)
	sessionID := ids.Source.RecordID
	_ = json.Unmarshal(cadss, &ids)
	cadssID := ids.Source.RecordID
	if !strings.Contains(string(session), `"recordId": "`+cadssID+`"`) {
		t.Fatalf("the session example does not nest %s", cadssID)
	}
	// The session again as a newer version (update mode: it writes the
	// nested record's resources again).
	session4 := strings.Replace(strings.Replace(string(session), `"version": "3"`, `"version": "4"`, 1),
		`"lastUpdated": "2026-03-10T11:15:00-05:00"`, `"lastUpdated": "2026-03-10T12:15:00-05:00"`, 1)
	if session4 == string(session) || !strings.Contains(session4, `"version": "4"`) {
		t.Fatal("the session example's version or lastUpdated is not as this test expects")
	}
	bodies := map[string][]byte{"session": session, "assessment": cadss, "session 4": []byte(session4)}
	kinds := map[string]string{"session": "session", "assessment": "assessment", "session 4": "session"}
	for _, tc := range []struct {
		name  string
		order []string // what arrives, in order
		// owner is the record whose version wrote the CADSS Observations
		// last: the one whose replay compares (and corrects) them.
		owner string
	}{
		// The record sent on its own after the session: a later version.
		{"session first", []string{"session", "assessment"}, cadssID},
		// The new session only matched what the record on its own had
		// written (a conditional create): that record's resources.
		{"assessment first", []string{"assessment", "session"}, cadssID},
		// A newer session version that says of the record what it says on
		// its own keeps them as stored (their partOf named the session by
		// identifier, the session's by id: the same Procedure, no change),
		// so the record on its own wrote them last.
		{"session again", []string{"session", "assessment", "session 4"}, cadssID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			for _, name := range tc.order {
				f.ingest(t, "", kinds[name], bodies[name])
			}
			var cadssObs []string // the CADSS Observations ("Observation/id")
			for id, r := range f.versions(t, "", "Observation") {
				if strings.Contains(string(r.Body), `"value":"`+cadssID) {
					cadssObs = append(cadssObs, "Observation/"+id)
				}
			}
			if len(cadssObs) == 0 {
				t.Fatal("no CADSS Observation stored")
			}
			// onCADSS are a result's differences in the CADSS Observations.
			onCADSS := func(r replay.RecordResult) (out []replay.ResourceDiff) {
				for _, d := range r.Resources {
					if slices.Contains(cadssObs, d.Resource) {
						out = append(out, d)
					}
				}
				return out
			}

			// The mapping unchanged: nothing to report of the CADSS
			// Observations, whichever version wrote them.
			sum, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
			for _, id := range []string{sessionID, cadssID} {
				if d := onCADSS(got[id]); len(d) > 0 {
					t.Errorf("%s (%s) reports %d CADSS Observations, the first %+v", id, got[id].Status, len(d), d[0])
				}
			}
			if len(tc.order) == 2 && (sum.Records != 2 || sum.Unchanged != 2) {
				t.Errorf("summary = %+v, want 2 records unchanged", sum)
			}

			// A mapping change in the CADSS Observations is the replay's
			// of the version that wrote them last: one record changes them,
			// the other reports nothing of them.
			changed := alter(func(typ string, doc map[string]any) {
				if typ != "Observation" {
					return
				}
				for _, c := range codings(doc, "code") {
					if m := c.(map[string]any); strings.HasPrefix(m["code"].(string), "cadss") {
						m["display"] = "CADSS (test)"
					}
				}
			})
			other := sessionID
			if tc.owner == sessionID {
				other = cadssID
			}
			_, got = run(t, f.service(changed), replay.Options{Tenant: search.AllTenants})
			if d := onCADSS(got[tc.owner]); len(d) != len(cadssObs) || d[0].Change != replay.OpChanged || d[0].Skipped != "" {
				t.Errorf("the version that wrote them (%s): %d of %d CADSS Observations changed, want all: %+v", tc.owner, len(d), len(cadssObs), d)
			}
			if d := onCADSS(got[other]); len(d) > 0 {
				t.Errorf("the other version (%s, %s) reports %d CADSS Observations, the first %+v", other, got[other].Status, len(d), d[0])
			}
			if len(tc.order) == 2 && got[other].Status != replay.StatusUnchanged {
				t.Errorf("the other version (%s): %s, want unchanged", other, got[other].Status)
			}

			// Applied, the change is made once; nothing is left to change
			// or report of them after (mapping.md §10, step 5).
			run(t, f.service(changed), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
			_, got = run(t, f.service(changed), replay.Options{Tenant: search.AllTenants})
			for _, id := range []string{sessionID, cadssID} {
				if d := onCADSS(got[id]); len(d) > 0 {
					t.Errorf("after the apply, %s (%s) reports %d CADSS Observations, the first %+v", id, got[id].Status, len(d), d[0])
				}
			}
		})
	}
}

// TestNewVersionReplayed: a record's new version is stored in update mode,
// whose PHQ-9 (and C-SSRS) Observations carry their Flag inactive when no
// longer positive (mapping.md §6); one never positive has none stored. The
// replay compares the latest version as it was stored: unchanged, and a
// mapping change applies to it as to any record.
func TestNewVersionReplayed(t *testing.T) {
	session, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	v4 := strings.Replace(strings.Replace(string(session), `"version": "3"`, `"version": "4"`, 1),
		`"lastUpdated": "2026-03-10T11:15:00-05:00"`, `"lastUpdated": "2026-03-10T12:15:00-05:00"`, 1)
	f := newFixture(t)
	f.ingest(t, "", "session", session)
	_, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	for id, r := range got {
		if r.Status != replay.StatusUnchanged {
			t.Errorf("first version: %s: %s %+v, want unchanged", id, r.Status, r.Resources)
		}
	}
	f.ingest(t, "", "session", []byte(v4))
	// Since probe p31 F1 the ingest drops the inactive Flag of a signal
	// that was never positive (no Flag stored to withdraw); databases
	// written before hold one, which asStored still reads as the
	// mapping's.
	if n := len(f.versions(t, "", "Flag")); n != 0 {
		t.Errorf("the new version stored %d Flags of a signal never positive, want none", n)
	}
	sum, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if sum.Records != 1 || sum.Unchanged != 1 {
		t.Errorf("new version: summary = %+v, want 1 record unchanged", sum)
	}
	for id, r := range got {
		if r.Status != replay.StatusUnchanged || len(r.Resources) != 0 {
			t.Errorf("new version: %s: %s %+v, want unchanged", id, r.Status, r.Resources)
		}
	}
	// A mapping change applies to it as to any record, and leaves nothing
	// to change after.
	_, got = run(t, f.service(heartRateDisplay), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	changed := 0
	for id, r := range got {
		if r.Status != replay.StatusChanged || !r.Applied || r.Deliveries != 1 {
			t.Errorf("new version, applied: %s: %s (%d corrections), want changed and applied, one correction", id, r.Status, r.Deliveries)
		}
		changed += len(r.Resources)
	}
	// The correction updates what changed; what it references goes as a
	// conditional create, which changes nothing at the receiver.
	items, err := f.st.Deliveries(context.Background(), store.DeliveryFilter{Limit: 1000})
	if err != nil || len(items) == 0 {
		t.Fatalf("Deliveries = %d, %v", len(items), err)
	}
	var correction struct {
		Entry []struct {
			Resource json.RawMessage
			Request  struct{ Method, URL string }
		}
	}
	if err := json.Unmarshal(items[0].Payload, &correction); err != nil {
		t.Fatal(err)
	}
	puts := 0
	for _, e := range correction.Entry {
		if e.Request.Method == "PUT" {
			puts++
			if !strings.Contains(string(e.Resource), "8867-4") {
				t.Errorf("the correction updates %s, which did not change", e.Request.URL)
			}
		}
	}
	if puts != changed || changed == 0 {
		t.Errorf("the correction updates %d resources, want the %d changed", puts, changed)
	}
	sum, _ = run(t, f.service(heartRateDisplay), replay.Options{Tenant: search.AllTenants})
	if sum.Unchanged != 1 {
		t.Errorf("after the apply: summary = %+v, want 1 record unchanged", sum)
	}
}

// TestWithdrawnNestedNotRevived: a nested adverse event withdrawn later on
// its own (a new version, entered-in-error, which deletes its
// AdverseEvent) is not something the session's replay adds back: the
// deletion was written by a later version of the same record, so the
// session reports nothing of it, and an apply (with a mapping change
// elsewhere) leaves it deleted and sends nothing of it (p24 F1).
func TestWithdrawnNestedNotRevived(t *testing.T) {
	session, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	ae, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "adverse-event", "nausea-mild.json"))
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := strings.Replace(strings.Replace(string(ae), `"version": "1"`, `"version": "2", "status": "entered-in-error"`, 1),
		`"lastUpdated": "2026-03-10T10:30:00-05:00"`, `"lastUpdated": "2026-03-10T12:30:00-05:00"`, 1)
	if !strings.Contains(string(session), `"recordId": "AE-2026-0310-001"`) || !strings.Contains(withdrawn, "entered-in-error") ||
		!strings.Contains(withdrawn, "12:30:00") {
		t.Fatal("the examples are not as this test expects")
	}
	// A second nested adverse event, withdrawn too: each withdrawal is its
	// own record's (the session's replay reads each one's Provenances).
	var doc map[string]any
	if err := json.Unmarshal(session, &doc); err != nil {
		t.Fatal(err)
	}
	aes := doc["adverseEvents"].([]any)
	second := map[string]any{}
	for k, v := range aes[0].(map[string]any) {
		second[k] = v
	}
	second["recordId"], second["event"] = "AE-2026-0310-002", "dizziness"
	doc["adverseEvents"] = append(aes, second)
	if session, err = json.Marshal(doc); err != nil {
		t.Fatal(err)
	}
	withdrawn2 := strings.Replace(strings.Replace(withdrawn, "AE-2026-0310-001", "AE-2026-0310-002", 1), `"nausea"`, `"dizziness"`, 1)
	f := newFixture(t)
	f.ingest(t, "", "session", session)
	if len(f.versions(t, "", "AdverseEvent")) != 2 {
		t.Fatal("the session stored no two AdverseEvents")
	}
	f.ingest(t, "", "adverse-event", []byte(withdrawn))
	f.ingest(t, "", "adverse-event", []byte(withdrawn2))
	if n := len(f.versions(t, "", "AdverseEvent")); n != 0 {
		t.Fatalf("the withdrawals left %d AdverseEvents", n)
	}
	before := map[int64]bool{} // the deliveries the ingests queued
	items, _ := f.st.Deliveries(context.Background(), store.DeliveryFilter{Limit: 1000})
	for _, it := range items {
		before[it.ID] = true
	}
	for _, tc := range []struct {
		name  string
		alter replay.MapFunc // a mapping change, or nil
	}{{"unchanged mapping", nil}, {"a mapping change elsewhere", heartRateDisplay}} {
		_, got := run(t, f.service(tc.alter), replay.Options{Tenant: search.AllTenants})
		for id, r := range got {
			for _, d := range r.Resources {
				if strings.HasPrefix(d.Resource, "AdverseEvent") {
					t.Errorf("%s: %s (%s) reports %+v: the withdrawn AdverseEvent is not the replay's to add", tc.name, id, r.Status, d)
				}
			}
			want := replay.StatusUnchanged
			if strings.HasPrefix(id, "AE-") {
				want = replay.StatusWithdrawn // not compared: its resources are retired
			}
			if (tc.alter == nil || want == replay.StatusWithdrawn) && r.Status != want {
				t.Errorf("%s: %s is %s %+v, want %s", tc.name, id, r.Status, r.Resources, want)
			}
		}
		run(t, f.service(tc.alter), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
		if n := len(f.versions(t, "", "AdverseEvent")); n != 0 {
			t.Fatalf("%s: the apply brought back %d AdverseEvents", tc.name, n)
		}
		items, _ = f.st.Deliveries(context.Background(), store.DeliveryFilter{Limit: 1000})
		corrections := 0
		for _, it := range items {
			if before[it.ID] {
				continue
			}
			corrections++
			if strings.Contains(string(it.Payload), `"resourceType":"AdverseEvent"`) {
				t.Errorf("%s: a correction sends the AdverseEvent again", tc.name)
			}
		}
		if tc.alter != nil && corrections == 0 {
			t.Errorf("%s: no correction queued: the test no longer shows the case", tc.name)
		}
	}
}

// TestDeletedByClientNotRevived: a resource a client deleted is not made
// again by a replay either; it is reported, left as it is, naming the
// deleted resource (p24 F1).
func TestDeletedByClientNotRevived(t *testing.T) {
	session, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.ingest(t, "", "session", session)
	var aeID string
	for id := range f.versions(t, "", "AdverseEvent") {
		aeID = id
	}
	if aeID == "" {
		t.Fatal("the session stored no AdverseEvent")
	}
	sc := auditlog.NewScope("delete", &auth.Principal{ClientID: "clinic", Scopes: auth.ParseScopes("system/*.cruds")})
	if _, err := f.a.Engine.Delete(context.Background(), sc, "AdverseEvent", aeID, engine.Preconditions{}); err != nil {
		t.Fatal(err)
	}
	_, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	r := got["INF-2026-0310-001"]
	if r.Status != replay.StatusDiverged || len(r.Resources) != 1 || r.Resources[0].Resource != "AdverseEvent/"+aeID ||
		!strings.Contains(r.Resources[0].Skipped, "deleted since") {
		t.Fatalf("replay = %s %+v, want diverged: the deleted AdverseEvent, left as it is", r.Status, r.Resources)
	}
	run(t, f.service(nil), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if n := len(f.versions(t, "", "AdverseEvent")); n != 0 {
		t.Fatalf("the apply brought back %d AdverseEvents", n)
	}
	// Without the record's receipts (an audit trail that was off), who
	// deleted it cannot be told, but it is still not made again.
	// (Receipts are read-only through the API: deleted in the store.)
	for _, r := range f.versions(t, "", "Provenance") {
		gone := &store.Resource{Type: r.Type, ID: r.ID, Version: r.Version + 1, Deleted: true, Tenant: r.Tenant, Method: "DELETE", Status: 204}
		if err := f.st.Write(context.Background(), func(tx store.Tx) error { return tx.Put(gone, nil) }); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.versions(t, "", "Provenance")); n != 0 {
		t.Fatalf("%d receipts left", n)
	}
	run(t, f.service(heartRateDisplay), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if n := len(f.versions(t, "", "AdverseEvent")); n != 0 {
		t.Fatalf("without receipts, the apply brought back %d AdverseEvents", n)
	}
}

// TestDeletedMemberNotRevived: a PHQ-9 item Observation a client deleted
// (its total's hasMember and derivedFrom name it) is reported left as it
// is, and nothing else: the total's references to it are what is stored,
// not changes. An apply of a mapping change to the total writes the total
// with those references and does not fail the run (before, the total's
// references named the item's fullUrl, which the apply does not write:
// every apply stopped with reference-unresolved, a review found).
func TestDeletedMemberNotRevived(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	f.ingest(t, "", "assessment", raw)
	var total []byte
	obs := f.versions(t, "", "Observation")
	for _, r := range obs {
		if bytes.Contains(r.Body, []byte(`"44261-6"`)) {
			total = r.Body
		}
	}
	var item string // an item the total names (hasMember, derivedFrom)
	for id := range obs {
		if item == "" && bytes.Contains(total, []byte(`"Observation/`+id+`"`)) {
			item = id
		}
	}
	if item == "" {
		t.Fatal("the assessment stored no item Observation")
	}
	sc := auditlog.NewScope("delete", &auth.Principal{ClientID: "clinic", Scopes: auth.ParseScopes("system/*.cruds")})
	if _, err := f.a.Engine.Delete(context.Background(), sc, "Observation", item, engine.Preconditions{}); err != nil {
		t.Fatal(err)
	}
	_, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	r := got["ASM-2026-0310-001"]
	if r.Status != replay.StatusDiverged || len(r.Resources) != 1 || r.Resources[0].Resource != "Observation/"+item ||
		!strings.Contains(r.Resources[0].Skipped, "deleted since") {
		t.Fatalf("replay = %s %+v, want diverged: only the deleted item, left as it is", r.Status, r.Resources)
	}
	sum, got := run(t, f.service(addedPHQCode), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if r := got["ASM-2026-0310-001"]; r.Status != replay.StatusChanged || !r.Applied {
		t.Fatalf("apply of a change to the total = %s (applied %v) %+v; summary %+v", r.Status, r.Applied, r.Resources, sum)
	}
	if _, ok := f.versions(t, "", "Observation")[item]; ok {
		t.Error("the apply brought the deleted item back")
	}
	for _, o := range f.versions(t, "", "Observation") {
		if bytes.Contains(o.Body, []byte(`"720433000"`)) && !bytes.Contains(o.Body, []byte(`"Observation/`+item+`"`)) {
			t.Errorf("the corrected total no longer names the deleted item as stored: %s", o.Body)
		}
	}
}

// TestRecordInSessionReplayed: a record nested in a session and corrected
// on its own naming no session stays in the session (ingest.InSession):
// the ingest keeps its resources' link to the session, and a replay maps
// its input the same way, so an unchanged mapping finds every record
// unchanged rather than the link to the session cut.
func TestRecordInSessionReplayed(t *testing.T) {
	session, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "session", "routine-ketamine-iv-session.json"))
	if err != nil {
		t.Fatal(err)
	}
	vitals, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "vitals", "pre-dose-baseline.json"))
	if err != nil {
		t.Fatal(err)
	}
	// A later version that names no session and corrects the heart rate.
	v := strings.NewReplacer(`"sessionId": "INF-2026-0310-001",`, "", `"version": "1"`, `"version": "4"`,
		`"lastUpdated": "2026-03-10T09:16:40-05:00"`, `"lastUpdated": "2026-03-10T12:00:00-05:00"`,
		`"heartRate": 76`, `"heartRate": 78`).Replace(string(vitals))
	if strings.Contains(v, "sessionId") || !strings.Contains(v, `"heartRate": 78`) || !strings.Contains(v, `"version": "4"`) {
		t.Fatal("the vitals example is not as this test expects")
	}
	f := newFixture(t)
	f.ingest(t, "", "session", session)
	f.ingest(t, "", "vitals", []byte(v))
	linked := 0
	for _, r := range f.versions(t, "", "Observation") {
		if bytes.Contains(r.Body, []byte(`"VIT-2026-0310-001-`)) && bytes.Contains(r.Body, []byte(`"partOf"`)) {
			linked++
		}
	}
	if linked == 0 {
		t.Fatal("the corrected vitals record's Observations are not part of the session")
	}
	sum, got := run(t, f.service(nil), replay.Options{Tenant: search.AllTenants})
	if sum.Records != 2 || sum.Unchanged != 2 {
		t.Errorf("summary %+v, want 2 records unchanged: %+v", sum, got)
	}
}

// TestWithdrawnRecordNotReplayed: a record whose latest version withdraws
// it is not compared with a changed mapping, nor written by an apply: its
// resources are retired (a mapping developer's review: an apply wrote new
// versions of a withdrawn session's resources, entered-in-error, and
// would have sent them to the EHRs as corrections). It is counted as
// withdrawn.
func TestWithdrawnRecordNotReplayed(t *testing.T) {
	vitals, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "vitals", "pre-dose-baseline.json"))
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := strings.NewReplacer(`"version": "1"`, `"version": "2", "status": "entered-in-error"`,
		`"lastUpdated": "2026-03-10T09:16:40-05:00"`, `"lastUpdated": "2026-03-10T12:00:00-05:00"`).Replace(string(vitals))
	f := newFixture(t)
	f.ingest(t, "", "vitals", vitals)
	f.ingest(t, "", "vitals", []byte(withdrawn))
	before := f.versions(t, "", "Observation")
	sum, got := run(t, f.service(heartRateDisplay), replay.Options{Tenant: search.AllTenants, Apply: true, Reason: "test"})
	if sum.Records != 1 || sum.Withdrawn != 1 || sum.Changed != 0 || got["VIT-2026-0310-001"].Status != replay.StatusWithdrawn {
		t.Errorf("summary %+v, records %+v; want the one record withdrawn", sum, got)
	}
	for id, r := range f.versions(t, "", "Observation") {
		if r.Version != before[id].Version {
			t.Errorf("Observation %s written by the replay: version %d, was %d", id, r.Version, before[id].Version)
		}
	}
}
