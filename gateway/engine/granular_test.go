package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// The granular scopes' tests: a hospital given the vital signs
// (system/Observation.rs restricted to the vital-signs category) sees the
// vital-sign Observation and nothing of the PHQ-9 Observation of the same
// patient, by every way a resource leaves the engine.

const (
	catSystem     = "http://terminology.hl7.org/CodeSystem/observation-category"
	vitalScope    = "system/Observation.rs?category=" + catSystem + "|vital-signs"
	hospitalScope = vitalScope + " system/Patient.rs"
)

// chart is a clinic's patient with a vital-sign and a PHQ-9 Observation.
type chart struct {
	a                    *app.App
	patient, vital, phq9 string
}

func observation(category, code, patient string) map[string]any {
	return map[string]any{"resourceType": "Observation", "status": "final",
		"category": []any{map[string]any{"coding": []any{map[string]any{"system": catSystem, "code": category}}}},
		"code":     map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": code}}},
		"subject":  map[string]any{"reference": patient}}
}

func newChart(t *testing.T) *chart {
	t.Helper()
	return newChartWith(t, search.Limits{})
}

// newChartWith is newChart with the search limits limits.
func newChartWith(t *testing.T, limits search.Limits) *chart {
	t.Helper()
	return newChartConfig(t, app.Config{SearchLimits: limits})
}

// newChartConfig is newChart with the engine configured as cfg says (its
// store and background work the chart's own).
func newChartConfig(t *testing.T, cfg app.Config) *chart {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "granular.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cfg.Store, cfg.BacklogEvery, cfg.NoJobRunner = db, -1, true
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	const pu = "urn:uuid:0b7e6c1e-1111-4b6e-9c1a-000000000001"
	entry := func(fullURL string, r map[string]any) map[string]any {
		return map[string]any{"fullUrl": fullURL, "resource": r,
			"request": map[string]any{"method": "POST", "url": r["resourceType"]}}
	}
	body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
		entry(pu, map[string]any{"resourceType": "Patient", "gender": "female"}),
		entry("urn:uuid:0b7e6c1e-2222-4b6e-9c1a-000000000002", observation("vital-signs", "85354-9", pu)),
		entry("urn:uuid:0b7e6c1e-3333-4b6e-9c1a-000000000003", observation("survey", "44261-6", pu)),
	}})
	res, err := a.Engine.Bundle(ctx, clinic("transaction"), body, engine.Answer{Base: "https://gw/fhir"})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range res.Entry {
		ids = append(ids, strings.Split(e.Response.Location, "/")[1])
	}
	return &chart{a: a, patient: ids[0], vital: ids[1], phq9: ids[2]}
}

func clinic(interaction string) *auditlog.Scope {
	return auditlog.NewScope(interaction, &auth.Principal{ClientID: "clinic", Tenant: "clinic-a",
		Scopes: auth.ParseScopes("system/*.cruds")})
}

func hospital(interaction, scopes string) *auditlog.Scope {
	return auditlog.NewScope(interaction, &auth.Principal{ClientID: "hospital", Tenant: "clinic-a",
		Scopes: auth.ParseScopes(scopes)})
}

// ids are the Type/id of rs.
func ids(rs []*store.Resource) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Type+"/"+r.ID)
	}
	return out
}

func wantKind(t *testing.T, what string, err error, want outcome.Kind) {
	t.Helper()
	if k, _ := outcome.From(err); err == nil || k != want {
		t.Errorf("%s = %v, want %v", what, err, want.HTTPStatus())
	}
}

// wantRule checks that err is an OperationOutcome of kind want whose
// first issue has rule.
func wantRule(t *testing.T, what string, err error, want outcome.Kind, rule string) {
	t.Helper()
	k, issues := outcome.From(err)
	if err == nil || k != want || len(issues) == 0 || issues[0].Rule != rule {
		t.Errorf("%s = %v, want %d %s", what, err, want.HTTPStatus(), rule)
	}
}

