package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openStore(t *testing.T) store.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "jobs.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func caller(client, tenant string) *auditlog.Scope {
	return auditlog.NewScope("", &auth.Principal{ClientID: client, Tenant: tenant})
}

// wait polls the job until cond holds (a job runs in the background; the
// test waits for its state, never for a time).
func wait(t *testing.T, s *Service, sc *auditlog.Scope, id string, cond func(*store.Job) bool) *store.Job {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		j, err := s.Job(context.Background(), sc, id)
		if err == nil && cond(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: condition not reached (last %+v, %v)", id, j, err)
		}
		time.Sleep(5 * time.Millisecond) // polling a background job, not timing the test
	}
}

// counter is a handler that counts to its request's n, saving a part and
// a checkpoint per step, from where its checkpoint says.
func counter(started *atomic.Int32, gate chan struct{}) Handler {
	return func(ctx context.Context, run *Run) ([]byte, error) {
		started.Add(1)
		var req struct{ N int }
		if err := json.Unmarshal(run.Job.Request, &req); err != nil {
			return nil, err
		}
		i := 0
		if run.Job.Checkpoint != nil {
			if err := json.Unmarshal(run.Job.Checkpoint, &i); err != nil {
				return nil, err
			}
		}
		for ; i < req.N; i++ {
			if gate != nil {
				select {
				case <-gate:
				case <-ctx.Done():
					return nil, ctx.Err()
				}
			}
			run.Progress(int64(i+1), int64(req.N))
			cp, _ := json.Marshal(i + 1)
			parts := []store.JobPart{{File: 1, Part: i, Data: []byte{byte('a' + i)}},
				{File: PatientsFile(1), Part: i, Data: []byte("Patient/p" + strconv.Itoa(i) + "\n")}}
			if err := run.Save(ctx, cp, parts); err != nil {
				return nil, err
			}
		}
		return json.Marshal(map[string]int{"counted": req.N})
	}
}

func file(t *testing.T, s *Service, sc *auditlog.Scope, id string, n int) string {
	t.Helper()
	var out []byte
	if err := s.File(context.Background(), sc, id, n, func(p []byte) error { out = append(out, p...); return nil }); err != nil {
		t.Fatalf("File: %v", err)
	}
	return string(out)
}

