package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// pagesOf follows target's next links to the end and returns each page's
// resources (Type/id, outcomes left out), their JSON bytes and the _offset
// of its next link.
func pagesOf(t *testing.T, h http.Handler, target string) (pages [][]string, sizes, offsets []int) {
	t.Helper()
	return pagesNamed(t, h, target, func(r map[string]any) string { return fmt.Sprint(r["resourceType"], "/", r["id"]) })
}

// pagesNamed is pagesOf naming each resource by name, each request sent
// with headers.
func pagesNamed(t *testing.T, h http.Handler, target string, name func(map[string]any) string, headers ...string) (pages [][]string, sizes, offsets []int) {
	t.Helper()
	for target != "" {
		if len(pages) > 50 {
			t.Fatalf("more than 50 pages (%v)", pages)
		}
		rec := req(h, "GET", target, "", headers...)
		if rec.Code != 200 {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		b := decode(t, rec)
		var page []string
		size := 0
		entries, _ := b["entry"].([]any)
		for _, e := range entries {
			r, ok := e.(map[string]any)["resource"].(map[string]any)
			if !ok || r["resourceType"] == "OperationOutcome" {
				continue
			}
			page = append(page, name(r))
			raw, _ := json.Marshal(r)
			size += len(raw)
		}
		pages, sizes = append(pages, page), append(sizes, size)
		target = ""
		for _, l := range b["link"].([]any) {
			if l := l.(map[string]any); l["relation"] == "next" {
				u := l["url"].(string)
				target = u[strings.Index(u, "/fhir/"):]
				p, err := url.Parse(u)
				if err != nil {
					t.Fatal(err)
				}
				n, _ := strconv.Atoi(p.Query().Get("_offset"))
				offsets = append(offsets, n)
			}
		}
	}
	return pages, sizes, offsets
}

// TestPageBytes (an attacker's review: eight Observations of 3.9 MB made
// one read-only search a 117 MB answer): a page of a search, a history
// and a $everything ends before its _count where its resources would pass
// search.Limits.PageBytes, the first whatever its size, with a next link
// that the following pages continue from, so that paging answers every
// resource once; included resources past the bound are 400
// search-limit-exceeded.
func TestPageBytes(t *testing.T) {
	const limit = 3000
	h, _ := sqliteServer(t, app.Config{SearchLimits: search.Limits{PageBytes: limit}, UpdateCreate: true})
	long := strings.Repeat("x", 900)
	for _, p := range []string{"pa", "pb"} {
		rec := req(h, "PUT", "/fhir/Patient/"+p, `{"resourceType":"Patient","id":"`+p+`","name":[{"text":"`+strings.Repeat("y", 1800)+`"}]}`)
		if rec.Code != 201 {
			t.Fatalf("PUT Patient/%s = %d %s", p, rec.Code, rec.Body)
		}
	}
	var obs []string
	for i := range 7 {
		id := fmt.Sprintf("o%d", i)
		doc := fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final","code":{"text":"pb"},`+
			`"subject":{"reference":"Patient/%s"},"note":[{"text":%q}]}`, id, []string{"pa", "pb"}[i%2], long)
		if i == 3 {
			doc = strings.Replace(doc, long, strings.Repeat("z", 4000), 1) // alone over the bound
		}
		if rec := req(h, "PUT", "/fhir/Observation/"+id, doc); rec.Code != 201 {
			t.Fatalf("PUT Observation/%s = %d %s", id, rec.Code, rec.Body)
		}
		obs = append(obs, "Observation/"+id)
	}
	for _, tc := range []struct {
		name, target string
		want         []string
	}{
		{"search", "/fhir/Observation?code:text=pb&_count=100&_sort=_id", obs},
		{"search by date", "/fhir/Observation?_count=100&_sort=-_lastUpdated", reversed(obs)},
		{"type history", "/fhir/Observation/_history?_count=100", reversed(obs)},
		{"everything", "/fhir/Patient/pa/$everything?_count=100", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pages, sizes, offsets := pagesOf(t, h, tc.target)
			if len(pages) < 3 {
				t.Errorf("%d pages: %v, want the page bound to cut them", len(pages), pages)
			}
			var got []string
			for i, p := range pages {
				if len(p) == 0 || len(p) > 1 && sizes[i] > limit+200 { // (+ the JSON's re-encoding)
					t.Errorf("page %d: %v, %d bytes", i, p, sizes[i])
				}
				got = append(got, p...)
				// The next page's _offset numbers it after what the pages
				// before it held, not after _count each.
				if i < len(offsets) && offsets[i] != len(got) {
					t.Errorf("page %d's next link: _offset %d, want %d", i, offsets[i], len(got))
				}
			}
			want := tc.want
			if want == nil { // $everything: the Patient first, then its Observations in any order
				want = []string{"Patient/pa", "Observation/o0", "Observation/o2", "Observation/o4", "Observation/o6"}
				if len(got) > 0 {
					slices.Sort(got[1:])
				}
			}
			if !slices.Equal(got, want) {
				t.Errorf("paged %v, want %v", got, want)
			}
		})
	}
	// Two Patients of 1.9 KB included by one page: over the bound.
	assertOutcome(t, req(h, "GET", "/fhir/Observation?_id=o0,o1&_include=Observation:subject", ""),
		http.StatusBadRequest, "search-limit-exceeded", "")
	if got := included(t, h, "/fhir/Observation?_id=o0,o2&_include=Observation:subject"); len(got) != 3 {
		t.Errorf("one Patient included = %v", got)
	}
}

