package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// GroupCommitter is the part of a Store whose write queue a test can
// watch (the backends' group commit; see store.Store.Write). The group
// commit tests need it to know that writes are queued, not to time them.
type GroupCommitter interface {
	// QueuedWrites is how many writes wait for a lane.
	QueuedWrites() int
	// GroupCommit tells how many lanes serve the queue and how many writes
	// one transaction takes at most.
	GroupCommit() (lanes, maxBatch int)
}

// waitQueued waits until s has at least n writes waiting (the test fails
// if that takes a minute: a write that never reaches the queue).
func waitQueued(t *testing.T, s GroupCommitter, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for s.QueuedWrites() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued after a minute, want %d", s.QueuedWrites(), n)
		}
		time.Sleep(time.Millisecond) // polling the queue, not timing anything
	}
}

// blockLanes starts one write per lane that each block until release is
// closed, and waits until all of them run (none is queued any more and a
// write queued after them waits): the writes queued next wait for them and
// then go, in batches, through the lanes.
func blockLanes(t *testing.T, s store.Store, g GroupCommitter, release <-chan struct{}) *sync.WaitGroup {
	t.Helper()
	lanes, _ := g.GroupCommit()
	var wg sync.WaitGroup
	for i := range lanes {
		// One at a time, so that each lane takes one.
		running, done := make(chan struct{}), make(chan struct{})
		signal := sync.OnceFunc(func() { close(running) }) // a rerun of fn signals nothing
		wg.Go(func() {
			defer close(done)
			err := s.Write(context.Background(), func(tx store.Tx) error {
				signal()
				<-release
				return tx.Put(res("Basic", fmt.Sprintf("blocker-%d", i), 1, base), nil)
			})
			if err != nil {
				t.Errorf("blocking write %d: %v", i, err)
			}
		})
		select {
		case <-running:
		case <-done: // the write failed before it ran: the test fails, and waits for nothing
			return &wg
		}
	}
	return &wg
}

// QueuedTogether runs write(0) ... write(n-1), each on a goroutine of its
// own, queued behind writes that hold every lane, and lets them go once
// all n wait: they then share transactions. It returns when all are done;
// the test is skipped for a store without group commit.
func QueuedTogether(t *testing.T, s store.Store, n int, write func(i int)) {
	t.Helper()
	g, ok := s.(GroupCommitter)
	if !ok {
		t.Skip("the store has no group commit")
	}
	release := make(chan struct{})
	letGo := sync.OnceFunc(func() { close(release) })
	defer letGo() // also when waitQueued fails the test: the lanes must end
	blockers := blockLanes(t, s, g, release)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { write(i) })
	}
	waitQueued(t, g, n)
	letGo()
	wg.Wait()
	blockers.Wait()
}

// testGroupCommit: many writes queued at once share transactions; the one
// whose fn fails and the one whose fn panics leave nothing (resource,
// index entry, conditional key, ledger entry, outbox item, chain entry),
// and are answered with their own error and panic; every other write is
// committed whole, and the audit chain verifies.
func testGroupCommit(t *testing.T, s store.Store) {
	const n = 24
	const failing, panicking = 7, 13
	boom := errors.New("boom")
	errs := make([]error, n)
	panics := make([]any, n)
	QueuedTogether(t, s, n, func(i int) {
		defer func() { panics[i] = recover() }()
		errs[i] = s.Write(context.Background(), func(tx store.Tx) error {
			if err := entryWrites(tx, fmt.Sprint("g", i)); err != nil {
				return err
			}
			switch i {
			case failing:
				return boom
			case panicking:
				panic("fn panicked")
			}
			return nil
		})
	})
	for i := range n {
		switch i {
		case failing:
			if errs[i] != boom || panics[i] != nil {
				t.Errorf("failing write: %v, panic %v; want its own error", errs[i], panics[i])
			}
		case panicking:
			if panics[i] != "fn panicked" {
				t.Errorf("panicking write: %v, panic %v; want its panic passed on", errs[i], panics[i])
			}
		default:
			if errs[i] != nil || panics[i] != nil {
				t.Errorf("write %d: %v, panic %v; want committed", i, errs[i], panics[i])
			}
		}
	}
	var ids []string
	for i := range n {
		expectEntry(t, s, nil, fmt.Sprint("g", i), i != failing && i != panicking)
		if i != failing && i != panicking {
			ids = append(ids, fmt.Sprint("audit-g", i))
		}
	}
	chainHolds(t, s, ids)
}

// chainHolds checks that the audit chain verifies and holds exactly the
// entries ids (in any order).
func chainHolds(t *testing.T, s store.Store, ids []string) {
	t.Helper()
	entries, err := verifyChain(t, s)
	if err != nil {
		t.Errorf("chain does not verify: %v", err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.ID)
	}
	slices.Sort(got)
	ids = slices.Sorted(slices.Values(ids))
	if !slices.Equal(got, ids) {
		t.Errorf("chain holds %v, want %v", got, ids)
	}
}

