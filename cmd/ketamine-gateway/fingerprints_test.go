package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

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
		{"mrn systems set", `{"auth": {"tokenUrl": "https://gw/auth/token", "clients": [{"id": "clinic", "tenant": "clinic-a",
			"scopes": ["gateway/ingest"], "jwks": {"keys": []}}]},
			"destinations": [{"name": "ehr", "baseUrl": "https://ehr/fhir", "mode": "transaction", "timeout": "5s", "mrnSystems": ["https://ehr/mrn"]}]}`,
			secret, []string{operator.SettingsDestinations}},
		{"mrn systems set empty", `{"auth": {"tokenUrl": "https://gw/auth/token", "clients": [{"id": "clinic", "tenant": "clinic-a",
			"scopes": ["gateway/ingest"], "jwks": {"keys": []}}]},
			"destinations": [{"name": "ehr", "baseUrl": "https://ehr/fhir", "mode": "transaction", "timeout": "5s", "mrnSystems": []}]}`,
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

// TestSettingsFingerprintsClientKeys: the clients' fingerprint covers
// their keys, not where they are read from: the same key set in files of
// other directories (resolved to other absolute paths), laid out
// otherwise, or inline, is the same setting; another key is not.
func TestSettingsFingerprintsClientKeys(t *testing.T) {
	set := func(t *testing.T) []byte {
		k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Public(), KeyID: "k1", Use: "sig"}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keys, other := set(t), set(t)
	var indented bytes.Buffer
	if err := json.Indent(&indented, keys, "", "    "); err != nil {
		t.Fatal(err)
	}
	file := func(t *testing.T, b []byte) string {
		p := filepath.Join(t.TempDir(), "conf", "clinic.jwks")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	clients := func(t *testing.T, keySet string) string {
		t.Helper()
		var fc fileConfig
		config := `{"auth": {"tokenUrl": "https://gw/auth/token", "clients": [{"id": "clinic", "tenant": "clinic-a",
			"scopes": ["gateway/ingest"], ` + keySet + `}]}}`
		if err := json.Unmarshal([]byte(config), &fc); err != nil {
			t.Fatal(err)
		}
		getenv := func(string) string { return "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA==" }
		return settingsFingerprints(&fc, getenv, nil, nil, nil, "")[operator.SettingsClients]
	}
	jwksFile := func(p string) string { b, _ := json.Marshal(p); return `"jwksFile": ` + string(b) }
	ref := clients(t, jwksFile(file(t, keys)))
	for _, tc := range []struct {
		name, keySet string
		same         bool
	}{
		{"the same keys in another directory", jwksFile(file(t, keys)), true},
		{"the same keys laid out otherwise", jwksFile(file(t, indented.Bytes())), true},
		{"the same keys inline", `"jwks": ` + string(keys), true},
		{"another key", jwksFile(file(t, other)), false},
	} {
		if got := clients(t, tc.keySet); (got == ref) != tc.same {
			t.Errorf("%s: the clients' fingerprint is the same: %v, want %v", tc.name, got == ref, tc.same)
		}
	}
}

// TestProcessName: two processes of one --instance have two names (not
// told apart by the pid: 1 in every container), each the instance and a
// short suffix, readable as a job's claimedBy.
func TestProcessName(t *testing.T) {
	a, b := processName("gw-a"), processName("gw-a")
	if a == b {
		t.Errorf("processName twice = %q: two processes of one instance share a name", a)
	}
	for _, n := range []string{a, b} {
		if suffix, ok := strings.CutPrefix(n, "gw-a "); !ok || len(suffix) != 8 {
			t.Errorf("processName = %q, want gw-a and an 8-character suffix", n)
		}
	}
}
