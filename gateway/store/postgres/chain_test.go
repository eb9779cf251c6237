package postgres

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/storetest"
)

// TestChainPlanAfterLoad: over 1,000 patients and 10,000 Observations,
// the chained and _has searches of issue 13 answer right, and PostgreSQL's
// plans (page and count) reach the resources through indexes: no
// sequential scan of current or of an index table.
func TestChainPlanAfterLoad(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	storetest.LoadChainPatients(t, s, "clinic-a")
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	storetest.ChainSearches(t, s, "clinic-a")
	for _, cq := range storetest.ChainQueries("clinic-a") {
		pageStmt, countStmt, err := sqlstore.SearchStatements(dialect, cq.Query, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		page := pgExplain(t, s, pageStmt.SQL, pageStmt.Args...)
		count := pgExplain(t, s, countStmt.SQL, countStmt.Args...)
		for _, plan := range []string{page, count} {
			if !strings.Contains(plan, "idx_reference_") || strings.Contains(plan, "Seq Scan") {
				t.Errorf("%s: the plan scans a table or misses the reference index:\n%s", cq.Name, plan)
			}
		}
	}
}

// pgExplain returns PostgreSQL's plan of query.
func pgExplain(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	return pgExplainWith(t, s, "", "", query, args...)
}

// pgExplainWith returns PostgreSQL's plan of query on a connection with
// setting set to value (if setting is not empty), reset after.
func pgExplainWith(t *testing.T, s *Store, setting, value, query string, args ...any) string {
	t.Helper()
	ctx := context.Background()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if setting != "" {
		if _, err := conn.Exec(ctx, `SELECT set_config($1, $2, false)`, setting, value); err != nil {
			t.Fatal(err)
		}
		defer conn.Exec(ctx, `RESET `+setting) //nolint:errcheck // the connection goes back to the pool either way
	}
	rows, err := conn.Query(ctx, `EXPLAIN `+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(plan, "\n")
}
