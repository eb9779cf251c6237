package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// cli runs the program as a user would, through run(). A command still
// running after a minute (a serve that should have refused to start) is
// stopped, and counts as exit 0.
func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(string) string { return "" }
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if len(args) > 0 && args[0] == "import" && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--report") }) {
		// The report of rejected records goes to the working directory by
		// default: the package's source, where a test must write nothing.
		args = append([]string{"import", "--report", filepath.Join(t.TempDir(), "import-rejected.ndjson")}, args[1:]...)
	}
	err := run(ctx, append([]string{"ketamine-gateway"}, args...), getenv, strings.NewReader(stdin), &out, &errb)
	var ee *exitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.code
		errb.WriteString(ee.msg)
	default:
		t.Fatalf("run(%v) = unexpected error %v", args, err)
	}
	return out.String(), errb.String(), code
}

// wantCLI runs the program with args and checks its exit code and that
// stdout (exit 0) or stderr (any other) holds want.
func wantCLI(t *testing.T, args []string, code int, want string) {
	t.Helper()
	out, errOut, got := cli(t, "", args...)
	text := out
	if got != 0 {
		text = errOut
	}
	if got != code || !strings.Contains(text, want) {
		t.Errorf("%v: exit %d (want %d), stdout %q, stderr %q; want %q", args, got, code, out, errOut, want)
	}
}

func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMapCommand(t *testing.T) {
	examples, _ := filepath.Glob("../../schemas/examples/*/*.json")
	if len(examples) == 0 {
		t.Fatal("no examples found")
	}
	for _, ex := range examples {
		kind := filepath.Base(filepath.Dir(ex))
		t.Run(kind+"/"+filepath.Base(ex), func(t *testing.T) {
			out, errOut, code := cli(t, "", "map", "--kind", kind, ex)
			if code != 0 {
				t.Fatalf("map exit %d, stderr %s, stdout %s", code, errOut, out)
			}
			var b struct{ ResourceType, Type string }
			if err := json.Unmarshal([]byte(out), &b); err != nil || b.ResourceType != "Bundle" || b.Type != "transaction" {
				t.Errorf("map printed %.200s, want a transaction Bundle", out)
			}
		})
	}
}

func TestMapCommandInvalid(t *testing.T) {
	tests := []struct {
		name, kind, input, rule string
	}{
		{"not json", "vitals", "{", "json-syntax"},
		{"empty", "vitals", "", "json-empty"},
		{"missing fields", "vitals", `{"source":{}}`, "schema.required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, _, code := cli(t, tc.input, "map", "--kind", tc.kind, "-")
			if code != exitInvalid {
				t.Fatalf("exit = %d, want %d", code, exitInvalid)
			}
			if !strings.Contains(out, `"resourceType": "OperationOutcome"`) || !strings.Contains(out, `"code": "`+tc.rule+`"`) {
				t.Errorf("stdout lacks an OperationOutcome with rule %s: %s", tc.rule, out)
			}
		})
	}
}

func TestMapCommandRuleError(t *testing.T) {
	b, err := os.ReadFile("../../schemas/examples/assessment/phq9-moderate.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	_ = json.Unmarshal(b, &doc)
	doc["total"] = doc["total"].(float64) + 1
	b, _ = json.Marshal(doc)
	out, _, code := cli(t, "", "map", "--kind", "assessment", writeTemp(t, "phq.json", string(b)))
	if code != exitInvalid || !strings.Contains(out, "assessment.total-mismatch") || !strings.Contains(out, `"/total"`) {
		t.Errorf("exit %d, stdout %s; want exit 1 and total-mismatch at /total", code, out)
	}
}

func TestValidateCommand(t *testing.T) {
	golden, _ := filepath.Glob("../../mapping/testdata/session/*.golden.json")
	if len(golden) == 0 {
		t.Fatal("no golden bundles")
	}
	for _, g := range golden {
		if out, _, code := cli(t, "", "validate", g); code != 0 {
			t.Errorf("validate %s: exit %d, %s", g, code, out)
		}
	}
	bad := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"effectiveDateTime":"2026-01-01T10:00"}`
	out, _, code := cli(t, bad, "validate", "-")
	if code != exitInvalid || !strings.Contains(out, "Observation.effectiveDateTime") {
		t.Errorf("validate of a dateTime without time zone: exit %d, %s", code, out)
	}
	// The OperationOutcome is written as the API writes FHIR JSON:
	// resourceType first.
	if !strings.HasPrefix(out, "{\n  \"resourceType\": \"OperationOutcome\",") {
		t.Errorf("validate's OperationOutcome does not start with its resourceType:\n%s", out)
	}
	// As $validate says: a claimed profile the gateway does not know was
	// not checked (information; still valid).
	unknown := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"meta":{"profile":["https://example.org/unknown-profile"]}}`
	out, _, code = cli(t, unknown, "validate", "-")
	if code != 0 || !strings.Contains(out, "profile.not-checked") || !strings.Contains(out, "Observation.meta.profile") {
		t.Errorf("validate of a resource claiming an unknown profile: exit %d, %s", code, out)
	}
}

func TestUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
	}{
		{nil, exitUsage},
		{[]string{"frobnicate"}, exitUsage},
		{[]string{"map", "x.json"}, exitUsage},
		{[]string{"map", "--kind", "vitals", "/does/not/exist.json"}, exitUsage},
		{[]string{"validate"}, exitUsage},
		{[]string{"codesystem", "--id", "nope"}, exitUsage},
		{[]string{"version"}, 0},
		{[]string{"codesystem"}, 0},
		{[]string{"help"}, 0},
		{[]string{"help", "-h"}, 0},
		{[]string{"help", "--help"}, 0},
		{[]string{"help", "help"}, 0},
	}
	for _, tc := range tests {
		if _, _, code := cli(t, "", tc.args...); code != tc.code {
			t.Errorf("run(%v) exit = %d, want %d", tc.args, code, tc.code)
		}
	}
}

