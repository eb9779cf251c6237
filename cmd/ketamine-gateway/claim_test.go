package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestDeliveriesInFlightClaim: show and list give an in-flight delivery's
// claim end and say when it lapsed; cancel takes a delivery whose claim
// lapsed (its gateway was killed, or the database restored: p44 F2) and
// refuses one whose claim is live, naming it (exit 5).
func TestDeliveriesInFlightClaim(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	past := time.Now().Add(-2 * time.Hour)
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{Now: func() time.Time { return past }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	lapsed := &store.OutboxItem{Destination: "ehr", OrderKey: "k1", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r1",
		Version: "1", Payload: []byte(`{}`)}
	live := &store.OutboxItem{Destination: "ehr", OrderKey: "k2", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r2",
		Version: "1", Payload: []byte(`{}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(lapsed) }); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Claim(ctx, "ehr", past, 30*time.Second, 1); err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v %v", got, err)
	}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(live) }); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Claim(ctx, "ehr", past, 4*time.Hour, 1); err != nil || len(got) != 1 || got[0].ID != live.ID {
		t.Fatalf("Claim = %v %v", got, err)
	}
	st.Close()
	out, _, code := cli(t, "", "deliveries", "list", "--status", "inflight", "--db", db)
	var list struct {
		Deliveries []struct {
			ID          string `json:"id"`
			RecordID    string `json:"recordId"`
			ClaimLapsed bool   `json:"claimLapsed"`
		} `json:"deliveries"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Deliveries) != 2 {
		t.Fatalf("deliveries list: exit %d, %s", code, out)
	}
	var lapsedID, liveID string
	for _, d := range list.Deliveries {
		switch {
		case d.RecordID == "r1" && d.ClaimLapsed:
			lapsedID = d.ID
		case d.RecordID == "r2" && !d.ClaimLapsed:
			liveID = d.ID
		}
	}
	if lapsedID == "" || liveID == "" {
		t.Fatalf("deliveries list = %s, want r1's claim lapsed, r2's live", out)
	}
	lapsedAt := past.Add(30 * time.Second).UTC().Format(time.RFC3339)
	liveUntil := past.Add(4 * time.Hour).UTC().Format(time.RFC3339)
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"deliveries", "show", lapsedID, "--db", db}, 0, `"claimNote": "claim lapsed at ` + lapsedAt + `: `},
		{[]string{"deliveries", "show", liveID, "--db", db}, 0, `"claimNote": "in flight: a gateway holds its claim until ` + liveUntil},
		{[]string{"deliveries", "cancel", liveID, "--reason", "sent in error", "--db", db}, exitConflict,
			"this one is in flight: a gateway holds its claim until " + liveUntil},
		{[]string{"deliveries", "retry", liveID, "--db", db}, exitConflict, "a gateway holds its claim until " + liveUntil},
		{[]string{"deliveries", "retry", lapsedID, "--db", db}, exitConflict, "claim lapsed at " + lapsedAt},
		{[]string{"deliveries", "cancel", lapsedID, "--reason", "delivered before the restore", "--db", db}, 0,
			`"lastError": "cancelled by operator: delivered before the restore"`},
		{[]string{"deliveries", "show", lapsedID, "--db", db}, 0, `"status": "dead"`},
	} {
		wantCLI(t, tc.args, tc.code, tc.out)
	}
}
