package bulk_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/jobs"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The PostgreSQL store's Close waits at most 5 s for its pool to
		// close, and leaves the rest to end by itself (postgres.Store.Close):
		// closing a connection waits for the server's answer to Terminate
		// (pgconn's asyncClose, bounded at 15 s), which a loaded machine
		// running -race can take longer than that to give (a CI run saw
		// it once). Those goroutines end by themselves; they are not the
		// code under test's.
		goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"),
		goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgxpool.NewWithConfig.func4"),
		goleak.IgnoreAnyFunction("github.com/ketamine-gateway/ketamine-gateway/gateway/store/postgres.(*Store).Close.func1"))
}

// records reads a Source whole.
func records(t *testing.T, src bulk.Source) []bulk.Record {
	t.Helper()
	var out []bulk.Record
	for {
		r, err := src.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
}

// TestNDJSON: records by line, numbered as lines (blank lines skipped
// but counted), the last without a newline, CRLF, and a line beyond the
// limit rejected on its own while the next is read.
func TestNDJSON(t *testing.T) {
	in := "{\"a\":1}\n\n{\"a\":2}\r\n" + `{"long":"` + strings.Repeat("x", 200) + `"}` + "\n{\"a\":3}"
	got := records(t, bulk.NDJSON(strings.NewReader(in), 100))
	want := []struct {
		line int64
		body string
		err  bool
	}{{1, `{"a":1}`, false}, {3, `{"a":2}`, false}, {4, "", true}, {5, `{"a":3}`, false}}
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		if got[i].Line != w.line || string(got[i].Body) != w.body || (got[i].Err != nil) != w.err {
			t.Errorf("record %d = line %d %q err %v, want line %d %q err %v", i, got[i].Line, got[i].Body, got[i].Err, w.line, w.body, w.err)
		}
	}
	n, err := bulk.CountLines(strings.NewReader(in))
	if err != nil || n != 4 {
		t.Errorf("CountLines = %d, %v; want 4", n, err)
	}
	dir := t.TempDir()
	for name, body := range map[string]string{"b.json": `{"b":1}`, "a.json": `{"a":1}`, "notes.txt": "x", "c.JSON": `{"c":1}`} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	src, total, err := bulk.Dir(dir, 100)
	if err != nil || total != 3 {
		t.Fatalf("Dir = %d, %v", total, err)
	}
	var names []string
	for _, r := range records(t, src) {
		names = append(names, r.File)
	}
	if strings.Join(names, ",") != "a.json,b.json,c.JSON" {
		t.Errorf("Dir files = %v", names)
	}
}

// newApp is an application over a new SQLite database, running jobs with
// small file parts and a fast poll.
func newApp(t *testing.T, partBytes int) (*app.App, store.Store) {
	t.Helper()
	return newAppOn(t, partBytes, func(st store.Store) store.Store { return st })
}

