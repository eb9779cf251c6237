package storetest

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

func testSort(t *testing.T, s store.Store) {
	procedures(t, s)
	q := func(keys ...search.SortKey) *search.Query {
		qq := query("Procedure")
		qq.Sort = keys
		return qq
	}
	expectOrder(t, s, "default: _lastUpdated then id", q(), "d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9")
	expectOrder(t, s, "date ascending (by start), none last", q(search.SortKey{Param: "date"}),
		"d8", "d6", "d3", "d2", "d5", "d1", "d4", "d7", "d9")
	expectOrder(t, s, "date descending (by end), none last", q(search.SortKey{Param: "date", Descending: true}),
		"d7", "d3", "d2", "d5", "d1", "d4", "d6", "d8", "d9")
	expectOrder(t, s, "_lastUpdated descending", q(search.SortKey{Param: "_lastUpdated", Descending: true}),
		"d9", "d8", "d7", "d6", "d5", "d4", "d3", "d2", "d1")
	expectOrder(t, s, "_id descending", q(search.SortKey{Param: "_id", Descending: true}),
		"d9", "d8", "d7", "d6", "d5", "d4", "d3", "d2", "d1")
	filtered := q(search.SortKey{Param: "date", Descending: true})
	filtered.Clauses = []search.Clause{clause("date", search.TypeDate, "", vDate(search.PrefixEq, month(2024, 3)))}
	expectOrder(t, s, "sorted and filtered", filtered, "d2", "d5", "d1", "d4")

	// Ties on the sort key fall back to _lastUpdated then id.
	load(t, s,
		doc{"Encounter", "e3", []search.Entry{date("date", year(2020))}},
		doc{"Encounter", "e1", []search.Entry{date("date", year(2020))}},
		doc{"Encounter", "e2", []search.Entry{date("date", year(2019))}},
	)
	enc := query("Encounter")
	enc.Sort = []search.SortKey{{Param: "date", Descending: true}}
	expectOrder(t, s, "ties", enc, "e3", "e1", "e2")
	enc.Sort = []search.SortKey{{Param: "date", Descending: true}, {Param: "_id"}}
	expectOrder(t, s, "two keys", enc, "e1", "e3", "e2")
}

