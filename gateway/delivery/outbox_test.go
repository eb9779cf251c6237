package delivery

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// testOutbox is what the tests need of an outbox: the worker's methods,
// and Enqueue and Delivery as the stores have them.
type testOutbox interface {
	Outbox
	Enqueue(items ...*store.OutboxItem) error
	Delivery(ctx context.Context, id int64) (*store.OutboxItem, []*store.Attempt, error)
}

// storeOutbox is a real store as a testOutbox.
type storeOutbox struct{ store.Store }

func (s storeOutbox) Enqueue(items ...*store.OutboxItem) error {
	return s.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(items...) })
}

// backends are the outboxes the worker and contract tests run on: the
// in-memory one, the SQLite store in a temporary directory, and the
// PostgreSQL store in a fresh schema of GATEWAY_TEST_POSTGRES_URL (skipped
// when it is not set).
var backends = []struct {
	name string
	open func(t *testing.T) testOutbox
}{
	{"memory", func(*testing.T) testOutbox { return newMemoryOutbox() }},
	{"sqlite", openSQLite},
	{"postgres", openPostgres},
}

// forEachBackend runs f as a subtest on a new outbox of every backend.
func forEachBackend(t *testing.T, f func(t *testing.T, ob testOutbox)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { f(t, b.open(t)) })
	}
}

func openSQLite(t *testing.T) testOutbox {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "gw.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return storeOutbox{st}
}

func openPostgres(t *testing.T) testOutbox {
	t.Helper()
	ctx := context.Background()
	dsn, _ := pgtest.Schema(t, "kgd", "the delivery tests")
	st, err := postgres.Open(ctx, dsn, postgres.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return storeOutbox{st}
}

var t0 = time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)

func ids(items []*store.OutboxItem) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

func TestOutboxClaim(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ctx := context.Background()
		add := func(dest, key string, due time.Time) int64 {
			it := &store.OutboxItem{Destination: dest, OrderKey: key, Kind: "session", Source: "clinic", RecordID: key,
				Version: "1", Payload: []byte("{}"), NextAttempt: due, Created: t0}
			if err := ob.Enqueue(it); err != nil {
				t.Fatal(err)
			}
			return it.ID
		}
		claim := func(dest string, now time.Time, limit int) []int64 {
			t.Helper()
			items, err := ob.Claim(ctx, dest, now, time.Hour, limit)
			if err != nil {
				t.Fatal(err)
			}
			return ids(items)
		}
		complete := func(id int64, status string, next time.Time) {
			t.Helper()
			if err := ob.Complete(ctx, &store.Attempt{ItemID: id}, status, next); err != nil {
				t.Fatal(err)
			}
		}
		a1, a2, a3 := add("d", "a", t0), add("d", "a", t0), add("d", "a", t0)
		b1 := add("d", "b", t0)
		c1, c2 := add("d", "c", t0.Add(time.Hour)), add("d", "c", t0) // c2 waits for c1, not yet due
		other := add("e", "a", t0)

		if got := claim("d", t0, 10); !slices.Equal(got, []int64{a1, b1}) {
			t.Fatalf("claim %v, want the heads %v", got, []int64{a1, b1})
		}
		if got := claim("d", t0, 10); len(got) != 0 {
			t.Fatalf("claim while in flight: %v", got)
		}
		// Retry: a1 keeps blocking a2 until it is done.
		complete(a1, store.StatusPending, t0.Add(time.Minute))
		if got := claim("d", t0.Add(30*time.Second), 10); len(got) != 0 {
			t.Fatalf("claim before the retry is due: %v", got)
		}
		if got := claim("d", t0.Add(time.Minute), 10); !slices.Equal(got, []int64{a1}) {
			t.Fatalf("claim of the due retry: %v", got)
		}
		// A dead letter does not block its key.
		complete(a1, store.StatusDead, time.Time{})
		if got := claim("d", t0.Add(time.Minute), 10); !slices.Equal(got, []int64{a2}) {
			t.Fatalf("claim after a dead letter: %v, want %d", got, a2)
		}
		complete(a2, store.StatusDone, time.Time{})
		// Lease expiry: b1's claim (t0, 1 hour) lapses and b1 is claimable
		// again; its first worker's late Complete would be refused or
		// applied, and a second one is refused.
		late := t0.Add(61 * time.Minute)
		if got := claim("d", late, 2); !slices.Equal(got, []int64{a3, b1}) {
			t.Fatalf("claim after the lease: %v, want [%d %d]", got, a3, b1)
		}
		complete(b1, store.StatusDone, time.Time{})
		if err := ob.Complete(ctx, &store.Attempt{ItemID: b1}, store.StatusDone, time.Time{}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("second Complete: %v, want ErrNotFound", err)
		}
		if err := ob.Complete(ctx, &store.Attempt{ItemID: 999}, store.StatusDone, time.Time{}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Complete of an unknown item: %v", err)
		}
		if err := ob.Complete(ctx, &store.Attempt{ItemID: a3}, store.StatusInFlight, time.Time{}); err == nil {
			t.Fatal("Complete to in flight accepted")
		}
		// Limit, and the other destination is separate.
		if got := claim("e", t0, 1); !slices.Equal(got, []int64{other}) {
			t.Fatalf("other destination: %v", got)
		}
		if got := claim("d", late, 1); !slices.Equal(got, []int64{c1}) {
			t.Fatalf("claim %v, want [%d] (%d waits for it)", got, c1, c2)
		}
		stats, err := ob.Stats(ctx)
		if err != nil || len(stats) != 2 || stats[0].Destination != "d" || stats[0].Pending != 3 || stats[0].Dead != 1 ||
			stats[0].OldestPending.IsZero() {
			t.Fatalf("Stats() = %+v, %v; want d with 3 pending or in flight (a3, c1, c2) and 1 dead", stats, err)
		}
		it, attempts, err := ob.Delivery(ctx, a1)
		if err != nil || it.Status != store.StatusDead || it.Attempts != 2 || len(attempts) != 2 || attempts[1].N != 2 {
			t.Fatalf("Delivery(a1) = %+v, %d attempts, %v", it, len(attempts), err)
		}
	})
}

