package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReplayCLIAndJob: the replay command and POST /admin/replay through
// the binary, over records loaded with the import command: the binary's
// own mapping changes nothing (exit 0, every record unchanged, in the
// table and in JSON); an apply of it writes nothing; bad filters are usage
// errors naming the valid values; a filter that matches nothing says so;
// the HTTP job answers the same summary and a per-record report.
func TestReplayCLIAndJob(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "kg.db")
	sessions := nativeRecords(t, "../schemas/examples/session/routine-ketamine-iv-session.json", 12, "rp")
	assessments := nativeRecords(t, "../schemas/examples/assessment/phq9-moderate.json", 8, "ra")
	// The sessions are the default tenant's (development mode's), the
	// assessments clinic-a's.
	for kind, recs := range map[string][]string{"session": sessions, "assessment": assessments} {
		in := filepath.Join(dir, kind+".ndjson")
		if err := os.WriteFile(in, []byte(strings.Join(recs, "\n")), 0o600); err != nil {
			t.Fatal(err)
		}
		tenant := map[string]string{"session": "", "assessment": "clinic-a"}[kind]
		if code, out, errs := cli(t, "", "import", "--kind", kind, "--db", db, "--tenant", tenant, "--new-tenant",
			"--report", filepath.Join(dir, "r.ndjson"), in); code != 0 {
			t.Fatalf("import %s = %d %s %s", kind, code, out, errs)
		}
	}
	code, out, errs := cli(t, "", "replay", "--db", db)
	if code != 0 || !strings.Contains(out, "over 20 records: 20 unchanged, 0 would change") {
		t.Errorf("replay = exit %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = cli(t, "", "replay", "--db", db, "--kind", "session", "--json")
	var rep struct {
		Records []struct{ Status, Kind, Tenant string }
		Summary struct{ Records, Unchanged int }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("replay --json = exit %d %v\n%s", code, err, out)
	}
	if rep.Summary.Records != 12 || rep.Summary.Unchanged != 12 || len(rep.Records) != 12 ||
		rep.Records[0].Status != "unchanged" || rep.Records[0].Kind != "session" {
		t.Errorf("replay --json = %+v", rep)
	}
	code, out, _ = cli(t, "", "replay", "--db", db, "--apply", "--no-config", "--reason", "identity")
	if code != 0 || !strings.Contains(out, "20 unchanged, 0 changed (written)") {
		t.Errorf("replay --apply of the same mapping = exit %d %s", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--kind", "nonsense"}, 2, "the kinds are assessment, vitals, infusion, adverse-event, session"},
		{[]string{"--tenant", "clinic-z"}, 2, `the tenants with records are the default tenant ("") and "clinic-a"`},
		{[]string{"--since", "yesterday"}, 2, "RFC 3339"},
		{[]string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, 2, "since: the time is in the future"},
		{[]string{"--source", "serenity-clinc-emr"}, 2, "source: no record of this clinic system is stored"},
		{[]string{"--apply"}, 2, "reason: say why the changes are applied"},
		{[]string{"--apply", "--reason", "  "}, 2, "reason: say why the changes are applied"},
	} {
		code, _, errs := cli(t, "", append([]string{"replay", "--db", db}, tc.args...)...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("replay %v = exit %d %s; want %d and %q", tc.args, code, errs, tc.code, tc.want)
		}
	}
	code, out, _ = cli(t, "", "replay", "--db", db, "--kind", "vitals")
	if code != 0 || !strings.Contains(out, "No stored record matches the filter") {
		t.Errorf("replay matching nothing = exit %d %s", code, out)
	}
	if code, _, errs := cli(t, "", "replay", "--db", filepath.Join(dir, "missing", "kg.db")); code != 3 {
		t.Errorf("replay on a database that cannot be opened = exit %d %s, want 3", code, errs)
	}

	g := start(t, "--db", db)
	status, h, body := rawReq(t, "POST", g.base+"/admin/replay", "") // development mode: the default tenant's
	if status != http.StatusAccepted || h.Get("Content-Location") == "" {
		t.Fatalf("POST /admin/replay = %d %s", status, body)
	}
	status, body = pollJob(t, h.Get("Content-Location"), time.Minute)
	var job struct {
		Status string
		Result struct {
			Records, Unchanged, Changed int
			Report                      string
		}
	}
	if err := json.Unmarshal(body, &job); err != nil || status != 200 || job.Status != "done" {
		t.Fatalf("replay job = %d %s", status, body)
	}
	if job.Result.Records != 12 || job.Result.Unchanged != 12 || job.Result.Report == "" {
		t.Errorf("replay job result = %+v", job.Result)
	}
	status, _, report := rawReq(t, "GET", job.Result.Report, "")
	if lines := bytes.Count(report, []byte("\n")); status != 200 || lines != 12 {
		t.Errorf("replay report = %d, %d lines, want 12", status, lines)
	}
	status, _, body = rawReq(t, "POST", g.base+"/admin/replay?kind=nonsense", "")
	if status != http.StatusBadRequest || !bytes.Contains(body, []byte("replay-kind-unknown")) {
		t.Errorf("replay of an unknown kind = %d %s", status, body)
	}
	status, _, body = rawReq(t, "POST", g.base+"/admin/replay?apply=true", "")
	if status != http.StatusBadRequest || !bytes.Contains(body, []byte("replay-reason-missing")) {
		t.Errorf("replay applied without a reason = %d %s", status, body)
	}
}
