package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// Group commit.
//
// Every write transaction (Write, and the outbox's claims, completions,
// retries and replays) is a request in one queue, served oldest first by
// Config.Lanes lanes. A lane takes the oldest waiting requests, up to
// Config.MaxBatch, and runs them one after the other in one database
// transaction, with no savepoint between them (runTogether). When one of
// them fails, that transaction is rolled back unanswered and the batch
// runs again with each request in a savepoint of its own (runEach): a
// request whose fn fails is rolled back to its savepoint and answered
// with its error at once, and the others go on. Then the lane flushes what the transaction
// buffered (see tx), appends the audit chain entries of every request
// (see AppendAudit), commits once, and only then answers the requests
// that succeeded, all with the commit's result. So each request is still
// all or nothing, and is answered only after the durable commit that
// holds it; concurrent requests share that commit (and its fsync)
// instead of queueing for one each.
//
// A request alone in its batch runs without a savepoint, in a transaction
// of its own, exactly as without group commit. A batch whose transaction
// is lost under a request (the connection broke, the database rolled the
// transaction back) answers that request with its error and puts the
// others, unanswered, back at the head of the queue; a batch whose audit
// chain append conflicts (an id appended concurrently by another process)
// puts them back to run one at a time, so one request cannot fail
// another's. A request runs at most maxRequeues+1 times this way; its fn
// must therefore not depend on having run only once (as for store.Retry).
//
// Fairness: the queue is first in, first out, and a lane takes requests
// in queue order, so a request never waits behind a later one beyond the
// batches already running (at most Lanes × MaxBatch requests); the
// fairness test holds the lanes to that. With several lanes, a lane takes
// its share of what waits (the waiting requests over Lanes, rounded up),
// not all of it: a batch's requests are answered only at its commit, and
// its fns run one after the other, so a lane that took the whole queue
// made those requests wait for all of them while the other lane served
// the few that came after, one at a time. Session records at 32 clients
// on PostgreSQL (two lanes) had batches of 27-31 records taking 0.9-2.2 s
// beside 98 batches of one, and a p99 3.4-4.3 times the p50 (issue 19). A request whose context ends
// while it waits leaves the queue; once its batch has started it runs to
// the end (its statements run under the batch's context, so that one
// caller giving up cannot roll back the others' work).
//
// Back-pressure: a Write that finds MaxQueue requests waiting fails at
// once with store.ErrBusy (an ErrUnavailable of cause "write queue full"),
// which the edge answers with 503 store-busy and Retry-After: a queue that
// long takes longer to drain than a client should wait. The audit log's
// write (store.WithAuditWrite) is the exception: it queues beyond the
// bound, one at a time, so that the refused requests' AuditEvents are
// written.

// Defaults of Config.
const (
	DefaultMaxBatch = 64
	DefaultMaxQueue = 1024
)

// maxRequeues bounds how often a request is put back after its batch was
// lost under another request.
const maxRequeues = 2

// request is one write transaction waiting for, or running in, a lane.
type request struct {
	ctx  context.Context
	fn   func(*tx) error
	done chan result // buffered: a lane never waits for the caller

	// Guarded by committer.mu.
	state    reqState
	solo     bool // run alone (after its batch's audit append conflicted)
	requeued int
}

type reqState uint8

const (
	queued reqState = iota
	running
	abandoned // the caller's context ended while it was queued
)

// result is a request's answer: its error, or the value fn panicked with.
type result struct {
	err      error
	panicked any
	panics   bool
}

// committer is a Store's queue of write requests and its lanes.
type committer struct {
	s        *Store
	lanes    int
	maxBatch int
	maxQueue int

	mu      sync.Mutex
	queue   []*request // oldest first; abandoned ones are skipped
	waiting int        // queued, not abandoned
	running int        // lanes
	closed  bool
	wg      sync.WaitGroup

	eachFor atomic.Int32 // batches still to run with a savepoint each (see eachAfterFailure)
}

func newCommitter(s *Store, cfg Config) *committer {
	c := &committer{s: s, lanes: max(cfg.Lanes, 1), maxBatch: cfg.MaxBatch, maxQueue: cfg.MaxQueue}
	if c.maxBatch <= 0 {
		c.maxBatch = DefaultMaxBatch
	}
	if c.maxQueue <= 0 {
		c.maxQueue = DefaultMaxQueue
	}
	return c
}

// errClosed answers a write after CloseWrites.
var errClosed = fmt.Errorf("%w: the store is closed", store.ErrUnavailable)

