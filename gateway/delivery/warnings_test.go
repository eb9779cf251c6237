package delivery

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestDeliveredWithEHRWarningsIsLogged: a 200 answer whose entries carry
// warnings is delivered, and its log line says how many, at WARN, without
// the EHR's texts (p23 F8).
func TestDeliveredWithEHRWarningsIsLogged(t *testing.T) {
	ehr := newStubEHR(t)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		warn := map[string]any{"resourceType": "OperationOutcome", "issue": []any{
			map[string]any{"severity": "warning", "code": "business-rule", "diagnostics": "Quuxfamily900 looks odd"}}}
		entries := []any{}
		for range 3 {
			entries = append(entries, map[string]any{"response": map[string]any{"status": "201", "outcome": warn}})
		}
		writeJSON(w, http.StatusOK, map[string]any{"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
		return true
	}
	var logs syncLog
	h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
	wantAttempt(t, evs[0], 1, store.StatusDone, 200, "")
	h.stop()
	h.stop = nil
	out := logs.String()
	if !strings.Contains(out, `"level":"WARN","msg":"delivery: delivered with EHR warnings"`) || !strings.Contains(out, `"ehr_warnings":3`) {
		t.Errorf("log = %s\nwant a WARN line with ehr_warnings 3", out)
	}
	if strings.Contains(out, "Quuxfamily900") {
		t.Errorf("the log quotes the EHR's diagnostics")
	}
}
