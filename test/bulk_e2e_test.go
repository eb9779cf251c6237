package test

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite"
)

// loadSynthea posts the Synthea bundles as transactions and returns, per
// bundle, the resources each created ("Type/id").
func loadSynthea(t *testing.T, base string, files []string) [][]string {
	t.Helper()
	var out [][]string
	for _, f := range files {
		body, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		status, _, resp := doReq(t, "POST", base+"/fhir", string(body))
		if status != 200 {
			t.Fatalf("%s: transaction = %d", filepath.Base(f), status)
		}
		var refs []string
		for _, e := range resp["entry"].([]any) {
			loc, _ := e.(map[string]any)["response"].(map[string]any)["location"].(string)
			parts := strings.Split(loc, "/")
			refs = append(refs, parts[0]+"/"+parts[1])
		}
		out = append(out, refs)
	}
	return out
}

// TestBulkExportSynthea: after loading the 9 Synthea bundles, a system
// export returns every resource exactly once, each byte for byte as a read
// returns it; _type and _since narrow it; a Patient and a Group export
// keep to their patients; bad kick-offs are refused with a clear
// OperationOutcome.
func TestBulkExportSynthea(t *testing.T) {
	dir := sharedTestdata(t, "synthea")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 9 {
		t.Fatalf("%d Synthea bundles, want 9", len(files))
	}
	g := start(t)
	loaded := loadSynthea(t, g.base, files[:5])
	time.Sleep(5 * time.Millisecond) // _since must fall between two loads (millisecond timestamps)
	since := time.Now().UTC()
	time.Sleep(5 * time.Millisecond)
	loaded = append(loaded, loadSynthea(t, g.base, files[5:])...)

	_, m := exportDone(t, g.base+"/fhir/$export")
	// (Development mode: no token exists, so the files need none.)
	if m.RequiresAccessToken || m.TransactionTime == "" || m.Request != g.base+"/fhir/$export" || m.Error == nil {
		t.Errorf("manifest = %+v", m)
	}
	got := download(t, m)
	seen := map[string]int{}
	for _, r := range got {
		seen[r.typ+"/"+r.id]++
	}
	want := 0
	for _, refs := range loaded {
		for _, ref := range refs {
			want++
			if seen[ref] != 1 {
				t.Errorf("%s exported %d times, want once", ref, seen[ref])
			}
		}
	}
	for ref, n := range seen {
		if n != 1 {
			t.Errorf("%s exported %d times", ref, n)
		}
	}
	t.Logf("%d resources exported, %d loaded from the bundles", len(got), want)
	// Each exported resource is exactly what a read returns.
	for i, r := range got {
		if i%7 != 0 && r.typ != "Patient" { // a sample of every type, every Patient
			continue
		}
		status, _, body := rawReq(t, "GET", g.base+"/fhir/"+r.typ+"/"+r.id, "")
		if status != 200 || !bytes.Equal(bytes.TrimSpace(body), r.line) {
			t.Errorf("%s/%s: exported line differs from the read (%d)", r.typ, r.id, status)
		}
	}

	// _type narrows to the types named, _since to what changed after it.
	_, m = exportDone(t, g.base+"/fhir/$export?_type=Patient,Observation")
	types := map[string]bool{}
	for _, f := range m.Output {
		types[f.Type] = true
	}
	if len(types) != 2 || !types["Patient"] || !types["Observation"] {
		t.Errorf("_type=Patient,Observation exported %v", types)
	}
	_, m = exportDone(t, g.base+"/fhir/$export?_type=Patient&_since="+url.QueryEscape(since.Format(time.RFC3339Nano)))
	var later []string
	for _, refs := range loaded[5:] {
		for _, ref := range refs {
			if strings.HasPrefix(ref, "Patient/") {
				later = append(later, ref)
			}
		}
	}
	var gotLater []string
	for _, r := range download(t, m) {
		gotLater = append(gotLater, r.typ+"/"+r.id)
	}
	slices.Sort(later)
	slices.Sort(gotLater)
	if len(later) == 0 || !slices.Equal(gotLater, later) {
		t.Errorf("_since exported %v, want the 4 Patients loaded after it %v", gotLater, later)
	}

	// A Group export keeps to its members' compartments, a Patient
	// export to every patient's.
	var p1, p2 string
	for _, ref := range loaded[0] {
		if strings.HasPrefix(ref, "Patient/") {
			p1 = ref
		}
	}
	for _, ref := range loaded[1] {
		if strings.HasPrefix(ref, "Patient/") {
			p2 = ref
		}
	}
	group := fmt.Sprintf(`{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":%q}},{"entity":{"reference":%q},"inactive":true}]}`, p1, p2)
	status, h, _ := doReq(t, "POST", g.base+"/fhir/Group", group)
	if status != 201 {
		t.Fatalf("create Group = %d", status)
	}
	gid := groupID(h.Get("Location"))
	_, m = exportDone(t, g.base+"/fhir/Group/"+gid+"/$export?_type=Patient,Observation,Encounter")
	wantGroup := map[string]bool{}
	for _, ref := range loaded[0] {
		if strings.HasPrefix(ref, "Patient/") || strings.HasPrefix(ref, "Observation/") || strings.HasPrefix(ref, "Encounter/") {
			wantGroup[ref] = true
		}
	}
	groupGot := download(t, m)
	for _, r := range groupGot {
		if !wantGroup[r.typ+"/"+r.id] {
			t.Errorf("Group export has %s/%s, which is not its active member's", r.typ, r.id)
		}
	}
	if len(groupGot) != len(wantGroup) {
		t.Errorf("Group export has %d resources, want %d", len(groupGot), len(wantGroup))
	}

	// Bad kick-offs: a clear OperationOutcome, no job.
	bad := []struct {
		url    string
		header string
		status int
		rule   string
	}{
		{"/fhir/$export?_outputFormat=text/csv", "Prefer: respond-async", 400, "export-format-unsupported"},
		{"/fhir/$export?_type=Observation,NotAType", "Prefer: respond-async", 400, "export-type-unknown"},
		{"/fhir/$export?_since=2999-01-01T00:00:00Z", "Prefer: respond-async", 400, "export-since-future"},
		{"/fhir/$export?_since=yesterday", "Prefer: respond-async", 400, "export-since-invalid"},
		{"/fhir/$export?_typeFilter=Observation%3Fnonsense%3D1", "Prefer: respond-async", 400, "export-typefilter-invalid"},
		{"/fhir/Patient/$export?_type=Patient,Organization,Observation", "Prefer: respond-async", 400, "export-type-not-in-compartment"},
		{"/fhir/Group/no-such-group/$export", "Prefer: respond-async", 404, "resource-unknown"},
		{"/fhir/$export", "Accept: application/fhir+json", 400, "export-prefer-respond-async"},
	}
	for _, tc := range bad {
		status, h, oo := doReq(t, "GET", g.base+tc.url, "", tc.header)
		if status != tc.status || h.Get("Content-Location") != "" || !strings.Contains(fmt.Sprint(oo), tc.rule) {
			t.Errorf("%s = %d %v, want %d %s", tc.url, status, oo, tc.status, tc.rule)
		}
	}
}

