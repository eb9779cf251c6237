package postgres

import (
	"strconv"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// dialect is PostgreSQL's flavour of the shared SQL (see
// sqlstore.Dialect): numbered placeholders ($1, $2, ...), strings made
// storable (see text), deleted as BOOLEAN, row locks and advisory locks
// (writers run in parallel at READ COMMITTED), arrays, a search's page
// joined with its resources, nonce keys as BYTEA.
var dialect = &sqlstore.Dialect{
	Name:        "postgres",
	Placeholder: func(n int) string { return "$" + strconv.Itoa(n) },
	Text:        text,
	NotDeleted:  "NOT c.deleted",
	RowLocks:    true,
	// The key's first part keeps these apart from the migration lock.
	Lock:        schemaLock("kg-outbox"),
	JobLock:     schemaLock("kg-jobs"),
	Arrays:      true,
	FlushAhead:  true,
	JoinMatches: true,
	RowID:       "ctid",
	NonceKey:    func(key string) any { return []byte(key) },
	Err:         mapErr,
	// The bulk export's fence (store.Store.AwaitWrites), per schema: the
	// writes of another schema's gateway are not waited for.
	WriteFence: `SELECT pg_advisory_xact_lock_shared(hashtext('kg-writes'), hashtext(current_schema()))`,
	AwaitFence: `SELECT pg_advisory_xact_lock(hashtext('kg-writes'), hashtext(current_schema()))`,
}

// schemaLock is the statement that takes the transaction-level advisory
// lock named first on a key (its one argument) in the gateway's schema:
// gateways of two schemas of one database (two deployments; the tests'
// schemas) never wait for each other's claims of a destination they both
// name. The keys of the schema public, where a gateway's tables are
// unless its URL's search_path says otherwise, are those of before, so
// that gateways of both releases lock alike during a rolling upgrade.
func schemaLock(first string) string {
	return `SELECT pg_advisory_xact_lock(hashtext('` + first + `'), hashtext(CASE WHEN s = 'public' THEN k
		ELSE s || chr(31) || k END)) FROM (SELECT coalesce(current_schema(), 'public') AS s, ?::text AS k) AS key`
}
