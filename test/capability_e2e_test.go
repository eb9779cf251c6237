package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCapabilityGapsOnReadyz: serve reads each destination's
// CapabilityStatement and /readyz (still ready) names what an operator
// must act on: a destination whose statement does not list DetectedIssue,
// which the gateway sends it with session records, and a destination whose
// metadata cannot be read at all. Before, only a log line said so.
func TestCapabilityGapsOnReadyz(t *testing.T) {
	var types []string
	for _, typ := range []string{"Patient", "Observation", "Flag", "Procedure", "MedicationRequest", "MedicationAdministration", "AdverseEvent"} {
		// Every flag the deliveries rely on declared true, but Patient's
		// conditionalCreate.
		flags := `"conditionalCreate":true,"conditionalUpdate":true,"updateCreate":true`
		if typ == "Patient" {
			flags = `"conditionalCreate":false,"conditionalUpdate":true`
		}
		types = append(types, fmt.Sprintf(`{"type":%q,"interaction":[{"code":"create"},{"code":"update"},{"code":"delete"}],%s}`, typ, flags))
	}
	statement := `{"resourceType":"CapabilityStatement","status":"active","kind":"instance","fhirVersion":"4.0.1","format":["json"],` +
		`"rest":[{"mode":"server","interaction":[{"code":"transaction"}],"resource":[` + strings.Join(types, ",") + `]}]}`
	hosp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/metadata") {
			w.Header().Set("Content-Type", "application/fhir+json")
			fmt.Fprint(w, statement)
			return
		}
		http.Error(w, "unsupported", http.StatusMethodNotAllowed)
	}))
	t.Cleanup(hosp.Close)
	gone := httptest.NewServer(http.NotFoundHandler())
	gone.Close() // nothing listens there: its metadata cannot be read
	conf, err := json.Marshal(map[string]any{"destinations": []map[string]any{
		{"name": "hosp", "baseUrl": hosp.URL + "/fhir"},
		{"name": "gone", "baseUrl": gone.URL + "/fhir"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(cfg, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	g := start(t, "--config", cfg)
	type gap struct {
		Destination string `json:"destination"`
		Unsupported []struct {
			ResourceType        string   `json:"resourceType"`
			Listed              bool     `json:"listed"`
			MissingInteractions []string `json:"missingInteractions"`
			MissingFlags        []string `json:"missingFlags"`
		} `json:"unsupported"`
		CheckFailed      string     `json:"checkFailed"`
		CheckFailedSince *time.Time `json:"checkFailedSince"`
	}
	var ready struct {
		Status         string `json:"status"`
		CapabilityGaps []gap  `json:"capabilityGaps"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(g.base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		// Each answer decoded afresh: decoding into the last one's slice
		// would keep members this answer leaves out (a gap listed first
		// while only the other check had run keeps its checkFailed).
		ready.Status, ready.CapabilityGaps = "", nil
		err = json.NewDecoder(resp.Body).Decode(&ready)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || ready.Status != "ready" {
			t.Fatalf("/readyz = %d %+v (%v), want 200 ready", resp.StatusCode, ready, err)
		}
		if len(ready.CapabilityGaps) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz capabilityGaps = %+v, want both destinations", ready.CapabilityGaps)
		}
		time.Sleep(20 * time.Millisecond) // polling the running binary: the worker checks at start
	}
	h, x := ready.CapabilityGaps[0], ready.CapabilityGaps[1]
	if h.Destination != "hosp" || len(h.Unsupported) != 2 || h.Unsupported[0].ResourceType != "DetectedIssue" ||
		h.Unsupported[0].Listed || strings.Join(h.Unsupported[0].MissingInteractions, ",") != "create,update" || h.CheckFailed != "" {
		t.Errorf("hosp = %+v, want DetectedIssue not listed, create and update missing; and Patient", h)
	} else if p := h.Unsupported[1]; p.ResourceType != "Patient" || !p.Listed || len(p.MissingInteractions) != 0 ||
		strings.Join(p.MissingFlags, ",") != "conditionalCreate" {
		t.Errorf("hosp's Patient gap = %+v, want listed, conditionalCreate missing", p)
	}
	if x.Destination != "gone" || len(x.Unsupported) != 0 || !strings.HasPrefix(x.CheckFailed, "metadata: ") || x.CheckFailedSince == nil {
		t.Errorf("gone = %+v, want its check failed, since a time", x)
	}
	if strings.Contains(x.CheckFailed, gone.URL) || strings.Contains(x.CheckFailed, "127.0.0.1") {
		t.Errorf("the failure names the address: %q", x.CheckFailed)
	}
	// The worker publishes the gaps /readyz shows, then logs them: the
	// log is read until it holds them (a CI run read it in between).
	warned := func(logs string) bool {
		return strings.Contains(logs, `"resource_type":"DetectedIssue"`) &&
			strings.Contains(logs, `"resource_type":"Patient","listed":true,"missing_interactions":"","missing_flags":"conditionalCreate"`)
	}
	for deadline := time.Now().Add(10 * time.Second); !warned(g.Logs.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not warn of DetectedIssue:\n%s", g.Logs.String())
		}
		time.Sleep(20 * time.Millisecond) // polling the running binary's log
	}
}
