package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestClientsList: clients list reads --config and prints each registered
// client's id, tenant, scopes and key ids (never a key), and each external
// issuer; a missing --config or an unreadable file is a usage error (p39
// F9: the access review had only the configuration file to read).
func TestClientsList(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := cli(t, "", "client", "keygen", "--out", filepath.Join(dir, "a.key"), "--jwks", filepath.Join(dir, "a.jwks"), "--kid", "kid-a"); code != 0 {
		t.Fatalf("keygen = exit %d %s", code, errOut)
	}
	cfg := filepath.Join(dir, "config.json")
	err := os.WriteFile(cfg, []byte(`{"auth": {"tokenUrl": "https://gw.example/auth/token", "clients": [
		{"id": "zeta-emr", "tenant": "clinic-z", "scopes": ["gateway/ingest", "system/*.cruds"], "jwksFile": "a.jwks"},
		{"id": "compliance", "tenant": "*", "scopes": ["gateway/auditor", "system/*.rs"], "jwksFile": "a.jwks"}]}}`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, code := cli(t, "", "clients", "list", "--config", cfg)
	var b struct {
		Clients []struct {
			ID, Tenant string
			Scopes     []string
			KeyIDs     []string `json:"keyIds"`
		}
		Issuers []any
	}
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil {
		t.Fatalf("clients list = exit %d, %s %s", code, out, errOut)
	}
	if len(b.Clients) != 2 || b.Clients[0].ID != "compliance" || b.Clients[1].Tenant != "clinic-z" ||
		strings.Join(b.Clients[1].Scopes, " ") != "gateway/ingest system/*.cruds" || strings.Join(b.Clients[1].KeyIDs, ",") != "kid-a" {
		t.Errorf("clients list = %s, want both clients by id with tenant, scopes and key ids", out)
	}
	if strings.Contains(out, `"x"`) || strings.Contains(out, "jwks") {
		t.Errorf("clients list shows key material or files: %s", out)
	}
	if _, errOut, code := cli(t, "", "clients", "list"); code != exitUsage || !strings.Contains(errOut, "--config") {
		t.Errorf("clients list without --config = exit %d %s, want %d", code, errOut, exitUsage)
	}
	if _, _, code := cli(t, "", "clients", "list", "--config", filepath.Join(dir, "nope.json")); code != exitUsage {
		t.Errorf("clients list with a missing file = exit %d, want %d", code, exitUsage)
	}
}
