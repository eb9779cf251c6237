package postgres

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

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

// TestAttemptsAfterPlan: a page of AttemptsAfter (audit verify's walk
// of the delivery attempts) starts its scan of the index of the attempts'
// times at the page's cursor, or at the time it pages from, an index
// condition, instead of walking an index from its first entry and
// filtering (review of fix-ops: the primary key's walk written as
// item_id > ? OR (item_id = ? AND n > ?), a page 80% into 1.5M attempts
// skipped 1.2M rows, 350 ms; as the row comparison, 0.37 ms; and before
// the index of times a page from a time on read every attempt).
func TestAttemptsAfterPlan(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range 500 {
			it := &store.OutboxItem{Destination: "ehr", OrderKey: fmt.Sprintf("k%d", i), Patient: "p", Kind: "k",
				Source: "s", RecordID: fmt.Sprint(i), Version: "1", Payload: []byte(`{}`)}
			if err := tx.Enqueue(it); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO delivery_attempts (item_id, n, at, duration_ms, http_status, trace_id, error)
		SELECT id, g, id * 10 + g, 1, 503, '', '' FROM outbox, generate_series(1, 5) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	var after int64
	if err := s.pool.QueryRow(ctx, `SELECT id FROM outbox ORDER BY id OFFSET 400 LIMIT 1`).Scan(&after); err != nil {
		t.Fatal(err)
	}
	numbered := func(q string) string {
		for i := 1; strings.Contains(q, "?"); i++ {
			q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
		}
		return q
	}
	// Attempt n of item id began at id*10+n: the cursor after/3.
	at := after*10 + 3
	for _, tc := range []struct {
		name string
		plan string
	}{
		{"a page after a cursor", pgExplainWith(t, s, "", "", numbered(sqlstore.AttemptsAfterSQL), at, after, 3, 100)},
		{"the first page from a time", pgExplainWith(t, s, "", "", numbered(sqlstore.AttemptsSinceSQL), at, 100)},
	} {
		if !strings.Contains(tc.plan, "delivery_attempts_at") || !strings.Contains(tc.plan, "Index Cond") {
			t.Errorf("%s walks the attempts from the first instead of starting at its cursor:\n%s", tc.name, tc.plan)
		}
	}
	page, err := s.AttemptsAfter(ctx, &store.Attempt{ItemID: after, N: 3, At: time.UnixMilli(at)}, time.Time{}, 4)
	if err != nil || len(page) != 4 || page[0].ItemID != after || page[0].N != 4 || page[2].ItemID != after+1 || page[2].N != 1 {
		t.Fatalf("AttemptsAfter(%d/3) = %d attempts %v, want %d/4, %d/5, %d/1, %d/2", after, len(page), err, after, after, after+1, after+1)
	}
	page, err = s.AttemptsAfter(ctx, nil, time.UnixMilli(at), 2)
	if err != nil || len(page) != 2 || page[0].ItemID != after || page[0].N != 3 || page[1].N != 4 {
		t.Fatalf("AttemptsAfter from %d = %d attempts %v, want %d/3, %d/4", at, len(page), err, after, after)
	}
}