func TestRunsOnceForItsOwner(t *testing.T) {
	st := openStore(t)
	var started atomic.Int32
	s := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&started, nil)}, Poll: 10 * time.Millisecond})
	s.Start()
	defer s.Close()
	ctx := context.Background()
	alice := caller("alice", "clinic-a")
	j, err := s.Submit(ctx, alice, "count", []byte(`{"N":5}`), false)
	if err != nil {
		t.Fatal(err)
	}
	done := wait(t, s, alice, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	if string(done.Result) != `{"counted":5}` || done.Done != 5 || done.Total != 5 || done.Expires.IsZero() {
		t.Errorf("done job = %+v", done)
	}
	if f := file(t, s, alice, j.ID, 1); f != "abcde" {
		t.Errorf("file = %q, want abcde", f)
	}
	// A job's files beside those it serves (file 1's patients, numbered
	// PatientsFile(1)) are never a client's.
	for _, n := range []int{0, PatientsFile(1)} {
		if err := s.File(ctx, alice, j.ID, n, func([]byte) error { return nil }); !errors.Is(err, ErrFileUnknown) {
			t.Errorf("File(%d) = %v, want ErrFileUnknown", n, err)
		}
	}
	if started.Load() != 1 {
		t.Errorf("handler started %d times", started.Load())
	}
	for name, sc := range map[string]*auditlog.Scope{
		"another client": caller("bob", "clinic-a"), "another tenant": caller("alice", "clinic-b"),
		// An external issuer's token naming the same client id is
		// another client (auth.Principal.Key).
		"an external issuer's alice": auditlog.NewScope("", &auth.Principal{ClientID: "alice", Tenant: "clinic-a",
			Issuer: "https://idp.example", External: true}),
	} {
		if _, err := s.Job(ctx, sc, j.ID); !errors.Is(err, ErrUnknown) {
			t.Errorf("%s: Job = %v, want ErrUnknown", name, err)
		}
		if err := s.File(ctx, sc, j.ID, 1, func([]byte) error { return nil }); !errors.Is(err, ErrUnknown) {
			t.Errorf("%s: File = %v, want ErrUnknown", name, err)
		}
		if err := s.Cancel(ctx, sc, j.ID); !errors.Is(err, ErrUnknown) {
			t.Errorf("%s: Cancel = %v, want ErrUnknown", name, err)
		}
	}
	// The owner deletes the finished job: gone, files too.
	if err := s.Cancel(ctx, alice, j.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Job(ctx, alice, j.ID); !isCancelled(err) {
		t.Errorf("Job after delete = %v, want not-found job-cancelled", err)
	}
}

// isCancelled: err is the answer for a cancelled job (404, job-cancelled).
func isCancelled(err error) bool {
	kind, _ := outcome.From(err)
	return kind == outcome.NotFound && slices.Contains(outcome.Rules(err), "job-cancelled")
}

// TestExternalOwner: a job an external issuer's client asked for is that
// client's alone (not a registered client's of the same id), and runs as
// it: the scope it runs with names the issuer, for its audit.
func TestExternalOwner(t *testing.T) {
	st := openStore(t)
	var started atomic.Int32
	s := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&started, nil)}, Poll: 10 * time.Millisecond})
	ctx := context.Background()
	ext := auditlog.NewScope("", &auth.Principal{ClientID: "alice", Tenant: "clinic-a", Issuer: "https://idp.example", External: true})
	j, err := s.Submit(ctx, ext, "count", []byte(`{"N":1}`), false)
	if err != nil {
		t.Fatal(err)
	}
	if j.Owner != "https://idp.example|alice" {
		t.Errorf("owner = %q, want the issuer and the client", j.Owner)
	}
	if _, err := s.Job(ctx, ext, j.ID); err != nil {
		t.Errorf("the owner's Job = %v", err)
	}
	if _, err := s.Job(ctx, caller("alice", "clinic-a"), j.ID); !errors.Is(err, ErrUnknown) {
		t.Errorf("the registered alice's Job = %v, want ErrUnknown", err)
	}
	if run := Scope(j, "bulk-export", ""); run.ClientID != j.Owner {
		t.Errorf("the job runs as %q, want its owner %q", run.ClientID, j.Owner)
	}
}

func TestCancelStopsTheHandler(t *testing.T) {
	st := openStore(t)
	var started atomic.Int32
	gate := make(chan struct{})
	count := counter(&started, gate)
	returned := make(chan error, 1)
	// A long lease: only the handler's own Save may see the cancellation,
	// not a lease renewal that happens to fall in between.
	s := New(Config{Store: st, Poll: 10 * time.Millisecond, Lease: time.Hour, Handlers: map[string]Handler{
		"count": func(ctx context.Context, run *Run) ([]byte, error) {
			res, err := count(ctx, run)
			returned <- err
			return res, err
		}}})
	s.Start()
	defer s.Close()
	ctx := context.Background()
	sc := caller("alice", "")
	j, _ := s.Submit(ctx, sc, "count", []byte(`{"N":1000}`), false)
	gate <- struct{}{}
	gate <- struct{}{}
	// Both steps saved: a cancellation before the second step's save
	// would stop the handler there, and it would never take the next.
	wait(t, s, sc, j.ID, func(j *store.Job) bool { return j.Done >= 2 })
	if err := s.Cancel(ctx, sc, j.ID); err != nil {
		t.Fatal(err)
	}
	// Cancel returned once the handler had stopped: its context ended, it
	// took no further step.
	select {
	case err := <-returned:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the handler of the cancelled job returned %v, want context.Canceled", err)
		}
	default:
		t.Fatal("Cancel returned before the handler of the cancelled job stopped")
	}
	raw, err := st.Job(ctx, j.ID)
	if err != nil || raw.Status != store.JobCancelled || raw.Done != 2 {
		t.Errorf("after cancel: %+v, %v", raw, err)
	}
	n := 0
	if err := st.JobFile(ctx, j.ID, 1, func([]byte) error { n++; return nil }); err != nil || n != 0 {
		t.Errorf("files survive the cancel: %d parts, %v", n, err)
	}
	_, err = s.Job(ctx, sc, j.ID)
	if _, issues := outcome.From(err); !isCancelled(err) || !strings.Contains(issues[0].Message, "2 items were done") {
		t.Errorf("Job after cancel = %v, want job-cancelled saying 2 items were done", err)
	}
}

