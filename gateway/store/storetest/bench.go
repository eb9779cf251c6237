package storetest

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// benchObservations is how many Observations BenchmarkSearch and
// SearchAfterBulkLoad load.
const benchObservations = 20000

// loadObservations writes benchObservations Observations of 2,000
// patients (10 codes), spread round robin over tenants, perTx to a
// transaction. Observation i has code c<i%10>, subject Patient/p<i%2000>
// and tenant tenants[i%len(tenants)].
func loadObservations(tb testing.TB, s store.Store, perTx int, tenants []string) {
	tb.Helper()
	ctx := context.Background()
	for start := 0; start < benchObservations; start += perTx {
		err := s.Write(ctx, func(tx store.Tx) error {
			for i := start; i < min(start+perTx, benchObservations); i++ {
				r := res("Observation", fmt.Sprint("o", i), 1, base.Add(time.Duration(i)*time.Second))
				r.Tenant = tenants[i%len(tenants)]
				entries := []search.Entry{
					tok("code", "http://loinc.org", fmt.Sprint("c", i%10)),
					tok("status", "", "final"),
					ref("subject", "Patient", fmt.Sprint("p", i%2000)),
					date("date", instant(base.Add(time.Duration(i)*time.Minute))),
				}
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// benchQuery is one search of loadObservations' Observations, in the
// tenant of observation 1203, with the total counted; total is its
// expected total.
type benchQuery struct {
	name  string
	q     *search.Query
	total int
}

// benchQueries are a selective search (code and subject), a less selective
// one (code) and a listing by _lastUpdated.
func benchQueries(tenants []string) []benchQuery {
	tenant := func(i int) int { return i % len(tenants) }
	count := func(match func(i int) bool) int {
		n := 0
		for i := range benchObservations {
			if tenant(i) == tenant(1203) && match(i) {
				n++
			}
		}
		return n
	}
	qs := []benchQuery{
		{"CodeSubject", &search.Query{Type: "Observation", Clauses: []search.Clause{
			clause("code", search.TypeToken, "", vSys("http://loinc.org", "c3")),
			clause("subject", search.TypeReference, "", vRef("Patient", "p1203")),
		}}, count(func(i int) bool { return i%10 == 3 && i%2000 == 1203 })},
		{"Code", &search.Query{Type: "Observation", Clauses: []search.Clause{
			clause("code", search.TypeToken, "", vSys("http://loinc.org", "c3")),
		}}, count(func(i int) bool { return i%10 == 3 })},
		{"LastUpdated", &search.Query{Type: "Observation",
			Sort: []search.SortKey{{Param: "_lastUpdated", Descending: true}}}, count(func(int) bool { return true })},
	}
	for _, bq := range qs {
		bq.q.Total = true
		bq.q.Tenant = tenants[tenant(1203)]
	}
	return qs
}

// BenchmarkSearch measures the searches of benchQueries over a store that
// it loads, 500 resources to a transaction, with benchObservations
// Observations spread round robin over tenants (none: the default
// tenant). The searches start as soon as the load is done: the
// database's planner has whatever statistics the store and the database
// gathered by themselves.
func BenchmarkSearch(b *testing.B, s store.Store, tenants ...string) {
	if len(tenants) == 0 {
		tenants = []string{""}
	}
	loadObservations(b, s, 500, tenants)
	ctx := context.Background()
	for _, bq := range benchQueries(tenants) {
		// Each search also bounded as a client's is (Query.MaxBytes, the
		// default page bound, which these pages stay under): the cost of
		// counting the page's bytes, against the same search unbounded.
		bounded := *bq.q
		bounded.MaxBytes = search.DefaultPageBytes
		for _, v := range []struct {
			name string
			q    *search.Query
		}{{bq.name, bq.q}, {bq.name + "/bounded", &bounded}} {
			b.Run(v.name, func(b *testing.B) {
				for b.Loop() {
					pg, err := s.Search(ctx, v.q)
					if err != nil {
						b.Fatal(err)
					}
					if len(pg.Matches) == 0 || pg.Cut {
						b.Fatal("no matches, or a page cut")
					}
				}
			})
		}
	}
}

// SearchAfterBulkLoad loads benchObservations Observations into s, a new
// and empty store, perTx to a transaction, spread round robin over tenants
// (none: the default tenant), and at once runs the searches of
// BenchmarkSearch, checking their totals: a search whose plan goes wrong
// on tables the database has just seen grow fails, with ErrUnavailable
// at the statement timeout.
func SearchAfterBulkLoad(t *testing.T, s store.Store, perTx int, tenants ...string) {
	if len(tenants) == 0 {
		tenants = []string{""}
	}
	start := time.Now()
	loadObservations(t, s, perTx, tenants)
	t.Logf("load of %d resources, %d to a transaction: %v", benchObservations, perTx, time.Since(start).Round(time.Millisecond))
	for _, bq := range benchQueries(tenants) {
		start := time.Now()
		pg, err := s.Search(context.Background(), bq.q)
		if err != nil {
			t.Errorf("%s: Search: %v", bq.name, err)
			continue
		}
		t.Logf("%s: %v", bq.name, time.Since(start).Round(time.Microsecond))
		if pg.Total != bq.total {
			t.Errorf("%s: total %d, want %d", bq.name, pg.Total, bq.total)
		}
	}
}

// BenchmarkPut measures durable commits of new Observations with five
// index entries, perTx to a transaction, from writers concurrent writers
// (1: one after the other), and reports resources/s.
func BenchmarkPut(b *testing.B, s store.Store, perTx, writers int) {
	ctx := context.Background()
	body := []byte(`{"resourceType":"Observation","id":"x","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"valueQuantity":{"value":72,"unit":"/min"}}`)
	now := time.Now()
	entries := []search.Entry{
		{Param: "code", Type: search.TypeToken, System: "http://loinc.org", Code: "8867-4", Text: "heart rate"},
		{Param: "status", Type: search.TypeToken, Code: "final"},
		{Param: "subject", Type: search.TypeReference, RefType: "Patient", RefID: "p1"},
		{Param: "date", Type: search.TypeDate, Low: now, High: now},
		{Param: "value-quantity", Type: search.TypeQuantity, Number: 72, System: "http://unitsofmeasure.org", Code: "/min"},
	}
	var ids atomic.Int64
	put := func() error {
		return s.Write(ctx, func(tx store.Tx) error {
			for range perTx {
				r := &store.Resource{Type: "Observation", ID: fmt.Sprint(ids.Add(1)), Version: 1, Body: body}
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
			return nil
		})
	}
	b.ResetTimer()
	var n int64
	if writers <= 1 {
		for b.Loop() {
			if err := put(); err != nil {
				b.Fatal(err)
			}
			n += int64(perTx)
		}
	} else {
		b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
		var total atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := put(); err != nil {
					b.Error(err)
					return
				}
				total.Add(int64(perTx))
			}
		})
		n = total.Load()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkClaim claims from a backlog that is all held back: 500
// records with four versions each, their first in flight, so that a claim
// checks the order keys of each of the 1,500 later versions and finds
// none to send (an EHR slow to answer, with new versions arriving). An op
// is one claim.
func BenchmarkClaim(b *testing.B, s store.Store) {
	ctx := context.Background()
	ob := store.Outbox(s)
	const records, versions = 500, 4
	var items []*store.OutboxItem
	for v := range versions {
		for r := range records {
			it := item("ehr", fmt.Sprintf("src|session|S%d", r), "p")
			it.Version = fmt.Sprint(v + 1)
			it.OrderKeys = []string{fmt.Sprintf("src|vitals|S%d", r), fmt.Sprintf("src|infusion|S%d", r)}
			items = append(items, it)
		}
	}
	if err := s.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(items...) }); err != nil {
		b.Fatal(err)
	}
	now := time.Now().Add(time.Hour)
	if got, err := ob.Claim(ctx, "ehr", now, 24*time.Hour, records); err != nil || len(got) != records {
		b.Fatalf("Claim = %d %v, want the %d first versions", len(got), err, records)
	}
	b.ResetTimer()
	for range b.N {
		if got, err := ob.Claim(ctx, "ehr", now, time.Minute, 10); err != nil || len(got) != 0 {
			b.Fatalf("Claim = %d %v, want none", len(got), err)
		}
	}
}

// benchAuditEvents is how many AuditEvents BenchmarkDateSort loads.
const benchAuditEvents = 20000

// BenchmarkDateSort measures pages of 20 of a search sorted by date over
// benchAuditEvents AuditEvents that it loads into s, a new and empty
// store, 500 to a transaction (AuditEvent i recorded at minute i, action
// E or R in turn but D for one in 1,000, one in 50 without a date, one in
// 300 in tenant "small"): descending and ascending, the page after the
// first one's cursor, with a criterion half of them match, with the total
// counted; and the searches a walk of the date index would read far for:
// a rare action, the small tenant, a date range at the end of the order,
// a _lastUpdated range, and a page among the matches without a date. A search soak took 0.85-1.5 s for
// AuditEvent?_sort=-date&_count=20 over 17,740 AuditEvents on PostgreSQL
// while every match's sort key was computed and sorted.
func BenchmarkDateSort(b *testing.B, s store.Store) {
	ctx := context.Background()
	for start := 0; start < benchAuditEvents; start += 500 {
		err := s.Write(ctx, func(tx store.Tx) error {
			for i := start; i < start+500; i++ {
				action := []string{"E", "R"}[i%2]
				if i%1000 == 3 {
					action = "D"
				}
				entries := []search.Entry{tok("action", "", action)}
				if i%50 != 0 {
					entries = append(entries, date("date", instant(base.Add(time.Duration(i)*time.Minute))))
				}
				r := res("AuditEvent", fmt.Sprint("a", i), 1, base.Add(time.Duration(i)*time.Second))
				if i%300 == 7 {
					r.Tenant = "small"
				}
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	q := func(desc, total bool, clauses ...search.Clause) *search.Query {
		qq := query("AuditEvent", clauses...)
		qq.Sort, qq.Count, qq.Total = []search.SortKey{{Param: "date", Descending: desc}}, 20, total
		return qq
	}
	next := q(true, false)
	pg, err := s.Search(ctx, next)
	if err != nil || pg.Next == nil {
		b.Fatalf("first page: %v, next %v", err, pg)
	}
	next.After = pg.Next
	small := q(true, false)
	small.Tenant = "small"
	late := base.Add((benchAuditEvents - 300) * time.Minute)
	undated := q(false, false)
	undated.After = &search.Cursor{Keys: []int64{math.MaxInt64}, LastUpdated: math.MinInt64, Type: "AuditEvent"}
	for _, bq := range []struct {
		name string
		q    *search.Query
	}{
		{"Desc", q(true, false)},
		{"Asc", q(false, false)},
		{"DescNextPage", next},
		{"DescAction", q(true, false, clause("action", search.TypeToken, "", vCode("E")))},
		{"DescTotal", q(true, true)},
		{"DescRareAction", q(true, false, clause("action", search.TypeToken, "", vCode("D")))},
		{"DescSmallTenant", small},
		{"AscDateGe", q(false, false, clause("date", search.TypeDate, "", vDate(search.PrefixGe, instant(late))))},
		{"DescLastUpdatedLe", q(true, false, clause("_lastUpdated", search.TypeDate, "", vDate(search.PrefixLe, instant(base.Add(300*time.Second)))))},
		{"AscUndated", undated},
	} {
		b.Run(bq.name, func(b *testing.B) {
			for b.Loop() {
				pg, err := s.Search(ctx, bq.q)
				if err != nil {
					b.Fatal(err)
				}
				if len(pg.Matches) != 20 {
					b.Fatalf("%d matches, want 20", len(pg.Matches))
				}
			}
		})
	}
}
