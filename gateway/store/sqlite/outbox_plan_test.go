package sqlite

import (
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// TestOutboxPlans: the backlog counts of /readyz, the metrics gauges and
// the console (Stats) and the listings of dead letters and of pending or
// in-flight deliveries read only the open items, through the partial
// indexes of those, never the delivered rows (every delivery ever made,
// each with its payload: p32 measured /readyz at 0.4 s and
// ?status=dead at 0.5 s over 6,000 delivered rows, with no dead letter);
// audit verify's pages of the attempts seek their time in its index.
func TestOutboxPlans(t *testing.T) {
	s, _ := openTemp(t, Options{})
	defer s.Close()
	deliveries := func(f store.DeliveryFilter) sqlstore.Stmt {
		st, _ := sqlstore.DeliveriesStatement(dialect, f)
		return st
	}
	for _, tc := range []struct {
		name string
		st   sqlstore.Stmt
		want string
	}{
		{"stats", sqlstore.Stmt{SQL: sqlstore.OutboxStatsSQL}, "COVERING INDEX outbox_open"},
		// The destinations with deliveries, done ones too, skip through
		// an index: one lookup per destination.
		{"destinations", sqlstore.Stmt{SQL: sqlstore.OutboxDestinationsSQL}, "COVERING INDEX"},
		{"dead letters", deliveries(store.DeliveryFilter{Status: store.StatusDead}), "INDEX outbox_open_id (status=?)"},
		{"pending", deliveries(store.DeliveryFilter{Status: store.StatusPending}), "INDEX outbox_open_id (status=?)"},
		{"in flight", deliveries(store.DeliveryFilter{Status: store.StatusInFlight}), "INDEX outbox_open_id (status=?)"},
		{"dead letters of a destination", deliveries(store.DeliveryFilter{Status: store.StatusDead, Destination: "ehr"}),
			"status=?)"},
		// audit verify's pages of the delivery attempts, from a time on
		// and after a cursor, start in the index of their times.
		{"attempts from a time", sqlstore.Stmt{SQL: sqlstore.AttemptsSinceSQL, Args: []any{int64(1), 1000}},
			"INDEX delivery_attempts_at (at>?)"},
		{"attempts after a cursor", sqlstore.Stmt{SQL: sqlstore.AttemptsAfterSQL, Args: []any{int64(1), int64(2), 3, 1000}},
			"INDEX delivery_attempts_at ((at,item_id,n)>(?,?,?))"},
		// Its pages of the receipts (the current Provenance rows) read
		// the index of the current rows' times, then those rows (no body).
		{"current rows from a time", sqlstore.Stmt{SQL: sqlstore.CurrentSinceSQL, Args: []any{"Provenance", int64(1), 1000}},
			"INDEX current_type_lu (type=? AND last_updated>?)"},
		{"current rows after a cursor", sqlstore.Stmt{SQL: sqlstore.CurrentAfterSQL, Args: []any{"Provenance", int64(1), "x", 1000}},
			"INDEX current_type_lu (type=? AND (last_updated,id)>(?,?))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := explain(t, s, tc.st.SQL, tc.st.Args...)
			if !strings.Contains(plan, tc.want) {
				t.Errorf("plan lacks %q:\n%s", tc.want, plan)
			}
			for _, step := range strings.Split(plan, "\n") {
				if strings.HasPrefix(step, "SCAN outbox") && !strings.Contains(step, "INDEX outbox_open") {
					t.Errorf("a step reads every delivery: %q in\n%s", step, plan)
				}
			}
		})
	}
}
