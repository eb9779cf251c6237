package cpuslots

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// TestRunBounds: with every slot held, a further Run does not call its
// fn; it returns its context's error once that ends, and the slots serve
// the next callers once they are given back. A body over MaxHeld runs at
// once.
func TestRunBounds(t *testing.T) {
	n := N()
	if n < 1 {
		t.Fatalf("N() = %d, want at least 1", n)
	}
	release := make(chan struct{})
	entered := make(chan struct{}, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			err := Run(context.Background(), 100, func() error {
				entered <- struct{}{}
				<-release
				return nil
			})
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		})
	}
	for range n {
		<-entered
	}

	ctx, cancel := context.WithCancel(context.Background())
	called := false
	done := make(chan error, 1)
	go func() { done <- Run(ctx, 100, func() error { called = true; return nil }) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run with every slot held and its context ended = %v, want context.Canceled", err)
	}
	if called {
		t.Fatalf("Run called fn with all %d slots held", n)
	}

	// A large body takes no slot: it runs at once, held slots or not.
	if err := Run(context.Background(), MaxHeld+1, func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf("Run of a body over MaxHeld with every slot held = %v, called %v; want it run at once", err, called)
	}

	close(release)
	wg.Wait()
	want := errors.New("fn's own error")
	if err := Run(context.Background(), 100, func() error { return want }); err != want {
		t.Fatalf("Run after the slots were given back = %v, want fn's error", err)
	}
}