// do queues fn and waits for its answer. A lane is a goroutine that runs
// while there are requests waiting and ends when there are none, so an
// idle Store runs none; do starts one when fewer than c.lanes run.
func (c *committer) do(ctx context.Context, fn func(*tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := &request{ctx: withQueued(ctx, time.Now()), fn: fn, done: make(chan result, 1)}
	c.mu.Lock()
	switch {
	case c.closed:
		c.mu.Unlock()
		return errClosed
	case c.waiting >= c.maxQueue && !store.AuditWrite(ctx):
		// The audit log's write is let in beyond the bound: it is one
		// at a time (store.WithAuditWrite), and holds the AuditEvents of
		// the requests refused here.
		c.mu.Unlock()
		return fmt.Errorf("%s: %w (%d writes waiting)", c.s.d.Name, store.ErrBusy, c.maxQueue)
	}
	c.queue = append(c.queue, r)
	c.waiting++
	if c.running < c.lanes {
		c.running++
		c.wg.Go(c.lane)
	}
	c.mu.Unlock()

	var res result
	select {
	case res = <-r.done:
	case <-ctx.Done():
		c.mu.Lock()
		if r.state == queued {
			r.state = abandoned
			c.waiting--
			c.mu.Unlock()
			return ctx.Err()
		}
		c.mu.Unlock()
		res = <-r.done // it is running: its fn uses the caller's state
	}
	if res.panics {
		panic(res.panicked)
	}
	return res.err
}

// queued is how many requests wait for a lane.
func (c *committer) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

// stats fills in the write queue's figures of st.
func (c *committer) stats(st *store.PoolStats) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.WriteQueue, st.WriteQueueMax = int64(c.waiting), int64(c.maxQueue)
	st.WriteLanesBusy, st.WriteLanes = int64(c.running), int64(c.lanes)
}

// WriteStats returns the write queue's figures (the Write* fields of
// store.PoolStats; the backend fills in its connections'). It runs no
// query.
func (s *Store) WriteStats() store.PoolStats {
	var st store.PoolStats
	s.w.stats(&st)
	return st
}

// close stops taking requests and waits for the lanes to finish those
// already queued.
func (c *committer) close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.wg.Wait()
}

// lane runs batches until no request waits.
func (c *committer) lane() {
	for {
		batch := c.take()
		if batch == nil {
			return
		}
		c.run(batch)
	}
}

// take takes the oldest waiting requests, up to maxBatch and the lane's
// share (see fairness; a solo request alone); nil, ending the lane, when
// none waits.
func (c *committer) take() []*request {
	c.mu.Lock()
	defer c.mu.Unlock()
	var batch []*request
	n := 0
	limit := min(c.maxBatch, max(1, (c.waiting+c.lanes-1)/c.lanes))
	for n < len(c.queue) && len(batch) < limit {
		r := c.queue[n]
		if r.state == abandoned {
			n++
			continue
		}
		if r.solo && len(batch) > 0 {
			break
		}
		n++
		r.state = running
		batch = append(batch, r)
		if r.solo {
			break
		}
	}
	c.queue = c.queue[n:]
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go
	}
	if len(batch) == 0 {
		c.running--
		return nil
	}
	c.waiting -= len(batch)
	return batch
}

// requeue puts requests back at the head of the queue, in their order.
func (c *committer) requeue(rs []*request, solo bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range rs {
		r.state, r.requeued = queued, r.requeued+1
		r.solo = r.solo || solo
	}
	c.queue = append(append([]*request(nil), rs...), c.queue...)
	c.waiting += len(rs)
	// The lane that calls requeue takes them next (it runs on).
}

// answer sends r its result.
func answer(r *request, err error) { r.done <- result{err: err} }

// run runs one batch: first all its requests together (runTogether),
// and only when one of them fails, again with a savepoint each (runEach).
func (c *committer) run(batch []*request) {
	if len(batch) == 1 {
		r := batch[0]
		r.done <- c.s.runAlone(r)
		return
	}
	if c.eachFor.Load() > 0 {
		c.eachFor.Add(-1)
		c.runEach(batch)
		return
	}
	if c.runTogether(batch) {
		return
	}
	c.eachFor.Store(eachAfterFailure)
	c.runEach(batch)
}

// eachAfterFailure is how many batches run with a savepoint per request
// straight away after a batch whose run together failed: where requests
// keep failing (a client sending stale versions at load), the wasted
// first runs are bounded to one batch in eachAfterFailure+1.
const eachAfterFailure = 8

