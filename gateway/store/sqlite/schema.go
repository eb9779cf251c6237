package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// migrations are the schema versions, oldest first. Never edit a released
// migration: append a new one. The SQL is kept portable (no SQLite-only
// types or syntax) so that the PostgreSQL twin can share the design:
// times are INTEGER unix milliseconds (UTC), booleans INTEGER 0/1. A
// migration that creates indexes writes their planner statistics after its
// statements (see plannerStats).
var migrations = []sqlstore.Migration{{
	Version: 1,
	Note:    "the gateway's tables: resources, their versions and search index, conditional create keys, the ledger of native records",
	Stmts: []string{
		// Every version of every resource; body is NULL for a deletion.
		`CREATE TABLE resources (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			version INTEGER NOT NULL,
			last_updated INTEGER NOT NULL,
			deleted INTEGER NOT NULL DEFAULT 0,
			body BLOB,
			PRIMARY KEY (type, id, version)
		)`,
		`CREATE INDEX resources_lu ON resources (last_updated)`,
		`CREATE INDEX resources_type_lu ON resources (type, last_updated)`,
		// The latest version of every resource (deleted or not).
		`CREATE TABLE current (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			version INTEGER NOT NULL,
			last_updated INTEGER NOT NULL,
			deleted INTEGER NOT NULL DEFAULT 0,
			PRIMARY KEY (type, id),
			FOREIGN KEY (type, id, version) REFERENCES resources (type, id, version)
		)`,
		`CREATE INDEX current_type_lu ON current (type, last_updated, id)`,
		// Search index entries of the current, non-deleted versions.
		`CREATE TABLE idx_token (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			param TEXT NOT NULL,
			system TEXT NOT NULL,
			code TEXT NOT NULL,
			text TEXT NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_token_code ON idx_token (type, param, code, system)`,
		`CREATE INDEX idx_token_system ON idx_token (type, param, system)`,
		`CREATE INDEX idx_token_res ON idx_token (type, id)`,
		`CREATE TABLE idx_string (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			param TEXT NOT NULL,
			norm TEXT NOT NULL,
			exact TEXT NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_string_norm ON idx_string (type, param, norm)`,
		`CREATE INDEX idx_string_exact ON idx_string (type, param, exact)`,
		`CREATE INDEX idx_string_res ON idx_string (type, id)`,
		`CREATE TABLE idx_date (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			param TEXT NOT NULL,
			low INTEGER NOT NULL,
			high INTEGER NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_date_low ON idx_date (type, param, low)`,
		`CREATE INDEX idx_date_high ON idx_date (type, param, high)`,
		`CREATE INDEX idx_date_res ON idx_date (type, id)`,
		`CREATE TABLE idx_reference (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			param TEXT NOT NULL,
			ref_type TEXT NOT NULL,
			ref_id TEXT NOT NULL,
			ref_url TEXT NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_reference_target ON idx_reference (type, param, ref_id, ref_type)`,
		`CREATE INDEX idx_reference_url ON idx_reference (type, param, ref_url)`,
		`CREATE INDEX idx_reference_res ON idx_reference (type, id)`,
		`CREATE TABLE idx_quantity (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			param TEXT NOT NULL,
			number REAL NOT NULL,
			system TEXT NOT NULL,
			code TEXT NOT NULL,
			unit TEXT NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_quantity_number ON idx_quantity (type, param, number)`,
		`CREATE INDEX idx_quantity_res ON idx_quantity (type, id)`,
		`CREATE TABLE idx_uri (
			type TEXT NOT NULL,
			id TEXT NOT NULL,
			param TEXT NOT NULL,
			uri TEXT NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_uri_uri ON idx_uri (type, param, uri)`,
		`CREATE INDEX idx_uri_res ON idx_uri (type, id)`,
		// Conditional create keys, e.g. "Patient|identifier=sys|val".
		`CREATE TABLE conditional_keys (
			key TEXT NOT NULL PRIMARY KEY,
			type TEXT NOT NULL,
			id TEXT NOT NULL
		)`,
		`CREATE INDEX conditional_keys_res ON conditional_keys (type, id)`,
		// One row per ingested native record version.
		`CREATE TABLE ledger (
			source TEXT NOT NULL,
			kind TEXT NOT NULL,
			record_id TEXT NOT NULL,
			version TEXT NOT NULL,
			content_hash TEXT NOT NULL,
			response BLOB,
			received INTEGER NOT NULL,
			PRIMARY KEY (source, kind, record_id, version)
		)`,
	},
	After: seedStats,
}, {
	Version: 2,
	Note:    "the outbox of deliveries to EHRs and their attempts",
	Stmts: []string{
		// The transactional outbox: one row per record and destination.
		`CREATE TABLE outbox (
			id INTEGER PRIMARY KEY,
			destination TEXT NOT NULL,
			order_key TEXT NOT NULL,
			patient TEXT NOT NULL,
			kind TEXT NOT NULL,
			source TEXT NOT NULL,
			record_id TEXT NOT NULL,
			version TEXT NOT NULL,
			trace_id TEXT NOT NULL,
			payload BLOB NOT NULL,
			status TEXT NOT NULL,
			attempts INTEGER NOT NULL DEFAULT 0,
			next_attempt INTEGER NOT NULL,
			lease_until INTEGER NOT NULL DEFAULT 0,
			last_error TEXT NOT NULL DEFAULT '',
			created INTEGER NOT NULL,
			updated INTEGER NOT NULL
		)`,
		`CREATE INDEX outbox_due ON outbox (destination, status, next_attempt)`,
		`CREATE INDEX outbox_order ON outbox (destination, order_key, id)`,
		`CREATE INDEX outbox_created ON outbox (created)`,
		`CREATE TABLE delivery_attempts (
			item_id INTEGER NOT NULL REFERENCES outbox (id),
			n INTEGER NOT NULL,
			at INTEGER NOT NULL,
			duration_ms INTEGER NOT NULL,
			http_status INTEGER NOT NULL,
			outcome BLOB,
			trace_id TEXT NOT NULL,
			error TEXT NOT NULL,
			PRIMARY KEY (item_id, n)
		)`,
	},
}, {
	Version: 3,
	Note:    "the audit trail's hash chain; deliveries looked up by record and by trace",
	Stmts: []string{
		// The audit hash chain: entry seq links AuditEvent/id (version 1)
		// to entry seq-1 (see audit.Link).
		`CREATE TABLE audit_chain (
			seq INTEGER NOT NULL PRIMARY KEY,
			id TEXT NOT NULL UNIQUE,
			hash TEXT NOT NULL
		)`,
		// The chain head: the last seq and hash, one row. Appends take the
		// next seq from here, so a deleted last entry leaves a gap.
		`CREATE TABLE audit_chain_head (
			one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
			seq INTEGER NOT NULL,
			hash TEXT NOT NULL
		)`,
		`INSERT INTO audit_chain_head (one, seq, hash) VALUES (1, 0, '')`,
		// The operator's delivery listing by record and by trace.
		`CREATE INDEX outbox_record ON outbox (record_id, source, kind)`,
		`CREATE INDEX outbox_trace ON outbox (trace_id)`,
	},
}, {
	Version: 4,
	Note:    "tenants: every resource, version and delivery stored before belongs to the default tenant",
	Stmts: []string{
		// Tenants: every resource version, current row and outbox item
		// belongs to one tenant; the rows of before belong to the default
		// tenant ''. (ADD COLUMN with a constant default rewrites nothing.)
		`ALTER TABLE resources ADD COLUMN tenant TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE current ADD COLUMN tenant TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE outbox ADD COLUMN tenant TEXT NOT NULL DEFAULT ''`,
		// A tenant's search: a listing in last_updated order, or the
		// count of a type, reads only the tenant's rows. The tenant-less
		// indexes stay for searches of every tenant.
		`CREATE INDEX current_tenant_type_lu ON current (tenant, type, last_updated, id)`,
		// A tenant's type and system history.
		`CREATE INDEX resources_tenant_type_lu ON resources (tenant, type, last_updated)`,
		`CREATE INDEX resources_tenant_lu ON resources (tenant, last_updated)`,
		// A tenant's delivery listing, newest first.
		`CREATE INDEX outbox_tenant ON outbox (tenant, id)`,
	},
	After: putStats(tenantStats),
}, {
	Version: 5,
	Note:    "the nonces of SMART client assertions (a client assertion is accepted once)",
	Stmts: []string{
		// One-time values (store.Nonces): the key is used until exp (unix
		// milliseconds); expired rows are purged in exp order.
		`CREATE TABLE nonces (
			key TEXT NOT NULL PRIMARY KEY,
			exp INTEGER NOT NULL
		)`,
		`CREATE INDEX nonces_exp ON nonces (exp)`,
	},
}, {
	Version: 6,
	Note:    "the ledger keeps each record's tenant, mapping version and validated input (records stored before have none: replay reports them without a stored input); durable background jobs",
	Stmts: []string{
		// The ledger keeps each record's validated input, the mapping
		// version that produced its resources and its tenant (replay:
		// docs/mapping.md). Entries of before have no input; their tenant
		// is read from the namespace of their source ("tenant:T|...").
		`ALTER TABLE ledger ADD COLUMN tenant TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE ledger ADD COLUMN mapping_version TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE ledger ADD COLUMN input BLOB`,
		`UPDATE ledger SET tenant = substr(source, 8, instr(source, '|') - 8) WHERE source LIKE 'tenant:%|%'`,
		`CREATE INDEX ledger_tenant ON ledger (tenant, source, kind, record_id, version)`,
		// Durable jobs (bulk export, import, replay) and the parts of
		// their files (store.Jobs).
		`CREATE TABLE jobs (
			id TEXT NOT NULL PRIMARY KEY,
			kind TEXT NOT NULL,
			tenant TEXT NOT NULL,
			owner TEXT NOT NULL,
			status TEXT NOT NULL,
			request BLOB NOT NULL,
			progress_done INTEGER NOT NULL,
			progress_total INTEGER NOT NULL,
			checkpoint BLOB,
			result BLOB,
			error TEXT NOT NULL,
			attempts INTEGER NOT NULL,
			claim TEXT NOT NULL,
			lease_until INTEGER NOT NULL,
			created INTEGER NOT NULL,
			updated INTEGER NOT NULL,
			finished INTEGER NOT NULL,
			expires INTEGER NOT NULL
		)`,
		`CREATE INDEX jobs_claim ON jobs (status, kind, created)`,
		`CREATE INDEX jobs_expires ON jobs (expires)`,
		`CREATE INDEX jobs_tenant ON jobs (tenant, created)`,
		`CREATE TABLE job_parts (
			job_id TEXT NOT NULL,
			file INTEGER NOT NULL,
			part INTEGER NOT NULL,
			data BLOB NOT NULL,
			PRIMARY KEY (job_id, file, part)
		)`,
	},
	After: putStats([][2]string{
		{"ledger", "ledger_tenant 1000000 100000 10000 1000 2 1"},
	}),
}, {
	Version: 7,
	Note:    "AuditEvents are indexed after their commit; narrower indexes of tokens by system and references by URL; indexes of the open deliveries and of a patient's",
	Stmts: []string{
		// AuditEvents are indexed after their commit (sqlstore's audit
		// indexer): every chain entry up to seq has its index rows. Those
		// of before were indexed when written.
		`CREATE TABLE audit_index_head (
			one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
			seq INTEGER NOT NULL
		)`,
		`INSERT INTO audit_index_head (one, seq) SELECT 1, seq FROM audit_chain_head`,
		// Only tokens with a system serve a search by system alone, and
		// only absolute references one by URL: the other rows need no
		// entry in these indexes (a quarter of the tokens, nearly all
		// references).
		`DROP INDEX idx_token_system`,
		`CREATE INDEX idx_token_system ON idx_token (type, param, system) WHERE system <> ''`,
		`DROP INDEX idx_reference_url`,
		`CREATE INDEX idx_reference_url ON idx_reference (type, param, ref_url) WHERE ref_url <> ''`,
		// Readiness counts the open items without reading the delivered
		// ones; an operator lists a patient's deliveries.
		`CREATE INDEX outbox_open ON outbox (status, destination, created) WHERE status <> 'done'`,
		`CREATE INDEX outbox_patient ON outbox (patient, id)`,
	},
	After: putStats([][2]string{
		{"idx_token", "idx_token_system 7000000 700000 100000 50000"},
		{"idx_reference", "idx_reference_url 100000 10000 5000 10"},
		{"outbox", "outbox_open 10000 3000 1000 2"},
		{"outbox", "outbox_patient 1000000 10 1"},
	}),
}, {
	Version: 8,
	Note:    "drops the index of tokens by system alone (no statement needs it; writes get cheaper)",
	Stmts: []string{
		// Nearly every token has a system, so idx_token_system held a
		// second entry for nearly every token row, one more B-tree insert
		// each, for the rare search by system alone (system|), which
		// reads the (type, param) range of idx_token_code instead
		// (issue 19: 8% more session records a second at 32 clients).
		// (DROP INDEX also drops the index's sqlite_stat1 row.)
		`DROP INDEX idx_token_system`,
	},
}, {
	Version: 9,
	Note:    "the tenant indexes hold named tenants' rows only: five indexes rebuilt in the migration's transaction, which holds writes meanwhile (seconds per million versions)",
	Stmts: []string{
		// The tenant indexes hold only the rows of named tenants. Those of
		// the default tenant '' (every row of a single-tenant gateway)
		// were the same entries as the tenant-less indexes' a second time:
		// three B-tree inserts more for every resource version, and for
		// the AuditEvent of every read, for nothing (issue 19: a commit of
		// some ten read AuditEvents wrote 43 pages to the WAL, 33 without
		// them). The default tenant's listings and history use the
		// tenant-less indexes, filtering on the tenant; a named tenant's
		// statements say "tenant <> ''" so that the planner can use these
		// (see tenantCond).
		`DROP INDEX current_tenant_type_lu`,
		`CREATE INDEX current_tenant_type_lu ON current (tenant, type, last_updated, id) WHERE tenant <> ''`,
		`DROP INDEX resources_tenant_type_lu`,
		`CREATE INDEX resources_tenant_type_lu ON resources (tenant, type, last_updated) WHERE tenant <> ''`,
		`DROP INDEX resources_tenant_lu`,
		`CREATE INDEX resources_tenant_lu ON resources (tenant, last_updated) WHERE tenant <> ''`,
		// The tenant-less history indexes end with the tenant, so that
		// the default tenant's history counts read only the index, as
		// they read the tenant index before. (Counts of current rows read
		// the rows anyway, for their deleted flag.)
		`DROP INDEX resources_type_lu`,
		`CREATE INDEX resources_type_lu ON resources (type, last_updated, tenant)`,
		`DROP INDEX resources_lu`,
		`CREATE INDEX resources_lu ON resources (last_updated, tenant)`,
	},
	// DROP INDEX dropped their statistics: as migrations 1 and 4 seeded
	// them.
	After: putStats(append([][2]string{
		{"resources", "resources_type_lu 3000000 300000 2 2"},
		{"resources", "resources_lu 3000000 2 2"},
	}, tenantStats...)),
}, {
	Version:    10,
	NotRolling: true,
	Note:       "AuditEvent bodies are stored packed from now on: an older release refuses this database, so a rollback needs the backup taken before the upgrade",
	Older:      "it answers a read of an AuditEvent stored packed with the packed bytes as its body, and a search or history that includes one with 500",
	// No statement: from this version the store packs AuditEvent bodies
	// (store.PackBody). Bodies written before read as they are; an older
	// program, which would hand packed bodies to clients as they are,
	// refuses the database (its schema is newer).
	Stmts: []string{},
}, {
	Version: 11,
	Note:    "references typed only by Reference.type are typed Patient; the patient rows written before stay, unread, until reindex removes them",
	Stmts: []string{
		// References typed by Reference.type only get that type where
		// a patient row says Patient (see the statement).
		sqlstore.TypePatientReferences,
	},
}, {
	Version: 12,
	Note:    "the database records its search index version: serve warns while it is older than this release's (run reindex once every replica runs this release)",
	// The index version the rows were written with (see the statements).
	Stmts: sqlstore.IndexState,
}, {
	Version: 13,
	Note:    "each version records the method and status that made it, which history shows; versions stored before show as before",
	Stmts: []string{
		// How each version was made: the method of the interaction that
		// wrote it and the status it answered (a history's entry.request
		// and entry.response). Versions of before have '' and 0, and a
		// history shows them as it did (version 1 a POST, the others a
		// PUT). (ADD COLUMN with a constant default rewrites nothing.)
		`ALTER TABLE resources ADD COLUMN method TEXT NOT NULL DEFAULT ''`,
		`ALTER TABLE resources ADD COLUMN status INTEGER NOT NULL DEFAULT 0`,
	},
}, {
	Version: 14,
	Note:    "quantities are indexed with their comparator (<5 is a range); rows written before read as the point until reindex rewrites them",
	// A quantity's comparator: "<5" is the range (-inf, 5) that search
	// prefixes compare with (search.IndexVersion 4). The rows written
	// before have none until reindex rewrites those that have one.
	Stmts: []string{sqlstore.QuantityComparator},
}, {
	Version: 15,
	Note:    "drops the claims of source systems at delivery destinations: the next record of each source claims it again, for the tenant that stored its first record",
	// Which tenant holds a source system at a delivery destination was
	// claimed by the first tenant to store a record after the destination
	// appeared; it is now the tenant that stored the source's first record
	// (engine.Tx.ClaimSource, from the ledger). The claims of before are
	// dropped, to be decided again that way by the next record of each.
	Stmts: []string{sqlstore.DropSourceClaims},
}, {
	Version: 16,
	Note:    "delivery ids are now keyed public ids: the numbers of before (in tickets, runbooks, `deliveries show 3`) no longer find a delivery; look it up again with `deliveries list`",
	// The deployment's secret keys, and the key of the delivery ids shown
	// outside the store (operator.IDs), made here once.
	Stmts: sqlstore.DeploymentKeys,
	After: sqlstore.PutDeliveryIDKey,
}, {
	Version:    17,
	NotRolling: true,
	Note:       "deliveries are ordered on every record they carry (a session on its nested records and infusion; items queued before keep their own record alone), and a destination's outage probes no longer count toward a record's attempt limit",
	Older:      "it sends deliveries ordered on their own record only, so a session and the same vitals record sent alone can reach the EHR out of order, counts outage probes toward a record's attempt limit, and one that predates delivery auditing (before 2026-12-05: SQLite schema 16 or older) sends them without delivery-send AuditEvents (audit verify counts those attempts)",
	// An outbox item's order keys (store.OutboxItem.OrderKeys): the items
	// of before have their OrderKey alone. And its probes.
	Stmts: []string{`CREATE TABLE outbox_keys (
			item_id INTEGER NOT NULL REFERENCES outbox (id),
			order_key TEXT NOT NULL,
			destination TEXT NOT NULL,
			tenant TEXT NOT NULL,
			live INTEGER NOT NULL,
			PRIMARY KEY (item_id, order_key)
		)`, sqlstore.OutboxKeysIndex, sqlstore.OutboxKeysFill,
		// The failed attempts that probed a destination on hold
		// (store.OutboxItem.Probes).
		`ALTER TABLE outbox ADD COLUMN probes INTEGER NOT NULL DEFAULT 0`},
}, {
	Version: 18,
	Note:    "the gateways sharing the database record a fingerprint of the settings that must agree between them, and warn of a gateway whose settings differ (docs/deployment.md, \"Settings every gateway must share\")",
	// One row per gateway instance (store.Instances): fingerprints is a
	// JSON object of opaque hashes, seen its heartbeat (Unix ms).
	Stmts: []string{`CREATE TABLE instances (
			name TEXT PRIMARY KEY,
			fingerprints TEXT NOT NULL,
			seen INTEGER NOT NULL
		)`},
}, {
	Version: 19,
	Note:    "an index of the open deliveries in id order: listings of dead letters no longer read the delivered ones",
	Stmts: []string{
		// The dead letters (and pending or in-flight items) listed newest
		// first read only the open items, in id order (store.Deliveries
		// says status <> 'done'); without it such a listing read every
		// delivery ever made, payloads too (p32: 0.5 s over 6,000 of them
		// with no dead letter at all).
		`CREATE INDEX outbox_open_id ON outbox (status, id) WHERE status <> 'done'`,
	},
	After: putStats([][2]string{{"outbox", "outbox_open_id 10000 3000 1"}}),
}, {
	Version: 20,
	Note:    "an index of the live delivery order keys: the gateway repairs, at start and every 30 s, the keys a release before schema 17 left wrong during a rolling upgrade",
	// RepairOrder (sqlstore) finds the live keys of delivered items
	// through it, not through every key ever written.
	Stmts: []string{sqlstore.OutboxKeysLive},
	After: putStats([][2]string{{"outbox_keys", "outbox_keys_live 1000 1"}}),
}, {
	// client-registrations: the registered clients as last recorded.
	Version: 21,
	Note:    "the gateway records its registered clients (a digest of each one's tenant, scopes and keys) and audits every client added, changed or removed at start; the first start records every client as added (docs/audit.md)",
	// One row per registered client (store.ClientRecord): registration is
	// its tenant, scopes and key ids with their thumbprints as JSON,
	// digest their SHA-256, recorded Unix ms. A new table: older gateways
	// still running ignore it (rolling).
	Stmts: []string{`CREATE TABLE client_registrations (
			id TEXT PRIMARY KEY,
			digest TEXT NOT NULL,
			registration TEXT NOT NULL,
			recorded BIGINT NOT NULL
		)`},
}, {
	Version: 22,
	Note:    "an index of the delivery attempts by time: `audit verify --from` reads the attempts begun since its anchor, not every attempt ever made (built in the migration's transaction, which holds writes meanwhile: about a second per million attempts)",
	// One B-tree entry more per attempt (one attempt per delivery, a few
	// for the retried ones): nothing beside an ingest's resources. A new
	// index: older gateways still running maintain it as they write
	// (rolling).
	Stmts: []string{sqlstore.DeliveryAttemptsAt},
	After: putStats([][2]string{{"delivery_attempts", "delivery_attempts_at 1000000 2 1 1"}}),
}}

