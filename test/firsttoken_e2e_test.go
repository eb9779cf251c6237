package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/test/internal/gwproc"
)

// TestFirstToken runs docs/security.md's "Your first token" as a newcomer
// would, with the binary: keygen, the configuration the section shows,
// serve with it, a token from client token, an authenticated search and a
// native record stored with it (p34 F2: nothing showed how to get a first
// token). The commands are the document's own, so the section cannot drift.
func TestFirstToken(t *testing.T) {
	doc, err := os.ReadFile("../docs/security.md")
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(doc), "\n## Your first token\n")
	if !ok {
		t.Fatal(`docs/security.md has no "## Your first token" section`)
	}
	sec, _, _ = strings.Cut(sec, "\n## ")
	var (
		config        string
		before, after []string // the shell blocks before and after serve
		serveArgs     []string
		lines         = strings.Split(sec, "\n")
	)
	for i := 0; i < len(lines); i++ {
		lang, isFence := strings.CutPrefix(lines[i], "```")
		if !isFence {
			continue
		}
		var block []string
		for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			block = append(block, lines[i])
		}
		text := strings.Join(block, "\n")
		switch {
		case lang == "json":
			config = text
		case strings.HasPrefix(text, "ketamine-gateway serve "):
			serveArgs = strings.Fields(strings.TrimPrefix(text, "ketamine-gateway serve "))
		case serveArgs == nil:
			before = append(before, text)
		default:
			after = append(after, text)
		}
	}
	if config == "" || serveArgs == nil || len(before) == 0 || len(after) == 0 {
		t.Fatalf("the section lacks a step: configuration %v, serve %v, commands before %d, after %d",
			config != "", serveArgs, len(before), len(after))
	}

	addr := freeAddr(t)
	work := mirrorRepo(t)
	// run runs shell blocks as one script in work: the document's
	// ketamine-gateway is the binary under test, its address the test's,
	// and curl fails on an HTTP error.
	run := func(blocks []string) string {
		t.Helper()
		script := "set -e -o pipefail\nketamine-gateway() { " + binary + ` "$@"; }` + "\ncurl() { command curl -f \"$@\"; echo; }\n" +
			strings.ReplaceAll(strings.Join(blocks, "\n"), "127.0.0.1:8080", addr)
		c := exec.Command("bash", "-c", script)
		c.Dir = work
		var out, errb bytes.Buffer
		c.Stdout, c.Stderr = &out, &errb
		if err := c.Run(); err != nil {
			t.Fatalf("the section's commands failed (%v):\n%s\nstdout:\n%.3000s\nstderr:\n%.3000s", err, script, out.String(), errb.String())
		}
		return out.String()
	}

	run(before) // the key pair
	if st, err := os.Stat(filepath.Join(work, "client.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("client.key: %v (mode %v), want a file of mode 0600", err, st)
	}
	cfgFile := ""
	for i, a := range serveArgs {
		if a == "--config" && i+1 < len(serveArgs) {
			cfgFile = serveArgs[i+1]
		}
	}
	if cfgFile == "" {
		t.Fatalf("the section's serve %v names no --config", serveArgs)
	}
	if err := os.WriteFile(filepath.Join(work, cfgFile), []byte(strings.ReplaceAll(config, "127.0.0.1:8080", addr)), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := gwproc.Prepare(binary, append([]string{"serve", "--addr", addr, "--db", filepath.Join(t.TempDir(), "kg.db")}, serveArgs...)...)
	if err != nil {
		t.Fatal(err)
	}
	p.Cmd.Dir = work // as the document runs its commands (its jwksFile is relative to the config file, in the same directory)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	g := newGateway(p)
	t.Cleanup(func() { g.stop(t) })
	if err := p.WaitAddr(30 * time.Second); err != nil {
		t.Fatalf("serve with the section's configuration: %v\n%s", err, p.Logs.String())
	}
	g.base = p.Base
	if err := p.WaitHealthy(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	// Authentication is on: the search needs the token.
	resp, err := http.Get(g.base + "/fhir/Patient?_summary=count")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("search without a token = %d, want 401: the section's gateway is not authenticating", resp.StatusCode)
	}

	out := run(after)
	// The last answer is the Observation count after the record's ingest.
	outLines := strings.Split(strings.TrimSpace(out), "\n")
	var last struct {
		ResourceType string `json:"resourceType"`
		Total        int    `json:"total"`
	}
	if err := json.Unmarshal([]byte(outLines[len(outLines)-1]), &last); err != nil || last.ResourceType != "Bundle" || last.Total < 1 {
		t.Errorf("the last command's answer = %.500s (%v), want a searchset counting the stored Observations", outLines[len(outLines)-1], err)
	}
	if !strings.Contains(out, `"transaction-response"`) {
		t.Errorf("the ingest did not answer a transaction-response:\n%.3000s", out)
	}
}
