package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestJobsListAndCancel: the administrator lists every client's jobs and
// cancels one whoever owns it (the import of a client that was removed and
// can no longer cancel it itself); a second cancel, or an unknown id, is
// exit 4.
func TestJobsListAndCancel(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// A job that has ended (an import done), the first made, so claimed first.
	if err := st.CreateJob(ctx, &store.Job{ID: "j3", Kind: "import", Tenant: "clinic-a", Owner: "mover", Request: []byte(`{}`), Total: 2}, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := st.ClaimJob(ctx, []string{"import"}, "c3", time.Now(), time.Minute); err != nil || got == nil {
		t.Fatalf("ClaimJob = %v, %v", got, err)
	}
	if err := st.FinishJob(ctx, "j3", "c3", store.JobEnd{Status: store.JobDone, Result: []byte(`{}`), Expires: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	jobs := []*store.Job{
		{ID: "j1", Kind: "import", Tenant: "clinic-a", Owner: "mover", Request: []byte(`{}`), Total: 3000},
		{ID: "j2", Kind: "export", Tenant: "clinic-b", Owner: "clinicB-emr", Request: []byte(`{}`), Total: -1},
	}
	for _, j := range jobs {
		if err := st.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	out, errOut, code := cli(t, "", "jobs", "list", "--db", db)
	var list struct {
		Jobs []struct{ ID, Kind, Tenant, Owner, Status string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Jobs) != 3 {
		t.Fatalf("jobs list: exit %d, %s %s; want the three jobs", code, out, errOut)
	}
	// Cancelling a job that has ended says so (p45: it said "cancelled"
	// with its count of items done, as if cut short).
	if out, errOut, code := cli(t, "", "jobs", "cancel", "j3", "--db", db); code != 0 || !strings.Contains(out, "had ended (done) before it was cancelled") ||
		!strings.Contains(out, `"status": "deleted"`) {
		t.Errorf("jobs cancel of a finished job: exit %d, %s %s", code, out, errOut)
	}
	// It is listed as deleted, and a second cancel says it had ended and
	// was deleted, as the list shows (an operator's review: listed as
	// cancelled, its finish time overwritten).
	out, _, _ = cli(t, "", "jobs", "list", "--db", db, "--status", "deleted")
	if !strings.Contains(out, `"id": "j3"`) {
		t.Errorf("jobs list --status deleted:\n%s", out)
	}
	if _, errOut, code := cli(t, "", "jobs", "cancel", "j3", "--db", db); code != exitNotFound ||
		!strings.Contains(errOut, "the job had ended (done") || !strings.Contains(errOut, "and was then deleted") {
		t.Errorf("jobs cancel of a deleted job: exit %d, %s", code, errOut)
	}
	out, _, _ = cli(t, "", "jobs", "list", "--db", db, "--owner", "mover")
	if !strings.Contains(out, `"id": "j1"`) || strings.Contains(out, `"j2"`) || !strings.Contains(out, `"owner": "mover"`) ||
		!strings.Contains(out, `"tenant": "clinic-a"`) || !strings.Contains(out, `"status": "queued"`) {
		t.Errorf("jobs list --owner mover:\n%s", out)
	}
	out, errOut, code = cli(t, "", "jobs", "cancel", "j1", "--db", db)
	if code != 0 || !strings.Contains(out, `"status": "cancelled"`) {
		t.Fatalf("jobs cancel j1: exit %d, %s %s", code, out, errOut)
	}
	out, _, _ = cli(t, "", "jobs", "list", "--db", db, "--status", "cancelled")
	if !strings.Contains(out, `"id": "j1"`) || strings.Contains(out, `"j2"`) {
		t.Errorf("jobs list --status cancelled:\n%s", out)
	}
	for _, id := range []string{"j1", "nosuch"} {
		if _, errOut, code := cli(t, "", "jobs", "cancel", id, "--db", db); code != exitNotFound {
			t.Errorf("jobs cancel %s: exit %d (%s), want %d", id, code, errOut, exitNotFound)
		}
	}
	// The administrator's cancel is of anyone's job: an unknown id is not
	// "no such job for this client".
	if _, errOut, _ := cli(t, "", "jobs", "cancel", "nosuch", "--db", db); strings.Contains(errOut, "for this client") || !strings.Contains(errOut, "no job has this id") {
		t.Errorf("jobs cancel of an unknown id says %q", errOut)
	}
	// A total not known yet (an export's) is left out, not shown as -1.
	if out, _, _ := cli(t, "", "jobs", "list", "--db", db, "--kind", "export"); strings.Contains(out, `"total": -1`) || strings.Contains(out, `"total"`) {
		t.Errorf("jobs list shows an export's unknown total:\n%s", out)
	}
	for _, args := range [][]string{{"jobs", "frob"}, {"jobs", "cancel"}, {"jobs", "list", "--status", "lost"}, {"jobs", "list", "x"},
		{"jobs", "list", "--kind", "imports"}} { // a kind mistyped is refused, not an empty list (p45)
		if _, _, code := cli(t, "", append(args, "--db", db)...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
	if out, _, code := cli(t, "", "jobs", "list", "--db", db, "--kind", "export"); code != 0 || !strings.Contains(out, `"j2"`) || strings.Contains(out, `"j1"`) {
		t.Errorf("jobs list --kind export: exit %d\n%s", code, out)
	}
}

// TestJobsListHolder: jobs list shows which gateway holds a running job
// and when its lease runs out (probe p33 F5: a job whose gateway died
// showed "running" until another claimed it, with nothing to tell a
// stalled job from a slow one, nor which replica to look at).
func TestJobsListHolder(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"j1", "j2"} {
		if err := st.CreateJob(ctx, &store.Job{ID: id, Kind: "import", Tenant: "clinic-a", Owner: "mover", Request: []byte(`{}`), Total: -1}, nil); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 12, 6, 5, 0, 0, 0, time.UTC)
	if _, err := st.ClaimJob(ctx, []string{"import"}, jobs.ClaimToken("gw-b 5e0f2a91"), now, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	st.Close()
	out, errOut, code := cli(t, "", "jobs", "list", "--db", db)
	var list struct {
		Jobs []struct {
			ID, Status, ClaimedBy string
			LeaseUntil            *time.Time
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Jobs) != 2 {
		t.Fatalf("jobs list: exit %d, %s %s; want both jobs", code, out, errOut)
	}
	for _, j := range list.Jobs {
		switch j.Status {
		case store.JobRunning:
			if j.ClaimedBy != "gw-b 5e0f2a91" || j.LeaseUntil == nil || !j.LeaseUntil.Equal(now.Add(30*time.Second)) {
				t.Errorf("jobs list: running job %+v, want claimedBy gw-b 5e0f2a91 and leaseUntil %v:\n%s", j, now.Add(30*time.Second), out)
			}
		default:
			if j.ClaimedBy != "" || j.LeaseUntil != nil {
				t.Errorf("jobs list: %s job %+v, want no holder nor lease:\n%s", j.Status, j, out)
			}
		}
	}
}
