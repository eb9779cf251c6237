package sqlite

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestLockWaitFromQueued: while another process holds the write lock, a
// write waits for it its busy timeout counted from when it was queued, not
// from when its turn came: the writes queued behind one waiting for the
// lock fail about when it does, not one busy timeout after another (an
// operator's review: a request refused for the lock was answered after
// 13 to 20 s with a busy timeout of 5 s, its write and then its
// AuditEvent's each queued behind a background claim waiting its own).
// A write queued after the lock was found waits the whole timeout, and
// once the lock is released writes go through.
func TestLockWaitFromQueued(t *testing.T) {
	const busy = time.Second
	s, path := openTemp(t, Options{BusyTimeout: busy})
	ctx := context.Background()
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
	// Three writes queued at once: one waits for the lock, the other two
	// behind it.
	start := time.Now()
	took := make([]time.Duration, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			errs[i] = put("w" + string(rune('0'+i)))
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseLocked {
			t.Fatalf("write %d under the lock: %v, want unavailable, locked", i, err)
		}
	}
	for i, d := range took {
		// Each waits about busy from when it was queued: all about 1 s
		// (before, 1, 2 and 3 s).
		if d > busy*18/10 {
			t.Errorf("write %d was refused after %s, want about the busy timeout (%s) after it was queued", i, d, busy)
		}
	}
	// A write queued now waits the whole timeout.
	begun := time.Now()
	if err := put("late"); !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("a later write under the lock: %v, want unavailable", err)
	}
	if d := time.Since(begun); d < busy*8/10 {
		t.Errorf("a write queued while the lock was known held waited %s, want its whole busy timeout (%s)", d, busy)
	}
	release()
	release = nil
	if err := put("after"); err != nil {
		t.Fatalf("a write after the lock was released: %v", err)
	}
}
