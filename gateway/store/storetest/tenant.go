package storetest

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The tenants of the fixtures: two clinics and the default tenant.
const (
	tenantA = "clinic-a"
	tenantB = "clinic-b"
)

// tdoc is a fixture resource of a tenant.
type tdoc struct {
	tenant string
	doc
}

// loadTenants writes tenants' fixture resources (version 1) in one
// transaction, last_updated one hour apart in order from base.
func loadTenants(t *testing.T, s store.Store, docs ...tdoc) {
	t.Helper()
	err := s.Write(context.Background(), func(tx store.Tx) error {
		for i, d := range docs {
			r := res(d.typ, d.id, 1, base.Add(time.Duration(i)*time.Hour))
			r.Tenant = d.tenant
			if err := tx.Put(r, d.entries); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
}

// clinics loads two clinics' and the default tenant's patients and
// observations, with references across tenants (ids are unique across
// tenants): clinic-b's ob2 points at clinic-a's patient pa1, its ob3 at
// clinic-a's practitioner dra. Every observation has code c1 but ob3 (c2).
func clinics(t *testing.T, s store.Store) {
	t.Helper()
	obs := func(subject, code string, when [2]time.Time, more ...search.Entry) []search.Entry {
		return append([]search.Entry{ref("subject", "Patient", subject), tok("code", "urn:c", code), date("date", when)}, more...)
	}
	loadTenants(t, s,
		tdoc{tenantA, doc{"Patient", "pa1", []search.Entry{ref("general-practitioner", "Practitioner", "dra")}}},
		tdoc{tenantA, doc{"Patient", "pa2", nil}},
		tdoc{tenantA, doc{"Practitioner", "dra", nil}},
		tdoc{tenantB, doc{"Patient", "pb1", []search.Entry{ref("general-practitioner", "Practitioner", "dra")}}},
		tdoc{"", doc{"Patient", "pd1", nil}},
		tdoc{tenantA, doc{"Observation", "oa1", obs("pa1", "c1", day(2025, 3, 5))}},
		tdoc{tenantB, doc{"Observation", "ob1", obs("pb1", "c1", day(2025, 3, 3))}},
		tdoc{tenantA, doc{"Observation", "oa2", obs("pa2", "c1", day(2025, 3, 1))}},
		tdoc{tenantB, doc{"Observation", "ob2", obs("pa1", "c1", day(2025, 3, 2))}},
		tdoc{tenantB, doc{"Observation", "ob3", obs("pb1", "c2", day(2025, 3, 4), ref("performer", "Practitioner", "dra"))}},
		tdoc{"", doc{"Observation", "od1", obs("pd1", "c1", day(2025, 3, 6))}},
	)
}

// inTenant sets q's tenant.
func inTenant(tenant string, q *search.Query) *search.Query {
	q.Tenant = tenant
	return q
}

// expectTotal checks the total of q counted (Total) and alone
// (SummaryCount), with Store.Search and Tx.Search.
func expectTotal(t *testing.T, s store.Store, name string, q *search.Query, want int) {
	t.Helper()
	for _, summary := range []bool{false, true} {
		cq := *q
		cq.Total, cq.SummaryCount = true, summary
		pg := doSearch(t, s, &cq)
		if pg.Total != want {
			t.Errorf("%s: Search(summary=%v).Total = %d, want %d", name, summary, pg.Total, want)
		}
		if summary && len(pg.Matches) != 0 {
			t.Errorf("%s: Search(summary=count) returned %d matches", name, len(pg.Matches))
		}
		err := s.Write(context.Background(), func(tx store.Tx) error {
			pg, err := tx.Search(&cq)
			if err == nil && pg.Total != want {
				t.Errorf("%s: Tx.Search(summary=%v).Total = %d, want %d", name, summary, pg.Total, want)
			}
			return err
		})
		if err != nil {
			t.Errorf("%s: Tx.Search: %v", name, err)
		}
	}
}

// testTenantSearch: a search sees its tenant's resources only (matches
// and totals), "" is the default tenant of its own, AllTenants sees all;
// sorting and paging work within the tenant.
func testTenantSearch(t *testing.T, s store.Store) {
	clinics(t, s)
	c1 := func() *search.Query {
		return query("Observation", clause("code", search.TypeToken, "", vSys("urn:c", "c1")))
	}
	tests := []struct {
		name   string
		tenant string
		q      func() *search.Query
		want   []string
	}{
		{"code clinic-a", tenantA, c1, []string{"oa1", "oa2"}},
		{"code clinic-b", tenantB, c1, []string{"ob1", "ob2"}},
		{"code default", "", c1, []string{"od1"}},
		{"code all tenants", search.AllTenants, c1, []string{"oa1", "oa2", "ob1", "ob2", "od1"}},
		{"code unknown tenant", "clinic-z", c1, nil},
		{"code invalid tenant", "clinic-a\x00", c1, nil},
		{"every patient clinic-a", tenantA, func() *search.Query { return query("Patient") }, []string{"pa1", "pa2"}},
		{"every patient clinic-b", tenantB, func() *search.Query { return query("Patient") }, []string{"pb1"}},
		{"every patient default", "", func() *search.Query { return query("Patient") }, []string{"pd1"}},
		{"every patient all tenants", search.AllTenants, func() *search.Query { return query("Patient") }, []string{"pa1", "pa2", "pb1", "pd1"}},
		// clinic-b's own observation of clinic-a's patient is clinic-b's.
		{"subject pa1 clinic-a", tenantA, func() *search.Query {
			return query("Observation", clause("subject", search.TypeReference, "", vRef("Patient", "pa1")))
		}, []string{"oa1"}},
		{"subject pa1 clinic-b", tenantB, func() *search.Query {
			return query("Observation", clause("subject", search.TypeReference, "", vRef("Patient", "pa1")))
		}, []string{"ob2"}},
		{"_id of another tenant", tenantB, func() *search.Query {
			return query("Patient", clause("_id", search.TypeToken, "", vCode("pa1"), vCode("pb1")))
		}, []string{"pb1"}},
		{"not code clinic-b", tenantB, func() *search.Query {
			return query("Observation", clause("code", search.TypeToken, "not", vSys("urn:c", "c1")))
		}, []string{"ob3"}},
		{"missing practitioner clinic-a", tenantA, func() *search.Query {
			return query("Patient", missing("general-practitioner", search.TypeReference, true))
		}, []string{"pa2"}},
		{"system search clinic-b", tenantB, func() *search.Query {
			return query("", clause("_lastUpdated", search.TypeDate, "", vDate(search.PrefixGe, instant(base))))
		}, []string{"pb1", "ob1", "ob2", "ob3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, s, tc.name, inTenant(tc.tenant, tc.q()), tc.want...)
			expectTotal(t, s, tc.name, inTenant(tc.tenant, tc.q()), len(tc.want))
			for _, r := range doSearch(t, s, inTenant(tc.tenant, tc.q())).Matches {
				if tc.tenant != search.AllTenants && r.Tenant != tc.tenant {
					t.Errorf("Search(tenant %q) match %s/%s has tenant %q", tc.tenant, r.Type, r.ID, r.Tenant)
				}
			}
		})
	}

	t.Run("sort and paging", func(t *testing.T) {
		byDate := inTenant(tenantA, query("Observation"))
		byDate.Sort = []search.SortKey{{Param: "date"}}
		expectOrder(t, s, "sort by date clinic-a", byDate, "oa2", "oa1")
		byDate.Tenant = tenantB
		expectOrder(t, s, "sort by date clinic-b", byDate, "ob2", "ob1", "ob3")
		byDate.Tenant = search.AllTenants
		expectOrder(t, s, "sort by date all tenants", byDate, "oa2", "ob2", "ob1", "ob3", "oa1", "od1")

		newest := inTenant(tenantB, query("Observation"))
		newest.Sort = []search.SortKey{{Param: "_lastUpdated", Descending: true}}
		newest.Count, newest.Total = 2, true
		for _, page := range []struct {
			offset int
			want   []string
		}{{0, []string{"ob3", "ob2"}}, {2, []string{"ob1"}}, {4, []string{}}} {
			newest.Offset = page.offset
			pg := doSearch(t, s, newest)
			if got := ids(pg.Matches); !slices.Equal(got, page.want) || pg.Total != 3 {
				t.Errorf("Search(clinic-b, offset %d) = %v total %d, want %v total 3", page.offset, got, pg.Total, page.want)
			}
		}
	})
}

// testTenantInclude: _include and _revinclude leave out the resources of
// other tenants, also when a reference crosses tenants.
func testTenantInclude(t *testing.T, s store.Store) {
	clinics(t, s)
	obs := func(tenant string, inc ...search.Include) *search.Query {
		q := inTenant(tenant, query("Observation", clause("_id", search.TypeToken, "", vCode("ob2"), vCode("ob3"), vCode("oa1"))))
		q.Includes = inc
		return q
	}
	subject := search.Include{SourceType: "Observation", Param: "subject"}
	performer := search.Include{SourceType: "Observation", Param: "performer"}
	expectIncluded(t, s, "_include clinic-b", obs(tenantB, subject, performer), "Patient/pb1")
	expectIncluded(t, s, "_include clinic-a", obs(tenantA, subject, performer), "Patient/pa1")
	expectIncluded(t, s, "_include all tenants", obs(search.AllTenants, subject, performer),
		"Patient/pa1", "Patient/pb1", "Practitioner/dra")
	expectIncluded(t, s, "_include every param clinic-b", obs(tenantB, search.Include{SourceType: "Observation", Param: "*"}), "Patient/pb1")
	everyone := doSearch(t, s, obs(search.AllTenants)).Matches
	expectIncludedFrom(t, s, "Include clinic-b", obs(tenantB, subject, performer), everyone, "Patient/pb1")
	expectIncludedFrom(t, s, "Include all tenants", obs(search.AllTenants, subject, performer), everyone,
		"Patient/pa1", "Patient/pb1", "Practitioner/dra")

	pat := func(tenant string, ids ...string) *search.Query {
		var vs []search.Value
		for _, id := range ids {
			vs = append(vs, vCode(id))
		}
		q := inTenant(tenant, query("Patient", clause("_id", search.TypeToken, "", vs...)))
		q.RevIncludes = []search.Include{subject}
		return q
	}
	expectIncluded(t, s, "_revinclude clinic-a", pat(tenantA, "pa1"), "Observation/oa1")
	expectIncluded(t, s, "_revinclude clinic-b", pat(tenantB, "pa1", "pb1"), "Observation/ob1", "Observation/ob3")
	expectIncluded(t, s, "_revinclude all tenants", pat(search.AllTenants, "pa1"), "Observation/oa1", "Observation/ob2")

	dr := inTenant(tenantA, query("Practitioner"))
	dr.RevIncludes = []search.Include{{SourceType: "Patient", Param: "general-practitioner"}, performer}
	expectIncluded(t, s, "_revinclude of a practitioner clinic-a", dr, "Patient/pa1")
	dr.Tenant = tenantB
	expectIncluded(t, s, "_revinclude of another tenant's practitioner", dr)
	if pg := doSearch(t, s, dr); len(pg.Matches) != 0 {
		t.Errorf("Search(Practitioner, clinic-b) = %v, want none", ids(pg.Matches))
	}
	for _, q := range []*search.Query{obs(tenantB, subject, performer), pat(tenantB, "pb1")} {
		for _, r := range doSearch(t, s, q).Included {
			if r.Tenant != tenantB {
				t.Errorf("Search(clinic-b) included %s/%s of tenant %q", r.Type, r.ID, r.Tenant)
			}
		}
	}
}

// testTenantHistory: instance, type and system history per tenant, with
// totals, since and paging; each version counts for its own tenant.
func testTenantHistory(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	putIn := func(tenant string, r *store.Resource) {
		t.Helper()
		r.Tenant = tenant
		put(t, s, r)
	}
	putIn(tenantA, res("Patient", "pa", 1, at(1)))
	putIn(tenantB, res("Patient", "pb", 1, at(2)))
	putIn(tenantA, res("Patient", "pa", 2, at(3)))
	putIn("", res("Patient", "pd", 1, at(4)))
	putIn(tenantB, res("Observation", "ob", 1, at(5)))
	putIn(tenantA, deletion("Patient", "pa", 3, at(6)))
	putIn(tenantB, res("Patient", "pb", 2, at(7)))

	type hv struct {
		id string
		v  int64
	}
	tests := []struct {
		name      string
		q         store.HistoryQuery
		wantTotal int
		want      []hv
	}{
		{"instance clinic-a", store.HistoryQuery{Tenant: tenantA, Type: "Patient", ID: "pa"}, 3, []hv{{"pa", 3}, {"pa", 2}, {"pa", 1}}},
		{"instance of another tenant", store.HistoryQuery{Tenant: tenantB, Type: "Patient", ID: "pa"}, 0, nil},
		{"instance of another tenant, default", store.HistoryQuery{Type: "Patient", ID: "pa"}, 0, nil},
		{"instance all tenants", store.HistoryQuery{Tenant: search.AllTenants, Type: "Patient", ID: "pb"}, 2, []hv{{"pb", 2}, {"pb", 1}}},
		{"type clinic-a", store.HistoryQuery{Tenant: tenantA, Type: "Patient"}, 3, []hv{{"pa", 3}, {"pa", 2}, {"pa", 1}}},
		{"type clinic-b", store.HistoryQuery{Tenant: tenantB, Type: "Patient"}, 2, []hv{{"pb", 2}, {"pb", 1}}},
		{"type default", store.HistoryQuery{Type: "Patient"}, 1, []hv{{"pd", 1}}},
		{"type all tenants", store.HistoryQuery{Tenant: search.AllTenants, Type: "Patient"}, 6,
			[]hv{{"pb", 2}, {"pa", 3}, {"pd", 1}, {"pa", 2}, {"pb", 1}, {"pa", 1}}},
		{"system clinic-b", store.HistoryQuery{Tenant: tenantB}, 3, []hv{{"pb", 2}, {"ob", 1}, {"pb", 1}}},
		{"system default", store.HistoryQuery{}, 1, []hv{{"pd", 1}}},
		{"system all tenants", store.HistoryQuery{Tenant: search.AllTenants}, 7,
			[]hv{{"pb", 2}, {"pa", 3}, {"ob", 1}, {"pd", 1}, {"pa", 2}, {"pb", 1}, {"pa", 1}}},
		{"system unknown tenant", store.HistoryQuery{Tenant: "clinic-z"}, 0, nil},
		{"system invalid tenant", store.HistoryQuery{Tenant: "clinic-b\x00"}, 0, nil},
		{"system since clinic-b", store.HistoryQuery{Tenant: tenantB, Since: at(5)}, 2, []hv{{"pb", 2}, {"ob", 1}}},
		{"system page clinic-b", store.HistoryQuery{Tenant: tenantB, Count: 1, Offset: 1}, 3, []hv{{"ob", 1}}},
		{"type page clinic-a", store.HistoryQuery{Tenant: tenantA, Type: "Patient", Count: 2, Offset: 2}, 3, []hv{{"pa", 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, total, err := s.History(ctx, tc.q)
			if err != nil {
				t.Fatalf("History(%+v): %v", tc.q, err)
			}
			var g []hv
			for _, r := range got {
				g = append(g, hv{r.ID, r.Version})
				if tc.q.Tenant != search.AllTenants && r.Tenant != tc.q.Tenant {
					t.Errorf("History(%+v) returned %s/%s v%d of tenant %q", tc.q, r.Type, r.ID, r.Version, r.Tenant)
				}
			}
			if !slices.Equal(g, tc.want) || total != tc.wantTotal {
				t.Errorf("History(%+v) = %v total %d, want %v total %d", tc.q, g, total, tc.want, tc.wantTotal)
			}
		})
	}
}

// testTenantRead: Read, VRead, History, Tx.Read and Search return each
// version's tenant; Put stores it without checking it against the
// previous version's; a tenant that cannot be stored is refused.
func testTenantRead(t *testing.T, s store.Store) {
	ctx := context.Background()
	v1 := res("Patient", "p", 1, base)
	v1.Tenant = tenantA
	put(t, s, v1, tok("identifier", "urn:x", "1"))
	got, err := s.Read(ctx, "Patient", "p")
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	sameResource(t, "Read", got, v1)
	err = s.Write(ctx, func(tx store.Tx) error {
		got, err := tx.Read("Patient", "p")
		if err == nil {
			sameResource(t, "Tx.Read", got, v1)
		}
		return err
	})
	if err != nil {
		t.Fatalf("Tx.Read: %v", err)
	}

	// The store does not check tenants: the gateway reads first.
	v2 := res("Patient", "p", 2, base.Add(time.Hour))
	v2.Tenant = tenantB
	put(t, s, v2, tok("identifier", "urn:x", "1"))
	for _, want := range []*store.Resource{v1, v2} {
		got, err := s.VRead(ctx, "Patient", "p", want.Version)
		if err != nil {
			t.Fatalf("VRead %d: %v", want.Version, err)
		}
		sameResource(t, "VRead", got, want)
	}
	hist, _, err := s.History(ctx, store.HistoryQuery{Tenant: search.AllTenants, Type: "Patient", ID: "p"})
	if err != nil || len(hist) != 2 {
		t.Fatalf("History = %d versions, %v; want 2", len(hist), err)
	}
	sameResource(t, "History v2", hist[0], v2)
	sameResource(t, "History v1", hist[1], v1)
	byIdentifier := query("Patient", clause("identifier", search.TypeToken, "", vSys("urn:x", "1")))
	expect(t, s, "the new tenant's", inTenant(tenantB, byIdentifier), "p")
	expect(t, s, "no longer the old tenant's", inTenant(tenantA, byIdentifier))
	if pg := doSearch(t, s, inTenant(tenantB, byIdentifier)); len(pg.Matches) == 1 {
		sameResource(t, "Search", pg.Matches[0], v2)
	}

	del := deletion("Patient", "p", 3, base.Add(2*time.Hour))
	del.Tenant = tenantB
	put(t, s, del)
	got, err = s.Read(ctx, "Patient", "p")
	isErr(t, "Read deleted", err, store.ErrGone)
	if got == nil || got.Tenant != tenantB {
		t.Errorf("Read deleted = %+v, want the deletion of tenant %q", got, tenantB)
	}

	for _, tenant := range []string{search.AllTenants, "a\x00b", "a\xffb"} {
		r := res("Patient", "bad", 1, base)
		r.Tenant = tenant
		err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(r, nil) })
		if err == nil {
			t.Errorf("Put(tenant %q) = nil, want an error", tenant)
		}
	}
	_, err = s.Read(ctx, "Patient", "bad")
	isErr(t, "Read of a refused Put", err, store.ErrNotFound)
}

// testTenantOutbox: items keep their tenant through Claim, Deliveries,
// Delivery and Replay; DeliveryFilter.Tenant "" lists every tenant;
// one tenant's items never hold up another's of the same order key.
func testTenantOutbox(t *testing.T, s store.Store) {
	ob := store.Outbox(s)
	ctx := context.Background()
	mk := func(tenant, key string) *store.OutboxItem {
		it := item("ehr", key, "pat")
		it.Tenant = tenant
		return it
	}
	a1, b1, d1, a2 := mk(tenantA, "K"), mk(tenantB, "K"), mk("", "K"), mk(tenantA, "K")
	enqueue(t, s, a1, b1, d1, a2)
	for _, tc := range []struct {
		name string
		f    store.DeliveryFilter
		want []*store.OutboxItem
	}{
		{"every tenant", store.DeliveryFilter{}, []*store.OutboxItem{a2, d1, b1, a1}},
		{"clinic-a", store.DeliveryFilter{Tenant: tenantA}, []*store.OutboxItem{a2, a1}},
		{"clinic-b", store.DeliveryFilter{Tenant: tenantB}, []*store.OutboxItem{b1}},
		{"unknown tenant", store.DeliveryFilter{Tenant: "clinic-z"}, nil},
		{"invalid tenant", store.DeliveryFilter{Tenant: "clinic-a\x00"}, nil},
		{"clinic-a and record", store.DeliveryFilter{Tenant: tenantA, RecordID: "K", Limit: 1}, []*store.OutboxItem{a2}},
	} {
		got, err := ob.Deliveries(ctx, tc.f)
		if err != nil {
			t.Fatalf("Deliveries(%s): %v", tc.name, err)
		}
		if !equal(itemIDs(got), itemIDs(tc.want)) {
			t.Errorf("Deliveries(%s) = %v, want %v", tc.name, itemIDs(got), itemIDs(tc.want))
		}
		for i, it := range got {
			if i < len(tc.want) && it.Tenant != tc.want[i].Tenant {
				t.Errorf("Deliveries(%s)[%d].Tenant = %q, want %q", tc.name, i, it.Tenant, tc.want[i].Tenant)
			}
		}
	}

	// The same order key in three tenants: three independent queues.
	now := time.Now().UTC().Add(time.Millisecond)
	claimed, err := ob.Claim(ctx, "ehr", now, time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{a1.ID, b1.ID, d1.ID}; !equal(itemIDs(claimed), want) {
		t.Fatalf("Claim = %v, want %v (a2 waits for a1 only)", itemIDs(claimed), want)
	}
	for i, want := range []string{tenantA, tenantB, ""} {
		if claimed[i].Tenant != want {
			t.Errorf("Claim()[%d].Tenant = %q, want %q", i, claimed[i].Tenant, want)
		}
	}
	for _, it := range claimed {
		if err := ob.Complete(ctx, &store.Attempt{ItemID: it.ID, At: now}, store.StatusDone, now); err != nil {
			t.Fatal(err)
		}
	}
	got, _, err := ob.Delivery(ctx, b1.ID)
	if err != nil || got.Tenant != tenantB {
		t.Errorf("Delivery(b1) = %+v, %v; want tenant %q", got, err, tenantB)
	}

	// Replay copies each item's tenant (tenant A's record is not
	// replayed: its latest delivery, a2, is still pending).
	n, err := ob.Replay(ctx, "ehr", time.Time{}, now)
	if err != nil || n != 2 {
		t.Fatalf("Replay = %d, %v; want 2", n, err)
	}
	replayed, err := ob.Deliveries(ctx, store.DeliveryFilter{Status: store.StatusPending})
	if err != nil {
		t.Fatal(err)
	}
	var tenants []string
	for _, it := range replayed {
		if it.ID != a2.ID {
			tenants = append(tenants, it.Tenant)
		}
	}
	if want := []string{"", tenantB}; !slices.Equal(tenants, want) {
		t.Errorf("replayed tenants (newest first) = %q, want %q", tenants, want)
	}

	err = s.Write(ctx, func(tx store.Tx) error { return tx.Enqueue(mk(search.AllTenants, "X")) })
	if err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("Enqueue(tenant %q) = %v, want an error", search.AllTenants, err)
	}
}
