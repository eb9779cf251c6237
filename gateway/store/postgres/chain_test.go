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
		b := sqlstore.NewBuilder(dialect, cq.Query.Type, time.Now())
		if err := b.Where(cq.Query); err != nil {
			t.Fatal(err)
		}
		order, oargs := sqlstore.OrderBy(cq.Query)
		page := pgExplain(t, s, `SELECT c.id FROM current c WHERE `+b.SQL()+` ORDER BY `+order+` LIMIT 50`,
			append(append([]any{}, b.Args()...), oargs...)...)
		count := pgExplain(t, s, `SELECT COUNT(*) FROM current c WHERE `+b.SQL(), b.Args()...)
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
	rows, err := s.pool.Query(context.Background(), `EXPLAIN `+query, args...)
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
