package console

import (
	"database/sql"
	"encoding/json"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestAuditorFollowsRequestToEHRAnswer: an auditor searches the audit
// trail by a patient's identifier, opens the request that stored the
// patient's PHQ-9 and follows it to the EHR's answer on one timeline.
func TestAuditorFollowsRequestToEHRAnswer(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, false)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	g.waitDelivery(t, "done")

	run(t, ctx, "open the audit search",
		chromedp.Navigate(g.base+"/console/audit"),
		chromedp.WaitVisible(chromedp.CSS("#f-patient")))
	checkLabels(t, ctx)
	// The page names its icon, so the browser asks for no /favicon.ico
	// (a 404 in its console on every page).
	if icon := eval[string](t, ctx, `(document.querySelector("link[rel=icon]") || {}).href || ""`); icon != "data:," {
		t.Errorf("the page's icon is %q, want the empty data: icon", icon)
	}
	// An identifier the token search refuses is named at the form, which
	// keeps what was typed; the search is not run (probe p16 F10).
	run(t, ctx, "search by a malformed patient identifier",
		chromedp.SendKeys(chromedp.CSS("#f-patient"), "|"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#form-errors")))
	if s := text(t, ctx, "#form-errors"); !strings.Contains(s, "The search was not run") || !strings.Contains(s, "Patient identifier: ") ||
		strings.Contains(s, `"identifier"`) {
		t.Errorf("a malformed patient identifier: %q, want the field named", s)
	}
	if v := eval[string](t, ctx, `document.querySelector("#f-patient").value`); v != "|" {
		t.Errorf("the form keeps the patient identifier as %q, want %q", v, "|")
	}
	eval[bool](t, ctx, `document.querySelector("#f-patient").value = ""; true`)
	run(t, ctx, "search by patient identifier",
		chromedp.SendKeys(chromedp.CSS("#f-patient"), "MRN-TEST-000123"),
		chromedp.Click(chromedp.CSS("form.search button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#h-results")))
	if u := location(t, ctx); strings.Contains(u, "MRN") {
		t.Errorf("the patient identifier is in the address: %s", u)
	}
	rows := text(t, ctx, "table.data tbody")
	if !strings.Contains(rows, "ingest") {
		t.Fatalf("the search found no ingest request: %q", rows)
	}
	if st := text(t, ctx, "#h-results + p[role=status]"); !regexp.MustCompile(`^AuditEvents 1 to \d+ of \d+, newest first`).MatchString(st) {
		t.Errorf("the results do not say the total: %q", st)
	}
	run(t, ctx, "open the ingest request",
		chromedp.Click(`//tr[contains(., "ingest")]//a[text()="Open"]`),
		chromedp.WaitVisible(chromedp.CSS("#h-timeline")))
	tl := text(t, ctx, "ol.timeline")
	for _, want := range []string{"Received and stored", "Delivery attempt 1 to ehr", "HTTP 200", "(this one)"} {
		if !strings.Contains(tl, want) {
			t.Errorf("timeline lacks %q:\n%s", want, tl)
		}
	}
	run(t, ctx, "open the EHR's answer", chromedp.Click(chromedp.CSS("details.answer summary")))
	answer := text(t, ctx, "details.answer pre")
	if !strings.Contains(answer, "transaction-response") || !strings.Contains(answer, "201 Created") {
		t.Errorf("the EHR's answer is not shown: %.200s", answer)
	}
	if w := get(t, ctx, "read the receipt", chromedp.TextContent(chromedp.CSS("#h-written + .receipt"))); !strings.Contains(w, "Observation/") {
		t.Errorf("the resources written are not listed: %q", w)
	}
}

// TestOperatorRetriesDeadLetter: an operator finds a dead letter with the
// EHR's OperationOutcome, is refused a form without its CSRF token, then
// retries with a confirmation, and the record is delivered.
func TestOperatorRetriesDeadLetter(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, true)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	id := g.waitDelivery(t, "dead")

	run(t, ctx, "list dead letters",
		chromedp.Navigate(g.base+"/console/deliveries?status=dead"),
		chromedp.WaitVisible(chromedp.CSS("#h-list")))
	checkLabels(t, ctx)
	if s := text(t, ctx, "#h-charts + p + .charts"); !strings.Contains(s, "ehr") {
		t.Errorf("no backlog chart for the destination: %q", s)
	}
	run(t, ctx, "open the dead letter",
		chromedp.Click(chromedp.CSS("table#deliveries tbody a")),
		chromedp.WaitVisible(chromedp.CSS("table.ehr-outcome")))
	// Summarised at first: the EHR's texts may hold patient data.
	if s := text(t, ctx, "table.ehr-outcome"); strings.Contains(s, rejectText) || !strings.Contains(s, "business-rule") {
		t.Errorf("the EHR's OperationOutcome, summarised: %q; want its code and not its text", s)
	}
	if s := text(t, ctx, "details.answer summary"); !strings.Contains(s, "summarised: 1 text or resource left out") {
		t.Errorf("the summarised answer is labelled %q; want it to say it is summarised and what was left out", s)
	}
	run(t, ctx, "show the EHR's answers in full",
		chromedp.Click(chromedp.CSS("#answers-full")),
		chromedp.WaitVisible(`//a[contains(., "Show them summarised")]`))
	if s := text(t, ctx, "table.ehr-outcome"); !strings.Contains(s, rejectText) {
		t.Errorf("the EHR's OperationOutcome is not shown in full: %q", s)
	}
	if s := text(t, ctx, "details.answer summary"); !strings.Contains(s, "as received") {
		t.Errorf("the answer in full is labelled %q; want \"as received\"", s)
	}
	run(t, ctx, "ask to retry",
		chromedp.Click(`//a[contains(., "Retry this delivery")]`),
		chromedp.WaitVisible(`//button[contains(., "Yes, retry")]`))

	// A form without the CSRF token is refused, and nothing changes.
	eval[bool](t, ctx, `document.querySelector("main form input[name=csrf]").remove(); true`)
	run(t, ctx, "submit without the token",
		chromedp.Click(`//button[contains(., "Yes, retry")]`),
		chromedp.WaitVisible(chromedp.CSS(".problem")))
	if s := text(t, ctx, ".problem"); !strings.Contains(s, "403") || !strings.Contains(s, "form was refused") {
		t.Errorf("a form without its token: %q", s)
	}
	g.waitDelivery(t, "dead") // still dead
	// The refusal is audited naming the delivery (and its record and
	// patient), as the API's refused retry is (probe p16 F7).
	var refused struct{ Total int }
	g.api(t, "GET", "/fhir/AuditEvent?subtype=delivery-retry&outcome=4&_total=accurate&entity:identifier="+
		url.QueryEscape("https://ketamine-gateway.org/fhir/sid/delivery|"+id), "", &refused)
	if refused.Total != 1 {
		t.Errorf("the refused retry's AuditEvents naming the delivery: %d, want 1", refused.Total)
	}

	e.accept()
	run(t, ctx, "retry for real",
		chromedp.Navigate(g.base+"/console/deliveries/"+id+"/retry"),
		chromedp.Click(`//button[contains(., "Yes, retry")]`),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if s := text(t, ctx, ".flash"); !strings.Contains(s, "queued again") {
		t.Errorf("after the retry: %q", s)
	}
	if done := g.waitDelivery(t, "done"); done != id {
		t.Errorf("delivered %s, want %s", done, id)
	}

	// The deliveries pages viewed are in the patient's audit trail (probe
	// p16 F13).
	var pats struct {
		Entry []struct{ Resource struct{ ID string } }
	}
	g.api(t, "GET", "/fhir/Patient?identifier=MRN-TEST-000123", "", &pats)
	if len(pats.Entry) != 1 {
		t.Fatalf("patients of MRN-TEST-000123: %d, want 1", len(pats.Entry))
	}
	listed := func() int {
		var out struct{ Total int }
		g.api(t, "GET", "/fhir/AuditEvent?subtype=delivery-list&_total=accurate&patient=Patient/"+pats.Entry[0].Resource.ID, "", &out)
		return out.Total
	}
	before := listed()
	run(t, ctx, "list the deliveries",
		chromedp.Navigate(g.base+"/console/deliveries"),
		chromedp.WaitVisible(chromedp.CSS("#h-list")))
	if after := listed(); after != before+1 {
		t.Errorf("viewing the deliveries page added %d AuditEvents naming the patient whose deliveries it lists, want 1", after-before)
	}

	// The request that stored the record tells, of each attempt, what
	// became of it: the rejected first one was not delivered (and sent
	// again), not "now done" (probe p16 F8).
	var ingests struct {
		Entry []struct{ Resource struct{ ID string } }
	}
	g.api(t, "GET", "/fhir/AuditEvent?subtype=ingest", "", &ingests)
	if len(ingests.Entry) != 1 {
		t.Fatalf("ingest AuditEvents: %d, want 1", len(ingests.Entry))
	}
	run(t, ctx, "open the request that stored the record",
		chromedp.Navigate(g.base+"/console/audit/events/"+ingests.Entry[0].Resource.ID),
		chromedp.WaitVisible(chromedp.CSS("#h-timeline")))
	attempts := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("li.ev-attempt > p:not(.at)")).map(p => p.innerText)`)
	if len(attempts) != 2 || !strings.Contains(attempts[0], "HTTP 422") || !strings.Contains(attempts[0], "Not delivered; sent again (attempt 2).") ||
		strings.Contains(attempts[0], "is now") || !strings.Contains(attempts[1], "Delivered.") {
		t.Errorf("the timeline's attempts read %q; want the first not delivered and sent again, the second delivered", attempts)
	}
	if s := text(t, ctx, "#h-written + .receipt ul.deliveries"); !strings.Contains(s, "delivery "+id+" to ehr: done after 2 attempts") {
		t.Errorf("the record written shows its delivery as %q, want done after 2 attempts", s)
	}
}

// TestPlaygroundHighlightsError: a record with an error is mapped in the
// playground and the error is highlighted at its field, linked to its rule.
func TestPlaygroundHighlightsError(t *testing.T) {
	ctx := browser(t)
	g := start(t)
	b, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatal(err)
	}
	rec["items"].([]any)[2].(map[string]any)["score"] = 7 // PHQ-9 items score 0 to 3
	bad, _ := json.MarshalIndent(rec, "", "  ")

	run(t, ctx, "open the playground",
		chromedp.Navigate(g.base+"/console/playground"),
		chromedp.WaitVisible(chromedp.CSS("#p-record")))
	checkLabels(t, ctx)
	run(t, ctx, "map the record",
		chromedp.SetValue(chromedp.CSS("#p-kind"), "assessment"),
		chromedp.SetValue(chromedp.CSS("#p-record"), string(bad)),
		chromedp.Click(chromedp.CSS("form.playground button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("ol.issues")))
	marked := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("pre.record mark")).map(m => m.id)`)
	if len(marked) != 1 || marked[0] != "ptr/items/2/score" {
		t.Errorf("highlighted %v, want [ptr/items/2/score]", marked)
	}
	field := text(t, ctx, `mark[id="ptr/items/2/score"]`)
	if !strings.Contains(field, `"score": 7`) {
		t.Errorf("the highlight is on %q, want the score of item 3", field)
	}
	ruleHref := get(t, ctx, "read the rule link", chromedp.AttributeValue(chromedp.CSS("ol.issues a.rule"), "href")).Value
	if !strings.HasPrefix(ruleHref, "/console/rules#rule-") {
		t.Errorf("rule link = %q", ruleHref)
	}
	run(t, ctx, "follow the issue to its field",
		chromedp.Click(chromedp.CSS(`ol.issues a[href="#ptr/items/2/score"]`)))
	focused := eval[string](t, ctx, `document.activeElement.id`)
	if focused != "ptr/items/2/score" {
		t.Errorf("focus after following the issue = %q", focused)
	}
}

