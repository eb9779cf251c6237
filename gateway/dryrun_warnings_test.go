package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
)

// TestIngestDryRunWarnings: a dry run answers the transaction Bundle, or,
// asked with Prefer: return=OperationOutcome (http.html#ops), an
// OperationOutcome with the warnings a stored record's answer carries
// (finding p42 F7: they were hidden until the record was stored); a time
// in the future is refused as ingest refuses it (F3).
func TestIngestDryRunWarnings(t *testing.T) {
	h := newServer(t, app.Config{}, gateway.Config{})
	const above = `{"source": {"system": "c", "recordId": "I-1", "version": "1"}, "patient": {"id": "P-1"},
		"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80, "totalDoseMg": 40,
		"administeredDoseMg": 45, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00"}`
	future := strings.ReplaceAll(above, "2026-03-02", "2099-03-02")
	tests := []struct {
		name, prefer, body string
		status             int
		resourceType       string
		rules              []string // the issues' rules (details.coding), in order
	}{
		{"Bundle", "", above, 200, "Bundle", nil},
		{"warnings", "return=OperationOutcome", above, 200, "OperationOutcome", []string{"", "infusion.administered-above-plan"}},
		{"future", "return=OperationOutcome", future, 422, "OperationOutcome", []string{"record.time-future", "record.time-future"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/ingest/infusion?dryRun=true", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if tt.prefer != "" {
				req.Header.Set("Prefer", tt.prefer)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			var oo struct {
				ResourceType string `json:"resourceType"`
				Issue        []struct {
					Severity string `json:"severity"`
					Details  struct {
						Coding []struct{ Code string } `json:"coding"`
					} `json:"details"`
				} `json:"issue"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &oo); err != nil {
				t.Fatal(err)
			}
			if rec.Code != tt.status || oo.ResourceType != tt.resourceType {
				t.Fatalf("%d %s, want %d %s: %.500s", rec.Code, oo.ResourceType, tt.status, tt.resourceType, rec.Body)
			}
			var rules []string
			for _, is := range oo.Issue {
				rule := ""
				if len(is.Details.Coding) > 0 {
					rule = is.Details.Coding[0].Code
				}
				rules = append(rules, rule)
			}
			if strings.Join(rules, ",") != strings.Join(tt.rules, ",") {
				t.Errorf("issues %v, want %v", rules, tt.rules)
			}
		})
	}
}
