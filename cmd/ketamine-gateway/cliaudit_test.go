package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// cliEvent is what a test looks at in an AuditEvent.
type cliEvent struct {
	subtype, action, outcome, desc, client, site string
	patients, named                              []string // Patient references; values named by identifier
}

// auditEvents are db's AuditEvents, in the chain's order.
func auditEvents(t *testing.T, db string) []cliEvent {
	t.Helper()
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var out []cliEvent
	err = st.AuditChainAfter(context.Background(), 0, func(e audit.ChainEntry) error {
		var ev struct {
			Subtype     []struct{ Code string }
			Action      string
			Outcome     string
			OutcomeDesc string
			Agent       []struct {
				Who struct {
					Identifier struct{ Value string }
				}
				Requestor bool
			}
			Source struct{ Site string }
			Entity []struct {
				What struct {
					Reference  string
					Identifier struct{ Value string }
				}
			}
		}
		if err := json.Unmarshal(e.Body, &ev); err != nil {
			return err
		}
		c := cliEvent{action: ev.Action, outcome: ev.Outcome, desc: ev.OutcomeDesc, site: ev.Source.Site}
		if len(ev.Subtype) > 0 {
			c.subtype = ev.Subtype[0].Code
		}
		for _, a := range ev.Agent {
			if a.Requestor {
				c.client = a.Who.Identifier.Value
			}
		}
		for _, en := range ev.Entity {
			switch {
			case strings.HasPrefix(en.What.Reference, "Patient/"):
				c.patients = append(c.patients, en.What.Reference)
			case en.What.Identifier.Value != "":
				c.named = append(c.named, en.What.Identifier.Value)
			}
		}
		out = append(out, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCLIWritesClaimNoHTTP: the AuditEvents of an import (a record stored,
// a record refused) say what was done and whether it succeeded, and claim
// no HTTP status: no HTTP exchange happened.
func TestCLIWritesClaimNoHTTP(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	importExample(t, db, "vitals/pre-dose-baseline.json")
	records := writeTemp(t, "bad.ndjson", `{"recordId":"x"}`+"\n")
	if _, errOut, code := cli(t, "", "import", "--kind", "vitals", "--db", db, records); code == 0 {
		t.Fatalf("import of a record its schema refuses: exit 0, stderr %s", errOut)
	}
	var ingests []cliEvent
	for _, ev := range auditEvents(t, db) {
		if ev.subtype == "ingest" {
			ingests = append(ingests, ev)
		}
	}
	if len(ingests) != 2 {
		t.Fatalf("%d ingest AuditEvents, want 2: %+v", len(ingests), ingests)
	}
	for i, want := range []struct{ outcome, desc string }{{"0", "vitals record"}, {"4", "rejected: "}} {
		ev := ingests[i]
		if ev.outcome != want.outcome || !strings.HasPrefix(ev.desc, want.desc) || strings.Contains(ev.desc, "HTTP") ||
			!strings.HasPrefix(ev.client, "cli-import:") {
			t.Errorf("import's AuditEvent %d: outcome %s outcomeDesc %q client %q; want outcome %s, %q and no HTTP status",
				i, ev.outcome, ev.desc, ev.client, want.outcome, want.desc)
		}
	}
}

// divergeHeartRate stores a new version of the heart rate Observation of
// db, as a client's update would (a replay then shows its old and new
// value), and returns the patient it is about.
func divergeHeartRate(t *testing.T, db string) string {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, db, sqlite.Options{Existing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	obs, _, err := st.History(ctx, store.HistoryQuery{Type: "Observation", Tenant: search.AllTenants, Count: 100})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range obs {
		var doc map[string]any
		if json.Unmarshal(r.Body, &doc) != nil || !strings.Contains(string(r.Body), `"8867-4"`) {
			continue
		}
		doc["valueQuantity"].(map[string]any)["value"] = 99
		meta := doc["meta"].(map[string]any)
		meta["versionId"] = "2"
		body, _ := json.Marshal(doc)
		next := *r
		next.Version, next.Body, next.Method, next.Status, next.LastUpdated = r.Version+1, body, "PUT", 200, time.Now().UTC().Truncate(time.Millisecond)
		if err := st.Write(ctx, func(tx store.Tx) error { return tx.Put(&next, nil) }); err != nil {
			t.Fatal(err)
		}
		return doc["subject"].(map[string]any)["reference"].(string)
	}
	t.Fatal("no heart rate Observation stored")
	return ""
}

// TestCLIAuditedAsTheAPI: a CLI command that shows the patients' data
// leaves the AuditEvent its API twin leaves (interaction, patients, the
// delivery or record named, a description that says what was disclosed),
// by the person running it (cli-<command>:<user>), claiming no HTTP
// status: deliveries list and show (with and without --payload), lineage,
// replay --show-values. A replay without values shows none and writes
// nothing. So do the deliveries commands that change one (retry, cancel,
// replay).
func TestCLIAuditedAsTheAPI(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	dest := writeTemp(t, "d.json", `{"destinations": [{"name": "hosp", "baseUrl": "http://127.0.0.1:1/fhir"}]}`)
	importExample(t, db, "vitals/pre-dose-baseline.json", "--deliver", "--config", dest)
	patient := divergeHeartRate(t, db)
	out, errOut, code := cli(t, "", "deliveries", "list", "--db", db)
	var list struct {
		Deliveries []struct{ ID, Source, RecordID string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Deliveries) != 1 {
		t.Fatalf("deliveries list: exit %d, %s %s", code, out, errOut)
	}
	d := list.Deliveries[0]
	for _, tc := range []struct {
		name     string
		args     []string
		subtype  string
		desc     string // in the outcomeDesc
		named    string // named by identifier ("": nothing checked)
		audited  bool
		exitCode int
	}{
		{"deliveries list", []string{"deliveries", "list"}, "delivery-list", "deliveries: 1 delivery listed", "", true, 0},
		{"deliveries show", []string{"deliveries", "show", d.ID}, "delivery-read", "delivery " + d.ID + ": 0 attempts; payload not disclosed", d.ID, true, 0},
		{"deliveries show --payload", []string{"deliveries", "show", "--payload", d.ID}, "delivery-read",
			"payload (the FHIR Bundle) and the EHR's answers disclosed", d.ID, true, 0},
		{"lineage", []string{"lineage", "--source", d.Source, "--record", d.RecordID}, "lineage", "lineage: 1 receipt, ", d.RecordID, true, 0},
		{"replay --show-values", []string{"replay", "--show-values"}, "mapping-replay", "mapping replay (dry run) report: 1 record shown with values; the old and new values of the records' changed elements disclosed (showValues)", "", true, 1},
		{"replay", []string{"replay"}, "", "", "", false, 1},
		{"deliveries retry", []string{"deliveries", "retry", d.ID}, "delivery-retry", "delivery " + d.ID + " queued again", d.ID, true, 0},
		{"deliveries replay", []string{"deliveries", "replay", "--destination", "hosp", "--since", "1h"}, "delivery-replay",
			"delivery replay: 0 deliveries queued again", "", true, 0},
		{"deliveries cancel", []string{"deliveries", "cancel", d.ID, "--reason", "sent by hand"}, "delivery-cancel",
			"delivery " + d.ID + " cancelled (the reason is recorded with the delivery)", d.ID, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(auditEvents(t, db))
			out, errOut, code := cli(t, "", append(tc.args, "--db", db)...)
			if code != tc.exitCode {
				t.Fatalf("exit %d, want %d: %s %s", code, tc.exitCode, out, errOut)
			}
			if tc.name == "replay --show-values" && !strings.Contains(out, "99") {
				t.Errorf("the report with values, printed once its AuditEvent is committed, lacks the new value 99:\n%s", out)
			}
			evs := auditEvents(t, db)[before:]
			if !tc.audited {
				if len(evs) != 0 {
					t.Errorf("%d AuditEvents, want none: %+v", len(evs), evs)
				}
				return
			}
			command := strings.Fields(tc.name)[0]
			isShare := func(ev cliEvent) bool { return strings.HasPrefix(ev.desc, "the share of the default tenant") }
			whole := slices.IndexFunc(evs, func(ev cliEvent) bool { return ev.site == "*" && !isShare(ev) })
			if whole < 0 {
				t.Fatalf("no all-tenant AuditEvent among %+v", evs)
			}
			ev := evs[whole]
			names := tc.subtype != "delivery-replay" // which names no record, as the API's
			if ev.subtype != tc.subtype || ev.outcome != "0" || !strings.Contains(ev.desc, tc.desc) || strings.Contains(ev.desc, "HTTP") ||
				!strings.HasPrefix(ev.client, "cli-"+command+":") || names && !slices.Contains(ev.patients, patient) || tc.named != "" && !slices.Contains(ev.named, tc.named) {
				t.Errorf("AuditEvent %+v; want %s, outcome 0, outcomeDesc with %q and no HTTP status, client cli-%s:, patient %s, %s named",
					ev, tc.subtype, tc.desc, command, patient, tc.named)
			}
			if share := slices.IndexFunc(evs, isShare); names && (share < 0 || !slices.Contains(evs[share].patients, patient)) {
				t.Errorf("the default tenant has no share naming %s: %+v", patient, evs)
			}
		})
	}
}

// refuseAudit makes db refuse to store an AuditEvent (when: a SQL
// condition on the new resources row, NEW; "1": every AuditEvent), as a
// database that cannot record the audit trail would.
func refuseAudit(t *testing.T, db, when string) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	if _, err := raw.Exec(`CREATE TRIGGER refuse_audit BEFORE INSERT ON resources WHEN NEW.type = 'AuditEvent' AND (` + when + `)
		BEGIN SELECT RAISE(ABORT, 'audit refused'); END`); err != nil {
		t.Fatal(err)
	}
}

// TestCLIReadUnauditedShowsNothing: a CLI read that discloses the patients'
// data commits its AuditEvent before anything is printed; when it cannot
// be committed the command exits 3 and prints nothing (as the API answers
// 503 audit-unavailable instead of the data).
func TestCLIReadUnauditedShowsNothing(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	dest := writeTemp(t, "d.json", `{"destinations": [{"name": "hosp", "baseUrl": "http://127.0.0.1:1/fhir"}]}`)
	importExample(t, db, "vitals/pre-dose-baseline.json", "--deliver", "--config", dest)
	divergeHeartRate(t, db)
	out, errOut, code := cli(t, "", "deliveries", "list", "--db", db)
	var list struct {
		Deliveries []struct{ ID, Source, RecordID string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Deliveries) != 1 {
		t.Fatalf("deliveries list: exit %d, %s %s", code, out, errOut)
	}
	d := list.Deliveries[0]
	refuseAudit(t, db, "1")
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"deliveries list", []string{"deliveries", "list"}},
		{"deliveries show", []string{"deliveries", "show", d.ID}},
		{"deliveries show --payload", []string{"deliveries", "show", "--payload", d.ID}},
		{"lineage", []string{"lineage", "--source", d.Source, "--record", d.RecordID}},
		{"replay --show-values", []string{"replay", "--show-values"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := cli(t, "", append(tc.args, "--db", db)...)
			if code != exitUnchecked || out != "" || !strings.Contains(errOut, "AuditEvent could not be recorded, so nothing is shown") {
				t.Errorf("with the AuditEvent refused: exit %d, stdout %q, stderr %q; want exit %d, nothing printed, and why",
					code, out, errOut, exitUnchecked)
			}
		})
	}
}

// TestCLIReplayApplyValuesUnaudited: replay --apply --show-values whose
// report's AuditEvent cannot be committed has made its corrections (a
// second run finds nothing to change): it says so, exits 3 and shows no
// values, rather than asking to run it again.
func TestCLIReplayApplyValuesUnaudited(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	importExample(t, db, "vitals/pre-dose-baseline.json")
	raw, err := sql.Open("sqlite", "file:"+db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	// The heart rate as an older mapping stored it: the replay corrects it.
	res, err := raw.Exec(`UPDATE resources SET body = CAST(replace(CAST(body AS TEXT), '"value":76', '"value":75') AS BLOB)
		WHERE type = 'Observation' AND CAST(body AS TEXT) LIKE '%"8867-4"%'`)
	raw.Close()
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("make the heart rate stale: %d rows, %v", n, err)
	}
	// The report's AuditEvent (all-tenant, as the CLI's) only: the
	// corrections, the record's tenant's, are audited.
	refuseAudit(t, db, "NEW.tenant = '"+search.AllTenantsAudit+"'")
	out, errOut, code := cli(t, "", "replay", "--apply", "--reason", "r", "--no-config", "--show-values", "--db", db)
	if code != exitUnchecked || out != "" || !strings.Contains(errOut, "replay: done, but its AuditEvent could not be recorded") ||
		strings.Contains(errOut, "run it again") {
		t.Fatalf("replay --apply --show-values, its report's AuditEvent refused: exit %d, stdout %q, stderr %q; want exit %d, nothing printed, done",
			code, out, errOut, exitUnchecked)
	}
	if out, errOut, code := cli(t, "", "replay", "--db", db); code != 0 {
		t.Errorf("replay after the corrections were applied: exit %d, %s %s; want 0 (nothing to change)", code, out, errOut)
	}
}

// TestCLIReplayValuesHeldInAFile: replay --show-values holds its report
// (PHI) in a file of the temporary directory until its AuditEvent is
// committed, not in memory (a report grows with the records): without a
// usable temporary directory it shows nothing and changes nothing (exit
// 3), and with one it leaves nothing behind there.
func TestCLIReplayValuesHeldInAFile(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	importExample(t, db, "vitals/pre-dose-baseline.json")
	divergeHeartRate(t, db)
	before := len(auditEvents(t, db))
	t.Setenv("TMPDIR", writeTemp(t, "not-a-directory", ""))
	out, errOut, code := cli(t, "", "replay", "--show-values", "--db", db)
	if code != exitUnchecked || out != "" || !strings.Contains(errOut, "no file to hold the report") {
		t.Errorf("replay --show-values without a temporary directory: exit %d, stdout %q, stderr %q; want exit %d, nothing printed, and why",
			code, out, errOut, exitUnchecked)
	}
	if n := len(auditEvents(t, db)); n != before {
		t.Errorf("replay --show-values that could hold no report: %d AuditEvents written, want none", n-before)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	if out, errOut, code := cli(t, "", "replay", "--show-values", "--db", db); code != exitInvalid || !strings.Contains(out, "99") {
		t.Fatalf("replay --show-values: exit %d, stdout %q, stderr %q; want exit %d and the values", code, out, errOut, exitInvalid)
	}
	if left, err := os.ReadDir(tmp); err != nil || len(left) != 0 {
		t.Errorf("the temporary directory after replay --show-values holds %v (%v), want nothing", left, err)
	}
}