// reversed is a reversed copy of s.
func reversed(s []string) []string {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// TestPageBytesRestrictedHistory: the history of a resource read through
// granular scopes, which the engine pages itself from the versions the
// scopes select, is cut by the page bound as the store's pages are: the
// first version whatever its size, the next link from where the page
// ended, and every selected version once.
func TestPageBytesRestrictedHistory(t *testing.T) {
	const limit = 3000
	const vital = "category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
	clients := []auth.Client{
		{ID: "full", Tenant: "clinic-a", Scopes: []string{"system/*.cruds"}},
		{ID: "vitals", Tenant: "clinic-a", Scopes: []string{"system/Observation.rs?" + vital}},
	}
	h, _, tok := clientsServerWith(t, clients, app.Config{SearchLimits: search.Limits{PageBytes: limit}, UpdateCreate: true})
	var want []string // the vital-signs versions, latest first
	for v := 1; v <= 9; v++ {
		category, note := "vital-signs", strings.Repeat("x", 900)+strconv.Itoa(v) // (an update that changes nothing makes no version)
		switch v {
		case 4, 7:
			category = "survey" // not selected by the scope
		case 5:
			note = strings.Repeat("z", 4000) // alone over the bound
		}
		doc := `{"resourceType":"Observation","id":"o","status":"final","category":[{"coding":[{"system":` +
			`"http://terminology.hl7.org/CodeSystem/observation-category","code":"` + category + `"}]}],` +
			`"code":{"text":"bp"},"note":[{"text":"` + note + `"}]}`
		if rec := req(h, "PUT", "/fhir/Observation/o", doc, tok["full"]); rec.Code >= 300 {
			t.Fatalf("PUT version %d = %d %s", v, rec.Code, rec.Body)
		}
		if category == "vital-signs" {
			want = append([]string{strconv.Itoa(v)}, want...)
		}
	}
	version := func(r map[string]any) string { return r["meta"].(map[string]any)["versionId"].(string) }
	pages, sizes, offsets := pagesNamed(t, h, "/fhir/Observation/o/_history?_count=100", version, tok["vitals"])
	if len(pages) < 3 {
		t.Errorf("%d pages: %v, want the page bound to cut them", len(pages), pages)
	}
	var got []string
	for i, p := range pages {
		if len(p) == 0 || len(p) > 1 && sizes[i] > limit+200 {
			t.Errorf("page %d: versions %v, %d bytes", i, p, sizes[i])
		}
		got = append(got, p...)
		if i < len(offsets) && offsets[i] != len(got) {
			t.Errorf("page %d's next link: _offset %d, want %d", i, offsets[i], len(got))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("paged versions %v, want %v", got, want)
	}
}
