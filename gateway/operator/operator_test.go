package operator_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// enqueue queues one delivery of record (version) to dest and, when
// status is done or dead, sends it so (claims and completes it).
func enqueue(t *testing.T, st store.Store, dest, record, version, status string) int64 {
	t.Helper()
	ctx := context.Background()
	it := &store.OutboxItem{Destination: dest, OrderKey: "src|session|" + record, Patient: "src|P", Kind: "session",
		Source: "src", RecordID: record, Version: version, Payload: []byte(`{}`)}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	if status == store.StatusPending {
		return it.ID
	}
	got, err := st.Claim(ctx, dest, time.Now().Add(time.Second), time.Minute, 1)
	if err != nil || len(got) != 1 || got[0].ID != it.ID {
		t.Fatalf("Claim = %v %v, want item %d", got, err, it.ID)
	}
	if err := st.Complete(ctx, &store.Attempt{ItemID: it.ID, At: time.Now(), HTTPStatus: 200}, status, time.Time{}); err != nil {
		t.Fatal(err)
	}
	return it.ID
}

// TestReadyShowsHoldsAndUnconfiguredDestinations: /readyz's backlog says
// until when a destination is held, and marks the destinations with
// deliveries pending that the serving gateway does not have.
func TestReadyShowsHoldsAndUnconfiguredDestinations(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, "hosp", "R1", "1", store.StatusPending)
	enqueue(t, st, "old", "R2", "1", store.StatusPending)
	enqueue(t, st, "gone", "R3", "1", store.StatusDone) // nothing pending: nothing lost
	until := time.Now().Add(time.Minute).UTC()
	for _, tc := range []struct {
		name      string
		dests     []string
		wantStale []string
		wantHeld  bool
	}{
		{"serving", []string{"hosp"}, []string{"old"}, true},
		{"a command on the database", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ops := operator.New(st, tc.dests, nil, nil)
			if tc.dests != nil {
				ops.SetHolds(func() map[string]time.Time { return map[string]time.Time{"hosp": until} })
			}
			r, err := ops.Ready(context.Background())
			if err != nil || !r.Ready {
				t.Fatalf("Ready = %+v %v", r, err)
			}
			var stale []string
			for _, b := range r.Backlog {
				if b.NotConfigured {
					stale = append(stale, b.Destination)
				}
				held := b.HeldUntil != nil && b.HeldUntil.Equal(until)
				if want := tc.wantHeld && b.Destination == "hosp"; held != want {
					t.Errorf("%s: heldUntil %v, want held %v", b.Destination, b.HeldUntil, want)
				}
			}
			if strings.Join(stale, ",") != strings.Join(tc.wantStale, ",") {
				t.Errorf("not configured: %v, want %v", stale, tc.wantStale)
			}
			got, err := ops.Unconfigured(context.Background())
			if err != nil || len(got) != len(tc.wantStale) {
				t.Errorf("Unconfigured = %+v %v, want %v", got, err, tc.wantStale)
			}
		})
	}
}

// TestReplayRefusesAnUnconfiguredDestination: a serving gateway does not
// queue a replay that no worker would send; a command on the database,
// which knows no configuration, replays to any destination delivered to.
func TestReplayRefusesAnUnconfiguredDestination(t *testing.T) {
	st := openStore(t)
	enqueue(t, st, "old", "R1", "1", store.StatusDone)
	since := time.Now().Add(-time.Hour)
	ops := operator.New(st, []string{"hosp"}, nil, nil)
	_, err := ops.Replay(context.Background(), search.AllTenants, "old", since)
	if kind, issues := outcome.From(err); kind != outcome.Invalid || len(issues) == 0 ||
		!strings.Contains(issues[0].Message, "not configured in this gateway") || !strings.Contains(issues[0].Message, "hosp") {
		t.Fatalf("Replay to a destination not configured = %v (%v %+v), want Invalid naming the configured ones", err, kind, issues)
	}
	if n, err := operator.New(st, nil, nil, nil).Replay(context.Background(), search.AllTenants, "old", since); err != nil || n != 1 {
		t.Fatalf("Replay on the database = %d %v, want 1", n, err)
	}
}
