package storetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testCurrentAfter: CurrentAfter lists the current rows of one type, every
// tenant's, deleted ones too, in the order of their last update and id,
// from a time on, and pages on from the last row of a page without losing
// or repeating a row that shares its millisecond with the cursor.
func testCurrentAfter(t *testing.T, s store.Store) {
	ctx := context.Background()
	base := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	type row struct {
		id     string
		at     time.Duration
		tenant string
	}
	rows := []row{{"p3", 0, ""}, {"p1", time.Second, "clinic-a"}, {"p2", time.Second, "clinic-b"},
		{"p0", time.Second, ""}, {"p4", 2 * time.Second, ""}, {"p5", 3 * time.Second, "clinic-a"}}
	err := s.Write(ctx, func(tx store.Tx) error {
		for _, r := range rows {
			body := fmt.Appendf(nil, `{"resourceType":"Provenance","id":%q}`, r.id)
			if err := tx.Put(&store.Resource{Type: "Provenance", ID: r.id, Version: 1, LastUpdated: base.Add(r.at), Tenant: r.tenant, Body: body}, nil); err != nil {
				return err
			}
		}
		// Not listed: another type at the same times.
		return tx.Put(&store.Resource{Type: "Observation", ID: "p2", Version: 1, LastUpdated: base.Add(time.Second), Body: []byte(`{"resourceType":"Observation","id":"p2"}`)}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	// p4 gets a second version, a deletion, later than p5.
	err = s.Write(ctx, func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Provenance", ID: "p4", Version: 2, LastUpdated: base.Add(4 * time.Second), Deleted: true}, nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	list := func(since time.Time, limit int) []string {
		t.Helper()
		var got []string
		var after *store.Listed
		for range 20 {
			page, err := s.CurrentAfter(ctx, "Provenance", after, since, limit)
			if err != nil {
				t.Fatalf("CurrentAfter: %v", err)
			}
			for _, l := range page {
				got = append(got, fmt.Sprintf("%s v%d +%s", l.ID, l.Version, l.At.Sub(base)))
			}
			if len(page) < limit {
				return got
			}
			after = &page[len(page)-1]
		}
		t.Fatal("CurrentAfter did not reach the end in 20 pages")
		return nil
	}
	want := []string{"p3 v1 +0s", "p0 v1 +1s", "p1 v1 +1s", "p2 v1 +1s",
		"p5 v1 +3s", "p4 v2 +4s"}
	for _, limit := range []int{1, 2, 100} {
		if got := list(time.Time{}, limit); !slices.Equal(got, want) {
			t.Errorf("pages of %d = %q, want %q", limit, got, want)
		}
	}
	if got := list(base.Add(time.Second), 2); !slices.Equal(got, want[1:]) {
		t.Errorf("since +1s = %q, want %q", got, want[1:])
	}
	if got := list(base.Add(5*time.Second), 2); len(got) != 0 {
		t.Errorf("since +5s = %q, want none", got)
	}
}
