package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestReadySettingsDiffer: an operator's /readyz names the other live
// gateways on the database whose settings differ from this one's, by
// group, never by value (probe p33 F2: a gateway with other safety
// thresholds, destinations and token secret ran beside the others
// unnoticed).
func TestReadySettingsDiffer(t *testing.T) {
	ctx := context.Background()
	db := filepath.Join(t.TempDir(), "gw.db")
	start := func(name, threshold string) (*app.App, http.Handler) {
		st, err := sqlite.Open(ctx, db, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		a, err := app.New(app.Config{Store: st, Instance: name, BacklogEvery: -1, Settings: map[string]string{
			operator.SettingsClinical: operator.Fingerprint(operator.SettingsClinical, []byte(threshold)),
			operator.SettingsMapping:  operator.Fingerprint(operator.SettingsMapping, []byte("2.3.0")),
		}})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = a.Close() })
		s, err := gateway.NewServer(gateway.Config{App: a, RateLimit: -1})
		if err != nil {
			t.Fatal(err)
		}
		return a, s
	}
	a0, h0 := start("gw0", `{"heartRate":{"high":100}}`)
	a1, _ := start("gw1", `{"heartRate":{"high":70}}`)
	for _, a := range []*app.App{a1, a0} { // each has seen the other
		if err := a.Settings.Check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rec := req(h0, http.MethodGet, "/readyz", "")
	var body struct {
		SettingsDiffer []operator.SettingsDifference `json:"settingsDiffer"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("/readyz = %d %s (%v)", rec.Code, rec.Body, err)
	}
	if d := body.SettingsDiffer; len(d) != 1 || d[0].Instance != "gw1" || len(d[0].Groups) != 1 || d[0].Groups[0] != operator.SettingsClinical {
		t.Errorf("/readyz = %s, want settingsDiffer naming gw1 and the group clinical", rec.Body)
	}
	// gw1 stops cleanly (its record deleted): none differ, an empty list.
	a1.Settings.Close()
	if err := a0.Settings.Check(ctx); err != nil {
		t.Fatal(err)
	}
	rec = req(h0, http.MethodGet, "/readyz", "")
	if !strings.Contains(rec.Body.String(), `"settingsDiffer":[]`) {
		t.Errorf("/readyz after gw1 stopped = %s, want \"settingsDiffer\":[]", rec.Body)
	}
}
