package auth

import (
	"container/list"
	"errors"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Limiter is a token-bucket rate limiter per key (a client id or a remote
// IP). Memory is bounded: keys idle long enough for their bucket to refill
// are forgotten (a fresh bucket is the same thing), and when maxKeys are
// tracked the least recently used key is forgotten to make room. Safe for
// concurrent use.
type Limiter struct {
	limit   rate.Limit
	burst   int
	maxKeys int
	refill  time.Duration // time for an empty bucket to fill

	mu   sync.Mutex
	keys map[string]*list.Element // of *limiterEntry
	lru  *list.List               // front is least recently used
}

type limiterEntry struct {
	key  string
	lim  *rate.Limiter
	last time.Time
}

// NewLimiter returns a Limiter allowing each key rate events per second on
// average with bursts of up to burst, tracking at most maxKeys keys. It
// returns an error unless rate > 0 and finite, burst >= 1 and maxKeys >= 1.
func NewLimiter(perSecond float64, burst int, maxKeys int) (*Limiter, error) {
	if !(perSecond > 0) || math.IsInf(perSecond, 0) {
		return nil, errors.New("auth limiter: rate must be a positive number")
	}
	if burst < 1 || maxKeys < 1 {
		return nil, errors.New("auth limiter: burst and maxKeys must be at least 1")
	}
	return &Limiter{
		limit:   rate.Limit(perSecond),
		burst:   burst,
		maxKeys: maxKeys,
		refill:  time.Duration(float64(burst) / perSecond * float64(time.Second)),
		keys:    map[string]*list.Element{},
		lru:     list.New(),
	}, nil
}

// Allow reports whether an event for key at time now is allowed, and if not,
// how long until it would be (for a Retry-After header). A refused event
// consumes nothing.
func (l *Limiter) Allow(key string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for front := l.lru.Front(); front != nil; front = l.lru.Front() {
		e := front.Value.(*limiterEntry)
		if now.Sub(e.last) < l.refill {
			break
		}
		l.lru.Remove(front)
		delete(l.keys, e.key)
	}
	var e *limiterEntry
	if el, found := l.keys[key]; found {
		e = el.Value.(*limiterEntry)
		l.lru.MoveToBack(el)
	} else {
		if l.lru.Len() >= l.maxKeys {
			oldest := l.lru.Front()
			l.lru.Remove(oldest)
			delete(l.keys, oldest.Value.(*limiterEntry).key)
		}
		e = &limiterEntry{key: key, lim: rate.NewLimiter(l.limit, l.burst)}
		l.keys[key] = l.lru.PushBack(e)
	}
	if now.After(e.last) {
		e.last = now
	}
	r := e.lim.ReserveN(now, 1)
	if !r.OK() {
		return false, l.refill
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}