// TestGranularReads: read, vread, _include/_revinclude and a Bundle's GET
// entries show a hidden resource as one of another tenant: not found.
func TestGranularReads(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	e := c.a.Engine
	t.Run("read", func(t *testing.T) {
		if _, err := e.Read(ctx, hospital("read", hospitalScope), "Observation", c.vital); err != nil {
			t.Errorf("Read(vital) = %v, want it", err)
		}
		_, err := e.Read(ctx, hospital("read", hospitalScope), "Observation", c.phq9)
		wantRule(t, "Read(PHQ-9)", err, outcome.NotFound, "resource-unknown")
	})
	t.Run("vread", func(t *testing.T) {
		if _, err := e.VRead(ctx, hospital("vread", hospitalScope), "Observation", c.vital, "1"); err != nil {
			t.Errorf("VRead(vital) = %v, want it", err)
		}
		// A hidden resource answers every version as one of another
		// tenant does: a version it has and one it never had alike.
		for _, v := range []string{"1", "9"} {
			_, err := e.VRead(ctx, hospital("vread", hospitalScope), "Observation", c.phq9, v)
			wantRule(t, "VRead(PHQ-9, "+v+")", err, outcome.NotFound, "resource-unknown")
		}
	})
	t.Run("revinclude", func(t *testing.T) {
		res, err := e.Search(ctx, hospital("search-type", hospitalScope), "Patient",
			url.Values{"_revinclude": {"Observation:subject"}}, false)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(ids(res.Page.Included), " ")
		if got != "Observation/"+c.vital || res.Withheld != 0 {
			t.Errorf("Patient?_revinclude=Observation:subject included %q, withheld %d; want only the vital sign, none counted",
				got, res.Withheld)
		}
	})
	t.Run("bundle GET", func(t *testing.T) {
		body, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "batch", "entry": []any{
			map[string]any{"request": map[string]any{"method": "GET", "url": "Observation/" + c.vital}},
			map[string]any{"request": map[string]any{"method": "GET", "url": "Observation/" + c.phq9}},
		}})
		res, err := e.Bundle(ctx, hospital("batch", hospitalScope), body, engine.Answer{Base: "https://gw/fhir"})
		if err != nil {
			t.Fatal(err)
		}
		if s := res.Entry[0].Response.Status; !strings.HasPrefix(s, "200") {
			t.Errorf("GET Observation/vital = %s, want 200", s)
		}
		if s := res.Entry[1].Response.Status; !strings.HasPrefix(s, "404") || res.Entry[1].Resource != nil {
			t.Errorf("GET Observation/phq9 = %s with resource %s, want 404 without it", s, res.Entry[1].Resource)
		}
	})
}

