package sqlstore

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// lockedDB is a database whose write transactions cannot begin, as a
// SQLite database whose write lock another process holds past the busy
// timeout: each Begin waits for wait (the first only) and fails.
type lockedDB struct {
	DB
	begins atomic.Int32
	wait   chan struct{}
}

func (d *lockedDB) Begin(context.Context, string) (Tx, error) {
	if d.begins.Add(1) == 1 {
		<-d.wait
	}
	return nil, store.Unavailable(store.CauseLocked, errors.New("database is locked"))
}

// TestBatchBeginFailsOnce: when a batch's transaction cannot begin (the
// database locked elsewhere), its requests are answered with that error
// at once: the batch does not begin again to run each request in a
// savepoint, which would make them wait the busy timeout twice, longer
// than a request alone, and fail later than writes queued after them
// succeed.
func TestBatchBeginFailsOnce(t *testing.T) {
	db := &lockedDB{wait: make(chan struct{})}
	s := New(db, &Dialect{Name: "test", Placeholder: func(int) string { return "?" }}, Config{})
	ctx := context.Background()
	errs := make([]error, 3)
	var wg sync.WaitGroup
	wg.Go(func() { errs[0] = s.Write(ctx, func(store.Tx) error { return nil }) })
	for db.begins.Load() == 0 { // the first write waits in Begin
		runtime.Gosched()
	}
	for i := 1; i < 3; i++ {
		wg.Go(func() { errs[i] = s.Write(ctx, func(store.Tx) error { return nil }) })
	}
	for s.w.queued() < 2 { // the other two wait behind it: one batch
		runtime.Gosched()
	}
	close(db.wait)
	wg.Wait()
	for i, err := range errs {
		if store.UnavailableCause(err) != store.CauseLocked {
			t.Errorf("write %d = %v, want unavailable (locked)", i, err)
		}
	}
	if n := db.begins.Load(); n != 2 {
		t.Errorf("Begin ran %d times, want 2 (the first write's, the batch's once)", n)
	}
}

// TestQueueFullSparesTheAuditWrite: a write that finds the queue full is
// refused at once with store.ErrBusy, whose cause (store.ErrorClass) says
// the write queue is full; the audit trail's write (store.WithAuditWrite)
// is queued beyond the bound instead, so that the AuditEvents of the
// refused requests are written.
func TestQueueFullSparesTheAuditWrite(t *testing.T) {
	db := &lockedDB{wait: make(chan struct{})}
	s := New(db, &Dialect{Name: "test", Placeholder: func(int) string { return "?" }}, Config{MaxQueue: 1})
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Write(ctx, func(store.Tx) error { return nil }) })
	for db.begins.Load() == 0 { // the first write holds the lane in Begin
		runtime.Gosched()
	}
	wg.Go(func() { _ = s.Write(ctx, func(store.Tx) error { return nil }) })
	for s.w.queued() < 1 { // the queue is full behind it
		runtime.Gosched()
	}
	err := s.Write(ctx, func(store.Tx) error { return nil })
	if !errors.Is(err, store.ErrBusy) || !errors.Is(err, store.ErrUnavailable) ||
		store.UnavailableCause(err) != store.CauseQueueFull {
		t.Errorf("write with the queue full = %v (cause %q), want ErrBusy of cause %q", err, store.UnavailableCause(err), store.CauseQueueFull)
	}
	if class := store.ErrorClass(err); !strings.Contains(class, "cause: write queue full") {
		t.Errorf("ErrorClass = %q, want it to name the cause", class)
	}
	var audit error
	refused := make(chan struct{})
	wg.Go(func() {
		if audit = s.Write(store.WithAuditWrite(ctx), func(store.Tx) error { return nil }); errors.Is(audit, store.ErrBusy) {
			close(refused)
		}
	})
wait:
	for s.w.queued() < 2 { // queued beyond the bound, not refused
		select {
		case <-refused:
			break wait
		default:
			runtime.Gosched()
		}
	}
	close(db.wait)
	wg.Wait()
	if errors.Is(audit, store.ErrBusy) {
		t.Errorf("the audit write was refused: %v", audit)
	}
}
