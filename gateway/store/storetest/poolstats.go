package storetest

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// PoolStatsStore is a backend that reports its connections and write queue.
type PoolStatsStore interface {
	store.Store
	store.StatsReporter
}

// PoolStats checks a backend's PoolStats: the configured bounds (maxConns
// read connections, maxQueue waiting writes, lanes write lanes), a write
// lane counted busy (and, when writeTakesPooled, a pooled connection in
// use) while a write runs, and a second write counted waiting while the
// only lane is busy. s must be opened with one write lane.
func PoolStats(t *testing.T, s PoolStatsStore, maxConns, maxQueue int64, writeTakesPooled bool) {
	t.Helper()
	ctx := context.Background()
	st := s.PoolStats()
	if st.Max != maxConns || st.WriteQueueMax != maxQueue || st.WriteLanes != 1 {
		t.Errorf("PoolStats() = max %d, write queue max %d, lanes %d; want %d, %d, 1", st.Max, st.WriteQueueMax, st.WriteLanes, maxConns, maxQueue)
	}
	if st.WriteQueue != 0 || st.WriteLanesBusy != 0 {
		t.Errorf("PoolStats() idle = queue %d, busy lanes %d; want 0, 0", st.WriteQueue, st.WriteLanesBusy)
	}
	if _, err := s.Read(ctx, "Patient", "none"); err == nil {
		t.Fatal("Read of a missing resource succeeded")
	}
	if st := s.PoolStats(); st.Open < 1 || st.InUse != 0 || st.Idle < 1 {
		t.Errorf("PoolStats() after a read = open %d, in use %d, idle %d; want >= 1, 0, >= 1", st.Open, st.InUse, st.Idle)
	}

	inFirst, release := make(chan struct{}), make(chan struct{})
	var during store.PoolStats
	first := make(chan error, 1)
	go func() {
		first <- s.Write(ctx, func(store.Tx) error {
			during = s.PoolStats()
			close(inFirst)
			<-release
			return nil
		})
	}()
	<-inFirst
	if during.WriteLanesBusy != 1 {
		t.Errorf("PoolStats() during a write: busy lanes %d, want 1", during.WriteLanesBusy)
	}
	if writeTakesPooled && during.InUse < 1 {
		t.Errorf("PoolStats() during a write: in use %d, want >= 1", during.InUse)
	}
	second := make(chan error, 1)
	go func() { second <- s.Write(ctx, func(store.Tx) error { return nil }) }()
	// The second write is on its way to the queue; the deadline only
	// keeps a broken count from hanging the test.
	for deadline := time.Now().Add(30 * time.Second); s.PoolStats().WriteQueue != 1; runtime.Gosched() {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("PoolStats() with a write waiting for the busy lane: queue %d, want 1", s.PoolStats().WriteQueue)
		}
	}
	close(release)
	for _, ch := range []chan error{first, second} {
		if err := <-ch; err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	if st := s.PoolStats(); st.WriteQueue != 0 {
		t.Errorf("PoolStats() after the writes: queue %d, want 0", st.WriteQueue)
	}
}
