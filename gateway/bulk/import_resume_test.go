package bulk_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// phq9Lines returns n PHQ-9 records, one a line, of distinct records and
// patients.
func phq9Lines(t *testing.T, n int) []string {
	t.Helper()
	raw, err := os.ReadFile("../../schemas/examples/assessment/phq9-total-only.json")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	_ = json.Unmarshal(raw, &tmpl)
	var lines []string
	for i := range n {
		tmpl["source"].(map[string]any)["recordId"] = "res" + itoa(i)
		tmpl["patient"].(map[string]any)["id"] = "pres" + itoa(i)
		b, _ := json.Marshal(tmpl)
		lines = append(lines, string(b))
	}
	return lines
}

// TestImportResumedCountsOwnRecords (p21 F4): an HTTP import whose runner
// died after storing records it had not yet counted (kill -9 between two
// saves) is resumed by another runner, which finds those records in the
// ledger: they are counted as stored (this job stored them), not as
// already stored; a record stored before the job was submitted still is.
// After the job finishes its input (the records posted, PHI) is deleted,
// and its report of rejected records stays (p21 F5).
func TestImportResumedCountsOwnRecords(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "import.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a, err := app.New(app.Config{Store: st, BacklogEvery: -1, Jobs: jobs.Config{Poll: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	a.Bulk = bulk.New(bulk.Config{Store: st, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs, PartBytes: 1 << 20, FileResources: 40})
	p := &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(auth.ScopeIngest)}
	lines := append(phq9Lines(t, 10), "not json")
	// Record 0 was stored before the import.
	if _, err := a.Ingest.Import(ctx, auditlog.NewScope("ingest", p), "assessment", []byte(lines[0])); err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", p)
	j, err := a.Bulk.SubmitImport(ctx, sc, "assessment", false, strings.NewReader(strings.Join(lines, "\n")), 1<<20, "https://gw")
	if err != nil {
		t.Fatal(err)
	}
	// A runner claimed the job, stored records 1 to 4 and died before it
	// saved (its lease ran out long ago).
	if c, err := st.ClaimJob(ctx, []string{bulk.KindImport}, "dead", time.Now().Add(-time.Hour), time.Minute); err != nil || c == nil || c.ID != j.ID {
		t.Fatalf("ClaimJob = %v, %v", c, err)
	}
	for _, line := range lines[1:5] {
		if _, err := a.Ingest.Import(ctx, auditlog.NewScope("ingest", p), "assessment", []byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	var res bulk.ImportResult
	if err := json.Unmarshal(cur.Result, &res); err != nil {
		t.Fatal(err)
	}
	if res.Records != 11 || res.Stored != 9 || res.AlreadyStored != 1 || res.Rejected != 1 {
		t.Errorf("result = %+v, want 11 records: 9 stored, 1 already stored, 1 rejected", res)
	}
	var input, report int
	_ = st.JobFile(ctx, j.ID, 0, func(p []byte) error { input += len(p); return nil })
	_ = st.JobFile(ctx, j.ID, 1, func(p []byte) error { report += len(p); return nil })
	if input != 0 || report == 0 {
		t.Errorf("after the import: %d bytes of input kept (want none), %d of report (want some)", input, report)
	}
}

// TestImportResumedUnderAnotherMapping (p38 F4): an import cut off under
// one mapping and resumed by a gateway of another release continues (the
// records stored stay stored, each ledger entry names its mapping) and its
// result says which mappings stored its records, in order; a run of a
// release that recorded none is "unrecorded".
func TestImportResumedUnderAnotherMapping(t *testing.T) {
	for _, tc := range []struct {
		name       string
		checkpoint string
		want       []string
	}{
		{"another mapping", `{"counts":{"Records":3,"Stored":3},"mappings":["2.1.0"]}`, []string{"2.1.0", mapping.Version}},
		{"an older release", `{"counts":{"Records":3,"Stored":3}}`, []string{"unrecorded", mapping.Version}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "import.db"), sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			a, err := app.New(app.Config{Store: st, BacklogEvery: -1, Jobs: jobs.Config{Poll: 5 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			a.Bulk = bulk.New(bulk.Config{Store: st, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs, PartBytes: 1 << 20, FileResources: 40})
			p := &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(auth.ScopeIngest)}
			sc := auditlog.NewScope("ingest", p)
			j, err := a.Bulk.SubmitImport(ctx, sc, "assessment", false, strings.NewReader(strings.Join(phq9Lines(t, 6), "\n")), 1<<20, "https://gw")
			if err != nil {
				t.Fatal(err)
			}
			// The other release's runner saved its checkpoint after 3
			// records and stopped (its lease ran out long ago).
			c, err := st.ClaimJob(ctx, []string{bulk.KindImport}, "old", time.Now().Add(-time.Hour), time.Minute)
			if err != nil || c == nil || c.ID != j.ID {
				t.Fatalf("ClaimJob = %v, %v", c, err)
			}
			if err := st.SaveJob(ctx, j.ID, c.Claim, time.Now().Add(-time.Hour), store.JobProgress{Done: 3, Total: -1, Checkpoint: []byte(tc.checkpoint)}); err != nil {
				t.Fatal(err)
			}
			if err := a.Start(ctx); err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
			var res bulk.ImportResult
			if err := json.Unmarshal(cur.Result, &res); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.MappingVersions, tc.want) || !strings.Contains(res.Summary, "mapping") {
				t.Errorf("result = %+v, want mappingVersions %v and a summary saying so", res, tc.want)
			}
		})
	}
}
