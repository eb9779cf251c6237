package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// migrations are the schema versions, oldest first. Never edit a released
// migration: append a new one. They mirror the SQLite backend's: times are
// BIGINT unix milliseconds (UTC), text is compared bytewise (COLLATE "C").
var migrations = []sqlstore.Migration{{
	Version: 1,
	Note:    "the gateway's tables: resources, their versions and search index, conditional create keys, the ledger of native records",
	Stmts: []string{
		// Every version of every resource; body is NULL for a deletion.
		`CREATE TABLE resources (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			version BIGINT NOT NULL,
			last_updated BIGINT NOT NULL,
			deleted BOOLEAN NOT NULL DEFAULT FALSE,
			body BYTEA,
			PRIMARY KEY (type, id, version)
		)`,
		`CREATE INDEX resources_lu ON resources (last_updated)`,
		`CREATE INDEX resources_type_lu ON resources (type, last_updated)`,
		// The latest version of every resource (deleted or not).
		`CREATE TABLE current (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			version BIGINT NOT NULL,
			last_updated BIGINT NOT NULL,
			deleted BOOLEAN NOT NULL DEFAULT FALSE,
			PRIMARY KEY (type, id),
			FOREIGN KEY (type, id, version) REFERENCES resources (type, id, version)
		)`,
		`CREATE INDEX current_type_lu ON current (type, last_updated, id)`,
		// Search index entries of the current, non-deleted versions.
		`CREATE TABLE idx_token (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			param TEXT COLLATE "C" NOT NULL,
			system TEXT COLLATE "C" NOT NULL,
			code TEXT COLLATE "C" NOT NULL,
			text TEXT COLLATE "C" NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_token_code ON idx_token (type, param, code, system)`,
		`CREATE INDEX idx_token_system ON idx_token (type, param, system)`,
		`CREATE INDEX idx_token_res ON idx_token (type, id)`,
		`CREATE TABLE idx_string (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			param TEXT COLLATE "C" NOT NULL,
			norm TEXT COLLATE "C" NOT NULL,
			exact TEXT COLLATE "C" NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_string_norm ON idx_string (type, param, norm)`,
		`CREATE INDEX idx_string_exact ON idx_string (type, param, exact)`,
		`CREATE INDEX idx_string_res ON idx_string (type, id)`,
		`CREATE TABLE idx_date (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			param TEXT COLLATE "C" NOT NULL,
			low BIGINT NOT NULL,
			high BIGINT NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_date_low ON idx_date (type, param, low)`,
		`CREATE INDEX idx_date_high ON idx_date (type, param, high)`,
		`CREATE INDEX idx_date_res ON idx_date (type, id)`,
		`CREATE TABLE idx_reference (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			param TEXT COLLATE "C" NOT NULL,
			ref_type TEXT COLLATE "C" NOT NULL,
			ref_id TEXT COLLATE "C" NOT NULL,
			ref_url TEXT COLLATE "C" NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_reference_target ON idx_reference (type, param, ref_id, ref_type)`,
		`CREATE INDEX idx_reference_url ON idx_reference (type, param, ref_url)`,
		`CREATE INDEX idx_reference_res ON idx_reference (type, id)`,
		// Reverse lookups (_revinclude) go from the target to the sources.
		`CREATE INDEX idx_reference_rev ON idx_reference (ref_type, ref_id)`,
		`CREATE TABLE idx_quantity (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			param TEXT COLLATE "C" NOT NULL,
			number DOUBLE PRECISION NOT NULL,
			system TEXT COLLATE "C" NOT NULL,
			code TEXT COLLATE "C" NOT NULL,
			unit TEXT COLLATE "C" NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_quantity_number ON idx_quantity (type, param, number)`,
		`CREATE INDEX idx_quantity_res ON idx_quantity (type, id)`,
		`CREATE TABLE idx_uri (
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL,
			param TEXT COLLATE "C" NOT NULL,
			uri TEXT COLLATE "C" NOT NULL,
			FOREIGN KEY (type, id) REFERENCES current (type, id)
		)`,
		`CREATE INDEX idx_uri_uri ON idx_uri (type, param, uri)`,
		`CREATE INDEX idx_uri_res ON idx_uri (type, id)`,
		// Conditional create keys, e.g. "Patient|identifier=sys|val".
		`CREATE TABLE conditional_keys (
			key TEXT COLLATE "C" NOT NULL PRIMARY KEY,
			type TEXT COLLATE "C" NOT NULL,
			id TEXT COLLATE "C" NOT NULL
		)`,
		`CREATE INDEX conditional_keys_res ON conditional_keys (type, id)`,
		// One row per ingested native record version.
		`CREATE TABLE ledger (
			source TEXT COLLATE "C" NOT NULL,
			kind TEXT COLLATE "C" NOT NULL,
			record_id TEXT COLLATE "C" NOT NULL,
			version TEXT COLLATE "C" NOT NULL,
			content_hash TEXT COLLATE "C" NOT NULL,
			response BYTEA,
			received BIGINT NOT NULL,
			PRIMARY KEY (source, kind, record_id, version)
		)`,
	},
}, {
	Version: 2,
	Note:    "the outbox of deliveries to EHRs and their attempts",
	Stmts: []string{
		// The transactional outbox: one row per record and destination.
		`CREATE TABLE outbox (
			id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
			destination TEXT COLLATE "C" NOT NULL,
			order_key TEXT COLLATE "C" NOT NULL,
			patient TEXT COLLATE "C" NOT NULL,
			kind TEXT COLLATE "C" NOT NULL,
			source TEXT COLLATE "C" NOT NULL,
			record_id TEXT COLLATE "C" NOT NULL,
			version TEXT COLLATE "C" NOT NULL,
			trace_id TEXT COLLATE "C" NOT NULL,
			payload BYTEA NOT NULL,
			status TEXT COLLATE "C" NOT NULL,
			attempts INTEGER NOT NULL DEFAULT 0,
			next_attempt BIGINT NOT NULL,
			lease_until BIGINT NOT NULL DEFAULT 0,
			last_error TEXT COLLATE "C" NOT NULL DEFAULT '',
			created BIGINT NOT NULL,
			updated BIGINT NOT NULL
		)`,
		`CREATE INDEX outbox_due ON outbox (destination, status, next_attempt)`,
		`CREATE INDEX outbox_order ON outbox (destination, order_key, id)`,
		`CREATE INDEX outbox_created ON outbox (created)`,
		`CREATE TABLE delivery_attempts (
			item_id BIGINT NOT NULL REFERENCES outbox (id),
			n INTEGER NOT NULL,
			at BIGINT NOT NULL,
			duration_ms BIGINT NOT NULL,
			http_status INTEGER NOT NULL,
			outcome BYTEA,
			trace_id TEXT COLLATE "C" NOT NULL,
			error TEXT COLLATE "C" NOT NULL,
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
			seq BIGINT NOT NULL PRIMARY KEY,
			id TEXT COLLATE "C" NOT NULL UNIQUE,
			hash TEXT COLLATE "C" NOT NULL
		)`,
		// The chain head: the last seq and hash, one row, locked by every
		// append until its transaction ends (see Tx.AppendAudit).
		`CREATE TABLE audit_chain_head (
			one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
			seq BIGINT NOT NULL,
			hash TEXT COLLATE "C" NOT NULL
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
		// tenant ''. ADD COLUMN with a constant default rewrites nothing,
		// but the index builds below read the tables, with the tables
		// locked until the migration commits.
		`ALTER TABLE resources ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT ''`,
		`ALTER TABLE current ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT ''`,
		`ALTER TABLE outbox ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT ''`,
		// A tenant's search: a listing in last_updated order, or the
		// count of a type, reads only the tenant's rows. The tenant-less
		// indexes stay for searches of every tenant.
		`CREATE INDEX current_tenant_type_lu ON current (tenant, type, last_updated, id)`,
		// A tenant's type and system history.
		`CREATE INDEX resources_tenant_type_lu ON resources (tenant, type, last_updated)`,
		`CREATE INDEX resources_tenant_lu ON resources (tenant, last_updated)`,
		// A tenant's delivery listing, newest first.
		`CREATE INDEX outbox_tenant ON outbox (tenant, id)`,
		// Statistics of the new column of a database in use: without
		// them the planner takes "tenant = $1" for 0.5% of the rows (with
		// "type = $2", as good as a key) and may loop over every current
		// row, and autovacuum would gather them only after a tenth of a
		// table changed. Empty tables are left alone: analysed empty, the
		// planner would take them for empty until autovacuum comes, and
		// check their foreign keys with sequential scans.
		`DO $$ BEGIN
			IF EXISTS (SELECT 1 FROM resources) THEN ANALYZE resources, current; END IF;
			IF EXISTS (SELECT 1 FROM outbox) THEN ANALYZE outbox; END IF;
		END $$`,
	},
}, {
	Version: 5,
	Note:    "the nonces of SMART client assertions (a client assertion is accepted once)",
	Stmts: []string{
		// One-time values (store.Nonces): the key is used until exp (unix
		// milliseconds); expired rows are purged in exp order.
		`CREATE TABLE nonces (
			key BYTEA NOT NULL PRIMARY KEY,
			exp BIGINT NOT NULL
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
		`ALTER TABLE ledger ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT ''`,
		`ALTER TABLE ledger ADD COLUMN mapping_version TEXT COLLATE "C" NOT NULL DEFAULT ''`,
		`ALTER TABLE ledger ADD COLUMN input BYTEA`,
		`UPDATE ledger SET tenant = substr(source, 8, strpos(source, '|') - 8) WHERE source LIKE 'tenant:%|%'`,
		`CREATE INDEX ledger_tenant ON ledger (tenant, source, kind, record_id, version)`,
		// Durable jobs (bulk export, import, replay) and the parts of
		// their files (store.Jobs).
		`CREATE TABLE jobs (
			id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
			kind TEXT COLLATE "C" NOT NULL,
			tenant TEXT COLLATE "C" NOT NULL,
			owner TEXT COLLATE "C" NOT NULL,
			status TEXT COLLATE "C" NOT NULL,
			request BYTEA NOT NULL,
			progress_done BIGINT NOT NULL,
			progress_total BIGINT NOT NULL,
			checkpoint BYTEA,
			result BYTEA,
			error TEXT COLLATE "C" NOT NULL,
			attempts INTEGER NOT NULL,
			claim TEXT COLLATE "C" NOT NULL,
			lease_until BIGINT NOT NULL,
			created BIGINT NOT NULL,
			updated BIGINT NOT NULL,
			finished BIGINT NOT NULL,
			expires BIGINT NOT NULL
		)`,
		`CREATE INDEX jobs_claim ON jobs (status, kind, created)`,
		`CREATE INDEX jobs_expires ON jobs (expires)`,
		`CREATE INDEX jobs_tenant ON jobs (tenant, created)`,
		`CREATE TABLE job_parts (
			job_id TEXT COLLATE "C" NOT NULL,
			file INTEGER NOT NULL,
			part INTEGER NOT NULL,
			data BYTEA NOT NULL,
			PRIMARY KEY (job_id, file, part)
		)`,
	},
}, {
	Version: 7,
	Note:    "AuditEvents are indexed after their commit; narrower indexes of tokens by system and references by URL; indexes of the open deliveries and of a patient's",
	Stmts: []string{
		// AuditEvents are indexed after their commit (sqlstore's audit
		// indexer): every chain entry up to seq has its index rows. Those
		// of before were indexed when written.
		`CREATE TABLE audit_index_head (
			one INTEGER NOT NULL PRIMARY KEY CHECK (one = 1),
			seq BIGINT NOT NULL
		)`,
		`INSERT INTO audit_index_head (one, seq) SELECT 1, seq FROM audit_chain_head`,
		// Only tokens with a system serve a search by system alone, and
		// only absolute references one by URL.
		`DROP INDEX idx_token_system`,
		`CREATE INDEX idx_token_system ON idx_token (type, param, system) WHERE system <> ''`,
		`DROP INDEX idx_reference_url`,
		`CREATE INDEX idx_reference_url ON idx_reference (type, param, ref_url) WHERE ref_url <> ''`,
		// Reverse lookups are scoped by the source type too, so that the
		// references of one type (say the AuditEvents naming a patient,
		// thousands of them) never lie in the range another type's search
		// or count reads.
		`DROP INDEX idx_reference_rev`,
		`CREATE INDEX idx_reference_rev ON idx_reference (ref_type, ref_id, type)`,
		// Readiness counts the open items without reading the delivered
		// ones; an operator lists a patient's deliveries.
		`CREATE INDEX outbox_open ON outbox (status, destination, created) WHERE status <> 'done'`,
		`CREATE INDEX outbox_patient ON outbox (patient, id)`,
	},
}, {
	Version: 8,
	Note:    "drops the index of tokens by system alone (no statement needs it; writes get cheaper)",
	Stmts: []string{
		// Nearly every token has a system, so idx_token_system held a
		// second entry for nearly every token row, one more B-tree insert
		// each, for the rare search by system alone (system|), which
		// reads the (type, param) range of idx_token_code instead
		// (issue 19: 8% more session records a second at 32 clients).
		`DROP INDEX idx_token_system`,
	},
}, {
	Version: 9,
	Note:    "drops the foreign keys of current and the index tables (each cost a trigger query and a row lock per inserted row)",
	Stmts: []string{
		// PostgreSQL checks a foreign key with a trigger that, for every
		// inserted row, runs a query and locks the referenced row (FOR KEY
		// SHARE): half the database's CPU when ingesting (issue 19: Synthea
		// 1.8x faster without them). The store writes an index row only
		// with its resource's current row, in the same transaction, and
		// never deletes a current row or a version, so the keys guarded
		// nothing the store's tests do not check (CheckIntegrity, after
		// every test of the shared suite, on both stores). SQLite keeps
		// them: its check is a lookup in the same process, and costs no
		// measurable time there.
		`ALTER TABLE current DROP CONSTRAINT IF EXISTS current_type_id_version_fkey`,
		`ALTER TABLE idx_token DROP CONSTRAINT IF EXISTS idx_token_type_id_fkey`,
		`ALTER TABLE idx_string DROP CONSTRAINT IF EXISTS idx_string_type_id_fkey`,
		`ALTER TABLE idx_date DROP CONSTRAINT IF EXISTS idx_date_type_id_fkey`,
		`ALTER TABLE idx_reference DROP CONSTRAINT IF EXISTS idx_reference_type_id_fkey`,
		`ALTER TABLE idx_quantity DROP CONSTRAINT IF EXISTS idx_quantity_type_id_fkey`,
		`ALTER TABLE idx_uri DROP CONSTRAINT IF EXISTS idx_uri_type_id_fkey`,
	},
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
	Note:    "the tenant indexes hold named tenants' rows only: five indexes rebuilt in the migration's transaction, which holds writes meanwhile (seconds per million versions)",
	Stmts: []string{
		// As SQLite's schema 9: the tenant indexes hold only the rows of
		// named tenants. Those of the default tenant '' (every row of a
		// single-tenant gateway) were the tenant-less indexes' entries a
		// second time: three index inserts more for every resource
		// version, and for the AuditEvent of every read. The default
		// tenant's listings and history use the tenant-less indexes,
		// filtering on the tenant, which those of history now hold; a
		// named tenant's statements say "tenant <> ''" so that the planner
		// can use these (see sqlstore's tenantCond).
		`DROP INDEX current_tenant_type_lu`,
		`CREATE INDEX current_tenant_type_lu ON current (tenant, type, last_updated, id) WHERE tenant <> ''`,
		`DROP INDEX resources_tenant_type_lu`,
		`CREATE INDEX resources_tenant_type_lu ON resources (tenant, type, last_updated) WHERE tenant <> ''`,
		`DROP INDEX resources_tenant_lu`,
		`CREATE INDEX resources_tenant_lu ON resources (tenant, last_updated) WHERE tenant <> ''`,
		`DROP INDEX resources_type_lu`,
		`CREATE INDEX resources_type_lu ON resources (type, last_updated, tenant)`,
		`DROP INDEX resources_lu`,
		`CREATE INDEX resources_lu ON resources (last_updated, tenant)`,
	},
}, {
	Version: 12,
	Note:    "references typed only by Reference.type are typed Patient; the patient rows written before stay, unread, until reindex removes them",
	Stmts: []string{
		// As SQLite's schema 11.
		sqlstore.TypePatientReferences,
	},
}, {
	Version: 13,
	Note:    "large values are compressed with lz4 where the server can (PostgreSQL 14+); values stored before keep pglz",
	Stmts: []string{
		// Large values compressed with lz4 rather than pglz (where the
		// server has lz4: PostgreSQL 14 and newer, built with it; otherwise
		// nothing changes). Values stored before keep pglz and read as
		// before.
		lz4Columns,
	},
}, {
	Version: 14,
	Note:    "the database records its search index version: serve warns while it is older than this release's (run reindex once every replica runs this release)",
	// As SQLite's schema 12: the index version the rows were written with.
	Stmts: sqlstore.IndexState,
}, {
	Version: 15,
	Note:    "each version records the method and status that made it, which history shows; versions stored before show as before",
	Stmts: []string{
		// As SQLite's schema 13: how each version was made (the method of
		// the interaction that wrote it and the status it answered); ''
		// and 0 for the versions of before. ADD COLUMN with a constant
		// default rewrites nothing.
		`ALTER TABLE resources ADD COLUMN method TEXT COLLATE "C" NOT NULL DEFAULT ''`,
		`ALTER TABLE resources ADD COLUMN status INTEGER NOT NULL DEFAULT 0`,
	},
}, {
	Version: 16,
	Note:    "quantities are indexed with their comparator (<5 is a range); rows written before read as the point until reindex rewrites them",
	// As SQLite's schema 14: a quantity's comparator (a constant default:
	// the table is not rewritten).
	Stmts: []string{sqlstore.QuantityComparator},
}, {
	Version: 17,
	Note:    "drops the claims of source systems at delivery destinations: the next record of each source claims it again, for the tenant that stored its first record",
	// Which tenant holds a source system at a delivery destination was
	// claimed by the first tenant to store a record after the destination
	// appeared; it is now the tenant that stored the source's first record
	// (engine.Tx.ClaimSource, from the ledger). The claims of before are
	// dropped, to be decided again that way by the next record of each.
	Stmts: []string{sqlstore.DropSourceClaims},
}, {
	Version: 18,
	Note:    "delivery ids are now keyed public ids: the numbers of before (in tickets, runbooks, `deliveries show 3`) no longer find a delivery; look it up again with `deliveries list`",
	// As SQLite's schema 16: the deployment's secret keys, and the key of
	// the delivery ids shown outside the store (operator.IDs), made here
	// once (under the migration lock: one key, whoever migrates).
	Stmts: sqlstore.DeploymentKeys,
	After: sqlstore.PutDeliveryIDKey,
}, {
	Version:    19,
	NotRolling: true,
	Note:       "deliveries are ordered on every record they carry (a session on its nested records and infusion; items queued before keep their own record alone), and a destination's outage probes no longer count toward a record's attempt limit",
	Older:      "it sends deliveries ordered on their own record only, so a session and the same vitals record sent alone can reach the EHR out of order, counts outage probes toward a record's attempt limit, and one that predates delivery auditing (before 2026-12-05: PostgreSQL schema 18 or older) sends them without delivery-send AuditEvents (audit verify counts those attempts)",
	// As SQLite's schema 17: an outbox item's order keys, and its probes.
	Stmts: []string{`CREATE TABLE outbox_keys (
			item_id BIGINT NOT NULL,
			order_key TEXT COLLATE "C" NOT NULL,
			destination TEXT COLLATE "C" NOT NULL,
			tenant TEXT COLLATE "C" NOT NULL,
			live INTEGER NOT NULL,
			PRIMARY KEY (item_id, order_key)
		)`, sqlstore.OutboxKeysIndex, sqlstore.OutboxKeysFill,
		`ALTER TABLE outbox ADD COLUMN probes INTEGER NOT NULL DEFAULT 0`},
}, {
	Version: 20,
	Note:    "the gateways sharing the database record a fingerprint of the settings that must agree between them, and warn of a gateway whose settings differ (docs/deployment.md, \"Settings every gateway must share\")",
	// One row per gateway instance (store.Instances): fingerprints is a
	// JSON object of opaque hashes, seen its heartbeat (Unix ms).
	Stmts: []string{`CREATE TABLE instances (
			name TEXT COLLATE "C" PRIMARY KEY,
			fingerprints TEXT NOT NULL,
			seen BIGINT NOT NULL
		)`},
}, {
	Version: 21,
	Note:    "an index of the open deliveries in id order: listings of dead letters no longer read the delivered ones",
	Stmts: []string{
		// The dead letters (and pending or in-flight items) listed newest
		// first read only the open items, in id order (store.Deliveries
		// says status <> 'done'); without it such a listing read every
		// delivery ever made, payloads too (p32: 0.5 s over 6,000 of them
		// with no dead letter at all).
		`CREATE INDEX outbox_open_id ON outbox (status, id) WHERE status <> 'done'`,
	},
}, {
	Version: 22,
	Note:    "an index of the live delivery order keys: the gateway repairs, at start and every 30 s, the keys a release before schema 19 left wrong during a rolling upgrade",
	// As SQLite's schema 20.
	Stmts: []string{sqlstore.OutboxKeysLive},
}, {
	// client-registrations: the registered clients as last recorded.
	Version: 23,
	Note:    "the gateway records its registered clients (a digest of each one's tenant, scopes and keys) and audits every client added, changed or removed at start; the first start records every client as added (docs/audit.md)",
	// One row per registered client (store.ClientRecord): registration is
	// its tenant, scopes and key ids with their thumbprints as JSON,
	// digest their SHA-256, recorded Unix ms. A new table: older gateways
	// still running ignore it (rolling).
	Stmts: []string{`CREATE TABLE client_registrations (
			id TEXT COLLATE "C" PRIMARY KEY,
			digest TEXT NOT NULL,
			registration TEXT NOT NULL,
			recorded BIGINT NOT NULL
		)`},
}, {
	Version: 24,
	Note:    "an index of the delivery attempts by time: `audit verify --from` reads the attempts begun since its anchor, not every attempt ever made (built in the migration's transaction, which holds the attempts' writes meanwhile: about a second per million attempts)",
	// As SQLite's schema 22.
	Stmts: []string{sqlstore.DeliveryAttemptsAt},
}}

// lz4Columns sets the TOAST compression of the columns that hold large
// values (a resource's body, a ledger entry's input and response, an
// outbox item's payload, a bulk export part) to lz4, unless the server
// cannot (PostgreSQL 13 has no SET COMPRESSION: a syntax error; a server
// built without lz4: feature not supported). EXECUTE defers the parsing to
// the block, whose handler takes either error. PostgreSQL compresses a
// row's large values with pglz by default, at some 20 MB/s: loading the
// nine Synthea Bundles, the flush of a transaction's rows took 15% less
// time with lz4 (issue 19).
const lz4Columns = `DO $$
BEGIN
	EXECUTE 'ALTER TABLE resources ALTER COLUMN body SET COMPRESSION lz4';
	EXECUTE 'ALTER TABLE ledger ALTER COLUMN input SET COMPRESSION lz4, ALTER COLUMN response SET COMPRESSION lz4';
	EXECUTE 'ALTER TABLE outbox ALTER COLUMN payload SET COMPRESSION lz4';
	EXECUTE 'ALTER TABLE job_parts ALTER COLUMN data SET COMPRESSION lz4';
EXCEPTION WHEN syntax_error OR feature_not_supported THEN
	NULL;
END
$$`

// schemaVersion is the schema version this package migrates to.
var schemaVersion = migrations[len(migrations)-1].Version

// migrationLock is the pg_advisory_xact_lock key that serialises the
// migrations of every process opening the same database ("kgmigr").
const migrationLock int64 = 0x6b676d69677200

// migrate brings the database to schemaVersion in one transaction that
// first takes the migration advisory lock: a process opening the database
// while another migrates it waits for that one to commit, then finds
// nothing left to do. The statement timeout does not apply (a migration
// of a large table may take long; ctx bounds it).
func (s *Store) migrate(ctx context.Context) error {
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	ptx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err == nil {
		defer rollback(ctx, ptx)
		var from int
		if from, err = migrateProgress(ctx, ptx, schemaVersion, s.now, s.progress); err == nil {
			if err = ptx.Commit(ctx); err == nil {
				s.SetMigrated(from, migrations)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", mapErr(ctx, err))
	}
	return nil
}

// checkVersion checks the schema version without migrating (Existing).
func (s *Store) checkVersion(ctx context.Context) error {
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	if err := sqlstore.CheckVersion(ctx, conn{q: c}, schemaVersion); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

// migrateTx migrates the database to version upTo (tests build older
// schemas with it) in tx; now stamps the migrations applied.
func migrateTx(ctx context.Context, tx pgx.Tx, upTo int, now func() time.Time) (from int, err error) {
	return migrateProgress(ctx, tx, upTo, now, nil)
}

// migrateProgress is migrateTx telling progress of each step
// (sqlstore.Migrate).
func migrateProgress(ctx context.Context, tx pgx.Tx, upTo int, now func() time.Time, progress func(store.MigrationStep)) (from int, err error) {
	// Neither the statement timeout nor the lock timeout: the migration
	// waits for the migration lock another process holds, and for the
	// tables its DDL alters (requests that meanwhile wait on it get the
	// lock timeout, 503 store-busy, and retry).
	for _, set := range []string{`SET LOCAL statement_timeout = 0`, `SET LOCAL lock_timeout = 0`} {
		if _, err := tx.Exec(ctx, set); err != nil {
			return 0, err
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrationLock); err != nil {
		return 0, fmt.Errorf("migration lock: %w", err)
	}
	return sqlstore.Migrate(ctx, conn{q: tx}, dialect, migrations, upTo, now, progress)
}
