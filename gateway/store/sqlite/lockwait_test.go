package sqlite

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestLockWaitFromQueued: while another process holds the write lock, a
// write waits for it its busy timeout counted from when it was queued, not
// from when its turn came: the writes queued behind one waiting for the
// lock wait what is left of theirs, not
// one busy timeout after another (an operator's review: a request refused
// for the lock was answered after 13 to 20 s with a busy timeout of 5 s,
// its write and then its AuditEvent's each queued behind a background
// claim waiting its own). A write queued after the lock was found waits
// nearly the whole timeout, and once the lock is released writes go
// through. The waits each BEGIN was given are asserted, not how long the
// writes took.
func TestLockWaitFromQueued(t *testing.T) {
	const busy = time.Second
	s, path := openTemp(t, Options{BusyTimeout: busy})
	ctx := context.Background()
	var mu sync.Mutex
	var waits []time.Duration
	begun := make(chan struct{}, 1)
	onBeginWait = func(d time.Duration) {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		select {
		case begun <- struct{}{}:
		default:
		}
	}
	defer func() { onBeginWait = nil }()
	given := func() []time.Duration { mu.Lock(); defer mu.Unlock(); return slices.Clone(waits) }
	put := func(id string) error {
		return s.Write(ctx, func(tx store.Tx) error {
			return tx.Put(&store.Resource{Type: "Basic", ID: id, Version: 1, LastUpdated: time.Now(),
				Body: []byte(`{"resourceType":"Basic","id":"` + id + `"}`)}, nil)
		})
	}
	release := holdWriteLock(t, path)
	defer func() {
		if release != nil {
			release()
		}
	}()
	// One write waits for the lock (its BEGIN fails only after the whole
	// busy timeout); two more are queued while it waits, behind it.
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = put("w0") })
	<-begun
	for i := 1; i < 3; i++ {
		wg.Go(func() { errs[i] = put("w" + string(rune('0'+i))) })
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseLocked {
			t.Fatalf("write %d under the lock: %v, want unavailable, locked", i, err)
		}
	}
	w := given()
	if len(w) < 2 || w[0] != busy {
		t.Fatalf("BEGINs were given waits %v, want the first the whole busy timeout (%s), then the queued ones'", w, busy)
	}
	for i, d := range w[1:] {
		// Queued while the first BEGIN waited, up to a busy timeout ago:
		// at most what is left of theirs.
		if d >= busy {
			t.Errorf("BEGIN %d, of writes queued while the first waited, was given %s to wait, want what is left of their busy timeout (%s)", i+1, d, busy)
		}
	}
	// A write queued now waits (nearly) its whole timeout.
	if err := put("late"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a later write under the lock: %v, want unavailable", err)
	}
	if w := given(); w[len(w)-1] < busy/2 {
		t.Errorf("a write queued while the lock was known held was given %s to wait, want about its whole busy timeout (%s)", w[len(w)-1], busy)
	}
	release()
	release = nil
	if err := put("after"); err != nil {
		t.Fatalf("a write after the lock was released: %v", err)
	}
}
