// Package console holds the web console's browser tests: they build and run
// the real binary and drive headless Chromium (Debian's chromium package)
// through it with chromedp. Without Chromium they skip with a message;
// .ci/run installs it.
package console

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
	"github.com/ketamine-gateway/ketamine-gateway/test/internal/gwproc"
)

var binary string

func TestMain(m *testing.M) {
	bin, cleanup, err := gwproc.Build("../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = bin
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// gateway is a running `ketamine-gateway serve`.
type gateway struct {
	*gwproc.Proc
	base string
	db   string // the SQLite database's path
}

// start runs serve on a free loopback port (with extra args) and returns
// once it listens.
func start(t *testing.T, args ...string) *gateway {
	t.Helper()
	db := filepath.Join(t.TempDir(), "kg.db")
	p, err := gwproc.Launch(binary, append([]string{"serve", "--addr", "127.0.0.1:0", "--db", db}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.WaitAddr(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	g := &gateway{Proc: p, base: p.Base, db: db}
	t.Cleanup(func() {
		if err := g.Stop(); err != nil {
			t.Errorf("gateway exit after SIGINT: %v", err)
		}
		if t.Failed() {
			t.Logf("gateway logs:\n%s", g.Logs.String())
		}
	})
	return g
}

// allTenantAudits counts the AuditEvents matching params among those kept
// for all-tenant readers (a console person with no tenant claim acts for
// every tenant: its requests that touch no tenant's data, a sign-in, a
// refused action, are audited there only, which the development mode's
// anonymous API client, of the default tenant, does not see). It reads the
// database beside the running gateway, as a second process may.
func (g *gateway) allTenantAudits(t *testing.T, params url.Values) int {
	t.Helper()
	st, err := sqlite.Open(context.Background(), g.db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	q, err := search.Parse("AuditEvent", params, false)
	if err != nil {
		t.Fatal(err)
	}
	q.Tenant = search.AllTenantsAudit
	page, err := st.Search(context.Background(), q)
	if err != nil {
		t.Fatal(err)
	}
	return len(page.Matches)
}

// api calls the gateway's HTTP API (development mode: no token) and
// decodes a JSON answer into out (nil: ignore it).
func (g *gateway) api(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, g.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %.300s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

// ingest posts an example record.
func (g *gateway) ingest(t *testing.T, kind, example string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", kind, example))
	if err != nil {
		t.Fatal(err)
	}
	if code := g.api(t, "POST", "/ingest/"+kind, string(b), nil); code != http.StatusOK {
		t.Fatalf("ingest %s: %d", example, code)
	}
}

// waitDelivery polls the operator API until a delivery has status.
func (g *gateway) waitDelivery(t *testing.T, status string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var out struct{ Deliveries []struct{ ID string } } // the public id
		g.api(t, "GET", "/admin/deliveries?status="+status, "", &out)
		if len(out.Deliveries) > 0 {
			return out.Deliveries[0].ID
		}
		time.Sleep(50 * time.Millisecond) // polling the worker, not timing the test
	}
	t.Fatalf("no delivery became %s", status)
	return ""
}

// chromium returns the browser to drive, or skips the test.
func chromium(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("GATEWAY_TEST_CHROMIUM"), "/usr/bin/chromium", "/usr/bin/chromium-browser"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skip("Chromium is not installed (apt-get install chromium, as .ci/run does): browser tests skipped")
	return ""
}

// browser starts headless Chromium for one test and returns its context.
// A failing test leaves a screenshot of the page it was on in
// $GATEWAY_TEST_ARTIFACTS (or a temporary directory, named in the log).
func browser(t *testing.T) context.Context {
	t.Helper()
	ctx, err := startBrowser(t, chromium(t), browserStarts)
	if err != nil {
		t.Fatal(err)
	}
	return ctx
}

// browserStarts is how many times browser tries to start Chromium: on a
// loaded machine a start sometimes fails (the process exits before it
// listens, printing only its usual noise), and a test must not fail for it.
const browserStarts = 3

// startBrowser starts the browser at path up to tries times, each with a
// fresh profile directory and a pause of a second more than the last
// between them, and returns the context of the first that starts. The
// error names, for every start, how the process ended and the tail of what
// it printed.
func startBrowser(t *testing.T, path string, tries int) (context.Context, error) {
	t.Helper()
	var failures []string
	for i := 1; i <= tries; i++ {
		ctx, err := startBrowserOnce(t, path)
		if err == nil {
			if i > 1 {
				t.Logf("Chromium started at the %d. try; before:\n%s", i, strings.Join(failures, "\n"))
			}
			return ctx, nil
		}
		failures = append(failures, fmt.Sprintf("try %d: %v", i, err))
		if i < tries {
			time.Sleep(time.Duration(i) * time.Second) // back off before starting a process again
		}
	}
	return nil, fmt.Errorf("start Chromium (%s): it failed %d times; on a loaded machine run the package alone "+
		"(go test ./test/console), check that /dev/shm has room, or set GATEWAY_TEST_CHROMIUM to another build:\n%s",
		path, tries, strings.Join(failures, "\n"))
}

// startBrowserOnce starts the browser at path once and returns its context
// (stopped when the test ends), or an error saying how the process ended
// and the last lines it printed.
func startBrowserOnce(t *testing.T, path string) (context.Context, error) {
	t.Helper()
	dir, err := os.MkdirTemp(t.TempDir(), "profile")
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 900),
		chromedp.ModifyCmdFunc(func(c *exec.Cmd) { cmd = c }),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		// No screenshot and no second start: chromedp would try to start
		// the browser again on this context (and panic).
		cancelTimeout()
		cancelCtx()
		cancelAlloc() // waits for the process
		ended := "still running when given up"
		if cmd != nil && cmd.ProcessState != nil {
			ended = cmd.ProcessState.String()
		}
		return nil, fmt.Errorf("%s; printed, last lines:\n%s", ended, lastLines(err.Error(), 12))
	}
	t.Cleanup(func() {
		if t.Failed() {
			saveScreenshot(t, ctx)
		}
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	return ctx, nil
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// saveScreenshot writes the current page of a failed test to a file.
func saveScreenshot(t *testing.T, ctx context.Context) {
	dir := os.Getenv("GATEWAY_TEST_ARTIFACTS")
	if dir == "" {
		var err error
		if dir, err = os.MkdirTemp("", "kg-console-failure"); err != nil {
			return
		}
	}
	_ = os.MkdirAll(dir, 0o755)
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Logf("no screenshot of the failure: %v", err)
		return
	}
	name := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+".png")
	if err := os.WriteFile(name, png, 0o644); err == nil {
		t.Logf("screenshot of the failure: %s", name)
	}
}

// stepTimeout bounds one step of a browser test (a page load and a wait).
const stepTimeout = 30 * time.Second

// run runs browser actions and fails the test on an error.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(actx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that answers a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	actx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(actx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// eval evaluates JavaScript in the page (through the DevTools protocol,
// which the page's Content-Security-Policy does not govern).
func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	return get(t, ctx, "evaluate "+js, chromedp.Evaluate[T](js))
}

// text returns the visible text of the first element matching a CSS
// selector.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	return get(t, ctx, "read "+sel, chromedp.Text(chromedp.CSS(sel)))
}

// location returns the page's URL.
func location(t *testing.T, ctx context.Context) string {
	t.Helper()
	return get(t, ctx, "read the location", chromedp.Location())
}

// unlabelled lists the form controls of the page a person cannot identify:
// every input (but hidden ones and buttons), select and textarea needs a
// <label>, aria-label or aria-labelledby.
const unlabelledJS = `Array.from(document.querySelectorAll("input, select, textarea"))
  .filter(e => !["hidden", "submit", "button", "reset"].includes(e.type))
  .filter(e => e.labels.length === 0 && !e.getAttribute("aria-label") && !e.getAttribute("aria-labelledby"))
  .map(e => e.name || e.id || e.outerHTML.slice(0, 60))`

// checkLabels fails the test for a form control without a label.
func checkLabels(t *testing.T, ctx context.Context) {
	t.Helper()
	if bad := eval[[]string](t, ctx, unlabelledJS); len(bad) > 0 {
		t.Errorf("form controls without a label on %s: %v", location(t, ctx), bad)
	}
}
