package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestReindexJobE2E: POST /admin/reindex on a running gateway (the real
// binary) runs a pass as a job: a dry run, then a pass that records this
// build's index version, both over every resource the gateway stored; an
// unknown type or a batch out of range is a 400 naming the rule, and no
// job.
func TestReindexJobE2E(t *testing.T) {
	g := start(t, "--db", filepath.Join(t.TempDir(), "kg.db"))
	session, err := os.ReadFile("../schemas/examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	status, _, body := rawReq(t, "POST", g.base+"/ingest/session", string(session), "Content-Type: application/json")
	if status != http.StatusOK {
		t.Fatalf("ingest = %d %s", status, body)
	}
	for _, tc := range []struct{ query, rule string }{
		{"?type=Observations", "reindex-type-unknown"},
		{"?batch=10001", "reindex-batch-range"},
		{"?dryRun=maybe", "dryRun"},
	} {
		status, h, body := rawReq(t, "POST", g.base+"/admin/reindex"+tc.query, "")
		if status != http.StatusBadRequest || h.Get("Content-Location") != "" || !bytes.Contains(body, []byte(tc.rule)) {
			t.Errorf("POST /admin/reindex%s = %d %s; want 400 naming %s", tc.query, status, body, tc.rule)
		}
	}
	for _, query := range []string{"?dryRun=true", "?batch=7"} {
		status, h, body := rawReq(t, "POST", g.base+"/admin/reindex"+query, "")
		if status != http.StatusAccepted || h.Get("Content-Location") == "" {
			t.Fatalf("POST /admin/reindex%s = %d %s", query, status, body)
		}
		status, body = pollJob(t, h.Get("Content-Location"), time.Minute)
		var job struct {
			Status string
			Result struct {
				DryRun                          bool
				Checked, Changed                int
				Done                            bool
				IndexVersion, BuildIndexVersion int
			}
		}
		if err := json.Unmarshal(body, &job); err != nil || status != 200 || job.Status != "done" {
			t.Fatalf("reindex job%s = %d %s", query, status, body)
		}
		r := job.Result
		// The session's resources, the conformance resources and the
		// AuditEvents: all written by this build, so none to change.
		if r.Checked < 56 || r.Changed != 0 || !r.Done || r.DryRun != (query == "?dryRun=true") ||
			r.IndexVersion != r.BuildIndexVersion || r.BuildIndexVersion < 2 {
			t.Errorf("reindex job%s result = %+v", query, r)
		}
	}
}
