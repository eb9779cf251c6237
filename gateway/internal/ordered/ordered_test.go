package ordered

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// count yields 0..n-1.
func count(n int) func(yield func(int) bool) error {
	return func(yield func(int) bool) error {
		for i := range n {
			if !yield(i) {
				return nil
			}
		}
		return nil
	}
}

// slow squares after a random pause, so results come back out of order.
func slow(_ context.Context, i int) int {
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	return i * i
}

func TestInOrder(t *testing.T) {
	var got []int
	err := Run(context.Background(), 4, count(500), slow, func(r int) error { got = append(got, r); return nil })
	if err != nil || len(got) != 500 {
		t.Fatalf("Run = %v, %d results", err, len(got))
	}
	for i, r := range got {
		if r != i*i {
			t.Fatalf("result %d = %d, want %d", i, r, i*i)
		}
	}
}

func TestStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := Run(context.Background(), 3, count(1000), slow, func(int) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("emit error: Run = %v after %d", err, n)
	}
	bad := errors.New("read")
	err = Run(context.Background(), 2, func(yield func(int) bool) error {
		yield(1)
		return bad
	}, slow, func(int) error { return nil })
	if !errors.Is(err, bad) {
		t.Errorf("produce error: Run = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, 2, count(1000), slow, func(int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: Run = %v", err)
	}
}

// TestRunUntilStops closes stop from emit after k results: every worked
// item is emitted, in order, so the emitted results are exactly the worked
// prefix, and the items worked are at most those produced before the stop
// (k-1 emitted and released, 3 × workers in the window). A worker that
// took an item just before the stop may enter work just after it: at most
// one such item per worker (TestRunUntilSkipsQueued checks, without a
// race, that queued items are never worked).
func TestRunUntilStops(t *testing.T) {
	for _, workers := range []int{1, 3, 8} {
		for _, k := range []int{1, 10, 77} {
			stop := make(chan struct{})
			var mu sync.Mutex
			var worked, afterStop int
			work := func(ctx context.Context, i int) int {
				mu.Lock()
				worked++
				select {
				case <-stop:
					afterStop++
				default:
				}
				mu.Unlock()
				return slow(ctx, i)
			}
			var got []int
			err := RunUntil(context.Background(), stop, workers, count(1000), work, func(r int) error {
				if got = append(got, r); len(got) == k {
					close(stop)
				}
				return nil
			})
			if !errors.Is(err, ErrStopped) {
				t.Errorf("workers %d, stop after %d: RunUntil = %v, want ErrStopped", workers, k, err)
			}
			if len(got) != worked {
				t.Errorf("workers %d, stop after %d: %d worked, %d emitted, want every worked item emitted", workers, k, worked, len(got))
			}
			for i, r := range got {
				if r != i*i {
					t.Fatalf("workers %d: result %d = %d, want %d", workers, i, r, i*i)
				}
			}
			if afterStop > workers || worked > k-1+3*workers {
				t.Errorf("workers %d, stop after %d: %d worked (%d entered work after the stop), want at most %d (the items in flight), at most %d after the stop (one per worker)",
					workers, k, worked, afterStop, k-1+3*workers, workers)
			}
		}
	}
	// A stop that closes once everything was worked is no stop.
	stop := make(chan struct{})
	n := 0
	err := RunUntil(context.Background(), stop, 2, count(5), slow, func(int) error {
		if n++; n == 5 {
			close(stop)
		}
		return nil
	})
	if err != nil || n != 5 {
		t.Errorf("stop after the last item: RunUntil = %v after %d", err, n)
	}
}

// TestRunUntilSkipsQueued stops a run while every worker is busy and
// items wait in the queue: the busy items finish and are emitted, the
// queued ones are never worked. The producer itself closes stop once it
// knows that state, so the outcome does not depend on scheduling.
func TestRunUntilSkipsQueued(t *testing.T) {
	for _, workers := range []int{1, 2, 8} {
		stop := make(chan struct{})
		entered := make(chan int, workers)
		release := make(chan struct{})
		var mu sync.Mutex
		var worked []int
		work := func(_ context.Context, i int) int {
			mu.Lock()
			worked = append(worked, i)
			mu.Unlock()
			if i < workers {
				entered <- i
				<-release
			}
			return i
		}
		produce := func(yield func(int) bool) error {
			// Items 0..workers-1 occupy every worker; items
			// workers..2*workers-1 fill the queue (yield returns once an
			// item is queued).
			for i := range 2 * workers {
				if !yield(i) {
					return errors.New("yield refused before the stop")
				}
			}
			for range workers {
				<-entered
			}
			close(stop)
			close(release)
			for i := 2 * workers; i < 1000; i++ {
				if !yield(i) {
					return nil
				}
			}
			return nil
		}
		var got []int
		err := RunUntil(context.Background(), stop, workers, produce, work, func(r int) error { got = append(got, r); return nil })
		if !errors.Is(err, ErrStopped) {
			t.Errorf("workers %d: RunUntil = %v, want ErrStopped", workers, err)
		}
		if len(worked) != workers || len(got) != workers {
			t.Errorf("workers %d: worked %v, emitted %v, want the %d items being worked when stop closed, not the queued ones", workers, worked, got, workers)
		}
		for i, r := range got {
			if r != i {
				t.Errorf("workers %d: result %d = %d, want %d", workers, i, r, i)
			}
		}
	}
}

// TestRunUntilReadsNoFurther: once stop closes the producer is told to
// stop at its next item, so a stopped run does not read the rest of its
// input.
func TestRunUntilReadsNoFurther(t *testing.T) {
	stop := make(chan struct{})
	produced := 0
	err := RunUntil(context.Background(), stop, 2, func(yield func(int) bool) error {
		for i := range 100000 {
			produced++
			if !yield(i) {
				return nil
			}
		}
		return nil
	}, slow, func(r int) error {
		if r == 0 {
			close(stop)
		}
		return nil
	})
	if !errors.Is(err, ErrStopped) || produced > 20 {
		t.Errorf("RunUntil = %v after producing %d items, want ErrStopped after a few", err, produced)
	}
}

// TestWindowBounded: while the first item is slow, the workers go on with
// the ones after it, but never more than 3 × workers items are produced
// and not yet emitted (results were held in memory without bound, and a
// stopped import worked more records than it had in flight).
func TestWindowBounded(t *testing.T) {
	for _, workers := range []int{1, 2, 8} {
		var mu sync.Mutex
		worked, emitted, most := 0, 0, 0
		work := func(_ context.Context, i int) int {
			if i%100 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
			mu.Lock()
			worked++
			most = max(most, worked-emitted)
			mu.Unlock()
			return i
		}
		err := Run(context.Background(), workers, count(400), work, func(int) error {
			mu.Lock()
			emitted++
			mu.Unlock()
			return nil
		})
		if err != nil || emitted != 400 {
			t.Fatalf("workers %d: Run = %v after %d", workers, err, emitted)
		}
		if most > 3*workers {
			t.Errorf("workers %d: %d items worked and not emitted at once, want at most %d", workers, most, 3*workers)
		}
	}
}