// groupID is the id in a Location header (".../Group/<id>/_history/1").
func groupID(loc string) string {
	parts := strings.Split(loc, "/")
	for i, p := range parts {
		if p == "Group" && i+1 < len(parts) {
			return parts[i+1]
		}
	}
	return ""
}

// waitProgress polls a job until it reports some progress while running.
func waitProgress(t *testing.T, loc string, headers ...string) {
	t.Helper()
	end := time.Now().Add(time.Minute)
	for {
		status, h, body := rawReq(t, "GET", loc, "", headers...)
		if status != http.StatusAccepted {
			t.Fatalf("job ended (%d %.300s) before the test could interrupt it: seed more", status, body)
		}
		var v struct{ Done int64 }
		_ = json.Unmarshal(body, &v)
		if v.Done > 0 && h.Get("X-Progress") != "" {
			return
		}
		if time.Now().After(end) {
			t.Fatal("the job made no progress within a minute")
		}
		time.Sleep(10 * time.Millisecond) // polling a running job
	}
}

// TestBulkExportCancel: DELETE on a running export cancels it: the status
// and the files are 404 from then on, and the runner writes nothing more.
func TestBulkExportCancel(t *testing.T) {
	db := seededDB(t, 100_000)
	g := start(t, "--db", db)
	loc := kickoff(t, g.base+"/fhir/$export?_type=Observation")
	waitProgress(t, loc)
	status, _, _ := rawReq(t, "DELETE", loc, "")
	if status != http.StatusAccepted {
		t.Fatalf("DELETE = %d, want 202", status)
	}
	id := loc[strings.LastIndex(loc, "/")+1:]
	if status, _, _ := rawReq(t, "GET", loc, ""); status != http.StatusNotFound {
		t.Errorf("status after DELETE = %d, want 404", status)
	}
	if status, _, _ := rawReq(t, "GET", loc+"/files/1", ""); status != http.StatusNotFound {
		t.Errorf("file after DELETE = %d, want 404", status)
	}
	// The runner stops: no part of the job is left or written later.
	rdb, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		var parts int
		var st string
		if err := rdb.QueryRow(`SELECT COUNT(*) FROM job_parts WHERE job_id = ?`, id).Scan(&parts); err != nil {
			t.Fatal(err)
		}
		if err := rdb.QueryRow(`SELECT status FROM jobs WHERE id = ?`, id).Scan(&st); err != nil && err != sql.ErrNoRows {
			t.Fatal(err)
		}
		if parts != 0 || (st != "" && st != "cancelled") {
			t.Fatalf("after cancel: %d parts, status %q", parts, st)
		}
		time.Sleep(100 * time.Millisecond) // watching for late writes
	}
	g.stop(t)
	if logs := g.Logs.String(); !strings.Contains(logs, "the job was cancelled or taken over") && !strings.Contains(logs, `"msg":"jobs: cancelled"`) {
		t.Errorf("the runner did not report stopping:\n%s", g.Logs)
	}
}