// TestGranularSearch: a search of a restricted type answers the resources
// the restriction selects, and its total counts only them.
func TestGranularSearch(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	tests := []struct {
		name, scopes string
		params       url.Values
		want         []string // the matches' ids; nil with rule
		rule         string
	}{
		{"all", hospitalScope, url.Values{}, []string{c.vital}, ""},
		{"by patient", hospitalScope, url.Values{"patient": {c.patient}}, []string{c.vital}, ""},
		{"by the PHQ-9's code", hospitalScope, url.Values{"code": {"44261-6"}}, []string{}, ""},
		{"count", hospitalScope, url.Values{"_summary": {"count"}}, []string{}, ""},
		{"unrestricted too", hospitalScope + " system/Observation.s", url.Values{}, []string{c.vital, c.phq9}, ""},
		{"two of one param", vitalScope + " system/Observation.rs?category=survey", url.Values{}, []string{c.vital, c.phq9}, ""},
		{"two params", vitalScope + " system/Observation.rs?code=44261-6", url.Values{}, nil, "scope-restriction-unenforceable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := c.a.Engine.Search(ctx, hospital("search-type", tt.scopes), "Observation", tt.params, false)
			if tt.rule != "" {
				k, issues := outcome.From(err)
				if err == nil || k != outcome.Forbidden || issues[0].Rule != tt.rule {
					t.Fatalf("Search = %v, want 403 %s", err, tt.rule)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			wantTotal := len(tt.want)
			if tt.name == "count" {
				wantTotal = 1
			}
			var got []string
			for _, r := range res.Page.Matches {
				got = append(got, r.ID)
			}
			if len(got) != len(tt.want) || res.Page.Total != wantTotal || res.Withheld != 0 {
				t.Errorf("Search(Observation?%s) = %v, total %d, withheld %d; want %v, total %d, none withheld",
					tt.params.Encode(), got, res.Page.Total, res.Withheld, tt.want, wantTotal)
			}
			for _, id := range tt.want {
				if !strings.Contains(strings.Join(got, " "), id) {
					t.Errorf("Search(Observation?%s) = %v, want %s among them", tt.params.Encode(), got, id)
				}
			}
		})
	}
}

// TestGranularHistoryEverything: an instance's history shows the versions
// the restriction selects (a hidden resource has none: not found); a
// type's history and $everything of the restricted type cannot be confined
// exactly, and tell nothing of the hidden resources.
func TestGranularHistoryEverything(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	e := c.a.Engine
	// The vital sign gets a second version outside the restriction
	// (re-categorised as a survey), then a third back in it.
	for i, cat := range []string{"survey", "vital-signs"} {
		doc := observation(cat, "85354-9", "Patient/"+c.patient)
		doc["id"] = c.vital
		b, _ := json.Marshal(doc)
		if _, err := e.Update(ctx, clinic("update"), "Observation", c.vital, func() ([]byte, error) { return b, nil },
			engine.Preconditions{}); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	t.Run("instance", func(t *testing.T) {
		h, err := e.History(ctx, hospital("history-instance", hospitalScope), "Observation", c.vital, url.Values{}, false)
		if err != nil {
			t.Fatal(err)
		}
		var vs []int64
		for _, v := range h.Versions {
			vs = append(vs, v.Version)
		}
		if h.Total != 2 || len(vs) != 2 || vs[0] != 3 || vs[1] != 1 {
			t.Errorf("History(vital) = versions %v, total %d; want [3 1], 2", vs, h.Total)
		}
		h, err = e.History(ctx, hospital("history-instance", hospitalScope), "Observation", c.vital,
			url.Values{"_count": {"1"}, "_offset": {"1"}}, false)
		if err != nil || h.Total != 2 || len(h.Versions) != 1 || h.Versions[0].Version != 1 {
			t.Errorf("History(vital, _count=1&_offset=1) = %v, %v; want version 1 of 2", h, err)
		}
	})
	t.Run("hidden instance", func(t *testing.T) {
		_, err := e.History(ctx, hospital("history-instance", hospitalScope), "Observation", c.phq9, url.Values{}, false)
		wantRule(t, "History(PHQ-9)", err, outcome.NotFound, "resource-unknown")
	})
	t.Run("type", func(t *testing.T) {
		_, err := e.History(ctx, hospital("history-type", hospitalScope), "Observation", "", url.Values{}, false)
		k, issues := outcome.From(err)
		if err == nil || k != outcome.Forbidden || issues[0].Rule != "scope-restriction-unenforceable" {
			t.Errorf("History(Observation) = %v, want 403 scope-restriction-unenforceable", err)
		}
	})
	t.Run("everything", func(t *testing.T) {
		res, err := e.Everything(ctx, hospital("operation", hospitalScope), c.patient, url.Values{})
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(ids(res.Page.Matches), " ")
		if got != "Patient/"+c.patient || res.Page.Total != 1 || res.Withheld != 0 || len(res.Warnings) != 1 {
			t.Errorf("$everything = %s, total %d, withheld %d, warnings %v; want the Patient alone, total 1, a warning",
				got, res.Page.Total, res.Withheld, res.Warnings)
		}
		_, err = e.Everything(ctx, hospital("operation", hospitalScope), c.patient, url.Values{"_type": {"Observation"}})
		if k, issues := outcome.From(err); err == nil || k != outcome.Forbidden || issues[0].Rule != "scope-restriction-unenforceable" {
			t.Errorf("$everything?_type=Observation = %v, want 403 scope-restriction-unenforceable", err)
		}
	})
}

// TestGranularWrites: a write through a granular scope must leave a
// version the restriction selects and, for an update or delete, find one;
// otherwise 403 scope-restriction-write and nothing is written.
// Conditional criteria find only what the caller's search would.
func TestGranularWrites(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	e := c.a.Engine
	const writer = "system/Observation.cud?category=" + catSystem + "|vital-signs " + hospitalScope
	body := func(category, code, id string) engine.Body {
		doc := observation(category, code, "Patient/"+c.patient)
		if id != "" {
			doc["id"] = id
		}
		b, _ := json.Marshal(doc)
		return func() ([]byte, error) { return b, nil }
	}
	count := func() int {
		res, err := e.Search(ctx, clinic("search-type"), "Observation", url.Values{"_summary": {"count"}}, false)
		if err != nil {
			t.Fatal(err)
		}
		return res.Page.Total
	}
	// reader writes what its granular scope selects, and reads every
	// Observation: the PHQ-9 is no secret to it.
	const reader = "system/Observation.u?category=" + catSystem + "|vital-signs system/Observation.rs"
	tests := []struct {
		name    string
		do      func() (*engine.Result, error)
		allowed bool
		added   int    // Observations the write adds
		rule    string // the refusal's rule, when not allowed ("" for scope-restriction-write)
	}{
		{"create a vital sign", func() (*engine.Result, error) {
			return e.Create(ctx, hospital("create", writer), "Observation", body("vital-signs", "8867-4", ""), engine.Preconditions{})
		}, true, 1, ""},
		{"create a survey", func() (*engine.Result, error) {
			return e.Create(ctx, hospital("create", writer), "Observation", body("survey", "44261-6", ""), engine.Preconditions{})
		}, false, 0, ""},
		{"conditional create matching only a hidden resource", func() (*engine.Result, error) {
			return e.Create(ctx, hospital("create", writer), "Observation", body("vital-signs", "44261-6", ""),
				engine.Preconditions{IfNoneExist: "code=44261-6"})
		}, true, 1, ""},
		{"update a vital sign into a survey", func() (*engine.Result, error) {
			return e.Update(ctx, hospital("update", writer), "Observation", c.vital, body("survey", "85354-9", c.vital), engine.Preconditions{})
		}, false, 0, ""},
		// The PHQ-9 is hidden from writer: as another tenant's resource.
		{"update the PHQ-9 into a vital sign", func() (*engine.Result, error) {
			return e.Update(ctx, hospital("update", writer), "Observation", c.phq9, body("vital-signs", "44261-6", c.phq9), engine.Preconditions{})
		}, false, 0, "id-unavailable"},
		{"patch the PHQ-9 in a transaction", func() (*engine.Result, error) {
			patch, _ := json.Marshal(map[string]any{"resourceType": "Parameters", "parameter": []any{map[string]any{
				"name": "operation", "part": []any{
					map[string]any{"name": "type", "valueCode": "replace"},
					map[string]any{"name": "path", "valueString": "Observation.status"},
					map[string]any{"name": "value", "valueCode": "amended"}}}}})
			var p map[string]any
			_ = json.Unmarshal(patch, &p)
			b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": p, "request": map[string]any{"method": "PATCH", "url": "Observation/" + c.phq9}},
			}})
			_, err := e.Bundle(ctx, hospital("transaction", writer), b, engine.Answer{Base: "https://gw/fhir"})
			return nil, err
		}, false, 0, "resource-unknown"},
		{"delete the PHQ-9 in a transaction", func() (*engine.Result, error) {
			b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"request": map[string]any{"method": "DELETE", "url": "Observation/" + c.phq9}},
			}})
			res, err := e.Bundle(ctx, hospital("transaction", writer), b, engine.Answer{Base: "https://gw/fhir"})
			if err == nil && !strings.HasPrefix(res.Entry[0].Response.Status, "204") {
				t.Errorf("DELETE entry = %s, want 204", res.Entry[0].Response.Status)
			}
			return nil, err
		}, true, 0, ""},
		{"update the PHQ-9, which the writer may read", func() (*engine.Result, error) {
			return e.Update(ctx, hospital("update", reader), "Observation", c.phq9, body("vital-signs", "44261-6", c.phq9), engine.Preconditions{})
		}, false, 0, ""},
		{"delete the PHQ-9, which the writer may read", func() (*engine.Result, error) {
			return e.Delete(ctx, hospital("delete", "system/Observation.d?category="+catSystem+"|vital-signs system/Observation.rs"),
				"Observation", c.phq9, engine.Preconditions{})
		}, false, 0, ""},
		{"update a vital sign", func() (*engine.Result, error) {
			return e.Update(ctx, hospital("update", writer), "Observation", c.vital, body("vital-signs", "8480-6", c.vital), engine.Preconditions{})
		}, true, 0, ""},
		// Hidden: deleted as another tenant's resource is, which changes
		// nothing (204).
		{"delete the PHQ-9", func() (*engine.Result, error) {
			return e.Delete(ctx, hospital("delete", writer), "Observation", c.phq9, engine.Preconditions{})
		}, true, 0, ""},
		{"transaction with a survey", func() (*engine.Result, error) {
			b, _ := json.Marshal(map[string]any{"resourceType": "Bundle", "type": "transaction", "entry": []any{
				map[string]any{"resource": observation("vital-signs", "8867-4", "Patient/"+c.patient), "request": map[string]any{"method": "POST", "url": "Observation"}},
				map[string]any{"resource": observation("survey", "44261-6", "Patient/"+c.patient), "request": map[string]any{"method": "POST", "url": "Observation"}},
			}})
			_, err := e.Bundle(ctx, hospital("transaction", writer), b, engine.Answer{Base: "https://gw/fhir"})
			return nil, err
		}, false, 0, ""},
		{"delete a vital sign", func() (*engine.Result, error) {
			return e.Delete(ctx, hospital("delete", writer), "Observation", c.vital, engine.Preconditions{})
		}, true, -1, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := count()
			res, err := tt.do()
			if tt.allowed {
				if err != nil {
					t.Fatalf("%s = %v, want it done", tt.name, err)
				}
				if tt.added == 1 && (res == nil || !res.Created) {
					t.Errorf("%s: created %v, want a new resource", tt.name, res != nil && res.Created)
				}
			} else if tt.rule == "" {
				wantRule(t, tt.name, err, outcome.Forbidden, "scope-restriction-write")
			} else {
				wantRule(t, tt.name, err, outcome.NotFound, tt.rule)
			}
			if got := count(); got != before+tt.added {
				t.Errorf("%s: Observations %d -> %d, want %d", tt.name, before, got, before+tt.added)
			}
		})
	}
	if r, err := e.Read(ctx, clinic("read"), "Observation", c.phq9); err != nil || !strings.Contains(string(r.Body), "survey") {
		t.Errorf("the PHQ-9 after the refused writes = %v, want it unchanged", err)
	}
}

