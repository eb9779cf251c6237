package jobs

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres/pgtest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// gatewayStores opens n stores on one database, as n gateways do: on one
// SQLite file, or on one PostgreSQL schema (skipped without
// GATEWAY_TEST_POSTGRES_URL).
func gatewayStores(t *testing.T, backend string, n int) []store.Store {
	t.Helper()
	ctx := context.Background()
	var dsn string
	if backend == "postgres" {
		dsn, _ = pgtest.Schema(t, "kgj", "the jobs tests of several gateways")
	} else {
		dsn = filepath.Join(t.TempDir(), "jobs.db")
	}
	var out []store.Store
	for range n {
		var st store.Store
		var err error
		if backend == "postgres" {
			st, err = postgres.Open(ctx, dsn, postgres.Options{})
		} else {
			st, err = sqlite.Open(ctx, dsn, sqlite.Options{})
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		out = append(out, st)
	}
	return out
}

// TestActivePerClientAtOnceAcrossGateways: a client's submits sent at the
// same moment to three gateways on one PostgreSQL database pass the bound
// MaxActive times in all.
func TestActivePerClientAtOnceAcrossGateways(t *testing.T) {
	sts := gatewayStores(t, "postgres", 3)
	ctx := context.Background()
	h := map[string]Handler{"count": counter(new(atomic.Int32), nil)} // not started
	var gws []*Service
	for _, st := range sts {
		gws = append(gws, New(Config{Store: st, Handlers: h}))
	}
	for round := range 5 {
		alice := caller(fmt.Sprintf("alice-%d", round), "clinic-a")
		var wg sync.WaitGroup
		var ok, refused atomic.Int32
		for i := range 4 * MaxActive {
			wg.Go(func() {
				_, err := gws[i%len(gws)].Submit(ctx, alice, "count", []byte(`{"N":1}`), false)
				switch {
				case err == nil:
					ok.Add(1)
				case TooMany(err):
					refused.Add(1)
				default:
					t.Errorf("Submit = %v", err)
				}
			})
		}
		wg.Wait()
		if ok.Load() != MaxActive || refused.Load() != 3*MaxActive {
			t.Errorf("round %d: %d submitted, %d refused; want %d and %d", round, ok.Load(), refused.Load(), MaxActive, 3*MaxActive)
		}
	}
}

// TestClaimNamesItsGateway: a running job's claim names the gateway that
// holds it (Config.Instance), for jobs list (probe p33 F5).
func TestClaimNamesItsGateway(t *testing.T) {
	st := openStore(t)
	started, release := make(chan struct{}), make(chan struct{})
	s := New(Config{Store: st, Instance: "gw-a pid 7", Poll: 5 * time.Millisecond, Handlers: map[string]Handler{
		"block": func(ctx context.Context, run *Run) ([]byte, error) {
			close(started)
			select {
			case <-release:
			case <-ctx.Done():
			}
			return []byte(`{}`), nil
		}}})
	s.Start()
	defer s.Close()
	ctx := context.Background()
	j, err := s.Submit(ctx, caller("alice", "clinic-a"), "block", []byte(`{}`), false)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	got, err := st.Job(ctx, j.ID)
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if h := ClaimHolder(got.Claim); got.Status != store.JobRunning || h != "gw-a pid 7" {
		t.Errorf("running job: status %s, ClaimHolder(claim) = %q; want running, held by gw-a pid 7", got.Status, h)
	}
	if h := ClaimHolder(ClaimToken("")); h != "" {
		t.Errorf("ClaimHolder(a claim of no instance) = %q, want none", h)
	}
}
