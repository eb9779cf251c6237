package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestMigrateTenants: a database of schema version 3 gains tenants on
// Open; its resources and outbox items belong to the default tenant.
func TestMigrateTenants(t *testing.T) {
	s := openMigrated(t, 3, storetest.SchemaV3Rows)
	var n int
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil || n != schemaVersion {
		t.Fatalf("schema_migrations: %d rows, %v; want %d", n, err, schemaVersion)
	}
	if err := s.r.QueryRow(`SELECT COUNT(*) FROM sqlite_stat1 WHERE idx = 'current_tenant_type_lu'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("planner statistics of current_tenant_type_lu: %d rows, %v; want 1", n, err)
	}
	storetest.MigratedTenants(t, s)
}

// openMigrated opens a database built at schema version and filled by
// rows, which Open migrates to schemaVersion.
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
// returns its path.
func buildAt(t *testing.T, version int, rows []string) string {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), fmt.Sprintf("v%d.db", version))
	db, err := sql.Open("sqlite", dsn(path, 5*time.Second, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := migrateOnce(ctx, db, version, time.Now); err != nil {
		t.Fatalf("migrate to %d: %v", version, err)
	}
	for _, stmt := range rows {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestMigratePatientRows: a database of schema version 10 has its subject
// rows typed Patient by Reference.type only marked so on Open, so that a
// search by patient, which now reads them, still finds them.
func TestMigratePatientRows(t *testing.T) {
	storetest.MigratedPatientRows(t, openMigrated(t, 10, storetest.SchemaBeforePatientRows))
}

// TestMigrateComparator: a database of schema version 13 gets the
// quantity rows' comparator, empty in the rows written before, which
// reindex then rewrites (see storetest.MigratedComparator).
func TestMigrateComparator(t *testing.T) {
	storetest.MigratedComparator(t, openMigrated(t, 13, storetest.SchemaBeforeComparator))
}

// TestMigrateIndexVersion: the index version recorded for a database of
// each kind (see storetest.MigratedIndexVersions).
func TestMigrateIndexVersion(t *testing.T) {
	storetest.MigratedIndexVersions(t, openMigrated(t, 10, storetest.SchemaBeforePatientRows),
		openMigrated(t, 11, storetest.SchemaAfterPatientRows))
}

// TestMigrateSourceClaims: a database of schema version 14 loses its
// claims of source systems at destinations (see
// storetest.MigratedSourceClaims).
func TestMigrateSourceClaims(t *testing.T) {
	storetest.MigratedSourceClaims(t, openMigrated(t, 14, storetest.SchemaBeforeSourceClaims))
}

// TestMigrateDeliveryIDKey: a database of schema version 15 gets its
// delivery id key on Open (see storetest.MigratedDeliveryIDKey).
func TestMigrateDeliveryIDKey(t *testing.T) {
	storetest.MigratedDeliveryIDKey(t, openMigrated(t, 15, nil))
}

// TestDeliveryIDKeyPerDatabase: each database makes a key of its own, so
// the delivery ids of one deployment say nothing of another's.
func TestDeliveryIDKeyPerDatabase(t *testing.T) {
	a := storetest.MigratedDeliveryIDKey(t, openMigrated(t, schemaVersion, nil))
	b := storetest.MigratedDeliveryIDKey(t, openMigrated(t, schemaVersion, nil))
	if string(a) == string(b) {
		t.Error("two databases have one delivery id key, want a random key each")
	}
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
	storetest.MigrationNotes(t, openMigrated(t, 14, nil), 14, schemaVersion)
}

// TestOlderSchemaExisting: opened as existing (the read-only commands), a
// database of an older schema is refused saying both versions, and is
// left unmigrated.
func TestOlderSchemaExisting(t *testing.T) {
	path := buildAt(t, 14, nil)
	_, err := Open(context.Background(), path, Options{Existing: true})
	storetest.SchemaVersionRefused(t, err, 14, schemaVersion)
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if m := s.Migrated(); m.From != 14 {
		t.Errorf("after the refused existing open, Open migrated %+v, want from 14", m)
	}
}
