package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// benchObservations is how many Observations BenchmarkSearch loads.
const benchObservations = 20000

// BenchmarkSearch measures typical searches over a store that s loads with
// benchObservations Observations of 2,000 patients (10 codes), spread
// round robin over tenants (none: the default tenant): a selective one
// (code and subject), a less selective one (code) and a listing by
// _lastUpdated, all with the total counted, in the tenant of the
// observations they look for. loaded, if not nil, runs after the load
// (to gather planner statistics, say).
func BenchmarkSearch(b *testing.B, s store.Store, loaded func(b *testing.B), tenants ...string) {
	if len(tenants) == 0 {
		tenants = []string{""}
	}
	ctx := context.Background()
	const perTx = 500
	for start := 0; start < benchObservations; start += perTx {
		err := s.Write(ctx, func(tx store.Tx) error {
			for i := start; i < start+perTx; i++ {
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
			b.Fatal(err)
		}
	}
	if loaded != nil {
		loaded(b)
	}
	queries := []struct {
		name string
		q    *search.Query
	}{
		{"CodeSubject", &search.Query{Type: "Observation", Total: true, Clauses: []search.Clause{
			clause("code", search.TypeToken, "", vSys("http://loinc.org", "c3")),
			clause("subject", search.TypeReference, "", vRef("Patient", "p1203")),
		}}},
		{"Code", &search.Query{Type: "Observation", Total: true, Clauses: []search.Clause{
			clause("code", search.TypeToken, "", vSys("http://loinc.org", "c3")),
		}}},
		{"LastUpdated", &search.Query{Type: "Observation", Total: true,
			Sort: []search.SortKey{{Param: "_lastUpdated", Descending: true}}}},
	}
	for _, tc := range queries {
		tc.q.Tenant = tenants[1203%len(tenants)] // observation 1203's
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				pg, err := s.Search(ctx, tc.q)
				if err != nil {
					b.Fatal(err)
				}
				if len(pg.Matches) == 0 {
					b.Fatal("no matches")
				}
			}
		})
	}
}
