// Package cpuslots bounds how many requests at once do the CPU-bound work
// that comes before a write: checking and mapping a native record, parsing
// and validating a Bundle. It leaves a core to the store's write lane.
//
// On SQLite every write goes through one lane. At 32 clients the lane was
// runnable and waiting for a core for 9% of its time, and waiting for the
// goroutines that render its transaction's resources for 12%. Those
// goroutines were queued behind up to 32 requests mapping their records,
// on a 2-core machine (issue 19, an execution trace of the gateway). With
// at most GOMAXPROCS-1 requests in that work, session records at 32
// clients went from 86-95 to 94-99 a second, in 4 of 4 interleaved pairs.
//
// A request waits for its slot in arrival order (a Go channel's senders
// queue first in, first out). No request waits for I/O while it holds a
// slot: what runs in one is pure CPU, so a slot is held for milliseconds,
// or for a large Bundle's parse.
package cpuslots

import (
	"context"
	"runtime"
	"sync"
)

var (
	once  sync.Once
	slots chan struct{}
)

// N is how many requests may do their CPU work at once: GOMAXPROCS less
// one, at least one.
func N() int {
	return max(1, runtime.GOMAXPROCS(0)-1)
}

// Run calls fn once a slot is free, and returns its error, or ctx's error
// when ctx ends before a slot is free (fn is then not called).
func Run(ctx context.Context, fn func() error) error {
	once.Do(func() { slots = make(chan struct{}, N()) })
	select {
	case slots <- struct{}{}:
	default:
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	defer func() { <-slots }()
	return fn()
}