func TestOutboxConcurrentClaims(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		n := 300
		if _, mem := ob.(*memoryOutbox); !mem {
			n = 60 // a database transaction per claim and completion
		}
		var items []*store.OutboxItem
		for i := range n {
			items = append(items, &store.OutboxItem{Destination: "d", OrderKey: fmt.Sprint(i % 20), Payload: []byte("{}"), NextAttempt: t0})
		}
		if err := ob.Enqueue(items...); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		seen := map[int64]int{}
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for idle := 0; idle < 20; {
					claimed, err := ob.Claim(context.Background(), "d", t0, time.Hour, 3)
					if err != nil {
						t.Error(err)
						return
					}
					if len(claimed) == 0 {
						idle++
						continue
					}
					for _, it := range claimed {
						mu.Lock()
						seen[it.ID]++
						mu.Unlock()
						if err := ob.Complete(context.Background(), &store.Attempt{ItemID: it.ID}, store.StatusDone, time.Time{}); err != nil {
							t.Error(err)
						}
					}
				}
			})
		}
		wg.Wait()
		for _, it := range items {
			if seen[it.ID] != 1 {
				t.Fatalf("item %d claimed %d times", it.ID, seen[it.ID])
			}
		}
	})
}

// modelItem is the state of one item in modelOutbox.
type modelItem struct {
	it         store.OutboxItem
	status     string
	leaseUntil time.Time
}

// modelOutbox is the Claim contract written as plainly as possible.
type modelOutbox struct {
	items []*modelItem
}

func (m *modelOutbox) find(id int64) *modelItem {
	for _, e := range m.items {
		if e.it.ID == id {
			return e
		}
	}
	return nil
}

