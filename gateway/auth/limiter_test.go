package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l, err := NewLimiter(1, 2, 100)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	steps := []struct {
		key       string
		at        time.Duration
		wantOK    bool
		wantAfter time.Duration
	}{
		{"a", 0, true, 0},
		{"a", 0, true, 0},
		{"a", 0, false, time.Second},
		{"b", 0, true, 0}, // keys are independent
		{"a", 500 * time.Millisecond, false, 500 * time.Millisecond},
		{"a", time.Second, true, 0},
		{"a", time.Second, false, time.Second},
		{"a", 10 * time.Second, true, 0},
		{"a", 10 * time.Second, true, 0}, // refilled to burst, no more
		{"a", 10 * time.Second, false, time.Second},
	}
	for i, st := range steps {
		ok, after := l.Allow(st.key, t0.Add(st.at))
		if ok != st.wantOK || after != st.wantAfter {
			t.Errorf("step %d: Allow(%q, +%s) = %v, %s, want %v, %s", i, st.key, st.at, ok, after, st.wantOK, st.wantAfter)
		}
	}
}

func TestLimiterBoundedKeys(t *testing.T) {
	l, err := NewLimiter(1, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for i := range 100 {
		l.Allow(fmt.Sprintf("ip-%d", i), t0)
		if n := len(l.keys); n > 3 || l.lru.Len() != n {
			t.Fatalf("after %d keys: tracking %d (list %d), want at most 3", i+1, n, l.lru.Len())
		}
	}
	// Idle keys (bucket refilled) are forgotten.
	l.Allow("late", t0.Add(2*time.Second))
	if n := len(l.keys); n != 1 {
		t.Errorf("after idle period: tracking %d keys, want 1", n)
	}
	// A recently limited key is kept and stays limited.
	l.Allow("late", t0.Add(2*time.Second))
	if ok, _ := l.Allow("late", t0.Add(2500*time.Millisecond)); ok {
		t.Errorf("Allow(late) after its burst = true, want false")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l, err := NewLimiter(1000, 10, 50)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				l.Allow(fmt.Sprintf("k%d", (g*i)%80), t0.Add(time.Duration(i)*time.Microsecond))
			}
		})
	}
	wg.Wait()
	if n := len(l.keys); n > 50 {
		t.Errorf("tracking %d keys, want at most 50", n)
	}
}

func TestNewLimiterErrors(t *testing.T) {
	tests := []struct {
		rate    float64
		burst   int
		maxKeys int
	}{
		{0, 1, 1}, {-1, 1, 1}, {1, 0, 1}, {1, 1, 0},
	}
	for _, tt := range tests {
		if _, err := NewLimiter(tt.rate, tt.burst, tt.maxKeys); err == nil {
			t.Errorf("NewLimiter(%v, %d, %d) = nil error, want error", tt.rate, tt.burst, tt.maxKeys)
		}
	}
}