func testPaging(t *testing.T, s store.Store) {
	var docs []doc
	for i := range 25 {
		docs = append(docs, doc{"Basic", fmt.Sprintf("b%02d", (i*7)%25), []search.Entry{tok("code", "urn:c", "x")}})
	}
	// All in one transaction with one last_updated: order is then by id.
	err := s.Write(t.Context(), func(tx store.Tx) error {
		for _, d := range docs {
			if err := tx.Put(res(d.typ, d.id, 1, base), d.entries); err != nil {
				return err
			}
		}
		return tx.Put(res("Basic", "other", 1, base), []search.Entry{tok("code", "urn:c", "y")})
	})
	if err != nil {
		t.Fatal(err)
	}
	var all []string
	for i := range 25 {
		all = append(all, fmt.Sprintf("b%02d", i))
	}
	q := func(count, offset int, total bool) *search.Query {
		qq := query("Basic", clause("code", search.TypeToken, "", vCode("x")))
		qq.Count, qq.Offset, qq.Total = count, offset, total
		return qq
	}
	var got []string
	for off := 0; off < 30; off += 10 {
		pg := doSearch(t, s, q(10, off, true))
		if pg.Total != 25 {
			t.Errorf("offset %d: total %d, want 25", off, pg.Total)
		}
		if want := min(10, 25-off); len(pg.Matches) != want {
			t.Errorf("offset %d: %d matches, want %d", off, len(pg.Matches), want)
		}
		got = append(got, ids(pg.Matches)...)
	}
	if !slices.Equal(got, all) {
		t.Errorf("pages: got %v, want %v", got, all)
	}
	if pg := doSearch(t, s, q(10, 0, false)); pg.Total != -1 {
		t.Errorf("total not asked: got %d, want -1", pg.Total)
	}
	if pg := doSearch(t, s, q(10, 40, true)); len(pg.Matches) != 0 || pg.Total != 25 {
		t.Errorf("past the end: %d matches, total %d", len(pg.Matches), pg.Total)
	}
	sc := q(10, 0, false)
	sc.SummaryCount = true
	if pg := doSearch(t, s, sc); len(pg.Matches) != 0 || pg.Total != 25 {
		t.Errorf("_summary=count: %d matches, total %d", len(pg.Matches), pg.Total)
	}
	def := q(0, 0, true)
	if pg := doSearch(t, s, def); len(pg.Matches) != 25 || pg.Total != 25 {
		t.Errorf("default count: %d matches, total %d", len(pg.Matches), pg.Total)
	}

	// Paging by descending _lastUpdated with ties is stable too.
	for i := range 12 {
		put(t, s, res("Flag", fmt.Sprintf("f%02d", i), 1, base.Add(time.Duration(i/3)*time.Hour)))
	}
	fq := func(off int) *search.Query {
		qq := query("Flag")
		qq.Sort = []search.SortKey{{Param: "_lastUpdated", Descending: true}}
		qq.Count, qq.Offset = 5, off
		return qq
	}
	got = nil
	for off := 0; off < 12; off += 5 {
		got = append(got, ids(doSearch(t, s, fq(off)).Matches)...)
	}
	want := []string{"f09", "f10", "f11", "f06", "f07", "f08", "f03", "f04", "f05", "f00", "f01", "f02"}
	if !slices.Equal(got, want) {
		t.Errorf("_lastUpdated desc pages: got %v, want %v", got, want)
	}

	// Paging by cursor (search.Query.After) in both directions and with
	// ties: each page starts after the last match of the one before, at
	// whatever offset, and says whether more follow (Page.More).
	for _, desc := range []bool{false, true} {
		var got []string
		var after *search.Cursor
		for range 5 {
			qq := fq(0)
			qq.Sort[0].Descending, qq.After = desc, after
			if after != nil {
				qq.Offset = 99 // with a cursor the offset only numbers the page
			}
			pg := doSearch(t, s, qq)
			got = append(got, ids(pg.Matches)...)
			if !pg.More {
				break
			}
			last := pg.Matches[len(pg.Matches)-1]
			after = &search.Cursor{LastUpdated: last.LastUpdated.UnixMilli(), Type: last.Type, ID: last.ID}
		}
		want := slices.Clone(want)
		if !desc {
			want = []string{"f00", "f01", "f02", "f03", "f04", "f05", "f06", "f07", "f08", "f09", "f10", "f11"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("cursor pages (descending %v): got %v, want %v", desc, got, want)
		}
	}
	// Paging by cursor in the order of a date parameter: ties on the date
	// (by last update and id), resources without one last, and the
	// cursor (Page.Next) carrying the date so that a match written
	// before its position does not push the next page down.
	for i := range 7 {
		var entries []search.Entry
		if i < 6 {
			entries = []search.Entry{date("date", day(2026, 3, 1+i/2))} // two a day
		}
		put(t, s, &store.Resource{Type: "Procedure", ID: fmt.Sprintf("pr%d", i), Version: 1,
			LastUpdated: base.Add(time.Duration(i) * time.Minute), Body: []byte(`{}`)}, entries...)
	}
	for _, desc := range []bool{false, true} {
		var got []string
		var after *search.Cursor
		for n := 0; n < 10; n++ {
			qq := query("Procedure")
			qq.Sort = []search.SortKey{{Param: "date", Descending: desc}}
			qq.Count, qq.After = 3, after
			pg := doSearch(t, s, qq)
			got = append(got, ids(pg.Matches)...)
			if n == 0 {
				// Written between the pages, sorting before the cursor.
				id, when := "pr-late-a", day(2026, 3, 1)
				if desc {
					id, when = "pr-late-d", day(2026, 3, 9)
				}
				put(t, s, &store.Resource{Type: "Procedure", ID: id, Version: 1,
					LastUpdated: base.Add(time.Hour), Body: []byte(`{}`)}, date("date", when))
			}
			if !pg.More {
				if pg.Next != nil {
					t.Errorf("date cursor pages: the last page has a Next %v", pg.Next)
				}
				break
			}
			if pg.Next == nil || len(pg.Next.Keys) != 1 {
				t.Fatalf("date cursor pages: Next = %+v, want the date's value in it", pg.Next)
			}
			after = pg.Next
		}
		// Ascending, pr-late-a (1 March, written after page 1) sorts
		// before the cursor; descending, pr-late-d (9 March) does, and
		// pr-late-a comes after 1 March's others.
		want := "pr0,pr1,pr2,pr3,pr4,pr5,pr6"
		if desc {
			want = "pr4,pr5,pr2,pr3,pr0,pr1,pr-late-a,pr6"
		}
		if strings.Join(got, ",") != want {
			t.Errorf("date cursor pages (descending %v): got %v, want %s", desc, got, want)
		}
	}

	if pg := doSearch(t, s, q(25, 0, true)); pg.More || len(pg.Matches) != 25 {
		t.Errorf("the whole result on one page: %d matches, More %v, want 25 and no more", len(pg.Matches), pg.More)
	}
	if pg := doSearch(t, s, q(24, 0, true)); !pg.More || len(pg.Matches) != 24 {
		t.Errorf("all but one on the page: %d matches, More %v, want 24 and more", len(pg.Matches), pg.More)
	}
}

// linked loads patients, a practitioner and observations pointing at them.
func linked(t *testing.T, s store.Store) {
	t.Helper()
	load(t, s,
		doc{"Patient", "p1", []search.Entry{ref("general-practitioner", "Practitioner", "dr1"), ref("link", "Patient", "p2")}},
		doc{"Patient", "p2", nil},
		doc{"Patient", "p3", nil},
		doc{"Practitioner", "dr1", nil},
		doc{"Observation", "o1", []search.Entry{ref("subject", "Patient", "p1"), ref("performer", "Practitioner", "dr1")}},
		doc{"Observation", "o2", []search.Entry{ref("subject", "Patient", "p2")}},
		doc{"Observation", "o3", []search.Entry{ref("subject", "Patient", "p1")}},
		doc{"Observation", "o4", []search.Entry{ref("subject", "Group", "g1")}}, // no such group
		doc{"Observation", "o5", []search.Entry{ref("subject", "Patient", "p3")}},
		doc{"Observation", "o6", []search.Entry{ref("subject", "Patient", "gone")}},
		doc{"Patient", "gone", nil},
		doc{"Observation", "o7", []search.Entry{ref("subject", "Patient", "p1")}},
	)
	put(t, s, deletion("Patient", "gone", 2, base.Add(24*time.Hour)))
	put(t, s, deletion("Observation", "o7", 2, base.Add(24*time.Hour)))
}

// included returns "Type/id" of the included resources, sorted.
func included(pg *store.Page) []string {
	var out []string
	for _, r := range pg.Included {
		out = append(out, r.Type+"/"+r.ID)
	}
	return sorted(out)
}

func expectIncluded(t *testing.T, s store.Store, name string, q *search.Query, want ...string) {
	t.Helper()
	pg := doSearch(t, s, q)
	if got := included(pg); !slices.Equal(got, sorted(want)) {
		t.Errorf("%s: included %v, want %v", name, got, sorted(want))
	}
	for _, r := range pg.Included {
		if r.Deleted || r.Body == nil || r.Version != 1 {
			t.Errorf("%s: included %s/%s v%d deleted=%v is not a current resource", name, r.Type, r.ID, r.Version, r.Deleted)
		}
	}
}

// expectIncludedFrom checks Store.Include of q from the resources from.
func expectIncludedFrom(t *testing.T, s store.Store, name string, q *search.Query, from []*store.Resource, want ...string) {
	t.Helper()
	got, err := s.Include(context.Background(), q, from)
	if err != nil {
		t.Fatalf("%s: Include: %v", name, err)
	}
	if ids := included(&store.Page{Included: got}); !slices.Equal(ids, sorted(want)) {
		t.Errorf("%s: Include = %v, want %v", name, ids, sorted(want))
	}
	if !slices.IsSortedFunc(got, func(a, b *store.Resource) int {
		return cmp.Or(strings.Compare(a.Type, b.Type), strings.Compare(a.ID, b.ID))
	}) {
		t.Errorf("%s: Include is not ordered by type and id", name)
	}
	for _, r := range got {
		if r.Deleted || r.Body == nil || r.Version != 1 {
			t.Errorf("%s: included %s/%s v%d deleted=%v is not a current resource", name, r.Type, r.ID, r.Version, r.Deleted)
		}
	}
}

func testInclude(t *testing.T, s store.Store) {
	linked(t, s)
	obs := func(inc ...search.Include) *search.Query {
		q := query("Observation", clause("_id", search.TypeToken, "",
			vCode("o1"), vCode("o2"), vCode("o3"), vCode("o4"), vCode("o6")))
		q.Includes = inc
		return q
	}
	expectIncluded(t, s, "none", obs())
	expectIncluded(t, s, "subject", obs(search.Include{SourceType: "Observation", Param: "subject"}), "Patient/p1", "Patient/p2")
	expectIncluded(t, s, "subject:Patient", obs(search.Include{SourceType: "Observation", Param: "subject", TargetType: "Patient"}),
		"Patient/p1", "Patient/p2")
	expectIncluded(t, s, "subject:Group", obs(search.Include{SourceType: "Observation", Param: "subject", TargetType: "Group"}))
	expectIncluded(t, s, "two includes", obs(
		search.Include{SourceType: "Observation", Param: "subject"},
		search.Include{SourceType: "Observation", Param: "performer"}), "Patient/p1", "Patient/p2", "Practitioner/dr1")

	pq := query("Patient", clause("_id", search.TypeToken, "", vCode("p1"), vCode("p2")))
	pq.Includes = []search.Include{{SourceType: "Patient", Param: "link"}, {SourceType: "Patient", Param: "general-practitioner"}}
	expectIncluded(t, s, "a match is not included again", pq, "Practitioner/dr1")

	// Include finds from any resources what Search finds from its matches
	// (the engine's further rounds of _include:iterate), none of them.
	subject := search.Include{SourceType: "Observation", Param: "subject"}
	expectIncludedFrom(t, s, "Include from the matches", obs(subject), doSearch(t, s, obs()).Matches, "Patient/p1", "Patient/p2")
	expectIncludedFrom(t, s, "Include from nothing", obs(subject), nil)
	expectIncludedFrom(t, s, "Include, none of from", pq, doSearch(t, s, pq).Matches, "Practitioner/dr1")
	rev := query("Patient")
	rev.RevIncludes = []search.Include{subject}
	expectIncludedFrom(t, s, "Include of a revinclude", rev, doSearch(t, s, pq).Matches, "Observation/o1", "Observation/o2", "Observation/o3")

	// Included resources are in the page only: paging the matches pages them.
	paged := obs(search.Include{SourceType: "Observation", Param: "subject"})
	paged.Count = 1
	expectIncluded(t, s, "first page only", paged, "Patient/p1")
	paged.SummaryCount = true
	if pg := doSearch(t, s, paged); len(pg.Included) != 0 || pg.Total != 5 {
		t.Errorf("_summary=count with _include: %d included, total %d", len(pg.Included), pg.Total)
	}
}

func testRevInclude(t *testing.T, s store.Store) {
	linked(t, s)
	pat := func(inc ...search.Include) *search.Query {
		q := query("Patient", clause("_id", search.TypeToken, "", vCode("p1")))
		q.RevIncludes = inc
		return q
	}
	expectIncluded(t, s, "Observation:subject", pat(search.Include{SourceType: "Observation", Param: "subject"}),
		"Observation/o1", "Observation/o3")
	expectIncluded(t, s, "Observation:subject:Patient",
		pat(search.Include{SourceType: "Observation", Param: "subject", TargetType: "Patient"}), "Observation/o1", "Observation/o3")
	expectIncluded(t, s, "Observation:subject:Group",
		pat(search.Include{SourceType: "Observation", Param: "subject", TargetType: "Group"}))
	expectIncluded(t, s, "other param", pat(search.Include{SourceType: "Observation", Param: "performer"}))
	expectIncluded(t, s, "with _include", func() *search.Query {
		q := pat(search.Include{SourceType: "Observation", Param: "subject"})
		q.Includes = []search.Include{{SourceType: "Patient", Param: "general-practitioner"}}
		return q
	}(), "Observation/o1", "Observation/o3", "Practitioner/dr1")

	dr := query("Practitioner")
	dr.RevIncludes = []search.Include{
		{SourceType: "Patient", Param: "general-practitioner"},
		{SourceType: "Observation", Param: "performer"},
	}
	expectIncluded(t, s, "two revincludes", dr, "Observation/o1", "Patient/p1")

	all := query("Patient")
	all.RevIncludes = []search.Include{{SourceType: "Observation", Param: "subject"}}
	expectIncluded(t, s, "every patient", all, "Observation/o1", "Observation/o2", "Observation/o3", "Observation/o5")
}
