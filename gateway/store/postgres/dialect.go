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
	Lock:        `SELECT pg_advisory_xact_lock(hashtext('kg-outbox'), hashtext(?))`,
	JobLock:     `SELECT pg_advisory_xact_lock(hashtext('kg-jobs'), hashtext(?))`,
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
