package main

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// TestReplayApplyNeedsConfig: an apply writes with the configured safety
// thresholds and enqueues for the configured destinations, so without the
// configuration serve runs with it would strip a tenant's interpretations
// and store corrections no later run sends. It is refused (exit 2) without
// --config or --ehr-url, unless --no-config says the gateway runs without
// them; and refused with no destination configured while the outbox holds
// deliveries.
func TestReplayApplyNeedsConfig(t *testing.T) {
	plain := filepath.Join(t.TempDir(), "plain.db") // no delivery
	importExample(t, plain, "vitals/pre-dose-baseline.json")
	dest := writeTemp(t, "d.json", `{"destinations": [{"name": "hosp", "baseUrl": "http://127.0.0.1:1/fhir"}]}`)
	safetyOnly := writeTemp(t, "s.json", `{"safety": {"vitals": {"heartRate": {"high": 100, "criticalHigh": 120}}}}`)
	delivered := filepath.Join(t.TempDir(), "delivered.db")
	importExample(t, delivered, "vitals/pre-dose-baseline.json", "--deliver", "--config", dest)
	apply := []string{"replay", "--apply", "--reason", "2.3.0 release"}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no configuration", []string{"--db", plain}, exitUsage, "--apply needs the configuration the gateway serves with: --config FILE"},
		{"no configuration, outbox with deliveries", []string{"--db", delivered}, exitUsage, "--no-config if serve runs with neither"},
		{"--no-config, nothing delivered", []string{"--db", plain, "--no-config"}, 0, "over 1 record"},
		{"--no-config, outbox with deliveries", []string{"--db", delivered, "--no-config"}, exitUsage, "the outbox holds deliveries to hosp, and no destination is configured"},
		{"--config without destinations, outbox with deliveries", []string{"--db", delivered, "--config", safetyOnly}, exitUsage, "pass the destinations serve delivers to"},
		{"--config with the destination", []string{"--db", delivered, "--config", dest}, 0, "over 1 record"},
		{"--no-config and --config", []string{"--db", plain, "--no-config", "--config", dest}, exitUsage, "give one or the other"},
		{"--no-config and --ehr-url", []string{"--db", plain, "--no-config", "--ehr-url", "http://127.0.0.1:1/fhir"}, exitUsage, "give one or the other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantCLI(t, append(append([]string{}, apply...), tc.args...), tc.code, tc.want)
		})
	}
	// A dry run needs no configuration.
	wantCLI(t, []string{"replay", "--db", delivered}, 0, "1 unchanged")
}

// TestReplayDryRunWritesNothing: a dry replay only reads (docs/mapping.md
// §10 runs it on a database another release serves): it does not store
// this build's conformance resources, as serve's start does.
func TestReplayDryRunWritesNothing(t *testing.T) {
	db := rollbackDB(t, func(context.Context, store.Store, *sql.DB) error { return nil })
	versions := func() int {
		t.Helper()
		st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		_, total, err := st.History(context.Background(), store.HistoryQuery{Tenant: search.AllTenants})
		if err != nil {
			t.Fatal(err)
		}
		return total
	}
	before := versions()
	if _, errOut, code := cli(t, "", "replay", "--db", db); code != 0 {
		t.Fatalf("replay: exit %d, stderr %q", code, errOut)
	}
	if after := versions(); after != before {
		t.Errorf("a dry replay left %d versions, want the %d before", after, before)
	}
}
