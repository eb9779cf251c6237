package console

import (
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
	links := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#form-errors li a")).map(a => a.getAttribute("href"))`)
	if strings.Join(links, " ") != "#f-patient #f-from" {
		t.Errorf("the summary links to %v, want [#f-patient #f-from]", links)
	}

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
