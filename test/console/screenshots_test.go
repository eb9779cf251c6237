package console

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestScreenshots writes the screenshots of docs/console.md:
//
//	GATEWAY_CONSOLE_SCREENSHOTS=$PWD/docs/img go test ./test/console -run TestScreenshots
//
// Without the variable it skips.
func TestScreenshots(t *testing.T) {
	dir := os.Getenv("GATEWAY_CONSOLE_SCREENSHOTS")
	if dir == "" {
		t.Skip("GATEWAY_CONSOLE_SCREENSHOTS is not set: no screenshots written")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := browser(t)
	e := newEHR(t, true)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	id := g.waitDelivery(t, "dead")
	e.accept()
	g.ingest(t, "session", "routine-ketamine-iv-session.json")
	g.ingest(t, "assessment", "gad7-mild.json")
	g.waitDelivery(t, "done")

	shot := func(name string) {
		t.Helper()
		png := get(t, ctx, "screenshot "+name, chromedp.CaptureScreenshot())
		if err := os.WriteFile(filepath.Join(dir, "console-"+name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	visit := func(name, path, wait string) {
		t.Helper()
		run(t, ctx, "open "+path, chromedp.Navigate(g.base+path), chromedp.WaitVisible(chromedp.CSS(wait)))
		shot(name)
	}

	visit("home", "/console/", ".cards")
	run(t, ctx, "search",
		chromedp.Navigate(g.base+"/console/audit"),
		chromedp.SendKeys(chromedp.CSS("#f-patient"), "MRN-TEST-000123"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#h-results")))
	shot("audit-search")
	run(t, ctx, "open a request",
		chromedp.Click(`//tr[contains(., "ingest")][last()]//a[text()="Open"]`),
		chromedp.WaitVisible(chromedp.CSS("#h-timeline")),
		chromedp.Click(chromedp.CSS("details.answer summary")))
	shot("request")
	visit("record", "/console/records?source=serenity-clinic-emr&record=INF-2026-0310-001", "#h-access")
	run(t, ctx, "verify the chain",
		chromedp.Navigate(g.base+"/console/audit/chain"),
		chromedp.Click(chromedp.CSS("main form button")),
		chromedp.WaitVisible(chromedp.CSS("dl.facts")))
	shot("chain")
	visit("deliveries", "/console/deliveries", "#h-charts")
	visit("delivery-dead", "/console/deliveries/"+id, "table.ehr-outcome")
	visit("retry", "/console/deliveries/"+id+"/retry", "main form")

	b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	bad := edit(t, b, func(r map[string]any) {
		r["items"].([]any)[2].(map[string]any)["score"] = 7
		r["takenBy"] = "RN-042"
	})
	run(t, ctx, "map a record with errors",
		chromedp.Navigate(g.base+"/console/playground"),
		chromedp.SetValue(chromedp.CSS("#p-kind"), "assessment"),
		chromedp.SetValue(chromedp.CSS("#p-record"), string(bad)),
		chromedp.Click(chromedp.CSS("form.playground button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("ol.issues")),
		chromedp.ScrollIntoView(chromedp.CSS("#h-issues")))
	shot("playground-issues")
	run(t, ctx, "map a valid record",
		chromedp.Navigate(g.base+"/console/playground?example=examples/session/routine-ketamine-iv-session.json"),
		chromedp.Click(chromedp.CSS("form.playground button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#h-bundle")))
	shot("playground-bundle")

	newer := edit(t, b, func(r map[string]any) {
		r["source"].(map[string]any)["version"] = "2"
		r["takenAt"] = "2026-03-10T09:35:00-05:00"
	})
	run(t, ctx, "compare two versions",
		chromedp.Navigate(g.base+"/console/playground/diff"),
		chromedp.SetValue(chromedp.CSS("#df-kind"), "assessment"),
		chromedp.SetValue(chromedp.CSS("#df-old"), string(b)),
		chromedp.SetValue(chromedp.CSS("#df-new"), string(newer)),
		chromedp.Click(chromedp.CSS("form.playground button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("section.rdiff")),
		chromedp.ScrollIntoView(chromedp.CSS("main h2")))
	shot("diff")
	visit("rules", "/console/rules", "#cs-validation-rule")

	og, is := oidcGateway(t)
	is.signIn(alice)
	octx := browser(t)
	run(t, octx, "the sign-in page", chromedp.Navigate(og.base+"/console/audit"), chromedp.WaitVisible(`//a[text()="Sign in"]`))
	png := get(t, octx, "screenshot sign-in", chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(dir, "console-sign-in.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// edit changes a JSON record.
func edit(t *testing.T, doc []byte, fn func(map[string]any)) []byte {
	t.Helper()
	var r map[string]any
	if err := json.Unmarshal(doc, &r); err != nil {
		t.Fatal(err)
	}
	fn(r)
	out, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return out
}
