package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Migration is one schema version of a backend: its statements run in
// order inside the migration transaction, then After.
type Migration struct {
	Version int
	// Note says, in one line for the operator who upgrades, what the
	// migration changes that they may notice or must act on; the start
	// log gives it when the migration runs (store.AppliedMigration).
	Note  string
	Stmts []string
	// After, if not nil, runs after Stmts in the same transaction (SQLite
	// writes its planner statistics there).
	After func(ctx context.Context, c Conn) error
	// NotRolling marks a migration that gateways of an older schema must
	// not outlive: still running once it has run, they would serve wrong
	// answers (schema 10's packed AuditEvents) or break the delivery
	// order (the order keys). Migrate raises the database's floor
	// (schema_floor, store.SchemaFloor) to it; a running gateway whose
	// schema is below the floor stops claiming work and answers unready
	// (operator.UpgradeWatch). docs/deployment.md lists them: such an
	// upgrade stops every older gateway first.
	NotRolling bool
	// Older says, for a NotRolling migration, what a gateway or CLI of an
	// older release left running would do wrong: the start log's WARN
	// gives it (store.AppliedMigration.Older), since such a release never
	// reads the floor and stops by itself.
	Older string
}

// floorTable is the database's floor: the oldest schema a running
// gateway may have (the latest NotRolling migration applied). Kept by
// Migrate, as schema_migrations, outside the numbered migrations; a
// release before it ignores it.
const floorTable = `CREATE TABLE IF NOT EXISTS schema_floor (
		one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
		version INTEGER NOT NULL
	)`

// TypePatientReferences is both stores' migration to the patient references
// kept once (search.ReferenceRows: an Observation's patient is its subject
// of type Patient; issue 19): the rows of a reference typed only by
// Reference.type ("urn:uuid:…" with type Patient), which now carry that
// type, get it where the patient parameter's row of the same resource and
// URL says it is a Patient's, so that a search by patient, which reads the
// subject's rows of type Patient, still finds them. The patient rows
// written before stay until their resource changes (no search reads them):
// deleting them would hold the first start of a large database for minutes.
const TypePatientReferences = `UPDATE idx_reference SET ref_type = 'Patient'
	WHERE ref_type = '' AND ref_url <> '' AND EXISTS (SELECT 1 FROM idx_reference p
		WHERE p.type = idx_reference.type AND p.id = idx_reference.id AND p.param = 'patient'
		AND p.ref_type = '' AND p.ref_url = idx_reference.ref_url)`

// QuantityComparator is both stores' migration adding idx_quantity's
// comparator column (SQLite's schema 14, PostgreSQL's 16): a Quantity's
// comparator ("<", "<=", ">=", ">"; empty for none, as every row written
// before has), with which its value is a range open at one end
// (search.Entry.Comparator). Adding a column with a constant default
// rewrites no row in either database.
const QuantityComparator = `ALTER TABLE idx_quantity ADD COLUMN comparator TEXT NOT NULL DEFAULT ''`

