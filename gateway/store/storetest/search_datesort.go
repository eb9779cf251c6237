package storetest

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// dated is a fixture of testDateSortPages: an Encounter with its values
// of the date parameters "date" and "period" (none, one or several, some
// equal), a status and a subject.
type dated struct {
	id              string
	lu              time.Time
	date, period    [][2]time.Time
	status, subject string
}

// sortKey is the value a date sort key orders f by, as the search
// specification and OrderBy define it: the earliest start ascending, the
// latest end descending; without a value the end of the order.
func (f dated) sortKey(param string, desc bool) int64 {
	vals := f.date
	if param == "period" {
		vals = f.period
	}
	if len(vals) == 0 {
		if desc {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	k := vals[0][0].UnixMilli()
	if desc {
		k = vals[0][1].UnixMilli()
	}
	for _, v := range vals[1:] {
		if desc {
			k = max(k, v[1].UnixMilli())
		} else {
			k = min(k, v[0].UnixMilli())
		}
	}
	return k
}

// datedFixtures are n Encounters drawn from a fixed seed: few distinct
// dates and instants, so that sort keys and last_updated tie often, and
// one in 30 of status "cancelled".
func datedFixtures(n int) []dated {
	rng := rand.New(rand.NewPCG(37, 2026))
	value := func() [2]time.Time {
		switch rng.IntN(6) {
		case 0:
			return day(2024, time.Month(1+rng.IntN(3)), 1+rng.IntN(3))
		case 1: // a Period
			return period(day(2024, 1, 1+rng.IntN(5)), day(2024, 2, 1+rng.IntN(5)))
		case 2:
			return year(2023 + rng.IntN(2))
		case 3: // open at one end, as far as the index keeps it
			if rng.IntN(2) == 0 {
				return [2]time.Time{time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), day(2024, 1, 2)[1]}
			}
			return [2]time.Time{day(2024, 1, 2)[0], time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)}
		case 4:
			return month(2024, time.Month(1+rng.IntN(2)))
		}
		return instant(time.Date(2024, 1, 1+rng.IntN(2), 12, 0, 0, 0, time.UTC))
	}
	out := make([]dated, n)
	for i := range out {
		f := dated{
			id:      fmt.Sprintf("e%03d", (i*37)%n),
			lu:      base.Add(time.Duration(rng.IntN(5)) * time.Hour),
			status:  []string{"planned", "finished"}[rng.IntN(2)],
			subject: fmt.Sprintf("p%d", rng.IntN(4)),
		}
		for range rng.IntN(4) { // 0: no date
			if len(f.date) > 0 && rng.IntN(3) == 0 {
				f.date = append(f.date, f.date[0]) // the same value twice
			} else {
				f.date = append(f.date, value())
			}
		}
		for range rng.IntN(2) {
			f.period = append(f.period, value())
		}
		if i%30 == 0 {
			f.status = "cancelled" // few: a walk gives up on them
		}
		out[i] = f
	}
	return out
}