// TestGranularLinked: a chain or _has into a restricted type would select
// by hidden resources: refused, whether it would match or not; one from
// the restricted type to another is confined as the search is.
func TestGranularLinked(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	tests := []struct {
		name, typ string
		params    url.Values
		want      int // matches; -1 refused
	}{
		{"_has the PHQ-9", "Patient", url.Values{"_has:Observation:patient:code": {"44261-6"}}, -1},
		{"_has the vital sign", "Patient", url.Values{"_has:Observation:patient:code": {"85354-9"}}, -1},
		{"_has nothing", "Patient", url.Values{"_has:Observation:patient:code": {"0000-0"}}, -1},
		{"chain from the restricted type", "Observation", url.Values{"patient.gender": {"female"}}, 1},
		{"conditional criteria with _has", "Patient", nil, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			var n int
			if tt.params == nil {
				b, _ := json.Marshal(map[string]any{"resourceType": "Patient", "gender": "male"})
				_, err = c.a.Engine.Create(ctx, hospital("create", hospitalScope+" system/Patient.c"), "Patient",
					func() ([]byte, error) { return b, nil }, engine.Preconditions{IfNoneExist: "_has:Observation:patient:code=44261-6"})
			} else {
				var res *engine.SearchResult
				res, err = c.a.Engine.Search(ctx, hospital("search-type", hospitalScope), tt.typ, tt.params, false)
				if err == nil {
					n = len(res.Page.Matches)
					if res.Page.Total != n {
						t.Errorf("%s: total %d, matches %d", tt.name, res.Page.Total, n)
					}
				}
			}
			if tt.want < 0 {
				if k, issues := outcome.From(err); err == nil || k != outcome.Forbidden || issues[0].Rule != "scope-restriction-unenforceable" {
					t.Errorf("%s = %v, want 403 scope-restriction-unenforceable", tt.name, err)
				}
				return
			}
			if err != nil || n != tt.want {
				t.Errorf("%s = %d matches, %v; want %d", tt.name, n, err, tt.want)
			}
		})
	}
}

