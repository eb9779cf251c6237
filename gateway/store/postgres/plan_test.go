package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// TestTenantIndexPlans: since schema 11 the tenant indexes hold only
// named tenants' rows. A named tenant's listing and history read them
// (the statements say the tenant is not the default one, which lets the
// planner use a partial index); the default tenant's and every tenant's
// read the tenant-less indexes. Sequential scans are off, so that a
// small table's plan still shows which index the planner can use. (On
// the schema before 11 the default tenant's plans read the tenant
// indexes: the test fails there. PostgreSQL plans these statements for
// their values, so it proves that a named tenant is not the default one
// without the statements saying so, which SQLite needs: see tenantCond.)
func TestTenantIndexPlans(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	ctx := context.Background()
	// Three tenants with 100 Patients and 1,000 Observations each.
	for _, tenant := range []string{"", "clinic-a", "clinic-b"} {
		err := s.Write(ctx, func(tx store.Tx) error {
			for i := range 1100 {
				typ := "Observation"
				if i%11 == 0 {
					typ = "Patient"
				}
				id := fmt.Sprintf("%s-%d", tenant, i)
				body := fmt.Appendf(nil, `{"resourceType":%q,"id":%q}`, typ, id)
				if err := tx.Put(&store.Resource{Type: typ, ID: id, Version: 1, Tenant: tenant, Body: body}, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	explain := func(t *testing.T, st sqlstore.Stmt) string {
		t.Helper()
		return pgExplainWith(t, s, "enable_seqscan", "off", st.SQL, st.Args...)
	}
	for _, tc := range []struct {
		name string
		q    *search.Query
		want string
	}{
		{"listing of a tenant", &search.Query{Type: "Patient", Tenant: "clinic-a"}, "current_tenant_type_lu"},
		// These cannot use the tenant index (it holds none of their rows);
		// on tables this small the planner picks whichever other it likes.
		{"listing of the default tenant", &search.Query{Type: "Patient"}, ""},
		{"listing of every tenant", &search.Query{Type: "Patient", Tenant: search.AllTenants}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page, _, err := sqlstore.SearchStatements(dialect, tc.q, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			plan := explain(t, page)
			if tc.want != "" && !strings.Contains(plan, tc.want) {
				t.Errorf("page plan lacks %s:\n%s", tc.want, plan)
			}
			if tc.want == "" && strings.Contains(plan, "_tenant_") {
				t.Errorf("page plan reads a tenant index:\n%s", plan)
			}
		})
	}
	for _, tc := range []struct {
		name string
		q    store.HistoryQuery
		want string
	}{
		{"type history of a tenant", store.HistoryQuery{Type: "Patient", Tenant: "clinic-a"}, "resources_tenant_type_lu"},
		{"system history of a tenant", store.HistoryQuery{Tenant: "clinic-a"}, "resources_tenant_"},
		{"type history of the default tenant", store.HistoryQuery{Type: "Patient"}, "resources_type_lu"},
		{"type history of every tenant", store.HistoryQuery{Type: "Patient", Tenant: search.AllTenants}, "resources_type_lu"},
		{"system history of the default tenant", store.HistoryQuery{}, "resources_lu"},
		{"system history of every tenant", store.HistoryQuery{Tenant: search.AllTenants}, "resources_lu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.q.Count = 10
			count, page, err := sqlstore.HistoryStatements(dialect, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range []sqlstore.Stmt{page, count} {
				if plan := explain(t, st); !strings.Contains(plan, tc.want) {
					t.Errorf("plan lacks %s:\n%s", tc.want, plan)
				}
			}
		})
	}
}

// TestPageJoinsResourcesAfterItsLimit: an ordered search's page is cut
// from its matches' keys before their resources are joined, in every
// order (probe p37 F3: joined first, a code's 4,281 Observations were each
// read from resources to keep 20, 1.4-2.0 s instead of 0.15-0.22 s). On

// putAnalyzed stores n Observations (body(i) is the i-th, its id "o-i")
// in one transaction, with their index rows, then has PostgreSQL analyze
// them, so that plans are those of a database of that size.
func putAnalyzed(t *testing.T, s *Store, n int, body func(int) []byte) {
	t.Helper()
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range n {
			b := body(i)
			var doc map[string]any
			if err := json.Unmarshal(b, &doc); err != nil {
				return err
			}
			if err := tx.Put(&store.Resource{Type: "Observation", ID: fmt.Sprintf("o-%d", i), Version: 1, Body: b}, search.Extract("Observation", doc)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
}

// the statement that joined first the plan's top is the Limit.
func TestPageJoinsResourcesAfterItsLimit(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	ctx := context.Background()
	putAnalyzed(t, s, 500, func(i int) []byte {
		return fmt.Appendf(nil, `{"resourceType":"Observation","id":"o-%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":"2026-01-%02dT10:00:00Z"}`, i, 1+i%28)
	})
	for _, raw := range []string{"code=http://loinc.org|8867-4", "_sort=-date", "_sort=date,-_lastUpdated&code=8867-4", "_sort=_id"} {
		t.Run(raw, func(t *testing.T) {
			v, _ := url.ParseQuery(raw)
			q, err := search.Parse("Observation", v, false)
			if err != nil {
				t.Fatal(err)
			}
			q.Count = 5
			page, _, err := sqlstore.SearchStatements(dialect, q, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			plan := pgExplainWith(t, s, "", "", page.SQL, page.Args...)
			if strings.HasPrefix(strings.TrimSpace(plan), "Limit") {
				t.Errorf("the page's resources are joined before its limit:\n%s", plan)
			}
			pg, err := s.Search(ctx, q)
			if err != nil || len(pg.Matches) != 5 {
				t.Fatalf("Search = %d matches, %v; want 5", len(pg.Matches), err)
			}
		})
	}
}

// TestDateSortWalksItsIndex: a search sorted first by a date, with no
// criteria or with criteria that match many (a code half the
// Observations have), reads the parameter's index rows in the order of
// the sort key (the earliest start ascending: idx_date_low; the latest
// end descending: idx_date_high, backward) from the start or from its
// cursor, and stops when its page is full. Before, every match's sort key
// was computed by a subquery and every match sorted (a soak's
// AuditEvent?_sort=-date&_count=20 over 17,740 AuditEvents: 0.85-1.5 s).
func TestDateSortWalksItsIndex(t *testing.T) {
	testURL(t)
	s, _ := openFresh(t, Options{})
	putAnalyzed(t, s, 3000, func(i int) []byte {
		code, when := "8867-4", fmt.Sprintf(`,"effectiveDateTime":"2026-%02d-%02dT10:00:00Z"`, 1+i%12, 1+i%28)
		if i%2 == 1 {
			code = fmt.Sprintf("x-%d", i%40)
		}
		if i%10 == 0 {
			when = "" // no date
		}
		return fmt.Appendf(nil, `{"resourceType":"Observation","id":"o-%d","status":"final","code":{"coding":[{"system":"http://loinc.org","code":%q}]}%s}`, i, code, when)
	})
	const desc, asc = "Index Scan Backward using idx_date_high on idx_date w", "Index Scan using idx_date_low on idx_date w"
	tests := []struct {
		raw, want string
		cursor    bool
	}{
		{"_sort=-date", desc, false},
		{"_sort=date", asc, false},
		{"_sort=-date", desc, true},
		{"_sort=date", asc, true},
		{"_sort=-date,_id&code=http://loinc.org|8867-4", desc, false},
		{"_sort=date,-_lastUpdated&status=final", asc, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s cursor %v", tc.raw, tc.cursor), func(t *testing.T) {
			v, _ := url.ParseQuery(tc.raw)
			q, err := search.Parse("Observation", v, false)
			if err != nil {
				t.Fatal(err)
			}
			q.Count = 20
			if tc.cursor {
				q.After = &search.Cursor{Keys: []int64{time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC).UnixMilli()}, Type: "Observation", ID: "o-1"}
			}
			page, _, err := sqlstore.SearchStatements(dialect, q, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if plan := pgExplain(t, s, page.SQL, page.Args...); !strings.Contains(plan, tc.want) {
				t.Errorf("page plan lacks %q:\n%s", tc.want, plan)
			}
		})
	}
}