// newAppOn is newApp with the application's store wrapped by wrap.
func newAppOn(t *testing.T, partBytes int, wrap func(store.Store) store.Store) (*app.App, store.Store) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "bulk.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	st := wrap(db)
	a, err := app.New(app.Config{Store: st, BacklogEvery: -1, Jobs: jobs.Config{Poll: 5 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	// The application's bulk service, with small parts.
	a.Bulk = bulk.New(bulk.Config{Store: st, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs, PartBytes: partBytes, FileResources: 40})
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a, st
}

// TestImportReportOrder: records ingested several at once are reported in
// input order; rejected ones name their line and rules, and the others
// are stored.
func TestImportReportOrder(t *testing.T) {
	a, st := newApp(t, 1<<20)
	raw, err := os.ReadFile("../../schemas/examples/assessment/phq9-total-only.json")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	_ = json.Unmarshal(raw, &tmpl)
	var lines []string
	for i := range 60 {
		tmpl["source"].(map[string]any)["recordId"] = "r" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		tmpl["patient"].(map[string]any)["id"] = "p" + string(rune('A'+i%26)) + string(rune('a'+i/26))
		b, _ := json.Marshal(tmpl)
		switch i {
		case 7:
			lines = append(lines, "not json")
		case 33:
			lines = append(lines, `{"resourceType":"Patient"}`)
		default:
			lines = append(lines, string(b))
		}
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	var done []int64
	var rejected []int64
	counts, err := a.Bulk.Import(context.Background(), sc, bulk.NDJSON(strings.NewReader(strings.Join(lines, "\n")), 1<<20),
		bulk.ImportOptions{Kind: "assessment", RunID: "t", Workers: 4,
			Done:     func(c bulk.ImportCounts) { done = append(done, c.Records) },
			Rejected: func(r bulk.Rejection) error { rejected = append(rejected, r.Line); return nil }})
	if err != nil || counts.Records != 60 || counts.Stored != 58 || counts.Rejected != 2 {
		t.Fatalf("Import = %+v, %v", counts, err)
	}
	if len(rejected) != 2 || rejected[0] != 8 || rejected[1] != 34 {
		t.Errorf("rejected lines %v, want 8 and 34", rejected)
	}
	for i, n := range done {
		if n != int64(i+1) {
			t.Fatalf("progress %v is not in input order", done)
		}
	}
	// Each version keeps how the import's transaction made it (a history
	// shows it): a create is POST 201 (its conditional create matched
	// nothing), a conditional update PUT.
	for _, typ := range []string{"Patient", "Observation"} {
		vs, _, err := st.History(context.Background(), store.HistoryQuery{Type: typ, Count: 1000})
		if err != nil || len(vs) == 0 {
			t.Fatalf("History(%s) = %d, %v", typ, len(vs), err)
		}
		for _, v := range vs {
			if v.Method == "POST" && v.Status == 201 || v.Method == "PUT" && (v.Status == 200 || v.Status == 201) {
				continue
			}
			t.Errorf("%s/%s v%d made by %q %d", typ, v.ID, v.Version, v.Method, v.Status)
			break
		}
	}
	// Each record stored has a trace of its own (the CLI's scope has
	// none), in its Provenance as a request's would be.
	q, err := search.Parse("Provenance", url.Values{"_count": {"100"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	page, err := a.Store.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	traces := map[string]bool{}
	for _, m := range page.Matches {
		var p struct {
			Extension []struct{ URL, ValueString string }
		}
		_ = json.Unmarshal(m.Body, &p)
		for _, x := range p.Extension {
			if x.URL == audit.ExtTraceID && len(x.ValueString) == 32 {
				traces[x.ValueString] = true
			}
		}
	}
	if len(page.Matches) != 58 || len(traces) != 58 {
		t.Errorf("%d Provenances with %d distinct trace ids, want 58 each", len(page.Matches), len(traces))
	}
	// Again: the stored records are counted as stored before, not as
	// stored.
	counts, err = a.Bulk.Import(context.Background(), sc, bulk.NDJSON(strings.NewReader(strings.Join(lines, "\n")), 1<<20),
		bulk.ImportOptions{Kind: "assessment", RunID: "t1", Workers: 4})
	if err != nil || counts.Records != 60 || counts.Stored != 0 || counts.AlreadyStored != 58 || counts.Rejected != 2 {
		t.Fatalf("Import again = %+v, %v; want 58 already stored", counts, err)
	}
	stop := errors.New("stop")
	_, err = a.Bulk.Import(context.Background(), sc, bulk.NDJSON(strings.NewReader(strings.Join(lines, "\n")), 1<<20),
		bulk.ImportOptions{Kind: "assessment", RunID: "t2", Rejected: func(bulk.Rejection) error { return stop }})
	if !errors.Is(err, stop) {
		t.Errorf("Import with a failing report = %v", err)
	}
}

// TestImportAuditsRejected: a rejected record of an import leaves the
// AuditEvent a refused POST /ingest leaves (bulk.md: one AuditEvent per
// record), committed before the record counts as done: its rules, the
// record by identifier, and for a refusal read against the stored records
// the stored patients it concerns; a line that is no record is audited
// too, naming nothing.
func TestImportAuditsRejected(t *testing.T) {
	a, st := newApp(t, 1<<20)
	raw, err := os.ReadFile("../../schemas/examples/assessment/phq9-moderate.json")
	if err != nil {
		t.Fatal(err)
	}
	line := func(pairs ...string) string {
		var doc map[string]any
		_ = json.Unmarshal([]byte(strings.NewReplacer(pairs...).Replace(string(raw))), &doc)
		b, _ := json.Marshal(doc)
		return string(b)
	}
	lines := []string{
		line(), // stored
		line("ASM-2026-0310-001", "R-BAD", `"total": 11`, `"total": 3`), // 422: total mismatch, read nothing stored
		line("ASM-2026-0310-001", "R-409", `"PT-000123"`, `"OTHER"`),    // 409: the MRN is another Patient's
		"not json",
		`{"long":"` + strings.Repeat("x", 10000) + `"}`, // longer than the import reads
	}
	if lines[1] == lines[0] || lines[2] == lines[0] {
		t.Fatal("the example changed: the edits do nothing")
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	var audited []int // AuditEvents committed when each record was counted
	counts, err := a.Bulk.Import(context.Background(), sc, bulk.NDJSON(strings.NewReader(strings.Join(lines, "\n")), 8192),
		bulk.ImportOptions{Kind: "assessment", RunID: "imp", Workers: 1,
			Done: func(bulk.ImportCounts) {
				n := 0
				_ = st.AuditChainAfter(context.Background(), 0, func(audit.ChainEntry) error { n++; return nil })
				audited = append(audited, n)
			}})
	if err != nil || counts.Stored != 1 || counts.Rejected != 4 {
		t.Fatalf("Import = %+v, %v; want 1 stored, 4 rejected", counts, err)
	}
	type event struct {
		Outcome, Desc string
		Patients      []string
		Named         []string
	}
	byRequest := map[string]event{}
	_ = st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		var ev struct {
			Outcome     string `json:"outcome"`
			OutcomeDesc string `json:"outcomeDesc"`
			Entity      []struct {
				Role struct{ Code string } `json:"role"`
				What struct {
					Reference  string                         `json:"reference"`
					Identifier struct{ System, Value string } `json:"identifier"`
				} `json:"what"`
			} `json:"entity"`
		}
		if err := json.Unmarshal(e.Body, &ev); err != nil {
			t.Fatal(err)
		}
		var req string
		got := event{Outcome: ev.Outcome, Desc: ev.OutcomeDesc}
		for _, en := range ev.Entity {
			switch {
			case en.Role.Code == "1":
				got.Patients = append(got.Patients, en.What.Reference)
			case en.What.Identifier.System == audit.SystemRequestID:
				req = en.What.Identifier.Value
			case en.What.Identifier.Value != "":
				got.Named = append(got.Named, en.What.Identifier.Value)
			}
		}
		byRequest[req] = got
		return nil
	})
	stored := byRequest["imp:1"]
	if len(stored.Patients) != 1 {
		t.Fatalf("the stored record's AuditEvent %+v names no patient", stored)
	}
	for _, tc := range []struct {
		request, rule, named string
		patients             []string
	}{
		{"imp:2", "assessment.total-mismatch", "R-BAD", nil},
		{"imp:3", "patient.identity-conflict", "R-409", stored.Patients},
		{"imp:4", "json-syntax", "", nil},
		{"imp:5", "import-record-too-large", "", nil},
	} {
		got, ok := byRequest[tc.request]
		if !ok {
			t.Errorf("no AuditEvent for the rejected record %s", tc.request)
			continue
		}
		if got.Outcome != "4" || !strings.Contains(got.Desc, "rejected: "+tc.rule) ||
			(tc.named != "" && !slices.Contains(got.Named, tc.named)) || !slices.Equal(got.Patients, tc.patients) {
			t.Errorf("AuditEvent of %s = %+v; want outcome 4, rule %s, naming %q and patients %v", tc.request, got, tc.rule, tc.named, tc.patients)
		}
	}
	for i, n := range audited { // one at a time; each counted once its AuditEvent is committed
		if n < i+1 {
			t.Errorf("record %d counted with %d AuditEvents committed, want its own among them (%v)", i+1, n, audited)
		}
	}
}

// TestExportNamesListedPatients: the download of a Provenance or Group
// file names the patients those resources are about (R4's patient search
// parameters and compartment: targets, members), as a read of them does.
func TestExportNamesListedPatients(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	seed(t, st, "Provenance", 2, func(i int) map[string]any {
		return map[string]any{"recorded": "2026-01-01T00:00:00Z", "agent": []any{map[string]any{"who": map[string]any{"display": "x"}}},
			"target": []any{map[string]any{"reference": fmt.Sprintf("Patient/pa-%d", i)}, map[string]any{"reference": "Observation/o1"}}}
	})
	seed(t, st, "Group", 1, func(int) map[string]any {
		return map[string]any{"type": "person", "actual": true,
			"member": []any{map[string]any{"entity": map[string]any{"reference": "Patient/pb"}}}}
	})
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async", Base: "https://gw",
		Query: map[string][]string{"_type": {"Provenance,Group"}}})
	if err != nil {
		t.Fatal(err)
	}
	cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	var m bulk.Manifest
	if err := json.Unmarshal(cur.Result, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{"Provenance": {"Patient/pa-0", "Patient/pa-1"}, "Group": {"Patient/pb"}}
	for i, f := range m.Output {
		dl := auditlog.NewScope("job-download", sc.Principal)
		if err := a.Jobs.File(ctx, dl, j.ID, i+1, func([]byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		if named := slices.Sorted(slices.Values(dl.Patients())); !slices.Equal(named, want[f.Type]) {
			t.Errorf("%s file: the download names %v, want %v", f.Type, named, want[f.Type])
		}
	}
	if len(m.Output) != 2 {
		t.Errorf("%d files, want a Provenance and a Group file", len(m.Output))
	}
}

// TestExportResumes: an export whose runner closes in the middle (its job
// released) is finished by the next runner from the checkpoint: files of
// at most FileResources resources, every resource once.
func TestExportResumes(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "export.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	const n = 500
	seed(t, st, "Patient", n, func(int) map[string]any { return map[string]any{"gender": "other"} })
	// Observations of a patient each ten in a row: most of a file's parts
	// name no patient first.
	seed(t, st, "Observation", n, func(i int) map[string]any {
		return map[string]any{"status": "final", "code": map[string]any{"text": "x"},
			"subject": map[string]any{"reference": fmt.Sprintf("Patient/patient-%07d", i/10)}}
	})
	sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes("system/*.rs")})
	start := func() *app.App {
		a, err := app.New(app.Config{Store: st, BacklogEvery: -1, Jobs: jobs.Config{Poll: 5 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		a.Bulk = bulk.New(bulk.Config{Store: st, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs, PartBytes: 300, FileResources: 40})
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		return a
	}
	a := start()
	j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async", Base: "https://gw",
		Query: map[string][]string{"_type": {"Patient,Observation"}}})
	if err != nil {
		t.Fatal(err)
	}
	if cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Done >= 100 }); cur.Status == store.JobDone {
		t.Fatal("the export finished before the runner closed")
	}
	a.Close()
	a = start()
	defer a.Close()
	cur := waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
	var m bulk.Manifest
	if err := json.Unmarshal(cur.Result, &m); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, f := range m.Output {
		var buf bytes.Buffer
		// The download names every patient whose data the file holds,
		// each once, the file resumed in the middle or not.
		dl := auditlog.NewScope("job-download", sc.Principal)
		if err := a.Jobs.File(ctx, dl, j.ID, i+1, func(p []byte) error { buf.Write(p); return nil }); err != nil {
			t.Fatal(err)
		}
		var inFile []string
		lines := 0
		sc := bufio.NewScanner(&buf)
		for sc.Scan() {
			var r struct {
				ResourceType, ID string
				Subject          struct{ Reference string }
			}
			_ = json.Unmarshal(sc.Bytes(), &r)
			key := r.ResourceType + "/" + r.ID
			if seen[key] {
				t.Errorf("%s exported twice", key)
			}
			seen[key] = true
			p := "Patient/" + r.ID
			if r.ResourceType != "Patient" {
				p = r.Subject.Reference
			}
			if !slices.Contains(inFile, p) {
				inFile = append(inFile, p)
			}
			lines++
		}
		if named := slices.Sorted(slices.Values(dl.Patients())); !slices.Equal(named, inFile) {
			t.Errorf("file %d: the download names the patients %v, want %v (the file's)", i+1, named, inFile)
		}
		if lines != f.Count || f.Count > 40 || f.URL != "https://gw/jobs/"+j.ID+"/files/"+itoa(i+1) {
			t.Errorf("file %d: %d lines, manifest %+v", i+1, lines, f)
		}
	}
	if len(seen) != 2*n {
		t.Errorf("%d Patients and Observations exported, want %d", len(seen), 2*n)
	}
}

// waitJob polls job id until cond holds (a job runs in the background:
// the test waits for its state, never for a time); a job that failed or
// was cancelled, or a condition not reached in a minute (a job stuck),
// fails the test.
func waitJob(tb testing.TB, a *app.App, sc *auditlog.Scope, id string, cond func(*store.Job) bool) *store.Job {
	tb.Helper()
	for deadline := time.Now().Add(time.Minute); ; {
		cur, err := a.Jobs.Job(context.Background(), sc, id)
		if err != nil {
			tb.Fatal(err)
		}
		if cond(cur) {
			return cur
		}
		switch {
		case cur.Status == store.JobFailed:
			tb.Fatalf("job %s failed: %s", id, cur.Error)
		case cur.Status == store.JobCancelled:
			tb.Fatalf("job %s was cancelled", id)
		case time.Now().After(deadline):
			tb.Fatalf("job %s: condition not reached in a minute (status %s)", id, cur.Status)
		}
		time.Sleep(time.Millisecond) // polling a background job, not timing the test
	}
}

// seed stores n resources of typ (ids typ-0000000 on, bodies from doc) in
// transactions of 5,000, last updated an hour ago.
func seed(t testing.TB, st store.Store, typ string, n int, doc func(i int) map[string]any) {
	t.Helper()
	lu := time.Now().Add(-time.Hour)
	for start := 0; start < n; start += 5000 {
		err := st.Write(context.Background(), func(tx store.Tx) error {
			for i := start; i < min(start+5000, n); i++ {
				r, entries, err := store.NewVersion(typ, fmt.Sprintf("%s-%07d", strings.ToLower(typ), i), 1, doc(i), lu)
				if err != nil {
					return err
				}
				if err := tx.Put(r, entries); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
}

func itoa(i int) string {
	b, _ := json.Marshal(i)
	return string(b)
}

// TestImportCancel: DELETE of a running import stops it at a record
// boundary. When Cancel returns, nothing more is stored; the records
// stored between the cancel's call and its return are at most those in
// flight; and the cancelled job answers its final counts, which are the
// store's.
func TestImportCancel(t *testing.T) {
	gate := &gatedStore{}
	a, st := newAppOn(t, 1<<20, func(st store.Store) store.Store { gate.Store = st; return gate })
	raw, err := os.ReadFile("../../schemas/examples/assessment/phq9-total-only.json")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	_ = json.Unmarshal(raw, &tmpl)
	const n = 1000
	var body strings.Builder
	for i := range n {
		tmpl["source"].(map[string]any)["recordId"] = fmt.Sprintf("cancel-r%04d", i)
		tmpl["patient"].(map[string]any)["id"] = fmt.Sprintf("cancel-p%04d", i)
		b, _ := json.Marshal(tmpl)
		body.Write(b)
		body.WriteByte('\n')
	}
	ctx := context.Background()
	provenances := func() int {
		vs, _, err := st.History(ctx, store.HistoryQuery{Type: "Provenance", Count: 2 * n})
		if err != nil {
			t.Fatal(err)
		}
		return len(vs)
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	j, err := a.Bulk.SubmitImport(ctx, sc, "assessment", false, strings.NewReader(body.String()), 1<<30, "https://gw")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); provenances() < 20; {
		if time.Now().After(deadline) {
			t.Fatal("the import stored nothing in a minute")
		}
		time.Sleep(time.Millisecond) // polling a background job, not timing the test
	}
	// Hold the import's writes (those under way finish) so that what is
	// stored when the cancel is made is known, whenever this goroutine
	// runs; let them go on once the job is cancelled in the store (the
	// runner is told at once after that).
	gate.hold()
	before := provenances()
	csc := auditlog.NewScope("job-cancel", sc.Principal)
	cancelled := make(chan error, 1)
	go func() { cancelled <- a.Jobs.Cancel(ctx, csc, j.ID) }()
	for {
		cur, err := st.Job(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.Status == store.JobCancelled {
			break
		}
		time.Sleep(time.Millisecond) // polling the cancel, not timing the test
	}
	gate.release()
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
	acknowledged := provenances()
	_, err = a.Jobs.Job(ctx, sc, j.ID)
	kind, issues := outcome.From(err)
	if kind != outcome.NotFound || len(issues) != 1 || issues[0].Rule != "job-cancelled" {
		t.Fatalf("Job after the cancel = %v, want not-found job-cancelled", err)
	}
	a.Close() // every goroutine of the runner has returned: what is stored now is final
	final := provenances()
	cur, err := st.Job(ctx, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	var res bulk.ImportResult
	if err := json.Unmarshal(cur.Result, &res); err != nil {
		t.Fatalf("the cancelled job's result %q: %v", cur.Result, err)
	}
	if final != acknowledged {
		t.Errorf("%d records stored after the cancel was acknowledged, want none", final-acknowledged)
	}
	if acknowledged-before > 3*4 {
		t.Errorf("%d records stored while the cancel was made, want at most the records in flight (3 x 4 workers)", acknowledged-before)
	}
	if !res.Cancelled || res.Stored != int64(final) || res.Records != res.Stored || res.Records >= n || res.LastLine != res.Records {
		t.Errorf("cancelled import's result %+v, with %d records stored: want cancelled, its counts the store's, stopped before line %d", res, final, n)
	}
	// jobs list shows how far it got, not the progress of its last save
	// before the cancel.
	if cur.Done != res.Records {
		t.Errorf("the cancelled job's progress = %d, want the %d records it handled", cur.Done, res.Records)
	}
	want := fmt.Sprintf("stopped after %d of %d records (up to line %d): %d stored", res.Records, n, res.LastLine, res.Stored)
	if !strings.Contains(issues[0].Message, want) {
		t.Errorf("the cancelled job says %q, want it to say %q", issues[0].Message, want)
	}
	if !strings.Contains(csc.Description, want) {
		t.Errorf("the cancel's AuditEvent says %q, want it to say %q", csc.Description, want)
	}
}

// TestExportNotesTenants: an all-tenant export notes, beside each file,
// the tenant of each patient whose data the file holds (for each tenant's
// share of the download's AuditEvent), and the download names the
// patients as before; a tenant's own export notes none.
func TestExportNotesTenants(t *testing.T) {
	ctx := context.Background()
	a, st := newApp(t, 1<<20)
	err := st.Write(ctx, func(tx store.Tx) error {
		for _, p := range []struct{ tenant, id string }{{"clinic-a", "pa"}, {"clinic-b", "pb"}, {"", "pd"}} {
			r, entries, err := store.NewVersion("Patient", p.id, 1, map[string]any{"gender": "other"}, time.Now().Add(-time.Hour))
			if err != nil {
				return err
			}
			r.Tenant = p.tenant
			if err := tx.Put(r, entries); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant string
		lines  []string
	}{
		{search.AllTenants, []string{`Patient/pa "clinic-a"`, `Patient/pb "clinic-b"`, `Patient/pd ""`}},
		{"clinic-b", []string{"Patient/pb"}},
	} {
		t.Run(tc.tenant, func(t *testing.T) {
			sc := auditlog.NewScope("bulk-export", &auth.Principal{ClientID: "c", Tenant: tc.tenant, Scopes: auth.ParseScopes("system/*.rs")})
			j, err := a.Bulk.Export(ctx, sc, bulk.ExportParams{Level: bulk.LevelSystem, Prefer: "respond-async", Base: "https://gw",
				Query: map[string][]string{"_type": {"Patient"}}})
			if err != nil {
				t.Fatal(err)
			}
			waitJob(t, a, sc, j.ID, func(j *store.Job) bool { return j.Status == store.JobDone })
			var lines []string
			err = st.JobFile(ctx, j.ID, jobs.PatientsFile(1), func(part []byte) error {
				for l := range strings.Lines(string(part)) {
					lines = append(lines, strings.TrimSuffix(l, "\n"))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if slices.Sort(lines); !slices.Equal(lines, tc.lines) {
				t.Errorf("the file's patients are noted as %q, want %q", lines, tc.lines)
			}
			dl := auditlog.NewScope("job-download", sc.Principal)
			if err := a.Jobs.File(ctx, dl, j.ID, 1, func([]byte) error { return nil }); err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, l := range tc.lines {
				want = append(want, strings.Fields(l)[0])
			}
			if named := slices.Sorted(slices.Values(dl.Patients())); !slices.Equal(named, want) {
				t.Errorf("the download names %v, want %v", named, want)
			}
		})
	}
}

// gatedStore holds every Write while held: those under way finish, later
// ones wait for release.
type gatedStore struct {
	store.Store
	mu   sync.Mutex
	cond *sync.Cond
	held bool
	in   int // writes under way
}

func (g *gatedStore) init() {
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
}

func (g *gatedStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	g.mu.Lock()
	g.init()
	for g.held {
		g.cond.Wait()
	}
	g.in++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.in--
		g.cond.Broadcast()
		g.mu.Unlock()
	}()
	return g.Store.Write(ctx, fn)
}

// hold holds later writes and returns when none is under way.
func (g *gatedStore) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.init()
	g.held = true
	for g.in > 0 {
		g.cond.Wait()
	}
}

// release lets the held writes go on.
func (g *gatedStore) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held = false
	g.cond.Broadcast()
}

// TestRefusedUploadLeavesNoJob: an import refused while its body is read
// (one JSON document, empty, too large) leaves no job behind: its client
// was never given an id, and jobs list showed it as a cancelled job.
func TestRefusedUploadLeavesNoJob(t *testing.T) {
	a, st := newApp(t, 64)
	ctx := context.Background()
	raw, err := os.ReadFile("../../schemas/examples/assessment/phq9-total-only.json")
	if err != nil {
		t.Fatal(err)
	}
	var line bytes.Buffer
	if err := json.Compact(&line, raw); err != nil {
		t.Fatal(err)
	}
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	for name, tc := range map[string]struct {
		body  string
		limit int64
		rule  string
	}{
		"array":     {"[" + line.String() + "]\n", 1 << 20, "import-not-ndjson"},
		"empty":     {"", 1 << 20, "import-empty"},
		"too large": {strings.Repeat(line.String()+"\n", 4), int64(line.Len()) * 2, "import-too-large"},
	} {
		j, err := a.Bulk.SubmitImport(ctx, sc, "assessment", false, strings.NewReader(tc.body), tc.limit, "https://gw")
		if _, issues := outcome.From(err); j != nil || len(issues) != 1 || issues[0].Rule != tc.rule {
			t.Errorf("%s: SubmitImport = %v, %v; want refused %s", name, j, err, tc.rule)
		}
	}
	left, err := st.ListJobs(ctx, store.JobFilter{Tenant: search.AllTenants})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range left {
		t.Errorf("job %s left behind: %s", j.ID, j.Status)
	}
	// An import sent after them is taken as ever.
	j, err := a.Bulk.SubmitImport(ctx, sc, "assessment", false, strings.NewReader(line.String()+"\n"), 1<<20, "https://gw")
	if err != nil || j == nil {
		t.Fatalf("SubmitImport after the refused ones = %v, %v", j, err)
	}
}

// savesStore records the progress of each job save.
type savesStore struct {
	store.Store
	mu    sync.Mutex
	saves []int64
}

func (s *savesStore) SaveJob(ctx context.Context, id, claim string, until time.Time, p store.JobProgress) error {
	s.mu.Lock()
	s.saves = append(s.saves, p.Done)
	s.mu.Unlock()
	return s.Store.SaveJob(ctx, id, claim, until, p)
}

// TestImportSavesProgressOverTime: an import job saves its counts at least
// every second while records are done, not only every 200 records, so a
// status poll of a smaller import (or one of slow records) shows progress
// before it ends (a first-hour review: 0% until the 200th record). The
// clock moves 100 ms a reading: a save every few records.
func TestImportSavesProgressOverTime(t *testing.T) {
	saves := &savesStore{}
	a, st := newAppOn(t, 1<<20, func(st store.Store) store.Store { saves.Store = st; return saves })
	var mu sync.Mutex
	now := time.Now()
	a.Bulk = bulk.New(bulk.Config{Store: st, Engine: a.Engine, Ingest: a.Ingest, Jobs: a.Jobs, PartBytes: 1 << 20,
		Now: func() time.Time {
			mu.Lock()
			defer mu.Unlock()
			now = now.Add(100 * time.Millisecond)
			return now
		}})
	raw, err := os.ReadFile("../../schemas/examples/assessment/phq9-total-only.json")
	if err != nil {
		t.Fatal(err)
	}
	var tmpl map[string]any
	_ = json.Unmarshal(raw, &tmpl)
	const n = 60 // fewer than 200
	var body strings.Builder
	for i := range n {
		tmpl["source"].(map[string]any)["recordId"] = fmt.Sprintf("slow-r%04d", i)
		b, _ := json.Marshal(tmpl)
		body.Write(b)
		body.WriteByte('\n')
	}
	ctx := context.Background()
	sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(auth.ScopeIngest)})
	j, err := a.Bulk.SubmitImport(ctx, sc, "assessment", false, strings.NewReader(body.String()), 1<<30, "https://gw")
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); ; {
		cur, err := st.Job(ctx, j.ID)
		if err != nil {
			t.Fatal(err)
		}
		if cur.Status == store.JobDone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the import is %s after a minute", cur.Status)
		}
		time.Sleep(time.Millisecond) // polling a background job, not timing the test
	}
	saves.mu.Lock()
	defer saves.mu.Unlock()
	between := 0
	for _, d := range saves.saves {
		if d > 0 && d < n {
			between++
		}
	}
	if between == 0 {
		t.Errorf("saves of the job's progress %v: none before its end", saves.saves)
	}
}