// Migrate brings the schema to version upTo of migrations (oldest first,
// the last being the program's version) in c, the migration transaction,
// which the backend has begun (and serialised against other processes'
// migrations) and commits. Each migration run is recorded in
// schema_migrations with its version and now. A database whose schema is
// newer than the program's is an error. from is the version the database
// was at (0: a new one).
//
// progress, if not nil, hears of the migration before its first step
// (MigrationStep.Version 0) and of each step as it starts.
func Migrate(ctx context.Context, c Conn, d *Dialect, migrations []Migration, upTo int, now func() time.Time,
	progress func(store.MigrationStep)) (from int, err error) {
	// BIGINT: a PostgreSQL type, an INTEGER to SQLite.
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER NOT NULL PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	if _, err := c.Exec(ctx, floorTable); err != nil {
		return 0, fmt.Errorf("create schema_floor: %w", err)
	}
	var have int
	if err := c.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	if latest := migrations[len(migrations)-1].Version; have > latest {
		return 0, &store.SchemaVersionError{Have: have, Want: latest}
	}
	record := bind(d, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`)
	step := store.MigrationStep{From: have, To: upTo}
	for _, m := range migrations {
		if m.Version > have && m.Version <= upTo {
			step.Steps++
		}
	}
	if progress != nil && step.Steps > 0 {
		progress(step)
	}
	floor := 0
	for _, m := range migrations {
		if m.NotRolling && m.Version <= max(have, upTo) {
			floor = m.Version
		}
		if m.Version <= have || m.Version > upTo {
			continue
		}
		if progress != nil {
			s := step
			s.Version, s.Note = m.Version, m.Note
			progress(s)
		}
		for _, st := range m.Stmts {
			if _, err := c.Exec(ctx, st); err != nil {
				return 0, fmt.Errorf("migration %d: %w", m.Version, err)
			}
		}
		if m.After != nil {
			if err := m.After(ctx, c); err != nil {
				return 0, fmt.Errorf("migration %d: %w", m.Version, err)
			}
		}
		if _, err := c.Exec(ctx, record, m.Version, now().UnixMilli()); err != nil {
			return 0, fmt.Errorf("migration %d: %w", m.Version, err)
		}
	}
	if floor > 0 {
		if _, err := c.Exec(ctx, bind(d, `INSERT INTO schema_floor (one, version) VALUES (1, ?)
			ON CONFLICT (one) DO UPDATE SET version = excluded.version WHERE schema_floor.version < excluded.version`), floor); err != nil {
			return 0, fmt.Errorf("schema floor: %w", err)
		}
	}
	return have, nil
}

// SchemaFloor implements store.Store: the database's schema version and
// floor (0 when no gateway of this release or later migrated it), and the
// program's schema version (0 when the store was opened without
// migrating).
func (s *Store) SchemaFloor(ctx context.Context) (store.SchemaFloor, error) {
	f := store.SchemaFloor{Program: s.program}
	err := s.db.Read(ctx, func(c Conn) error {
		if err := c.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&f.Database); err != nil {
			return err
		}
		err := c.QueryRow(ctx, `SELECT version FROM schema_floor WHERE one = 1`).Scan(&f.Floor)
		if errNoRows(err) {
			return nil
		}
		return err
	})
	if err != nil {
		return store.SchemaFloor{}, fmt.Errorf("%s: schema floor: %w", s.d.Name, s.err(ctx, err))
	}
	return f, nil
}

// CheckVersion reports, without changing anything, whether c's database
// is a gateway database at schema version latest: store.ErrNoDatabase
// (wrapped, with the reason) when it was never set up, a
// *store.SchemaVersionError when its schema is older (also
// store.ErrNoDatabase: a migration is pending) or newer
// (store.ErrNewerRelease).
func CheckVersion(ctx context.Context, c Conn, latest int) error {
	var have int
	if err := c.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		if msg := err.Error(); strings.Contains(msg, "schema_migrations") &&
			(strings.Contains(msg, "no such table") || strings.Contains(msg, "does not exist")) {
			return fmt.Errorf("the database was never set up by the gateway: %w", store.ErrNoDatabase)
		}
		return fmt.Errorf("read the schema version: %w", err) // it could not be read at all
	}
	switch {
	case have == 0:
		return fmt.Errorf("the database was never set up by the gateway: %w", store.ErrNoDatabase)
	case have != latest:
		return &store.SchemaVersionError{Have: have, Want: latest}
	}
	return nil
}

// DropSourceClaims drops the claims of source systems at delivery
// destinations (engine's sourceKey: "source-system|<hash>", outside every
// tenant's namespace), which the first tenant to store a record after a
// destination appeared took; the next record of each source decides again
// from the ledger which tenant stored it first.
const DropSourceClaims = `DELETE FROM conditional_keys WHERE key LIKE 'source-system|%'`

// Applied lists the migrations of ms (oldest first) that brought a
// database from schema version from to to, with their notes; none for a
// new database (from 0), which the log reports as created.
func Applied(ms []Migration, from, to int) []store.AppliedMigration {
	if from == 0 {
		return nil
	}
	var out []store.AppliedMigration
	for _, m := range ms {
		if m.Version > from && m.Version <= to {
			out = append(out, store.AppliedMigration{Version: m.Version, Note: m.Note, NotRolling: m.NotRolling, Older: m.Older})
		}
	}
	return out
}
