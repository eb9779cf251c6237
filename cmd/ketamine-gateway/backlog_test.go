package main

import (
	"slices"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/telemetry"
)

// TestBacklogStats: the backlog metrics have a series for each
// destination the outbox names and for each configured one without
// deliveries yet (zeros), as /readyz lists them (an operator's review: a
// new destination had no series until its first delivery).
func TestBacklogStats(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	stats := []store.DestinationStats{{Destination: "old", Pending: 2, Dead: 1, OldestPending: now.Add(-time.Minute)}}
	holds := map[string]time.Time{"new": now.Add(time.Minute)}
	got := backlogStats(stats, holds, []string{"old", "new"}, now)
	want := []telemetry.BacklogStat{{Destination: "old", Pending: 2, Dead: 1, OldestPendingAge: time.Minute},
		{Destination: "new", Held: true}}
	if !slices.Equal(got, want) {
		t.Errorf("backlogStats = %+v, want %+v", got, want)
	}
}