// TestCancelGraceful: a handler that watches Run.Cancelled finishes the
// item it is on, starts no other, and its final state is what the
// cancelled job answers; a cancel made by another process (which does not
// run the job) reaches the run too.
func TestCancelGraceful(t *testing.T) {
	for _, where := range []string{"this process", "another process"} {
		t.Run(where, func(t *testing.T) {
			st := openStore(t)
			var steps atomic.Int32
			inStep := make(chan struct{})
			release := make(chan struct{})
			s := New(Config{Store: st, Poll: 10 * time.Millisecond, Lease: time.Hour, Handlers: map[string]Handler{
				"steps": func(ctx context.Context, run *Run) ([]byte, error) {
					stop := run.Cancelled()
					for {
						select {
						case <-stop:
							return json.Marshal(map[string]string{"summary": fmt.Sprintf("stopped after %d steps", steps.Load())})
						default:
						}
						select {
						case inStep <- struct{}{}:
						case <-stop:
							return json.Marshal(map[string]string{"summary": fmt.Sprintf("stopped after %d steps", steps.Load())})
						}
						<-release // the step is being written: a cancel waits for it
						if ctx.Err() != nil {
							return nil, ctx.Err()
						}
						steps.Add(1)
					}
				}}})
			s.Start()
			defer s.Close()
			ctx := context.Background()
			sc := caller("alice", "")
			j, _ := s.Submit(ctx, sc, "steps", []byte(`{}`), false)
			<-inStep
			release <- struct{}{}
			<-inStep // in its second step
			canceller := s
			if where == "another process" {
				canceller = New(Config{Store: st})
			}
			cancelled := make(chan error, 1)
			go func() { cancelled <- canceller.Cancel(ctx, sc, j.ID) }()
			if where == "this process" {
				select {
				case err := <-cancelled:
					t.Fatalf("Cancel returned (%v) while the handler was in a step", err)
				default:
				}
			} else if err := <-cancelled; err != nil {
				t.Fatal(err)
			} else if !strings.Contains(sc.Description, "running in another gateway process") {
				// What it says is not the final count (an operator's
				// review): the run goes on to the end of its step.
				t.Errorf("the cancel says %q, want that the job runs on in another process until it stops", sc.Description)
			}
			release <- struct{}{} // the step completes
			if where == "this process" {
				if err := <-cancelled; err != nil {
					t.Fatal(err)
				}
			}
			var err error
			for deadline := time.Now().Add(20 * time.Second); ; {
				_, err = s.Job(ctx, sc, j.ID)
				if _, issues := outcome.From(err); isCancelled(err) && strings.Contains(issues[0].Message, "stopped after") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Job after cancel = %v, want job-cancelled with the handler's summary", err)
				}
				time.Sleep(5 * time.Millisecond) // polling a background job, not timing the test
			}
			if _, issues := outcome.From(err); !strings.Contains(issues[0].Message, "stopped after 2 steps") || steps.Load() != 2 {
				t.Errorf("Job after cancel = %v after %d steps, want 2 steps: the one in progress completes, no other starts", err, steps.Load())
			}
		})
	}
}

// TestCloseReleasesAndResumes: a runner that closes releases its job; the
// next one resumes it from the checkpoint (nothing done twice).
func TestCloseReleasesAndResumes(t *testing.T) {
	st := openStore(t)
	var started atomic.Int32
	gate := make(chan struct{})
	a := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&started, gate)}, Poll: 10 * time.Millisecond})
	a.Start()
	ctx := context.Background()
	sc := caller("alice", "")
	j, _ := a.Submit(ctx, sc, "count", []byte(`{"N":6}`), false)
	for range 3 {
		gate <- struct{}{}
	}
	wait(t, a, sc, j.ID, func(j *store.Job) bool { return j.Done == 3 })
	a.Close()
	if raw, _ := st.Job(ctx, j.ID); raw.Status != store.JobQueued || raw.Claim != "" {
		t.Errorf("after Close: %+v, want queued", raw)
	}
	b := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&started, nil)}, Poll: 10 * time.Millisecond})
	b.Start()
	defer b.Close()
	done := wait(t, b, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	// (Attempts counts the claims since the last checkpoint: the resumed
	// run saved some, so it is 1.)
	if f := file(t, b, sc, j.ID, 1); f != "abcdef" || done.Attempts != 1 || started.Load() != 2 {
		t.Errorf("resumed job: file %q, attempts %d, started %d", f, done.Attempts, started.Load())
	}
}

