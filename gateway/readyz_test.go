package gateway_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
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
