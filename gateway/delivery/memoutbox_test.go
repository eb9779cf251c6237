package delivery

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// memoryOutbox is an in-memory Outbox for the tests and benchmarks (test
// code only: it is not in the gateway's binary). It keeps the reference
// semantics of Claim and Complete and is safe for concurrent use. Claim
// and Complete cost O(log n).
type memoryOutbox struct {
	mu     sync.Mutex
	nextID int64
	items  map[int64]*memItem
	dests  map[string]*memDest
}

// memEntry is a snapshot of one memoryOutbox item.
type memEntry struct {
	Item       Item
	Status     Status
	LeaseUntil time.Time // while InFlight
	History    []Attempt // every recorded attempt, oldest first
}

type memItem struct {
	item       Item
	status     Status
	leaseUntil time.Time
	history    []Attempt
	gen        uint64 // bumped on every change; stale heap entries differ
}

// memDest indexes one destination's live (Pending or InFlight) items.
type memDest struct {
	// keys holds the live item IDs of each OrderKey, ascending: only
	// keys[k][0], the head, can be claimed.
	keys map[string][]int64
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
	if !h[i].at.Equal(h[j].at) {
		return h[i].at.Before(h[j].at)
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

// Enqueue adds it as a Pending item and returns its new ID (it.ID is
// ignored; Attempts is kept). A zero NextAttempt makes it due at once. The
// Payload is shared, not copied: do not modify it afterwards.
func (m *memoryOutbox) Enqueue(it Item) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextID++
	it.ID = m.nextID
	mi := &memItem{item: it, status: Pending}
	m.items[it.ID] = mi
	d := m.dest(it.Destination)
	d.keys[it.OrderKey] = append(d.keys[it.OrderKey], it.ID)
	if len(d.keys[it.OrderKey]) == 1 {
		d.push(mi.item.NextAttempt, mi)
	}
	return it.ID
}

func (m *memoryOutbox) dest(name string) *memDest {
	d := m.dests[name]
	if d == nil {
		d = &memDest{keys: map[string][]int64{}}
		m.dests[name] = d
	}
	return d
}

func (d *memDest) push(at time.Time, mi *memItem) {
	heap.Push(&d.ready, readyEntry{at: at, id: mi.item.ID, gen: mi.gen})
}

// Claim implements Outbox.
func (m *memoryOutbox) Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if lease <= 0 {
		return nil, fmt.Errorf("delivery: claim with lease %v", lease)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d := m.dests[destination]
	if d == nil || limit <= 0 {
		return nil, nil
	}
	var out []Item
	for len(out) < limit && d.ready.Len() > 0 && !d.ready[0].at.After(now) {
		e := heap.Pop(&d.ready).(readyEntry)
		mi := m.items[e.id]
		if mi == nil || mi.gen != e.gen {
			continue // superseded
		}
		mi.status = InFlight
		mi.leaseUntil = now.Add(lease)
		mi.gen++
		d.push(mi.leaseUntil, mi)
		out = append(out, mi.item)
	}
	return out, nil
}

// Complete implements Outbox.
func (m *memoryOutbox) Complete(ctx context.Context, id int64, a Attempt, next Status, nextAttempt time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	switch next {
	case Pending, Done, Dead:
	default:
		return fmt.Errorf("delivery: complete item %d with status %q", id, next)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	mi := m.items[id]
	if mi == nil || mi.status != InFlight {
		return fmt.Errorf("item %d: %w", id, ErrNotInFlight)
	}
	mi.history = append(mi.history, a)
	mi.item.Attempts++
	mi.gen++
	mi.status = next
	mi.leaseUntil = time.Time{}
	d := m.dests[mi.item.Destination]
	if next == Pending {
		mi.item.NextAttempt = nextAttempt
		d.push(nextAttempt, mi)
		return nil
	}
	q := d.keys[mi.item.OrderKey]
	if len(q) == 0 || q[0] != id {
		panic("delivery: memoryOutbox: an in-flight item is not the head of its key")
	}
	q = q[1:]
	if len(q) == 0 {
		delete(d.keys, mi.item.OrderKey)
		return nil
	}
	d.keys[mi.item.OrderKey] = q
	head := m.items[q[0]]
	d.push(head.item.NextAttempt, head)
	return nil
}

// Backlog implements Backlogger. It scans every item: O(n).
func (m *memoryOutbox) Backlog(ctx context.Context, destination string, now time.Time) (Backlog, error) {
	if err := ctx.Err(); err != nil {
		return Backlog{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var b Backlog
	for _, mi := range m.items {
		if mi.item.Destination != destination {
			continue
		}
		switch mi.status {
		case Pending:
			b.Pending++
			if !mi.item.NextAttempt.After(now) {
				b.Due++
			}
		case InFlight:
			b.InFlight++
		case Dead:
			b.Dead++
		default:
			continue
		}
		if mi.status != Dead && (b.Oldest.IsZero() || mi.item.Created.Before(b.Oldest)) {
			b.Oldest = mi.item.Created
		}
	}
	return b, nil
}

// Get returns a snapshot of item id.
func (m *memoryOutbox) Get(id int64) (memEntry, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mi := m.items[id]
	if mi == nil {
		return memEntry{}, false
	}
	return memEntry{Item: mi.item, Status: mi.status, LeaseUntil: mi.leaseUntil, History: slices.Clone(mi.history)}, true
}

// Count returns how many items of destination ("" for all) have status s.
func (m *memoryOutbox) Count(destination string, s Status) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, mi := range m.items {
		if mi.status == s && (destination == "" || mi.item.Destination == destination) {
			n++
		}
	}
	return n
}
