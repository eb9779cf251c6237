package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestSinceForm: _since is an instant (R4 history and $everything): a
// date alone, a time without seconds or without a time zone is 400
// search-value-invalid at _since whose text shows the form to send (a
// fixed example, never the value sent), not only "must be an instant"
// (p43 F4).
func TestSinceForm(t *testing.T) {
	h := fhirServer(t)
	pid := seedChain(t, h)
	for _, target := range []string{"/fhir/_history", "/fhir/Patient/_history", "/fhir/Patient/" + pid + "/_history",
		"/fhir/Patient/" + pid + "/$everything"} {
		for _, tc := range []struct{ name, since string }{
			{"a date", "2025-03-04"},
			{"a time without seconds", "2025-03-04T10:11Z"},
			{"a time without a time zone", "2025-03-04T10:11:12"},
			{"a month", "2025-03"},
		} {
			t.Run(target+" "+tc.name, func(t *testing.T) {
				rec := req(h, "GET", target+"?_since="+tc.since, "")
				assertOutcome(t, rec, http.StatusBadRequest, "search-value-invalid", "")
				if !strings.Contains(rec.Body.String(), `"expression":["_since"]`) {
					t.Errorf("GET %s?_since=%s does not name _since: %s", target, tc.since, rec.Body)
				}
				body := rec.Body.String()
				if !strings.Contains(body, "2026-12-06T14:50:00Z") || !strings.Contains(body, "time zone") {
					t.Errorf("GET %s?_since=%s = %s; want the form to send (2026-12-06T14:50:00Z)", target, tc.since, body)
				}
				if strings.Contains(body, tc.since) {
					t.Errorf("GET %s?_since=%s repeats the value sent: %s", target, tc.since, body)
				}
			})
		}
		if rec := req(h, "GET", target+"?_since=2025-03-04T10:11:12%2B01:00", ""); rec.Code != http.StatusOK {
			t.Errorf("GET %s with an instant = %d %s", target, rec.Code, rec.Body)
		}
	}
}

// TestEverythingCountZero: $everything?_count=0 is the total only, as a
// search's and a history's _count=0 (p43 F4): no entries, no next link.
func TestEverythingCountZero(t *testing.T) {
	h := fhirServer(t)
	pid := seedChain(t, h)
	path := "/fhir/Patient/" + pid + "/$everything"
	all := decode(t, req(h, "GET", path, ""))
	for _, tc := range []struct{ method, query, body string }{
		{"GET", "?_count=0", ""},
		{"POST", "", `{"resourceType":"Parameters","parameter":[{"name":"_count","valueInteger":0}]}`},
	} {
		t.Run(tc.method, func(t *testing.T) {
			rec := req(h, tc.method, path+tc.query, tc.body)
			if rec.Code != http.StatusOK {
				t.Fatalf("%s %s%s = %d %s", tc.method, path, tc.query, rec.Code, rec.Body)
			}
			b := decode(t, rec)
			if b["total"] != all["total"] || b["entry"] != nil {
				t.Errorf("%s %s%s: total %v, entries %v; want total %v and no entries", tc.method, path, tc.query, b["total"], b["entry"], all["total"])
			}
			for _, l := range b["link"].([]any) {
				if rel := l.(map[string]any)["relation"]; rel != "self" {
					t.Errorf("%s %s%s has a %v link", tc.method, path, tc.query, rel)
				}
			}
		})
	}
}
