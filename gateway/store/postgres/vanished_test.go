package postgres

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/internal/blackhole"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// hangGuard bounds a call that must end by itself (within the store's
// configured timeouts): a call still running after it is a hang, not a
// slow answer. It is no performance assertion.
const hangGuard = 60 * time.Second

// call runs op and fails the test if it does not return within hangGuard.
func call(t *testing.T, name string, op func(ctx context.Context) error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- op(context.Background()) }()
	select {
	case err := <-done:
		return err
	case <-time.After(hangGuard):
		t.Fatalf("%s: no answer within %v: the store hangs on a vanished host", name, hangGuard)
		return nil
	}
}

// syncBuffer is a log destination the store's goroutines and the test
// share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// viaProxy is u with its host and port replaced by addr's.
func viaProxy(t *testing.T, u, addr string) string {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pu.Host = addr
	return pu.String()
}

// TestVanishedHost: the database host vanishes without a TCP reset (a
// proxy in front of the server that holds every connection and forwards
// nothing). Every call fails with ErrUnavailable within the configured
// timeouts instead of hanging; after a few failed connection attempts
// the circuit breaker opens and calls fail at once with
// store.CauseCircuitOpen, logged (WARN) without the URL's userinfo; when
// the host is back, one probe connection closes the breaker and every
// call succeeds again.
func TestVanishedHost(t *testing.T) {
	u := freshDB(t)
	target, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := blackhole.Start(target.Host)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	s, err := Open(context.Background(), viaProxy(t, u, proxy.Addr()), Options{
		MaxConns: 4, ConnectTimeout: time.Second, StatementTimeout: time.Second, AcquireTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer proxy.Close() // first: a store that hangs on it is freed
	putBasic(t, s, "a", 1)
	for name, op := range ops(s) {
		if err := call(t, name, op); err != nil {
			t.Fatalf("%s before the host vanished: %v", name, err)
		}
	}

	proxy.Blackhole()
	opened := false
	for attempt := 0; attempt < 20 && !opened; attempt++ {
		for name, op := range ops(s) {
			err := call(t, name, op)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Fatalf("%s with the host vanished: %v, want ErrUnavailable", name, err)
			}
			if store.UnavailableCause(err) == store.CauseCircuitOpen {
				opened = true
			}
		}
	}
	if !opened {
		t.Fatal("the circuit breaker never opened while the host was gone")
	}
	// Open: every call is refused without touching the network.
	for name, op := range ops(s) {
		if err := call(t, name, op); store.UnavailableCause(err) != store.CauseCircuitOpen {
			t.Errorf("%s with the breaker open: %v, want cause %q", name, err, store.CauseCircuitOpen)
		}
	}

	proxy.Forward()
	deadline := time.Now().Add(hangGuard)
	for call(t, "Ping", s.Ping) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("the store did not recover within %v of the host's return", hangGuard)
		}
		time.Sleep(100 * time.Millisecond) // the probe reconnects in the background
	}
	for name, op := range ops(s) {
		if err := call(t, name, op); err != nil {
			t.Errorf("%s after the host came back: %v", name, err)
		}
	}
	putBasic(t, s, "a", 2)

	out := logs.String()
	for _, want := range []string{`"level":"WARN","msg":"database circuit breaker open"`, `"level":"WARN","msg":"database circuit breaker closed"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if pu, _ := url.Parse(u); pu.User != nil && strings.Contains(out, pu.User.String()) {
		t.Errorf("log names the URL's userinfo:\n%s", out)
	}
}

// TestLockTimeout: a read or write that waits on a lock another session
// holds (LOCK TABLE ... IN ACCESS EXCLUSIVE MODE) fails after the lock
// timeout with ErrUnavailable, cause store.CauseLocked (503 store-busy at
// the edge), instead of waiting for the search or statement timeout.
// The statement timeout is longer than the test's hang guard, so only
// the lock timeout can end the wait.
func TestLockTimeout(t *testing.T) {
	s, u := openFresh(t, Options{LockTimeout: 300 * time.Millisecond, StatementTimeout: 2 * hangGuard})
	putBasic(t, s, "a", 1)
	ctx := context.Background()
	holder, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE resources, current IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	q := &search.Query{Type: "Basic", Total: true}
	for name, op := range map[string]func(ctx context.Context) error{
		"Search": func(ctx context.Context) error { _, err := s.Search(ctx, q); return err },
		"Read":   func(ctx context.Context) error { _, err := s.Read(ctx, "Basic", "a"); return err },
		"Write": func(ctx context.Context) error {
			return s.Write(ctx, func(tx store.Tx) error {
				return tx.Put(&store.Resource{Type: "Basic", ID: "b", Version: 1, Body: []byte(`{}`)}, nil)
			})
		},
	} {
		err := call(t, name, op)
		if !errors.Is(err, store.ErrUnavailable) || store.UnavailableCause(err) != store.CauseLocked {
			t.Errorf("%s behind an ACCESS EXCLUSIVE lock: %v, want ErrUnavailable (%s)", name, err, store.CauseLocked)
		}
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	putBasic(t, s, "b", 1)
}

// TestCloseBounded: Close does not wait without end for a connection in
// use (a transaction stuck on a server that stopped answering, a caller
// that does not return): past its bound it returns an error and leaves
// the rest to end on its own.
func TestCloseBounded(t *testing.T) {
	u := freshDB(t)
	s, err := Open(context.Background(), u, Options{})
	if err != nil {
		t.Fatal(err)
	}
	inTx, release := make(chan struct{}), make(chan struct{})
	defer close(release)
	go func() {
		_ = s.Write(context.Background(), func(tx store.Tx) error {
			close(inTx)
			<-release
			return nil
		})
	}()
	<-inTx
	if err := call(t, "Close", func(context.Context) error { return s.Close() }); err == nil {
		t.Error("Close with a connection in use = nil, want an error saying it stopped waiting")
	}
}
