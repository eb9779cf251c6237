package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// logRecovery logs, once at start, what serve found of a previous process:
// the schema it migrated (and what each migration applied changes), the deliveries in flight (a stopped process's
// claims lapse, and their records are sent again, the attempt cut off
// recorded as interrupted) and the jobs running (a stopped process's
// resume when their lease runs out). Counts only, never a record.
func logRecovery(ctx context.Context, st store.Store, logger *slog.Logger, now time.Time) {
	logMigration(st, logger)
	stats, err := st.Stats(ctx) // counts: no delivery read
	if err != nil {
		logger.Warn("delivery: could not count the deliveries in flight", "error_class", store.ErrorClass(err))
	} else {
		n := 0
		for _, s := range stats {
			n += s.InFlight
		}
		if n > 0 {
			logger.Info("delivery: deliveries in flight at start; those of a stopped process are claimed again when "+
				"their claim lapses, their cut-off attempt recorded as interrupted, and sent again", "in_flight", n)
		}
	}
	jobs, err := st.ListJobs(ctx, store.JobFilter{Tenant: search.AllTenants, Status: store.JobRunning, Limit: 1000})
	if err != nil {
		logger.Warn("jobs: could not count the jobs running", "error_class", store.ErrorClass(err))
		return
	}
	var lapse time.Time
	for _, j := range jobs {
		if j.LeaseUntil.After(lapse) {
			lapse = j.LeaseUntil
		}
	}
	if running := len(jobs); running > 0 {
		attrs := []any{"running", running}
		if lapse.After(now) {
			attrs = append(attrs, "leases_end_by", lapse.UTC().Format(time.RFC3339))
		}
		logger.Info("jobs: jobs running at start; those of a stopped process resume from their last checkpoint "+
			"when their lease runs out", attrs...)
	}
}

// logIndexVersion warns, at start, when the database's search index holds
// rows an older build wrote, naming the command that rewrites them.
func logIndexVersion(ctx context.Context, st store.Store, logger *slog.Logger) {
	if v, err := st.IndexVersion(ctx); err != nil {
		logger.Warn("could not read the search index's version", "error_class", store.ErrorClass(err))
	} else if v < search.IndexVersion {
		logger.Warn("the search index holds rows an older build wrote: some searches may miss resources written before "+
			"the upgrade; run 'ketamine-gateway reindex' on this database, beside the running gateway, once every "+
			"replica runs this version (docs/deployment.md, \"Rebuilding the search index\")",
			"index_version", v, "build_index_version", search.IndexVersion)
	}
}

// logMigration logs what opening st migrated of the schema: a new
// database, or the versions from and to and a line per migration applied
// with what it changes for the operator.
func logMigration(st store.Store, logger *slog.Logger) {
	switch m := st.Migrated(); {
	case m.To == 0:
	case m.From == 0:
		logger.Info("store: new database created", "schema", m.To)
	default:
		logger.Info("store: schema migrated", "from", m.From, "to", m.To)
		// What each migration changes for the operator (docs/deployment.md,
		// "Upgrading"): delivery ids that no longer work, a reindex to run.
		for _, a := range m.Applied {
			if a.NotRolling {
				// Releases before it never read the schema floor: this
				// line is the operator's only warning (p44 F1).
				logger.Warn(stopTheWorld(a.Version), "version", a.Version, "change", a.Note, "older_releases", a.Older,
					"docs", `docs/deployment.md, "Rolling and stop-the-world upgrades"`)
				continue
			}
			logger.Info("store: migration applied", "version", a.Version, "change", a.Note)
		}
	}
}

// stopTheWorld is the message of a stop-the-world migration to schema
// version applied (store.AppliedMigration.NotRolling).
func stopTheWorld(version int) string {
	return fmt.Sprintf("store: stop-the-world migration applied: stop every gateway and CLI of a release older than schema %d "+
		"now: one of a release that reads the database's floor stops claiming work by itself, one from before does not "+
		"know it must and keeps claiming and sending deliveries", version)
}

