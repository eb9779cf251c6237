package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestSafetyConfig: the safety section overrides the defaults for every
// tenant, a tenant's entry on top; a setting left out keeps its value, and
// nonsense is refused naming the setting.
func TestSafetyConfig(t *testing.T) {
	fc, err := readConfig(writeTemp(t, "c.json", `{"safety": {
		"phq9Item9Min": 2, "madrsItem10Min": 5, "qidsItem12Min": 3,
		"vitals": {"systolic": {"criticalHigh": 170}},
		"tenants": {"harbor-clinic": {"cssrsMinRisk": "moderate", "sessionMinIntervalHours": 44, "vitals": {"spo2": {"low": 0, "criticalLow": 88}}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	all, tenants, err := safety(fc)
	if err != nil {
		t.Fatal(err)
	}
	want := mapping.DefaultSafety()
	want.PHQ9Item9, want.MADRSItem10, want.QIDSItem12, want.Systolic.CriticalHigh = 2, 5, 3, 170
	if *all != want {
		t.Errorf("every tenant: %+v, want %+v", *all, want)
	}
	want.CSSRSRisk, want.SpO2, want.SessionMinIntervalHours = "moderate", mapping.Limits{CriticalLow: 88}, 44
	if got := tenants["harbor-clinic"]; got != want || len(tenants) != 1 {
		t.Errorf("harbor-clinic: %+v, want %+v", got, want)
	}
	if all, tenants, err := safety(&fileConfig{}); all != nil || tenants != nil || err != nil {
		t.Errorf("no safety section: %v %v %v, want the defaults", all, tenants, err)
	}
	for name, tc := range map[string]struct{ body, want string }{
		"unknown key":                {`{"safety": {"phq9": 1}}`, "unknown field"},
		"unknown measurement":        {`{"safety": {"vitals": {"pulse": {"high": 100}}}}`, "safety.vitals.pulse"},
		"item 9 of 4":                {`{"safety": {"phq9Item9Min": 4}}`, "safety.phq9Item9Min"},
		"risk level":                 {`{"safety": {"cssrsMinRisk": "any"}}`, "safety.cssrsMinRisk"},
		"madrs item 10 of 7":         {`{"safety": {"madrsItem10Min": 7}}`, "safety.madrsItem10Min"},
		"qids item 12 of 0":          {`{"safety": {"tenants": {"t": {"qidsItem12Min": 0}}}}`, "safety.tenants.t.qidsItem12Min"},
		"session interval below 0":   {`{"safety": {"sessionMinIntervalHours": -1}}`, "safety.sessionMinIntervalHours"},
		"session interval of 8 days": {`{"safety": {"tenants": {"t": {"sessionMinIntervalHours": 192}}}}`, "safety.tenants.t.sessionMinIntervalHours"},
		"limits out of order":        {`{"safety": {"tenants": {"t": {"vitals": {"heartRate": {"criticalHigh": 100}}}}}}`, "safety.tenants.t.vitals.heartRate"},
	} {
		fc, err := readConfig(writeTemp(t, "c.json", tc.body))
		if err == nil {
			_, _, err = safety(fc)
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", name, err, tc.want)
		}
	}
}

// TestUnknownSafetyTenants: a per-tenant override that no client, external
// issuer or stored record makes a tenant of is refused (a misspelt tenant
// kept the real clinic at the thresholds beneath), unless an external
// issuer may name any tenant.
func TestUnknownSafetyTenants(t *testing.T) {
	override := &safetyConfig{Tenants: map[string]safetyOverride{"serenity-clinc": {}, "harbor-clinic": {}}}
	for _, tc := range []struct {
		name   string
		auth   *auth.Config
		stored []string
		want   string
	}{
		{"development mode, nothing stored", nil, nil, "[harbor-clinic serenity-clinc]"},
		{"a stored tenant", nil, []string{"harbor-clinic"}, "[serenity-clinc]"},
		{"a client's tenant", &auth.Config{Clients: []auth.Client{{ID: "c", Tenant: "serenity-clinc"}}}, []string{"harbor-clinic"}, "[]"},
		{"an issuer's tenants", &auth.Config{External: []auth.ExternalIssuer{{Tenants: []string{"harbor-clinic"}}}}, nil, "[serenity-clinc]"},
		{"an issuer of any tenant", &auth.Config{External: []auth.ExternalIssuer{{}}}, nil, "[]"},
	} {
		got, _ := unknownSafetyTenants(&fileConfig{Auth: tc.auth, Safety: override}, tc.stored)
		if fmt.Sprint(got) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, got, tc.want)
		}
	}
	if got, _ := unknownSafetyTenants(&fileConfig{Safety: &safetyConfig{}}, nil); got != nil {
		t.Errorf("no per-tenant override: %v", got)
	}
	// serve refuses to start, naming the tenant and the ones there are.
	cfg := writeTemp(t, "c.json", `{"safety": {"tenants": {"nosuch-clinic": {"cssrsMinRisk": "moderate"}}}}`)
	wantCLI(t, []string{"serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "kg.db"), "--config", cfg},
		exitUsage, "safety.tenants.nosuch-clinic: no client belongs to this tenant, no external issuer names it and no record of it is stored, so its thresholds would never apply (a misspelt tenant?); the tenants are: none but the default tenant")
}
