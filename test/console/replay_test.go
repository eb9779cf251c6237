package console

import (
	"context"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// phiValues are the patient's identifying values in the example records
// the replay tests ingest: no replay page may show one.
var phiValues = []string{"MRN-TEST-000123", "PT-000123", "Testpatient", "Alex", "1985-04-12"}

// summaryJS reads the replay report's summary table as a person sees it:
// each row's heading and number.
const summaryJS = `Object.fromEntries(Array.from(document.querySelectorAll("section[aria-labelledby=h-summary] table tbody tr"))
  .map(r => [r.querySelector("th").innerText.trim(), r.querySelector("td").innerText.trim()]))`

// replayJobPath is the address of a replay's page.
var replayJobPath = regexp.MustCompile(`^/console/replays/[^/]+$`)

// TestOperatorDryRunsMappingReplay: an operator starts dry runs of the
// mapping replay from the console, follows each to its report and reads
// the counts: with the mapping the records were stored with, every record
// a filter selects is unchanged, and a filter that selects nothing reports
// zero records. No page shows the patient's identifying values.
func TestOperatorDryRunsMappingReplay(t *testing.T) {
	ctx := browser(t)
	g := start(t)
	// Three records of one patient, none inside another (the session
	// holds its own PHQ-9, MOAA-S and CADSS).
	g.ingest(t, "assessment", "gad7-mild.json")
	g.ingest(t, "assessment", "cssrs-screener-negative.json")
	g.ingest(t, "session", "routine-ketamine-iv-session.json")

	for _, tc := range []struct {
		name, kind, since string
		what              string // the report's description of the request
		records           string
	}{
		{name: "every kind", what: "dry run", records: "3"},
		{name: "assessments", kind: "assessment", what: "dry run, assessment records", records: "2"},
		{name: "a kind without records", kind: "vitals", what: "dry run, vitals records", records: "0"},
		// (A since in the future is refused at its field: the console's own tests.)
		{name: "since an earlier time", since: "2000-01-01T00:00", what: "dry run, since 2000-01-01T00:00:00.000Z", records: "3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(t, ctx, "open the replay page",
				chromedp.Navigate(g.base+"/console/replays"),
				chromedp.WaitVisible(chromedp.CSS("#r-kind")))
			checkLabels(t, ctx)
			noPHI(t, ctx)
			run(t, ctx, "start a dry run",
				chromedp.SetValue(chromedp.CSS("#r-kind"), tc.kind),
				chromedp.SetValue(chromedp.CSS("#r-since"), tc.since),
				chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
				chromedp.WaitVisible(`//p[contains(@class, "flash")][contains(., "The replay has started")]`))
			u, err := url.Parse(location(t, ctx))
			if err != nil || !replayJobPath.MatchString(u.Path) || u.RawQuery != "" {
				t.Fatalf("after starting the replay the browser is at %s, want its page /console/replays/{id}", location(t, ctx))
			}
			waitReplayDone(t, ctx)

			if s := text(t, ctx, "main > h1 + p"); !strings.Contains(s, "Replay started") || !strings.Contains(s, tc.what+". Status: done") {
				t.Errorf("the replay's description = %q, want %q and done", s, tc.what)
			}
			if h := text(t, ctx, "#h-summary"); !strings.HasPrefix(h, "Summary (mapping ") {
				t.Errorf("summary heading = %q", h)
			}
			got := eval[map[string]string](t, ctx, summaryJS)
			want := map[string]string{
				"Records":                      tc.records,
				"Unchanged":                    tc.records,
				"Would change":                 "0",
				"Refused by the rules now":     "0",
				"Diverged (left as they are)":  "0",
				"Stored without their input":   "0",
				"Withdrawn (left as they are)": "0",
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("summary %q = %q, want %q (the summary reads %v)", k, got[k], v, got)
				}
			}
			if len(got) != len(want) {
				t.Errorf("a dry run's summary reads %v, want the rows %v", got, want)
			}
			if eval[bool](t, ctx, `document.querySelector("#replay-records, #h-records") !== null`) {
				t.Errorf("records that are not unchanged are listed: %q", text(t, ctx, "#replay-records"))
			}
			checkLabels(t, ctx)
			noPHI(t, ctx)

			// The list of the person's replays has it, done.
			id := u.Path[len("/console/replays/"):]
			run(t, ctx, "back to the list",
				chromedp.Navigate(g.base+"/console/replays"),
				chromedp.WaitVisible(chromedp.CSS("#h-jobs")))
			row := text(t, ctx, `main table.data tbody tr:has(a[href="/console/replays/`+id+`"])`)
			if !strings.Contains(row, tc.what) || !strings.Contains(row, "done") {
				t.Errorf("the replay's row in the list = %q, want %q and done", row, tc.what)
			}
		})
	}
}

