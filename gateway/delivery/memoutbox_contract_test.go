package delivery

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)

func ids(items []Item) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func claimIDs(t *testing.T, m *memoryOutbox, dest string, now time.Time, limit int) []int64 {
	t.Helper()
	items, err := m.Claim(context.Background(), dest, now, time.Hour, limit)
	if err != nil {
		t.Fatal(err)
	}
	return ids(items)
}

func complete(t *testing.T, m *memoryOutbox, id int64, s Status, next time.Time) {
	t.Helper()
	if err := m.Complete(context.Background(), id, Attempt{N: 1}, s, next); err != nil {
		t.Fatal(err)
	}
}

func TestMemoryOutboxClaim(t *testing.T) {
	ctx := context.Background()
	m := newMemoryOutbox()
	add := func(dest, key string, due time.Time) int64 {
		return m.Enqueue(Item{Destination: dest, OrderKey: key, NextAttempt: due, Created: t0})
	}
	a1, a2, a3 := add("d", "a", t0), add("d", "a", t0), add("d", "a", t0)
	b1 := add("d", "b", t0)
	c1, c2 := add("d", "c", t0.Add(time.Hour)), add("d", "c", t0) // c2 waits for c1, not yet due
	other := add("e", "a", t0)

	if got := claimIDs(t, m, "d", t0, 10); !slices.Equal(got, []int64{a1, b1}) {
		t.Fatalf("claim %v, want the heads %v", got, []int64{a1, b1})
	}
	if got := claimIDs(t, m, "d", t0, 10); len(got) != 0 {
		t.Fatalf("claim while in flight: %v", got)
	}
	// Retry: a1 keeps blocking a2 until it is done.
	complete(t, m, a1, Pending, t0.Add(time.Minute))
	if got := claimIDs(t, m, "d", t0.Add(30*time.Second), 10); len(got) != 0 {
		t.Fatalf("claim before the retry is due: %v", got)
	}
	if got := claimIDs(t, m, "d", t0.Add(time.Minute), 10); !slices.Equal(got, []int64{a1}) {
		t.Fatalf("claim of the due retry: %v", got)
	}
	// A dead letter does not block its key.
	complete(t, m, a1, Dead, time.Time{})
	if got := claimIDs(t, m, "d", t0.Add(time.Minute), 10); !slices.Equal(got, []int64{a2}) {
		t.Fatalf("claim after a dead letter: %v, want %d", got, a2)
	}
	complete(t, m, a2, Done, time.Time{})
	// Lease expiry: b1's claim (t0, 1 hour) lapses and b1 is claimable
	// again; its first worker's late Complete still applies, once.
	late := t0.Add(61 * time.Minute)
	if got := claimIDs(t, m, "d", late, 2); !slices.Equal(got, []int64{a3, b1}) {
		t.Fatalf("claim after the lease: %v, want [%d %d]", got, a3, b1)
	}
	complete(t, m, b1, Done, time.Time{})
	if err := m.Complete(ctx, b1, Attempt{N: 1}, Done, time.Time{}); !errors.Is(err, ErrNotInFlight) {
		t.Fatalf("second Complete: %v, want ErrNotInFlight", err)
	}
	if err := m.Complete(ctx, 999, Attempt{}, Done, time.Time{}); !errors.Is(err, ErrNotInFlight) {
		t.Fatalf("Complete of an unknown item: %v", err)
	}
	if err := m.Complete(ctx, a3, Attempt{}, InFlight, time.Time{}); err == nil {
		t.Fatal("Complete to InFlight accepted")
	}
	// Limit, and the other destination is separate.
	if got := claimIDs(t, m, "e", t0, 1); !slices.Equal(got, []int64{other}) {
		t.Fatalf("other destination: %v", got)
	}
	if got := claimIDs(t, m, "d", late, 1); !slices.Equal(got, []int64{c1}) {
		t.Fatalf("claim %v, want [%d]", got, c1)
	}
	b, _ := m.Backlog(ctx, "d", late)
	if want := (Backlog{Pending: 1, InFlight: 2, Dead: 1, Due: 1, Oldest: t0}); b != want {
		t.Fatalf("backlog %+v, want %+v", b, want)
	}
	e, _ := m.Get(a1)
	if e.Status != Dead || e.Item.Attempts != 2 || len(e.History) != 2 {
		t.Fatalf("a1: %+v", e)
	}
	_ = c2
}

