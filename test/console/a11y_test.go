package console

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// describedByJS returns the text of the elements a field's
// aria-describedby names, or "" when the field is not marked invalid.
func describedByJS(sel string) string {
	return `(() => { const f = document.querySelector("` + sel + `");
  if (!f || f.getAttribute("aria-invalid") !== "true") return "";
  return (f.getAttribute("aria-describedby") || "").split(/\s+/)
    .map(id => document.getElementById(id)).filter(e => e).map(e => e.innerText).join(" | "); })()`
}

// summaryLinks checks that the form's error summary (#form-errors) links,
// item by item, to the fields want names, each a field of the page: a
// keyboard or screen reader user goes from the summary to the field.
func summaryLinks(t *testing.T, ctx context.Context, want ...string) {
	t.Helper()
	links := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#form-errors li a")).map(a => a.getAttribute("href"))`)
	if strings.Join(links, " ") != strings.Join(want, " ") {
		t.Errorf("the error summary links to %v, want %v", links, want)
	}
	for _, l := range links {
		if !eval[bool](t, ctx, `(() => { const e = document.getElementById(`+strconv.Quote(strings.TrimPrefix(l, "#"))+`); return !!e && ["INPUT", "SELECT", "TEXTAREA"].includes(e.tagName); })()`) {
			t.Errorf("the error summary's link %s names no field of the page", l)
		}
	}
}

