package console

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestPagesFitNarrowScreens: every console page, at 320 CSS pixels (a
// 1280-pixel window zoomed to 400%, WCAG 1.4.10 Reflow; narrower than any
// phone), scrolls vertically only: long identifiers (a request's trace id, a
// hash) wrap, form fields stack under their labels, wide tables scroll in
// their own box (probe p8: the request page's heading was 648 pixels wide;
// p26 F1: the audit search form was 365 pixels wide, a request's timeline
// 375).
func TestPagesFitNarrowScreens(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, true)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	dead := g.waitDelivery(t, "dead")
	e.accept()
	g.ingest(t, "session", "routine-ketamine-iv-session.json")
	g.waitDelivery(t, "done")

	run(t, ctx, "a narrow screen", chromedp.EmulateViewport(320, 800))
	const overflowJS = `document.documentElement.scrollWidth - window.innerWidth`
	check := func(what string) {
		t.Helper()
		if over := eval[int](t, ctx, overflowJS); over > 0 {
			wide := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("main *"))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".scroll-x"))
  .slice(0, 5).map(e => e.tagName + (e.className ? "." + e.className : ""))`)
			t.Errorf("%s is %d pixels wider than a 320-pixel screen; too wide: %v", what, over, wide)
		}
	}
	for _, p := range []struct{ path, wait string }{
		{"/console/", ".cards"},
		{"/console/rules", "main"},
		{"/console/conformance", "main"},
		{"/console/deliveries", "#h-charts"},
		{"/console/deliveries/" + dead, "table.ehr-outcome"},
		{"/console/deliveries/" + dead + "/retry", "main form"},
		{"/console/replays", "main form"},
		{"/console/playground", "main form"},
		{"/console/audit", "form.search"},
		{"/console/audit/chain", "main form"},
		{"/console/records?source=serenity-clinic-emr&record=INF-2026-0310-001", "#h-access"},
	} {
		run(t, ctx, "open "+p.path, chromedp.Navigate(g.base+p.path), chromedp.WaitVisible(chromedp.CSS(p.wait)))
		check(p.path)
	}
	run(t, ctx, "search the audit trail",
		chromedp.Navigate(g.base+"/console/audit"),
		chromedp.SendKeys(chromedp.CSS("#f-patient"), "MRN-TEST-000123"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#h-results")))
	check("the audit search's results")
	run(t, ctx, "open a request",
		chromedp.Click(`//tr[contains(., "ingest")][last()]//a[text()="Open"]`),
		chromedp.WaitVisible(chromedp.CSS("#h-timeline")),
		chromedp.Click(chromedp.CSS("details.answer summary")))
	check("the request page")
	run(t, ctx, "verify the chain",
		chromedp.Navigate(g.base+"/console/audit/chain"),
		chromedp.Click(`//button[text()="Verify the chain now"]`),
		chromedp.WaitVisible(chromedp.CSS("dl.facts")))
	check("the chain page")
}
