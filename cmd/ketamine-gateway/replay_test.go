package main

import (
	"bytes"
	"context"
	"database/sql"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

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

// TestReplayApplyPartlyDiverged (a mapping developer's review): an apply
// that writes a record but leaves one of its resources, which a client
// changed since, as it is reports the record partly diverged and exits 1,
// as the dry run after it does; it said "0 diverged" and exited 0.
func TestReplayApplyPartlyDiverged(t *testing.T) {
	db := filepath.Join(t.TempDir(), "g.db")
	importExample(t, db, "vitals/pre-dose-baseline.json")
	ctx := context.Background()
	st, err := sqlite.Open(ctx, db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	q, err := search.Parse("Observation", url.Values{"code": {"http://loinc.org|8867-4"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := st.Search(ctx, q)
	if err != nil || len(pg.Matches) != 1 {
		t.Fatalf("the heart rate Observation: %+v %v", pg, err)
	}
	hr := *pg.Matches[0]
	hr.Version++
	hr.LastUpdated = hr.LastUpdated.Add(time.Minute)
	hr.Body = bytes.Replace(hr.Body, []byte(`"value":76`), []byte(`"value":77`), 1)
	if bytes.Equal(hr.Body, pg.Matches[0].Body) {
		t.Fatalf("no heart rate of 76 in %s", hr.Body)
	}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.Put(&hr, nil) }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// Respiratory rate 14 is high under these thresholds: the record
	// changes, but for the client's heart rate.
	cfg := writeTemp(t, "s.json", `{"safety": {"vitals": {"respiratoryRate": {"high": 12, "criticalHigh": 20}}}}`)
	apply := []string{"replay", "--db", db, "--config", cfg, "--apply", "--reason", "RR thresholds"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{apply, "1 changed (written) (1 of them partly diverged"},
		{[]string{"replay", "--db", db, "--config", cfg}, "0 would change, 0 refused now, 1 diverged"},
	} {
		if out, errOut, code := cli(t, "", tc.args...); code != exitInvalid || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q; want %q", tc.args, code, exitInvalid, out, errOut, tc.want)
		}
	}
}
