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
// (more often before: see analyzeFirst) and analyses, as autovacuum would,
// the tables that changed by more than
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
// in the background, one at a time per Store. A check that fails (no
// connection in time, a statement that failed) gives its count back, so
// that the next Write checks again rather than after the next
// analyzeEvery resources; a retry that fails too does not (an ANALYZE
// that runs into the statement timeout is not run at every Write).
// Autovacuum remains in any case.

// analyzeEvery is how many resources a Store writes between checks.
const analyzeEvery = 1000

// analyzeFirst is how many resources a Store writes before its first
// check; the next come when it has written twice as many again as before
// the last one, until that is analyzeEvery (checks at 100, 300, 900, 1,900
// resources, then every 1,000), so that a new database's tables are
// analysed as they grow from nothing (sqlStale analyses a small table whose
// file more than doubled). A conditional lookup is planned once
// (sqlstore.PlanOnce: a generic plan after five runs), and a plan made on
// the first records' few pages scans them all, which stays cheap only
// while they are few: ingesting session records into a new database, each
// lookup read every row of its type, 8 µs at the first record and 2 ms at
// the seventeenth (61 lookups a record), until an ANALYZE after 1,000
// resources had it planned again (10 µs; issue 19). With the checks as the
// tables grow, the lookups stayed under 0.7 ms and came to 10 µs by the
// ninth record; the ANALYZEs of tables this small take milliseconds.
const analyzeFirst = 100

// analyzeTimeout bounds one check and its ANALYZE (the statement timeout
// does too).
const analyzeTimeout = 5 * time.Minute

// analyzeTables are the tables searches, reads and claims plan on.
var analyzeTables = []string{
	"resources", "current", "idx_token", "idx_string", "idx_date", "idx_reference", "idx_quantity", "idx_uri",
	"conditional_keys", "ledger", "outbox", "audit_chain", "nonces",
}

// sqlStale selects the tables of analyzeTables (resolved like the other
// statements, through search_path) that autovacuum would analyse now, and
// the small tables (under smallPages at their last analysis) whose file
// has more than doubled since: the modification counts lag (a backend
// reports them at most once a second), and a table growing from nothing
// changes its plans at every doubling (see analyzeFirst).
const sqlStale = `SELECT t.name FROM unnest($1::text[]) AS t(name)
	JOIN pg_stat_user_tables s ON s.relid = to_regclass(t.name)
	JOIN pg_class c ON c.oid = s.relid
	WHERE (s.n_mod_since_analyze > current_setting('autovacuum_analyze_threshold')::float8
		+ current_setting('autovacuum_analyze_scale_factor')::float8 * GREATEST(c.reltuples, 0)
	AND (s.n_mod_since_analyze > GREATEST(c.reltuples, 0)
		OR COALESCE(GREATEST(s.last_analyze, s.last_autoanalyze), '-infinity')
			< now() - current_setting('autovacuum_naptime')::interval))
	OR (c.relpages < $2 AND pg_relation_size(c.oid) > 2 * GREATEST(c.relpages, 1) * current_setting('block_size')::bigint)`

// smallPages bounds the tables sqlStale analyses when their file doubled:
// 1,000 pages (8 MB), some 30,000 rows, all of which ANALYZE reads.
const smallPages = 1000

// analyzer is the state of a Store's checks.
type analyzer struct {
	written atomic.Int64 // resources written since the last check
	before  atomic.Int64 // resources written before the last check
	running atomic.Bool  // a check is running
	retry   atomic.Bool  // the last check failed and gave its count back
	ctx     context.Context
	stop    context.CancelFunc
	wg      sync.WaitGroup // the background check
}

// wrote counts the n resources a committed Write put, and checks the
// statistics when enough were written since the last check (see
// analyzeFirst).
func (s *Store) wrote(ctx context.Context, n int) {
	a := &s.analyzer
	every := min(analyzeEvery, max(analyzeFirst, 2*a.before.Load()))
	if n == 0 || a.written.Add(int64(n)) < every || !a.running.CompareAndSwap(false, true) {
		return
	}
	since := a.written.Swap(0)
	a.before.Add(since)
	check := func(ctx context.Context) {
		defer a.running.Store(false)
		if s.analyzeStale(ctx) == nil {
			a.retry.Store(false)
			return
		}
		if !a.retry.Swap(true) { // not a retry that failed again
			a.before.Add(-since)
			a.written.Add(since) // the next Write checks again
		}
	}
	if n >= analyzeEvery {
		check(ctx)
		return
	}
	a.wg.Go(func() { check(a.ctx) })
}

// analyzeStale analyses the tables sqlStale selects.
func (s *Store) analyzeStale(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, analyzeTimeout)
	defer cancel()
	c, err := s.acquire(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	rows, err := c.Query(ctx, sqlStale, analyzeTables, smallPages)
	if err != nil {
		return err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil || len(names) == 0 {
		return err
	}
	for i, n := range names {
		names[i] = pgx.Identifier{n}.Sanitize()
	}
	// SKIP_LOCKED: a table another process or autovacuum is analysing
	// now needs no second analysis.
	_, err = c.Exec(ctx, `ANALYZE (SKIP_LOCKED) `+strings.Join(names, ", "))
	return err
}

// stopAnalyzer ends a background check and waits for it.
func (s *Store) stopAnalyzer() {
	s.analyzer.stop()
	s.analyzer.wg.Wait()
}
