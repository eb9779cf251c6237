package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The circuit breaker around the pool's connections.
//
// A database host that vanishes without a TCP reset (a pulled cable, a
// failover to another address, a firewall or security group change) does
// not refuse connections: each attempt waits for its connect timeout, and
// the pool, asked again by every request, keeps trying. The breaker counts
// the failures of getting a connection (a connection attempt failing or
// timing out, a pooled connection failing its liveness ping); after
// breakerThreshold in a row it opens: every call then fails at once with
// store.ErrUnavailable, cause store.CauseCircuitOpen (503 store-unavailable
// with Retry-After at the edge; /readyz "circuit-open"), and the pool's
// connections are dropped. While it is open, one probe connection at a
// time (a goroutine of the store's) tries to connect, every breakerRetry;
// when one succeeds the breaker closes and the pool connects afresh. Both
// transitions are logged at WARN, with the cause of the failures (a fixed
// word, store.Cause*) and never the URL, its user or password.

// Bounds of the circuit breaker.
const (
	breakerThreshold = 3               // failed connection attempts in a row that open it
	breakerRetry     = 1 * time.Second // between probe connections while it is open
)

// breaker is a Store's circuit breaker; its zero value is not usable (see
// newBreaker).
type breaker struct {
	probe func(ctx context.Context) error // one connection attempt, bounded by the connect timeout
	reset func()                          // drops the pool's connections
	log   *slog.Logger
	now   func() time.Time

	ctx  context.Context // ends the probe (Close)
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu       sync.Mutex
	failures int       // failed attempts in a row
	open     bool      // refusing calls
	since    time.Time // opened at
	cause    string    // of the last failure (store.Cause*)
}

func newBreaker(probe func(ctx context.Context) error, reset func(), log *slog.Logger, now func() time.Time) *breaker {
	b := &breaker{probe: probe, reset: reset, log: log, now: now}
	b.ctx, b.stop = context.WithCancel(context.Background())
	return b
}

// errOpen is the error of a call the open breaker refused.
type errOpen struct {
	since    time.Time
	cause    string
	failures int
}

func (e *errOpen) Error() string {
	return fmt.Sprintf("circuit breaker open since %s after %d failed connection attempts (%s); a probe connection is retried every %v",
		e.since.UTC().Format(time.RFC3339), e.failures, e.cause, breakerRetry)
}

// check refuses a call while the breaker is open.
func (b *breaker) check() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		return nil
	}
	return store.Unavailable(store.CauseCircuitOpen, &errOpen{since: b.since, cause: b.cause, failures: b.failures})
}

// succeeded records a connection got: the failures in a row start again.
func (b *breaker) succeeded() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open {
		b.failures = 0
	}
}

// failed records a connection that could not be got, for cause (a
// store.Cause*); the breakerThreshold-th in a row opens the breaker.
func (b *breaker) failed(cause string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.cause = cause
	if b.open || b.failures < breakerThreshold || b.ctx.Err() != nil {
		return
	}
	b.open, b.since = true, b.now()
	b.log.Warn("database circuit breaker open", "cause", cause, "failed_attempts", b.failures,
		"retry_every", breakerRetry.String())
	b.reset() // the pooled connections are likely dead too
	b.wg.Add(1)
	go b.run()
}

// run probes, one connection at a time, until one succeeds (the breaker
// closes) or the store closes.
func (b *breaker) run() {
	defer b.wg.Done()
	t := time.NewTimer(breakerRetry)
	defer t.Stop()
	for probes := 1; ; probes++ {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		err := b.probe(b.ctx)
		if b.ctx.Err() != nil {
			return
		}
		if err != nil {
			if cause := store.UnavailableCause(mapErr(b.ctx, err)); cause != "" {
				b.mu.Lock()
				b.cause = cause
				b.mu.Unlock()
			}
			t.Reset(breakerRetry)
			continue
		}
		b.reset() // connections opened before: none is to be trusted
		b.mu.Lock()
		b.open, b.failures = false, 0
		openFor := b.now().Sub(b.since)
		b.mu.Unlock()
		b.log.Warn("database circuit breaker closed", "open_for", openFor.Round(time.Millisecond).String(), "probes", probes)
		return
	}
}

// close stops the probe and waits for it.
func (b *breaker) close() {
	b.stop()
	b.wg.Wait()
}