// TestMappingReplayRefusesInvalidForm: a replay form with a kind the
// gateway does not have, a start that is not a time or a reason with a
// control character (sent by a page altered in the browser) is shown
// again (400) with what the person typed and the error at that field, the
// others not blamed; it starts nothing.
func TestMappingReplayRefusesInvalidForm(t *testing.T) {
	ctx := browser(t)
	g := start(t)
	g.ingest(t, "assessment", "phq9-moderate.json")

	for _, tc := range []struct {
		name  string
		alter string // JavaScript that fills the form with the invalid value
		field string // the field in error
		want  string
		kept  map[string]string // field -> the value shown again
	}{
		{
			name: "unknown kind",
			alter: `const k = document.querySelector("#r-kind");
k.add(new Option("lab-result", "lab-result")); k.value = "lab-result";
document.querySelector("#r-reason").value = "a fine reason"; true`,
			field: "#r-kind", want: "Kind: choose one of the listed kinds",
			kept: map[string]string{"#r-reason": "a fine reason"},
		},
		{
			name: "since not a time",
			alter: `const s = document.querySelector("#r-since");
s.type = "text"; s.value = "last tuesday";
document.querySelector("#r-kind").value = "assessment";
document.querySelector("#r-reason").value = "ok"; true`,
			field: "#r-since", want: "Received since: a date and time",
			kept: map[string]string{"#r-since": "last tuesday", "#r-kind": "assessment", "#r-reason": "ok"},
		},
		{
			name: "reason with a control character",
			alter: `document.querySelector("#r-since").value = "2026-11-25T08:00";
document.querySelector("#r-reason").value = "bell\u0007"; true`,
			field: "#r-reason", want: "Reason: at most 200 characters, without control characters",
			kept: map[string]string{"#r-since": "2026-11-25T08:00"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(t, ctx, "open the replay page",
				chromedp.Navigate(g.base+"/console/replays"),
				chromedp.WaitVisible(chromedp.CSS("#r-kind")))
			eval[bool](t, ctx, tc.alter)
			run(t, ctx, "send the form",
				chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
				chromedp.WaitVisible(chromedp.CSS("#form-errors")))
			if h := text(t, ctx, "main h1"); h != "Mapping replay" {
				t.Errorf("heading = %q, want the replay page again", h)
			}
			if s := text(t, ctx, "#form-errors"); !strings.Contains(s, tc.want) {
				t.Errorf("the errors say %q, want %q", s, tc.want)
			}
			summaryLinks(t, ctx, tc.field) // (probe p45: the summary did not link)
			// The error is at its field: the field is marked invalid and
			// described by the message, which a screen reader reads out.
			described := eval[string](t, ctx, `(() => { const f = document.querySelector("`+tc.field+`");
  if (f.getAttribute("aria-invalid") !== "true") return "";
  const e = document.getElementById(f.getAttribute("aria-describedby")); return e ? e.innerText : ""; })()`)
			if !strings.Contains(described, tc.want) {
				t.Errorf("%s is described by %q, want it marked invalid with %q", tc.field, described, tc.want)
			}
			if n := eval[int](t, ctx, `document.querySelectorAll("form.search [aria-invalid=true]").length`); n != 1 {
				t.Errorf("%d fields are marked invalid, want only %s", n, tc.field)
			}
			for field, want := range tc.kept {
				if got := eval[string](t, ctx, `document.querySelector("`+field+`").value`); got != want {
					t.Errorf("%s shows %q again, want %q as typed", field, got, want)
				}
			}
			if u, err := url.Parse(location(t, ctx)); err != nil || u.Path != "/console/replays" {
				t.Errorf("after the refused form the browser is at %s", location(t, ctx))
			}
			checkLabels(t, ctx)
			noPHI(t, ctx)
			if s := text(t, ctx, "section[aria-labelledby=h-jobs] [role=status]"); !strings.Contains(s, "You have started no replay") {
				t.Errorf("after a refused form the list reads %q, want no replay", s)
			}
		})
	}
}

