// Package cpuslots bounds how many requests at once do the CPU-bound work
// that comes before a write: checking and mapping a native record, parsing
// and validating a Bundle. It leaves a core to the store's write lane.
//
// On SQLite every write goes through one lane. At 32 clients the lane was
// runnable and waiting for a core for 9% of its time, and waiting for the
// goroutines that render its transaction's resources for 12%. Those
// goroutines were queued behind up to 32 requests mapping their records,
// on a 2-core machine (issue 19, an execution trace of the gateway). With
// at most GOMAXPROCS-1 requests in that work, the lane waited for a core
// 3% of its time, and session records at 32 clients were faster in 10 of
// 12 interleaved pairs (the median ratio 1.05, docs/BENCHMARKS.md).
//
// A request waits for its slot in arrival order (a Go channel's senders
// queue first in, first out). No request waits for I/O while it holds a
// slot: what runs in one is pure CPU. A body larger than MaxHeld takes no
// slot: its work runs beside the others' as before, so that a slot is held
// for milliseconds, and small requests never queue behind a large one's
// parse (which a client could otherwise repeat to hold back every other
// client's writes).
package cpuslots

import (
	"context"
	"runtime"
	"sync"
)

// MaxHeld is the largest body, in bytes, whose work takes a slot. A
// session record is some 5 KB; a Bundle of 64 KB takes some 5 ms to parse
// and validate.
const MaxHeld = 64 << 10

var (
	once  sync.Once
	slots chan struct{}
)

// N is how many requests may do their CPU work at once: GOMAXPROCS less
// one, at least one.
func N() int {
	return max(1, runtime.GOMAXPROCS(0)-1)
}

// Run calls fn for the work on a body of size bytes: once a slot is free,
// or at once for a body larger than MaxHeld. It returns fn's error, or
// ctx's error when ctx ends before a slot is free (fn is then not called).
func Run(ctx context.Context, size int, fn func() error) error {
	if size > MaxHeld {
		return fn()
	}
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