// TestHelp: every command has help with its synopsis, a description, every
// flag and an example, on stdout with exit 0; so has "help COMMAND".
func TestHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "-h"}, {"help", c.name}} {
			out, errOut, code := cli(t, "", args...)
			if code != 0 || errOut != "" {
				t.Errorf("%v: exit %d, stderr %q", args, code, errOut)
			}
			for _, want := range []string{"usage: ketamine-gateway " + c.name, upperFirst(c.summary), "example:\n  ketamine-gateway " + c.name} {
				if !strings.Contains(out, want) {
					t.Errorf("%v: help lacks %q:\n%s", args, want, out)
				}
			}
		}
	}
	out, _, _ := cli(t, "", "serve", "-h")
	// --config names everything the file configures, authentication first
	// (docs/security.md: "register clients in the auth section").
	for _, want := range []string{"--addr", "--db", "--config", "auth.clients", "delivery destinations", "search limits",
		"safety thresholds", "console's sign-in", "--rate-limit", "(default 127.0.0.1:8080)"} {
		if !strings.Contains(out, want) {
			t.Errorf("serve -h lacks %q", want)
		}
	}
	if strings.Contains(out, "(default -1)") {
		t.Errorf("serve -h shows a sentinel default:\n%s", out)
	}
	out, _, _ = cli(t, "", "help")
	for _, c := range commands {
		if !strings.Contains(out, c.name) {
			t.Errorf("help lacks %s", c.name)
		}
	}
	// A command's flags as its synopsis writes them, and every one described.
	for cmd, wants := range map[string][]string{
		"ig":         {"-o FILE\n", "the package FILE to write"},
		"deliveries": {"--db FILE", "GATEWAY_DB", "(default ketamine-gateway.db)", "--status", "--destination", "--patient", "--since", "--until", "--limit", "--payload"},
		"lineage":    {"--db FILE", "--source", "--record", "--kind", "--resource", "--trace"},
		// Every exit status it uses, interruption's too (bulk.md, README).
		"import":  {"3 the database could not\nbe opened or failed, or the import was interrupted"},
		"reindex": {"or interrupted (run it again)"},
	} {
		out, _, _ := cli(t, "", cmd, "-h")
		for _, want := range wants {
			if !strings.Contains(out, want) {
				t.Errorf("%s -h lacks %q:\n%s", cmd, want, out)
			}
		}
		if strings.Contains(out, "--o ") {
			t.Errorf("%s -h writes a one-letter flag with two dashes:\n%s", cmd, out)
		}
	}
}

