package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestCancelDeliveryAPI: POST /admin/deliveries/{id}/cancel?reason= makes
// a pending delivery a dead letter "cancelled by operator: <reason>" (a
// reason is required; a delivered one is 409), and a retry of a later
// version of the record waiting behind it names it (waitingFor).
func TestCancelDeliveryAPI(t *testing.T) {
	h, st, tok := clientsServer(t, []auth.Client{{ID: "op", Tenant: "clinic-a", Scopes: []string{auth.ScopeOperator}},
		{ID: "opAll", Tenant: search.AllTenants, Scopes: []string{auth.ScopeOperator}}})
	ctx := context.Background()
	var items []*store.OutboxItem
	for _, v := range []string{"1", "2"} {
		it := &store.OutboxItem{Destination: "ehr", Tenant: "clinic-a", OrderKey: "src|session|R1", Patient: "src|P", Kind: "session",
			Source: "src", RecordID: "R1", Version: v, Payload: []byte(`{}`)}
		if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	list := decode(t, req(h, "GET", "/admin/deliveries", "", tok["op"]))["deliveries"].([]any)
	v2, v1 := list[0].(map[string]any)["id"].(string), list[1].(map[string]any)["id"].(string)

	// An all-tenant operator reads every clinic's deliveries but changes
	// none: a clinic's cancel withholds a record, a retry would undo it
	// (p17 F3).
	for _, action := range []string{"retry", "cancel?reason=x"} {
		if rec := req(h, "POST", "/admin/deliveries/"+v1+"/"+action, "", tok["opAll"]); rec.Code != http.StatusForbidden ||
			!strings.Contains(rec.Body.String(), "tenant-required") {
			t.Errorf("%s by an all-tenant operator = %d %s, want 403 tenant-required", action, rec.Code, rec.Body)
		}
	}
	rec := req(h, "POST", "/admin/deliveries/"+v2+"/retry", "", tok["op"])
	if got := decode(t, rec); rec.Code != http.StatusOK || got["waitingFor"] != v1 {
		t.Errorf("retry of v2 = %d %s, want 200 naming %s (waitingFor)", rec.Code, rec.Body, v1)
	}
	if got := decode(t, req(h, "GET", "/admin/deliveries/"+v2, "", tok["op"])); got["waitingFor"] != v1 {
		t.Errorf("show v2: waitingFor %v, want %s", got["waitingFor"], v1)
	}
	for _, tc := range []struct {
		name, query, body string
		code              int
	}{
		{"no reason", "", "", http.StatusBadRequest},
		{"an empty reason in the body", "", "reason=", http.StatusBadRequest},
		// In the body, out of proxies' access logs.
		{"a reason", "", "reason=" + url.QueryEscape("EHR refuses v1; corrected in v2"), http.StatusOK},
	} {
		rec := req(h, "POST", "/admin/deliveries/"+v1+"/cancel"+tc.query, tc.body, tok["op"], "Content-Type: application/x-www-form-urlencoded")
		if rec.Code != tc.code {
			t.Errorf("%s: cancel = %d %s, want %d", tc.name, rec.Code, rec.Body, tc.code)
		}
	}
	// The reason is the operator's free text: with the delivery, not in
	// the AuditEvent (docs/audit.md: descriptions carry no free text).
	var last []byte
	if err := st.AuditChainAfter(ctx, 0, func(e audit.ChainEntry) error { last = e.Body; return nil }); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(last), "delivery-cancel") || strings.Contains(string(last), "corrected in v2") {
		t.Errorf("the cancel's AuditEvent = %s, want it without the reason", last)
	}
	it, _, err := st.Delivery(ctx, items[0].ID)
	if err != nil || it.Status != store.StatusDead || it.LastError != "cancelled by operator: EHR refuses v1; corrected in v2" {
		t.Fatalf("v1 after the cancel: %+v %v", it, err)
	}
	if got := decode(t, req(h, "GET", "/admin/deliveries/"+v2, "", tok["op"])); got["waitingFor"] != nil {
		t.Errorf("show v2 after the cancel: waitingFor %v, want none", got["waitingFor"])
	}
	// A delivery in flight cannot be cancelled.
	if _, err := st.Claim(ctx, "ehr", it.Updated.Add(1e9), 60e9, 1); err != nil {
		t.Fatal(err)
	}
	if rec := req(h, "POST", "/admin/deliveries/"+v2+"/cancel?reason=x", "", tok["op"]); rec.Code != http.StatusConflict {
		t.Errorf("cancel of a delivery in flight = %d %s, want 409", rec.Code, rec.Body)
	}
}
