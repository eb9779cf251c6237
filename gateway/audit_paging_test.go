package gateway_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// auditPage GETs target and returns the ids of its AuditEvents, its total,
// its self link's parameters and the path of its next link ("" without
// one).
func auditPage(t *testing.T, h http.Handler, target string) (ids []string, total int, self url.Values, next string) {
	t.Helper()
	rec := req(h, "GET", target, "")
	if rec.Code != 200 {
		t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
	}
	b := decode(t, rec)
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		if r, ok := e.(map[string]any)["resource"].(map[string]any); ok && r["resourceType"] == "AuditEvent" {
			ids = append(ids, r["id"].(string))
		}
	}
	n, _ := b["total"].(float64)
	for _, l := range b["link"].([]any) {
		l := l.(map[string]any)
		u := l["url"].(string)
		path := u[strings.Index(u, "/fhir/"):]
		switch l["relation"] {
		case "next":
			next = path
		case "self":
			pu, err := url.Parse(path)
			if err != nil {
				t.Fatalf("self link %q: %v", u, err)
			}
			self = pu.Query()
		}
	}
	return ids, int(n), self, next
}

// TestAuditEventPagingSnapshot: the pages of a search of AuditEvents are
// one set, the AuditEvents recorded before its first page (finding p16
// F2). Every page read is itself audited and names the patient whose
// trail is paged, so it is a new match: unbounded, newest first
// (_sort=-date, paged by offset) repeated entries, and oldest first (the
// _cursor order) grew by a match a page and, at _count=1, never ended. In
// each order and page size the walk returns exactly the first page's
// total, each AuditEvent once, and ends; the total does not change; the
// first walk finds every AuditEvent recorded before it, the request just
// before it included, and each later walk also the pages of the walks
// before it. With a clock that stands still (every request in one
// millisecond) too. The bound is a _lastUpdated criterion the links show.
func TestAuditEventPagingSnapshot(t *testing.T) {
	servers := []struct {
		name string
		h    http.Handler
	}{{"clock", fhirServer(t)}, {"frozen clock", frozenServer(t)}}
	for _, srv := range servers {
		t.Run(srv.name, func(t *testing.T) {
			h := srv.h
			if rec := req(h, "PUT", "/fhir/Patient/snap", `{"resourceType":"Patient","id":"snap"}`); rec.Code != 201 {
				t.Fatalf("PUT Patient = %d %s", rec.Code, rec.Body)
			}
			const reads = 6
			for range reads {
				if rec := req(h, "GET", "/fhir/Patient/snap", ""); rec.Code != 200 {
					t.Fatalf("GET Patient = %d %s", rec.Code, rec.Body)
				}
			}
			want := 1 + reads // the AuditEvents naming the patient: its creation, its reads, then each page read
			for _, order := range []string{"", "&_sort=date", "&_sort=-date", "&_sort=-_lastUpdated"} {
				for _, count := range []int{1, 2} {
					first := fmt.Sprintf("/fhir/AuditEvent?patient=Patient/snap&_count=%d%s", count, order)
					t.Run(fmt.Sprintf("_count=%d%s", count, order), func(t *testing.T) {
						seen := map[string]bool{}
						var walked []string
						target, pages, total := first, 0, -1
						for target != "" {
							if pages > 2*want+5 {
								t.Fatalf("%s: still a next link after %d pages (%d AuditEvents, total %d)", first, pages, len(walked), total)
							}
							ids, n, self, next := auditPage(t, h, target)
							pages++
							if total < 0 {
								total = n
								if total != want {
									t.Errorf("%s: first page's total = %d, want %d (every AuditEvent naming the patient before the walk)", first, total, want)
								}
								if dates := self["_lastUpdated"]; len(dates) != 1 || !strings.HasPrefix(dates[0], "lt") {
									t.Errorf("%s: the self link's _lastUpdated = %q, want the bound lt<instant>", first, dates)
								}
							} else if n != total {
								t.Errorf("%s: page %d total = %d, want the first page's %d", first, pages, n, total)
							}
							for _, id := range ids {
								if seen[id] {
									t.Errorf("%s: page %d repeats AuditEvent %s", first, pages, id)
								}
								seen[id] = true
							}
							walked = append(walked, ids...)
							target = next
						}
						if len(walked) != total {
							t.Errorf("%s: the walk returned %d AuditEvents, want the total %d", first, len(walked), total)
						}
						want += pages // each page read left an AuditEvent naming the patient
					})
				}
			}
			// The other types page as before, unbounded: a sync sees the
			// writes between pages (TestPagingCursor).
			if _, _, self, _ := auditPage(t, h, "/fhir/Patient?_id=snap&_count=1"); self.Has("_lastUpdated") {
				t.Errorf("a Patient search's self link has _lastUpdated %q, want no bound", self["_lastUpdated"])
			}
			// The CapabilityStatement says so.
			rec := req(h, "GET", "/fhir/metadata", "")
			var cs struct {
				Rest []struct {
					Resource []struct{ Type, Documentation string }
				}
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &cs); err != nil || len(cs.Rest) == 0 {
				t.Fatalf("metadata: %v %.200s", err, rec.Body)
			}
			for _, r := range cs.Rest[0].Resource {
				if r.Type == "AuditEvent" && !strings.Contains(r.Documentation, "snapshot") {
					t.Errorf("the CapabilityStatement's AuditEvent documentation = %q, want it to say a search is a snapshot", r.Documentation)
				}
			}
		})
	}
}