// TestUsageErrors: a wrong command line is one line on stderr that says
// what was wrong and points to the command's help, exit 2; unknown values
// list the valid ones.
func TestUsageErrors(t *testing.T) {
	ex := "../../schemas/examples/vitals/pre-dose-baseline.json"
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"map", ex}, []string{"--kind is required", "see 'ketamine-gateway map -h'"}},
		{[]string{"map", "--kind", "lab", ex}, []string{`unknown kind "lab"`, "assessment, vitals, infusion, adverse-event, session"}},
		{[]string{"map", "--kidn", "vitals", ex}, []string{"flag provided but not defined: -kidn", "map -h"}},
		{[]string{"codesystem", "--id", "nope"}, []string{`unknown CodeSystem id "nope"`, "validation-rule"}},
		{[]string{"deliveries", "frob"}, []string{`unknown subcommand "frob"`, "list, show, retry, cancel, replay"}},
		{[]string{"deliveries", "cancel", "x"}, []string{"--reason: say why the delivery is cancelled"}},
		{[]string{"deliveries", "list", "--status", "lost"}, []string{"--status must be one of pending, inflight, done, dead"}},
		{[]string{"deliveries", "list", "--limit", "0"}, []string{"--limit must be from 1 to 1000"}},
		{[]string{"deliveries", "list", "--patient", "PT-000123"}, []string{"--patient must be <source system>|<clinic patient id>"}},
		{[]string{"deliveries", "list", "--since", "yesterday"}, []string{`"yesterday" is not a time`, "24h, 7d"}},
		{[]string{"replay", "--since", "yesterday"}, []string{`--since: "yesterday" is not a time`, "24h, 7d"}},
		{[]string{"deliveries", "retry", "x", "y"}, []string{"give one delivery id (as deliveries list shows it)"}},
		{[]string{"lineage", "--kind", "lab", "--source", "s", "--record", "r"}, []string{"unknown kind; valid: assessment, vitals"}},
		{[]string{"lineage", "--resource", "Nope/1"}, []string{"Type/id with a FHIR R4 resource type", "such as Observation/"}},
		{[]string{"lineage", "--resource", "Observation/1", "--kind", "session"}, []string{"give exactly one of"}},
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`, "serve, map"}},
		{[]string{"help", "nosuch"}, []string{`unknown command "nosuch"`, "serve, map"}},
		{[]string{"help", "map", "serve"}, []string{"give one command"}},
		{[]string{"version", "extra"}, []string{"version: takes no arguments"}},
		{[]string{"import", "--kind", "vitals", "--workers", "0", "x.ndjson"}, []string{"--workers must be from 1 to 64"}},
		{[]string{"import", "--kind", "vitals", "--workers", "-3", "x.ndjson"}, []string{"--workers must be from 1 to 64"}},
		{[]string{"reindex", "--type", "Observations"}, []string{`--type "Observations" is not a FHIR R4 resource type`, "reindex -h"}},
		{[]string{"reindex", "--batch", "0"}, []string{"--batch must be between 1 and 10000"}},
		{[]string{"reindex", "Observation"}, []string{"takes no arguments"}},
	}
	for _, tc := range tests {
		_, errOut, code := cli(t, "", tc.args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d", tc.args, code, exitUsage)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); n != 0 {
			t.Errorf("%v: %d lines on stderr, want one: %q", tc.args, n+1, errOut)
		}
		for _, w := range tc.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%v: stderr %q lacks %q", tc.args, errOut, w)
			}
		}
	}
}

// TestFlagsAfterArguments: flags may follow the positional arguments.
func TestFlagsAfterArguments(t *testing.T) {
	ex := "../../schemas/examples/vitals/pre-dose-baseline.json"
	if out, errOut, code := cli(t, "", "map", ex, "--kind", "vitals"); code != 0 || !strings.Contains(out, `"transaction"`) {
		t.Errorf("map FILE --kind: exit %d, %s %s", code, errOut, out)
	}
}

// TestReadOnlyCommandsNeedADatabase: the commands that read a database
// refuse a missing file, an empty file and a database the gateway never
// set up, with one line naming where they looked and exit 3, and create
// nothing.
func TestReadOnlyCommandsNeedADatabase(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "typo.db")
	empty := filepath.Join(dir, "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, db := range []string{missing, empty} {
		for _, args := range [][]string{
			{"audit", "verify", "--db", db},
			{"lineage", "--db", db, "--resource", "Patient/p1"},
			{"deliveries", "list", "--db", db},
			{"deliveries", "show", "1", "--db", db},
			{"reindex", "--db", db},
			{"reindex", "--db", db, "--dry-run"},
		} {
			out, errOut, code := cli(t, "", args...)
			if code != exitUnchecked || out != "" || !strings.Contains(errOut, "no gateway database at "+db) {
				t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 3 naming the path", args, code, out, errOut)
			}
		}
	}
	// An unreachable PostgreSQL server: exit 3 naming its host and
	// database, never the password (nor the user: docs/deployment.md).
	pg := "postgres://kguser:secret@127.0.0.1:1/kgdb?connect_timeout=2"
	for _, args := range [][]string{{"audit", "verify", "--db", pg}, {"lineage", "--db", pg, "--resource", "Patient/p1"}} {
		_, errOut, code := cli(t, "", args...)
		if code != exitUnchecked || !strings.Contains(errOut, "postgres://127.0.0.1:1/kgdb") || !strings.Contains(errOut, `database "kgdb"`) ||
			strings.Contains(errOut, "secret") || strings.Contains(errOut, "kguser") {
			t.Errorf("%v: exit %d, stderr %q; want exit 3 naming host and database only", args[:2], code, errOut)
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a read-only command created %s", missing)
	}
	if fi, _ := os.Stat(empty); fi.Size() != 0 {
		t.Errorf("a read-only command wrote into %s", empty)
	}
}

func TestParseTimeFlag(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-12-01T08:00:00Z": time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC),
		"2026-11-30":           time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC),
		"90m":                  now.Add(-90 * time.Minute),
		"24h":                  now.Add(-24 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"":                     {},
	} {
		if got, err := parseTimeFlag(in, now); err != nil || !got.Equal(want) {
			t.Errorf("parseTimeFlag(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-5h", "7days", "d"} {
		if _, err := parseTimeFlag(bad, now); err == nil {
			t.Errorf("parseTimeFlag(%q) accepted", bad)
		}
	}
}

func TestDestinationsConfig(t *testing.T) {
	getenv := func(k string) string {
		if k == "TOK" {
			return "secret-token"
		}
		return ""
	}
	good := writeTemp(t, "c.json", `{"destinations":[{"name":"h1","baseUrl":"https://ehr.example/fhir","auth":{"type":"bearer","token":"env:TOK"},"timeout":"10s","filter":{"kinds":["session"]},"mrnSystems":["https://ehr.example/mrn"]}]}`)
	fc, err := readConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	dests, err := destinations(fc, "http://127.0.0.1:9/fhir", "--ehr-url", getenv)
	if err != nil || len(dests) != 2 || dests[0].Auth.Token != "secret-token" || dests[0].Timeout.Seconds() != 10 || !dests[0].Accepts("session", "x") || dests[0].Accepts("vitals", "x") {
		t.Fatalf("destinations = %+v, %v", dests, err)
	}
	// The MRN systems reach the ingest's routes; the --ehr-url destination
	// has none set (every MRN).
	if r := routes(dests); len(r) != 2 || !slices.Equal(r[0].MRNSystems, []string{"https://ehr.example/mrn"}) || r[1].MRNSystems != nil {
		t.Errorf("routes(destinations) = %+v, want h1's MRN system, none for ehr", r)
	}
	for name, body := range map[string]string{
		"empty mrn system": `{"destinations":[{"name":"h","baseUrl":"https://e.example/fhir","mrnSystems":[" "]}]}`,
		"unknown field":    `{"destinations":[{"name":"h","baseUrl":"https://e.example/fhir","colour":"red"}]}`,
		"missing env":      `{"destinations":[{"name":"h","baseUrl":"https://e.example/fhir","auth":{"type":"bearer","token":"env:NOPE"}}]}`,
		"http remote":      `{"destinations":[{"name":"h","baseUrl":"http://e.example/fhir"}]}`,
		"duplicate":        `{"destinations":[{"name":"h","baseUrl":"https://a.example/fhir"},{"name":"h","baseUrl":"https://b.example/fhir"}]}`,
		"bad timeout":      `{"destinations":[{"name":"h","baseUrl":"https://a.example/fhir","timeout":"soon"}]}`,
	} {
		fc, err := readConfig(writeTemp(t, "c.json", body))
		if err == nil {
			_, err = destinations(fc, "", "--ehr-url", getenv)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "secret-token") {
			t.Errorf("%s: error quotes a secret: %v", name, err)
		}
	}
}

// TestConfigErrorsSayWhere: a configuration file the decoder refuses is
// named with the line and column of the fault (an operator's review: with
// several destinations, "unknown field" sent them hunting), never with
// the line's text, which may hold a secret.
func TestConfigErrorsSayWhere(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"unknown field":  {"{\n  \"destinations\": [\n    {\"name\": \"h\", \"baseUrl\": \"https://e.example/fhir\",\n     \"timout\": \"5s\"}\n  ]\n}\n", `line 4, column 6: json: unknown field "timout"`},
		"trailing comma": {"{\n  \"destinations\": [\n    {\"name\": \"h\"},\n  ]\n}\n", "line 4, column 4: invalid character ']'"},
		"wrong type":     {"{\"destinations\": [\n {\"name\": 5}]}", "line 2, column 12: json: cannot unmarshal number"},
		"truncated":      {"{\"destinations\": [\n {\"name\": \"a\", \"baseUrl\": \"http://x\"", "line 2, column 37: the file ends before its JSON does"},
		"empty":          {"\n", "the file is empty"},
	} {
		_, err := readConfig(writeTemp(t, "c.json", tc.body))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: readConfig = %v, want it to say %q", name, err, tc.want)
		}
	}
	if line, col := lineCol([]byte("ab\ncd"), 4); line != 2 || col != 2 {
		t.Errorf("lineCol = %d:%d, want 2:2", line, col)
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8080": true, "[::1]:8080": true, "localhost:0": true, "127.0.0.2:1": true,
		":8080": false, "0.0.0.0:8080": false, "[::]:8080": false, "10.0.0.5:8080": false, "gw.example.org:443": false, "nonsense": false,
	} {
		if got := loopback(addr); got != want {
			t.Errorf("loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

// TestServeRefusesOpenWithoutAuth: development mode only on loopback
// (DECISIONS 6): asked to listen elsewhere without clients, serve exits 2
// with a message saying why, without listening.
func TestServeRefusesOpenWithoutAuth(t *testing.T) {
	_, stderr, code := cli(t, "", "serve", "--addr", "0.0.0.0:0", "--db", filepath.Join(t.TempDir(), "kg.db"))
	if code != exitUsage || !strings.Contains(stderr, "without authentication") {
		t.Errorf("serve on 0.0.0.0 without auth: exit %d, stderr %q", code, stderr)
	}
}

// TestServeExitCodes: a listen address serve cannot have is exit 2 (its
// configuration) saying what is wrong with it, a database it cannot open
// exit 3, as the README's table says; never 1 ("the verdict is no").
func TestServeExitCodes(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	db := filepath.Join(dir, "kg.db")
	// A refused configuration is found before the database is opened:
	// nothing is created or migrated.
	conf := func(body string) string { return writeTemp(t, "c.json", body) }
	// A setting's message names the file it is in (an operator's review:
	// "--config: destinations[0]: ..." did not).
	http, noToken, ftp := conf(`{"destinations":[{"name":"x","baseUrl":"http://10.0.0.1/fhir"}]}`),
		conf(`{"auth":{"clients":[{"id":"a"}]}}`), conf(`{"console":{"traceUrl":"ftp://x"}}`)
	for _, tc := range []struct {
		addr, db, config string
		code             int
		want             string
	}{
		{"nonsense", db, "", exitUsage, `--addr "nonsense" is malformed: give host:port`},
		{"127.0.0.1:99999", db, "", exitUsage, `--addr "127.0.0.1:99999" has an invalid port`},
		{"127.0.0.1:http", db, "", exitUsage, "has an invalid port"},
		{busy.Addr().String(), db, "", exitUsage, "the address is in use"},
		{"127.0.0.1:0", db, http, exitUsage,
			"--config " + http + `: destinations[0]: destination "x": base URL: http is only allowed to a loopback host`},
		{"127.0.0.1:0", db, noToken, exitUsage, "--config " + noToken + ": auth: auth config: tokenUrl is missing"},
		{"127.0.0.1:0", db, ftp, exitUsage, "--config " + ftp + ": console: traceUrl"},
		{"127.0.0.1:0", db, conf(`{"safety":{"tenants":{"clinic-typo":{}}}}`), exitUsage, "safety.tenants.clinic-typo"},
		{"127.0.0.1:0", filepath.Join(dir, "no", "such", "dir", "kg.db"), "", exitUnchecked, "could not open or create the database"},
	} {
		args := []string{"serve", "--addr", tc.addr, "--db", tc.db}
		if tc.config != "" {
			args = append(args, "--config", tc.config)
		}
		_, stderr, code := cli(t, "", args...)
		if code != tc.code || !strings.Contains(stderr, tc.want) {
			t.Errorf("serve --addr %s --db %s: exit %d, stderr %q; want %d %q", tc.addr, tc.db, code, stderr, tc.code, tc.want)
		}
		if _, err := os.Stat(db); !os.IsNotExist(err) {
			t.Fatalf("serve %v, refused, created its database: %v", args, err)
		}
	}
}

// TestServeNamesTheEHRURLsSource: a bad EHR URL is reported as
// GATEWAY_EHR_URL when it came from the environment, as --ehr-url when
// the flag gave it.
func TestServeNamesTheEHRURLsSource(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	for _, tc := range []struct {
		name, env string
		flag      []string
		want      string
	}{
		{"environment", "http://ehr.example.org", nil, "GATEWAY_EHR_URL: destination"},
		{"flag", "", []string{"--ehr-url", "http://ehr.example.org"}, "--ehr-url: destination"},
		{"flag over environment", "https://ehr.example.org", []string{"--ehr-url", "http://ehr.example.org"}, "--ehr-url: destination"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			getenv := func(k string) string {
				if k == "GATEWAY_EHR_URL" {
					return tc.env
				}
				return ""
			}
			args := append([]string{"ketamine-gateway", "serve", "--addr", "127.0.0.1:0", "--db", db}, tc.flag...)
			err := run(context.Background(), args, getenv, strings.NewReader(""), &out, &errb)
			var ee *exitError
			if !errors.As(err, &ee) || ee.code != exitUsage || !strings.Contains(ee.msg, tc.want) {
				t.Errorf("serve with GATEWAY_EHR_URL=%q %v = %v, want exit 2 naming %q", tc.env, tc.flag, err, tc.want)
			}
		})
	}
}

func TestParseCIDRs(t *testing.T) {
	got, err := parseCIDRs(" 10.0.0.0/8, 192.0.2.7 ,::1")
	if err != nil || len(got) != 3 || got[0].String() != "10.0.0.0/8" || got[1].String() != "192.0.2.7/32" || got[2].String() != "::1/128" {
		t.Errorf("parseCIDRs = %v, %v", got, err)
	}
	if got, err := parseCIDRs(""); err != nil || got != nil {
		t.Errorf("parseCIDRs(\"\") = %v, %v", got, err)
	}
	for _, bad := range []string{"10.0.0.0/33", "lb.example", "10.0.0"} {
		if _, err := parseCIDRs(bad); err == nil {
			t.Errorf("parseCIDRs(%q): no error", bad)
		}
	}
}

// TestServeStartsAndStops: serve comes up on its database, answers, and on
// cancellation drains and returns; TestMain then finds no goroutine it
// left behind (the application's audit log, the delivery worker, the HTTP
// server).
func TestServeStartsAndStops(t *testing.T) {
	ehr := httptest.NewServer(http.NotFoundHandler())
	defer ehr.Close()
	db := filepath.Join(t.TempDir(), "kg.db")
	addr, logs, metadata := serveUntilUpMetadata(t, db, "--ehr-url", ehr.URL)
	// The startup line tells an operator what is running where.
	var start map[string]any
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"msg":"listening"`) {
			_ = json.Unmarshal([]byte(line), &start)
		}
	}
	for k, want := range map[string]any{"addr": addr, "database": db, "mapping_version": mapping.Version, "destinations": "ehr",
		"mode": "development (no authentication, loopback only)"} {
		if start[k] != want {
			t.Errorf("startup line %s = %v, want %v (line %v)", k, start[k], want, start)
		}
	}
	if v, _ := start["version"].(string); v == "" {
		t.Errorf("startup line has no version: %v", start)
	}
	// The CapabilityStatement names the same build (not the mapping
	// version, which its implementation.description gives).
	sw, _ := metadata["software"].(map[string]any)
	if sw["version"] != version() || sw["version"] != start["version"] {
		t.Errorf("metadata software.version = %v, want %q, the startup line's and `version`'s", sw["version"], version())
	}
}

