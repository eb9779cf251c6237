package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestPrettyEverywhere: _pretty=true indents every FHIR answer (http.html,
// general parameters), a read, vread and the representation a write
// answers with as much as a search.
func TestPrettyEverywhere(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/pp1", `{"resourceType":"Patient","id":"pp1","gender":"male"}`); rec.Code != http.StatusCreated {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	for _, c := range []struct{ name, method, target, body, ctype string }{
		{"read", "GET", "/fhir/Patient/pp1?_pretty=true", "", ""},
		{"vread", "GET", "/fhir/Patient/pp1/_history/1?_pretty=true", "", ""},
		{"create", "POST", "/fhir/Patient?_pretty=true", `{"resourceType":"Patient"}`, ""},
		{"update", "PUT", "/fhir/Patient/pp1?_pretty=true", `{"resourceType":"Patient","id":"pp1","gender":"female"}`, ""},
		{"patch", "PATCH", "/fhir/Patient/pp1?_pretty=true", `[{"op":"replace","path":"/gender","value":"other"}]`, "Content-Type: application/json-patch+json"},
		{"search", "GET", "/fhir/Patient?_pretty=true", "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var hs []string
			if c.ctype != "" {
				hs = append(hs, c.ctype)
			}
			rec := req(h, c.method, c.target, c.body, hs...)
			if rec.Code >= 300 {
				t.Fatalf("%s %s = %d %s", c.method, c.target, rec.Code, rec.Body)
			}
			if !strings.HasPrefix(rec.Body.String(), "{\n  \"resourceType\": ") {
				t.Errorf("%s %s answered %.60q, want it indented", c.method, c.target, rec.Body.String())
			}
			plain := req(h, "GET", strings.Replace(c.target, "?_pretty=true", "", 1), "")
			if c.method == "GET" && strings.Contains(plain.Body.String(), "\n") {
				t.Errorf("GET %s without _pretty is indented", c.target)
			}
		})
	}
}

// TestPagingLinksKeepFormat (p15 F1): the self, next and previous links
// of a search, a compartment search, $everything and a history keep
// _format and _pretty, so that a client that chose the format with
// _format (it cannot set Accept) gets every page in it.
func TestPagingLinksKeepFormat(t *testing.T) {
	h := fhirServer(t)
	if rec := req(h, "PUT", "/fhir/Patient/pf1", `{"resourceType":"Patient","id":"pf1"}`); rec.Code != http.StatusCreated {
		t.Fatalf("PUT = %d %s", rec.Code, rec.Body)
	}
	for i := range 3 {
		body := `{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/pf1"},"valueString":"` + strings.Repeat("v", i+1) + `"}`
		if rec := req(h, "POST", "/fhir/Observation", body); rec.Code != http.StatusCreated {
			t.Fatalf("POST = %d %s", rec.Code, rec.Body)
		}
	}
	const format = "_format=text%2Fjson&_pretty=true"
	for _, target := range []string{
		"/fhir/Observation?_count=1&" + format,
		"/fhir/Observation?_count=1&_sort=date&" + format, // paged by offset
		"/fhir/Patient/pf1/Observation?_count=1&" + format,
		"/fhir/Patient/pf1/$everything?_count=1&" + format,
		"/fhir/Observation/_history?_count=1&" + format,
	} {
		t.Run(target, func(t *testing.T) {
			next := target
			for page := 0; page < 2; page++ {
				rec := req(h, "GET", next, "")
				if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/json; charset=utf-8" ||
					!strings.HasPrefix(rec.Body.String(), "{\n  \"resourceType\": ") {
					t.Fatalf("GET %s = %d %s, %.40q; want 200 text/json, indented", next, rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
				}
				next = ""
				links := decode(t, rec)["link"].([]any)
				for _, l := range links {
					l := l.(map[string]any)
					u := l["url"].(string)
					if !strings.Contains(u, "_format=text%2Fjson") || !strings.Contains(u, "_pretty=true") {
						t.Errorf("page %d's %s link %s lacks _format or _pretty", page+1, l["relation"], u)
					}
					if l["relation"] == "next" {
						next = u[strings.Index(u, "/fhir/"):]
					}
				}
				if page == 1 && len(links) < 2 {
					t.Errorf("page 2 of %s has links %v, want self and previous", target, links)
				}
				if next == "" {
					t.Fatalf("page %d of %s has no next link", page+1, target)
				}
			}
		})
	}
}
