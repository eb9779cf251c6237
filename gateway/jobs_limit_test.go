package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestImportTooMany: a client with three imports waiting (here still being
// uploaded, which no runner claims) is answered 429 job-too-many with
// Retry-After for a fourth, before its body is stored; another client of
// the tenant is not (probe p30 F4: four 1.9 MB imports held every tenant's
// jobs, and nothing bounded them).
func TestImportTooMany(t *testing.T) {
	h, st, tok := clientsServer(t, []auth.Client{
		{ID: "ingester", Tenant: "clinic-a", Scopes: []string{auth.ScopeIngest}},
		{ID: "ingester2", Tenant: "clinic-a", Scopes: []string{auth.ScopeIngest}},
	})
	ctx := context.Background()
	for i := range 3 {
		j := &store.Job{ID: fmt.Sprintf("upload-%d", i), Kind: "import", Tenant: "clinic-a", Owner: "ingester",
			Status: store.JobUploading, Request: []byte(`{}`), Total: -1, Expires: time.Now().Add(time.Hour)}
		if err := st.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
	}
	var line bytes.Buffer
	if err := json.Compact(&line, example(t, "session/routine-ketamine-iv-session.json")); err != nil {
		t.Fatal(err)
	}
	body := line.String() + "\n"
	rec := req(h, "POST", "/ingest/session/$import", body, tok["ingester"], "Content-Type: application/fhir+ndjson")
	assertOutcome(t, rec, http.StatusTooManyRequests, "job-too-many", "")
	if rec.Header().Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
	if rec := req(h, "POST", "/ingest/session/$import", body, tok["ingester2"], "Content-Type: application/fhir+ndjson"); rec.Code != http.StatusAccepted {
		t.Errorf("another client's import = %d %s, want 202", rec.Code, rec.Body)
	}
}

// TestExportTooMany: a client with three exports waiting is answered 429
// export-too-many with Retry-After for a fourth kick-off.
func TestExportTooMany(t *testing.T) {
	h, st, tok := clientsServer(t, []auth.Client{
		{ID: "warehouse", Tenant: "clinic-a", Scopes: []string{"system/Patient.rs"}},
	})
	ctx := context.Background()
	for i := range 3 {
		// Uploading, which no runner claims (a queued one could be run,
		// and fail, before the kick-off): it counts as waiting.
		j := &store.Job{ID: fmt.Sprintf("export-%d", i), Kind: "export", Tenant: "clinic-a", Owner: "warehouse",
			Status: store.JobUploading, Request: []byte(`{}`), Total: -1, Expires: time.Now().Add(time.Hour)}
		if err := st.CreateJob(ctx, j, nil); err != nil {
			t.Fatal(err)
		}
	}
	rec := req(h, "GET", "/fhir/Patient/$export?_type=Patient", "", tok["warehouse"], "Prefer: respond-async")
	assertOutcome(t, rec, http.StatusTooManyRequests, "export-too-many", "")
	if rec.Header().Get("Retry-After") == "" {
		t.Errorf("429 without Retry-After")
	}
}