func TestMemoryOutboxConcurrentClaims(t *testing.T) {
	m := newMemoryOutbox()
	const n = 300
	for i := range n {
		m.Enqueue(Item{Destination: "d", OrderKey: fmt.Sprint(i % 50), NextAttempt: t0})
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for idle := 0; idle < 100; {
				items, err := m.Claim(context.Background(), "d", t0, time.Hour, 3)
				if err != nil {
					t.Error(err)
					return
				}
				if len(items) == 0 {
					idle++
					continue
				}
				for _, it := range items {
					mu.Lock()
					seen[it.ID]++
					mu.Unlock()
					if err := m.Complete(context.Background(), it.ID, Attempt{N: 1}, Done, time.Time{}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	for id := int64(1); id <= n; id++ {
		if seen[id] != 1 {
			t.Fatalf("item %d claimed %d times", id, seen[id])
		}
	}
}

// modelOutbox is the Claim contract written as plainly as possible.
type modelOutbox struct {
	items []*memEntry
}

func (m *modelOutbox) claim(dest string, now time.Time, lease time.Duration, limit int) []int64 {
	readyAt := func(e *memEntry) time.Time {
		if e.Status == InFlight {
			return e.LeaseUntil
		}
		return e.Item.NextAttempt
	}
	var cands []*memEntry
	for _, e := range m.items {
		if e.Item.Destination != dest || (e.Status != Pending && e.Status != InFlight) || readyAt(e).After(now) {
			continue
		}
		blocked := slices.ContainsFunc(m.items, func(o *memEntry) bool {
			return o.Item.Destination == dest && o.Item.OrderKey == e.Item.OrderKey && o.Item.ID < e.Item.ID &&
				(o.Status == Pending || o.Status == InFlight)
		})
		if !blocked {
			cands = append(cands, e)
		}
	}
	slices.SortFunc(cands, func(a, b *memEntry) int {
		if c := readyAt(a).Compare(readyAt(b)); c != 0 {
			return c
		}
		return int(a.Item.ID - b.Item.ID)
	})
	var out []int64
	for _, e := range cands[:min(limit, len(cands))] {
		e.Status, e.LeaseUntil = InFlight, now.Add(lease)
		out = append(out, e.Item.ID)
	}
	return out
}

// TestMemoryOutboxMatchesModel runs random operations on memoryOutbox and
// on the plain model of the contract and compares every Claim.
func TestMemoryOutboxMatchesModel(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		m, model := newMemoryOutbox(), &modelOutbox{}
		now := t0
		for step := range 2000 {
			switch op := r.IntN(10); {
			case op < 3:
				it := Item{Destination: []string{"d", "e"}[r.IntN(2)], OrderKey: fmt.Sprint(r.IntN(6)),
					NextAttempt: now.Add(time.Duration(r.IntN(120)-60) * time.Second)}
				it.ID = m.Enqueue(it)
				model.items = append(model.items, &memEntry{Item: it, Status: Pending})
			case op < 6:
				dest, limit, lease := []string{"d", "e"}[r.IntN(2)], 1+r.IntN(4), time.Duration(1+r.IntN(90))*time.Second
				items, err := m.Claim(context.Background(), dest, now, lease, limit)
				if err != nil {
					t.Fatal(err)
				}
				want := model.claim(dest, now, lease, limit)
				if got := ids(items); !slices.Equal(got, want) {
					t.Fatalf("seed %d step %d: claim %v, model %v", seed, step, got, want)
				}
			case op < 9:
				if len(model.items) == 0 {
					continue
				}
				e := model.items[r.IntN(len(model.items))]
				next := []Status{Pending, Done, Dead}[r.IntN(3)]
				at := now.Add(time.Duration(r.IntN(60)) * time.Second)
				err := m.Complete(context.Background(), e.Item.ID, Attempt{}, next, at)
				if e.Status != InFlight {
					if !errors.Is(err, ErrNotInFlight) {
						t.Fatalf("seed %d step %d: Complete of a %s item: %v", seed, step, e.Status, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				e.Status, e.Item.NextAttempt = next, at
			default:
				now = now.Add(time.Duration(r.IntN(40)) * time.Second)
			}
		}
	}
}
