package delivery

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// renewOutbox is an Outbox whose Renew reports what end does first: the
// attempts it ends (as one that finished between the worker's snapshot
// of its running attempts and the renewal: no longer in flight).
type renewOutbox struct {
	Outbox
	end     func()
	renewed chan int
}

func (o *renewOutbox) Renew(_ context.Context, ids []int64, _ time.Time) (int, error) {
	o.end()
	n := len(ids) - 1 // the one that ended is not in flight any more
	o.renewed <- n
	return n, nil
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
			ob := &renewOutbox{renewed: make(chan int, 1), end: func() {
				if tc.ends {
					d.mu.Lock()
					delete(d.running, 2)
					d.mu.Unlock()
				}
			}}
			d.w = &Worker{outbox: ob, opts: WorkerOptions{Clock: clock, Lease: 30 * time.Second,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))}}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); d.renewLeases(ctx) }()
			for clock.pending() == 0 {
				time.Sleep(time.Millisecond)
			}
			clock.Advance(10 * time.Second)
			<-ob.renewed
			for clock.pending() == 0 { // the loop went round: the warning, if any, is written
				time.Sleep(time.Millisecond)
			}
			cancel()
			<-done
			if got := strings.Contains(logs.String(), "lease ran out"); got != tc.wantWarn {
				t.Errorf("warned %v, want %v: %s", got, tc.wantWarn, logs.String())
			}
		})
	}
}