// claimable returns the IDs Claim may return at now: the items of dest
// that are due and the earliest live item of their order key.
func (m *modelOutbox) claimable(dest string, now time.Time) []int64 {
	type key struct{ tenant, orderKey string }
	head := map[key]int64{}
	for _, e := range m.items {
		if e.it.Destination != dest || (e.status != store.StatusPending && e.status != store.StatusInFlight) {
			continue
		}
		if k := (key{e.it.Tenant, e.it.OrderKey}); head[k] == 0 || e.it.ID < head[k] {
			head[k] = e.it.ID
		}
	}
	var out []int64
	for _, e := range m.items {
		due := (e.status == store.StatusPending && !e.it.NextAttempt.After(now)) ||
			(e.status == store.StatusInFlight && !e.leaseUntil.After(now))
		if e.it.Destination == dest && due && head[key{e.it.Tenant, e.it.OrderKey}] == e.it.ID {
			out = append(out, e.it.ID)
		}
	}
	return out
}

// TestOutboxMatchesModel runs random operations on each backend and on the
// plain model of the contract: every Claim must return as many claimable
// items as the limit allows and nothing else (in any order); every
// Complete of an item in flight must apply and one of an item not in
// flight be refused (one whose lease has ended may be either).
func TestOutboxMatchesModel(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ctx := context.Background()
		seeds, steps := uint64(20), 2000
		if _, mem := ob.(*memoryOutbox); !mem {
			seeds, steps = 2, 300 // a database transaction per step
		}
		for seed := range seeds {
			r := mrand.New(mrand.NewPCG(seed, 7))
			model := &modelOutbox{}
			dests := []string{fmt.Sprintf("d%d", seed), fmt.Sprintf("e%d", seed)} // each seed on its own
			now := t0
			for step := range steps {
				switch op := r.IntN(10); {
				case op < 3:
					it := &store.OutboxItem{Destination: dests[r.IntN(2)], Tenant: []string{"", "clinic-b"}[r.IntN(2)],
						OrderKey: fmt.Sprint(r.IntN(4)), Payload: []byte("{}"),
						NextAttempt: now.Add(time.Duration(r.IntN(120)-60) * time.Second)}
					if err := ob.Enqueue(it); err != nil {
						t.Fatal(err)
					}
					model.items = append(model.items, &modelItem{it: *it, status: store.StatusPending})
				case op < 6:
					dest, limit, lease := dests[r.IntN(2)], 1+r.IntN(4), time.Duration(1+r.IntN(90))*time.Second
					want := model.claimable(dest, now)
					items, err := ob.Claim(ctx, dest, now, lease, limit)
					if err != nil {
						t.Fatal(err)
					}
					got := ids(items)
					if len(got) != min(limit, len(want)) || len(slices.Compact(slices.Sorted(slices.Values(got)))) != len(got) ||
						slices.ContainsFunc(got, func(id int64) bool { return !slices.Contains(want, id) }) {
						t.Fatalf("seed %d step %d: Claim(limit %d) = %v, want %d of the claimable %v", seed, step, limit, got, min(limit, len(want)), want)
					}
					for _, id := range got {
						e := model.find(id)
						e.status, e.leaseUntil = store.StatusInFlight, now.Add(lease)
					}
				case op < 9:
					if len(model.items) == 0 {
						continue
					}
					e := model.items[r.IntN(len(model.items))]
					next := []string{store.StatusPending, store.StatusDone, store.StatusDead}[r.IntN(3)]
					at := now.Add(time.Duration(r.IntN(60)) * time.Second)
					err := ob.Complete(ctx, &store.Attempt{ItemID: e.it.ID, At: now}, next, at)
					switch {
					case e.status != store.StatusInFlight:
						if !errors.Is(err, store.ErrNotFound) {
							t.Fatalf("seed %d step %d: Complete of a %s item: %v, want ErrNotFound", seed, step, e.status, err)
						}
					case errors.Is(err, store.ErrNotFound) && !e.leaseUntil.After(now):
						e.status = store.StatusPending // the lease was taken back: due again
					case err != nil:
						t.Fatalf("seed %d step %d: Complete of an item in flight: %v", seed, step, err)
					default:
						e.status, e.it.NextAttempt = next, at
					}
				default:
					now = now.Add(time.Duration(r.IntN(40)) * time.Second)
				}
			}
		}
	})
}
