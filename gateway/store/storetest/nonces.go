package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// useNonce calls UseNonce and fails the test on error.
func useNonce(t *testing.T, n store.Nonces, key string, exp time.Time) bool {
	t.Helper()
	first, err := n.UseNonce(context.Background(), key, exp)
	if err != nil {
		t.Fatalf("UseNonce(%q): %v", key, err)
	}
	return first
}

// testNonces: a key's first use, its reuse before and after it expired,
// distinct keys, and the keys UseNonce refuses.
func testNonces(t *testing.T, s store.Store) {
	n := store.Nonces(s)
	later, past := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)
	steps := []struct {
		name string
		key  string
		exp  time.Time
		want bool
	}{
		{"first use", "client-a:jti-1", later, true},
		{"second use", "client-a:jti-1", later, false},
		{"third use with a later exp", "client-a:jti-1", later.Add(time.Hour), false},
		{"third use with a past exp", "client-a:jti-1", past, false},
		{"another client's jti", "client-b:jti-1", later, true},
		{"a key that is a prefix", "client-a:jti", later, true},
		// Keys that only differ in bytes text columns may not hold.
		{"NUL byte", "client-a:jti-\x00", later, true},
		{"invalid UTF-8", "client-a:jti-\xff", later, true},
		{"NUL byte again", "client-a:jti-\x00", later, false},
		// An expired key counts as unused, and its next use records it anew.
		{"expired at once", "client-a:jti-2", past, true},
		{"use after expiry", "client-a:jti-2", later, true},
		{"reuse after expiry", "client-a:jti-2", later, false},
		{"longest key", strings.Repeat("k", store.MaxNonceKey), later, true},
		{"longest key again", strings.Repeat("k", store.MaxNonceKey), later, false},
	}
	for _, st := range steps {
		if got := useNonce(t, n, st.key, st.exp); got != st.want {
			t.Errorf("%s: UseNonce(%.20q) = %v, want %v", st.name, st.key, got, st.want)
		}
	}
	for _, key := range []string{"", strings.Repeat("k", store.MaxNonceKey+1)} {
		if _, err := n.UseNonce(context.Background(), key, later); err == nil {
			t.Errorf("UseNonce(key of %d bytes) = nil error, want an error", len(key))
		}
	}
}

// raceNonce runs uses of key from 32 goroutines spread round robin over
// stores (all of one database) and checks that exactly one is first.
func raceNonce(t *testing.T, key string, stores ...store.Nonces) {
	t.Helper()
	const racers = 32
	var firsts atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	exp := time.Now().Add(time.Hour)
	for i := range racers {
		n := stores[i%len(stores)]
		wg.Go(func() {
			<-start
			first, err := n.UseNonce(context.Background(), key, exp)
			if err != nil {
				t.Errorf("racer %d: UseNonce: %v", i, err)
			}
			if first {
				firsts.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got := firsts.Load(); got != 1 {
		t.Errorf("%d racers on key %q: %d first uses, want 1", racers, key, got)
	}
}

// testNoncesConcurrent: uses of one key racing in one store, on a new key
// and on an expired one.
func testNoncesConcurrent(t *testing.T, s store.Store) {
	n := store.Nonces(s)
	for round := range 3 {
		raceNonce(t, fmt.Sprint("new-", round), n)
		key := fmt.Sprint("expired-", round)
		useNonce(t, n, key, time.Now().Add(-time.Minute))
		raceNonce(t, key, n)
	}
}

// RunShared runs the tests that need two Store instances on one database
// (two processes' view of it). open must return two new stores sharing a
// new, empty database each time it is called; RunShared closes them.
func RunShared(t *testing.T, open func(t *testing.T) (store.Store, store.Store)) {
	tests := []struct {
		name string
		fn   func(t *testing.T, a, b store.Store)
	}{
		{"NoncesShared", testNoncesShared},
		{"JobsShared", testJobsShared},
		{"AuditIndexShared", testAuditIndexShared},
		{"DeliveryIDKeyShared", testDeliveryIDKeyShared},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, b := open(t)
			t.Cleanup(func() {
				for _, s := range []store.Store{a, b} {
					if err := s.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				}
			})
			tc.fn(t, a, b)
		})
	}
}

// testNoncesShared: a key used through one store is used for the other,
// and racing uses through both have one winner.
func testNoncesShared(t *testing.T, a, b store.Store) {
	na, nb := store.Nonces(a), store.Nonces(b)
	later := time.Now().Add(time.Hour)
	if !useNonce(t, na, "k1", later) {
		t.Error("UseNonce(k1) through a = false, want true")
	}
	if useNonce(t, nb, "k1", later) {
		t.Error("UseNonce(k1) through b after a = true, want false")
	}
	for round := range 3 {
		raceNonce(t, fmt.Sprint("race-", round), na, nb)
	}
}

// NoncePurge checks that a store deletes expired nonces as it goes while
// it keeps unexpired ones: rows returns how many nonces s holds. s must be
// new and empty.
func NoncePurge(t *testing.T, s store.Store, rows func(t *testing.T) int) {
	n := store.Nonces(s)
	later, past := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)
	const live, expired = 10, 700
	for i := range live {
		useNonce(t, n, fmt.Sprint("live-", i), later)
	}
	for i := range expired {
		useNonce(t, n, fmt.Sprint("expired-", i), past)
	}
	if got := rows(t); got < live || got > live+expired/2 {
		t.Errorf("after %d uses of expiring keys: %d rows, want from %d to %d", expired, got, live, live+expired/2)
	}
	for i := range live {
		if useNonce(t, n, fmt.Sprint("live-", i), later) {
			t.Errorf("UseNonce(live-%d) after the purges = true, want false", i)
		}
	}
}
