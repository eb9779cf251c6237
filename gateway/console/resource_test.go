package console

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// resourceFixture is a console whose store holds one PHQ-9 record: its
// Observation changed once through the FHIR API (two versions), its
// QuestionnaireResponse, if any, untouched, and one resource deleted.
type resourceFixture struct {
	*fixture
	obs, deleted string // ids
	ingest       string // the ingest's AuditEvent id
	update       string // the update's AuditEvent id
}

func newResourceFixture(t *testing.T) *resourceFixture {
	t.Helper()
	f := newFixture(t, nil)
	doc, err := os.ReadFile(filepath.Join("..", "..", "schemas", "examples", "assessment", "phq9-moderate.json"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := f.app.Ingest.Ingest(ctx, auditlog.NewScope("ingest", f.c.devScope), "assessment", doc, false, engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	rf := &resourceFixture{fixture: f, ingest: lastEvent(t, f.st, "ingest")}
	res, err := f.app.Engine.Search(ctx, auditlog.NewScope("search-type", f.c.devScope), "Observation", url.Values{}, false)
	if err != nil || len(res.Page.Matches) == 0 {
		t.Fatalf("the ingest stored no Observation: %v", err)
	}
	o := res.Page.Matches[0]
	rf.obs = o.ID
	var body map[string]any
	if err := json.Unmarshal(o.Body, &body); err != nil {
		t.Fatal(err)
	}
	body["status"] = "amended"
	b, _ := json.Marshal(body)
	sc := auditlog.NewScope("update", f.c.devScope)
	if _, err := f.app.Engine.Update(ctx, sc, "Observation", o.ID, func() ([]byte, error) { return b, nil }, engine.Preconditions{}); err != nil {
		t.Fatal(err)
	}
	rf.update = lastEvent(t, f.st, "update")
	if len(res.Page.Matches) < 2 {
		t.Fatalf("the ingest stored one Observation; the test deletes a second")
	}
	rf.deleted = res.Page.Matches[1].ID
	sc = auditlog.NewScope("delete", f.c.devScope)
	if _, err := f.app.Engine.Delete(ctx, sc, "Observation", rf.deleted, engine.Preconditions{}); err != nil {
		t.Fatal(err)
	}
	return rf
}

// TestResourcePage: the console's resource page shows the current
// version, the history with who wrote each version (the ingest's request
// and its record, then the update's request) and the difference of two
// versions, its bookkeeping (meta.versionId, lastUpdated) said apart from
// the lines; a deleted resource as deleted; an id of another tenant, or
// none, as not found; a malformed comparison with a clear error at its
// form (probe p39 F10).
func TestResourcePage(t *testing.T) {
	f := newResourceFixture(t)
	other := f.ingestAs(t, "clinic-a", "assessment", "gad7-mild.json") // a Patient of another tenant
	base := "/console/resources/Observation/" + f.obs
	for _, tc := range []struct {
		name, path string
		code       int
		want, not  []string
	}{
		{"view and history", base, 200,
			[]string{`id="current-json"`, `&#34;amended&#34;`, `id="v1"`, `id="v2"`, "/console/audit/events/" + f.ingest, "/console/audit/events/" + f.update,
				"/console/records?source=serenity-clinic-emr&amp;record=ASM-2026-0310-001", `href="?diff=1..2"`},
			[]string{`id="diff"`}},
		{"diff of two versions", base + "?diff=1..2", 200,
			[]string{`id="diff"`, "<dt>meta.versionId</dt><dd>1 → 2</dd>", "<dt>meta.lastUpdated</dt>",
				`<span class="d add"><span class="op" aria-hidden="true">&#43;</span><span class="visually-hidden">added: </span>  &#34;status&#34;: &#34;amended&#34;,</span>`},
			[]string{`</span>    &#34;versionId&#34;`, `</span>    &#34;lastUpdated&#34;`}},
		{"diff by the form, newer first", base + "?from=2&to=1", 200, []string{`id="diff"`, "Version 1 and version 2"}, nil},
		{"deleted resource", "/console/resources/Observation/" + f.deleted, 200,
			[]string{"<strong>Deleted</strong> in version 2", `<tr id="v2" class="deleted">`, "The last version with content, version 1", "delete request</a>"}, nil},
		{"diff with a deletion", "/console/resources/Observation/" + f.deleted + "?diff=1..2", 200,
			[]string{"version 2 (deleted)", `<span class="d del">`}, nil},
		{"another tenant's resource", "/console/resources/" + other, 404, []string{"no such resource"}, []string{"clinic-a"}},
		{"no such id", "/console/resources/Observation/no-such-id", 404, []string{"no such resource"}, nil},
		{"no such type", "/console/resources/Pizza/1", 404, []string{"no such resource"}, nil},
		{"malformed diff", base + "?diff=one..two", 400, []string{"Compare: two different versions of this resource", `aria-invalid="true"`, `id="v2"`}, []string{`id="diff"`}},
		{"one version twice", base + "?diff=2..2", 400, []string{"Compare: two different versions"}, nil},
		{"a version it lacks", base + "?diff=1..9", 400, []string{"Compare: this resource has no version 9"}, []string{`id="diff"`}},
		{"half a form", base + "?from=1", 400, []string{"Compare: choose two versions"}, nil},
		// Where a resource is named, it links to its page.
		{"the record page links", "/console/records?source=serenity-clinic-emr&record=ASM-2026-0310-001", 200,
			[]string{`<a href="` + base + `#v1" class="ref">Observation/` + f.obs + `/_history/1</a>`,
				`href="/console/resources/Observation/` + f.deleted + `" class="ref">`}, nil},
		{"the request page links", "/console/audit/events/" + f.ingest, 200,
			[]string{`<span><a href="/console/resources/Provenance/`}, nil}, // the entity it names (no trace: no receipts listed)
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body, _ := f.get(t, tc.path)
			if code != tc.code {
				t.Errorf("GET %s = %d, want %d:\n%.3000s", tc.path, code, tc.code, body)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					page := body
					if i := strings.Index(page, `id="h-history"`); i >= 0 {
						page = page[i:] // past the current version's JSON
					}
					t.Errorf("GET %s lacks %q:\n%.8000s", tc.path, w, page)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(body, n) {
					t.Errorf("GET %s shows %q", tc.path, n)
				}
			}
			if strings.Contains(body, "goroutine") || strings.Contains(body, ".go:") {
				t.Errorf("GET %s shows internal detail", tc.path)
			}
		})
	}
}

// TestResourcePageAudited: reading a resource in the console is a
// disclosure, audited as the API's history read is: an AuditEvent of the
// person names the versions shown and compared; a read of another
// tenant's resource names nothing of it.
func TestResourcePageAudited(t *testing.T) {
	f := newResourceFixture(t)
	if code, body, _ := f.get(t, "/console/resources/Observation/"+f.obs+"?diff=1..2"); code != http.StatusOK {
		t.Fatalf("GET the resource page = %d:\n%.2000s", code, body)
	}
	ev := newestEvent(t, f.fixture, "", "history-instance")
	for _, want := range []string{"Observation/" + f.obs + "/_history/1", "Observation/" + f.obs + "/_history/2"} {
		if !slices.Contains(ev.Entities, want) {
			t.Errorf("the page's AuditEvent names %v, want %s", ev.Entities, want)
		}
	}
	if ev.Outcome != "0" || ev.Action != "R" || !strings.Contains(ev.Description, "versions 1 and 2 compared") || len(ev.Patients()) == 0 {
		t.Errorf("the page's AuditEvent: outcome %s, action %s, %q, patients %v; want a read that names the patient and the comparison",
			ev.Outcome, ev.Action, ev.Description, ev.Patients())
	}

	// A tenant's auditor asks for the default tenant's resource.
	f.signInAs(t, &auth.Principal{ClientID: "person:ann@clinic-a.example", Tenant: "clinic-a",
		Scopes: auth.ParseScopes(auth.ScopeAuditor + " system/*.rs")})
	if code, _, _ := f.get(t, "/console/resources/Observation/"+f.obs); code != http.StatusNotFound {
		t.Fatalf("another tenant's auditor reads the resource: %d, want 404", code)
	}
	ev = newestEvent(t, f.fixture, "clinic-a", "history-instance")
	if ev.Outcome != "4" || len(ev.Patients()) != 0 {
		t.Errorf("the refused read's AuditEvent: outcome %s, patients %v; want refused, naming no patient", ev.Outcome, ev.Patients())
	}
}

// newestEvent is the newest AuditEvent of tenant of an interaction.
func newestEvent(t *testing.T, f *fixture, tenant, subtype string) auditlog.RequestView {
	t.Helper()
	q, err := search.Parse("AuditEvent", url.Values{"subtype": {subtype}, "_sort": {"-_lastUpdated"}, "_count": {"1"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	q.Tenant = tenant
	page, err := f.st.Search(context.Background(), q)
	if err != nil || len(page.Matches) == 0 {
		t.Fatalf("no AuditEvent of %s in tenant %q: %v", subtype, tenant, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(page.Matches[0].Body, &doc); err != nil {
		t.Fatal(err)
	}
	return auditlog.ViewAuditEvent(doc)
}

// TestContentLines: a version compared is shown as stored: a decimal
// keeps its precision (FHIR's 0.10 is not 0.1), text keeps its
// characters, a deletion has no lines but its version's bookkeeping, and
// meta.versionId and lastUpdated are set apart, the rest of meta kept.
func TestContentLines(t *testing.T) {
	at := time.Date(2026, 12, 6, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		r     *store.Resource
		lines []string
		meta  map[string]string
	}{
		{"content", &store.Resource{Type: "Observation", ID: "o1", Version: 2, Body: []byte(
			`{"resourceType":"Observation","id":"o1","meta":{"versionId":"2","lastUpdated":"2026-12-06T10:00:00.000Z","tag":[{"code":"t"}]},` +
				`"valueQuantity":{"value":0.10},"note":[{"text":"a<b & c"}]}`)},
			[]string{`{`, `  "id": "o1",`, `  "meta": {`, `    "tag": [`, `      {`, `        "code": "t"`, `      }`, `    ]`, `  },`,
				`  "note": [`, `    {`, `      "text": "a<b & c"`, `    }`, `  ],`, `  "resourceType": "Observation",`,
				`  "valueQuantity": {`, `    "value": 0.10`, `  }`, `}`},
			map[string]string{"versionId": "2", "lastUpdated": "2026-12-06T10:00:00.000Z"}},
		{"deletion", &store.Resource{Type: "Observation", ID: "o1", Version: 3, Deleted: true, LastUpdated: at},
			nil, map[string]string{"versionId": "3", "lastUpdated": "2026-12-06T10:00:00.000Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lines, meta, err := contentLines(tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(lines, tc.lines) {
				t.Errorf("contentLines lines =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(tc.lines, "\n"))
			}
			if !maps.Equal(meta, tc.meta) {
				t.Errorf("contentLines meta = %v, want %v", meta, tc.meta)
			}
		})
	}
}

// TestResourcePageSharedType: a tenant's auditor may read a resource the
// gateway publishes to every tenant (a ValueSet, held by the default
// tenant), and its page names no request of another tenant as its writer:
// a default-tenant client's batch that named it stays the default
// tenant's (the writers were searched in the default tenant when the
// reader's had no lineage of the resource).
func TestResourcePageSharedType(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	res, err := f.app.Engine.Search(ctx, auditlog.NewScope("search-type", f.c.devScope), "ValueSet", url.Values{}, false)
	if err != nil || len(res.Page.Matches) == 0 {
		t.Fatalf("no published ValueSet: %v", err)
	}
	vs := res.Page.Matches[0].ID
	sc := auditlog.NewScope("batch", f.c.devScope)
	sc.ClientID = "default-tenant-client"
	body := `{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"ValueSet/` + vs + `"}}]}`
	if _, err := f.app.Engine.Bundle(ctx, sc, []byte(body), engine.Answer{}); err != nil {
		t.Fatal(err)
	}
	if err := f.app.Audit.Append(sc, http.StatusOK); err != nil {
		t.Fatal(err)
	}
	batch := newestEvent(t, f, "", "batch")
	f.signInAs(t, &auth.Principal{ClientID: "person:ann@clinic-a.example", Tenant: "clinic-a",
		Scopes: auth.ParseScopes(auth.ScopeAuditor + " system/*.rs")})
	code, page, _ := f.get(t, "/console/resources/ValueSet/"+vs)
	if code != http.StatusOK {
		t.Fatalf("a tenant's auditor reads a published ValueSet: %d, want 200", code)
	}
	for _, leak := range []string{batch.AuditEvent, "default-tenant-client"} {
		if strings.Contains(page, leak) {
			t.Errorf("the clinic-a auditor's page names the default tenant's request (%s)", leak)
		}
	}
}