// serveUntilUp runs serve on db (and args) on a free loopback port until
// it answers /fhir/metadata, then stops it, and returns its address and
// what it logged. serve picks the port itself (127.0.0.1:0) and its
// startup line says which: a port picked here and released could be taken
// before serve binds it. The wait for that line is a hang guard only (it
// took serve more than the 5 s once allowed to come up on a busy machine
// under -race).
func serveUntilUp(t *testing.T, db string, args ...string) (addr, logs string) {
	t.Helper()
	addr, logs, _ = serveUntilUpMetadata(t, db, args...)
	return addr, logs
}

// serveUntilUpMetadata is serveUntilUp that also returns the
// CapabilityStatement serve answered.
func serveUntilUpMetadata(t *testing.T, db string, args ...string) (addr, logs string, metadata map[string]any) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	env := map[string]string{"OTEL_SDK_DISABLED": "true"}
	var out syncBuffer
	go func() {
		done <- run(ctx, append([]string{"ketamine-gateway", "serve", "--addr", "127.0.0.1:0", "--db", db}, args...),
			func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, &out)
	}()
	for deadline := time.Now().Add(2 * time.Minute); addr == ""; {
		addr = listeningAddr(out.String())
		if addr != "" {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("serve did not log that it listens within 2 minutes:\n%s", out.String())
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve returned early: %v\n%s", err, out.String())
		case <-time.After(10 * time.Millisecond): // polling the log, not timing serve
		}
	}
	// The listener is open once the line is written: the connection waits
	// in its backlog until the server takes it.
	resp, err := http.Get("http://" + addr + "/fhir/metadata")
	up := err == nil && resp.StatusCode == http.StatusOK
	if err == nil {
		if up {
			_ = json.NewDecoder(resp.Body).Decode(&metadata)
		}
		resp.Body.Close()
	}
	cancel()
	if serr := <-done; serr != nil {
		t.Fatalf("serve = %v after cancellation, want nil", serr)
	}
	if !up {
		t.Fatalf("serve did not answer /fhir/metadata on %s: %v", addr, err)
	}
	http.DefaultClient.CloseIdleConnections()
	return addr, out.String(), metadata
}

