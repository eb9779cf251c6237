package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestDeliveryClaimAPI: GET /admin/deliveries/{id} of a delivery in
// flight gives its claim's end and whether it lapsed; POST .../cancel
// takes one whose claim lapsed (its gateway died, or the database was
// restored: p44 F2) and refuses one whose claim is live with a 409 naming
// the claim's end.
func TestDeliveryClaimAPI(t *testing.T) {
	h, st, tok := clientsServer(t, []auth.Client{{ID: "op", Tenant: "clinic-a", Scopes: []string{auth.ScopeOperator}}})
	ctx := context.Background()
	enqueueClaimed := func(record string, lease time.Duration) time.Time {
		t.Helper()
		it := &store.OutboxItem{Destination: "ehr", Tenant: "clinic-a", OrderKey: "src|session|" + record, Patient: "src|P",
			Kind: "session", Source: "src", RecordID: record, Version: "1", Payload: []byte(`{}`)}
		if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(time.Second).Truncate(time.Millisecond)
		if got, err := st.Claim(ctx, "ehr", at, lease, 1); err != nil || len(got) != 1 || got[0].ID != it.ID {
			t.Fatalf("Claim = %v %v", got, err)
		}
		return at.Add(lease)
	}
	liveUntil := enqueueClaimed("LIVE", time.Hour)
	lapsedAt := enqueueClaimed("LAPSED", -time.Hour) // a claim that ran out an hour ago
	ids := map[string]string{}
	for _, d := range decode(t, req(h, "GET", "/admin/deliveries?status=inflight", "", tok["op"]))["deliveries"].([]any) {
		m := d.(map[string]any)
		ids[m["recordId"].(string)] = m["id"].(string)
	}
	live := decode(t, req(h, "GET", "/admin/deliveries/"+ids["LIVE"], "", tok["op"]))
	if live["claimUntil"] != liveUntil.UTC().Format(time.RFC3339Nano) || live["claimLapsed"] != nil {
		t.Errorf("show (live claim) = claimUntil %v lapsed %v, want %v, not lapsed", live["claimUntil"], live["claimLapsed"], liveUntil)
	}
	lapsed := decode(t, req(h, "GET", "/admin/deliveries/"+ids["LAPSED"], "", tok["op"]))
	if lapsed["claimLapsed"] != true || !strings.Contains(lapsed["claimNote"].(string), "claim lapsed at "+lapsedAt.UTC().Format(time.RFC3339)) {
		t.Errorf("show (lapsed) = %v, want the claim lapsed at %v", lapsed, lapsedAt)
	}
	body := "reason=" + url.QueryEscape("delivered before the restore")
	rec := req(h, "POST", "/admin/deliveries/"+ids["LIVE"]+"/cancel", body, tok["op"], "Content-Type: application/x-www-form-urlencoded")
	if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "a gateway holds its claim until "+liveUntil.UTC().Format(time.RFC3339)) {
		t.Errorf("cancel (live claim) = %d %s, want 409 naming the claim's end", rec.Code, rec.Body)
	}
	rec = req(h, "POST", "/admin/deliveries/"+ids["LAPSED"]+"/cancel", body, tok["op"], "Content-Type: application/x-www-form-urlencoded")
	if got := decode(t, rec); rec.Code != http.StatusOK || got["status"] != store.StatusDead {
		t.Errorf("cancel (lapsed) = %d %s, want 200, a dead letter", rec.Code, rec.Body)
	}
}