// TestAuditSearchErrorsAtFields: a malformed audit search (probe p26 F2)
// marks each field in error invalid and describes it by its message (a
// screen reader tabbing to "From" hears what is wrong), keeps the field's
// hint, blames no other field, and each item of the summary links to its
// field.
func TestAuditSearchErrorsAtFields(t *testing.T) {
	ctx := browser(t)
	g := start(t)
	run(t, ctx, "send a malformed search",
		chromedp.Navigate(g.base+"/console/audit"),
		chromedp.SendKeys(chromedp.CSS("#f-patient"), "a|b|c"),
		chromedp.SendKeys(chromedp.CSS("#f-from"), "2026-13-45"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#form-errors")))
	for field, want := range map[string][]string{
		"#f-patient": {"at most one |", "a value, or system|value"},
		"#f-from":    {"From: a date like", "dates as YYYY-MM-DD"},
	} {
		got := eval[string](t, ctx, describedByJS(field))
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s is described by %q, want it marked invalid and described by %q", field, got, w)
			}
		}
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("form.search [aria-invalid=true]").length`); n != 2 {
		t.Errorf("%d fields are marked invalid, want 2 (patient, from)", n)
	}
	summaryLinks(t, ctx, "#f-patient", "#f-from")

	run(t, ctx, "send To before From",
		chromedp.Navigate(g.base+"/console/audit"),
		chromedp.SendKeys(chromedp.CSS("#f-from"), "2026-12-31"),
		chromedp.SendKeys(chromedp.CSS("#f-to"), "2026-01-01"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#form-errors")))
	if got := eval[string](t, ctx, describedByJS("#f-to")); !strings.Contains(got, "To: must not be before From") {
		t.Errorf("#f-to is described by %q, want it marked invalid: must not be before From", got)
	}
	checkLabels(t, ctx)
}

// scrollBoxesJS lists the boxes of the page that scroll (overflow auto or
// scroll, content larger than the box) but a keyboard cannot reach:
// neither focusable themselves nor holding something focusable (Safari
// does not focus a scroll box by itself), or focusable but without a name
// (probe p26 F4). A text area is a field, focusable itself.
const scrollBoxesJS = `Array.from(document.querySelectorAll("main *:not(textarea)")).filter(e => {
  const s = getComputedStyle(e);
  const scrolls = (/(auto|scroll)/.test(s.overflowX) && e.scrollWidth > e.clientWidth) ||
    (/(auto|scroll)/.test(s.overflowY) && e.scrollHeight > e.clientHeight);
  if (!scrolls) return false;
  const named = e.getAttribute("aria-label") || e.getAttribute("aria-labelledby");
  return !(e.getAttribute("tabindex") === "0" && e.getAttribute("role") === "region" && named);
}).map(e => e.tagName + "." + e.className)`

// TestScrollBoxesAndDiffReadable: the playground's Bundle and highlighted
// record, the compare page's diffs and the profiles' JSON scroll in boxes
// a keyboard reaches, as named regions (probe p26 F4); a diff's added and
// removed lines say so in text, not only by a glyph and colour (F5); the
// playground's issues are a list and the record's field is marked invalid
// and described by them (F6); nothing toggles a <details> without telling
// its state (F10).
func TestScrollBoxesAndDiffReadable(t *testing.T) {
	ctx := browser(t)
	g := start(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	run(t, ctx, "a small window", chromedp.EmulateViewport(800, 600))
	check := func(what string) {
		t.Helper()
		if bad := eval[[]string](t, ctx, scrollBoxesJS); len(bad) > 0 {
			t.Errorf("%s: scroll boxes a keyboard cannot reach or that have no name: %v", what, bad)
		}
	}

	run(t, ctx, "map a valid record",
		chromedp.Navigate(g.base+"/console/playground?example=examples/session/routine-ketamine-iv-session.json"),
		chromedp.Click(chromedp.CSS("form.playground button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#h-bundle")),
		chromedp.Click(chromedp.CSS("details#bundle summary")))
	check("the playground's Bundle")

	bad := edit(t, b, func(r map[string]any) { r["items"].([]any)[2].(map[string]any)["score"] = 7 })
	run(t, ctx, "map a record with an error",
		chromedp.Navigate(g.base+"/console/playground"),
		chromedp.SetValue(chromedp.CSS("#p-kind"), "assessment"),
		chromedp.SetValue(chromedp.CSS("#p-record"), string(bad)),
		chromedp.Click(chromedp.CSS("form.playground button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("ol.issues")))
	check("the playground's issues")
	if role := eval[string](t, ctx, `document.querySelector("ol.issues").getAttribute("role") || ""`); role != "" {
		t.Errorf("the issue list has role %q, which hides that it is a list", role)
	}
	if got := eval[string](t, ctx, describedByJS("#p-record")); !strings.Contains(got, "1 issue") {
		t.Errorf("#p-record is described by %q, want it marked invalid and described by the issues", got)
	}

	newer := edit(t, b, func(r map[string]any) {
		r["source"].(map[string]any)["version"] = "2"
		r["source"].(map[string]any)["lastUpdated"] = "2026-03-10T09:40:00-05:00"
		r["takenAt"] = "2026-03-10T09:35:00-05:00"
	})
	run(t, ctx, "compare two versions",
		chromedp.Navigate(g.base+"/console/playground/diff"),
		chromedp.SetValue(chromedp.CSS("#df-kind"), "assessment"),
		chromedp.SetValue(chromedp.CSS("#df-old"), string(b)),
		chromedp.SetValue(chromedp.CSS("#df-new"), string(newer)),
		chromedp.Click(chromedp.CSS("form.playground button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("section.rdiff")))
	check("the compared versions")
	// What a screen reader reads of each changed line: the text of the
	// line without what is hidden from it (aria-hidden), with what is
	// visually hidden.
	lines := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("pre.diff .add, pre.diff .del")).map(l => {
  const c = l.cloneNode(true); c.querySelectorAll("[aria-hidden=true]").forEach(e => e.remove());
  return (l.classList.contains("add") ? "+" : "-") + c.textContent; })`)
	if len(lines) == 0 {
		t.Fatal("the diff shows no added or removed line")
	}
	for _, l := range lines {
		want := map[byte]string{'+': "+added: ", '-': "-removed: "}[l[0]]
		if !strings.HasPrefix(l, want) {
			t.Errorf("a changed line reads %q to a screen reader, want it to start %q", l, want[1:])
		}
	}
	if n := eval[int](t, ctx, `document.querySelectorAll("span[aria-label]").length`); n > 0 {
		t.Errorf("%d spans carry an aria-label, which a generic element may not", n)
	}

	run(t, ctx, "open the profiles",
		chromedp.Navigate(g.base+"/console/conformance"),
		chromedp.WaitVisible(chromedp.CSS("main details summary")))
	eval[bool](t, ctx, `document.querySelectorAll("main details").forEach(d => d.open = true); true`)
	check("the profiles")
}

