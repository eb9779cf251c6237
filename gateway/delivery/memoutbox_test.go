package delivery

import (
	"cmp"
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// memoryOutbox is an in-memory Outbox for the tests and benchmarks (test
// code only: it is not in the gateway's binary). It keeps the outbox
// contract of the stores (see Outbox and outbox_test.go) on
// store.OutboxItem and store.Attempt, and also has their Enqueue and
// Delivery. It is safe for concurrent use; Claim and Complete cost
// O(log n). Unlike the stores, it claims the oldest due items first (by
// NextAttempt, then ID) and keeps the Created it is given.
type memoryOutbox struct {
	mu     sync.Mutex
	nextID int64
	items  map[int64]*memItem
	dests  map[string]*memDest
}

type memItem struct {
	item       store.OutboxItem // Status is its state
	leaseUntil time.Time        // while in flight
	attempts   []store.Attempt  // every recorded attempt, oldest first
	gen        uint64           // bumped on every change; stale heap entries differ
}

// memKey is an order key: items of one tenant and OrderKey.
type memKey struct{ tenant, orderKey string }

// memDest indexes one destination's live (pending or in flight) items.
type memDest struct {
	// keys holds the live item IDs of each order key, ascending: only
	// keys[k][0], the head, can be claimed.
	keys map[memKey][]int64
	// ready holds the heads by the time they become claimable
	// (NextAttempt, or the lease end while in flight).
	ready readyHeap
}

type readyEntry struct {
	at  time.Time
	id  int64
	gen uint64
}

type readyHeap []readyEntry

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	if c := h[i].at.Compare(h[j].at); c != 0 {
		return c < 0
	}
	return h[i].id < h[j].id
}
func (h readyHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *readyHeap) Push(x any)   { *h = append(*h, x.(readyEntry)) }
func (h *readyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// newMemoryOutbox returns an empty memoryOutbox.
func newMemoryOutbox() *memoryOutbox {
	return &memoryOutbox{items: map[int64]*memItem{}, dests: map[string]*memDest{}}
}

var _ Outbox = (*memoryOutbox)(nil)

// Enqueue adds items as pending, like store.OutboxTx.Enqueue: it sets
// their ID and Status, a zero Created to now and a zero NextAttempt to
// Created. The Payloads are shared, not copied.
func (m *memoryOutbox) Enqueue(items ...*store.OutboxItem) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, it := range items {
		m.nextID++
		it.ID, it.Status = m.nextID, store.StatusPending
		if it.Created.IsZero() {
			it.Created = time.Now()
		}
		if it.NextAttempt.IsZero() {
			it.NextAttempt = it.Created
		}
		it.Updated = it.Created
		mi := &memItem{item: *it}
		m.items[it.ID] = mi
		d := m.dest(it.Destination)
		k := memKey{it.Tenant, it.OrderKey}
		d.keys[k] = append(d.keys[k], it.ID)
		if len(d.keys[k]) == 1 {
			d.push(mi.item.NextAttempt, mi)
		}
	}
	return nil
}

func (m *memoryOutbox) dest(name string) *memDest {
	d := m.dests[name]
	if d == nil {
		d = &memDest{keys: map[memKey][]int64{}}
		m.dests[name] = d
	}
	return d
}

func (d *memDest) push(at time.Time, mi *memItem) {
	heap.Push(&d.ready, readyEntry{at: at, id: mi.item.ID, gen: mi.gen})
}

// Claim implements Outbox.
func (m *memoryOutbox) Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]*store.OutboxItem, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if lease <= 0 {
		return nil, fmt.Errorf("memory outbox: claim with lease %v", lease)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dests[destination]
	if d == nil || limit <= 0 {
		return nil, nil
	}
	var out []*store.OutboxItem
	for len(out) < limit && d.ready.Len() > 0 && !d.ready[0].at.After(now) {
		e := heap.Pop(&d.ready).(readyEntry)
		mi := m.items[e.id]
		if mi == nil || mi.gen != e.gen {
			continue // superseded
		}
		if mi.item.Status == store.StatusInFlight { // its lease ended (the heap entry is the lease's end)
			mi.item.LastError, mi.item.NextAttempt = store.LeaseEnded, mi.item.Updated
		}
		mi.item.Status = store.StatusInFlight
		mi.item.Updated = now
		mi.leaseUntil = now.Add(lease)
		mi.gen++
		d.push(mi.leaseUntil, mi)
		it := mi.item
		out = append(out, &it)
	}
	return out, nil
}

