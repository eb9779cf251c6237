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
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium(t)),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-features", "Translate,OptimizationHints,MediaRouter"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 2*time.Minute)
	started := false
	t.Cleanup(func() {
		// A screenshot needs the browser: on a context whose start
		// failed, chromedp would try to start it again (and panic).
		if t.Failed() && started {
			saveScreenshot(t, ctx)
		}
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	started = true
	return ctx
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