// freePort returns a loopback address nothing listens on (the console's
// redirect URL must be known before the gateway starts).
func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// oidcGateway starts a gateway whose console signs people in at a stub
// issuer: alice is an auditor, olga an operator.
func oidcGateway(t *testing.T, extra ...string) (*gateway, *issuer) {
	is := newIssuer(t, "kg-console")
	addr := freePort(t)
	cfg := map[string]any{"console": map[string]any{
		"issuer": is.URL, "clientId": "kg-console", "clientSecret": "s3cret", "redirectUrl": "http://" + addr + "/console/callback",
		"roleClaim": "groups", "auditors": []string{"kg-auditors"}, "operators": []string{"kg-operators"}, "nameClaim": "email",
		"traceUrl": "https://tracing.example.org/trace/{traceId}",
	}}
	b, _ := json.Marshal(cfg)
	file := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	g := start(t, append([]string{"--addr", addr, "--config", file}, extra...)...)
	return g, is
}

var (
	alice = map[string]any{"sub": "u-1", "email": "alice@example.org", "groups": []string{"kg-auditors"}}
	olga  = map[string]any{"sub": "u-2", "email": "olga@example.org", "groups": []string{"kg-operators"}}
)

// TestAuditorSeesBrokenChain: after a record of the audit chain was
// changed, verifying it in the console names where it broke and the last
// intact record, shows the head the database holds, and does not call
// either a head to record (probe p8 F15).
func TestAuditorSeesBrokenChain(t *testing.T) {
	ctx := browser(t)
	g := start(t)
	g.ingest(t, "assessment", "phq9-moderate.json")
	raw, err := sql.Open("sqlite", "file:"+g.db+"?_pragma=busy_timeout(10000)") // the gateway writes meanwhile (its audit index)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// Page views are audited: the chain holds records past the one
	// changed below once they are chained.
	run(t, ctx, "open pages", chromedp.Navigate(g.base+"/console/deliveries"), chromedp.Navigate(g.base+"/console/deliveries"),
		chromedp.Navigate(g.base+"/console/deliveries"))
	deadline := time.Now().Add(30 * time.Second)
	for n := 0; n < 3; {
		if err := raw.QueryRow(`SELECT count(*) FROM audit_chain`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("the audit chain holds %d records, want 3", n)
		}
		time.Sleep(20 * time.Millisecond) // polling the chain the gateway writes
	}
	// The auditor verifies the intact chain, writes its head down, and
	// gives it back as an anchor: held.
	factsOf := func(box string) map[string]string {
		return eval[map[string]string](t, ctx, `Object.fromEntries(Array.from(document.querySelectorAll("`+box+` dt"))
  .map(dt => [dt.innerText.trim(), dt.nextElementSibling.innerText.trim()]))`)
	}
	run(t, ctx, "verify the intact chain",
		chromedp.Navigate(g.base+"/console/audit/chain"),
		chromedp.WaitVisible(`//button[text()="Verify the chain now"]`),
		chromedp.Click(`//button[text()="Verify the chain now"]`),
		chromedp.WaitVisible(chromedp.CSS("div.ok dl.facts")))
	checkLabels(t, ctx)
	m := regexp.MustCompile(`^record (\d+), hash ([0-9a-f]{64})$`).FindStringSubmatch(factsOf("div.ok")["Head"])
	if m == nil {
		t.Fatalf("the intact chain's facts %v name no head", factsOf("div.ok"))
	}
	run(t, ctx, "verify with a malformed anchor",
		chromedp.SetValue(chromedp.CSS("#c-anchors"), "abc"),
		chromedp.Click(`//button[text()="Verify the chain now"]`),
		chromedp.WaitVisible(chromedp.CSS("#form-errors")))
	summaryLinks(t, ctx, "#c-anchors") // (probe p45: the summary did not link)
	run(t, ctx, "verify with the head as an anchor",
		chromedp.SetValue(chromedp.CSS("#c-anchors"), m[1]+":"+m[2]),
		chromedp.Click(`//button[text()="Verify the chain now"]`),
		chromedp.WaitVisible(`//dt[text()="Anchors"]`))
	if a := factsOf("div.ok")["Anchors"]; a != "record "+m[1]+", hash "+m[2]+": held" {
		t.Errorf("the anchor reads %q, want held", a)
	}
	if _, err := raw.Exec(`UPDATE audit_chain SET hash = CASE WHEN hash LIKE '00%' THEN 'ff' ELSE '00' END || substr(hash, 3) WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	// The field keeps the anchor: verifying again checks it.
	run(t, ctx, "verify the chain",
		chromedp.Click(`//button[text()="Verify the chain now"]`),
		chromedp.WaitVisible(chromedp.CSS("div.problem")))
	checkLabels(t, ctx)
	facts := factsOf("div.problem")
	// The anchor is past the broken link, where the walk stopped: not
	// checked, not "cut off" (probe p39 F2).
	if a := facts["Anchors"]; a != "record "+m[1]+", hash "+m[2]+": not checked: the chain is broken at record 2, before this anchor" {
		t.Errorf("the anchor reads %q, want not checked", a)
	}
	if s := text(t, ctx, "div.problem strong"); !strings.HasPrefix(s, "Broken at record 2") {
		t.Errorf("the verification says %q, want broken at record 2", s)
	}
	if !strings.HasPrefix(facts["Last intact record"], "record 1, hash ") || !strings.HasPrefix(facts["Head the database holds (not verified)"], "record ") {
		t.Errorf("the broken chain's facts %v, want the last intact record 1 and the stored head", facts)
	}
	if _, ok := facts["Head"]; ok {
		t.Errorf("the broken chain's facts %v name a head", facts)
	}
	if s := text(t, ctx, "p.hint"); strings.Contains(s, "Record the head") || !strings.Contains(s, "A broken chain has no head to record") {
		t.Errorf("the advice reads %q", s)
	}
}
