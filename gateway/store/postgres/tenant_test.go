package postgres

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestMigrateTenants: a database of schema version 3 gains tenants on
// Open; its resources and outbox items belong to the default tenant.
func TestMigrateTenants(t *testing.T) {
	ctx := context.Background()
	s := openMigrated(t, 3, storetest.SchemaV3Rows)
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
	storetest.MigratedTenants(t, s)
}

// TestMigratePatientRows: as SQLite's, from schema version 11.
func TestMigratePatientRows(t *testing.T) {
	storetest.MigratedPatientRows(t, openMigrated(t, 11, storetest.SchemaBeforePatientRows))
}

// TestMigrateComparator: a database of schema version 15 gets the
// quantity rows' comparator, empty in the rows written before, which
// reindex then rewrites (see storetest.MigratedComparator).
func TestMigrateComparator(t *testing.T) {
	storetest.MigratedComparator(t, openMigrated(t, 15, storetest.SchemaBeforeComparator))
}

// TestMigrateIndexVersion: the index version recorded for a database of
// each kind (see storetest.MigratedIndexVersions).
func TestMigrateIndexVersion(t *testing.T) {
	storetest.MigratedIndexVersions(t, openMigrated(t, 11, storetest.SchemaBeforePatientRows),
		openMigrated(t, 13, storetest.SchemaAfterPatientRows))
}

// openMigrated opens a fresh database built at schema version and filled
// by rows, which Open migrates to the latest.
func openMigrated(t *testing.T, version int, rows []string) *Store {
	t.Helper()
	s, err := Open(context.Background(), buildAt(t, version, rows), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// buildAt builds a database at schema version, filled by rows, and
// returns its URL.
func buildAt(t *testing.T, version int, rows []string) string {
	t.Helper()
	ctx := context.Background()
	u := freshDB(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := migrateTx(ctx, tx, version, time.Now); err != nil {
			return err
		}
		for _, stmt := range rows {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("build a version %d database: %v", version, err)
	}
	return u
}

// TestMigrateSourceClaims: a database of schema version 16 loses its
// claims of source systems at destinations (see
// storetest.MigratedSourceClaims).
func TestMigrateSourceClaims(t *testing.T) {
	storetest.MigratedSourceClaims(t, openMigrated(t, 16, storetest.SchemaBeforeSourceClaims))
}

// TestMigrateDeliveryIDKey: a database of schema version 17 gets its
// delivery id key on Open (see storetest.MigratedDeliveryIDKey).
func TestMigrateDeliveryIDKey(t *testing.T) {
	storetest.MigratedDeliveryIDKey(t, openMigrated(t, 17, nil))
}

// TestMigrationNotes: each migration says what it changes for the
// operator, and opening a database of an older schema lists those it
// applied (the start log gives them: serve's logRecovery).
func TestMigrationNotes(t *testing.T) {
	for _, m := range migrations {
		if m.Note == "" {
			t.Errorf("migration %d has no note", m.Version)
		}
	}
	storetest.MigrationNotes(t, openMigrated(t, 16, nil), 16, schemaVersion)
}

// TestOlderSchemaExisting: opened as existing (the read-only commands), a
// database of an older schema is refused saying both versions, and is
// left unmigrated.
func TestOlderSchemaExisting(t *testing.T) {
	u := buildAt(t, 16, nil)
	_, err := Open(context.Background(), u, Options{Existing: true})
	storetest.SchemaVersionRefused(t, err, 16, schemaVersion)
	s, err := Open(context.Background(), u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m := s.Migrated(); m.From != 16 {
		t.Errorf("after the refused existing open, Open migrated %+v, want from 16", m)
	}
}