// TestGranularBlindWrite: a caller that writes a type unrestricted but
// reads it through a granular scope is told nothing of a resource's
// versions by a failed precondition (the 412 of a blind write), and of a
// hidden resource not even that it exists: its update answers as an
// unused id's (404 id-unavailable), not 412.
func TestGranularBlindWrite(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	update := func(id string) error {
		doc := observation("vital-signs", "8867-4", "Patient/"+c.patient)
		doc["id"] = id
		b, _ := json.Marshal(doc)
		_, err := c.a.Engine.Update(ctx, hospital("update", hospitalScope+" system/Observation.u"), "Observation", id,
			func() ([]byte, error) { return b, nil }, engine.Preconditions{IfMatch: `W/"7"`})
		return err
	}
	k, issues := outcome.From(update(c.vital))
	if k != outcome.PreconditionFailed || len(issues) == 0 || !strings.Contains(issues[0].Message, "its version is not told") {
		t.Errorf("Update(vital, If-Match 7) = %v %v, want a 412 that does not tell the version", k, issues)
	}
	hk, hidden := outcome.From(update(c.phq9))
	uk, unused := outcome.From(update("unused-id"))
	if hk != outcome.NotFound || uk != hk || len(hidden) == 0 || len(unused) == 0 || hidden[0].Rule != unused[0].Rule {
		t.Errorf("Update(PHQ-9, If-Match 7) = %v %v, of an unused id %v %v: want the same 404", hk, hidden, uk, unused)
	}
}