// TestLostLease: a runner stalled past its lease loses the job to another
// process; its next save is refused and it stops; the job completes once.
func TestLostLease(t *testing.T) {
	st := openStore(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixMilli())
	now := func() time.Time { return time.UnixMilli(clock.Load()) }
	gate := make(chan struct{})
	var startedA, startedB atomic.Int32
	a := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&startedA, gate)}, Poll: 10 * time.Millisecond,
		Lease: time.Hour, Now: now})
	a.Start()
	defer a.Close()
	ctx := context.Background()
	sc := caller("alice", "")
	j, _ := a.Submit(ctx, sc, "count", []byte(`{"N":4}`), false)
	gate <- struct{}{}
	wait(t, a, sc, j.ID, func(j *store.Job) bool { return j.Done == 1 })
	clock.Add((2 * time.Hour).Milliseconds()) // a's lease has run out
	b := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&startedB, nil)}, Poll: 10 * time.Millisecond,
		Lease: time.Hour, Now: now})
	b.Start()
	defer b.Close()
	wait(t, b, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	select {
	case gate <- struct{}{}: // a wakes, its save is refused
	case <-time.After(10 * time.Second):
		t.Fatal("runner a stopped waiting")
	}
	if f := file(t, b, sc, j.ID, 1); f != "abcd" || startedB.Load() != 1 {
		t.Errorf("file %q, b started %d times; want abcd, b once", f, startedB.Load())
	}
}

// TestGivesUpOnlyWithoutProgress: a job whose process dies again and
// again is failed after MaxAttempts claims only when none of them saved
// a checkpoint; one that advances each time is finished however many
// claims it takes (an import 330 records from its end was given up after
// five restarts: p7 F11). The failure says how far the job got.
func TestGivesUpOnlyWithoutProgress(t *testing.T) {
	for _, tc := range []struct {
		name     string
		progress bool // each dead claim saves a step
		status   string
	}{
		{"advancing", true, store.JobDone},
		{"stuck", false, store.JobFailed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			ctx := context.Background()
			var clock atomic.Int64
			clock.Store(time.Now().UnixMilli())
			now := func() time.Time { return time.UnixMilli(clock.Load()) }
			sc := caller("alice", "")
			var started atomic.Int32
			s := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&started, nil)}, Poll: 10 * time.Millisecond,
				Lease: time.Minute, Now: now})
			j, err := s.Submit(ctx, sc, "count", []byte(`{"N":8}`), false)
			if err != nil {
				t.Fatal(err)
			}
			// Seven processes in turn claim the job and die; each saves a
			// step (the first only, when stuck).
			for i := range 7 {
				c, err := st.ClaimJob(ctx, []string{"count"}, fmt.Sprint("dead-", i), now(), time.Minute)
				if err != nil || c == nil || c.ID != j.ID {
					t.Fatalf("claim %d = %+v, %v", i, c, err)
				}
				if tc.progress || i == 0 {
					step := i
					if !tc.progress {
						step = 0
					}
					cp, _ := json.Marshal(step + 1)
					err := st.SaveJob(ctx, j.ID, c.Claim, now().Add(time.Minute), store.JobProgress{Done: int64(step + 1), Total: 8,
						Checkpoint: cp, Parts: []store.JobPart{{File: 1, Part: step, Data: []byte{byte('a' + step)}},
							{File: PatientsFile(1), Part: step, Data: []byte("Patient/p" + strconv.Itoa(step) + "\n")}}})
					if err != nil {
						t.Fatal(err)
					}
				}
				clock.Add((2 * time.Minute).Milliseconds()) // the lease runs out
			}
			s.Start()
			defer s.Close()
			got := wait(t, s, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone || j.Status == store.JobFailed })
			if got.Status != tc.status {
				t.Fatalf("job %s (%s), want %s", got.Status, got.Error, tc.status)
			}
			switch tc.status {
			case store.JobDone:
				if f := file(t, s, sc, j.ID, 1); f != "abcdefgh" {
					t.Errorf("file %q, want abcdefgh", f)
				}
			case store.JobFailed:
				if want := "1 of 8 items were done"; !strings.Contains(got.Error, want) || started.Load() != 0 {
					t.Errorf("failed job says %q (started %d), want it to say %q", got.Error, started.Load(), want)
				}
			}
		})
	}
}

