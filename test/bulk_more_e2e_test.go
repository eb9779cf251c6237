package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestBulkExportReplicasOnce: two gateways on one PostgreSQL database;
// exports kicked off on either are each run exactly once (one claim, one
// "started" among both logs), and either replica serves the status and
// the files.
func TestBulkExportReplicasOnce(t *testing.T) {
	db := freshPostgres(t)
	gs := startReplicas(t, 2, db)
	dir := sharedTestdata(t, "synthea")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	loadSynthea(t, gs[0].base, files[:3])
	var locs []string
	for i := range 6 {
		// At most 3 exports of one client at once: the rest wait.
		if i == 3 {
			for _, loc := range locs {
				if status, body := pollJob(t, loc, time.Minute); status != http.StatusOK {
					t.Fatalf("export %s = %d %s", loc, status, body)
				}
			}
		}
		locs = append(locs, kickoff(t, gs[i%2].base+"/fhir/$export?_type=Patient,Observation,Encounter"))
	}
	counts := map[string]int{}
	for i, loc := range locs {
		other := strings.Replace(loc, gs[i%2].base, gs[(i+1)%2].base, 1)
		status, body := pollJob(t, other, time.Minute)
		if status != http.StatusOK {
			t.Fatalf("export %d = %d %s", i, status, body)
		}
		var m manifest
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatal(err)
		}
		n := 0
		for j := range m.Output {
			m.Output[j].URL = strings.Replace(m.Output[j].URL, gs[i%2].base, gs[(i+1)%2].base, 1)
			n += m.Output[j].Count
		}
		if got := len(download(t, m)); got != n || n == 0 {
			t.Errorf("export %d: downloaded %d of %d resources", i, got, n)
		}
		counts[fmt.Sprint(n)]++
	}
	if len(counts) != 1 {
		t.Errorf("the exports of the same data differ: %v", counts)
	}
	conn, err := pgx.Connect(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(context.Background(), `SELECT id, attempts FROM jobs WHERE kind = 'export'`)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for rows.Next() {
		var id string
		var attempts int
		if err := rows.Scan(&id, &attempts); err != nil {
			t.Fatal(err)
		}
		ids[id] = attempts
	}
	rows.Close()
	if len(ids) != len(locs) {
		t.Errorf("%d export jobs in the database, want %d", len(ids), len(locs))
	}
	for _, g := range gs {
		g.stop(t)
	}
	for id, attempts := range ids {
		started := 0
		for _, g := range gs {
			started += strings.Count(g.Logs.String(), `"msg":"jobs: started","job":"`+id+`"`)
		}
		if attempts != 1 || started != 1 {
			t.Errorf("job %s: %d claims, started %d times; want once", id, attempts, started)
		}
	}
}