// testDateSortPages: a search sorted by date parameters pages, by cursor,
// through its matches in the order computed here from the fixtures (keys,
// then _lastUpdated, then id), ascending and descending, with and without
// criteria (selective or not), with the resources without a value last,
// ties on every key and pages that end inside a run of ties, among
// another tenant's Encounters with the same values; and the total, the
// first page at an offset and Page.More agree.
func testDateSortPages(t *testing.T, s store.Store) {
	fx := datedFixtures(90)
	yes := true
	err := s.Write(t.Context(), func(tx store.Tx) error {
		for _, f := range fx {
			entries := []search.Entry{tok("status", "", f.status), ref("subject", "Patient", f.subject)}
			for _, v := range f.date {
				entries = append(entries, date("date", v))
			}
			for _, v := range f.period {
				entries = append(entries, date("period", v))
			}
			// The searched tenant's, and another's with the same values
			// (the walk reads idx_date, which has no tenant).
			for _, r := range []*store.Resource{res("Encounter", f.id, 1, f.lu), res("Encounter", "x"+f.id, 1, f.lu)} {
				r.Tenant = "clinic-a"
				if r.ID != f.id {
					r.Tenant = "clinic-b"
				}
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
		}
		// Another type's values of the same parameter, and a deleted
		// Encounter's, are no matches.
		if err := tx.Put(res("Procedure", "x1", 1, base), []search.Entry{date("date", year(2024))}); err != nil {
			return err
		}
		gone, del := res("Encounter", "gone", 1, base), deletion("Encounter", "gone", 2, base.Add(time.Hour))
		gone.Tenant, del.Tenant = "clinic-a", "clinic-a"
		if err := tx.Put(gone, []search.Entry{date("date", year(2030))}); err != nil {
			return err
		}
		return tx.Put(del, nil)
	})
	if err != nil {
		t.Fatal(err)
	}

	sorts := map[string][]search.SortKey{
		"date":                {{Param: "date"}},
		"-date":               {{Param: "date", Descending: true}},
		"-date,-_lastUpdated": {{Param: "date", Descending: true}, {Param: "_lastUpdated", Descending: true}},
		"date,-_id":           {{Param: "date"}, {Param: "_id", Descending: true}},
		"-date,period":        {{Param: "date", Descending: true}, {Param: "period"}},
		"period,-date":        {{Param: "period"}, {Param: "date", Descending: true}},
	}
	criteria := map[string]struct {
		clauses []search.Clause
		match   func(dated) bool
	}{
		"none": {nil, func(dated) bool { return true }},
		"status": {[]search.Clause{clause("status", search.TypeToken, "", vCode("finished"))},
			func(f dated) bool { return f.status == "finished" }},
		"status rare": {[]search.Clause{clause("status", search.TypeToken, "", vCode("cancelled"))},
			func(f dated) bool { return f.status == "cancelled" }},
		"subject": {[]search.Clause{clause("subject", search.TypeReference, "", vRef("Patient", "p1"))},
			func(f dated) bool { return f.subject == "p1" }},
		"_id": {[]search.Clause{clause("_id", search.TypeToken, "", vCode("e005"), vCode("e017"), vCode("e042"))},
			func(f dated) bool { return f.id == "e005" || f.id == "e017" || f.id == "e042" }},
		// Conditions on a sorted parameter (walked before, when it was
		// the first).
		"date=gt": {[]search.Clause{clause("date", search.TypeDate, "", vDate(search.PrefixGt, day(2024, 1, 15)))},
			func(f dated) bool {
				return slices.ContainsFunc(f.date, func(v [2]time.Time) bool { return v[1].After(day(2024, 1, 15)[1]) })
			}},
		"date:missing": {[]search.Clause{{Param: "date", Type: search.TypeDate, Modifier: "missing", Missing: &yes}},
			func(f dated) bool { return len(f.date) == 0 }},
	}
	for _, sortName := range slices.Sorted(maps.Keys(sorts)) {
		keys := sorts[sortName]
		for _, critName := range slices.Sorted(maps.Keys(criteria)) {
			crit := criteria[critName]
			var want []string
			var matches []dated
			for _, f := range fx {
				if crit.match(f) {
					matches = append(matches, f)
				}
			}
			slices.SortFunc(matches, func(a, b dated) int {
				for _, k := range keys {
					var c int
					switch k.Param {
					case "_lastUpdated":
						c = a.lu.Compare(b.lu)
					case "_id":
						c = strings.Compare(a.id, b.id)
					default:
						c = cmp.Compare(a.sortKey(k.Param, k.Descending), b.sortKey(k.Param, k.Descending))
					}
					if k.Descending {
						c = -c
					}
					if c != 0 {
						return c
					}
				}
				return cmp.Or(a.lu.Compare(b.lu), strings.Compare(a.id, b.id))
			})
			for _, f := range matches {
				want = append(want, f.id)
			}
			for _, count := range []int{1, 3, 7, 100} {
				name := fmt.Sprintf("_sort=%s criteria %s _count=%d", sortName, critName, count)
				q := func() *search.Query {
					qq := query("Encounter", crit.clauses...)
					qq.Sort, qq.Count, qq.Tenant = keys, count, "clinic-a"
					return qq
				}
				var got []string
				var after *search.Cursor
				for page := 0; ; page++ {
					qq := q()
					qq.After, qq.Total = after, page == 0
					pg := doSearch(t, s, qq)
					if page == 0 && pg.Total != len(want) {
						t.Errorf("%s: total %d, want %d", name, pg.Total, len(want))
					}
					got = append(got, ids(pg.Matches)...)
					if more := len(got) < len(want); pg.More != more || (pg.Next != nil) != more {
						t.Errorf("%s: page %d: More %v, Next %v after %d of %d matches", name, page, pg.More, pg.Next, len(got), len(want))
						break
					}
					if !pg.More || page > len(want) {
						break
					}
					after = pg.Next
				}
				if !slices.Equal(got, want) {
					t.Errorf("%s: pages by cursor\n got %v\nwant %v", name, got, want)
				}
				// The first page at an offset (no cursor).
				qq := q()
				qq.Offset = 5
				wantAt := want[min(5, len(want)):min(5+count, len(want))]
				if got := ids(doSearch(t, s, qq).Matches); !slices.Equal(got, wantAt) {
					t.Errorf("%s: offset 5\n got %v\nwant %v", name, got, wantAt)
				}
			}
		}
	}
}