// TestApplyReplayAsksForReason: "Apply the changes" leads to a question
// that shows the reason typed and asks for it; confirmed without one (the
// browser's required check removed) it is asked again and nothing starts.
func TestApplyReplayAsksForReason(t *testing.T) {
	ctx := browser(t)
	g := start(t)
	g.ingest(t, "assessment", "phq9-moderate.json")
	run(t, ctx, "ask to apply with a reason",
		chromedp.Navigate(g.base+"/console/replays"),
		chromedp.WaitVisible(chromedp.CSS("#r-kind")),
		chromedp.Click(chromedp.CSS("#r-apply")),
		chromedp.SendKeys(chromedp.CSS("#r-reason"), "CADSS display corrected"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#c-reason")))
	checkLabels(t, ctx)
	if got := eval[string](t, ctx, `document.querySelector("#c-reason").value`); got != "CADSS display corrected" {
		t.Errorf("the confirmation shows the reason %q, want it as typed", got)
	}
	eval[bool](t, ctx, `const r = document.querySelector("#c-reason"); r.required = false; r.value = ""; true`)
	run(t, ctx, "confirm without a reason",
		chromedp.Click(`//button[text()="Yes, apply"]`),
		chromedp.WaitVisible(chromedp.CSS("#form-errors")))
	if s := text(t, ctx, "#form-errors"); !strings.Contains(s, "Reason: say why") {
		t.Errorf("the question again says %q, want it to ask for the reason", s)
	}
	summaryLinks(t, ctx, "#c-reason")
	if h := text(t, ctx, "main h1"); h != "Apply the mapping replay" {
		t.Errorf("heading = %q, want the question again", h)
	}
	run(t, ctx, "back to the list",
		chromedp.Navigate(g.base+"/console/replays"),
		chromedp.WaitVisible(chromedp.CSS("#h-jobs")))
	if s := text(t, ctx, "section[aria-labelledby=h-jobs] [role=status]"); !strings.Contains(s, "You have started no replay") {
		t.Errorf("after an apply without a reason the list reads %q, want no replay", s)
	}
}

// waitReplayDone reloads a replay's page, as its text asks a person to,
// until the replay is done; a failed replay fails the test.
func waitReplayDone(t *testing.T, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		switch s := text(t, ctx, "main > h1 + p span.status"); s {
		case "done":
			return
		case "queued", "running":
		default:
			t.Fatalf("the replay is %s: %q", s, text(t, ctx, "main"))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replay is not done after a minute: %q", text(t, ctx, "main > h1 + p"))
		}
		time.Sleep(100 * time.Millisecond) // polling a background job, not timing the test
		run(t, ctx, "reload the replay", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("main > h1 + p span.status")))
	}
}

// noPHI fails the test if the page shows one of the patient's identifying
// values.
func noPHI(t *testing.T, ctx context.Context) {
	t.Helper()
	page := eval[string](t, ctx, `document.body.innerText`)
	for _, v := range phiValues {
		if strings.Contains(page, v) {
			t.Errorf("%s shows the patient's %q", location(t, ctx), v)
		}
	}
}

// TestDeliveryReplayRefusesInvalidForm: the deliveries page's "Replay"
// form with a start that is not a time, or one in the future (a mistyped
// year), is shown again (400) with what the person typed and the error at
// that field, the destination kept and not blamed, as the mapping replay
// form does; nothing is replayed (no confirmation asked).
func TestDeliveryReplayRefusesInvalidForm(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, false)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json") // the page offers a replay to a destination with deliveries
	g.waitDelivery(t, "done")

	for _, tc := range []struct {
		name, alter, want, kept string
	}{
		{"since not a time", `const s = document.querySelector("#rp-since"); s.type = "text"; s.value = "garbage"; true`,
			"Since: a date and time like", "garbage"},
		{"since in the future", `document.querySelector("#rp-since").value = "2099-01-01T00:00"; true`,
			"Since: the time is in the future", "2099-01-01T00:00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			run(t, ctx, "open the deliveries page",
				chromedp.Navigate(g.base+"/console/deliveries"),
				chromedp.WaitVisible(chromedp.CSS("#rp-since")))
			eval[bool](t, ctx, tc.alter)
			run(t, ctx, "send the form",
				chromedp.Click(chromedp.CSS("section[aria-labelledby=h-replay] button[type=submit]")),
				chromedp.WaitVisible(chromedp.CSS("#replay-errors")))
			if s := text(t, ctx, "#replay-errors"); !strings.Contains(s, tc.want) {
				t.Errorf("the errors say %q, want %q", s, tc.want)
			}
			described := eval[string](t, ctx, `(() => { const f = document.querySelector("#rp-since");
  if (f.getAttribute("aria-invalid") !== "true") return "";
  const e = document.getElementById(f.getAttribute("aria-describedby")); return e ? e.innerText : ""; })()`)
			if !strings.Contains(described, tc.want) {
				t.Errorf("#rp-since is described by %q, want it marked invalid with %q", described, tc.want)
			}
			if n := eval[int](t, ctx, `document.querySelectorAll("section[aria-labelledby=h-replay] [aria-invalid=true]").length`); n != 1 {
				t.Errorf("%d fields are marked invalid, want only #rp-since", n)
			}
			if got := eval[string](t, ctx, `document.querySelector("#rp-since").value`); got != tc.kept {
				t.Errorf("#rp-since shows %q again, want %q as typed", got, tc.kept)
			}
			if got := eval[string](t, ctx, `document.querySelector("#rp-dest").value`); got != "ehr" {
				t.Errorf("#rp-dest shows %q, want ehr kept", got)
			}
			if strings.Contains(eval[string](t, ctx, `document.body.innerText`), "Yes, replay") {
				t.Errorf("a refused form asks for the confirmation")
			}
			checkLabels(t, ctx)
		})
	}
}
