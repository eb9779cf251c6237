package reindex

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// stale opens a store holding n Observations stored without their index
// rows (as by a build that did not index them), its index version marked
// 1.
func stale(t *testing.T, n int) store.Store {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	err = st.Write(ctx, func(tx store.Tx) error {
		for i := range n {
			id := fmt.Sprint("o", i)
			body := `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"coding":[{"system":"urn:x","code":"c"}]}}`
			if err := tx.Put(&store.Resource{Type: "Observation", ID: id, Version: 1, Body: []byte(body)}, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		err = st.MarkIndexed(ctx, 1)
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// found counts the Observations of code urn:x|c.
func found(t *testing.T, st store.Store) int {
	t.Helper()
	q, err := search.ParseConditional("Observation", "code=urn:x|c")
	if err != nil {
		t.Fatal(err)
	}
	q.Count, q.Total = 1, true
	pg, err := st.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return pg.Total
}

// TestPassResumes: a pass that stops after a batch (a crash, an
// interruption) goes on from the report it left, counting each resource
// once, and records this build's index version when it is complete.
func TestPassResumes(t *testing.T) {
	ctx := context.Background()
	st := stale(t, 7)
	var rep Report
	stop := errors.New("stopped")
	all := Options{Tenant: search.AllTenants, Batch: 3}
	err := Pass(ctx, st, all, &rep, func(r *Report) error { return stop })
	if !errors.Is(err, stop) || rep.Checked != 3 || rep.Changed != 3 || rep.Done || rep.After.ID != "o2" {
		t.Fatalf("first batch: %v, %+v; want it stopped after 3, at o2", err, rep)
	}
	if v, _ := st.IndexVersion(ctx); v != 1 {
		t.Errorf("index version after a partial pass = %d, want 1", v)
	}
	batches := 0
	err = Pass(ctx, st, all, &rep, func(*Report) error { batches++; return nil })
	if err != nil || rep.Checked != 7 || rep.Changed != 7 || !rep.Done || batches != 2 || rep.IndexVersion != search.IndexVersion ||
		rep.BuildIndexVersion != search.IndexVersion || fmt.Sprint(rep.ChangedTypes) != "map[Observation:7]" {
		t.Errorf("resumed: %v, %+v in %d batches; want 7 changed in 2 more, this build's index version", err, rep, batches)
	}
	if n := found(t, st); n != 7 {
		t.Errorf("%d Observations found by code, want 7", n)
	}
}

// TestPassPartial: a dry run, a pass over one type and a pass over one
// tenant's resources record no index version.
func TestPassPartial(t *testing.T) {
	ctx := context.Background()
	st := stale(t, 2)
	for _, tc := range []struct {
		opts Options
		note string // why, in the result
	}{
		{Options{Tenant: search.AllTenants, DryRun: true}, "a dry run records nothing"},
		{Options{Tenant: search.AllTenants, Type: "Observation"}, "one resource type only"},
		// Development mode's client is bound to the default tenant.
		{Options{Tenant: ""}, "one tenant's resources only"},
	} {
		var rep Report
		if err := Pass(ctx, st, tc.opts, &rep, nil); err != nil || rep.IndexVersion != 1 {
			t.Errorf("%+v: %v, index version %d; want 1", tc.opts, err, rep.IndexVersion)
		}
		if !strings.Contains(rep.Note, tc.note) || !strings.Contains(rep.Note, "ketamine-gateway reindex") {
			t.Errorf("%+v: note %q, want it to say %q and what to run", tc.opts, rep.Note, tc.note)
		}
	}
	var rep Report
	if err := Pass(ctx, st, Options{Tenant: search.AllTenants}, &rep, nil); err != nil || rep.IndexVersion != search.IndexVersion || rep.Note != "" {
		t.Errorf("complete pass: %v, index version %d, note %q; want %d and no note", err, rep.IndexVersion, rep.Note, search.IndexVersion)
	}
}

func operator(tenant string) *auditlog.Scope {
	return auditlog.NewScope("reindex", &auth.Principal{ClientID: "ops", Tenant: tenant,
		Scopes: auth.ParseScopes("system/*.cruds " + auth.ScopeOperator)})
}

// TestJob: POST /admin/reindex's job runs a pass over the resources of
// the operator's tenant (every tenant's for an operator of every tenant,
// whose complete pass records the index version) and its result is the
// report; options out of range are refused before any job exists.
func TestJob(t *testing.T) {
	ctx := context.Background()
	st := stale(t, 5)
	js := jobs.New(jobs.Config{Store: st, Poll: 10 * time.Millisecond})
	s := New(Config{Store: st, Jobs: js})
	js.Start()
	t.Cleanup(func() { js.Close() })

	for name, tc := range map[string]struct {
		opts Options
		rule string
	}{
		"unknown type":  {Options{Type: "Observations"}, "reindex-type-unknown"},
		"batch too big": {Options{Batch: MaxBatch + 1}, "reindex-batch-range"},
	} {
		j, err := s.Submit(ctx, operator(search.AllTenants), tc.opts)
		kind, issues := outcome.From(err)
		if j != nil || kind != outcome.Invalid || len(issues) == 0 || issues[0].Rule != tc.rule {
			t.Errorf("%s: %v, %v (%v); want invalid, %s", name, j, err, kind, tc.rule)
		}
	}
	run := func(sc *auditlog.Scope) Report {
		t.Helper()
		j, err := s.Submit(ctx, sc, Options{Batch: 2, Tenant: search.AllTenants})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for j.Status != store.JobDone {
			if j.Status == store.JobFailed || time.Now().After(deadline) {
				t.Fatalf("job: %+v", j)
			}
			time.Sleep(5 * time.Millisecond) // polling a background job, not timing the test
			if j, err = js.Job(ctx, sc, j.ID); err != nil {
				t.Fatal(err)
			}
		}
		var rep Report
		if err := json.Unmarshal(j.Result, &rep); err != nil {
			t.Fatalf("job result %s: %v", j.Result, err)
		}
		return rep
	}
	// An operator of clinic-a asking for every tenant gets clinic-a's:
	// none of these.
	if rep := run(operator("clinic-a")); rep.Checked != 0 || rep.IndexVersion != 1 {
		t.Errorf("clinic-a's operator's job: %+v; want nothing checked, the index version left at 1", rep)
	}
	if rep := run(operator(search.AllTenants)); rep.Checked != 5 || rep.Changed != 5 || !rep.Done || rep.IndexVersion != search.IndexVersion {
		t.Errorf("job result %+v; want 5 of 5 changed, this build's index version", rep)
	}
	if n := found(t, st); n != 5 {
		t.Errorf("%d Observations found by code, want 5", n)
	}
}
