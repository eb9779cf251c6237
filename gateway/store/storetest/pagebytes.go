package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// padded is version 1 of typ/id at lu whose JSON is size bytes (at least
// its fields').
func padded(typ, id string, size int, lu time.Time) *store.Resource {
	r := res(typ, id, 1, lu)
	head := fmt.Sprintf(`{"resourceType":%q,"id":%q,"text":{"div":"`, typ, id)
	tail := `"}}`
	r.Body = []byte(head + strings.Repeat("x", max(size-len(head)-len(tail), 0)) + tail)
	return r
}

// all reads the current versions of typ/ids.
func all(t *testing.T, s store.Store, typ string, ids ...string) []*store.Resource {
	t.Helper()
	var out []*store.Resource
	for _, id := range ids {
		r, err := s.Read(context.Background(), typ, id)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// testPageBytes: a query's MaxBytes ends a page early, after the first
// match whatever its size, with More and a Next that the following pages
// continue from, so that paging finds every match in order, by the
// default order and by a date sort; included resources past it are
// refused (search.IncludedTooLarge), and a history's page ends early too.
func testPageBytes(t *testing.T, s store.Store) {
	ctx := context.Background()
	sizes := []int{1000, 1000, 3000, 1000, 1000, 1000, 200}
	err := s.Write(ctx, func(tx store.Tx) error {
		for _, id := range []string{"pb-big1", "pb-big2"} {
			if err := tx.Put(padded("Patient", id, 3000, base), nil); err != nil {
				return err
			}
		}
		for i, n := range sizes {
			at := base.Add(time.Duration(i+1) * time.Hour)
			if err := tx.Put(padded("Basic", fmt.Sprintf("pb-%d", i), n, at), []search.Entry{tok("code", "urn:pb", "x"),
				date("created", day(2020, time.January, 10-i)), ref("subject", "Patient", fmt.Sprint("pb-big", i%2+1))}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ids := func(rs []*store.Resource) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		sort []search.SortKey
	}{
		{"default order", nil},
		{"by date", []search.SortKey{{Param: "created"}}},
		{"by _lastUpdated descending", []search.SortKey{{Param: "_lastUpdated", Descending: true}}},
	} {
		q := query("Basic", clause("code", search.TypeToken, "", vSys("urn:pb", "x")))
		q.Sort = tc.sort
		all := doSearch(t, s, q)
		if len(all.Matches) != len(sizes) || all.Cut || all.More {
			t.Fatalf("%s: unbounded: %v (cut %v, more %v), want %d matches", tc.name, ids(all.Matches), all.Cut, all.More, len(sizes))
		}
		for _, limit := range []int{2500, 10} {
			var got []string
			q.MaxBytes, q.After = limit, nil
			for pages := 0; ; pages++ {
				if pages > len(sizes) {
					t.Fatalf("%s, %d bytes: more pages than matches (%v)", tc.name, limit, got)
				}
				pg := doSearch(t, s, q)
				size := 0
				for _, r := range pg.Matches {
					size += len(r.Body)
				}
				if len(pg.Matches) == 0 || len(pg.Matches) > 1 && size > limit {
					t.Fatalf("%s, %d bytes: a page of %d matches, %d bytes", tc.name, limit, len(pg.Matches), size)
				}
				got = append(got, ids(pg.Matches)...)
				if pg.Cut && !pg.More {
					t.Errorf("%s, %d bytes: a cut page without More", tc.name, limit)
				}
				if !pg.More {
					break
				}
				q.After = pg.Next
			}
			if want := ids(all.Matches); !slices.Equal(got, want) {
				t.Errorf("%s, %d bytes: paged %v, want %v", tc.name, limit, got, want)
			}
		}
	}

	// Included resources past the bound are refused (the first whatever
	// its size, as a match); within it, there.
	q := query("Basic", clause("code", search.TypeToken, "", vSys("urn:pb", "x")))
	q.Includes = []search.Include{{SourceType: "Basic", Param: "subject"}}
	q.MaxBytes = 2500
	var se *search.Error
	if _, err := s.Search(ctx, q); !errors.As(err, &se) || se.Rule != search.RuleLimitExceeded {
		t.Errorf("includes over the bound: %v, want search-limit-exceeded", err)
	}
	if _, err := s.Include(ctx, q, all(t, s, "Basic", "pb-0", "pb-1")); !errors.As(err, &se) {
		t.Errorf("Include over the bound: %v, want search-limit-exceeded", err)
	}
	if got, err := s.Include(ctx, q, all(t, s, "Basic", "pb-0")); err != nil || len(got) != 1 {
		t.Errorf("Include of one over the bound: %v %v, want it", got, err)
	}
	q.MaxBytes = 6000
	if pg, err := s.Search(ctx, q); err != nil || len(pg.Included) != 2 {
		t.Errorf("includes within the bound: %+v %v, want Patient/pb-big1 and pb-big2", pg, err)
	}

	// A history's page ends early, after the first version whatever its
	// size.
	for _, tc := range []struct {
		limit int
		want  []string
	}{{0, []string{"pb-6", "pb-5", "pb-4", "pb-3", "pb-2", "pb-1", "pb-0"}}, {2500, []string{"pb-6", "pb-5", "pb-4"}},
		{10, []string{"pb-6"}}} {
		vs, total, err := s.History(ctx, store.HistoryQuery{Type: "Basic", Count: 50, MaxBytes: tc.limit})
		if err != nil || total != len(sizes) || !slices.Equal(ids(vs), tc.want) {
			t.Errorf("History(MaxBytes %d) = %v (total %d) %v, want %v of %d", tc.limit, ids(vs), total, err, tc.want, len(sizes))
		}
	}
}
