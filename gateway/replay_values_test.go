package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestReplayShowValuesAudited: POST /admin/replay?showValues=true puts the
// records' old and new values in its report; the kick-off's AuditEvent
// says values were asked for, and the report's download names the
// patients whose values it holds and says values were disclosed (as a
// delivery read with payload=true does).
func TestReplayShowValuesAudited(t *testing.T) {
	st := tempSQLite(t, sqlite.Options{})
	s := newServer(t, app.Config{Store: st}, gateway.Config{})
	if rec := do(s, http.MethodPost, "/ingest/vitals", "application/json", example(t, "vitals/pre-dose-baseline.json")); rec.Code != http.StatusOK {
		t.Fatalf("ingest = %d %s", rec.Code, rec.Body)
	}
	// A client changes the stored heart rate: the record is diverged, its
	// diff the heart rate's value.
	rec := do(s, http.MethodGet, "/fhir/Observation?code=8867-4", "", nil)
	var bundle struct {
		Entry []struct{ Resource map[string]any }
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &bundle); err != nil || len(bundle.Entry) != 1 {
		t.Fatalf("heart rate search = %d %s", rec.Code, rec.Body)
	}
	obs := bundle.Entry[0].Resource
	obs["valueQuantity"].(map[string]any)["value"] = 99
	body, _ := json.Marshal(obs)
	if rec := do(s, http.MethodPut, "/fhir/Observation/"+obs["id"].(string), gateway.ContentTypeFHIR, body); rec.Code != http.StatusOK {
		t.Fatalf("PUT Observation = %d %s", rec.Code, rec.Body)
	}
	patient := "Patient/" + strings.TrimPrefix(obs["subject"].(map[string]any)["reference"].(string), "Patient/")

	for _, tc := range []struct {
		query      string
		kickoff    string // in the kick-off's description
		values     bool   // the report shows values
		namesValue bool
	}{
		{"kind=vitals", "mapping replay (dry run) queued", false, false},
		{"kind=vitals&showValues=true", "mapping replay (dry run, with values: the report shows the old and new values", true, true},
	} {
		t.Run(tc.query, func(t *testing.T) {
			rec := do(s, http.MethodPost, "/admin/replay?"+tc.query, "", nil)
			loc := rec.Header().Get("Content-Location")
			if rec.Code != http.StatusAccepted || loc == "" {
				t.Fatalf("POST /admin/replay?%s = %d %s", tc.query, rec.Code, rec.Body)
			}
			if ev := lastEvent(t, st); !strings.Contains(ev.desc, tc.kickoff) {
				t.Errorf("kick-off AuditEvent: %q, want %q", ev.desc, tc.kickoff)
			}
			status := loc[strings.Index(loc, "/jobs/"):]
			var result struct{ Report string }
			for deadline := time.Now().Add(30 * time.Second); ; {
				rec := do(s, http.MethodGet, status, "", nil)
				if rec.Code == http.StatusOK {
					var j struct{ Result json.RawMessage }
					_ = json.Unmarshal(rec.Body.Bytes(), &j)
					if err := json.Unmarshal(j.Result, &result); err != nil || result.Report == "" {
						if err := json.Unmarshal(rec.Body.Bytes(), &result); err != nil || result.Report == "" {
							t.Fatalf("job = %s", rec.Body)
						}
					}
					break
				}
				if rec.Code != http.StatusAccepted || time.Now().After(deadline) {
					t.Fatalf("job status = %d %s", rec.Code, rec.Body)
				}
				time.Sleep(10 * time.Millisecond) // polling a background job, not timing anything
			}
			rec = do(s, http.MethodGet, result.Report[strings.Index(result.Report, "/jobs/"):], "", nil)
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status":"diverged"`) {
				t.Fatalf("report = %d %s", rec.Code, rec.Body)
			}
			if got := strings.Contains(rec.Body.String(), `"old":`); got != tc.values {
				t.Errorf("report shows values: %v, want %v: %s", got, tc.values, rec.Body)
			}
			ev := lastEvent(t, st)
			if ev.subtype != "job-download" {
				t.Fatalf("last AuditEvent %q, want job-download", ev.subtype)
			}
			if got := strings.Contains(ev.desc, "values of the records' changed elements disclosed"); got != tc.values {
				t.Errorf("download AuditEvent %q says values disclosed: %v, want %v", ev.desc, got, tc.values)
			}
			if got := strings.Contains(ev.body, `"reference":"`+patient+`"`); got != tc.namesValue {
				t.Errorf("download AuditEvent names %s: %v, want %v: %s", patient, got, tc.namesValue, ev.body)
			}
		})
	}
}

type event struct{ subtype, desc, body string }

// lastEvent is the audit chain's last AuditEvent.
func lastEvent(t *testing.T, st store.Store) event {
	t.Helper()
	var last event
	err := st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		var ev struct {
			Subtype     []struct{ Code string }
			Outcome     string
			Description string `json:"outcomeDesc"`
		}
		_ = json.Unmarshal(e.Body, &ev)
		var doc map[string]any
		_ = json.Unmarshal(e.Body, &doc)
		last = event{body: string(e.Body)}
		if len(ev.Subtype) > 0 {
			last.subtype = ev.Subtype[0].Code
		}
		last.desc, _ = doc["outcomeDesc"].(string)
		if d, ok := doc["description"].(string); ok && last.desc == "" {
			last.desc = d
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return last
}
