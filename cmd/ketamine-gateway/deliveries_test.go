package main

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestWarnUnconfigured: serve names, at start, each destination with
// deliveries pending that it does not have, with how many.
func TestWarnUnconfigured(t *testing.T) {
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, dest := range []string{"hosp", "ehr", "ehr"} {
		it := &store.OutboxItem{Destination: dest, OrderKey: "k-" + dest, Patient: "s|p", Kind: "session", Source: "s",
			RecordID: "r", Version: "1", Payload: []byte(`{}`)}
		if err := st.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
			t.Fatal(err)
		}
	}
	var logs strings.Builder
	warnUnconfigured(context.Background(), operator.New(st, []string{"hosp"}, nil, nil), slog.New(slog.NewJSONHandler(&logs, nil)))
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"WARN"`) || !strings.Contains(lines[0], `"destination":"ehr","pending":2`) {
		t.Fatalf("log:\n%s\nwant one WARN naming ehr with 2 pending", logs.String())
	}
}
