package delivery

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// fakeClock is a manual Clock: timers fire only when Advance passes them.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers map[*fakeTimer]struct{}
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC), timers: map[*fakeTimer]struct{}{}}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(deadline time.Time) (<-chan time.Time, func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{at: deadline, c: make(chan time.Time, 1)}
	if !deadline.After(c.now) {
		t.c <- c.now
		return t.c, func() {}
	}
	c.timers[t] = struct{}{}
	return t.c, func() {
		c.mu.Lock()
		delete(c.timers, t)
		c.mu.Unlock()
	}
}

// pending returns how many timers wait for the clock.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	for t := range c.timers {
		if !t.at.After(c.now) {
			t.c <- c.now
			delete(c.timers, t)
		}
	}
}

// event is one Complete seen by recOutbox.
type event struct {
	ID     int64
	A      store.Attempt // as the outbox recorded it (N set)
	Status string
	Next   time.Time
	Err    error
}

// recOutbox is a testOutbox that reports every Complete on a channel.
type recOutbox struct {
	testOutbox
	events chan event
}

func (r *recOutbox) Complete(ctx context.Context, a *store.Attempt, status string, next time.Time) error {
	err := r.testOutbox.Complete(ctx, a, status, next)
	r.events <- event{a.ItemID, *a, status, next, err}
	return err
}

// harness runs a Worker against stub EHRs with a fake clock.
type harness struct {
	t      *testing.T
	clock  *fakeClock
	outbox *recOutbox
	w      *Worker
	stop   func()
}

// testOptions are the worker options of the tests: fake clock, Rand 0.5
// (so attempt n waits exactly half its backoff ceiling), no capability
// checks unless asked, a long lease.
func testOptions(clock *fakeClock) WorkerOptions {
	return WorkerOptions{
		Clock:              clock,
		Rand:               func() float64 { return 0.5 },
		PollInterval:       time.Second,
		BackoffBase:        2 * time.Second,
		BackoffMax:         time.Minute,
		MaxAttempts:        4,
		CapabilityInterval: -1,
		// Longer than the clock jumps of a test: a lease that ends while
		// the attempt runs would (correctly) let the item be claimed again.
		Lease: 24 * time.Hour,
	}
}

func testDest(name, base string) Destination {
	return Destination{Name: name, BaseURL: base, Timeout: 5 * time.Second, Concurrency: 4}
}

// newHarness returns a harness on an in-memory outbox.
func newHarness(t *testing.T, dests []Destination, tweak func(*WorkerOptions)) *harness {
	t.Helper()
	return newHarnessOn(t, newMemoryOutbox(), dests, tweak)
}

// newHarnessOn returns a harness on ob (see forEachBackend).
func newHarnessOn(t *testing.T, ob testOutbox, dests []Destination, tweak func(*WorkerOptions)) *harness {
	t.Helper()
	clock := newFakeClock()
	opts := testOptions(clock)
	if tweak != nil {
		tweak(&opts)
	}
	h := &harness{t: t, clock: clock, outbox: &recOutbox{ob, make(chan event, 10000)}}
	w, err := NewWorker(h.outbox, dests, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.w = w
	return h
}

// run starts the worker; it is stopped (and waited for) at cleanup.
func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.w.Run(ctx) }()
	h.stop = func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Error(err)
			}
		case <-time.After(20 * time.Second):
			h.t.Error("worker did not stop")
		}
	}
	h.t.Cleanup(func() {
		if h.stop != nil {
			h.stop()
		}
	})
}

func (h *harness) enqueue(dest, orderKey string, payload []byte) int64 {
	h.t.Helper()
	it := &store.OutboxItem{Destination: dest, OrderKey: orderKey, Patient: "P", Kind: "session", Source: "clinic",
		RecordID: orderKey, Version: "1", Payload: payload, NextAttempt: h.clock.Now(), Created: h.clock.Now()}
	if err := h.outbox.Enqueue(it); err != nil {
		h.t.Fatal(err)
	}
	return it.ID
}

// next waits for the next recorded attempt.
func (h *harness) next() event {
	h.t.Helper()
	select {
	case ev := <-h.outbox.events:
		if ev.Err != nil {
			h.t.Fatalf("complete item %d: %v", ev.ID, ev.Err)
		}
		return ev
	case <-time.After(20 * time.Second):
		h.t.Fatal("no attempt recorded within 20s")
	}
	return event{}
}

// retryUntilFinal advances the clock after each retry until item id is
// done or dead, and returns its attempts in order.
func (h *harness) retryUntilFinal(id int64) []event {
	h.t.Helper()
	var evs []event
	for {
		ev := h.next()
		if ev.ID != id {
			h.t.Fatalf("attempt of item %d, want %d", ev.ID, id)
		}
		evs = append(evs, ev)
		if ev.Status != store.StatusPending {
			return evs
		}
		h.clock.Advance(ev.Next.Sub(h.clock.Now()) + time.Hour)
	}
}

// sendOne enqueues payload for destination "ehr" (order key k1), runs the
// worker and returns the item's id and its attempts until it is done or
// dead (retryUntilFinal).
func (h *harness) sendOne(payload []byte) (int64, []event) {
	h.t.Helper()
	id := h.enqueue("ehr", "k1", payload)
	h.run()
	return id, h.retryUntilFinal(id)
}

// uuidFor is a deterministic urn:uuid for a name.
func uuidFor(name string) string {
	h := sha256.Sum256([]byte(name))
	return fmt.Sprintf("urn:uuid:%x-%x-5%x-8%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}

const sid = "https://ketamine-gateway.org/fhir/sid/test/"

// sessionBundle is a small transaction like the mapping's: a Patient
// (conditional create), a Procedure referencing it (conditional create,
// or conditional update when amended) with status, and an AdverseEvent
// (PUT by id) referencing both.
func sessionBundle(patient, session, status string, amended bool) []byte {
	pat, proc, ae := uuidFor(patient), uuidFor(session), uuidFor(session+"-ae")
	procReq := map[string]any{"method": "POST", "url": "Procedure", "ifNoneExist": "identifier=" + sid + "session|" + session}
	if amended {
		procReq = map[string]any{"method": "PUT", "url": "Procedure?identifier=" + sid + "session|" + session}
	}
	b := map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		map[string]any{"fullUrl": pat,
			"resource": map[string]any{"resourceType": "Patient",
				"identifier": []any{map[string]any{"system": sid + "patient", "value": patient}}},
			"request": map[string]any{"method": "POST", "url": "Patient", "ifNoneExist": "identifier=" + sid + "patient|" + patient}},
		map[string]any{"fullUrl": proc,
			"resource": map[string]any{"resourceType": "Procedure", "status": status,
				"identifier": []any{map[string]any{"system": sid + "session", "value": session}},
				"subject":    map[string]any{"reference": pat}},
			"request": procReq},
		map[string]any{"fullUrl": ae,
			"resource": map[string]any{"resourceType": "AdverseEvent", "actuality": "actual",
				"subject":       map[string]any{"reference": pat},
				"suspectEntity": []any{map[string]any{"instance": map[string]any{"reference": proc}}},
				"identifier":    map[string]any{"system": sid + "ae", "value": session},
				"recordedDate":  "2026-05-10",
				"seriousness":   map[string]any{"text": "non-serious"}},
			"request": map[string]any{"method": "PUT", "url": "AdverseEvent/" + uuidFor(session + "-ae")[9:]}},
	}}
	data, err := json.Marshal(b)
	if err != nil {
		panic(err)
	}
	return data
}
