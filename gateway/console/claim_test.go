package console

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestDeliveryShowsItsClaim: a delivery in flight shows until when a
// gateway holds its claim (p44 F2: a dead gateway's delivery looked like a
// live attempt).
func TestDeliveryShowsItsClaim(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Payload: []byte(`{}`)}
	if err := f.app.Store.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(time.Second)
	if got, err := f.app.Store.Claim(ctx, "ehr", at, time.Hour, 1); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v %v", got, err)
	}
	ids, err := f.app.Operator.IDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	status, page, _ := f.get(t, "/console/deliveries/"+ids.Encode(it.ID))
	want := "a gateway holds its claim until " + at.Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	if status != http.StatusOK || !strings.Contains(page, want) {
		t.Fatalf("status = %d, want 200 with %q:\n%.3000s", status, want, page)
	}
}
