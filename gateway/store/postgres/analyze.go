package postgres

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Planner statistics after bulk writes.
//
// PostgreSQL plans a search from the statistics that ANALYZE gathers.
// Autovacuum gathers them once about a tenth of a table changed, but it
// visits each database only once a minute (autovacuum_naptime), so a table
// that has just grown from nothing has none: every "column = value" is then
// taken to select 0.5% of the rows, "tenant = $1 AND type = $2" (0.5% of
// 0.5%) and the conditions on an index table look like keys, and the
// planner may pick a nested loop that rescans every index entry of the
// searched code for every current row of the type. On 20,000 fresh
// Observations a search by code and subject ran into the 30 s statement
// timeout instead of taking a few milliseconds (see
// TestSearchAfterBulkLoad).
//
// So a Store checks the statistics every analyzeEvery resources it writes
// and analyses, as autovacuum would, the tables that changed by more than
// autovacuum_analyze_threshold + autovacuum_analyze_scale_factor × their
// rows since their last analysis (by anyone), but not more often than
// autovacuum would either: a table analysed less than autovacuum_naptime
// ago waits, unless it has more than doubled since (a new table, a bulk
// load: the case above). A check is one query on pg_stat_user_tables.
// Without that wait, a table growing by a tenth between two checks was
// analysed every few seconds under a steady load (ANALYZE samples 30,000
// rows of each table): a fifth of the database's CPU while ingesting
// session records (issue 19).
// A Write that put analyzeEvery resources or more (a bulk load, likely
// followed by searches) checks before it returns; otherwise the check runs
// in the background, one at a time per Store. Failures are ignored:
// autovacuum remains.

// analyzeEvery is how many resources a Store writes between checks.
const analyzeEvery = 1000

// analyzeTimeout bounds one check and its ANALYZE (the statement timeout
// does too).
const analyzeTimeout = 5 * time.Minute

// analyzeTables are the tables searches, reads and claims plan on.
var analyzeTables = []string{
	"resources", "current", "idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_uri",
	"conditional_keys", "ledger", "outbox", "audit_chain", "nonces",
}

// sqlStale selects the tables of analyzeTables (resolved like the other
// statements, through search_path) that autovacuum would analyse now.
const sqlStale = `SELECT t.name FROM unnest($1::text[]) AS t(name)
	JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name)
	JOIN pg_class c ON c.oid = s.relid
	WHERE s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
		+ current_setting('autovacuum_analyze_scale_factor')::float8 * GREATEST(c.reltuples, 0)
	AND (s.n_mod_since_analyze > GREATEST(c.reltuples, 0)
		OR COALESCE(GREATEST(s.last_analyze, s.last_autoanalyze), '-infinity')
			< now() - current_setting('autovacuum_naptime')::interval)`

// analyzer is the state of a Store's checks.
type analyzer struct {
	written atomic.Int64 // resources written since the last check
	running atomic.Bool  // a check is running
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup // the background check
}

// wrote counts the n resources a committed Write put, and checks the
// statistics when analyzeEvery were written since the last check.
func (s *Store) wrote(ctx context.Context, n int) {
	a := &s.analyzer
	if n == 0 || a.written.Add(int64(n)) < analyzeEvery || !a.running.CompareAndSwap(false, true) {
		return
	}
	a.written.Store(0)
	if n >= analyzeEvery {
		defer a.running.Store(false)
		s.analyzeStale(ctx)
		return
	}
	a.wg.Go(func() {
		defer a.running.Store(false)
		s.analyzeStale(a.ctx)
	})
}

// analyzeStale analyses the tables sqlStale selects.
func (s *Store) analyzeStale(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, analyzeTimeout)
	defer cancel()
	c, err := s.acquire(ctx)
	if err != nil {
		return
	}
	defer c.Release()
	rows, err := c.Query(ctx, sqlStale, analyzeTables)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) == 0 {
		return
	}
	for i, n := range names {
		names[i] = pgx.Identifier{n}.Sanitize()
	}
	// SKIP_LOCKED: a table another process or autovacuum is analysing
	// now needs no second analysis.
	_, _ = c.Exec(ctx, `ANALYZE (SKIP_LOCKED) `+strings.Join(names, ", "))
}

// stopAnalyzer ends a background check and waits for it.
func (s *Store) stopAnalyzer() {
	s.analyzer.stop()
	s.analyzer.wg.Wait()
}
