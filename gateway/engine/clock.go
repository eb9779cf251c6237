package engine

import (
	"sync/atomic"
	"time"
)

// writeClock gives each write transaction of the process its instant
// (meta.lastUpdated of what it writes): the clock's time in whole
// milliseconds, but strictly after the instant given before it, so that
// no two writes share a millisecond and a write never goes back in time
// when the system clock does.
//
// Why: search pages in an order of _lastUpdated and id, and a next link's
// _cursor starts after the page's last (lastUpdated, type, id). Ids made
// within one millisecond are random (store.NewID), so a write committed
// after a reader passed (T, id) at the same millisecond T could sort
// before it and never be returned by that walk. The store runs the write
// transactions' functions one after another in the order they commit on
// SQLite (one write lane; a batch of them commits at once), so with
// instants that only grow, every later commit sorts after every earlier
// one. On PostgreSQL writers run concurrently (two lanes, several
// replicas) and commit order is not instant order: docs/fhir.md says what
// a sync job does there.
//
// Under more than a thousand writes a second the instants run ahead of the
// clock, by a millisecond a write beyond that rate, and fall back to it
// when the load does.
type writeClock struct {
	now  func() time.Time
	last atomic.Int64 // unix milliseconds of the instant given last
}

// next returns the instant of a new write: max(now, last+1ms) in whole
// milliseconds, in UTC. Safe for concurrent use: each call gets its own.
func (c *writeClock) next() time.Time {
	for {
		last := c.last.Load()
		ms := c.now().UnixMilli()
		if ms <= last {
			ms = last + 1
		}
		if c.last.CompareAndSwap(last, ms) {
			return time.UnixMilli(ms).UTC()
		}
	}
}

// latest returns the clock's time in whole milliseconds, or the instant
// given last when that is later (the instants ran ahead of the clock): a
// time no write given an instant so far is after. It gives no instant.
func (c *writeClock) latest() time.Time {
	ms := max(c.now().UnixMilli(), c.last.Load())
	return time.UnixMilli(ms).UTC()
}

// boundary returns an instant B, in whole milliseconds, that splits the
// clock's instants: every instant given (next) or read (latest) before the
// call is before B, every one given or read after it is B or later. It
// moves the clock on by up to two milliseconds (past the instant it would
// give next, then one more) so that no instant read after it shares a
// millisecond with one read before it: an AuditEvent search is bounded by
// it (_lastUpdated=lt<B>) and sees every AuditEvent recorded before it began,
// none recorded after (auditSnapshot).
func (c *writeClock) boundary() time.Time {
	for {
		last := c.last.Load()
		ms := max(c.now().UnixMilli(), last+1) + 1
		if c.last.CompareAndSwap(last, ms) {
			return time.UnixMilli(ms).UTC()
		}
	}
}
