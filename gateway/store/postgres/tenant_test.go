package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestMigrateTenants: a database of schema version 3 gains tenants on
// Open; its resources and outbox items belong to the default tenant.
func TestMigrateTenants(t *testing.T) {
	ctx := context.Background()
	u := freshDB(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if err := migrateTx(ctx, tx, 3, time.Now); err != nil {
			return err
		}
		for _, stmt := range []string{
			`INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ('Patient', 'p', 1, 0, FALSE, '{}')`,
			`INSERT INTO current (type, id, version, last_updated, deleted) VALUES ('Patient', 'p', 1, 0, FALSE)`,
			`INSERT INTO idx_token (type, id, param, system, code, text) VALUES ('Patient', 'p', 'identifier', 'urn:x', '1', '')`,
			`INSERT INTO outbox (destination, order_key, patient, kind, source, record_id, version, trace_id, payload, status,
				next_attempt, created, updated) VALUES ('ehr', 'k', 'pat', 'session', 'src', 'r', '1', '', '{}', 'pending', 0, 0, 0)`,
		} {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("build a version 3 database: %v", err)
	}

	s, err := Open(ctx, u, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != len(migrations) {
		t.Fatalf("schema_migrations: %d rows, %v; want %d", n, err, len(migrations))
	}
	// The new column's statistics are gathered in a database in use, and
	// empty tables are not analysed (see migration 4).
	if err := s.pool.QueryRow(ctx, `SELECT COUNT(*) FROM pg_stats WHERE schemaname = current_schema() AND tablename = 'current' AND attname = 'tenant'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("statistics of current.tenant: %d rows, %v; want 1", n, err)
	}
	fresh, _ := openFresh(t, Options{})
	var tuples float64
	if err := fresh.pool.QueryRow(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'current'::regclass`).Scan(&tuples); err != nil || tuples >= 0 {
		t.Errorf("reltuples of a new database's current = %v, %v; want -1 (never analysed)", tuples, err)
	}
	if r, err := s.Read(ctx, "Patient", "p"); err != nil || r.Tenant != "" {
		t.Errorf("Read = %+v, %v; want the default tenant's", r, err)
	}
	q := &search.Query{Type: "Patient", Total: true, Clauses: []search.Clause{{Param: "identifier", Type: search.TypeToken,
		Values: []search.Value{{System: "urn:x", Code: "1", HasSystem: true}}}}}
	for tenant, want := range map[string]int{"": 1, "clinic-a": 0, search.AllTenants: 1} {
		q.Tenant = tenant
		if pg, err := s.Search(ctx, q); err != nil || pg.Total != want || len(pg.Matches) != want {
			t.Errorf("Search(tenant %q) = %v, want %d match", tenant, pg, want)
		}
	}
	if _, total, err := s.History(ctx, store.HistoryQuery{}); err != nil || total != 1 {
		t.Errorf("History(default tenant) total = %d, %v; want 1", total, err)
	}
	items, err := s.Deliveries(ctx, store.DeliveryFilter{})
	if err != nil || len(items) != 1 || items[0].Tenant != "" {
		t.Errorf("Deliveries = %v, %v; want one item of the default tenant", items, err)
	}
}
