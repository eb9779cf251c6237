package console

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestPlaygroundVerdict: the playground gives the verdict POST
// /ingest/{kind}?dryRun=true gives (ingest.Service.DryRun): a time in the
// future is refused (finding p42 F3), the signed-in person's tenant's
// thresholds apply (F9), and the warnings a stored record's answer
// carries are listed (F7).
func TestPlaygroundVerdict(t *testing.T) {
	strict := mapping.DefaultSafety()
	strict.HeartRate.CriticalHigh = 100
	now := time.Date(2026, 12, 6, 1, 35, 0, 0, time.UTC)
	const vitals = `{"source": {"system": "c", "recordId": "V-1", "version": "1"}, "patient": {"id": "P-1"},
		"timepoint": "pre-dose", "measuredAt": "2026-03-02T09:15:00-05:00", "heartRate": 105}`
	future := strings.Replace(vitals, "2026-03-02T09:15:00", "2099-03-02T09:15:00", 1)
	above := `{"source": {"system": "c", "recordId": "I-1", "version": "1"}, "patient": {"id": "P-1"},
		"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80, "totalDoseMg": 40,
		"administeredDoseMg": 45, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00"}`
	tests := []struct {
		name, tenant, kind, record string
		status                     int
		want, not                  []string
	}{
		{"future time", "", "vitals", future, http.StatusUnprocessableEntity, []string{"record.time-future"}, []string{"The record is valid"}},
		{"default thresholds", "", "vitals", vitals, http.StatusOK, []string{"The record is valid"}, []string{`&#34;HH&#34;`, "v3-ObservationInterpretation"}},
		{"the person's tenant's thresholds", "strict", "vitals", vitals, http.StatusOK, []string{`&#34;HH&#34;`}, nil},
		{"warnings listed", "", "infusion", above, http.StatusOK, []string{"The record is valid", "1 warning", "infusion.administered-above-plan", "/administeredDoseMg"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixtureApp(t, nil, app.Config{Now: func() time.Time { return now }, TenantSafety: map[string]mapping.Safety{"strict": strict}})
			if tt.tenant != "" {
				f.signInAs(t, &auth.Principal{ClientID: "person:ann", Tenant: tt.tenant, Scopes: auth.ParseScopes("system/*.cruds")})
			}
			_, form, _ := f.get(t, "/console/playground")
			status, page, _ := f.post(t, "/console/playground", url.Values{"csrf": {csrf(t, form)}, "kind": {tt.kind}, "record": {tt.record}})
			if status != tt.status {
				t.Fatalf("status %d, want %d: %.2000s", status, tt.status, page)
			}
			for _, w := range tt.want {
				if !strings.Contains(page, w) {
					t.Errorf("page lacks %s", w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(page, n) {
					t.Errorf("page has %s", n)
				}
			}
		})
	}
}
