package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestDeliveryIDsOpaque: a clinic's operator sees its deliveries by ids
// that are not the outbox's one sequence over every tenant (ids 3, 9, 15
// would tell how many deliveries other clinics made in between); another
// clinic's id, the row's number and a garbled id all answer as an id
// nobody holds (404, one OperationOutcome); the ids the list shows are
// those show and retry take.
func TestDeliveryIDsOpaque(t *testing.T) {
	h, st, tok := clientsServer(t, []auth.Client{
		{ID: "opA", Tenant: "clinic-a", Scopes: []string{auth.ScopeOperator}},
		{ID: "opB", Tenant: "clinic-b", Scopes: []string{auth.ScopeOperator}},
		{ID: "opAll", Tenant: search.AllTenants, Scopes: []string{auth.ScopeOperator}},
	})
	ctx := context.Background()
	// clinic-a's deliveries with clinic-b's in between, each a dead letter
	// (retry takes it).
	rows := map[string][]int64{}
	for i, tenant := range []string{"clinic-a", "clinic-b", "clinic-b", "clinic-a", "clinic-b", "clinic-a"} {
		it := &store.OutboxItem{Destination: "ehr", OrderKey: fmt.Sprint("src|session|R", i), Patient: "src|P", Kind: "session",
			Source: "src", RecordID: fmt.Sprint("R", i), Version: "1", Status: store.StatusDead,
			LastError: "422 from the EHR", Tenant: tenant}
		if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
			t.Fatal(err)
		}
		rows[tenant] = append(rows[tenant], it.ID)
	}
	list := func(client string) []string {
		t.Helper()
		rec := req(h, "GET", "/admin/deliveries", "", tok[client])
		var got struct {
			Deliveries []struct {
				ID any `json:"id"`
			} `json:"deliveries"`
		}
		if rec.Code != http.StatusOK || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
			t.Fatalf("%s: GET /admin/deliveries = %d %s", client, rec.Code, rec.Body)
		}
		var ids []string
		for _, d := range got.Deliveries {
			s, ok := d.ID.(string)
			if _, err := strconv.ParseInt(s, 10, 64); !ok || err == nil || len(s) != 13 {
				t.Errorf("%s: a delivery's id is %v, want 13 letters and digits, not a number", client, d.ID)
			}
			ids = append(ids, fmt.Sprint(d.ID))
		}
		return ids
	}
	a, b, all := list("opA"), list("opB"), list("opAll")
	if len(a) != 3 || len(b) != 3 || len(all) != 6 {
		t.Fatalf("listed %d, %d and %d deliveries, want 3, 3 and 6", len(a), len(b), len(all))
	}
	// Newest first, as before: the list of every tenant's is in the
	// outbox's order, one tenant's a subsequence of it.
	if want := []string{all[0], all[2], all[5]}; fmt.Sprint(a) != fmt.Sprint(want) {
		t.Errorf("clinic-a's list %v, want %v (the order of every tenant's list %v)", a, want, all)
	}

	// The ids the list shows are those show and retry take.
	for _, id := range a {
		if rec := req(h, "GET", "/admin/deliveries/"+id, "", tok["opA"]); rec.Code != http.StatusOK {
			t.Errorf("opA: GET its delivery %s = %d %s", id, rec.Code, rec.Body)
		}
	}
	if rec := req(h, "POST", "/admin/deliveries/"+a[0]+"/retry", "", tok["opA"]); rec.Code != http.StatusOK ||
		decode(t, rec)["id"] != a[0] {
		t.Errorf("opA: retry of its dead letter %s = %d %s, want 200 naming it", a[0], rec.Code, rec.Body)
	}

	// Another tenant's id, the row's number, a garbled id: one answer.
	unknown := req(h, "GET", "/admin/deliveries/not-a-delivery", "", tok["opA"])
	if unknown.Code != http.StatusNotFound {
		t.Fatalf("GET a garbled id = %d %s, want 404", unknown.Code, unknown.Body)
	}
	for _, tc := range []struct{ client, id string }{
		{"opA", b[0]},
		{"opB", a[1]},
		{"opA", strconv.FormatInt(rows["clinic-a"][1], 10)}, // its own, by the row's number
		{"opA", strconv.FormatInt(rows["clinic-b"][0], 10)},
		{"opAll", strconv.FormatInt(rows["clinic-a"][0], 10)},
		{"opA", a[1] + "x"},
	} {
		for _, method := range []string{"GET", "POST"} {
			path := "/admin/deliveries/" + tc.id
			if method == "POST" {
				path += "/retry"
			}
			rec := req(h, method, path, "", tok[tc.client])
			if rec.Code != http.StatusNotFound || rec.Body.String() != unknown.Body.String() {
				t.Errorf("%s: %s %s = %d %s, want the answer to an id nobody holds: %d %s", tc.client, method, path,
					rec.Code, rec.Body, unknown.Code, unknown.Body)
			}
		}
	}
	// clinic-b's deliveries are untouched by clinic-a's tries.
	for _, n := range rows["clinic-b"] {
		if it, _, err := st.Delivery(ctx, n); err != nil || it.Status != store.StatusDead {
			t.Errorf("clinic-b's delivery %d: %+v %v, want still dead", n, it, err)
		}
	}
}
