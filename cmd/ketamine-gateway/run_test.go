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
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
)

// cli runs the program as a user would, through run().
func cli(t *testing.T, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(string) string { return "" }
	err := run(context.Background(), append([]string{"ketamine-gateway"}, args...), getenv, strings.NewReader(stdin), &out, &errb)
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
		{"unknown kind", "lab", `{}`, "kind-unknown"},
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
	}
	for _, tc := range tests {
		if _, _, code := cli(t, "", tc.args...); code != tc.code {
			t.Errorf("run(%v) exit = %d, want %d", tc.args, code, tc.code)
		}
	}
}

func TestDeliveriesCommand(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	out, errOut, code := cli(t, "", "deliveries", "list", "--db", db)
	if code != 0 || !strings.Contains(out, `"deliveries"`) {
		t.Fatalf("deliveries list: exit %d %s %s", code, out, errOut)
	}
	if _, _, code := cli(t, "", "deliveries", "show", "42", "--db", db); code != exitInvalid {
		t.Errorf("show of an unknown delivery: exit %d, want %d", code, exitInvalid)
	}
	if _, _, code := cli(t, "", "deliveries", "retry", "x", "--db", db); code != exitUsage {
		t.Errorf("retry with a bad id: exit %d, want %d", code, exitUsage)
	}
	if _, _, code := cli(t, "", "deliveries", "replay", "--db", db); code != exitUsage {
		t.Errorf("replay without destination: exit %d, want %d", code, exitUsage)
	}
	if _, _, code := cli(t, "", "deliveries", "frob", "--db", db); code != exitUsage {
		t.Errorf("unknown subcommand: exit %d, want %d", code, exitUsage)
	}
}

func TestDestinationsConfig(t *testing.T) {
	getenv := func(k string) string {
		if k == "TOK" {
			return "secret-token"
		}
		return ""
	}
	good := writeTemp(t, "c.json", `{"destinations":[{"name":"h1","baseUrl":"https://ehr.example/fhir","auth":{"type":"bearer","token":"env:TOK"},"timeout":"10s","filter":{"kinds":["session"]}}]}`)
	fc, err := readConfig(good)
	if err != nil {
		t.Fatal(err)
	}
	dests, err := destinations(fc, "http://127.0.0.1:9/fhir", getenv)
	if err != nil || len(dests) != 2 || dests[0].Auth.Token != "secret-token" || dests[0].Timeout.Seconds() != 10 || !dests[0].Accepts("session", "x") || dests[0].Accepts("vitals", "x") {
		t.Fatalf("destinations = %+v, %v", dests, err)
	}
	for name, body := range map[string]string{
		"unknown field": `{"destinations":[{"name":"h","baseUrl":"https://e.example/fhir","colour":"red"}]}`,
		"missing env":   `{"destinations":[{"name":"h","baseUrl":"https://e.example/fhir","auth":{"type":"bearer","token":"env:NOPE"}}]}`,
		"http remote":   `{"destinations":[{"name":"h","baseUrl":"http://e.example/fhir"}]}`,
		"duplicate":     `{"destinations":[{"name":"h","baseUrl":"https://a.example/fhir"},{"name":"h","baseUrl":"https://b.example/fhir"}]}`,
		"bad timeout":   `{"destinations":[{"name":"h","baseUrl":"https://a.example/fhir","timeout":"soon"}]}`,
	} {
		fc, err := readConfig(writeTemp(t, "c.json", body))
		if err == nil {
			_, err = destinations(fc, "", getenv)
		}
		if err == nil {
			t.Errorf("%s: no error", name)
		} else if strings.Contains(err.Error(), "secret-token") {
			t.Errorf("%s: error quotes a secret: %v", name, err)
		}
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ehr := httptest.NewServer(http.NotFoundHandler())
	defer ehr.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	env := map[string]string{"OTEL_SDK_DISABLED": "true"}
	go func() {
		done <- run(ctx, []string{"ketamine-gateway", "serve", "--addr", addr, "--db", filepath.Join(t.TempDir(), "kg.db"),
			"--ehr-url", ehr.URL}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	var up bool
	for range 200 {
		resp, err := http.Get("http://" + addr + "/fhir/metadata")
		if err == nil {
			resp.Body.Close()
			up = resp.StatusCode == http.StatusOK
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve returned early: %v", err)
		case <-time.After(25 * time.Millisecond):
		}
	}
	if !up {
		t.Fatal("serve did not answer /fhir/metadata")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve = %v after cancellation, want nil", err)
	}
	http.DefaultClient.CloseIdleConnections()
}

// TestAuditVerifyExitCodes: an intact chain exits 0, a database that cannot
// be opened exits 3 ("could not check"), never 1 (which says the chain is
// broken; the end-to-end test tampers with a chain for that).
func TestAuditVerifyExitCodes(t *testing.T) {
	db := filepath.Join(t.TempDir(), "kg.db")
	if out, errOut, code := cli(t, "", "audit", "verify", "--db", db); code != 0 || !strings.Contains(out, `"intact": true`) {
		t.Fatalf("audit verify on a new database = exit %d, %s %s; want 0 and intact", code, out, errOut)
	}
	for name, bad := range map[string]string{
		"a directory":              t.TempDir(),
		"a file that is no SQLite": writeTemp(t, "not.db", strings.Repeat("not a database\n", 400)),
	} {
		t.Run(name, func(t *testing.T) {
			_, errOut, code := cli(t, "", "audit", "verify", "--db", bad)
			if code != exitUnchecked || !strings.Contains(errOut, "could not check") {
				t.Errorf("audit verify on %s = exit %d (%s), want %d could not check", name, code, errOut, exitUnchecked)
			}
		})
	}
	if _, _, code := cli(t, "", "audit", "verify", "--nope"); code != exitUsage {
		t.Errorf("audit verify --nope = exit %d, want %d", code, exitUsage)
	}
}

// TestSearchSection: the config file's search section is checked, and
// clients may choose ids only when one tenant can write.
func TestSearchSection(t *testing.T) {
	for name, section := range map[string]string{
		"timeout at the write timeout": `{"timeout": "120s"}`,
		"timeout not a duration":       `{"timeout": "soon"}`,
		"negative limit":               `{"maxRepeats": -1}`,
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
	limits, timeout, per, err := searchSettings(&searchConfig{MaxRepeats: 3, Timeout: "2s", ConcurrentPerClient: 7}, writeTimeout)
	if err != nil || limits.Repeats != 3 || timeout != 2*time.Second || per != 7 {
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