// TestBulkExportRestart: a gateway killed (SIGKILL) in the middle of an
// export leaves a job that the next gateway resumes from its checkpoint;
// the manifest lists every resource exactly once (no missing file, no
// duplicate).
func TestBulkExportRestart(t *testing.T) {
	const n = 100_000
	db := seededDB(t, n)
	g := start(t, "--db", db, "--job-lease", "2s")
	loc := kickoff(t, g.base+"/fhir/$export?_type=Observation")
	waitProgress(t, loc)
	if err := g.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = g.Cmd.Wait()
	g2 := start(t, "--db", db, "--job-lease", "2s")
	loc = strings.Replace(loc, g.base, g2.base, 1)
	status, body := pollJob(t, loc, 3*time.Minute)
	if status != http.StatusOK {
		t.Fatalf("export after the restart ended %d %s", status, body)
	}
	var m manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	for i := range m.Output {
		m.Output[i].URL = strings.Replace(m.Output[i].URL, g.base, g2.base, 1)
	}
	seen := map[string]bool{}
	for _, r := range download(t, m) {
		if seen[r.id] {
			t.Errorf("%s exported twice", r.id)
		}
		seen[r.id] = true
	}
	if len(seen) != n {
		t.Errorf("%d Observations exported after the restart, want %d", len(seen), n)
	}
	g2.stop(t)
	if !strings.Contains(g2.Logs.String(), `"attempt":2`) {
		t.Errorf("the second gateway did not resume the job (attempt 2):\n%s", g2.Logs)
	}
}