// runTogether runs the requests of batch one after the other in one
// transaction with no savepoint between them, their buffered writes
// flushed together (multi-row statements across requests), and commits
// once. A savepoint costs every page a request changes a copy into the
// database's statement journal (SQLite) or a subtransaction (PostgreSQL):
// for writes of many rows, as much as the writes themselves. When every
// request succeeds, as almost all do, none is needed. When one fails (its
// fn returns an error or panics, or the flush of the buffered writes
// fails), the transaction is rolled back with nothing answered and
// runTogether reports false: the caller runs the batch again with a
// savepoint per request, so that every answer, the failing request's
// included, comes from that one run, on the same database state as the
// first. A failure therefore costs one wasted run of the batch up to it,
// and the next eachAfterFailure batches run with savepoints at once; a
// request's fn runs twice then (which every fn allows, see maxRequeues).
//
// Requests whose context ended before the batch started are left to
// runEach unless the batch commits here; then they are answered with
// their context's error, as runEach would. When the transaction cannot
// begin, every request is answered with that error (or its context's).
func (c *committer) runTogether(batch []*request) bool {
	s := c.s
	ctx := context.Background()
	t, err := s.begin(oldestQueued(ctx, batch))
	if err != nil {
		// Every request gets the error now, as runEach would after
		// beginning again: a database locked by another process would
		// make the batch wait its busy timeout twice, longer than a
		// request alone, and fail later than writes queued after it
		// succeed (p13 F4). (PostgreSQL's Begin already tries a new
		// connection when the first was lost.)
		for _, r := range batch {
			if cerr := r.ctx.Err(); cerr != nil {
				answer(r, cerr)
				continue
			}
			answer(r, err)
		}
		return true
	}
	var ok, gone []*request
	for _, r := range batch {
		if r.ctx.Err() != nil {
			gone = append(gone, r)
			continue
		}
		if res := t.call(r.fn); res.err != nil || res.panics {
			t.c.Rollback(ctx)
			return false
		}
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		t.c.Rollback(ctx)
		return false
	}
	if err := t.flush(); err != nil {
		t.c.Rollback(ctx)
		return false
	}
	for _, r := range gone {
		answer(r, r.ctx.Err())
	}
	c.commit(t, ok)
	return true
}

// runEach runs batch with a savepoint per request: a request whose fn
// fails is rolled back to its savepoint and answered at once, and the
// others go on.
func (c *committer) runEach(batch []*request) {
	s := c.s
	ctx := context.Background()
	t, err := s.begin(oldestQueued(ctx, batch))
	if err != nil {
		for _, r := range batch {
			answer(r, err)
		}
		return
	}
	var ok []*request
	for i, r := range batch {
		if err := r.ctx.Err(); err != nil {
			answer(r, err) // its caller gave up before it started
			continue
		}
		res, lost := t.request(r.fn)
		switch {
		case lost != nil:
			// The transaction is gone: r's own answer, and the rest again.
			t.c.Rollback(ctx)
			r.done <- res
			c.retry(append(ok, batch[i+1:]...), false, lost)
			return
		case res.err != nil || res.panics:
			r.done <- res // rolled back to its savepoint: nothing of it stays
		default:
			ok = append(ok, r)
		}
	}
	if len(ok) == 0 {
		t.c.Rollback(ctx)
		return
	}
	c.commit(t, ok)
}

// commit finishes t, the transaction of the requests ok, and answers them.
func (c *committer) commit(t *tx, ok []*request) {
	s := c.s
	ctx := context.Background()
	err := t.finish()
	if errors.Is(err, store.ErrConflict) && len(ok) > 1 {
		// The chain append found an id taken: run each alone, so that the
		// request that appended it fails by itself.
		c.retry(ok, true, err)
		return
	}
	if err == nil {
		s.audited(t.audits)
		// Before the answers, as runAlone: a backend may do its
		// after-commit work before the Write returns (PostgreSQL analyses
		// after a bulk write, so that the searches after it plan well).
		s.db.Committed(ctx, t.puts)
	}
	for _, r := range ok {
		answer(r, err)
	}
}

// retry puts rs back in the queue, or answers err to those put back too
// often already.
func (c *committer) retry(rs []*request, solo bool, err error) {
	var again []*request
	for _, r := range rs {
		if r.requeued >= maxRequeues {
			answer(r, err)
			continue
		}
		again = append(again, r)
	}
	if len(again) > 0 {
		c.requeue(again, solo)
	}
}

// runAlone runs r as the one request of its transaction: statements under
// r's context, no savepoint, fn's error returned unchanged (a panic is
// passed on to the caller after the rollback).
func (s *Store) runAlone(r *request) (res result) {
	t, err := s.begin(r.ctx)
	if err != nil {
		return result{err: err}
	}
	done := false
	defer func() {
		if !done {
			t.c.Rollback(r.ctx)
			res = result{panicked: recover(), panics: true}
		}
	}()
	if err := r.fn(t); err != nil {
		done = true
		t.c.Rollback(r.ctx)
		return result{err: err}
	}
	err = t.finish()
	done = true
	if err == nil {
		s.audited(t.audits)
		s.db.Committed(r.ctx, t.puts)
	}
	return result{err: err}
}