// TestGranularPatchReads: a patch answers content the client did not send
// (and a JSON Patch test is an oracle of it), so a caller that reads the
// type through a granular scope may patch only what it may read: a hidden
// resource is not found, as its read is, even with an unrestricted u.
func TestGranularPatchReads(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	scopes := hospitalScope + " system/Observation.u"
	patch := func(id string) engine.Body {
		b := []byte(`[{"op":"test","path":"/status","value":"final"}]`)
		return func() ([]byte, error) { return b, nil }
	}
	if _, err := c.a.Engine.Patch(ctx, hospital("patch", scopes), "Observation", c.vital, engine.PatchJSON, patch(c.vital), engine.Preconditions{}); err != nil {
		t.Errorf("Patch(vital) = %v, want it applied", err)
	}
	res, err := c.a.Engine.Patch(ctx, hospital("patch", scopes), "Observation", c.phq9, engine.PatchJSON, patch(c.phq9), engine.Preconditions{})
	if k, issues := outcome.From(err); err == nil || k != outcome.NotFound || issues[0].Rule != "resource-unknown" {
		t.Errorf("Patch(PHQ-9) = %v, %v; want 404 resource-unknown as its read", res, err)
	}
	// So with a granular u too: the 404 of its read, not a 403 that would
	// tell the PHQ-9 exists.
	scopes = hospitalScope + " system/Observation.u?category=" + catSystem + "|vital-signs"
	_, err = c.a.Engine.Patch(ctx, hospital("patch", scopes), "Observation", c.phq9, engine.PatchJSON, patch(c.phq9), engine.Preconditions{})
	wantRule(t, "Patch(PHQ-9) with a granular u", err, outcome.NotFound, "resource-unknown")
}

// TestGranularDeleted: a deletion has no content to select; it is shown
// (410) to a caller whose restriction selected the resource's last
// version, and to another as a resource of another tenant (404): a 410
// would tell that a hidden resource existed.
func TestGranularDeleted(t *testing.T) {
	c := newChart(t)
	ctx := context.Background()
	e := c.a.Engine
	for _, id := range []string{c.vital, c.phq9} {
		if _, err := e.Delete(ctx, clinic("delete"), "Observation", id, engine.Preconditions{}); err != nil {
			t.Fatal(err)
		}
	}
	read := func(id string) error {
		_, err := e.Read(ctx, hospital("read", hospitalScope), "Observation", id)
		return err
	}
	vread := func(id, v string) error {
		_, err := e.VRead(ctx, hospital("vread", hospitalScope), "Observation", id, v)
		return err
	}
	tests := []struct {
		name string
		err  error
		want outcome.Kind
		rule string // "" for any
	}{
		{"read the vital sign", read(c.vital), outcome.Gone, ""},
		{"read the PHQ-9", read(c.phq9), outcome.NotFound, "resource-unknown"},
		{"vread the vital sign's deletion", vread(c.vital, "2"), outcome.Gone, ""},
		{"vread the PHQ-9's deletion", vread(c.phq9, "2"), outcome.NotFound, "resource-unknown"},
		{"vread the deleted PHQ-9's content", vread(c.phq9, "1"), outcome.NotFound, "resource-unknown"},
		{"vread a version the vital sign never had", vread(c.vital, "9"), outcome.NotFound, "version-unknown"},
		{"vread a version the PHQ-9 never had", vread(c.phq9, "9"), outcome.NotFound, "resource-unknown"},
	}
	for _, tt := range tests {
		k, issues := outcome.From(tt.err)
		if tt.err == nil || k != tt.want || tt.rule != "" && issues[0].Rule != tt.rule {
			t.Errorf("%s = %v, want %d %s", tt.name, tt.err, tt.want.HTTPStatus(), tt.rule)
		}
	}
	// A client syncing by history learns of the deletion of a resource
	// it could read; of the PHQ-9's, nothing.
	h, err := e.History(ctx, hospital("history-instance", hospitalScope), "Observation", c.vital, url.Values{}, false)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, v := range h.Versions {
		got = append(got, fmt.Sprintf("%d deleted=%t", v.Version, v.Deleted))
	}
	if want := "2 deleted=true, 1 deleted=false"; strings.Join(got, ", ") != want || h.Total != 2 {
		t.Errorf("History(vital) = %v, total %d; want %s, total 2", got, h.Total, want)
	}
	_, err = e.History(ctx, hospital("history-instance", hospitalScope), "Observation", c.phq9, url.Values{}, false)
	wantRule(t, "History(PHQ-9)", err, outcome.NotFound, "resource-unknown")
}

