package main

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
)

// TestSettingsFingerprints: a gateway's fingerprint of a settings group
// changes with exactly the settings of that group (probe p33 F2: safety
// thresholds, a destination and the token secret differed between gateways
// on one database, unnoticed), and a gateway without a token secret has
// one no other gateway has.
func TestSettingsFingerprints(t *testing.T) {
	const base = `{"auth": {"tokenUrl": "https://gw/auth/token", "clients": [{"id": "clinic", "tenant": "clinic-a",
		"scopes": ["gateway/ingest"], "jwks": {"keys": []}}]},
		"destinations": [{"name": "ehr", "baseUrl": "https://ehr/fhir", "mode": "transaction", "timeout": "5s"}]}`
	secret := map[string]string{"GATEWAY_TOKEN_SECRET": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="}
	fingerprints := func(t *testing.T, config string, env map[string]string) map[string]string {
		t.Helper()
		var fc fileConfig
		if err := json.Unmarshal([]byte(config), &fc); err != nil {
			t.Fatal(err)
		}
		all, tenants, err := safety(&fc)
		if err != nil {
			t.Fatal(err)
		}
		getenv := func(k string) string { return env[k] }
		dests, err := destinations(&fc, "", "--ehr-url", getenv)
		if err != nil {
			t.Fatal(err)
		}
		return settingsFingerprints(&fc, getenv, all, tenants, dests, "")
	}
	ref := fingerprints(t, base, secret)
	for _, tc := range []struct {
		name, config string
		env          map[string]string
		differ       []string
	}{
		{"the same settings, timeouts aside", `{"auth": {"tokenUrl": "https://gw/auth/token", "clients": [{"id": "clinic",
			"tenant": "clinic-a", "scopes": ["gateway/ingest"], "jwks": {"keys": []}}]},
			"destinations": [{"name": "ehr", "baseUrl": "https://ehr/fhir/", "mode": "transaction", "timeout": "9s", "concurrency": 2}]}`,
			secret, nil},
		{"a heart-rate threshold", base[:len(base)-1] + `, "safety": {"vitals": {"heartRate": {"high": 70, "criticalHigh": 75}}}}`,
			secret, []string{operator.SettingsClinical}},
		{"another destination and mode", `{"auth": {"tokenUrl": "https://gw/auth/token", "clients": [{"id": "clinic",
			"tenant": "clinic-a", "scopes": ["gateway/ingest"], "jwks": {"keys": []}}]},
			"destinations": [{"name": "ehr", "baseUrl": "https://ehr/fhir", "mode": "batch"}, {"name": "ehr2", "baseUrl": "https://ehr2/fhir"}]}`,
			secret, []string{operator.SettingsDestinations}},
		{"another token secret", base, map[string]string{"GATEWAY_TOKEN_SECRET": "YW5vdGhlci1hbm90aGVyLWFub3RoZXItYW5vdGhlci1hbm90aGVy"},
			[]string{operator.SettingsTokenSecret}},
		{"no token secret", base, nil, []string{operator.SettingsTokenSecret}},
		{"another client scope", `{"auth": {"tokenUrl": "https://gw/auth/token", "clients": [{"id": "clinic", "tenant": "clinic-a",
			"scopes": ["gateway/ingest", "gateway/operator"], "jwks": {"keys": []}}]},
			"destinations": [{"name": "ehr", "baseUrl": "https://ehr/fhir", "mode": "transaction", "timeout": "5s"}]}`,
			secret, []string{operator.SettingsClients}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fingerprints(t, tc.config, tc.env)
			var differ []string
			for _, g := range slices.Sorted(maps.Keys(ref)) {
				if got[g] != ref[g] {
					differ = append(differ, g)
				}
			}
			if !slices.Equal(differ, tc.differ) {
				t.Errorf("groups differing = %v, want %v", differ, tc.differ)
			}
		})
	}
	if a, b := fingerprints(t, base, nil), fingerprints(t, base, nil); a[operator.SettingsTokenSecret] == b[operator.SettingsTokenSecret] {
		t.Errorf("two gateways without a token secret have one fingerprint: each makes its own random secret")
	}
	if len(ref) != 6 {
		t.Errorf("groups = %v, want 6", slices.Sorted(maps.Keys(ref)))
	}
}
