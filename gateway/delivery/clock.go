package delivery

import (
	"context"
	"time"

	"golang.org/x/time/rate"
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

// limiter paces a destination's requests: a token bucket
// (golang.org/x/time/rate) read on the worker's Clock, so that tests drive
// it with a fake one. A nil *limiter does not limit.
type limiter struct {
	clock  Clock
	bucket *rate.Limiter
}

// newLimiter returns a limiter of perSecond requests per second with bursts
// of burst (at least 1), or nil when perSecond is not positive.
func newLimiter(clock Clock, perSecond float64, burst int) *limiter {
	if perSecond <= 0 {
		return nil
	}
	return &limiter{clock: clock, bucket: rate.NewLimiter(rate.Limit(perSecond), max(burst, 1))}
}

// wait blocks until a request may be sent, or ctx is done (the token is
// then given back).
func (l *limiter) wait(ctx context.Context) error {
	if l == nil {
		return ctx.Err()
	}
	now := l.clock.Now()
	r := l.bucket.ReserveN(now, 1) // always OK: burst >= 1
	if d := r.DelayFrom(now); d > 0 {
		c, stop := l.clock.NewTimer(now.Add(d))
		defer stop()
		select {
		case <-c:
			return nil
		case <-ctx.Done():
		}
	}
	if err := ctx.Err(); err != nil {
		r.CancelAt(l.clock.Now())
		return err
	}
	return nil
}