// TestGranularIncludeBounds: the included resources' bound and the
// include-iterate-incomplete warning count what the caller is told of
// (shown, or withheld for a type it cannot read at all), never a resource
// a granular scope hides: reacting to one would tell that it exists.
func TestGranularIncludeBounds(t *testing.T) {
	ctx := context.Background()
	t.Run("bound", func(t *testing.T) {
		// The Patient's two Observations exceed a bound of one; the
		// caller is shown one of them.
		c := newChartWith(t, search.Limits{Included: 1})
		res, err := c.a.Engine.Search(ctx, hospital("search-type", hospitalScope), "Patient",
			url.Values{"_revinclude": {"Observation:subject"}}, false)
		if err != nil {
			t.Fatalf("Patient?_revinclude=Observation:subject with a bound of 1 = %v, want the vital sign", err)
		}
		if got := strings.Join(ids(res.Page.Included), " "); got != "Observation/"+c.vital {
			t.Errorf("included %q, want the vital sign", got)
		}
		// Without granular scopes, both count.
		_, err = c.a.Engine.Search(ctx, clinic("search-type"), "Patient",
			url.Values{"_revinclude": {"Observation:subject"}}, false)
		wantRule(t, "the clinic's Patient?_revinclude=Observation:subject with a bound of 1", err,
			outcome.Invalid, "search-limit-exceeded")
	})
	t.Run("iterate", func(t *testing.T) {
		// a -> b -> c (vital signs) -> h (a survey): one further round
		// reaches c; the one after would reach only h.
		c := newChartWith(t, search.Limits{IncludeRounds: 1})
		member := ""
		var last string
		for _, cat := range []string{"survey", "vital-signs", "vital-signs", "vital-signs"} {
			doc := observation(cat, "85354-9", "Patient/"+c.patient)
			if member != "" {
				doc["hasMember"] = []any{map[string]any{"reference": "Observation/" + member}}
			}
			b, _ := json.Marshal(doc)
			res, err := c.a.Engine.Create(ctx, clinic("create"), "Observation", func() ([]byte, error) { return b, nil },
				engine.Preconditions{})
			if err != nil {
				t.Fatal(err)
			}
			member, last = res.Resource.ID, res.Resource.ID
		}
		params := url.Values{"_id": {last}, "_include:iterate": {"Observation:has-member"}}
		res, err := c.a.Engine.Search(ctx, hospital("search-type", hospitalScope), "Observation", params, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Page.Included) != 2 || len(res.Warnings) != 0 || res.Withheld != 0 {
			t.Errorf("Observation?%s = %d included, warnings %v, withheld %d; want 2, no warning, none",
				params.Encode(), len(res.Page.Included), res.Warnings, res.Withheld)
		}
		res, err = c.a.Engine.Search(ctx, clinic("search-type"), "Observation", params, false)
		if err != nil || len(res.Warnings) != 1 || res.Warnings[0].Rule != "include-iterate-incomplete" {
			t.Errorf("the clinic's Observation?%s = %v, warnings %v; want include-iterate-incomplete", params.Encode(), err, res)
		}
	})
}