// TestBulkExportTenants: an export is its client's: another tenant's
// client, and another client of the same tenant, get 404 for its status,
// its files and its cancel; it holds only the tenant's resources; the
// kick-off and each download leave an AuditEvent.
func TestBulkExportTenants(t *testing.T) {
	s := startSecured(t)
	a := s.token(t, "clinic-a", "system/*.rs system/Patient.c")
	b := s.token(t, "hospital-b", "system/*.cruds")
	reader := s.token(t, "reader-a", "system/Patient.rs")
	auditor := s.token(t, "auditor", "gateway/operator system/*.rs")
	for _, tok := range []string{a, b} {
		for range 3 {
			if status, _, _ := call(t, "POST", s.base+"/fhir/Patient", tok, `{"resourceType":"Patient","gender":"female"}`); status != 201 {
				t.Fatalf("create Patient = %d", status)
			}
		}
	}
	authA := "Authorization: Bearer " + a
	loc, m := exportDone(t, s.base+"/fhir/$export?_type=Patient", authA)
	got := download(t, m, authA)
	if len(got) != 3 {
		t.Errorf("clinic-a's export has %d Patients, want its 3", len(got))
	}
	for name, tok := range map[string]string{"another tenant": b, "another client of the tenant": reader} {
		h := "Authorization: Bearer " + tok
		if status, _, _ := rawReq(t, "GET", loc, "", h); status != http.StatusNotFound {
			t.Errorf("%s polls clinic-a's export: %d, want 404", name, status)
		}
		if status, _, _ := rawReq(t, "GET", m.Output[0].URL, "", h); status != http.StatusNotFound {
			t.Errorf("%s downloads clinic-a's file: %d, want 404", name, status)
		}
		if status, _, _ := rawReq(t, "DELETE", loc, "", h); status != http.StatusNotFound {
			t.Errorf("%s deletes clinic-a's export: %d, want 404", name, status)
		}
	}
	if status, _, _ := rawReq(t, "GET", m.Output[0].URL, ""); status != http.StatusUnauthorized {
		t.Errorf("download without a token = %d, want 401", status)
	}
	// The reader may not export Observations; its Patient export is its own.
	if status, _, oo := doReq(t, "GET", s.base+"/fhir/$export?_type=Observation", "", "Prefer: respond-async", "Authorization: Bearer "+reader); status != http.StatusForbidden {
		t.Errorf("export beyond the scopes = %d %v, want 403", status, oo)
	}
	// An all-tenant auditor exports every tenant's.
	authAud := "Authorization: Bearer " + auditor
	_, m = exportDone(t, s.base+"/fhir/$export?_type=Patient", authAud)
	if got := download(t, m, authAud); len(got) != 6 {
		t.Errorf("the auditor's export has %d Patients, want 6", len(got))
	}
	for _, sub := range []string{"bulk-export", "job-status", "job-download"} {
		_, _, res := call(t, "GET", s.base+"/fhir/AuditEvent?subtype="+sub+"&_summary=count", auditor, "")
		if n, _ := res["total"].(float64); n < 1 {
			t.Errorf("no AuditEvent of %s", sub)
		}
	}
}

// TestBulkImportAsync: a clinic without shell access posts NDJSON to
// /ingest/{kind}/$import: 202 with a status URL, progress, then the counts
// and the report of the rejected lines, downloaded with the same token.
func TestBulkImportAsync(t *testing.T) {
	s := startSecured(t)
	c := s.token(t, "clinic-c", "gateway/ingest")
	auth := "Authorization: Bearer " + c
	records := nativeRecords(t, "../schemas/examples/assessment/phq9-total-only.json", 300, "async", 10, 211)
	status, h, body := rawReq(t, "POST", s.base+"/ingest/assessment/$import", strings.Join(records, "\n")+"\n",
		auth, "Content-Type: application/fhir+ndjson")
	if status != http.StatusAccepted || h.Get("Content-Location") == "" {
		t.Fatalf("import = %d %s", status, body)
	}
	status, body = pollJob(t, h.Get("Content-Location"), 2*time.Minute, auth)
	var v struct {
		Status string
		Result struct {
			Records, Stored, Rejected int
			Report                    string
		}
	}
	if err := json.Unmarshal(body, &v); err != nil || status != http.StatusOK || v.Status != "done" {
		t.Fatalf("import job = %d %s", status, body)
	}
	if v.Result.Records != 300 || v.Result.Stored != 298 || v.Result.Rejected != 2 || v.Result.Report == "" {
		t.Errorf("import result = %+v", v.Result)
	}
	status, _, rep := rawReq(t, "GET", v.Result.Report, "", auth)
	if status != http.StatusOK {
		t.Fatalf("report = %d", status)
	}
	path := filepath.Join(t.TempDir(), "report.ndjson")
	if err := os.WriteFile(path, rep, 0o600); err != nil {
		t.Fatal(err)
	}
	lines := readReport(t, path)
	if len(lines) != 2 || lines[0].Line != 11 || lines[1].Line != 212 {
		t.Errorf("report = %+v, want lines 11 and 212", lines)
	}
	if status, _, _ := rawReq(t, "POST", s.base+"/ingest/assessment/$import", "{}", auth, "Content-Type: application/json"); status != http.StatusUnsupportedMediaType {
		t.Errorf("import of JSON = %d, want 415", status)
	}
	if status, _, _ := rawReq(t, "POST", s.base+"/ingest/assessment/$import", "\n\n", auth, "Content-Type: application/fhir+ndjson"); status != http.StatusBadRequest {
		t.Errorf("empty import = %d, want 400", status)
	}
}