func TestFailures(t *testing.T) {
	st := openStore(t)
	var calls atomic.Int32
	s := New(Config{Store: st, Poll: 10 * time.Millisecond, MaxAttempts: 3, Handlers: map[string]Handler{
		"bad": func(context.Context, *Run) ([]byte, error) {
			return nil, outcome.New(outcome.Invalid, "invalid", "x-rule", "the request names no such thing")
		},
		"panics": func(context.Context, *Run) ([]byte, error) { panic("boom") },
		"flaky": func(context.Context, *Run) ([]byte, error) {
			calls.Add(1)
			return nil, store.ErrUnavailable
		},
	}})
	s.Start()
	defer s.Close()
	ctx := context.Background()
	sc := caller("c", "")
	for kind, want := range map[string]string{
		"bad":    "the request names no such thing",
		"panics": "the job failed; the failure has been logged",
		"flaky":  "the database is unavailable; retry later",
	} {
		j, err := s.Submit(ctx, sc, kind, []byte(`{}`), false)
		if err != nil {
			t.Fatal(err)
		}
		got := wait(t, s, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobFailed })
		if got.Error != want {
			t.Errorf("%s: error %q, want %q", kind, got.Error, want)
		}
	}
	if calls.Load() != 3 {
		t.Errorf("a job failing with the database unavailable ran %d times, want 3 (MaxAttempts)", calls.Load())
	}
}

// TestActivePerClient: a client has at most MaxActive jobs of a kind
// queued, uploading or running; one more is Throttled (429 with
// Retry-After, rule job-too-many), while other clients, tenants and kinds
// are unaffected, and a cancelled job frees its place (probe p30 F4: one
// client's imports, unbounded, held the queue for every tenant).
func TestActivePerClient(t *testing.T) {
	st := openStore(t)
	s := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(new(atomic.Int32), nil)}}) // not started: jobs stay queued
	ctx := context.Background()
	alice := caller("alice", "clinic-a")
	var ids []string
	for i := range MaxActive {
		j, err := s.Submit(ctx, alice, "count", []byte(`{"N":1}`), i == 0) // the first one still uploading
		if err != nil {
			t.Fatalf("Submit #%d = %v", i+1, err)
		}
		ids = append(ids, j.ID)
	}
	_, err := s.Submit(ctx, alice, "count", []byte(`{"N":1}`), false)
	kind, _ := outcome.From(err)
	var oe *outcome.Error
	if kind != outcome.Throttled || !slices.Contains(outcome.Rules(err), "job-too-many") || !errors.As(err, &oe) || oe.RetryAfter <= 0 {
		t.Fatalf("Submit #%d = %v, want Throttled job-too-many with a Retry-After", MaxActive+1, err)
	}
	for name, sc := range map[string]*auditlog.Scope{"another client": caller("bob", "clinic-a"), "another tenant": caller("alice", "clinic-b")} {
		if _, err := s.Submit(ctx, sc, "count", []byte(`{"N":1}`), false); err != nil {
			t.Errorf("%s: Submit = %v, want a job", name, err)
		}
	}
	if _, err := s.Submit(ctx, alice, "other", []byte(`{}`), false); err != nil {
		t.Errorf("another kind: Submit = %v, want a job", err)
	}
	if err := s.Cancel(ctx, alice, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Submit(ctx, alice, "count", []byte(`{"N":1}`), false); err != nil {
		t.Errorf("Submit after a cancel = %v, want a job", err)
	}
}

