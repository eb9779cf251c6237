package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/reindex"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestReindexCommand: on a database whose index rows are not this build's
// (stored without them, as by a build that did not index those
// parameters), reindex --dry-run counts the resources to change and exits
// 1 without writing; reindex rewrites them, a batch at a time, after
// which searches find them and a dry run finds nothing to change (exit
// 0). --type restricts both. serve says to reindex while the database
// records an older index version, and no longer after a complete pass,
// which records this build's (a partial one, or one that could not read a
// body, does not).
func TestReindexCommand(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	err = st.Write(ctx, func(tx store.Tx) error {
		for i, id := range []string{"o1", "o2", "o3", "o4", "o5"} {
			body := `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"44249-1"}]}}`
			// o1 with the patient row an older build wrote.
			var old []search.Entry
			if id == "o1" {
				old = []search.Entry{{Param: "patient", Type: search.TypeReference, RefType: "Patient", RefID: "po1"}}
			}
			if err := tx.Put(&store.Resource{Type: "Observation", ID: id, Version: 1, LastUpdated: now, Body: []byte(body)}, old); err != nil {
				return err
			}
			if i < 2 {
				body := `{"resourceType":"Patient","id":"p` + id + `","gender":"female"}`
				if err := tx.Put(&store.Resource{Type: "Patient", ID: "p" + id, Version: 1, LastUpdated: now, Body: []byte(body)}, nil); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil { // as a database an older build indexed records it
		err = st.MarkIndexed(ctx, 1)
	}
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	found := func(typ, param, value string) int {
		t.Helper()
		st, err := sqlite.Open(ctx, db, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		q, err := search.ParseConditional(typ, param+"="+value)
		if err != nil {
			t.Fatal(err)
		}
		q.Count = 100 // a conditional query stops at two matches
		pg, err := st.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return len(pg.Matches)
	}
	report := func(args ...string) (reindex.Report, string, int) {
		t.Helper()
		out, errOut, code := cli(t, "", append([]string{"reindex", "--db", db}, args...)...)
		var r reindex.Report
		if code <= exitInvalid {
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("reindex %v printed %q: %v", args, out, err)
			}
		}
		return r, errOut, code
	}

	const warning = "the search index holds rows an older build wrote"
	if _, logs := serveUntilUp(t, db); !strings.Contains(logs, warning) || !strings.Contains(logs, "run 'ketamine-gateway reindex'") {
		t.Errorf("serve on a database with an older build's rows did not say to reindex:\n%s", logs)
	}

	r, errOut, code := report("--dry-run")
	// serve published its conformance resources, with their own rows.
	all := r.Checked
	if code != exitInvalid || all < 7 || r.Changed != 7 || !r.Done || !r.DryRun || !strings.Contains(errOut, fmt.Sprintf("7 of %d resources", all)) {
		t.Fatalf("dry run: exit %d, %+v, stderr %q; want exit 1, 7 to change", code, r, errOut)
	}
	if r.IndexVersion != 1 || r.BuildIndexVersion != search.IndexVersion {
		t.Errorf("dry run: index version %d, build's %d; want 1 and %d", r.IndexVersion, r.BuildIndexVersion, search.IndexVersion)
	}
	if fmt.Sprint(r.ChangedTypes) != "map[Observation:5 Patient:2]" {
		t.Errorf("dry run: changed types %v, want 5 Observations and 2 Patients", r.ChangedTypes)
	}
	if n := found("Observation", "code", "44249-1"); n != 0 {
		t.Fatalf("after the dry run, %d Observations found by code; want none (it writes nothing)", n)
	}
	if r, _, code := report("--type", "Patient", "--dry-run"); code != exitInvalid || r.Checked != 2 || r.Changed != 2 || r.Type != "Patient" {
		t.Errorf("dry run of Patients: exit %d, %+v; want 2 of 2", code, r)
	}
	// A tenant that holds no resource is a usage error naming those that
	// do (a misspelt name would check nothing, exit 0).
	if _, errOut, code := report("--tenant", "nosuch", "--dry-run"); code != exitUsage ||
		!strings.Contains(errOut, `--tenant: no resource of this tenant is stored; the tenants with resources are the default tenant ("")`) {
		t.Errorf("reindex --tenant nosuch: exit %d, %q; want exit 2 naming the default tenant", code, errOut)
	}
	if r, errOut, code := report("--tenant", "", "--type", "Patient", "--dry-run"); code != exitInvalid || r.Changed != 2 {
		t.Errorf("dry run of the default tenant's Patients: exit %d, %+v, %s; want 2 to change", code, r, errOut)
	}
	if r, errOut, code := report("--type", "Patient"); code != 0 || r.Checked != 2 || r.Changed != 2 || r.IndexVersion != 1 {
		t.Errorf("reindex of Patients: exit %d, %+v, %s; want 2 of 2, the index version left at 1", code, r, errOut)
	}
	if n := found("Patient", "gender", "female"); n != 2 {
		t.Errorf("%d Patients found by gender, want 2", n)
	}
	if r, errOut, code := report("--batch", "2"); code != 0 || r.Checked != all || r.Changed != 5 || !r.Done || r.IndexVersion != search.IndexVersion {
		t.Errorf("reindex: exit %d, %+v, stderr %q; want 5 of %d changed, this build's index version", code, r, errOut, all)
	}
	if n := found("Observation", "code", "44249-1"); n != 5 {
		t.Errorf("%d Observations found by code, want 5", n)
	}
	if r, errOut, code := report("--dry-run"); code != 0 || r.Checked != all || r.Changed != 0 {
		t.Errorf("dry run after: exit %d, %+v, %s; want 0 of %d", code, r, errOut, all)
	}
	if _, logs := serveUntilUp(t, db); strings.Contains(logs, warning) {
		t.Errorf("serve after reindex still says to reindex:\n%s", logs)
	}
	// A damaged body: named, left as it is, exit 1; the pass goes on.
	st, err = sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Write(ctx, func(tx store.Tx) error {
		return tx.Put(&store.Resource{Type: "Basic", ID: "damaged", Version: 1, LastUpdated: now, Body: []byte(`{"resourceType":`)}, nil)
	})
	if err == nil {
		err = st.MarkIndexed(ctx, 1)
	}
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, errOut, code = report()
	if code != exitInvalid || r.Checked <= all || r.UnreadableCount != 1 || r.IndexVersion != 1 || fmt.Sprint(r.Unreadable) != "[Basic/damaged]" || !r.Done ||
		!strings.Contains(errOut, "the stored body of 1 resource could not be read") {
		t.Errorf("reindex over a damaged body: exit %d, %+v, stderr %q; want exit 1 naming Basic/damaged, the index version left at 1", code, r, errOut)
	}
}