// TestBulkImportCLI: 10,000 generated native records with a handful of
// bad ones: the import reports exactly those (line, rule, pointer, never a
// value) and stores the rest; stdin works; an unknown kind is a usage
// error naming the kinds.
func TestBulkImportCLI(t *testing.T) {
	const n = 10_000
	bad := []int{17, 18, 2024, 5001, 9999}
	records := nativeRecords(t, "../schemas/examples/assessment/phq9-total-only.json", n, "imp", bad...)
	dir := t.TempDir()
	in := filepath.Join(dir, "records.ndjson")
	if err := os.WriteFile(in, []byte(strings.Join(records, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db, report := filepath.Join(dir, "kg.db"), filepath.Join(dir, "rejected.ndjson")
	code, stdout, stderr := cli(t, "", "import", "--kind", "assessment", "--db", db, "--report", report, in)
	if code != 1 || !strings.Contains(stdout, fmt.Sprintf("%d read, %d stored, %d rejected", n, n-len(bad), len(bad))) {
		t.Fatalf("import = exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "import: ") {
		t.Errorf("no progress lines on stderr: %q", stderr)
	}
	lines := readReport(t, report)
	if len(lines) != len(bad) {
		t.Fatalf("report has %d lines, want %d", len(lines), len(bad))
	}
	for i, l := range lines {
		if l.Line != int64(bad[i]+1) || len(l.Issues) == 0 || l.Issues[0].Rule == "" {
			t.Errorf("report line %d = %+v, want line %d with rules", i, l, bad[i]+1)
		}
	}
	raw, _ := os.ReadFile(report)
	for _, marker := range []string{"Sample", "Riley", "imp00"} {
		if bytes.Contains(raw, []byte(marker)) {
			t.Errorf("the report quotes record content %q", marker)
		}
	}
	g := start(t, "--db", db)
	stored := n - len(bad)
	if got := countOn(t, g, "Observation"); got == 0 || got%stored != 0 {
		t.Errorf("%d Observations stored, not the same number for each of %d records", got, stored)
	}
	for _, typ := range []string{"Patient", "Provenance"} {
		if got := countOn(t, g, typ); got != stored {
			t.Errorf("%d %s stored, want %d", got, typ, stored)
		}
	}
	g.stop(t)

	code, stdout, _ = cli(t, strings.Join(records[:3], "\n"), "import", "--kind", "assessment", "--db", db, "--report", report, "-")
	if code != 0 || !strings.Contains(stdout, "3 read, 0 stored, 3 already stored (unchanged), 0 rejected") {
		t.Errorf("import from stdin of records stored before = exit %d %s", code, stdout)
	}
	code, _, stderr = cli(t, "", "import", "--kind", "nonsense", "--db", db, in)
	if code != 2 || !strings.Contains(stderr, "session") {
		t.Errorf("unknown kind = exit %d %s", code, stderr)
	}
}

// rejection is a line of an import report.
type rejection struct {
	Line   int64
	File   string
	Status int
	Issues []struct{ Rule, Pointer string }
}

func readReport(t *testing.T, path string) []rejection {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []rejection
	for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		if len(l) == 0 {
			continue
		}
		var r rejection
		if err := json.Unmarshal(l, &r); err != nil {
			t.Fatalf("report line %s: %v", l, err)
		}
		out = append(out, r)
	}
	return out
}

// TestBulkImportInterrupted: an import interrupted midway (SIGINT, then a
// SIGKILL in a second run) and run again stores every record once.
func TestBulkImportInterrupted(t *testing.T) {
	const n = 1500
	records := nativeRecords(t, "../schemas/examples/vitals/post-dose-40min.json", n, "int")
	dir := t.TempDir()
	in := filepath.Join(dir, "records.ndjson")
	if err := os.WriteFile(in, []byte(strings.Join(records, "\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(dir, "kg.db")
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGKILL} {
		cmd := execImport(db, filepath.Join(dir, "r.ndjson"), in)
		var out bytes.Buffer
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitLedger(t, db, 50)
		_ = cmd.Process.Signal(sig)
		err := cmd.Wait()
		if err == nil {
			t.Fatalf("the import finished before it was interrupted: seed more records")
		}
		// Interrupted, it exits 3 as documented (bulk.md, README).
		if ee := (*exec.ExitError)(nil); sig == os.Interrupt && (!errors.As(err, &ee) || ee.ExitCode() != 3) {
			t.Errorf("an import interrupted by SIGINT: %v, want exit 3", err)
		}
	}
	code, stdout, stderr := cli(t, "", "import", "--kind", "vitals", "--db", db, "--report", filepath.Join(dir, "r.ndjson"), in)
	// The records the interrupted runs stored are counted apart.
	m := regexp.MustCompile(`(\d+) read, (\d+) stored, (\d+) already stored \(unchanged\), 0 rejected`).FindStringSubmatch(stdout)
	if code != 0 || m == nil || m[1] != fmt.Sprint(n) || atoi(t, m[2])+atoi(t, m[3]) != n || atoi(t, m[3]) < 50 {
		t.Fatalf("import again = exit %d %s %s; want %d read, the stored and the already stored adding up", code, stdout, stderr, n)
	}
	g := start(t, "--db", db)
	// Each record maps to the same number of Observations, at least one:
	// a count that is no multiple of n, or none, is a record lost or
	// stored twice.
	obs, patients, provenance := countOn(t, g, "Observation"), countOn(t, g, "Patient"), countOn(t, g, "Provenance")
	if obs == 0 || obs%n != 0 || patients != n || provenance != n {
		t.Errorf("after the runs: %d Observations (%d per record), %d Patients, %d Provenance; want each record once",
			obs, obs/n, patients, provenance)
	}
}

// atoi is s as an int (0, and the test failed, when it is none).
func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Errorf("%q is not a number", s)
	}
	return n
}

// execImport is an import command to start.
func execImport(db, report, in string) *exec.Cmd {
	return exec.Command(binary, "import", "--kind", "vitals", "--db", db, "--report", report, in)
}

// waitLedger waits until the database's ledger holds at least n entries.
func waitLedger(t *testing.T, db string, n int) {
	t.Helper()
	end := time.Now().Add(time.Minute)
	for {
		rdb, err := sql.Open("sqlite", "file:"+db+"?mode=ro&_pragma=busy_timeout(5000)")
		if err == nil {
			var got int
			err = rdb.QueryRow(`SELECT COUNT(*) FROM ledger`).Scan(&got)
			rdb.Close()
			if err == nil && got >= n {
				return
			}
		}
		if time.Now().After(end) {
			t.Fatalf("the ledger did not reach %d entries", n)
		}
		time.Sleep(20 * time.Millisecond) // watching a running import
	}
}