// TestActivePerClientAtOnce: a client's submits sent at the same moment
// cannot all pass the bound (counted and created as one step).
func TestActivePerClientAtOnce(t *testing.T) {
	st := openStore(t)
	s := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(new(atomic.Int32), nil)}}) // not started
	ctx := context.Background()
	alice := caller("alice", "clinic-a")
	var wg sync.WaitGroup
	var ok, refused atomic.Int32
	for range 4 * MaxActive {
		wg.Go(func() {
			_, err := s.Submit(ctx, alice, "count", []byte(`{"N":1}`), false)
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
		t.Errorf("%d submitted, %d refused; want %d and %d", ok.Load(), refused.Load(), MaxActive, 3*MaxActive)
	}
}

// claimingStore claims a queued job right after CheckActive's read of the
// queued jobs, before its read of the running ones: the moment a runner
// (of any gateway) claims one between the two reads.
type claimingStore struct {
	Store
	once sync.Once
}

func (c *claimingStore) ListJobs(ctx context.Context, f store.JobFilter) ([]*store.Job, error) {
	js, err := c.Store.ListJobs(ctx, f)
	if err == nil && f.Status == store.JobQueued && len(js) > 0 {
		c.once.Do(func() {
			_, err = c.Store.ClaimJob(ctx, []string{f.Kind}, "other-gateway", time.Now(), time.Minute)
		})
	}
	return js, err
}

// TestActiveCountsAJobOnce: a job claimed (queued to running) while the
// client's active jobs are counted is one job, not two: with two jobs the
// third is accepted (session 30's CI: a replica's claim between the reads
// refused an export that was within the bound).
func TestActiveCountsAJobOnce(t *testing.T) {
	st := &claimingStore{Store: openStore(t)}
	s := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(new(atomic.Int32), nil)}}) // not started
	ctx := context.Background()
	alice := caller("alice", "clinic-a")
	for i := range MaxActive - 1 {
		if _, err := s.Submit(ctx, alice, "count", []byte(`{"N":1}`), false); err != nil {
			t.Fatalf("Submit #%d = %v", i+1, err)
		}
	}
	if err := s.CheckActive(ctx, alice, "count"); err != nil {
		t.Errorf("CheckActive with %d jobs, one claimed meanwhile = %v, want nil", MaxActive-1, err)
	}
	if _, err := s.Submit(ctx, alice, "count", []byte(`{"N":1}`), false); err != nil {
		t.Errorf("Submit #%d = %v, want a job", MaxActive, err)
	}
}

// uncommittedClaimStore's first ClaimJob returns a queued job with an
// error, as a claim whose transaction failed at its commit had it in hand:
// the job is not claimed.
type uncommittedClaimStore struct {
	Store
	id     string
	failed atomic.Bool
}

func (u *uncommittedClaimStore) ClaimJob(ctx context.Context, kinds []string, claim string, now time.Time, lease time.Duration) (*store.Job, error) {
	if u.id != "" && u.failed.CompareAndSwap(false, true) {
		j, err := u.Store.Job(ctx, u.id)
		if err != nil {
			return nil, err
		}
		return j, store.Unavailable(store.CauseShutdown, errors.New("terminating connection"))
	}
	return u.Store.ClaimJob(ctx, kinds, claim, now, lease)
}

// TestUncommittedClaimIsNotRun: a job a failed claim returned is not run;
// the next claim runs it, once (probe p37 F1: the outbox sent what a
// failed claim returned).
func TestUncommittedClaimIsNotRun(t *testing.T) {
	st := &uncommittedClaimStore{Store: openStore(t)}
	var started atomic.Int32
	s := New(Config{Store: st, Handlers: map[string]Handler{"count": counter(&started, nil)}, Poll: 10 * time.Millisecond})
	ctx := context.Background()
	alice := caller("alice", "clinic-a")
	j, err := s.Submit(ctx, alice, "count", []byte(`{"N":2}`), false)
	if err != nil {
		t.Fatal(err)
	}
	st.id = j.ID
	s.Start()
	defer s.Close()
	wait(t, s, alice, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	if !st.failed.Load() || started.Load() != 1 {
		t.Errorf("handler started %d times (the failed claim seen: %v), want once", started.Load(), st.failed.Load())
	}
}
