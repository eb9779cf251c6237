package test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestClientChangesAudited: the real binary, restarted on its database
// with a changed client file (reader-a removed, patients-a given a
// scope), records each change as an AuditEvent that an auditor finds by
// AuditEvent?type=110137 over the FHIR API; the first start recorded
// every client as added.
func TestClientChangesAudited(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	s := startSecuredClients(t, securedClients, nil, nil, "--db", db)
	addr := strings.TrimPrefix(strings.TrimSuffix(s.tokenURL, "/auth/token"), "http://")
	s.gateway.stop(t)

	raw, err := os.ReadFile(s.config)
	if err != nil {
		t.Fatal(err)
	}
	var conf map[string]any
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	authConf := conf["auth"].(map[string]any)
	var clients []any
	for _, c := range authConf["clients"].([]any) {
		c := c.(map[string]any)
		switch c["id"] {
		case "reader-a":
			continue
		case "patients-a":
			c["scopes"] = append(c["scopes"].([]any), "system/Observation.rs")
		}
		clients = append(clients, c)
	}
	authConf["clients"] = clients
	raw, _ = json.Marshal(conf)
	if err := os.WriteFile(s.config, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	s.gateway = start(t, "--addr", addr, "--config", s.config, "--db", db)

	auditor := s.token(t, "auditor", "system/*.rs")
	status, _, b := call(t, "GET", s.base+"/fhir/AuditEvent?type=http://dicom.nema.org/resources/ontology/DCM|110137&_count=50", auditor, "")
	if status != 200 {
		t.Fatalf("AuditEvent?type=110137 = %d %v", status, b)
	}
	var got []string
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		r := e.(map[string]any)["resource"].(map[string]any)
		ent := r["entity"].([]any)[0].(map[string]any)
		id := ent["what"].(map[string]any)["identifier"].(map[string]any)["value"].(string)
		got = append(got, r["action"].(string)+" "+id+": "+r["outcomeDesc"].(string))
	}
	slices.Sort(got)
	want := []string{
		`C auditor: registered client added: tenant "*"; scopes gateway/operator system/*.rs; keys auditor-k1`,
		`C clinic-a: registered client added: tenant "clinic-a"; scopes gateway/ingest system/*.cruds; keys clinic-a-k1`,
		`C clinic-c: registered client added: tenant "clinic-c"; scopes gateway/ingest; keys clinic-c-k1`,
		`C hospital-b: registered client added: tenant "hospital-b"; scopes system/*.cruds; keys hospital-b-k1`,
		`C patients-a: registered client added: tenant "clinic-a"; scopes system/Patient.cruds; keys patients-a-k1`,
		`C reader-a: registered client added: tenant "clinic-a"; scopes system/Patient.rs; keys reader-a-k1`,
		`D reader-a: registered client removed (it had tenant "clinic-a"; scopes system/Patient.rs; keys reader-a-k1)`,
		`U patients-a: registered client changed: scopes added: system/Observation.rs`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("client-registration AuditEvents:\n got %q\nwant %q", got, want)
	}
}