// TestOutcomeAnnounced: after an action, the outcome is the start of the
// page's title (read first when a page loads) and the message holding it
// has the focus, without JavaScript (probe p26 F7: focus stayed on the
// body, the title unchanged, and a screen reader read the header, the
// menu and the banner before it): a retried dead letter, a verified
// chain, an audit search's results.
func TestOutcomeAnnounced(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, true)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	dead := g.waitDelivery(t, "dead")
	check := func(what, title, focused string) {
		t.Helper()
		if got := eval[string](t, ctx, `document.title`); !strings.HasPrefix(got, title) {
			t.Errorf("%s: the title is %q, want it to start %q", what, got, title)
		}
		if ok := eval[bool](t, ctx, `document.activeElement === document.querySelector("`+focused+`")`); !ok {
			t.Errorf("%s: the focus is on %s, want %s", what, eval[string](t, ctx, `document.activeElement.outerHTML.slice(0, 80)`), focused)
		}
	}

	run(t, ctx, "retry the dead letter",
		chromedp.Navigate(g.base+"/console/deliveries/"+dead+"/retry"),
		chromedp.Click(`//button[contains(., "Yes, retry")]`),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	check("after the retry", "Queued again", "main .flash")

	run(t, ctx, "verify the chain",
		chromedp.Navigate(g.base+"/console/audit/chain"),
		chromedp.Click(`//button[text()="Verify the chain now"]`),
		chromedp.WaitVisible(chromedp.CSS("dl.facts")))
	check("after verifying the chain", "Chain intact", "main div[role=status]")

	run(t, ctx, "search the audit trail",
		chromedp.Navigate(g.base+"/console/audit"),
		chromedp.SendKeys(chromedp.CSS("#f-patient"), "MRN-TEST-000123"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#h-results")))
	check("after the search", "AuditEvents 1 to ", "#h-results + p[role=status]")
}

// landmarksJS lists what is wrong with the page's landmarks (probe p26
// F8): content outside every landmark (the development banner was), two
// regions of the same name (a section and the table box inside it named by
// one heading), a table in a region without a caption.
const landmarksJS = `(() => {
  const bad = [];
  document.querySelectorAll("body > *:not(script)").forEach(e => {
    if (!e.matches("header, main, nav, footer, aside, a.skip") && e.innerText.trim() !== "") bad.push("outside landmarks: " + e.tagName + "." + e.className);
  });
  const name = e => e.getAttribute("aria-label") || (e.getAttribute("aria-labelledby") || "").split(/\s+/)
    .map(id => (document.getElementById(id) || {}).textContent || "").join(" ").trim();
  const seen = {};
  document.querySelectorAll("section[aria-label], section[aria-labelledby], [role=region]").forEach(e => {
    const n = name(e); if (seen[n]) bad.push("two regions named " + JSON.stringify(n)); seen[n] = true;
  });
  document.querySelectorAll("[role=region] table").forEach(t => { if (!t.querySelector("caption")) bad.push("a table without a caption in " + JSON.stringify(name(t.closest("[role=region]")))); });
  return bad; })()`

// TestLandmarksNamedOnce: in development mode (its banner on every page),
// every page's content is inside a landmark, no two regions share a name
// and each table in a region has a caption (probe p26 F8).
func TestLandmarksNamedOnce(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, true)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	dead := g.waitDelivery(t, "dead")
	for _, p := range []struct{ path, wait string }{
		{"/console/", ".cards"},
		{"/console/rules", "#cs-validation-rule"},
		{"/console/deliveries", "#capability-gaps"},
		{"/console/deliveries/" + dead, "table.ehr-outcome"},
		{"/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001", "#h-access"},
		{"/console/audit", "form.search"},
	} {
		run(t, ctx, "open "+p.path, chromedp.Navigate(g.base+p.path), chromedp.WaitVisible(chromedp.CSS(p.wait)))
		if bad := eval[[]string](t, ctx, landmarksJS); len(bad) > 0 {
			t.Errorf("%s: %v", p.path, bad)
		}
	}
	// The EHR's CapabilityStatement lacks DetectedIssue: the deliveries
	// page says so under Readiness, as /readyz does.
	run(t, ctx, "open the deliveries", chromedp.Navigate(g.base+"/console/deliveries"), chromedp.WaitVisible(chromedp.CSS("#capability-gaps")))
	if s := text(t, ctx, "#capability-gaps"); !strings.Contains(s, "ehr does not support DetectedIssue: its CapabilityStatement does not list the type") {
		t.Errorf("the capability gaps say %q, want DetectedIssue of ehr", s)
	}
}
