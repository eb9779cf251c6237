package auth

import (
	"container/heap"
	"context"
	"errors"
	"strconv"
	"sync"
	"time"
)

// ReplayCache remembers client assertion jti values so that each assertion is
// accepted once. Server.Token calls Seen with a key derived from the client id
// and the jti (jti is at most 255 bytes) and the time after which the
// assertion can no longer be accepted anyway.
//
// Seen reports whether key was recorded before and has not yet expired; if
// not, it records key until exp and reports false. Check and record must be
// atomic across every replica sharing the cache. An error makes Token fail
// closed with 503 temporarily_unavailable.
type ReplayCache interface {
	Seen(ctx context.Context, key string, exp time.Time) (bool, error)
}

// ErrReplayCacheFull is returned by MemoryReplayCache.Seen when it holds its
// maximum number of unexpired entries; the assertion is then refused rather
// than risk accepting a replay.
var ErrReplayCacheFull = errors.New("auth: replay cache full")

// replayKey is the ReplayCache key for a client's jti; the length prefix
// keeps ids containing the separator from colliding.
func replayKey(clientID, jti string) string {
	return strconv.Itoa(len(clientID)) + ":" + clientID + ":" + jti
}

// MemoryReplayCache is an in-memory ReplayCache for a single process. Entries
// are dropped once expired; memory is bounded by maxEntries. Safe for
// concurrent use.
type MemoryReplayCache struct {
	mu    sync.Mutex
	max   int
	now   func() time.Time
	exp   map[string]time.Time
	queue expiryQueue
}

// NewMemoryReplayCache returns a MemoryReplayCache holding at most maxEntries
// unexpired keys (at least 1), using now as its clock (time.Now if nil).
func NewMemoryReplayCache(maxEntries int, now func() time.Time) *MemoryReplayCache {
	if maxEntries < 1 {
		maxEntries = 1
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayCache{max: maxEntries, now: now, exp: map[string]time.Time{}}
}

// Seen implements ReplayCache. It returns ErrReplayCacheFull, and records
// nothing, when maxEntries unexpired keys are already held.
func (c *MemoryReplayCache) Seen(_ context.Context, key string, exp time.Time) (bool, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) > 0 && !c.queue[0].exp.After(now) {
		e := heap.Pop(&c.queue).(expiryEntry)
		delete(c.exp, e.key)
	}
	if _, ok := c.exp[key]; ok {
		return true, nil
	}
	if !exp.After(now) {
		return false, nil // already unacceptable; nothing to remember
	}
	if len(c.exp) >= c.max {
		return false, ErrReplayCacheFull
	}
	c.exp[key] = exp
	heap.Push(&c.queue, expiryEntry{key: key, exp: exp})
	return false, nil
}

type expiryEntry struct {
	key string
	exp time.Time
}

// expiryQueue is a min-heap of entries by expiry.
type expiryQueue []expiryEntry

func (q expiryQueue) Len() int           { return len(q) }
func (q expiryQueue) Less(i, j int) bool { return q[i].exp.Before(q[j].exp) }
func (q expiryQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *expiryQueue) Push(x any)        { *q = append(*q, x.(expiryEntry)) }
func (q *expiryQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}
