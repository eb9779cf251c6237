package ordered

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// count yields 0..n-1.
func count(n int) func(yield func(int) bool) error {
	return func(yield func(int) bool) error {
		for i := range n {
			if !yield(i) {
				return nil
			}
		}
		return nil
	}
}

// slow squares after a random pause, so results come back out of order.
func slow(_ context.Context, i int) int {
	time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
	return i * i
}

func TestInOrder(t *testing.T) {
	var got []int
	err := Run(context.Background(), 4, count(500), slow, func(r int) error { got = append(got, r); return nil })
	if err != nil || len(got) != 500 {
		t.Fatalf("Run = %v, %d results", err, len(got))
	}
	for i, r := range got {
		if r != i*i {
			t.Fatalf("result %d = %d, want %d", i, r, i*i)
		}
	}
}

func TestStops(t *testing.T) {
	stop := errors.New("stop")
	n := 0
	err := Run(context.Background(), 3, count(1000), slow, func(int) error {
		if n++; n == 10 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 10 {
		t.Errorf("emit error: Run = %v after %d", err, n)
	}
	bad := errors.New("read")
	err = Run(context.Background(), 2, func(yield func(int) bool) error {
		yield(1)
		return bad
	}, slow, func(int) error { return nil })
	if !errors.Is(err, bad) {
		t.Errorf("produce error: Run = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Run(ctx, 2, count(1000), slow, func(int) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: Run = %v", err)
	}
}
