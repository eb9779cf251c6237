package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestAdminScopes: the auditor's API (reads of the trail, lineage, the
// chain, deliveries) takes gateway/auditor, so an auditor need not hold
// gateway/operator and its writes (separation of duties, p39 F3); an
// operator reads them too; every write (retry, cancel, replays, reindex)
// still needs gateway/operator. Every /admin route is in the table, so a
// new one must state its scope here.
func TestAdminScopes(t *testing.T) {
	const auditor, operator = auth.ScopeAuditor, auth.ScopeOperator
	routes := []struct{ method, path, scope string }{
		{"GET", "/admin/deliveries", auditor},
		{"GET", "/admin/deliveries/:id", auditor},
		{"POST", "/admin/deliveries/:id/retry", operator},
		{"POST", "/admin/deliveries/:id/cancel", operator},
		{"POST", "/admin/deliveries/replay", operator},
		{"POST", "/admin/replay", operator},
		{"POST", "/admin/reindex", operator},
		{"GET", "/admin/lineage", auditor},
		{"GET", "/admin/audit/verify", auditor},
		{"GET", "/admin/audit/export", auditor},
		{"GET", "/admin/clients", auditor},
	}
	got := gateway.AdminScopes()
	for _, r := range routes {
		if s, ok := got[r.method+" "+r.path]; !ok {
			t.Errorf("%s %s is not in the route table", r.method, r.path)
		} else if s != r.scope {
			t.Errorf("%s %s needs %q, want %q", r.method, r.path, s, r.scope)
		}
		delete(got, r.method+" "+r.path)
	}
	for k, s := range got {
		t.Errorf("%s (scope %q) is not in this test's table: state the scope it needs", k, s)
	}

	h, _, tok := clientsServer(t, []auth.Client{
		{ID: "aud", Tenant: search.AllTenants, Scopes: []string{auditor, "system/*.rs"}},
		{ID: "op", Tenant: search.AllTenants, Scopes: []string{operator}},
		{ID: "reader", Tenant: search.AllTenants, Scopes: []string{"system/*.rs"}},
	})
	for _, r := range routes {
		target := strings.ReplaceAll(r.path, ":id", "1")
		for _, client := range []string{"aud", "op", "reader"} {
			allowed := client == "op" || (client == "aud" && r.scope == auditor)
			t.Run(r.method+" "+r.path+" "+client, func(t *testing.T) {
				rec := req(h, r.method, target, "", tok[client])
				if !allowed {
					refused(t, rec, r.scope, "")
					return
				}
				if rec.Code == http.StatusForbidden && strings.Contains(rec.Body.String(), "scope-insufficient") {
					t.Errorf("%s %s by %s = %d %s, want it allowed", r.method, target, client, rec.Code, rec.Body)
				}
			})
		}
	}
}