// Renew implements Outbox.
func (m *memoryOutbox) Renew(ctx context.Context, ids []int64, until time.Time) ([]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var renewed []int64
	for _, id := range ids {
		mi := m.items[id]
		if mi == nil || mi.item.Status != store.StatusInFlight {
			continue
		}
		mi.leaseUntil = until
		mi.gen++
		m.dest(mi.item.Destination).push(until, mi)
		renewed = append(renewed, id)
	}
	slices.Sort(renewed)
	return renewed, nil
}

// Complete implements Outbox.
func (m *memoryOutbox) Complete(ctx context.Context, a *store.Attempt, status string, nextAttempt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch status {
	case store.StatusPending, store.StatusDone, store.StatusDead:
	default:
		return fmt.Errorf("memory outbox: complete item %d with status %q", a.ItemID, status)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mi := m.items[a.ItemID]
	if mi == nil || mi.item.Status != store.StatusInFlight {
		return store.ErrNotFound
	}
	mi.item.Attempts++
	if a.Probe {
		mi.item.Probes++
	}
	a.N = mi.item.Attempts
	mi.attempts = append(mi.attempts, *a)
	mi.gen++
	mi.item.Status, mi.item.NextAttempt, mi.item.LastError, mi.item.Updated = status, nextAttempt, a.Error, a.At
	mi.leaseUntil = time.Time{}
	d := m.dests[mi.item.Destination]
	if status == store.StatusPending {
		d.push(nextAttempt, mi)
		return nil
	}
	k := memKey{mi.item.Tenant, mi.item.OrderKey}
	q := d.keys[k]
	if len(q) == 0 || q[0] != a.ItemID {
		panic("memory outbox: an in-flight item is not the head of its key")
	}
	q = q[1:]
	if len(q) == 0 {
		delete(d.keys, k)
		return nil
	}
	d.keys[k] = q
	head := m.items[q[0]]
	d.push(head.item.NextAttempt, head)
	return nil
}

// Stats implements Outbox. It scans every item: O(n).
func (m *memoryOutbox) Stats(ctx context.Context) ([]store.DestinationStats, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	byDest := map[string]*store.DestinationStats{}
	for _, mi := range m.items {
		it := &mi.item
		s := byDest[it.Destination]
		if s == nil {
			s = &store.DestinationStats{Destination: it.Destination}
			byDest[it.Destination] = s
		}
		switch it.Status {
		case store.StatusPending, store.StatusInFlight:
			s.Pending++
			if it.Status == store.StatusInFlight {
				s.InFlight++
			}
			if s.OldestPending.IsZero() || it.Created.Before(s.OldestPending) {
				s.OldestPending = it.Created
			}
		case store.StatusDead:
			s.Dead++
		}
	}
	out := make([]store.DestinationStats, 0, len(byDest))
	for _, s := range byDest {
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b store.DestinationStats) int { return cmp.Compare(a.Destination, b.Destination) })
	return out, nil
}

// Delivery returns a copy of item id and its attempts, like
// store.Outbox.Delivery; store.ErrNotFound if absent.
func (m *memoryOutbox) Delivery(ctx context.Context, id int64) (*store.OutboxItem, []*store.Attempt, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mi := m.items[id]
	if mi == nil {
		return nil, nil, store.ErrNotFound
	}
	it := mi.item
	attempts := make([]*store.Attempt, len(mi.attempts))
	for i := range mi.attempts {
		a := mi.attempts[i]
		attempts[i] = &a
	}
	return &it, attempts, nil
}
