package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestReadyFiguresNeedAllTenantOperator: with clients configured, /readyz
// answers anyone its status and database, but the delivery backlog per
// destination (a live count of the records a clinic's destination is
// sent) only to a caller with an all-tenant gateway/operator token; a
// clinic's operator, a client without the scope, a bad token and no token
// get none, and none of them is refused.
func TestReadyFiguresNeedAllTenantOperator(t *testing.T) {
	h, _, tok := clientsServer(t, []auth.Client{
		{ID: "clinA", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
		{ID: "opA", Tenant: "clinic-a", Scopes: []string{auth.ScopeOperator}},
		{ID: "opAll", Tenant: search.AllTenants, Scopes: []string{auth.ScopeOperator, "system/*.rs"}},
	})
	for _, tc := range []struct {
		name    string
		headers []string
		figures bool
	}{
		{"anonymous", nil, false},
		{"bad token", []string{"Authorization: Bearer not-a-token"}, false},
		{"clinic client", []string{tok["clinA"]}, false},
		{"clinic operator", []string{tok["opA"]}, false},
		{"all-tenant operator", []string{tok["opAll"]}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := req(h, http.MethodGet, "/readyz", "", tc.headers...)
			var body map[string]json.RawMessage
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
				t.Fatalf("/readyz = %d %s (%v), want 200", rec.Code, rec.Body, err)
			}
			if _, ok := body["deliveries"]; ok != tc.figures {
				t.Errorf("/readyz = %s: deliveries given %v, want %v", rec.Body, ok, tc.figures)
			}
			if _, ok := body["pool"]; ok != tc.figures {
				t.Errorf("/readyz = %s: pool given %v, want %v", rec.Body, ok, tc.figures)
			}
			if tc.figures {
				var pool struct{ InUse, Max, Waits, WriteQueue, WriteQueueMax *int64 }
				if err := json.Unmarshal(body["pool"], &pool); err != nil || pool.InUse == nil || pool.Max == nil ||
					*pool.Max < 1 || pool.Waits == nil || pool.WriteQueue == nil || pool.WriteQueueMax == nil || *pool.WriteQueueMax < 1 {
					t.Errorf("/readyz pool = %s (%v), want inUse, max >= 1, waits, writeQueue, writeQueueMax >= 1", body["pool"], err)
				}
			}
			if string(body["status"]) != `"ready"` || string(body["database"]) != `"ok"` {
				t.Errorf("/readyz = %s, want status ready, database ok", rec.Body)
			}
		})
	}
}

// gapsWorker is a delivery worker whose capability check found gaps.
type gapsWorker struct{ gaps []operator.CapabilityGap }

func (gapsWorker) Holds() map[string]time.Time                { return nil }
func (gapsWorker) Release(string) bool                        { return false }
func (w gapsWorker) CapabilityGaps() []operator.CapabilityGap { return w.gaps }

// TestReadyCapabilityGaps: /readyz lists, to whom may see the delivery
// figures, each destination's capability gaps (the resource types its
// CapabilityStatement does not support, a check that failed) and stays
// ready (200): an EHR's configuration is no reason to take a replica out
// of rotation; [] when there are none, absent without destinations.
func TestReadyCapabilityGaps(t *testing.T) {
	ctx := context.Background()
	st := tempSQLite(t, sqlite.Options{})
	a, err := app.New(app.Config{Store: st, BacklogEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	h, err := gateway.NewServer(gateway.Config{App: a, RateLimit: -1})
	if err != nil {
		t.Fatal(err)
	}
	body := func() map[string]json.RawMessage {
		t.Helper()
		rec := req(h, http.MethodGet, "/readyz", "")
		var b map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || rec.Code != http.StatusOK || string(b["status"]) != `"ready"` {
			t.Fatalf("/readyz = %d %s (%v), want 200 ready", rec.Code, rec.Body, err)
		}
		return b
	}
	if g, ok := body()["capabilityGaps"]; ok {
		t.Errorf("/readyz without a delivery worker: capabilityGaps %s, want none", g)
	}
	a.Operator.SetWorker(gapsWorker{})
	if g := string(body()["capabilityGaps"]); g != "[]" {
		t.Errorf("/readyz capabilityGaps = %s, want []", g)
	}
	since := time.Date(2026, 12, 6, 8, 0, 0, 0, time.UTC)
	a.Operator.SetWorker(gapsWorker{gaps: []operator.CapabilityGap{
		{Destination: "hosp", Unsupported: []operator.UnsupportedType{{ResourceType: "AdverseEvent", Listed: true, MissingInteractions: []string{"delete"}}}},
		{Destination: "lab", CheckFailed: "metadata: connection refused", CheckFailedSince: &since},
	}})
	want := `[{"destination":"hosp","unsupported":[{"resourceType":"AdverseEvent","listed":true,"missingInteractions":["delete"]}]},` +
		`{"destination":"lab","checkFailed":"metadata: connection refused","checkFailedSince":"2026-12-06T08:00:00Z"}]`
	if g := string(body()["capabilityGaps"]); g != want {
		t.Errorf("/readyz capabilityGaps = %s, want %s", g, want)
	}
	// A flags-only gap: missingInteractions is [] (as documented), not null.
	a.Operator.SetWorker(gapsWorker{gaps: []operator.CapabilityGap{
		{Destination: "hosp", Unsupported: []operator.UnsupportedType{{ResourceType: "Patient", Listed: true, MissingFlags: []string{"conditionalCreate"}}}},
	}})
	want = `[{"destination":"hosp","unsupported":[{"resourceType":"Patient","listed":true,"missingInteractions":[],"missingFlags":["conditionalCreate"]}]}]`
	if g := string(body()["capabilityGaps"]); g != want {
		t.Errorf("/readyz capabilityGaps = %s, want %s", g, want)
	}
}
