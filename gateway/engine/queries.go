package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Searches and histories are the reads whose cost the client chooses. Each
// runs in one of a few slots per client, so one client cannot take every
// database connection, and under a deadline below the HTTP server's write
// timeout, so a costly one is stopped (and says so) instead of holding its
// connection until the database's own statement timeout.

// Defaults of the query bounds.
const (
	// DefaultSearchTimeout bounds one search or history (below the 120 s
	// HTTP write timeout and PostgreSQL's 30 s statement timeout).
	DefaultSearchTimeout = 15 * time.Second
	// DefaultSearchesPerClient is how many searches one client runs at once:
	// below the database pools' smallest default (PostgreSQL's 4, SQLite's
	// 2 read connections on 2 CPUs), so one client never holds them all.
	DefaultSearchesPerClient = 2
	// slotWait is how long a search waits for a free slot of its client.
	slotWait = 250 * time.Millisecond
)

// slots bounds the queries each client runs at once.
type slots struct {
	per  int
	mu   sync.Mutex
	held map[string]*slot
}

// slot is one client's semaphore; refs counts its holders and waiters, and
// the slot is forgotten when none are left.
type slot struct {
	ch   chan struct{}
	refs int
}

func newSlots(per int) *slots { return &slots{per: per, held: map[string]*slot{}} }

// acquire takes one of key's slots, waiting at most slotWait: release gives
// it back. Returns a Throttled error when the client has every slot.
func (s *slots) acquire(ctx context.Context, key string) (release func(), err error) {
	s.mu.Lock()
	sl := s.held[key]
	if sl == nil {
		sl = &slot{ch: make(chan struct{}, s.per)}
		s.held[key] = sl
	}
	sl.refs++
	s.mu.Unlock()
	done := func() {
		s.mu.Lock()
		if sl.refs--; sl.refs == 0 {
			delete(s.held, key)
		}
		s.mu.Unlock()
	}
	select {
	case sl.ch <- struct{}{}:
	default:
		t := time.NewTimer(slotWait)
		defer t.Stop()
		select {
		case sl.ch <- struct{}{}:
		case <-t.C:
			done()
			return nil, s.busy()
		case <-ctx.Done():
			done()
			return nil, ctx.Err()
		}
	}
	return func() { <-sl.ch; done() }, nil
}

// busy is the answer to a client that has every slot.
func (s *slots) busy() error {
	return &outcome.Error{Kind: outcome.Throttled, RetryAfter: 1, Issues: []outcome.Issue{{Severity: "error", Code: "throttled",
		Rule: "search-concurrency-limit", Message: "this client already runs " + strconv.Itoa(s.per) +
			" searches at once; retry when one of them has finished"}}}
}

// clientKey names the caller for its slots: its tenant and client (an
// external issuer's clients by issuer too).
func clientKey(sc *auditlog.Scope) string {
	if p := sc.Principal; p != nil {
		return p.Tenant + "\x00" + p.Issuer + "\x00" + p.ClientID
	}
	return ""
}

// reads is where a read interaction runs: with no tx, on the store's read
// side confined to the caller's tenant, a search or history in one of the
// caller's slots and under the search timeout (query); with tx, a write
// transaction confined to the tenant (a Bundle's GET entry: it sees what
// the entries before it wrote, and runs in the transaction's time).
// With chart set (and no tx), the reads are confined to that tenant, a
// patient's, instead (chartReads).
type reads struct {
	tx    store.Tx
	chart *string
}

// reader is what in reads from, for the caller of sc.
func (e *Engine) reader(sc *auditlog.Scope, in reads) reader {
	switch {
	case in.tx != nil:
		return txReader{in.tx}
	case in.chart != nil:
		return e.storeFor(*in.chart)
	}
	return e.storeFor(sc.TenantOf())
}

// chartReads is in for reading the compartment of a Patient the caller
// may see, held by tenant (search.NoTenant: by none): an all-tenant
// caller reads it in the patient's tenant only, so that another clinic's resources pointing at the patient's id
// (which any clinic may write: references are not resolved on write) are
// not shown as part of the patient's chart. Any other caller reads in its
// own tenant already.
func chartReads(sc *auditlog.Scope, in reads, tenant string) reads {
	if in.tx == nil && sc.TenantOf() == search.AllTenants {
		in.chart = &tenant
	}
	return in
}

// queryIn runs fn, a search or history of the caller's, with what in reads
// from: in a slot and under the timeout (query) outside a transaction.
func (e *Engine) queryIn(ctx context.Context, sc *auditlog.Scope, in reads, fn func(ctx context.Context, st reader) error) error {
	st := e.reader(sc, in)
	if in.tx != nil {
		return fn(ctx, st)
	}
	return e.query(ctx, sc, func(ctx context.Context) error { return fn(ctx, st) })
}

// query runs fn, a search or history of the caller's, in one of its slots
// and under the search timeout. A query stopped by that timeout is
// search-too-costly; fn's other errors are returned unchanged.
func (e *Engine) query(ctx context.Context, sc *auditlog.Scope, fn func(ctx context.Context) error) error {
	release, err := e.searches.acquire(ctx, clientKey(sc))
	if err != nil {
		return err
	}
	defer release()
	qctx, cancel := context.WithTimeout(ctx, e.searchTimeout)
	defer cancel()
	err = fn(qctx)
	if err != nil && ctx.Err() == nil && errors.Is(qctx.Err(), context.DeadlineExceeded) {
		return e.tooCostly()
	}
	return err
}

// tooCostly is the answer to a search stopped by the search timeout: the
// database is not unavailable, this search was too slow.
func (e *Engine) tooCostly() error {
	return &outcome.Error{Kind: outcome.Unavailable, RetryAfter: 5, Issues: []outcome.Issue{{Severity: "error", Code: "too-costly",
		Rule: "search-too-costly", Message: fmt.Sprintf("the search took longer than the %s the gateway allows and was "+
			"stopped; narrow it (more selective parameters, a smaller _count, _total=none) or retry later", e.searchTimeout)}}}
}
