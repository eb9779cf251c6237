package jobs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestPurgeKeepsRetention: one purge removes every job that has expired,
// however many, with their files, and leaves the others (p32: the runner
// removed at most 10 a minute, so retention was not kept once more than
// 10 jobs a minute finished).
func TestPurgeKeepsRetention(t *testing.T) {
	st := openStore(t)
	s := New(Config{Store: st})
	ctx := context.Background()
	now := time.Now()
	for i := range 45 {
		id := fmt.Sprintf("expired-%d", i)
		if err := st.CreateJob(ctx, &store.Job{ID: id, Kind: "export", Owner: "alice"}, nil); err != nil {
			t.Fatal(err)
		}
		if err := st.CancelJob(ctx, id, now.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateJob(ctx, &store.Job{ID: "kept", Kind: "export", Owner: "alice"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.CancelJob(ctx, "kept", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, more := s.purge(ctx, now); n != 45 || more {
		t.Errorf("purge = %d, %v; want 45, false", n, more)
	}
	if left, err := st.PurgeJobs(ctx, now, 1000); err != nil || left != 0 {
		t.Errorf("expired jobs left after a purge: %d, %v; want 0", left, err)
	}
	if _, err := st.Job(ctx, "kept"); err != nil {
		t.Errorf("the job not yet expired: %v, want it kept", err)
	}
}
