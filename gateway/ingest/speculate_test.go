package ingest_test

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestRenderedAhead: a record's new resources rendered before its write
// transaction (engine.Speculate) are put by it when they fit, each stored
// as the transaction would have rendered it (its instant, its id, its
// references to the Patient the transaction found), and are not used
// where they cannot fit: a version received before, a new version of a
// stored record (mapped again in update mode).
func TestRenderedAhead(t *testing.T) {
	// Every record speculates (not only those whose write would wait),
	// and every guess put is checked against a rendering.
	t.Cleanup(engine.CheckGuesses(true))
	raw, err := os.ReadFile("../../schemas/examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	// session is the example with its record ids (the session's and the
	// nested records') suffixed by id, for patient, at version.
	session := func(id, patient, version string) string {
		var doc map[string]any
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatal(err)
		}
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				if r, ok := x["recordId"].(string); ok {
					x["recordId"] = r + "-" + id
				}
				for _, c := range x {
					walk(c)
				}
			case []any:
				for _, c := range x {
					walk(c)
				}
			}
		}
		walk(doc)
		doc["source"].(map[string]any)["version"] = version
		p := doc["patient"].(map[string]any)
		p["id"] = patient
		p["mrn"].(map[string]any)["value"] = "MRN-" + patient
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	spans := tracetest.NewInMemoryExporter()
	g := newGateway(t, app.Config{Tracer: sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))})
	steps := []struct {
		name, tenant, doc string
		// ahead: every resource a POST created was a guess
		ahead bool
	}{
		{"a new patient's session", "", session("A", "P-1", "1"), true},
		{"the same patient's next session", "", session("B", "P-1", "1"), true},
		{"a version received before", "", session("B", "P-1", "1"), false},
		{"a new version of a stored session", "", session("B", "P-1", "2"), false},
		{"a named tenant's session", "clinic-b", session("C", "P-2", "1"), true},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			spans.Reset()
			sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test", Tenant: s.tenant})
			answer, err := g.a.Ingest.Ingest(context.Background(), sc, mapping.KindSession, []byte(s.doc), false, engine.Answer{})
			if err != nil {
				t.Fatal(err)
			}
			var resp struct {
				Entry []struct {
					Response struct{ Status, Location string }
				}
			}
			if err := json.Unmarshal(answer, &resp); err != nil {
				t.Fatal(err)
			}
			// The methods of the record's entries: the guesses are of POSTs.
			v, err := g.a.Ingest.DryRun(context.Background(), s.tenant, mapping.KindSession, []byte(s.doc), false)
			if err != nil {
				t.Fatal(err)
			}
			var req struct {
				Entry []struct{ Request struct{ Method string } }
			}
			if err := json.Unmarshal(v.Bundle, &req); err != nil || len(req.Entry) != len(resp.Entry) {
				t.Fatalf("dry run: %v, %d entries, want %d", err, len(req.Entry), len(resp.Entry))
			}
			created, posted := 0, 0 // created, and created by a POST
			patient := ""
			for i, e := range resp.Entry {
				loc := strings.Split(e.Response.Location, "/")
				if i == 0 {
					patient = "Patient/" + loc[1]
				}
				if !strings.HasPrefix(e.Response.Status, "201") {
					continue
				}
				created++
				if req.Entry[i].Request.Method == "POST" {
					posted++
				}
				// Stored as the transaction renders it: the same bytes
				// rendered again at the stored instant.
				r, err := g.a.Store.VRead(context.Background(), loc[0], loc[1], 1)
				if err != nil {
					t.Fatalf("entry %d %s: %v", i, e.Response.Location, err)
				}
				doc, err := engine.DecodeResource(r.Body)
				if err != nil {
					t.Fatal(err)
				}
				again, err := store.VersionBody(r.Type, r.ID, 1, doc, r.LastUpdated)
				if err != nil {
					t.Fatal(err)
				}
				if string(again) != string(r.Body) {
					t.Errorf("entry %d %s: stored\n%s\nrendered again at its instant\n%s", i, e.Response.Location, r.Body, again)
				}
				if subj, ok := doc["subject"].(map[string]any); ok && r.Type == "Observation" && subj["reference"] != patient {
					t.Errorf("entry %d %s: subject %v, want %s", i, e.Response.Location, subj["reference"], patient)
				}
			}
			want := 0
			if s.ahead {
				want = posted
				if posted < 50 {
					t.Fatalf("%d resources created, want the session's 50 and more", created)
				}
			}
			// The store's span says how many guesses the transaction put
			// (a count, on its allow-list); none without a speculation.
			var used int64
			for _, sp := range spans.GetSpans() {
				for _, kv := range sp.Attributes {
					if sp.Name == "store.transaction" && kv.Key == "ingest.rendered_ahead" {
						used = kv.Value.AsInt64()
					}
				}
			}
			if used != int64(want) {
				t.Errorf("store.transaction span: ingest.rendered_ahead = %d guesses put, want %d (of %d created, %d by a POST)",
					used, want, created, posted)
			}
		})
	}
	// The audit trail vouches for what was stored so: every receipt, and
	// every record version of the ledger (a named tenant's too).
	res, err := auditlog.Verify(context.Background(), g.a.Store, time.Now())
	if err != nil || !res.Intact || res.Lineage.LedgerEntries != 4 {
		t.Errorf("audit verify = %s (lineage %+v), %v; want intact, 4 ledger entries checked", res.Summary(), res.Lineage, err)
	}
}