// begin starts a write transaction on ctx.
func (s *Store) begin(ctx context.Context) (*tx, error) {
	c, err := s.db.Begin(ctx, s.d.WriteFence)
	if err != nil {
		return nil, err
	}
	if s.d.FlushAhead {
		c = &aheadTx{tx: c}
	}
	return &tx{ctx: ctx, c: c, s: s}, nil
}

// AwaitWrites implements store.Store: with a Dialect.AwaitFence, a
// transaction that takes the fence's lock exclusively (waiting for every
// write transaction holding it shared, which each takes before its
// function runs) and ends at once; without one, an empty write
// transaction, which the database's one write lock (SQLite's BEGIN
// IMMEDIATE, for every process) lets begin only after the write running
// ends, and which the write queue runs after those queued before it.
func (s *Store) AwaitWrites(ctx context.Context) error {
	if s.d.AwaitFence == "" {
		return s.Write(ctx, func(store.Tx) error { return nil })
	}
	c, err := s.db.Begin(ctx, s.d.AwaitFence)
	if err != nil {
		return err
	}
	c.Rollback(ctx)
	return nil
}

// finish flushes the transaction's buffered writes, appends its audit
// chain entries and commits; it rolls back when either fails.
func (t *tx) finish() error {
	s := t.s
	if err := t.flush(); err != nil {
		t.c.Rollback(t.ctx)
		return err
	}
	if err := t.appendChain(); err != nil {
		t.c.Rollback(t.ctx)
		return err
	}
	if err := t.c.Commit(t.ctx); err != nil {
		return fmt.Errorf("%s: commit: %w", s.d.Name, s.err(t.ctx, err))
	}
	return nil
}

// requestSavepoint names the savepoint of each request of a batch.
const requestSavepoint = "kg_req"

// request runs fn as one request of a batch, in a savepoint. res is fn's
// answer (nil error: its writes are kept, to commit with the batch);
// lost, when not nil, says that the transaction did not survive the
// failure (res then holds the answer for this request).
func (t *tx) request(fn func(*tx) error) (res result, lost error) {
	const sp = requestSavepoint
	s := t.s
	if err := t.flush(); err != nil {
		return result{err: err}, lostErr(err)
	}
	if _, err := t.c.Exec(t.ctx, `SAVEPOINT `+sp); err != nil {
		err = fmt.Errorf("%s: savepoint: %w", s.d.Name, lostErr(s.err(t.ctx, err)))
		return result{err: err}, err
	}
	audits := len(t.audits)
	res = t.call(fn)
	if res.err == nil && !res.panics {
		res.err = t.flush()
	}
	if res.err == nil && !res.panics {
		if _, err := t.c.Exec(t.ctx, `RELEASE SAVEPOINT `+sp); err != nil {
			err = fmt.Errorf("%s: release savepoint: %w", s.d.Name, lostErr(s.err(t.ctx, err)))
			return result{err: err}, err
		}
		return res, nil
	}
	t.discard(audits)
	if _, err := t.c.Exec(t.ctx, `ROLLBACK TO SAVEPOINT `+sp+`; RELEASE SAVEPOINT `+sp); err != nil {
		err = fmt.Errorf("%s: rollback to savepoint: %w", s.d.Name, lostErr(s.err(t.ctx, err)))
		if !res.panics && !errors.Is(res.err, store.ErrConflict) && !errors.Is(res.err, store.ErrUnavailable) {
			res.err = err // fn's own error says nothing of the lost transaction
		}
		return res, err
	}
	t.rolledBack()
	return res, nil
}

// call runs fn, turning a panic into a result.
func (t *tx) call(fn func(*tx) error) (res result) {
	t.seen, t.seenUndo = nil, nil // what an earlier request of the transaction read is not this one's
	defer func() {
		if p := recover(); p != nil {
			res = result{panicked: p, panics: true}
		}
	}()
	return result{err: fn(t)}
}

// queuedKey is the context key of when a write was queued.
type queuedKey struct{}

// withQueued is ctx noting that its write was queued at t.
func withQueued(ctx context.Context, t time.Time) context.Context {
	return context.WithValue(ctx, queuedKey{}, t)
}

// QueuedAt is when the write whose transaction begins under ctx was queued
// (the oldest of a batch's): a backend whose BEGIN waits for a lock held
// elsewhere counts its wait from then (SQLite's busy timeout).
func QueuedAt(ctx context.Context) (time.Time, bool) {
	t, ok := ctx.Value(queuedKey{}).(time.Time)
	return t, ok
}

// oldestQueued is ctx noting when the oldest request of batch was queued.
func oldestQueued(ctx context.Context, batch []*request) context.Context {
	var oldest time.Time
	for _, r := range batch {
		if q, ok := QueuedAt(r.ctx); ok && (oldest.IsZero() || q.Before(oldest)) {
			oldest = q
		}
	}
	if oldest.IsZero() {
		return ctx
	}
	return withQueued(ctx, oldest)
}
