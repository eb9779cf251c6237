// Package ordered runs work on a stream of items with several goroutines
// and hands the results back in the input's order, holding only a few
// items at a time: a bulk import ingests its records this way, a replay
// its stored records.
package ordered

import (
	"context"
	"sync"
)

// Run calls produce, which yields items in order (yield returns false
// once Run is stopping: produce then returns), runs work on each item in
// one of workers goroutines, and calls emit with the results in input
// order, from the calling goroutine. It returns the first error of emit or
// produce, or the cause of ctx's end, after every goroutine has returned;
// results after an error are not emitted (their work may have been done).
// At most about 3 × workers items are in flight.
func Run[T, R any](ctx context.Context, workers int, produce func(yield func(T) bool) error,
	work func(context.Context, T) R, emit func(R) error) error {
	workers = max(workers, 1)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type item struct {
		seq int
		in  T
		out R
	}
	todo := make(chan item, workers)
	done := make(chan item, 2*workers)
	var produced sync.WaitGroup
	var produceErr error
	produced.Go(func() {
		defer close(todo)
		seq := 0
		produceErr = produce(func(in T) bool {
			select {
			case todo <- item{seq: seq, in: in}:
				seq++
				return true
			case <-ctx.Done():
				return false
			}
		})
		if produceErr != nil {
			cancel(produceErr)
		}
	})
	var workersDone sync.WaitGroup
	for range workers {
		workersDone.Go(func() {
			for it := range todo {
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
	var stop error
	for it := range done {
		if stop != nil {
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
				stop = err
				cancel(err)
				break
			}
		}
	}
	produced.Wait()
	switch {
	case stop != nil:
		return stop
	case produceErr != nil:
		return produceErr
	}
	return context.Cause(ctx)
}
