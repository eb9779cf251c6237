package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestMigrateTenants: a database of schema version 3 gains tenants on
// Open; its resources and outbox items belong to the default tenant.
func TestMigrateTenants(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v3.db")
	db, err := sql.Open("sqlite", dsn(path, 5*time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	if err := migrateOnce(ctx, db, 3, time.Now); err != nil {
		t.Fatalf("migrate to 3: %v", err)
	}
	for _, stmt := range []string{
		`INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ('Patient', 'p', 1, 0, 0, '{}')`,
		`INSERT INTO current (type, id, version, last_updated, deleted) VALUES ('Patient', 'p', 1, 0, 0)`,
		`INSERT INTO idx_token (type, id, param, system, code, text) VALUES ('Patient', 'p', 'identifier', 'urn:x', '1', '')`,
		`INSERT INTO outbox (destination, order_key, patient, kind, source, record_id, version, trace_id, payload, status,
			next_attempt, created, updated) VALUES ('ehr', 'k', 'pat', 'session', 'src', 'r', '1', '', '{}', 'pending', 0, 0, 0)`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := Open(ctx, path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	var n int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != schemaVersion {
		t.Fatalf("schema_migrations: %d rows, %v; want %d", n, err, schemaVersion)
	}
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM sqlite_stat1 WHERE idx = 'current_tenant_type_lu'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("planner statistics of current_tenant_type_lu: %d rows, %v; want 1", n, err)
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