// listeningAddr is the address of serve's startup line in logs ("" before
// it is written).
func listeningAddr(logs string) string {
	for _, line := range strings.Split(logs, "\n") {
		var l struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "listening" {
			return l.Addr
		}
	}
	return ""
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDeliveriesCommand: the operator CLI on a database with one pending
// delivery answers like the API: 404 is exit 4, 409 exit 5.
func TestDeliveriesCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "s|p", Kind: "session", Source: "s", RecordID: "r",
		Version: "1", Payload: []byte(`{}`)}
	if err := st.Write(context.Background(), func(tx store.Tx) error { return tx.Enqueue(it) }); err != nil {
		t.Fatal(err)
	}
	st.Close()
	// The delivery's id is the one the list shows, not the row's number.
	out, _, code := cli(t, "", "deliveries", "list", "--db", db)
	var list struct {
		Deliveries []struct {
			ID string `json:"id"`
		} `json:"deliveries"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list.Deliveries) != 1 {
		t.Fatalf("deliveries list: exit %d, %s", code, out)
	}
	id, row := list.Deliveries[0].ID, strconv.FormatInt(it.ID, 10)
	if id == row || len(id) != 13 {
		t.Errorf("deliveries list shows the delivery as %q, want its public id, not the row's number %s", id, row)
	}
	tests := []struct {
		args []string
		code int
		out  string // in stdout (exit 0) or stderr
	}{
		{[]string{"deliveries", "list", "--db", db}, 0, `"recordId": "r"`},
		{[]string{"deliveries", "list", "--since", "1h", "--db", db}, 0, `"recordId": "r"`},
		{[]string{"deliveries", "list", "--since", "2026-12-31", "--until", "2026-12-01", "--db", db}, exitUsage, "--until must be later than since"},
		{[]string{"deliveries", "list", "--since", "1h", "--until", "2h", "--db", db}, exitUsage, "--until must be later than since"},
		{[]string{"deliveries", "show", id, "--db", db}, 0, `"status": "pending"`},
		{[]string{"deliveries", "show", "42", "--db", db}, exitNotFound, "no such delivery"},
		{[]string{"deliveries", "retry", "42", "--db", db}, exitNotFound, "no such delivery"},
		{[]string{"deliveries", "show", row, "--db", db}, exitNotFound, "no such delivery (a delivery's id is the 13 letters and digits"},
		{[]string{"deliveries", "retry", row, "--db", db}, exitNotFound, "no such delivery"},
		// A pending delivery is made due now (a dead letter is queued again).
		{[]string{"deliveries", "retry", id, "--db", db}, 0, `"id": "` + id + `"`},
		// A cancel needs a reason; it makes the pending delivery a dead letter.
		{[]string{"deliveries", "cancel", id, "--db", db}, exitUsage, "--reason: say why"},
		{[]string{"deliveries", "cancel", id, "--reason", "sent in error", "--db", db}, 0, `"lastError": "cancelled by operator: sent in error"`},
		{[]string{"deliveries", "show", id, "--db", db}, 0, `"status": "dead"`},
		{[]string{"deliveries", "retry", id, "--db", db}, 0, `"status": "pending"`},
		{[]string{"deliveries", "replay", "--destination", "nosuch", "--since", "1h", "--db", db}, exitUsage, "--destination names no destination; the destinations are ehr"},
		{[]string{"deliveries", "list", "--destination", "nosuch", "--db", db}, exitUsage, "--destination names no destination; the destinations are ehr"},
		{[]string{"deliveries", "list", "--destination", "ehr", "--db", db}, 0, `"recordId": "r"`},
		{[]string{"deliveries", "replay", "--destination", "ehr", "--db", db}, exitUsage, "needs --destination and --since"},
		{[]string{"deliveries", "replay", "--destination", "ehr", "--since", "1h", "--db", db}, 0, `"replayed": `},
		// A since in the future (a mistyped year) would find nothing.
		{[]string{"deliveries", "replay", "--destination", "ehr", "--since", "2099-01-01", "--db", db}, exitUsage, "--since is in the future"},
		{[]string{"deliveries", "list", "--since", "2099-01-01", "--db", db}, exitUsage, "--since is in the future"},
	}
	for _, tc := range tests {
		wantCLI(t, tc.args, tc.code, tc.out)
	}
}

// TestLineageCommand: lineage of what the database holds is exit 0, of a
// record, resource or trace it does not hold exit 4 (the API's 404).
func TestLineageCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Write(context.Background(), func(tx store.Tx) error {
		r, entries, err := store.NewVersion("Patient", "p1", 1, map[string]any{"resourceType": "Patient"}, time.Now())
		if err != nil {
			return err
		}
		return tx.Put(r, entries)
	})
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		args []string
		code int
		out  string // in stdout (exit 0) or stderr
	}{
		{[]string{"--resource", "Patient/p1"}, 0, `"receipts": []`},
		{[]string{"--resource", "Patient/nope"}, exitNotFound, "lineage: no version of this resource is stored"},
		{[]string{"--resource", "Observation/p1"}, exitNotFound, "no version of this resource"},
		{[]string{"--source", "a", "--record", "b"}, exitNotFound, "lineage: the gateway has stored no version of this record"},
		{[]string{"--source", "a", "--record", "b", "--kind", "session"}, exitNotFound, "no version of this record"},
		{[]string{"--trace", "4bf92f3577b34da6a3ce929d0e0e4736"}, exitNotFound, "no receipt and no request of this trace"},
	}
	for _, tc := range tests {
		wantCLI(t, append([]string{"lineage", "--db", db}, tc.args...), tc.code, tc.out)
	}
}

// TestLineageTenants: one record id in two tenants is two stories; the
// CLI's lineage shows both, each receipt naming its tenant, or one with
// --tenant.
func TestLineageTenants(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	importExample(t, db, "vitals/pre-dose-baseline.json", "--tenant", "clinic-a")
	importExample(t, db, "vitals/pre-dose-baseline.json", "--tenant", "clinic-b", "--new-tenant")
	for _, tc := range []struct {
		tenant string
		want   []string
	}{
		{"*", []string{"clinic-a", "clinic-b"}},
		{"clinic-a", []string{"clinic-a"}},
		{"clinic-b", []string{"clinic-b"}},
	} {
		args := []string{"lineage", "--db", db, "--source", "serenity-clinic-emr", "--record", "VIT-2026-0310-001"}
		if tc.tenant != "*" {
			args = append(args, "--tenant", tc.tenant)
		}
		out, errOut, code := cli(t, "", args...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, errOut)
		}
		var l struct{ Receipts []struct{ Tenant string } }
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, rc := range l.Receipts {
			got = append(got, rc.Tenant)
		}
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("lineage --tenant %s: receipts of tenants %q, want %q", tc.tenant, got, tc.want)
		}
	}
	wantCLI(t, []string{"lineage", "--db", db, "--tenant", "", "--source", "serenity-clinic-emr", "--record", "VIT-2026-0310-001"},
		exitNotFound, "no version of this record")
}

// TestReplaySince: replay's --since takes every form of a time flag, and
// selects by it: a record received now is replayed since a past time; a
// future one (a mistyped year), which nothing was received after, is
// refused (exit 2) rather than answered "nothing to replay" (exit 0), as
// a misspelt --source is.
func TestReplaySince(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	importExample(t, db, "vitals/pre-dose-baseline.json")
	for since, want := range map[string]string{
		"2000-01-01T08:00:00Z": "over 1 record:", "2000-01-01": "over 1 record:", "24h": "over 1 record:",
		"7d": "over 1 record:", "90m": "over 1 record:",
	} {
		if out, errOut, code := cli(t, "", "replay", "--db", db, "--since", since); code != 0 || !strings.Contains(out, want) {
			t.Errorf("replay --since %s: exit %d, %s %s; want %q", since, code, out, errOut, want)
		}
	}
	for _, args := range [][]string{{"--since", "2999-01-01T08:00:00Z"}, {"--since", "2999-01-01"}} {
		wantCLI(t, append([]string{"replay", "--db", db}, args...), exitUsage, "since: the time is in the future")
	}
	wantCLI(t, []string{"replay", "--db", db, "--source", "serenity-clinc-emr"}, exitUsage, "source: no record of this clinic system is stored")
	wantCLI(t, []string{"replay", "--db", db, "--source", "serenity-clinic-emr"}, 0, "over 1 record:")
	// A filter that matches nothing otherwise is still "nothing to replay".
	wantCLI(t, []string{"replay", "--db", db, "--kind", "session"}, 0, "nothing to replay")
}

// TestRunIDUnique: the request ids of CLI runs that write (import,
// replay) differ between two runs in the same second.
func TestRunIDUnique(t *testing.T) {
	a, b := runID("replay"), runID("replay")
	if a == b || !strings.HasPrefix(a, "replay-") {
		t.Errorf("runID twice = %q, %q; want two different replay- ids", a, b)
	}
}

// TestIGPackage: ig package writes the FHIR NPM package, to a file or to
// standard output, and refuses a command line without -o.
func TestIGPackage(t *testing.T) {
	file := filepath.Join(t.TempDir(), "package.tgz")
	if _, errOut, code := cli(t, "", "ig", "package", "-o", file); code != 0 || !strings.Contains(errOut, "ketamine-gateway.fhir") {
		t.Fatalf("ig package: exit %d, %s", code, errOut)
	}
	written, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := cli(t, "", "ig", "package", "-o", "-")
	if code != 0 || out != string(written) || len(written) < 10000 || written[0] != 0x1f || written[1] != 0x8b {
		t.Errorf("ig package -o -: exit %d, %d bytes (file %d bytes), gzip %x", code, len(out), len(written), written[:2])
	}
	for _, args := range [][]string{{"ig"}, {"ig", "package"}, {"ig", "list"}, {"ig", "package", "-o", file, "extra"}} {
		if _, errOut, code := cli(t, "", args...); code != exitUsage || !strings.Contains(errOut, "see 'ketamine-gateway ig -h'") {
			t.Errorf("run(%v) = exit %d, %s", args, code, errOut)
		}
	}
	if _, _, code := cli(t, "", "ig", "package", "-o", filepath.Join(t.TempDir(), "no", "such", "dir", "p.tgz")); code != exitUsage {
		t.Errorf("ig package to a missing directory: exit %d", code)
	}
}

// TestAuditVerifyExitCodes: an intact chain exits 0, a database that cannot
// be opened exits 3 ("could not check"), never 1 (which says the chain is
// broken; the end-to-end test tampers with a chain for that).
func TestAuditVerifyExitCodes(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	st, err := sqlite.Open(context.Background(), db, sqlite.Options{}) // as serve creates it
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	if out, errOut, code := cli(t, "", "audit", "verify", "--db", db); code != 0 || !strings.Contains(out, `"intact": true`) {
		t.Fatalf("audit verify on a new database = exit %d, %s %s; want 0 and intact", code, out, errOut)
	}
	for name, bad := range map[string]string{
		"a directory":              t.TempDir(),
		"a file that is no SQLite": writeTemp(t, "not.db", strings.Repeat("not a database\n", 400)),
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := cli(t, "", "audit", "verify", "--db", bad)
			if code != exitUnchecked || !strings.Contains(errOut, bad) {
				t.Errorf("audit verify on %s = exit %d (%s), want %d could not check", name, code, errOut, exitUnchecked)
			}
		})
	}
	if _, _, code := cli(t, "", "audit", "verify", "--nope"); code != exitUsage {
		t.Errorf("audit verify --nope = exit %d, want %d", code, exitUsage)
	}
	// An anchor the chain does not hold (a new database has no record 1)
	// is a trail not intact; a malformed one is a usage error.
	if out, errOut, code := cli(t, "", "audit", "verify", "--db", db, "--expect", "1:"+strings.Repeat("0a", 32)); code != exitInvalid ||
		!strings.Contains(out, `"held": false`) || !strings.Contains(errOut, "anchor 1 not held") {
		t.Errorf("audit verify --expect of a record not held = exit %d, %s %s; want %d", code, out, errOut, exitInvalid)
	}
	if _, errOut, code := cli(t, "", "audit", "verify", "--db", db, "--expect", "1:nothex"); code != exitUsage || !strings.Contains(errOut, "64 lowercase hexadecimal") {
		t.Errorf("audit verify --expect 1:nothex = exit %d (%s), want %d", code, errOut, exitUsage)
	}
}

// TestSearchSection: the config file's search section is checked, and
// clients may choose ids only when one tenant can write.
func TestSearchSection(t *testing.T) {
	for name, section := range map[string]string{
		"timeout at the write timeout": `{"timeout": "120s"}`,
		"timeout not a duration":       `{"timeout": "soon"}`,
		"negative limit":               `{"maxRepeats": -1}`,
		"negative page bytes":          `{"maxPageBytes": -1}`,
		"unknown field":                `{"maxRepetitions": 3}`,
	} {
		t.Run(name, func(t *testing.T) {
			cfg := writeTemp(t, "config.json", `{"search": `+section+`}`)
			_, errOut, code := cli(t, "", "serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "kg.db"), "--config", cfg)
			if code != exitUsage || !strings.Contains(errOut, "search") && !strings.Contains(errOut, "maxRepetitions") {
				t.Errorf("serve with search %s = exit %d %q, want %d naming the search section", section, code, errOut, exitUsage)
			}
		})
	}
	limits, timeout, per, err := searchSettings(&searchConfig{MaxRepeats: 3, Timeout: "2s", ConcurrentPerClient: 7, MaxPageBytes: 1 << 20}, "--config", writeTimeout)
	if err != nil || limits.Repeats != 3 || timeout != 2*time.Second || per != 7 || limits.PageBytes != 1<<20 {
		t.Errorf("searchSettings = %+v %v %d %v", limits, timeout, per, err)
	}
	client := func(tenant string) auth.Client { return auth.Client{ID: "c-" + tenant, Tenant: tenant} }
	for name, tc := range map[string]struct {
		fc   fileConfig
		safe bool
	}{
		"development mode":             {fileConfig{}, true},
		"one tenant":                   {fileConfig{Auth: &auth.Config{Clients: []auth.Client{client("a"), client("a"), client("*")}}}, true},
		"two tenants":                  {fileConfig{Auth: &auth.Config{Clients: []auth.Client{client("a"), client("b")}}}, false},
		"an issuer of any tenant":      {fileConfig{Auth: &auth.Config{Clients: []auth.Client{client("a")}, External: []auth.ExternalIssuer{{Issuer: "x"}}}}, false},
		"an issuer of the same tenant": {fileConfig{Auth: &auth.Config{Clients: []auth.Client{client("a")}, External: []auth.ExternalIssuer{{Issuer: "x", Tenants: []string{"a"}}}}}, true},
	} {
		if got := clientIDsSafe(&tc.fc); got != tc.safe {
			t.Errorf("clientIDsSafe(%s) = %v, want %v", name, got, tc.safe)
		}
	}
}

// TestKeywordDSNRefused: a libpq keyword/value connection string as --db
// is refused (exit 2, pointing to the postgres:// URL form) by every
// command that opens the database, before anything is created, and the
// message never repeats it (it holds a password).
func TestKeywordDSNRefused(t *testing.T) {
	t.Chdir(t.TempDir()) // where a SQLite file named after it would be created
	dsn := "host=127.0.0.1 port=1 user=kguser password=S3cretPW dbname=kgdb"
	for _, args := range [][]string{
		// (a malformed --addr, checked after --db, keeps serve from
		// serving should --db be taken)
		{"serve", "--addr", "nonsense", "--db", dsn},
		{"audit", "verify", "--db", dsn},
		{"lineage", "--db", dsn, "--source", "s", "--record", "r"},
		{"deliveries", "list", "--db", dsn},
		{"reindex", "--db", dsn},
		{"import", "--kind", "vitals", "--db", dsn, "-"},
		{"serve", "--addr", "nonsense", "--db", "dbname=kgdb"},
	} {
		_, stderr, code := cli(t, "", args...)
		if code != exitUsage || !strings.Contains(stderr, "postgres://USER@HOST:PORT/DBNAME") || strings.Contains(stderr, "S3cretPW") || strings.Contains(stderr, "kguser") {
			t.Errorf("%v: exit %d, stderr %q; want %d, the URL form, no value", args[:2], code, stderr, exitUsage)
		}
		if _, err := os.Stat(args[len(args)-1]); err == nil {
			t.Errorf("%v: created a file named after the connection string", args[:2])
		}
	}
	if _, err := os.Stat(dsn); err == nil {
		t.Errorf("a file named after the connection string was created")
	}
}

// TestDBDirectoryRefused: a --db that is a directory is refused (exit 3,
// no database there) saying so, by every command that opens the database
// (an operator's review: "unable to open database file").
func TestDBDirectoryRefused(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--addr", "nonsense", "--db", dir},
		{"audit", "verify", "--db", dir},
		{"import", "--kind", "vitals", "--db", dir, "-"},
	} {
		_, stderr, code := cli(t, "", args...)
		if code != exitUnchecked || !strings.Contains(stderr, "is a directory: give the path of a database file") {
			t.Errorf("%v: exit %d, stderr %q; want %d, saying it is a directory", args[:2], code, stderr, exitUnchecked)
		}
	}
}

// TestConfigPathsRelativeToFile: a relative file path in the --config file
// (jwksFile, privateKeyFile, tls files) names a file beside the
// configuration file, wherever serve was started; an absolute one stays.
func TestConfigPathsRelativeToFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.json")
	body := `{"auth":{"clients":[{"id":"a","jwksFile":"keys/a.jwks.json"},{"id":"b","jwksFile":"/etc/kg/b.jwks.json"},{"id":"c","jwks":{"keys":[]}}]},
		"destinations":[{"name":"h","baseUrl":"https://e.example/fhir","auth":{"type":"smart-backend","privateKeyFile":"ehr-key.pem"},
			"tls":{"caFile":"ca.pem","certFile":"../client.pem","keyFile":"/etc/kg/client.key"}}]}`
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	fc, err := readConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	d := fc.Destinations[0]
	for _, tc := range []struct{ setting, got, want string }{
		{"auth.clients[0].jwksFile", fc.Auth.Clients[0].JWKSFile, filepath.Join(dir, "keys/a.jwks.json")},
		{"auth.clients[1].jwksFile", fc.Auth.Clients[1].JWKSFile, "/etc/kg/b.jwks.json"},
		{"auth.clients[2].jwksFile", fc.Auth.Clients[2].JWKSFile, ""},
		{"destinations[0].auth.privateKeyFile", d.Auth.PrivateKeyFile, filepath.Join(dir, "ehr-key.pem")},
		{"destinations[0].tls.caFile", d.TLS.CAFile, filepath.Join(dir, "ca.pem")},
		{"destinations[0].tls.certFile", d.TLS.CertFile, filepath.Join(filepath.Dir(dir), "client.pem")},
		{"destinations[0].tls.keyFile", d.TLS.KeyFile, "/etc/kg/client.key"},
	} {
		if tc.got != tc.want {
			t.Errorf("readConfig(%s): %s = %q, want %q", p, tc.setting, tc.got, tc.want)
		}
	}
}