// testGroupCommitSeesEarlier: a write sees what the writes before it in
// its shared transaction wrote, and a conditional create decided there
// is made once: writes queued together that each create Patient "same"
// unless it exists make one resource, and all succeed.
func testGroupCommitSeesEarlier(t *testing.T, s store.Store) {
	const n = 16
	created := make([]bool, n)
	errs := make([]error, n)
	q := query("Patient", clause("identifier", search.TypeToken, "", vSys("urn:same", "1")))
	QueuedTogether(t, s, n, func(i int) {
		for attempt := 0; attempt < store.MaxWriteAttempts; attempt++ {
			errs[i] = s.Write(context.Background(), func(tx store.Tx) error {
				created[i] = false
				pg, err := tx.Search(q)
				if err != nil || len(pg.Matches) > 0 {
					return err
				}
				id := fmt.Sprint("same-", i)
				if err := tx.Put(res("Patient", id, 1, base), []search.Entry{tok("identifier", "urn:same", "1")}); err != nil {
					return err
				}
				created[i] = true
				return tx.ClaimKey("Patient?identifier=urn:same|1", "Patient", id)
			})
			if !errors.Is(errs[i], store.ErrConflict) {
				break
			}
		}
	})
	made := 0
	for i := range n {
		if errs[i] != nil {
			t.Errorf("write %d: %v", i, errs[i])
		}
		if created[i] {
			made++
		}
	}
	pg, err := s.Search(context.Background(), q)
	if err != nil || len(pg.Matches) != 1 || made != 1 {
		t.Errorf("%d creates reported, %d stored (%v); want exactly one", made, len(pg.Matches), err)
	}
}

// testGroupCommitFlushConflict: writes queued together that each create
// the same resource (version 1 of Basic/dup, buffered by Put and found
// taken only when the batch's writes reach the database) and writes of
// their own in between: exactly one of the creates commits, every other
// is answered ErrConflict and leaves nothing, and the other writes all
// commit.
func testGroupCommitFlushConflict(t *testing.T, s store.Store) {
	const n = 12
	errs := make([]error, n)
	QueuedTogether(t, s, n, func(i int) {
		errs[i] = s.Write(context.Background(), func(tx store.Tx) error {
			if i%2 == 1 {
				return entryWrites(tx, fmt.Sprint("fc", i))
			}
			r := res("Basic", "dup", 1, base)
			r.Body = []byte(fmt.Sprintf(`{"resourceType":"Basic","id":"dup","n":%d}`, i))
			return tx.Put(r, []search.Entry{tok("code", "urn:dup", fmt.Sprint(i))})
		})
	})
	winner := -1
	var chain []string
	for i := range n {
		switch {
		case i%2 == 1:
			if errs[i] != nil {
				t.Errorf("write %d: %v; want committed", i, errs[i])
			}
			expectEntry(t, s, nil, fmt.Sprint("fc", i), true)
			chain = append(chain, fmt.Sprint("audit-fc", i))
		case errs[i] == nil:
			if winner >= 0 {
				t.Errorf("creates %d and %d of Basic/dup both succeeded, want exactly one", winner, i)
			}
			winner = i
		case !errors.Is(errs[i], store.ErrConflict):
			t.Errorf("create %d: %v; want ErrConflict or success", i, errs[i])
		}
	}
	if winner < 0 {
		t.Fatal("no create of Basic/dup succeeded, want exactly one")
	}
	r, err := s.Read(context.Background(), "Basic", "dup")
	if err != nil || r.Version != 1 || !strings.Contains(string(r.Body), fmt.Sprintf(`"n":%d}`, winner)) {
		t.Fatalf("Basic/dup: %v %v; want version 1 of create %d", r, err, winner)
	}
	// Only the committed create's index entry: each create's own code
	// finds Basic/dup for the winner and nothing for the others.
	for i := 0; i < n; i += 2 {
		expect(t, s, fmt.Sprint("code of create ", i),
			query("Basic", clause("code", search.TypeToken, "", vSys("urn:dup", fmt.Sprint(i)))), keptIDs(i == winner, "dup")...)
	}
	chainHolds(t, s, chain)
}

