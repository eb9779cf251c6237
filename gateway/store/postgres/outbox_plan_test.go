package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// TestOutboxPlans: as SQLite's, the backlog counts (Stats) and the
// listings of dead letters and of pending or in-flight deliveries read
// the partial indexes of the open items, never the delivered rows.
// Sequential scans are off, so that a small table's plan shows which index
// the planner can use; over 2,000 delivered items and a few open ones.
func TestOutboxPlans(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range 2000 {
			it := &store.OutboxItem{Destination: "ehr", OrderKey: fmt.Sprintf("k%d", i), Patient: "p", Kind: "k",
				Source: "s", RecordID: fmt.Sprint(i), Version: "1", Payload: []byte(`{}`)}
			if i%100 == 0 {
				it.Status, it.LastError = store.StatusDead, "refused"
			}
			if err := tx.Enqueue(it); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `UPDATE outbox SET status = 'done' WHERE status = 'pending' AND id % 10 <> 0`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Stats(ctx); err != nil || len(got) != 1 || got[0].Dead != 20 || got[0].Pending == 0 {
		t.Fatalf("Stats = %+v, %v", got, err)
	}
	deliveries := func(f store.DeliveryFilter) sqlstore.Stmt {
		st, _ := sqlstore.DeliveriesStatement(dialect, f)
		return st
	}
	for _, tc := range []struct {
		name string
		st   sqlstore.Stmt
		want string
	}{
		{"stats", sqlstore.Stmt{SQL: sqlstore.OutboxStatsSQL}, "outbox_open"},
		{"dead letters", deliveries(store.DeliveryFilter{Status: store.StatusDead}), "outbox_open_id"},
		{"pending", deliveries(store.DeliveryFilter{Status: store.StatusPending}), "outbox_open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := pgExplainWith(t, s, "enable_seqscan", "off", tc.st.SQL, tc.st.Args...)
			if !strings.Contains(plan, tc.want) || strings.Contains(plan, "Seq Scan on outbox") {
				t.Errorf("plan lacks %s or reads every delivery:\n%s", tc.want, plan)
			}
		})
	}
	// The destinations skip through an index: no step reads the table.
	if plan := pgExplain(t, s, sqlstore.OutboxDestinationsSQL); strings.Contains(plan, "Seq Scan on outbox") {
		t.Errorf("destinations plan reads every delivery:\n%s", plan)
	}
}
