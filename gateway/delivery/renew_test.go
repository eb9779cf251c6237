package delivery

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// renewOutbox is an Outbox whose first Renew reports what end does first:
// the attempts it ends (as one that finished between the worker's snapshot
// of its running attempts and the renewal). Item 2 is not in flight (it
// ended, or its lease ran out); the others are.
type renewOutbox struct {
	Outbox
	end     sync.Once
	ends    func()
	renewed chan int
}

func (o *renewOutbox) Renew(_ context.Context, ids []int64, _ time.Time) ([]int64, error) {
	o.end.Do(o.ends)
	var renewed []int64
	for _, id := range ids {
		if id != 2 {
			renewed = append(renewed, id)
		}
	}
	select {
	case o.renewed <- len(renewed):
	default:
	}
	return renewed, nil
}

// syncBuf is a log buffer safe for the worker's goroutine.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRenewAfterAttemptEnded: an attempt that ends between the snapshot of
// the running attempts and their renewal is not reported as a lease that
// ran out (p18 F6); one still running that was not renewed is.
func TestRenewAfterAttemptEnded(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ends     bool // the unrenewed attempt ended meanwhile
		wantWarn bool
	}{
		{"ended meanwhile", true, false},
		{"still running", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			var logs syncBuf
			d := &destWorker{dest: Destination{Name: "ehr"}, running: map[int64]bool{1: true, 2: true}}
			ob := &renewOutbox{renewed: make(chan int, 1), ends: func() {
				if tc.ends {
					d.mu.Lock()
					delete(d.running, 2)
					d.mu.Unlock()
				}
			}}
			d.w = &Worker{outbox: ob, opts: WorkerOptions{Clock: clock, Lease: 30 * time.Second,
				Logger: slog.New(slog.NewTextHandler(&logs, nil)), DeliveryID: func(id int64) string { return fmt.Sprintf("public-%d", id) }}}
			renewOneTick(d, clock, func() { <-ob.renewed })
			if got := strings.Contains(logs.String(), "lease ran out"); got != tc.wantWarn {
				t.Errorf("warned %v, want %v: %s", got, tc.wantWarn, logs.String())
			}
			// The warning names the delivery whose lease ran out, and
			// only it (p32 F6: it named none).
			if tc.wantWarn && (!strings.Contains(logs.String(), "delivery=public-2") || strings.Contains(logs.String(), "public-1")) {
				t.Errorf("the warning does not name delivery public-2 alone: %s", logs.String())
			}
		})
	}
}

// completingOutbox is an Outbox whose Complete has committed the outcome
// (the item is no longer in flight: Renew leaves it) and waits for
// release before it returns, as a worker's attempt does between the
// commit and its bookkeeping.
type completingOutbox struct {
	Outbox
	committed, release chan struct{}
	renewed            chan struct{}
}

func (o *completingOutbox) Complete(context.Context, *store.Attempt, string, time.Time) error {
	close(o.committed)
	<-o.release
	return nil
}

func (o *completingOutbox) Renew(_ context.Context, ids []int64, _ time.Time) ([]int64, error) {
	defer func() {
		select {
		case o.renewed <- struct{}{}:
		default:
		}
	}()
	var renewed []int64
	for _, id := range ids {
		if id != 2 { // item 2's outcome is committed
			renewed = append(renewed, id)
		}
	}
	return renewed, nil
}

// TestRenewWhileOutcomeCommits: an attempt whose outcome is committed but
// whose Complete has not returned yet is not in flight any more, so the
// renewal leaves it; that is no lease that ran out (p32 F6: 11 such false
// warnings in 33 minutes, every attempt well within its lease).
func TestRenewWhileOutcomeCommits(t *testing.T) {
	clock := newFakeClock()
	var logs syncBuf
	d := &destWorker{dest: Destination{Name: "ehr"}, running: map[int64]bool{1: true, 2: true}}
	ob := &completingOutbox{committed: make(chan struct{}), release: make(chan struct{}), renewed: make(chan struct{}, 1)}
	d.w = &Worker{outbox: ob, opts: WorkerOptions{Clock: clock, Lease: 30 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), DeliveryID: func(id int64) string { return fmt.Sprint(id) }}}
	completed := make(chan error, 1)
	go func() {
		completed <- d.complete(context.Background(), &store.Attempt{ItemID: 2}, store.StatusDone, time.Time{})
	}()
	<-ob.committed
	renewOneTick(d, clock, func() { <-ob.renewed })
	close(ob.release)
	if err := <-completed; err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "lease ran out") {
		t.Errorf("warned of a lease that ran out for an attempt whose outcome was committed: %s", logs.String())
	}
}

// renewOneTick runs d's lease renewal for one tick of clock: it waits for
// the loop to sleep, moves the clock on a renewal interval, waits for the
// renewal (renewed), then for the loop to sleep again (so the warning, if
// any, is written), and stops it.
func renewOneTick(d *destWorker, clock *fakeClock, renewed func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.renewLeases(ctx) }()
	for clock.pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	clock.Advance(10 * time.Second)
	renewed()
	for clock.pending() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}
