package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The durable jobs (store.Jobs) and the bulk reads (store.Bulk).

// newJob creates a queued job of kind for tenant.
func newJob(t *testing.T, s store.Store, id, kind, tenant string) *store.Job {
	t.Helper()
	j := &store.Job{ID: id, Kind: kind, Tenant: tenant, Owner: "client-" + tenant, Request: []byte(`{"a":1}`), Total: -1}
	if err := s.CreateJob(context.Background(), j, nil); err != nil {
		t.Fatalf("CreateJob(%s): %v", id, err)
	}
	return j
}

// jobFile reads one file of a job whole.
func jobFile(t *testing.T, s store.Store, id string, file int) string {
	t.Helper()
	var b bytes.Buffer
	err := s.JobFile(context.Background(), id, file, func(p []byte) error { b.Write(p); return nil })
	if err != nil {
		t.Fatalf("JobFile(%s, %d): %v", id, file, err)
	}
	return b.String()
}

// testJobs: a job's life: created, claimed, saved with parts and a
// checkpoint, finished, read back, listed, purged after it expired.
func testJobs(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	j := newJob(t, s, "j1", "export", "clinic-a")
	if j.Status != store.JobQueued || j.Created.IsZero() {
		t.Errorf("CreateJob: status %q created %v, want queued and a time", j.Status, j.Created)
	}
	isErr(t, "CreateJob again", s.CreateJob(ctx, &store.Job{ID: "j1", Kind: "export"}, nil), store.ErrConflict)
	if got, err := s.ClaimJob(ctx, []string{"import"}, "c0", now, time.Minute); err != nil || got != nil {
		t.Errorf("ClaimJob(import) = %v, %v; want nothing", got, err)
	}
	got, err := s.ClaimJob(ctx, []string{"import", "export"}, "c1", now, time.Minute)
	if err != nil || got == nil {
		t.Fatalf("ClaimJob = %v, %v", got, err)
	}
	if got.ID != "j1" || got.Status != store.JobRunning || got.Claim != "c1" || got.Attempts != 1 ||
		!got.LeaseUntil.Equal(now.Add(time.Minute)) || string(got.Request) != `{"a":1}` || got.Tenant != "clinic-a" ||
		got.Owner != "client-clinic-a" || got.Total != -1 {
		t.Errorf("ClaimJob = %+v", got)
	}
	if again, err := s.ClaimJob(ctx, []string{"export"}, "c2", now, time.Minute); err != nil || again != nil {
		t.Errorf("ClaimJob during the lease = %v, %v; want nothing", again, err)
	}
	p := store.JobProgress{Done: 3, Total: 10, Checkpoint: []byte(`{"at":3}`),
		Parts: []store.JobPart{{File: 1, Part: 0, Data: []byte("a\n")}, {File: 1, Part: 1, Data: []byte("b\n")}, {File: 2, Part: 0, Data: []byte("c\n")}}}
	if err := s.SaveJob(ctx, "j1", "c1", now.Add(2*time.Minute), p); err != nil {
		t.Fatalf("SaveJob: %v", err)
	}
	isErr(t, "SaveJob with another claim", s.SaveJob(ctx, "j1", "c9", now.Add(time.Hour),
		store.JobProgress{Parts: []store.JobPart{{File: 1, Part: 2, Data: []byte("x")}}}), store.ErrNotFound)
	if err := s.SaveJob(ctx, "j1", "c1", now.Add(2*time.Minute), store.JobProgress{Done: 5, Total: 10,
		Parts: []store.JobPart{{File: 1, Part: 2, Data: []byte("d\n")}}}); err != nil {
		t.Fatalf("SaveJob without checkpoint: %v", err)
	}
	if f := jobFile(t, s, "j1", 1); f != "a\nb\nd\n" {
		t.Errorf("file 1 = %q, want a b d", f)
	}
	if f := jobFile(t, s, "j1", 2); f != "c\n" {
		t.Errorf("file 2 = %q", f)
	}
	if f := jobFile(t, s, "j1", 3); f != "" {
		t.Errorf("file 3 = %q, want none", f)
	}
	// Drop deletes a file's parts (an import's input, once done) in the
	// save that adds another's.
	if err := s.SaveJob(ctx, "j1", "c1", now.Add(2*time.Minute), store.JobProgress{Done: 5, Total: 10, Drop: []int{2},
		Parts: []store.JobPart{{File: 3, Part: 0, Data: []byte("e\n")}}}); err != nil {
		t.Fatalf("SaveJob dropping file 2: %v", err)
	}
	if f1, f2, f3 := jobFile(t, s, "j1", 1), jobFile(t, s, "j1", 2), jobFile(t, s, "j1", 3); f1 != "a\nb\nd\n" || f2 != "" || f3 != "e\n" {
		t.Errorf("after dropping file 2: files %q %q %q, want a b d, none, e", f1, f2, f3)
	}
	cur, err := s.Job(ctx, "j1")
	if err != nil || cur.Done != 5 || cur.Total != 10 || string(cur.Checkpoint) != `{"at":3}` || !cur.LeaseUntil.Equal(now.Add(2*time.Minute)) {
		t.Errorf("Job after saves = %+v, %v", cur, err)
	}
	exp := now.Add(time.Hour)
	isErr(t, "FinishJob with another claim", s.FinishJob(ctx, "j1", "c9", store.JobEnd{Status: store.JobDone, Expires: exp}), store.ErrNotFound)
	if err := s.FinishJob(ctx, "j1", "c1", store.JobEnd{Status: store.JobDone, Result: []byte(`{"ok":true}`), Expires: exp,
		Done: 10, Total: 10}); err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	cur, err = s.Job(ctx, "j1")
	if err != nil || cur.Status != store.JobDone || string(cur.Result) != `{"ok":true}` || cur.Claim != "" ||
		!cur.Expires.Equal(exp) || cur.Finished.IsZero() || cur.Done != 10 || cur.Total != 10 {
		t.Errorf("Job after finish = %+v, %v", cur, err)
	}
	isErr(t, "SaveJob after finish", s.SaveJob(ctx, "j1", "c1", exp, store.JobProgress{}), store.ErrNotFound)
	_, err = s.Job(ctx, "nope")
	isErr(t, "Job(nope)", err, store.ErrNotFound)

	newJob(t, s, "j2", "import", "clinic-b")
	newJob(t, s, "j3", "export", "clinic-a")
	list, err := s.ListJobs(ctx, store.JobFilter{Tenant: "clinic-a"})
	if err != nil || len(list) != 2 {
		t.Fatalf("ListJobs(clinic-a) = %d jobs, %v; want 2", len(list), err)
	}
	for _, j := range list {
		if j.Tenant != "clinic-a" || j.Result != nil {
			t.Errorf("ListJobs(clinic-a): %+v", j)
		}
	}
	if all, err := s.ListJobs(ctx, store.JobFilter{Tenant: search.AllTenants, Kind: "import"}); err != nil || len(all) != 1 || all[0].ID != "j2" {
		t.Errorf("ListJobs(*, import) = %v, %v", all, err)
	}
	all, _ := s.ListJobs(ctx, store.JobFilter{Tenant: search.AllTenants})
	for _, status := range []string{store.JobQueued, store.JobRunning} {
		want := 0
		for _, j := range all {
			if j.Status == status {
				want++
			}
		}
		got, err := s.ListJobs(ctx, store.JobFilter{Tenant: search.AllTenants, Status: status})
		if err != nil || len(got) != want || slices.ContainsFunc(got, func(j *store.Job) bool { return j.Status != status }) {
			t.Errorf("ListJobs(*, status %s) = %d jobs, %v; want the %d of that status", status, len(got), err, want)
		}
	}

	if n, err := s.PurgeJobs(ctx, exp.Add(-time.Second), 10); err != nil || n != 0 {
		t.Errorf("PurgeJobs before expiry = %d, %v", n, err)
	}
	if n, err := s.PurgeJobs(ctx, exp, 10); err != nil || n != 1 {
		t.Errorf("PurgeJobs at expiry = %d, %v; want 1", n, err)
	}
	_, err = s.Job(ctx, "j1")
	isErr(t, "Job after purge", err, store.ErrNotFound)
	if f := jobFile(t, s, "j1", 1); f != "" {
		t.Errorf("file after purge = %q", f)
	}

	// A finished job is cancelled (deleted by its client) with its files.
	newJob(t, s, "j4", "other", "")
	if got, err := s.ClaimJob(ctx, []string{"other"}, "c4", now, time.Minute); err != nil || got == nil || got.ID != "j4" {
		t.Fatalf("ClaimJob(other) = %v, %v", got, err)
	}
	if err := s.SaveJob(ctx, "j4", "c4", now.Add(time.Minute), store.JobProgress{Parts: []store.JobPart{{File: 1, Data: []byte("z")}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.FinishJob(ctx, "j4", "c4", store.JobEnd{Status: store.JobDone, Result: []byte("{}"), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	done, err := s.Job(ctx, "j4")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CancelJob(ctx, "j4", now.Add(time.Hour)); err != nil {
		t.Fatalf("CancelJob of a finished job: %v", err)
	}
	if f := jobFile(t, s, "j4", 1); f != "" {
		t.Errorf("file of a cancelled finished job = %q", f)
	}
	// Deleted, not cancelled: it had ended, and when is kept (an
	// operator's review: listed as cancelled, its finish time overwritten).
	if got, err := s.Job(ctx, "j4"); err != nil || got.Status != store.JobDeleted || !got.Finished.Equal(done.Finished) ||
		string(got.Result) != "{}" || !got.Expires.Equal(now.Add(time.Hour)) {
		t.Errorf("finished job after CancelJob = %+v, %v; want deleted, finished %v, its result kept", got, err, done.Finished)
	}
	isErr(t, "CancelJob again", s.CancelJob(ctx, "j4", now), store.ErrNotFound)
	// A running job is cancelled, its end now.
	newJob(t, s, "j5", "other", "")
	if got, err := s.ClaimJob(ctx, []string{"other"}, "c5", now, time.Minute); err != nil || got == nil || got.ID != "j5" {
		t.Fatalf("ClaimJob(other) = %v, %v", got, err)
	}
	if err := s.CancelJob(ctx, "j5", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Job(ctx, "j5"); err != nil || got.Status != store.JobCancelled || got.Finished.IsZero() {
		t.Errorf("running job after CancelJob = %+v, %v; want cancelled, finished now", got, err)
	}
}

// testJobLease: a running job whose lease ran out is claimed again from
// its checkpoint, and the first runner's saves are refused from then on;
// a released job is claimable at once; a cancelled job stops its runner
// and loses its files; an uploading job is not claimable until queued.
func testJobLease(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	newJob(t, s, "j1", "export", "")
	if _, err := s.ClaimJob(ctx, []string{"export"}, "c1", now, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveJob(ctx, "j1", "c1", now.Add(time.Second), store.JobProgress{Checkpoint: []byte("cp1"),
		Parts: []store.JobPart{{File: 1, Part: 0, Data: []byte("x")}}}); err != nil {
		t.Fatal(err)
	}
	later := now.Add(2 * time.Second)
	got, err := s.ClaimJob(ctx, []string{"export"}, "c2", later, time.Minute)
	if err != nil || got == nil || got.Claim != "c2" || got.Attempts != 2 || string(got.Checkpoint) != "cp1" {
		t.Fatalf("ClaimJob after the lease ran out = %+v, %v", got, err)
	}
	isErr(t, "SaveJob of the first runner", s.SaveJob(ctx, "j1", "c1", later.Add(time.Minute),
		store.JobProgress{Parts: []store.JobPart{{File: 1, Part: 1, Data: []byte("y")}}}), store.ErrNotFound)
	if f := jobFile(t, s, "j1", 1); f != "x" {
		t.Errorf("file after a fenced save = %q, want x", f)
	}
	if err := s.FinishJob(ctx, "j1", "c2", store.JobEnd{Status: store.JobQueued}); err != nil {
		t.Fatalf("release: %v", err)
	}
	got, err = s.ClaimJob(ctx, []string{"export"}, "c3", later, time.Minute)
	if err != nil || got == nil || got.Claim != "c3" {
		t.Fatalf("ClaimJob after release = %+v, %v", got, err)
	}
	if err := s.CancelJob(ctx, "j1", later); err != nil {
		t.Fatalf("CancelJob: %v", err)
	}
	isErr(t, "SaveJob after cancel", s.SaveJob(ctx, "j1", "c3", later.Add(time.Minute), store.JobProgress{}), store.ErrNotFound)
	if cur, err := s.Job(ctx, "j1"); err != nil || cur.Status != store.JobCancelled || !cur.Expires.Equal(later) {
		t.Errorf("Job after cancel = %+v, %v", cur, err)
	}
	if f := jobFile(t, s, "j1", 1); f != "" {
		t.Errorf("file after cancel = %q, want none", f)
	}
	// The runner records the cancelled job's final state under its claim.
	isErr(t, "FinishJob cancelled by another claim", s.FinishJob(ctx, "j1", "c2", store.JobEnd{Status: store.JobCancelled, Result: []byte(`{}`)}), store.ErrNotFound)
	// Its progress is how far it got, which it could not save (SaveJob
	// refuses a cancelled job).
	if err := s.FinishJob(ctx, "j1", "c3", store.JobEnd{Status: store.JobCancelled, Result: []byte(`{"n":1}`), Done: 1, Total: -1}); err != nil {
		t.Fatalf("FinishJob of the cancelled job: %v", err)
	}
	if cur, err := s.Job(ctx, "j1"); err != nil || cur.Status != store.JobCancelled || string(cur.Result) != `{"n":1}` || !cur.Expires.Equal(later) ||
		cur.Done != 1 || cur.Total != -1 {
		t.Errorf("Job after its cancelled run ended = %+v, %v", cur, err)
	}
	isErr(t, "FinishJob cancelled again", s.FinishJob(ctx, "j1", "c3", store.JobEnd{Status: store.JobCancelled}), store.ErrNotFound)
	if got, err := s.ClaimJob(ctx, []string{"export"}, "c5", later.Add(time.Hour), time.Minute); err != nil || got != nil {
		t.Errorf("ClaimJob of a cancelled job = %+v, %v", got, err)
	}
	isErr(t, "CancelJob again", s.CancelJob(ctx, "j1", later), store.ErrNotFound)

	up := &store.Job{ID: "up", Kind: "import", Status: store.JobUploading, Expires: later.Add(time.Hour)}
	if err := s.CreateJob(ctx, up, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutJobParts(ctx, "up", []store.JobPart{{File: 0, Part: 0, Data: []byte("in")}}); err != nil {
		t.Fatalf("PutJobParts: %v", err)
	}
	if got, err := s.ClaimJob(ctx, []string{"import"}, "c4", later, time.Minute); err != nil || got != nil {
		t.Errorf("ClaimJob of an uploading job = %v, %v", got, err)
	}
	if err := s.QueueJob(ctx, "up", 7); err != nil {
		t.Fatalf("QueueJob: %v", err)
	}
	isErr(t, "PutJobParts after queue", s.PutJobParts(ctx, "up", []store.JobPart{{File: 0, Part: 1}}), store.ErrNotFound)
	isErr(t, "QueueJob again", s.QueueJob(ctx, "up", 7), store.ErrNotFound)
	got, err = s.ClaimJob(ctx, []string{"import"}, "c4", later, time.Minute)
	if err != nil || got == nil || !got.Expires.IsZero() || got.Total != 7 {
		t.Fatalf("ClaimJob of the queued upload = %+v, %v", got, err)
	}
	if f := jobFile(t, s, "up", 0); f != "in" {
		t.Errorf("uploaded file = %q", f)
	}
	isErr(t, "DropUpload of a queued job", s.DropUpload(ctx, "up"), store.ErrNotFound)

	// An upload refused before it was queued is deleted, parts and all.
	refused := &store.Job{ID: "refused", Kind: "import", Status: store.JobUploading, Expires: later.Add(time.Hour)}
	if err := s.CreateJob(ctx, refused, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutJobParts(ctx, "refused", []store.JobPart{{File: 0, Part: 0, Data: []byte("in")}}); err != nil {
		t.Fatalf("PutJobParts: %v", err)
	}
	if err := s.DropUpload(ctx, "refused"); err != nil {
		t.Fatalf("DropUpload: %v", err)
	}
	_, err = s.Job(ctx, "refused")
	isErr(t, "Job after DropUpload", err, store.ErrNotFound)
	if f := jobFile(t, s, "refused", 0); f != "" {
		t.Errorf("file after DropUpload = %q, want none", f)
	}
	isErr(t, "DropUpload again", s.DropUpload(ctx, "refused"), store.ErrNotFound)
}

// testJobClaimConcurrent: many runners claim at once; each job is claimed
// exactly once.
func testJobClaimConcurrent(t *testing.T, s store.Store) {
	jobClaimRace(t, s, s)
}

// testJobClaimFair: ClaimJob takes the oldest job of the tenant with the
// fewest jobs running (leases run out not counted), so one tenant's queue
// of imports does not hold up every other tenant's jobs (probe p30 F4: a
// later tenant's export waited 35 s behind four imports).
func testJobClaimFair(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Millisecond)
	for _, id := range []string{"a1", "a2", "a3"} {
		newJob(t, s, id, "fair", "clinic-a")
	}
	newJob(t, s, "b1", "fair", "clinic-b")
	claim := func(want string, at time.Time) {
		t.Helper()
		got, err := s.ClaimJob(ctx, []string{"fair"}, "c-"+want, at, time.Minute)
		if err != nil || got == nil || got.ID != want {
			t.Fatalf("ClaimJob = %+v, %v; want %s", got, err, want)
		}
	}
	claim("a1", now) // no tenant has a job running: the oldest
	claim("b1", now) // clinic-a has one running, clinic-b none
	claim("a2", now) // one each: the oldest
	newJob(t, s, "b2", "fair", "clinic-b")
	newJob(t, s, "c1", "fair", search.AllTenants)
	claim("c1", now) // the all-tenant clients run none
	claim("b2", now) // clinic-a runs two, clinic-b one
	// Later, the leases of a1, a2 and c1 have run out: those jobs are
	// claimable again, and not counted as running; clinic-b's b1 and b2
	// are renewed.
	later := now.Add(2 * time.Minute)
	for _, id := range []string{"b1", "b2"} {
		if err := s.SaveJob(ctx, id, "c-"+id, later.Add(time.Minute), store.JobProgress{Done: 1}); err != nil {
			t.Fatalf("SaveJob(%s): %v", id, err)
		}
	}
	claim("a1", later) // none runs in clinic-a or for all tenants: the oldest
	claim("c1", later) // clinic-a runs one, clinic-b two
	claim("a2", later) // one each in clinic-a and for all tenants: the oldest
	claim("a3", later)
	if got, err := s.ClaimJob(ctx, []string{"fair"}, "c-none", later, time.Minute); err != nil || got != nil {
		t.Errorf("ClaimJob with every job running = %+v, %v; want nothing", got, err)
	}
}

// testJobsShared: runners of two stores on one database (two processes)
// claim each job exactly once.
func testJobsShared(t *testing.T, a, b store.Store) {
	jobClaimRace(t, a, b)
}

func jobClaimRace(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	const jobs, runners = 20, 8
	for i := range jobs {
		newJob(t, a, fmt.Sprintf("j%02d", i), "export", "")
	}
	now := time.Now()
	var mu sync.Mutex
	claimed := map[string]int{}
	var wg sync.WaitGroup
	for r := range runners {
		st := a
		if r%2 == 1 {
			st = b
		}
		wg.Go(func() {
			for {
				j, err := st.ClaimJob(ctx, []string{"export"}, fmt.Sprintf("r%d", r), now, time.Minute)
				if err != nil {
					t.Errorf("ClaimJob: %v", err)
					return
				}
				if j == nil {
					return
				}
				mu.Lock()
				claimed[j.ID]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(claimed) != jobs {
		t.Errorf("%d jobs claimed, want %d", len(claimed), jobs)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("job %s claimed %d times", id, n)
		}
	}
}

// testExport: pages in id order across the page boundary, confined to the
// tenant, without deleted resources, narrowed by since and by filters
// (ORed).
func testExport(t *testing.T, s store.Store) {
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range 25 {
			r := res("Observation", fmt.Sprintf("o%02d", i), 1, base.Add(time.Duration(i)*time.Hour))
			r.Tenant = "clinic-a"
			code := "a"
			if i%3 == 0 {
				code = "b"
			}
			if err := tx.Put(r, []search.Entry{tok("code", "urn:c", code), ref("subject", "Patient", fmt.Sprintf("p%d", i%2))}); err != nil {
				return err
			}
		}
		other := res("Observation", "x01", 1, base)
		other.Tenant = "clinic-b"
		if err := tx.Put(other, nil); err != nil {
			return err
		}
		return tx.Put(res("Patient", "p0", 1, base), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	put(t, s, deletion("Observation", "o05", 2, base.Add(30*time.Hour)))
	all := func(q store.ExportQuery) []string {
		t.Helper()
		var ids []string
		for {
			page, err := s.Export(ctx, q)
			if err != nil {
				t.Fatalf("Export(%+v): %v", q, err)
			}
			for _, r := range page {
				if r.Type != q.Type || r.Deleted || len(r.Body) == 0 {
					t.Errorf("Export: %s/%s deleted=%v", r.Type, r.ID, r.Deleted)
				}
				ids = append(ids, r.ID)
			}
			if len(page) < q.Limit {
				return ids
			}
			q.After = page[len(page)-1].ID
		}
	}
	ids := all(store.ExportQuery{Type: "Observation", Tenant: "clinic-a", Limit: 7})
	if len(ids) != 24 || !slices.IsSorted(ids) || slices.Contains(ids, "o05") || slices.Contains(ids, "x01") {
		t.Errorf("Export(clinic-a) = %v; want the 24 live ones in id order", ids)
	}
	ids = all(store.ExportQuery{Type: "Observation", Tenant: "clinic-a", Since: base.Add(20 * time.Hour), Limit: 7})
	if want := []string{"o21", "o22", "o23", "o24"}; !slices.Equal(ids, want) {
		t.Errorf("Export since = %v, want %v", ids, want)
	}
	f1 := query("Observation", clause("code", search.TypeToken, "", vSys("urn:c", "b")))
	f2 := query("Observation", clause("patient", search.TypeReference, "", vRef("Patient", "p1")))
	ids = all(store.ExportQuery{Type: "Observation", Tenant: "clinic-a", Filters: []*search.Query{f1, f2}, Limit: 100})
	var want []string
	for i := range 25 {
		if i != 5 && (i%3 == 0 || i%2 == 1) {
			want = append(want, fmt.Sprintf("o%02d", i))
		}
	}
	if !slices.Equal(ids, want) {
		t.Errorf("Export with two filters = %v, want %v", ids, want)
	}
	if ids := all(store.ExportQuery{Type: "Observation", Tenant: "clinic-c", Limit: 10}); len(ids) != 0 {
		t.Errorf("Export of an empty tenant = %v", ids)
	}

	got, err := s.ReadCurrent(ctx, []string{"Observation/o01", "Observation/o05", "Patient/p0", "Patient/none", "bad"})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	for _, r := range got {
		refs = append(refs, r.Type+"/"+r.ID)
	}
	slices.Sort(refs)
	if !slices.Equal(refs, []string{"Observation/o01", "Patient/p0"}) {
		t.Errorf("ReadCurrent = %v", refs)
	}
}

// testLedgerEntries: pages in key order with inputs, filtered by tenant,
// kind and received; SetLedgerMapping moves an entry's mapping version.
func testLedgerEntries(t *testing.T, s store.Store) {
	ctx := context.Background()
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range 12 {
			tenant, kind := "", "session"
			if i%2 == 1 {
				tenant = "clinic-a"
			}
			if i%3 == 0 {
				kind = "vitals"
			}
			l := &store.Ledger{Source: "src", Kind: kind, RecordID: fmt.Sprintf("r%02d", i), Version: "1", ContentHash: "h",
				Received: base.Add(time.Duration(i) * time.Hour), Tenant: tenant, MappingVersion: "2.0.0", Input: []byte(fmt.Sprintf(`{"n":%d}`, i))}
			if err := tx.PutLedger(l); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	walk := func(q store.LedgerQuery) []string {
		t.Helper()
		var out []string
		for {
			page, err := s.LedgerEntries(ctx, q)
			if err != nil {
				t.Fatalf("LedgerEntries: %v", err)
			}
			for _, l := range page {
				out = append(out, l.RecordID)
				if l.MappingVersion != "2.0.0" && l.MappingVersion != "2.1.0" || len(l.Input) == 0 {
					t.Errorf("entry %s: mapping %q input %q", l.RecordID, l.MappingVersion, l.Input)
				}
			}
			if len(page) < q.Limit {
				return out
			}
			last := page[len(page)-1]
			q.After = store.LedgerKey{Source: last.Source, Kind: last.Kind, RecordID: last.RecordID, Version: last.Version}
		}
	}
	if got := walk(store.LedgerQuery{Tenant: search.AllTenants, Limit: 5}); len(got) != 12 {
		t.Errorf("every tenant: %v", got)
	}
	if got, want := walk(store.LedgerQuery{Tenant: "clinic-a", Kind: "session", Limit: 2}), []string{"r01", "r05", "r07", "r11"}; !slices.Equal(got, want) {
		t.Errorf("clinic-a sessions = %v, want %v", got, want)
	}
	if got, want := walk(store.LedgerQuery{Tenant: "", Kind: "vitals", Since: base.Add(5 * time.Hour), Limit: 2}), []string{"r06"}; !slices.Equal(got, want) {
		t.Errorf("default tenant's vitals since = %v, want %v", got, want)
	}
	// KeysOnly: every entry's key, tenant and time received, nothing else.
	keys, err := s.LedgerEntries(ctx, store.LedgerQuery{Tenant: search.AllTenants, Since: base.Add(10 * time.Hour), KeysOnly: true})
	if err != nil || len(keys) != 2 {
		t.Fatalf("KeysOnly since r10 = %+v, %v; want r10 and r11", keys, err)
	}
	if k := keys[1]; k.Source != "src" || k.Kind != "session" || k.RecordID != "r11" || k.Version != "1" || k.Tenant != "clinic-a" ||
		!k.Received.Equal(base.Add(11*time.Hour)) || k.ContentHash != "" || k.Input != nil || k.Response != nil || k.MappingVersion != "" {
		t.Errorf("KeysOnly entry = %+v, want r11's key, tenant and time received only", k)
	}
	err = s.Write(ctx, func(tx store.Tx) error { return tx.SetLedgerMapping("src", "session", "r01", "1", "2.1.0") })
	if err != nil {
		t.Fatal(err)
	}
	page, err := s.LedgerEntries(ctx, store.LedgerQuery{Tenant: "clinic-a", Kind: "session", Limit: 1})
	if err != nil || len(page) != 1 || page[0].MappingVersion != "2.1.0" {
		t.Errorf("after SetLedgerMapping: %+v, %v", page, err)
	}
	err = s.Write(ctx, func(tx store.Tx) error { return tx.SetLedgerMapping("src", "session", "none", "1", "2.1.0") })
	isErr(t, "SetLedgerMapping of no entry", err, store.ErrNotFound)
	if tenants, err := s.LedgerTenants(ctx); err != nil || !slices.Equal(tenants, []string{"", "clinic-a"}) {
		t.Errorf("LedgerTenants = %q, %v", tenants, err)
	}
}
