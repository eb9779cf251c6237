package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestSearchAfterBulkLoad loads 20,000 Observations of four tenants into a
// fresh database, in transactions of 500 (the statistics are gathered in
// the background as the load goes) and in one transaction (before Write
// returns), and searches them at once. Autovacuum is off for the tables:
// the store's own ANALYZE must keep the plans right. Without it, the
// search by code and subject takes longer than the 5s statement timeout
// here (30s in production) instead of milliseconds.
func TestSearchAfterBulkLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("loads 20,000 resources twice")
	}
	testURL(t)
	for _, perTx := range []int{500, 20000} {
		t.Run(fmt.Sprint(perTx, "PerTx"), func(t *testing.T) {
			s, _ := openFresh(t, Options{StatementTimeout: 5 * time.Second})
			for _, tbl := range analyzeTables {
				if _, err := s.pool.Exec(context.Background(), `ALTER TABLE `+tbl+` SET (autovacuum_enabled = off)`); err != nil {
					t.Fatal(err)
				}
			}
			storetest.SearchAfterBulkLoad(t, s, perTx, "clinic-a", "clinic-b", "clinic-c", "clinic-d")
		})
	}
}

// TestAnalyzeAsTablesGrow writes 1,900 resources into a fresh database, ten
// to a transaction as an ingest of native records does, with autovacuum
// off for the tables, and checks that the store analysed the tables more
// than once on the way (it checks at 100, 300, 900 and 1,900 resources
// written, and analyses the small tables whose file more than doubled),
// not only once 1,000 were written (as it did before: once at most). A
// conditional lookup planned on the tables of the first records scans them
// until an analysis has it planned again (see analyzeFirst).
func TestAnalyzeAsTablesGrow(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	ctx := context.Background()
	for _, tbl := range analyzeTables {
		if _, err := s.pool.Exec(ctx, `ALTER TABLE `+tbl+` SET (autovacuum_enabled = off)`); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 190 {
		err := s.Write(ctx, func(tx store.Tx) error {
			for j := range 10 {
				id := fmt.Sprintf("p%d-%d", i, j)
				r := &store.Resource{Type: "Procedure", ID: id, Version: 1, Body: []byte(`{"resourceType":"Procedure"}`)}
				e := search.Entry{Param: "identifier", Type: search.TypeToken, System: "urn:x", Code: id}
				if err := tx.Put(r, []search.Entry{e}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// The background check, if one started, ends before the next
		// Write: a check still running when the next one is due defers
		// it to a later Write, which a test must not leave to the
		// scheduler (a loaded machine deferred the last ones past the
		// end of the loop).
		s.analyzer.wg.Wait()
	}
	for _, tbl := range []string{"current", "idx_token", "resources"} {
		var n int64
		err := s.pool.QueryRow(ctx, `SELECT analyze_count FROM pg_stat_user_tables WHERE relid = to_regclass($1)`, tbl).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n < 2 {
			t.Errorf("%s analysed %d times while it grew from nothing to 1,900 resources' rows, want at least 2", tbl, n)
		}
	}
}

// TestAnalyzeRetriedAfterFailure: a check that fails (here: its context is
// cancelled before it gets a connection) gives its count back, so that the
// next Write checks again; before, the count was dropped with it and the
// next check waited for a thousand more resources. A retry that fails too
// keeps nothing back.
func TestAnalyzeRetriedAfterFailure(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	a := &s.analyzer
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	s.wrote(cancelled, analyzeEvery) // a bulk write: checks before returning
	if got, before := a.written.Load(), a.before.Load(); got != analyzeEvery || before != 0 {
		t.Fatalf("after the failed check: %d written since the last check and %d before it, want %d and 0 (given back)",
			got, before, analyzeEvery)
	}
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Procedure", ID: "p1", Version: 1, Body: []byte(`{"resourceType":"Procedure"}`)}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	a.wg.Wait()
	if got, before := a.written.Load(), a.before.Load(); got != 0 || before != analyzeEvery+1 {
		t.Fatalf("after the next Write: %d written since the last check and %d before it, want 0 and %d (checked again)",
			got, before, analyzeEvery+1)
	}
	// It succeeded: the next failure gives its count back again, once; a
	// retry that fails too does not, so that a check that keeps failing
	// (an ANALYZE past the statement timeout) is not run at every Write.
	s.wrote(cancelled, analyzeEvery)
	if got := a.written.Load(); got != analyzeEvery {
		t.Fatalf("after a failed check: %d resources count towards the next, want %d (given back)", got, analyzeEvery)
	}
	s.wrote(cancelled, analyzeEvery)
	if got := a.written.Load(); got != 0 {
		t.Errorf("after its retry failed too: %d resources count towards the next check, want 0", got)
	}
}
