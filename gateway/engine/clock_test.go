package engine

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// TestWriteClock: each write's instant is in whole milliseconds and
// strictly after the one before, whether the clock stands still, goes
// back or runs within a millisecond; concurrent writes each get their own.
func TestWriteClock(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 15, 47, 16, 956_400_000, time.UTC)
	tests := []struct {
		name  string
		times []time.Time // what the clock says at each call
		want  []time.Time
	}{
		{"clock moves on", []time.Time{t0, t0.Add(5 * time.Millisecond)},
			[]time.Time{t0.Truncate(time.Millisecond), t0.Add(5 * time.Millisecond).Truncate(time.Millisecond)}},
		{"within one millisecond", []time.Time{t0, t0.Add(100 * time.Microsecond), t0.Add(500 * time.Microsecond)},
			[]time.Time{t0.Truncate(time.Millisecond), t0.Truncate(time.Millisecond).Add(time.Millisecond), t0.Truncate(time.Millisecond).Add(2 * time.Millisecond)}},
		{"clock stands still", []time.Time{t0, t0, t0},
			[]time.Time{t0.Truncate(time.Millisecond), t0.Truncate(time.Millisecond).Add(time.Millisecond), t0.Truncate(time.Millisecond).Add(2 * time.Millisecond)}},
		{"clock goes back", []time.Time{t0, t0.Add(-time.Second)},
			[]time.Time{t0.Truncate(time.Millisecond), t0.Truncate(time.Millisecond).Add(time.Millisecond)}},
		{"back to the clock after running ahead", []time.Time{t0, t0, t0.Add(10 * time.Millisecond)},
			[]time.Time{t0.Truncate(time.Millisecond), t0.Truncate(time.Millisecond).Add(time.Millisecond), t0.Add(10 * time.Millisecond).Truncate(time.Millisecond)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			i := 0
			c := &writeClock{now: func() time.Time { i++; return tc.times[i-1] }}
			for k, want := range tc.want {
				if got := c.next(); !got.Equal(want) || got.Location() != time.UTC {
					t.Errorf("next() #%d = %v, want %v (UTC)", k, got, want)
				}
			}
		})
	}
	t.Run("concurrent", func(t *testing.T) {
		c := &writeClock{now: func() time.Time { return t0 }}
		const writers, each = 8, 200
		got := make([][]int64, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for range each {
					got[w] = append(got[w], c.next().UnixMilli())
				}
			})
		}
		wg.Wait()
		all := slices.Concat(got...)
		for w := range got {
			if !slices.IsSorted(got[w]) {
				t.Errorf("writer %d got instants out of order", w)
			}
		}
		slices.Sort(all)
		if n := len(slices.Compact(all)); n != writers*each {
			t.Errorf("%d writes got %d distinct instants, want one each", writers*each, n)
		}
	})
}

// TestWriteClockLatest: latest is never before an instant given, and
// gives none itself.
func TestWriteClockLatest(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 15, 47, 16, 956_400_000, time.UTC)
	c := &writeClock{now: func() time.Time { return t0 }}
	c.next()
	second := c.next() // ahead of the clock by a millisecond
	if got := c.latest(); !got.Equal(second) {
		t.Errorf("latest() = %v, want the instant given last, %v", got, second)
	}
	if got := c.next(); !got.Equal(second.Add(time.Millisecond)) {
		t.Errorf("next() after latest() = %v, want %v", got, second.Add(time.Millisecond))
	}
}

// TestWriteClockBoundary: every instant given or read before a boundary is
// before it, every one after it is not before it, whether the clock
// stands still (everything in one millisecond) or has run ahead.
func TestWriteClockBoundary(t *testing.T) {
	t0 := time.Date(2026, 12, 5, 15, 47, 16, 956_400_000, time.UTC)
	for _, ahead := range []int{0, 1, 3} {
		c := &writeClock{now: func() time.Time { return t0 }}
		var before []time.Time
		for range ahead {
			before = append(before, c.next())
		}
		before = append(before, c.latest())
		b := c.boundary()
		for _, x := range before {
			if !x.Before(b) {
				t.Errorf("ahead %d: %v read before the boundary %v is not before it", ahead, x, b)
			}
		}
		for _, x := range []time.Time{c.latest(), c.next(), c.latest()} {
			if x.Before(b) {
				t.Errorf("ahead %d: %v read after the boundary %v is before it", ahead, x, b)
			}
		}
	}
}