// openExit is the exit status of a database that could not be opened:
// 2 (configuration refused) for settings the store refuses and for a
// server that refuses the login, the grants, the database's name or its
// certificate (a person must correct --db, the password or the server;
// restarting alone does not mend it) and for a database a newer release
// upgraded (a rollback: run that release or restore the backup; a
// supervisor restarting this one would be refused forever), 3 (could not
// open: try again later) otherwise.
func openExit(err error) int {
	if errors.Is(err, store.ErrInvalidSettings) || store.LoginRefused(store.UnavailableCause(err)) ||
		errors.Is(err, store.ErrNewerRelease) {
		return exitUsage
	}
	return exitUnchecked
}

// openFailure is serve's message when the database could not be opened:
// a lock held by another process or a full disk is no fault of --db; a
// server refusing the login, the grants or its certificate says what to
// check.
func openFailure(err error) string {
	if errors.Is(err, store.ErrNewerRelease) {
		return rollbackMessage("serve", err)
	}
	if errors.Is(err, store.ErrInvalidSettings) {
		return fmt.Sprintf("serve: the database settings are refused: %v; correct --db or GATEWAY_DB", err)
	}
	switch store.UnavailableCause(err) {
	case store.CauseLogin:
		return fmt.Sprintf("serve: PostgreSQL rejected the gateway's login: check the role's password (PGPASSWORD, "+
			"~/.pgpass, or percent-encoded in --db), that the role exists and may log in, and that pg_hba.conf admits it "+
			"from this host: %v", err)
	case store.CausePermission:
		return fmt.Sprintf("serve: PostgreSQL refused the connection: the role may not connect to the database "+
			"(GRANT CONNECT ON DATABASE ... TO the role, docs/deployment.md): %v", err)
	case store.CauseNoDatabase:
		return fmt.Sprintf("serve: the database named in --db does not exist on the server: create it "+
			"(docs/deployment.md) or correct --db or GATEWAY_DB: %v", err)
	case store.CauseCertificate:
		return fmt.Sprintf("serve: the PostgreSQL server's TLS certificate failed verification: set sslrootcert to the "+
			"CA that signed it and, with sslmode=verify-full, give --db a host name the certificate names: %v", err)
	case store.CauseClosed:
		return fmt.Sprintf("serve: the PostgreSQL database takes no connections now (ALTER DATABASE ... ALLOW_CONNECTIONS "+
			"false, a step of a restore or an upgrade): start again once it is opened to connections: %v", err)
	case store.CauseLocked:
		return fmt.Sprintf("serve: the database is locked by another process (a backup, a migration, an sqlite3 shell "+
			"left in a transaction), which held its write lock longer than serve waits at start to migrate it; "+
			"start again once that process releases it: %v", err)
	case store.CauseFull:
		return fmt.Sprintf("serve: the database's disk is full; free space and start again: %v", err)
	}
	return fmt.Sprintf("serve: could not open or create the database: %v; check --db or GATEWAY_DB", err)
}

// migrationProgress logs a migration as it runs (the stores'
// Options.Progress): before it begins, the versions from and to and how
// many steps, and each step as it starts with what it changes. The
// listener starts only once the store is open: meanwhile /healthz and
// /readyz do not answer, which the first line says.
//
// A new database (from 0) is not logged step by step: its steps take
// moments, and what each changes for an operator of an older database
// ("the numbers of before no longer find a delivery") says nothing of a
// new one; logMigration's "new database created" says what happened (a
// first-hour review: 24 lines of upgrade notes and probe advice before an
// import's summary).
func migrationProgress(logger *slog.Logger) func(store.MigrationStep) {
	n := 0
	return func(m store.MigrationStep) {
		if m.From == 0 {
			return
		}
		if m.Version == 0 {
			n = 0
			logger.Info("store: migrating the schema", "from", m.From, "to", m.To, "steps", m.Steps,
				"probes", "/healthz and /readyz answer once it has finished; give a long migration time "+
					"(serve --migrate-only before starting, docs/deployment.md)")
			return
		}
		n++
		logger.Info("store: migration starting", "version", m.Version, "step", fmt.Sprintf("%d/%d", n, m.Steps), "change", m.Note)
	}
}
