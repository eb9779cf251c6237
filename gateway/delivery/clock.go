package delivery

import (
	"context"
	"sync"
	"time"
)

// Clock is the worker's source of time and timers; tests inject a fake.
// HTTP request timeouts use real time regardless.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a channel that receives once the clock has reached
	// deadline (at once if it has) and a function that releases the timer
	// early. A deadline, not a duration, so that a fake clock advanced
	// between a caller's Now and NewTimer still fires.
	NewTimer(deadline time.Time) (<-chan time.Time, func())
}

// realClock is the system clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(deadline time.Time) (<-chan time.Time, func()) {
	t := time.NewTimer(time.Until(deadline))
	return t.C, func() { t.Stop() }
}

// sleep waits for d on clock, or until ctx is done.
func sleep(ctx context.Context, clock Clock, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	c, stop := clock.NewTimer(clock.Now().Add(d))
	defer stop()
	select {
	case <-c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// limiter is a token bucket: rate requests per second, bursts of burst.
// A nil *limiter does not limit.
type limiter struct {
	clock  Clock
	rate   float64
	burst  float64
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func newLimiter(clock Clock, rate float64, burst int) *limiter {
	if rate <= 0 {
		return nil
	}
	return &limiter{clock: clock, rate: rate, burst: float64(burst), tokens: float64(burst), last: clock.Now()}
}

// reserve takes a token and returns how long to wait before using it.
func (l *limiter) reserve() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.clock.Now()
	if el := now.Sub(l.last).Seconds(); el > 0 {
		l.tokens = min(l.burst, l.tokens+el*l.rate)
		l.last = now
	}
	l.tokens--
	if l.tokens >= 0 {
		return 0
	}
	return time.Duration(-l.tokens / l.rate * float64(time.Second))
}

// wait blocks until a request may be sent, or ctx is done (the token is
// then given back).
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return ctx.Err()
	}
	if err := sleep(ctx, l.clock, l.reserve()); err != nil {
		l.mu.Lock()
		l.tokens = min(l.burst, l.tokens+1)
		l.mu.Unlock()
		return err
	}
	return nil
}
