package auth

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemoryReplayCache(t *testing.T) {
	c := newClock()
	rc := NewMemoryReplayCache(2, c.Now)
	ctx := context.Background()
	seen := func(key string, exp time.Duration) (bool, error) { return rc.Seen(ctx, key, c.Now().Add(exp)) }

	if s, err := seen("a", time.Minute); s || err != nil {
		t.Fatalf("Seen(a) = %v, %v, want false, nil", s, err)
	}
	if s, err := seen("a", time.Minute); !s || err != nil {
		t.Fatalf("Seen(a) again = %v, %v, want true, nil", s, err)
	}
	if s, err := seen("b", 2*time.Minute); s || err != nil {
		t.Fatalf("Seen(b) = %v, %v, want false, nil", s, err)
	}
	if _, err := seen("c", time.Minute); !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("Seen(c) when full = %v, want ErrReplayCacheFull", err)
	}
	c.Advance(time.Minute) // a expires, making room
	if s, err := seen("c", time.Minute); s || err != nil {
		t.Fatalf("Seen(c) after expiry = %v, %v, want false, nil", s, err)
	}
	if s, err := seen("b", time.Minute); !s || err != nil {
		t.Fatalf("Seen(b) before its expiry = %v, %v, want true, nil", s, err)
	}
	if s, err := seen("a", time.Minute); s || !errors.Is(err, ErrReplayCacheFull) {
		t.Fatalf("Seen(a) after expiry, cache full = %v, %v, want false, ErrReplayCacheFull", s, err)
	}
}

func TestReplayKeyDistinct(t *testing.T) {
	if replayKey("a:b", "c") == replayKey("a", "b:c") {
		t.Errorf("replayKey collides across client ids containing the separator")
	}
}
