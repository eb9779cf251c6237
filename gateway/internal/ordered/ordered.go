// Package ordered runs work on a stream of items with several goroutines
// and hands the results back in the input's order, holding only a few
// items at a time: a bulk import ingests its records this way, a replay
// its stored records.
package ordered

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// ErrStopped is returned by RunUntil when its stop channel closed before
// every item was worked.
var ErrStopped = errors.New("ordered: stopped")

// Run calls produce, which yields items in order (yield returns false
// once Run is stopping: produce then returns), runs work on each item in
// one of workers goroutines, and calls emit with the results in input
// order, from the calling goroutine. It returns the first error of emit or
// produce, or the cause of ctx's end, after every goroutine has returned;
// results after an error are not emitted (their work may have been done).
// At most 3 × workers items are in flight (produced and not emitted).
func Run[T, R any](ctx context.Context, workers int, produce func(yield func(T) bool) error,
	work func(context.Context, T) R, emit func(R) error) error {
	return RunUntil(ctx, nil, workers, produce, work, emit)
}

// RunUntil is Run that also stops at an item boundary once stop closes:
// no item is worked after that (not those produced already and waiting
// either), the items being worked (one a worker took just before stop
// closed counts as being worked) finish with ctx as it is, and their
// results are emitted, in order, before it returns ErrStopped. The items
// worked are always a prefix of the input, so every one of them is
// emitted (unless emit failed or ctx ended). A nil stop never closes. If
// stop closes once every item was worked, RunUntil returns as Run would.
func RunUntil[T, R any](ctx context.Context, stop <-chan struct{}, workers int, produce func(yield func(T) bool) error,
	work func(context.Context, T) R, emit func(R) error) error {
	workers = max(workers, 1)
	stopping := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	var stopped atomic.Bool // an item was left unworked because of stop
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type item struct {
		seq int
		in  T
		out R
	}
	todo := make(chan item, workers)
	done := make(chan item, 2*workers)
	// window holds a token for each item produced and not yet emitted:
	// while the emitter waits for a slow item the workers go on with the
	// ones after it, and without the window their results would pile up
	// in pending without bound.
	window := make(chan struct{}, 3*workers)
	var produced sync.WaitGroup
	var produceErr error
	produced.Go(func() {
		defer close(todo)
		seq := 0
		produceErr = produce(func(in T) bool {
			if stopping() {
				stopped.Store(true)
				return false // read no further
			}
			select {
			case window <- struct{}{}:
			case <-ctx.Done():
				return false
			case <-stop:
				stopped.Store(true)
				return false
			}
			select {
			case todo <- item{seq: seq, in: in}:
				seq++
				return true
			case <-ctx.Done():
				return false
			case <-stop:
				stopped.Store(true)
				return false
			}
		})
		if produceErr != nil {
			cancel(produceErr)
		}
	})
	var workersDone sync.WaitGroup
	// Taking an item and checking stop is one step for all workers, so
	// once one worker leaves an item unworked every later item is left
	// too: the items worked are a prefix of the input.
	var take sync.Mutex
	for range workers {
		workersDone.Go(func() {
			for {
				take.Lock()
				it, ok := <-todo
				skip := ok && stopping()
				take.Unlock()
				if !ok {
					return
				}
				if skip {
					stopped.Store(true)
					continue // drain what the producer queued
				}
				it.out = work(ctx, it.in)
				var zero T
				it.in = zero
				select {
				case done <- it:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	go func() { workersDone.Wait(); close(done) }()

	pending := map[int]item{}
	next := 0
	var emitErr error
	for it := range done {
		if emitErr != nil {
			continue // drain
		}
		pending[it.seq] = it
		for {
			cur, ok := pending[next]
			if !ok {
				break
			}
			delete(pending, next)
			next++
			if err := emit(cur.out); err != nil {
				emitErr = err
				cancel(err)
				break
			}
			<-window
		}
	}
	produced.Wait()
	switch {
	case emitErr != nil:
		return emitErr
	case produceErr != nil:
		return produceErr
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case stopped.Load():
		return ErrStopped
	}
	return nil
}
