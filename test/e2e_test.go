// Package test holds black-box tests that build the real binary and use it
// the way a clinic's developer and an EHR integration would.
package test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/test/internal/gwproc"
)

var binary string

func TestMain(m *testing.M) {
	bin, cleanup, err := gwproc.Build("..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	before := workTreeFiles()
	code := m.Run()
	cleanup()
	// No test writes into the work tree: every file goes to a temp dir.
	for _, f := range workTreeFiles() {
		if !slices.Contains(before, f) {
			fmt.Fprintf(os.Stderr, "a test wrote %s into the work tree (use t.TempDir)\n", f)
			code = 1
		}
	}
	os.Exit(code)
}

// workTreeFiles lists the files in the test directory (the tests' working
// directory), where a stray database would land.
func workTreeFiles() []string {
	ents, _ := os.ReadDir(".")
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// gateway is a running `ketamine-gateway serve`.
type gateway struct {
	*gwproc.Proc // its Cmd and Logs
	base         string
}

// newGateway wraps a prepared process.
func newGateway(p *gwproc.Proc) *gateway { return &gateway{Proc: p} }

// start runs serve on a free loopback port and waits for /healthz.
func start(t testing.TB, args ...string) *gateway {
	t.Helper()
	g := startNoWait(t, args...)
	if err := g.WaitHealthy(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	return g
}

// startNoWait runs serve and returns once it reported its address.
func startNoWait(t testing.TB, args ...string) *gateway {
	t.Helper()
	p, err := gwproc.Launch(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--db", filepath.Join(t.TempDir(), "kg.db")}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	g := newGateway(p)
	if err := p.WaitAddr(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	g.base = p.Base
	t.Cleanup(func() { g.stop(t) })
	return g
}

// stop sends SIGINT and expects a clean exit.
func (g *gateway) stop(t testing.TB) {
	if err := g.Stop(); err != nil {
		t.Errorf("gateway exit after SIGINT: %v", err)
	}
}

func post(t *testing.T, url, contentType string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := http.Post(url, contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/fhir+json") {
		t.Errorf("Content-Type = %q, want application/fhir+json", ct)
	}
	return resp.StatusCode, b
}

// TestServeDryRun: the README's flow, against the real binary.
func TestServeDryRun(t *testing.T) {
	g := start(t)
	examples, _ := filepath.Glob("../schemas/examples/*/*.json")
	if len(examples) == 0 {
		t.Fatal("no examples")
	}
	for _, ex := range examples {
		kind := filepath.Base(filepath.Dir(ex))
		body, _ := os.ReadFile(ex)
		status, b := post(t, g.base+"/ingest/"+kind+"?dryRun=true", "application/json", body)
		if status != http.StatusOK || !bytes.Contains(b, []byte(`"type":"transaction"`)) {
			t.Errorf("%s: %d %.300s", ex, status, b)
		}
	}
	// Bad input: an OperationOutcome, the server stays up.
	status, b := post(t, g.base+"/ingest/vitals?dryRun=true", "application/json", []byte(`{"source": {"system": "x"`))
	if status != http.StatusBadRequest || !bytes.Contains(b, []byte("json-syntax")) {
		t.Errorf("truncated JSON: %d %s", status, b)
	}
	if resp, err := http.Get(g.base + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("gateway down after bad input: %v", err)
	}
	// The request log names routes, never record content.
	g.stop(t)
	if !strings.Contains(g.Logs.String(), `"route":"/ingest/:kind"`) {
		t.Errorf("request log lacks the route template:\n%s", g.Logs)
	}
	// A stop says how it ended (an operator's review: "shutting down"
	// was the last line, whether or not every request was answered).
	if !strings.Contains(g.Logs.String(), `"msg":"stopped: every request answered`) {
		t.Errorf("the log does not say the stop drained:\n%s", g.Logs)
	}
	for _, marker := range []string{"Testpatient", "serenity-clinic-emr"} {
		if strings.Contains(g.Logs.String(), marker) {
			t.Errorf("log contains record content %q", marker)
		}
	}
}

// TestServeBusyPort: serve fails at once, non-zero, when the port is taken.
func TestServeBusyPort(t *testing.T) {
	g := start(t)
	db := filepath.Join(t.TempDir(), "second.db")
	out, err := exec.Command(binary, "serve", "--addr", strings.TrimPrefix(g.base, "http://"), "--db", db).CombinedOutput()
	if err == nil {
		t.Fatalf("second serve on a busy port succeeded: %s", out)
	}
	if !strings.Contains(string(out), "listen") {
		t.Errorf("message does not say why: %s", out)
	}
	if _, err := os.Stat(db); !os.IsNotExist(err) {
		t.Errorf("serve on a busy port created its database: %v", err)
	}
}

// TestMapCLI: map and validate through the real binary, exit codes included.
func TestMapCLI(t *testing.T) {
	ex := "../schemas/examples/session/routine-ketamine-iv-session.json"
	out, err := exec.Command(binary, "map", "--kind", "session", ex).Output()
	if err != nil {
		t.Fatalf("map: %v", err)
	}
	bundle := filepath.Join(t.TempDir(), "bundle.json")
	if err := os.WriteFile(bundle, out, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(binary, "validate", bundle).CombinedOutput(); err != nil {
		t.Errorf("validate of a mapped Bundle: %v %s", err, out)
	}
	cmd := exec.Command(binary, "map", "--kind", "session", "-")
	cmd.Stdin = strings.NewReader(`{"source": 1}`)
	out, err = cmd.Output()
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != 1 || !bytes.Contains(out, []byte("OperationOutcome")) {
		t.Errorf("map of an invalid record: err %v, stdout %s; want exit 1 with an OperationOutcome", err, out)
	}
}

func errorsAs(err error, target **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	if ok {
		*target = e
	}
	return ok
}
