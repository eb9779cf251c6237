package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeWarnsOfConflictingRestrictions: a client registered with
// granular scopes that restrict a type's searches by different parameters
// (a token with them all would be refused, every search of the type would
// be 403) is named at start, in one WARN line with its id and the type,
// never a restriction's value.
func TestServeWarnsOfConflictingRestrictions(t *testing.T) {
	dir := t.TempDir()
	if _, errOut, code := cli(t, "", "client", "keygen", "--out", filepath.Join(dir, "a.key"), "--jwks", filepath.Join(dir, "a.jwks"), "--kid", "kid-a"); code != 0 {
		t.Fatalf("keygen = exit %d %s", code, errOut)
	}
	cfg := filepath.Join(dir, "config.json")
	err := os.WriteFile(cfg, []byte(`{"auth": {"tokenUrl": "https://gw.example/auth/token", "clients": [
		{"id": "hmix", "tenant": "clinic-a", "jwksFile": "a.jwks", "scopes": [
			"system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs",
			"system/Observation.rs?code=http://loinc.org|44261-6"]},
		{"id": "hcat2", "tenant": "clinic-a", "jwksFile": "a.jwks", "scopes": [
			"system/Observation.rs?category=vital-signs", "system/Observation.rs?category=laboratory"]}]}}`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, logs := serveUntilUp(t, filepath.Join(dir, "kg.db"), "--config", cfg)
	var warned []string
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "granular scopes restrict searches") {
			warned = append(warned, line)
		}
	}
	if len(warned) != 1 || !strings.Contains(warned[0], `"client":"hmix"`) ||
		!strings.Contains(warned[0], "searches of Observation by different search parameters (category or code)") {
		t.Errorf("serve's warnings = %q, want one naming client hmix and Observation's category or code", warned)
	}
	for _, value := range []string{"vital-signs", "44261-6", "laboratory", "loinc"} {
		if strings.Contains(logs, value) {
			t.Errorf("serve's log carries a restriction's value %q", value)
		}
	}
}
