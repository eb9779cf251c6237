package storetest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Chained search at scale (issue 13): 1,000 patients with 10 Observations
// each, and the chained and _has searches an integration sends. Each
// backend checks that the searches answer right and that its plan reads
// the index entries of the few resources involved, never every
// Observation (see ChainPlans).

// chainPatients and chainObsPer size the load of LoadChainPatients.
const (
	chainPatients = 1000
	chainObsPer   = 10
)

// LoadChainPatients writes 1,000 Patients (identifier urn:mrn|MRN-i,
// family Family<i>) and 10 Observations of each (code c<j>, subject and
// patient Patient/cp<i>) in tenant, 500 to a transaction.
func LoadChainPatients(tb testing.TB, s store.Store, tenant string) {
	tb.Helper()
	ctx := context.Background()
	type row struct {
		r       *store.Resource
		entries []search.Entry
	}
	var rows []row
	for i := range chainPatients {
		pid := fmt.Sprint("cp", i)
		rows = append(rows, row{res("Patient", pid, 1, base), []search.Entry{tok("identifier", mrn, fmt.Sprint("MRN-", i)),
			str("family", fmt.Sprint("Family", i), fmt.Sprint("family", i)), str("name", fmt.Sprint("Family", i), fmt.Sprint("family", i))}})
		for j := range chainObsPer {
			rows = append(rows, row{res("Observation", fmt.Sprintf("co%d-%d", i, j), 1, base.Add(time.Duration(i*chainObsPer+j)*time.Second)),
				[]search.Entry{tok("code", loinc, fmt.Sprint("c", j)), ref("subject", "Patient", pid)}})
		}
	}
	for start := 0; start < len(rows); start += 500 {
		err := s.Write(ctx, func(tx store.Tx) error {
			for _, r := range rows[start:min(start+500, len(rows))] {
				r.r.Tenant = tenant
				if err := tx.Put(r.r, r.entries); err != nil {
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

// ChainQuery is a search over LoadChainPatients' data and its total.
type ChainQuery struct {
	Name  string
	Query *search.Query
	Total int
}

// ChainQueries are the chained and _has searches over LoadChainPatients'
// data in tenant, with their totals.
func ChainQueries(tenant string) []ChainQuery {
	ident := clause("identifier", search.TypeToken, "", vSys(mrn, "MRN-500"))
	qs := []ChainQuery{
		{"patient.identifier", query("Observation", chain("patient", "Patient", ident)), chainObsPer},
		{"subject:Patient.identifier", query("Observation", chain("subject", "Patient", ident)), chainObsPer},
		{"subject.name", query("Observation", chain("subject", "Patient",
			clause("name", search.TypeString, "exact", vStr("Family500")))), chainObsPer},
		{"patient.family and code", query("Observation", chain("patient", "Patient",
			clause("family", search.TypeString, "exact", vStr("Family500"))), clause("code", search.TypeToken, "", vSys(loinc, "c3"))), 1},
		{"_has:Observation:patient:code and identifier", query("Patient", has("Observation", "patient",
			clause("code", search.TypeToken, "", vSys(loinc, "c3"))), ident), 1},
	}
	for _, q := range qs {
		q.Query.Tenant, q.Query.Total = tenant, true
	}
	return qs
}

// ChainSearches runs ChainQueries over LoadChainPatients' data in s and
// checks their totals and matches.
func ChainSearches(t *testing.T, s store.Store, tenant string) {
	t.Helper()
	for _, cq := range ChainQueries(tenant) {
		pg := doSearch(t, s, cq.Query)
		if pg.Total != cq.Total || len(pg.Matches) != cq.Total {
			t.Errorf("%s: total %d, %d matches; want %d", cq.Name, pg.Total, len(pg.Matches), cq.Total)
		}
	}
}
