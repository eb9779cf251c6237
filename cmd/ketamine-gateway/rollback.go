package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// dbUse is what a command does with the database it opens (openStore):
// only a command that writes is refused a database whose search index a
// newer release wrote.
type dbUse int

const (
	// dbRead: an existing database, only read (audit verify, lineage,
	// the lists, reindex --dry-run, a dry replay).
	dbRead dbUse = iota
	// dbWrite: an existing database, written (reindex, deliveries retry,
	// jobs cancel, replay --apply).
	dbWrite
	// dbCreate: created or migrated as needed, then written (serve,
	// import).
	dbCreate
)

// rollbackDoc is where the docs say how to roll back.
const rollbackDoc = `docs/deployment.md, "Rolling back"`

// indexVersionError is a database whose search index version, as it
// records it, is above this build's: a newer release indexed it.
type indexVersionError struct{ have, want int }

func (e *indexVersionError) Error() string {
	return fmt.Sprintf("the database's search index is version %d, this release's %d", e.have, e.want)
}

// Is makes it a store.ErrNewerRelease.
func (e *indexVersionError) Is(target error) bool { return target == store.ErrNewerRelease }

// checkIndexNotNewer refuses a database whose search index a newer
// release wrote (its recorded version above search.IndexVersion, with the
// same schema): this build would write index rows its way, which the
// newer release's searches then miss, and record nothing that makes the
// newer release warn (store.ErrNewerRelease, an *indexVersionError). A
// database without resources records no version (store.Reindexer).
func checkIndexNotNewer(ctx context.Context, st store.Store) error {
	v, err := st.IndexVersion(ctx)
	if err != nil {
		return fmt.Errorf("read the search index's version: %w", err)
	}
	if v > search.IndexVersion {
		return &indexVersionError{have: v, want: search.IndexVersion}
	}
	return nil
}

// rollbackMessage is command name's refusal of a database a newer release
// upgraded (err is store.ErrNewerRelease): a rollback, what this release
// would do wrong, and what to do instead.
func rollbackMessage(name string, err error) string {
	wrong := "cannot read what the newer release's schema holds (it would misread or overwrite it)"
	var ie *indexVersionError
	if errors.As(err, &ie) {
		wrong = "would write search index rows the older way, which the newer release's searches then miss without " +
			"warning (it would not prompt a reindex)"
	}
	return fmt.Sprintf("%s: refusing a rollback (a downgrade to an older release): %v: a newer release has upgraded this database, and this older release %s; "+
		"nothing was changed. Run the newer release (or a later one), or restore the backup taken before the upgrade (%s)",
		name, err, wrong, rollbackDoc)
}

// migrationPendingMessage is command name's refusal, opening only an
// existing database (it migrates nothing), of one whose schema is older
// than this release's (err a *store.SchemaVersionError).
func migrationPendingMessage(name string, err error) string {
	return fmt.Sprintf("%s: %v: a migration is pending, which this release runs when serve starts on the database "+
		"(or serve --migrate-only), after which older releases refuse it. To try this release first (a dry replay "+
		"before deploying it), run it on a copy restored from a backup and migrated with serve --migrate-only "+
		`(docs/deployment.md, "Upgrading")`, name, err)
}

// openMessage is command name's message for a database it could not open
// or create.
func openMessage(name string, err error) string {
	if errors.Is(err, store.ErrNewerRelease) {
		return rollbackMessage(name, err)
	}
	return fmt.Sprintf("%s: %v", name, err)
}

// migrateOnly is serve --migrate-only: it creates or migrates the
// database db as serve does at start (refusing a rollback as serve does),
// logs what it did and what each migration changes, and returns without
// listening, delivering or running jobs. It prepares a copy for a dry
// replay of a release that adds a migration, or migrates before the new
// release's replicas start (docs/deployment.md, "Upgrading").
func migrateOnly(ctx context.Context, db string, stderr io.Writer) error {
	logger := slog.New(slog.NewJSONHandler(stderr, nil))
	st, err := openStore(ctx, db, dbCreate, logger)
	if err != nil {
		return &exitError{code: openExit(err), msg: openFailure(err)}
	}
	defer st.Close()
	logMigration(st, logger)
	if st.Migrated().To == 0 {
		logger.Info("store: the schema is this release's already: nothing to migrate")
	}
	logIndexVersion(ctx, st, logger)
	return nil
}