// testGroupCommitFair: writes are served in the order they were queued.
// With the lanes held, writes are queued one at a time, then the lanes
// are let go. Each lane takes the oldest waiting writes as a batch (the
// writes that share a Tx), so every batch holds consecutive queue
// positions and runs them in order; with one lane the batches run one
// after the other, so every write runs in queue order. (With several
// lanes, a write waits behind at most the writes its own batch runs
// before it and those the other lanes run meanwhile.)
func testGroupCommitFair(t *testing.T, s store.Store) {
	g, ok := s.(GroupCommitter)
	if !ok {
		t.Skip("the store has no group commit")
	}
	lanes, maxBatch := g.GroupCommit()
	n := 3*lanes*maxBatch + 5
	release := make(chan struct{})
	blockers := blockLanes(t, s, g, release)
	type run struct {
		pos int
		tx  store.Tx
	}
	var mu sync.Mutex
	var order []run // in the order the fns ran
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			err := s.Write(context.Background(), func(tx store.Tx) error {
				mu.Lock()
				order = append(order, run{i, tx})
				mu.Unlock()
				return tx.Put(res("Basic", fmt.Sprint("fair-", i), 1, base), nil)
			})
			if err != nil {
				t.Errorf("write %d: %v", i, err)
			}
		})
		waitQueued(t, g, i+1) // write i is queued before write i+1 starts
	}
	close(release)
	wg.Wait()
	blockers.Wait()
	if len(order) != n {
		t.Fatalf("%d fns ran for %d writes", len(order), n)
	}
	batches := map[store.Tx][]int{} // queue positions, in run order
	for _, r := range order {
		batches[r.tx] = append(batches[r.tx], r.pos)
	}
	for _, b := range batches {
		if len(b) > maxBatch {
			t.Errorf("a batch ran %d writes, more than %d", len(b), maxBatch)
		}
		for k := 1; k < len(b); k++ {
			if b[k] != b[k-1]+1 {
				t.Errorf("a batch ran queue positions %v: not the consecutive oldest, in order", b)
				break
			}
		}
	}
	if lanes == 1 {
		for k, r := range order {
			if r.pos != k {
				t.Errorf("with one lane, write %d ran as the %d-th", r.pos, k)
				break
			}
		}
	}
}

// testGroupCommitShare: with several lanes, a lane takes its share of the
// writes waiting (their number over the lanes, rounded up), not all of
// them: n writes queued at once behind the held lanes run in batches of
// at most ceil(n / lanes), so the lanes split them.
func testGroupCommitShare(t *testing.T, s store.Store) {
	g, ok := s.(GroupCommitter)
	if !ok {
		t.Skip("the store has no group commit")
	}
	lanes, maxBatch := g.GroupCommit()
	if lanes < 2 {
		t.Skip("one write lane: it takes the queue")
	}
	n := min(4*lanes+1, lanes*maxBatch)
	share := (n + lanes - 1) / lanes
	var mu sync.Mutex
	sizes := map[store.Tx]int{}
	QueuedTogether(t, s, n, func(i int) {
		err := s.Write(context.Background(), func(tx store.Tx) error {
			mu.Lock()
			sizes[tx]++
			mu.Unlock()
			return tx.Put(res("Basic", fmt.Sprint("share-", i), 1, base), nil)
		})
		if err != nil {
			t.Errorf("write %d: %v", i, err)
		}
	})
	for _, k := range sizes {
		if k > share {
			t.Errorf("a batch ran %d of the %d writes queued together, more than a share of %d for %d lanes", k, n, share, lanes)
		}
	}
}

// testGroupCommitJobLimit: a job submit refused at its client's limit
// (CreateJob with a JobLimit, store.ErrLimit) inside a group-committed
// batch is an answer, not a failure of the batch: the writes sharing its
// transaction commit in their first run (each write's fn runs once), and
// the refused job is not inserted.
func testGroupCommitJobLimit(t *testing.T, s store.Store) {
	ctx := context.Background()
	held := &store.Job{ID: "gl-held", Kind: "export", Tenant: "clinic-a", Owner: "client-gl", Total: -1}
	if err := s.CreateJob(ctx, held, nil); err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	const n = 8
	const refused = 3
	errs := make([]error, n)
	runs := make([]int, n)
	QueuedTogether(t, s, n, func(i int) {
		if i == refused {
			j := &store.Job{ID: "gl-refused", Kind: "export", Tenant: "clinic-a", Owner: "client-gl", Total: -1}
			errs[i] = s.CreateJob(ctx, j, &store.JobLimit{Max: 1, Now: time.Now()})
			return
		}
		errs[i] = s.Write(ctx, func(tx store.Tx) error {
			runs[i]++
			return entryWrites(tx, fmt.Sprint("gl", i))
		})
	})
	for i := range n {
		switch {
		case i == refused:
			if !errors.Is(errs[i], store.ErrLimit) {
				t.Errorf("refused submit = %v, want ErrLimit", errs[i])
			}
		case errs[i] != nil:
			t.Errorf("write %d = %v", i, errs[i])
		case runs[i] != 1:
			t.Errorf("write %d ran %d times, want once: the refused submit failed its batch", i, runs[i])
		}
	}
	if _, err := s.Job(ctx, "gl-refused"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused job: %v, want ErrNotFound (not inserted)", err)
	}
}
