package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

// included lists a searchset's entries as id:mode (an outcome's rules as
// outcome:rule), in order.
func included(t *testing.T, h http.Handler, target string) []string {
	t.Helper()
	rec := req(h, "GET", target, "")
	if rec.Code != 200 {
		t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
	}
	var out []string
	for _, e := range decode(t, rec)["entry"].([]any) {
		e := e.(map[string]any)
		r := e["resource"].(map[string]any)
		mode := e["search"].(map[string]any)["mode"].(string)
		if mode == "outcome" {
			for _, is := range r["issue"].([]any) {
				for _, c := range is.(map[string]any)["details"].(map[string]any)["coding"].([]any) {
					out = append(out, "outcome:"+c.(map[string]any)["code"].(string))
				}
			}
			continue
		}
		out = append(out, r["id"].(string)+":"+mode)
	}
	return out
}

// TestIncludeIterate: _include:iterate and _revinclude:iterate (and
// :recurse) apply again to what they included until nothing new comes
// (search.html#include), within the included resources' bound, and stop
// after Limits.IncludeRounds further rounds saying so.
func TestIncludeIterate(t *testing.T) {
	limits := search.Limits{IncludeRounds: 2}
	h, st := sqliteServer(t, app.Config{SearchLimits: limits, UpdateCreate: true})
	put := func(h http.Handler, id, member string) {
		t.Helper()
		doc := `{"resourceType":"Observation","id":"` + id + `","status":"final","code":{"text":"` + id + `"}`
		if member != "" {
			doc += `,"hasMember":[{"reference":"Observation/` + member + `"}]`
		}
		if rec := req(h, "PUT", "/fhir/Observation/"+id, doc+"}"); rec.Code != 200 && rec.Code != 201 {
			t.Fatalf("PUT Observation/%s = %d %s", id, rec.Code, rec.Body)
		}
	}
	// a -> b -> c -> d -> e, each a member of the one before.
	for _, p := range [][2]string{{"e", ""}, {"d", "e"}, {"c", "d"}, {"b", "c"}, {"a", "b"}} {
		put(h, p[0], p[1])
	}
	cut := "outcome:include-iterate-incomplete"
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"_id=c&_include=Observation:has-member", []string{"c:match", "d:include"}},
		{"_id=c&_include:iterate=Observation:has-member", []string{"c:match", "d:include", "e:include"}},
		{"_id=c&_revinclude:iterate=Observation:has-member", []string{"c:match", "b:include", "a:include"}},
		{"_id=c&_revinclude:recurse=Observation:has-member", []string{"c:match", "b:include", "a:include"}},
		{"_id=e&_revinclude=Observation:has-member", []string{"e:match", "d:include"}},
		// Both ways at once: each round follows both from what the round
		// before added.
		{"_id=c&_include:iterate=Observation:has-member&_revinclude:iterate=Observation:has-member",
			[]string{"c:match", "b:include", "d:include", "a:include", "e:include"}},
		// Two further rounds (IncludeRounds) and the third would add e.
		{"_id=a&_include:iterate=Observation:has-member", []string{"a:match", "b:include", "c:include", "d:include", cut}},
		{"_id=b&_include:iterate=Observation:has-member", []string{"b:match", "c:include", "d:include", "e:include"}},
		// A resource reached again (a match, or included before) is not
		// included again, and a cycle ends.
		{"_id=b,d&_include:iterate=Observation:has-member", []string{"d:match", "b:match", "c:include", "e:include"}},
	} {
		if got := included(t, h, "/fhir/Observation?"+tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("Observation?%s = %v, want %v", tc.query, got, tc.want)
		}
	}
	put(h, "e", "c") // now a cycle: c -> d -> e -> c
	want := []string{"c:match", "d:include", "e:include"}
	if got := included(t, h, "/fhir/Observation?_id=c&_include:iterate=Observation:has-member"); !slices.Equal(got, want) {
		t.Errorf("a cycle = %v, want %v", got, want)
	}
	// Every round's resources count against the included bound.
	h2, _ := sqliteServer(t, app.Config{SearchLimits: search.Limits{Included: 2}, UpdateCreate: true})
	for _, p := range [][2]string{{"e", ""}, {"d", "e"}, {"c", "d"}, {"b", "c"}} {
		put(h2, p[0], p[1])
	}
	if got := included(t, h2, "/fhir/Observation?_id=c&_include:iterate=Observation:has-member"); len(got) != 3 {
		t.Errorf("two included within a bound of 2 = %v", got)
	}
	assertOutcome(t, req(h2, "GET", "/fhir/Observation?_id=b&_include:iterate=Observation:has-member", ""),
		http.StatusBadRequest, "search-limit-exceeded", "")

	// A round starts from what the caller was shown of the round before:
	// for a client that may not see Procedures, the Patient of the
	// Procedure an Observation is part of is not included by way of that
	// Procedure (which is withheld).
	pat := decode(t, req(h, "POST", "/fhir/Patient", `{"resourceType":"Patient"}`))["id"].(string)
	proc := decode(t, req(h, "POST", "/fhir/Procedure", `{"resourceType":"Procedure","status":"completed","subject":{"reference":"Patient/`+pat+`"}}`))["id"].(string)
	req(h, "PUT", "/fhir/Observation/o", `{"resourceType":"Observation","id":"o","status":"final","code":{"text":"o"},"partOf":[{"reference":"Procedure/`+proc+`"}]}`)
	e := engine.New(engine.Config{Store: st, SearchLimits: limits})
	params := url.Values{"_id": {"o"}, "_include:iterate": {"Observation:part-of", "Procedure:subject"}}
	for _, tc := range []struct {
		scopes   string
		want     []string
		withheld int
	}{
		{"system/*.rs", []string{"Patient/" + pat, "Procedure/" + proc}, 0},
		{"system/Observation.rs system/Patient.rs", nil, 1},
	} {
		sc := auditlog.NewScope("search-type", &auth.Principal{ClientID: "c", Scopes: auth.ParseScopes(tc.scopes)})
		res, err := e.Search(context.Background(), sc, "Observation", params, false)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range res.Page.Included {
			got = append(got, r.Type+"/"+r.ID)
		}
		slices.Sort(got)
		slices.Sort(tc.want)
		if !slices.Equal(got, tc.want) || res.Withheld != tc.withheld {
			t.Errorf("for %s: included %v, %d withheld; want %v, %d withheld", strings.Fields(tc.scopes), got, res.Withheld, tc.want, tc.withheld)
		}
	}
}
