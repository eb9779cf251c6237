package postgres

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// ops are one call of each Store method, for the availability tests.
func ops(s *Store) map[string]func(ctx context.Context) error {
	q := &search.Query{Type: "Basic", Total: true}
	return map[string]func(ctx context.Context) error{
		"Ping": s.Ping,
		"Read": func(ctx context.Context) error {
			_, err := s.Read(ctx, "Basic", "a")
			return err
		},
		"VRead": func(ctx context.Context) error {
			_, err := s.VRead(ctx, "Basic", "a", 1)
			return err
		},
		"History": func(ctx context.Context) error {
			_, _, err := s.History(ctx, store.HistoryQuery{Type: "Basic"})
			return err
		},
		"Search": func(ctx context.Context) error {
			_, err := s.Search(ctx, q)
			return err
		},
		"Write": func(ctx context.Context) error {
			return s.Write(ctx, func(tx store.Tx) error {
				_, err := tx.Search(q)
				return err
			})
		},
		"Savepoint": func(ctx context.Context) error {
			return s.Write(ctx, func(tx store.Tx) error {
				return tx.Savepoint(func() error {
					_, err := tx.Search(q)
					return err
				})
			})
		},
		"AuditChainAfter": func(ctx context.Context) error {
			return s.AuditChainAfter(ctx, 0, func(audit.ChainEntry) error { return nil })
		},
		"UseNonce": func(ctx context.Context) error {
			_, err := s.UseNonce(ctx, "client:jti", time.Now().Add(time.Minute))
			return err
		},
	}
}

func putBasic(t *testing.T, s *Store, id string, version int64) {
	t.Helper()
	err := s.Write(context.Background(), func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Basic", ID: id, Version: version, Body: []byte(`{}`)}, nil)
	})
	if err != nil {
		t.Fatalf("put %s: %v", id, err)
	}
}

// TestConnectionsTerminated: the server ends every connection of the
// store (an administrator's pg_terminate_backend, a failover): each call
// then succeeds or fails with ErrUnavailable, and the store recovers by
// itself on the next calls.
func TestConnectionsTerminated(t *testing.T) {
	u := freshDB(t)
	app := "kgt_terminate_" + strings.TrimPrefix(t.Name(), "Test")
	s, err := Open(context.Background(), u+sep(u)+"application_name="+app, Options{MaxConns: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putBasic(t, s, "a", 1)
	ctx := context.Background()
	for name, op := range ops(s) {
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		var n int
		err = conn.QueryRow(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`, app).Scan(&n)
		conn.Close(ctx)
		if err != nil || n == 0 {
			t.Fatalf("terminate: %d backends, %v", n, err)
		}
		recovered := false
		for attempt := range 2 {
			err := op(ctx)
			if err == nil {
				recovered = true
				break
			}
			t.Logf("%s attempt %d after termination: %v", name, attempt, err)
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("%s attempt %d after termination: %v, want nil or ErrUnavailable", name, attempt, err)
			}
		}
		if !recovered {
			t.Errorf("%s: no recovery on the second attempt", name)
		}
	}
}

// TestServerRestart stops the PostgreSQL cluster, checks that every call
// fails with ErrUnavailable (quickly), that a transaction in flight fails
// with ErrUnavailable, then starts the cluster and checks that the same
// store recovers. It needs GATEWAY_TEST_POSTGRES_RESTART=1 and a local
// Debian cluster the test may stop and start (pg_ctlcluster, as root; the
// cluster is GATEWAY_TEST_POSTGRES_CLUSTER, e.g. "15/main", default the
// newest version's main). Never run it beside other users of the server.
func TestServerRestart(t *testing.T) {
	if os.Getenv("GATEWAY_TEST_POSTGRES_RESTART") != "1" {
		t.Skip("GATEWAY_TEST_POSTGRES_RESTART=1 not set: this test stops and starts the local PostgreSQL cluster")
	}
	ver, name := clusterName(t)
	ctl := func(action string) {
		t.Helper()
		if out, err := exec.Command("pg_ctlcluster", ver, name, action, "-m", "fast").CombinedOutput(); err != nil && action == "stop" {
			t.Fatalf("pg_ctlcluster %s: %v %s", action, err, out)
		} else if err != nil {
			t.Logf("pg_ctlcluster %s: %v %s", action, err, out)
		}
	}
	u := freshDB(t)
	s, err := Open(context.Background(), u, Options{ConnectTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	putBasic(t, s, "a", 1)
	ctx := context.Background()

	// A transaction in flight when the server stops.
	inTx, stopped := make(chan struct{}), make(chan struct{})
	txErr := make(chan error, 1)
	go func() {
		txErr <- s.Write(ctx, func(tx store.Tx) error {
			close(inTx)
			<-stopped
			return tx.Put(&store.Resource{Type: "Basic", ID: "b", Version: 1, Body: []byte(`{}`)}, nil)
		})
	}()
	<-inTx
	started := false
	t.Cleanup(func() {
		if !started {
			ctl("start")
		}
	})
	ctl("stop")
	close(stopped)
	err = <-txErr
	t.Logf("transaction in flight at shutdown: %v", err)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("transaction in flight at shutdown: %v, want ErrUnavailable", err)
	}
	for name, op := range ops(s) {
		start := time.Now()
		err := op(ctx)
		t.Logf("%s with the server stopped (%v): %v", name, time.Since(start).Round(time.Millisecond), err)
		if !errors.Is(err, store.ErrUnavailable) {
			t.Errorf("%s with the server stopped: %v, want ErrUnavailable", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s took %v to fail", name, d)
		}
	}
	if s2, err := Open(ctx, u, Options{}); !errors.Is(err, store.ErrUnavailable) {
		if s2 != nil {
			s2.Close()
		}
		t.Errorf("Open with the server stopped: %v, want ErrUnavailable", err)
	}

	ctl("start")
	started = true
	restarted := time.Now()
	deadline := restarted.Add(60 * time.Second)
	for s.Ping(ctx) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the store did not recover within 60s of the server's start")
		}
		time.Sleep(200 * time.Millisecond) // polling a starting server
	}
	t.Logf("Ping succeeds %v after pg_ctlcluster start returned", time.Since(restarted).Round(time.Millisecond))
	for name, op := range ops(s) {
		if err := op(ctx); err != nil {
			t.Errorf("%s after restart: %v", name, err)
		}
	}
	putBasic(t, s, "a", 2)
	if _, err := s.Read(ctx, "Basic", "b"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the transaction cut by the shutdown: Read %v, want ErrNotFound", err)
	}
}

// clusterName is the Debian cluster to stop and start.
func clusterName(t *testing.T) (string, string) {
	if c := os.Getenv("GATEWAY_TEST_POSTGRES_CLUSTER"); c != "" {
		ver, name, ok := strings.Cut(c, "/")
		if !ok {
			t.Fatalf("GATEWAY_TEST_POSTGRES_CLUSTER=%q: want version/name, e.g. 15/main", c)
		}
		return ver, name
	}
	entries, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(entries) == 0 {
		t.Skipf("no Debian PostgreSQL cluster (/etc/postgresql): %v", err)
	}
	var vers []string
	for _, e := range entries {
		vers = append(vers, e.Name())
	}
	sort.Slice(vers, func(i, j int) bool {
		return len(vers[i]) < len(vers[j]) || len(vers[i]) == len(vers[j]) && vers[i] < vers[j]
	})
	return vers[len(vers)-1], "main"
}
