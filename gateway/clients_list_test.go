package gateway_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// TestClientsList: GET /admin/clients is the access review: each
// registered client's id, tenant, scopes and key ids, never key material;
// an all-tenant auditor sees every client, a clinic's auditor its
// clinic's; it is an auditor's read (p39 F9).
func TestClientsList(t *testing.T) {
	h, _, tok := clientsServer(t, []auth.Client{
		{ID: "clinA", Tenant: "clinic-a", Scopes: []string{"system/*.cruds", auth.ScopeIngest}},
		{ID: "clinB", Tenant: "clinic-b", Scopes: []string{"system/*.cruds"}},
		{ID: "audAll", Tenant: search.AllTenants, Scopes: []string{auth.ScopeAuditor, "system/*.rs"}},
		{ID: "audA", Tenant: "clinic-a", Scopes: []string{auth.ScopeAuditor}},
	})
	type client struct {
		ID, Tenant string
		Scopes     []string
		KeyIDs     []string `json:"keyIds"`
	}
	list := func(who string) []client {
		t.Helper()
		rec := req(h, "GET", "/admin/clients", "", tok[who])
		var b struct{ Clients []client }
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &b) != nil {
			t.Fatalf("GET /admin/clients by %s = %d %s", who, rec.Code, rec.Body)
		}
		for _, secret := range []string{`"x"`, `"y"`, `"kty"`, `"jwks"`, `"keys"`} {
			if strings.Contains(rec.Body.String(), secret) {
				t.Errorf("GET /admin/clients shows key material (%s): %s", secret, rec.Body)
			}
		}
		return b.Clients
	}
	all := list("audAll")
	var ids []string
	for _, c := range all {
		ids = append(ids, c.ID)
		if c.ID == "clinA" && (c.Tenant != "clinic-a" || !slices.Equal(c.Scopes, []string{"system/*.cruds", auth.ScopeIngest}) || !slices.Equal(c.KeyIDs, []string{"k1"})) {
			t.Errorf("clinA = %+v, want clinic-a, its scopes and key k1", c)
		}
	}
	if !slices.Equal(ids, []string{"audA", "audAll", "clinA", "clinB"}) {
		t.Errorf("all-tenant auditor's list = %v, want every client by id", ids)
	}
	ids = nil
	for _, c := range list("audA") {
		ids = append(ids, c.ID)
	}
	if !slices.Equal(ids, []string{"audA", "clinA"}) {
		t.Errorf("clinic-a auditor's list = %v, want clinic-a's clients", ids)
	}
	refused(t, req(h, "GET", "/admin/clients", "", tok["clinA"]), auth.ScopeAuditor, "")
}
