package console

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestAuditorComparesResourceVersions: an auditor opens a source record,
// follows one of the resources it produced to the resource's page, reads
// who wrote each version (the ingest, delivered; then a client's PUT) and
// compares the two versions: the changed element is the one line removed
// and added, and the versions' bookkeeping (meta.versionId, lastUpdated)
// is said apart, not among the lines (probe p39 F10).
func TestAuditorComparesResourceVersions(t *testing.T) {
	ctx := browser(t)
	e := newEHR(t, false)
	g := start(t, "--ehr-url", e.URL)
	g.ingest(t, "assessment", "phq9-moderate.json")
	g.waitDelivery(t, "done")

	// A client changes one Observation of the record through the FHIR API.
	var found struct {
		Entry []struct{ Resource map[string]any }
	}
	if code := g.api(t, "GET", "/fhir/Observation?_count=1", "", &found); code != http.StatusOK || len(found.Entry) == 0 {
		t.Fatalf("GET /fhir/Observation = %d, %d entries", code, len(found.Entry))
	}
	obs := found.Entry[0].Resource
	id, _ := obs["id"].(string)
	was, _ := obs["status"].(string)
	obs["status"] = "amended"
	b, _ := json.Marshal(obs)
	if code := g.api(t, "PUT", "/fhir/Observation/"+id, string(b), nil); code != http.StatusOK {
		t.Fatalf("PUT the Observation = %d", code)
	}

	run(t, ctx, "open the source record",
		chromedp.Navigate(g.base+"/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001"),
		chromedp.WaitVisible(chromedp.CSS("#h-versions")),
		chromedp.Click(chromedp.CSS(".receipt details summary")))
	run(t, ctx, "follow the resource",
		chromedp.Click(chromedp.CSS(`.receipt details a[href^="/console/resources/Observation/`+id+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("#h-history")))
	checkLabels(t, ctx)
	if bad := eval[[]string](t, ctx, landmarksJS); len(bad) > 0 {
		t.Errorf("the resource page: %v", bad)
	}
	if s := text(t, ctx, "#current-status"); !strings.HasPrefix(s, "Version 2, last updated") {
		t.Errorf("the current version is described as %q, want version 2", s)
	}
	shown := eval[string](t, ctx, `document.querySelector("#current-json").textContent`)
	var current map[string]any
	if err := json.Unmarshal([]byte(shown), &current); err != nil || current["status"] != "amended" || current["id"] != id {
		t.Errorf("the current version shown is not the resource as stored (%v): %.300s", err, shown)
	}
	// The history: a row a version, newest first, with its cells' text.
	rows := eval[[][]string](t, ctx, `Array.from(document.querySelectorAll("#versions tbody tr")).map(r =>
	  Array.from(r.cells).map(c => c.innerText.trim()))`)
	if len(rows) != 2 || rows[0][0] != "2" || rows[1][0] != "1" {
		t.Fatalf("the history lists %v, want versions 2 and 1", rows)
	}
	// Columns: version, last updated, change, written by, source record, deliveries, compare.
	if rows[0][2] != "PUT" || !strings.Contains(rows[0][3], "update request") || rows[0][4] != "none" {
		t.Errorf("version 2's row: %q, want a PUT by an update request, from no source record", rows[0])
	}
	if !strings.Contains(rows[1][3], "ingest request") || !strings.Contains(rows[1][4], "ASM-2026-0310-001") ||
		!strings.Contains(rows[1][5], "ehr: done") {
		t.Errorf("version 1's row: %q, want the ingest's request, its record and its delivery done", rows[1])
	}

	run(t, ctx, "compare versions 1 and 2",
		chromedp.SetValue(chromedp.CSS("#d-from"), "1"),
		chromedp.SetValue(chromedp.CSS("#d-to"), "2"),
		chromedp.Click(`//button[text()="Compare"]`),
		chromedp.WaitVisible(chromedp.CSS("#diff")))
	lines := func(class string) []string {
		return eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#diff pre.diff .`+class+`")).map(l =>
		  l.textContent.replace(/^[-+ ](added|removed): /, "").trim())`)
	}
	added, removed := lines("add"), lines("del")
	if !slices.Equal(added, []string{`"status": "amended",`}) || !slices.Equal(removed, []string{`"status": "` + was + `",`}) {
		t.Errorf("the difference: removed %q, added %q; want status %s changed to amended, and nothing else", removed, added, was)
	}
	meta := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#diff-meta dt, #diff-meta dd")).map(e => e.textContent)`)
	if len(meta) != 4 || meta[0] != "meta.versionId" || meta[1] != "1 → 2" || meta[2] != "meta.lastUpdated" {
		t.Errorf("the versions' bookkeeping is shown as %q, want meta.versionId 1 → 2 and meta.lastUpdated", meta)
	}
	if u := location(t, ctx); !strings.Contains(u, "from=1") || !strings.Contains(u, "to=2") {
		t.Errorf("the comparison's address is %s, want the two versions in it", u)
	}
	// On a narrow screen the page scrolls within its boxes, not as a whole.
	run(t, ctx, "a narrow screen", chromedp.EmulateViewport(320, 800), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#diff")))
	if over := eval[int](t, ctx, `document.documentElement.scrollWidth - window.innerWidth`); over > 0 {
		t.Errorf("the resource page is %d pixels wider than a 320-pixel screen", over)
	}
}