// tenantStats are the tenant indexes' planner statistics, as plannerStats:
// some ten tenants of some ten types each.
var tenantStats = [][2]string{
	{"current", "current_tenant_type_lu 1000000 100000 10000 2 1"},
	{"resources", "resources_tenant_type_lu 3000000 300000 30000 2"},
	{"resources", "resources_tenant_lu 3000000 300000 2"},
}

// schemaVersion is the schema version this package migrates to.
var schemaVersion = migrations[len(migrations)-1].Version

// migrate brings the database to schemaVersion in one write transaction
// (BEGIN IMMEDIATE: a second process opening the same file waits for the
// first and then finds nothing left to do). It retries while the database
// is busy, for up to wait. now stamps the migrations applied. A database
// at schemaVersion already is only read, without the write lock: a
// gateway starts while another process (a backup, an sqlite3 shell)
// holds that lock, as a running one goes on serving reads then.
// from is the version the database was at (0: a new one).
func migrate(ctx context.Context, db *sql.DB, wait time.Duration, now func() time.Time, progress func(store.MigrationStep)) (from int, err error) {
	if v, err := readVersion(ctx, db); err == nil && v == schemaVersion {
		return v, nil
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for {
		from, err := migrateProgress(ctx, db, schemaVersion, now, progress)
		if err == nil || !isBusy(err) {
			return from, mapErr(err)
		}
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, mapErr(err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readVersion reads the database's schema version without a write
// transaction (a WAL reader waits for no writer); an error when there is
// no schema_migrations table.
func readVersion(ctx context.Context, db *sql.DB) (int, error) {
	var v int
	err := db.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// migrateOnce migrates the database to version upTo (tests build older
// schemas with it) in one transaction.
func migrateOnce(ctx context.Context, db *sql.DB, upTo int, now func() time.Time) (from int, err error) {
	return migrateProgress(ctx, db, upTo, now, nil)
}

// migrateProgress is migrateOnce telling progress of each step
// (sqlstore.Migrate).
func migrateProgress(ctx context.Context, db *sql.DB, upTo int, now func() time.Time, progress func(store.MigrationStep)) (from int, err error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, ignoreDone(tx.Rollback()))
		}
	}()
	if from, err = sqlstore.Migrate(ctx, conn{q: tx}, dialect, migrations, upTo, now, progress); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	// Load the (seeded) statistics into the write connection.
	_, err = db.ExecContext(ctx, `ANALYZE sqlite_schema`)
	return from, err
}

// plannerStats are sqlite_stat1 rows describing a large database of the
// shape this schema expects: (type, param, value) lookups are selective,
// a resource type alone is not. Without statistics SQLite's planner prefers
// to scan current in last_updated order and probe each resource against
// the search conditions, which is linear in the number of resources; with
// them it drives the search from the index lookups. They are seeded once
// and stay put (a manual ANALYZE replaces them with measured ones).
var plannerStats = [][2]string{
	{"resources", "sqlite_autoindex_resources_1 3000000 300000 3 1"},
	{"resources", "resources_lu 3000000 2"},
	{"resources", "resources_type_lu 3000000 300000 2"},
	{"current", "sqlite_autoindex_current_1 1000000 100000 1"},
	{"current", "current_type_lu 1000000 100000 2 1"},
	{"idx_token", "idx_token_code 10000000 1000000 100000 5 2"},
	{"idx_token", "idx_token_system 10000000 1000000 100000 50000"},
	{"idx_token", "idx_token_res 10000000 1000000 10"},
	{"idx_string", "idx_string_norm 3000000 300000 100000 3"},
	{"idx_string", "idx_string_exact 3000000 300000 100000 3"},
	{"idx_string", "idx_string_res 3000000 300000 3"},
	{"idx_date", "idx_date_low 3000000 300000 100000 3"},
	{"idx_date", "idx_date_high 3000000 300000 100000 3"},
	{"idx_date", "idx_date_res 3000000 300000 3"},
	{"idx_reference", "idx_reference_target 5000000 500000 100000 20 10"},
	{"idx_reference", "idx_reference_url 5000000 500000 100000 10"},
	{"idx_reference", "idx_reference_res 5000000 500000 5"},
	{"idx_quantity", "idx_quantity_number 2000000 200000 100000 5"},
	{"idx_quantity", "idx_quantity_res 2000000 200000 2"},
	{"idx_uri", "idx_uri_uri 100000 10000 5000 1"},
	{"idx_uri", "idx_uri_res 100000 10000 1"},
	{"conditional_keys", "sqlite_autoindex_conditional_keys_1 100000 1"},
	{"conditional_keys", "conditional_keys_res 100000 1 1"},
	{"ledger", "sqlite_autoindex_ledger_1 1000000 100000 10000 2 1"},
}

// seedStats writes plannerStats (SQLite only: ANALYZE creates sqlite_stat1).
func seedStats(ctx context.Context, c sqlstore.Conn) error {
	if _, err := c.Exec(ctx, `ANALYZE`); err != nil {
		return err
	}
	if _, err := c.Exec(ctx, `DELETE FROM sqlite_stat1`); err != nil {
		return err
	}
	return putStats(plannerStats)(ctx, c)
}

// putStats writes sqlite_stat1 rows ({table, "index stat..."}), replacing
// those of the same indexes. The table exists from migration 1 on.
func putStats(rows [][2]string) func(ctx context.Context, c sqlstore.Conn) error {
	return func(ctx context.Context, c sqlstore.Conn) error {
		for _, st := range rows {
			idx, stat, _ := strings.Cut(st[1], " ")
			if _, err := c.Exec(ctx, `DELETE FROM sqlite_stat1 WHERE tbl = ? AND idx = ?`, st[0], idx); err != nil {
				return err
			}
			if _, err := c.Exec(ctx, `INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)`, st[0], idx, stat); err != nil {
				return err
			}
		}
		return nil
	}
}

// ignoreDone drops sql.ErrTxDone (a rollback after a failed commit).
func ignoreDone(err error) error {
	if errors.Is(err, sql.ErrTxDone) {
		return nil
	}
	return err
}
