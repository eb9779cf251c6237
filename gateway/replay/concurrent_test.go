package replay_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/ordered"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/replay"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// amended is a vitals record's version 2: an hour later, another heart
// rate.
func amended(t testing.TB, v1 []byte, heartRate int) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(v1, &doc); err != nil {
		t.Fatal(err)
	}
	src := doc["source"].(map[string]any)
	src["version"], src["lastUpdated"] = "2", "2026-03-10T10:16:40-05:00"
	doc["heartRate"] = heartRate
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// heartRates are the values of the tenant's current heart rate
// Observations.
func (f *fixture) heartRates(t testing.TB, tenant string) []float64 {
	t.Helper()
	var out []float64
	for _, r := range f.versions(t, tenant, "Observation") {
		if !strings.Contains(string(r.Body), `"8867-4"`) {
			continue
		}
		var doc struct {
			ValueQuantity struct{ Value float64 } `json:"valueQuantity"`
		}
		_ = json.Unmarshal(r.Body, &doc)
		out = append(out, doc.ValueQuantity.Value)
	}
	return out
}

// TestApplyBesideAmendment: the clinic's version 2 of a record is stored
// after the replay read version 1's ledger entry and before it compared
// it (a walk reads the ledger a page ahead; the CLI's whole run can be one
// page). Version 1's input, mapped, differs from what version 2 wrote;
// the apply must not write it back: the record is a conflict, version 2's
// content stays, nothing is enqueued, the ledger keeps its mapping
// versions. The next run replays version 2.
func TestApplyBesideAmendment(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	v1, id := example(t, "vitals/pre-dose-baseline.json", 30)
	f.ingest(t, "clinic-a", "vitals", v1)
	v2 := amended(t, v1, 91)
	s := f.service(heartRateDisplay)
	var once sync.Once
	replay.SetBeforeCompare(s, func(l *store.Ledger) {
		if l.RecordID != id || l.Version != "1" {
			return
		}
		once.Do(func() {
			sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "clinic", Tenant: "clinic-a",
				Scopes: auth.ParseScopes("gateway/ingest system/*.cruds")})
			if _, err := f.a.Ingest.Ingest(ctx, sc, mapping.KindVitals, v2, false, engine.Answer{}); err != nil {
				t.Errorf("ingest version 2: %v", err)
			}
		})
	})
	opts := replay.Options{Tenant: "clinic-a", Kind: mapping.KindVitals, Apply: true, Reason: "heart rate display fixed"}
	sum, got := run(t, s, opts)
	items, _ := f.st.Deliveries(ctx, store.DeliveryFilter{RecordID: id, Limit: 1000})
	if r := got[id]; r.Status != replay.StatusConflict || r.Applied || r.Version != "1" || sum.Conflicts != 1 || sum.Deliveries != 0 {
		t.Errorf("record replayed beside its amendment: %+v (summary %+v), want a conflict, nothing applied", r, sum)
	}
	if hr := f.heartRates(t, "clinic-a"); len(hr) != 1 || hr[0] != 91 {
		t.Errorf("heart rates after the apply = %v, want [91] (version 2's)", hr)
	}
	if len(items) != 2 { // version 1's and version 2's
		t.Errorf("%d outbox items of the record, want 2 (its versions; no correction)", len(items))
	}
	if m := ledger(t, f)[id]; m != mapping.Version {
		t.Errorf("ledger mapping version %q, want %q (not replayed)", m, mapping.Version)
	}

	// The next run replays version 2.
	replay.SetBeforeCompare(s, nil)
	_, got = run(t, s, opts)
	if r := got[id]; r.Status != replay.StatusChanged || !r.Applied || r.Version != "2" {
		t.Errorf("next run: %+v, want version 2 changed and applied", r)
	}
	if hr := f.heartRates(t, "clinic-a"); len(hr) != 1 || hr[0] != 91 {
		t.Errorf("heart rates after the next run = %v, want [91]", hr)
	}
}

// TestApplyStopped: an apply stopped midway (its job cancelled) finishes
// the record it is applying, starts no other, and its final word says how
// many records it had already changed and how many corrections it
// enqueued: those stay, and the cancel's answer and AuditEvent quote it.
func TestApplyStopped(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := range 5 {
		body, _ := example(t, "vitals/pre-dose-baseline.json", 50+i)
		f.ingest(t, "clinic-a", "vitals", body)
	}
	s := replay.New(replay.Config{Store: f.st, Engine: f.a.Engine, Ingest: f.a.Ingest, Map: heartRateDisplay,
		MappingVersion: "2.0.0-test", Destinations: []string{"ehr"}, Workers: 1})
	stop := make(chan struct{})
	n := 0
	replay.SetBeforeCompare(s, func(*store.Ledger) {
		if n++; n == 2 {
			close(stop) // the second record is being replayed: it finishes
		}
	})
	sum, err := replay.RunUntil(ctx, s, operator(), replay.Options{Tenant: "clinic-a", Apply: true, Reason: "test"}, stop, nil)
	if !errors.Is(err, ordered.ErrStopped) {
		t.Fatalf("stopped apply: %v", err)
	}
	written := 0
	for _, v := range ledger(t, f) {
		if v == "2.0.0-test" {
			written++
		}
	}
	if sum.Records != 2 || sum.Changed != 2 || written != 2 {
		t.Errorf("stopped after %+v, %d records written; want 2 replayed and written", sum, written)
	}
	want := "the replay (apply) stopped after 2 records: 2 changed (written), 0 unchanged, 0 refused now, 0 diverged, 0 in conflict, " +
		"0 without a stored input; 2 corrections enqueued"
	if got := replay.Stopped(sum); !strings.HasPrefix(got, want) {
		t.Errorf("Stopped = %q, want %q...", got, want)
	}
}
