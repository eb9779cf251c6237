package auditlog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// eventView is what TestShares compares of an event.
type eventView struct {
	tenant   string
	patients []string
	entities []string
	named    []string
}

// viewEvents decodes evs' tenants, patients, entities and identified
// things (the request id left out).
func viewEvents(t *testing.T, evs []event) []eventView {
	t.Helper()
	var out []eventView
	for _, ev := range evs {
		v := eventView{tenant: ev.res.Tenant}
		doc := struct {
			Entity []struct {
				Role struct{ Code string }
				What struct {
					Reference  string
					Identifier struct{ System, Value string }
				}
			}
		}{}
		if err := json.Unmarshal(ev.res.Body, &doc); err != nil {
			t.Fatal(err)
		}
		for _, e := range doc.Entity {
			switch {
			case e.Role.Code == "1":
				v.patients = append(v.patients, e.What.Reference)
			case e.What.Reference != "":
				v.entities = append(v.entities, e.What.Reference)
			case e.What.Identifier.System != audit.SystemRequestID:
				v.named = append(v.named, e.What.Identifier.Value)
			}
		}
		out = append(out, v)
	}
	return out
}

// TestShares: an all-tenant request's AuditEvent is kept whole in
// search.AllTenantsAudit, and each tenant whose resources, patients or
// records it named gets its share, naming only its own, by the owner the
// scope recorded or, failing that, the stored resource's tenant; what no
// tenant is found for is only in the whole event. A tenant-bound
// request's is unchanged (one event, its tenant, nothing looked up).
func TestShares(t *testing.T) {
	l := New(nil, Config{Observer: "gw", Now: func() time.Time { return time.Unix(1e9, 0) }})
	stored := map[string]string{"Patient/pd": "clinic-d", "Patient/pe": "", "Observation/od": "clinic-d"}
	var looked []string
	read := func(typ, id string) (*store.Resource, error) {
		looked = append(looked, typ+"/"+id)
		switch tenant, ok := stored[typ+"/"+id]; {
		case typ == "Patient" && id == "boom":
			return nil, store.ErrUnavailable
		case ok:
			return &store.Resource{Type: typ, ID: id, Tenant: tenant}, nil
		}
		return nil, store.ErrNotFound
	}
	res := func(tenant, typ, id, body string) *store.Resource {
		return &store.Resource{Type: typ, ID: id, Version: 1, Tenant: tenant, Body: []byte(body)}
	}
	all := &auth.Principal{ClientID: "opAll", Tenant: search.AllTenants}

	sc := NewScope("search-type", all)
	sc.Touch(res("clinic-a", "Observation", "oa", `{"subject":{"reference":"Patient/pa"}}`),
		res("clinic-b", "Patient", "pb", `{}`),
		// An all-tenant request's own AuditEvent is no tenant's: its
		// patients are looked up.
		res(search.AllTenantsAudit, "AuditEvent", "ae", `{"entity":[{"what":{"reference":"Patient/pd"}}]}`))
	sc.ConcernIn("clinic-c", "Patient/pc")
	sc.Concern("Patient/pe", "Patient/px") // pe: the default tenant's; px: stored nowhere
	sc.refer(audit.Entity{Type: "Observation", ID: "od"})
	sc.NameRecordIn("clinic-a", "sys", "rec-a")
	sc.NameRecord("sys", "rec-unknown")
	evs, err := l.events(sc, 200, read)
	if err != nil {
		t.Fatal(err)
	}
	got := viewEvents(t, evs)
	want := []eventView{
		{search.AllTenantsAudit, []string{"Patient/pa", "Patient/pb", "Patient/pd", "Patient/pc", "Patient/pe", "Patient/px"},
			[]string{"Observation/oa/_history/1", "Patient/pb/_history/1", "AuditEvent/ae/_history/1", "Observation/od"}, []string{"rec-a", "rec-unknown"}},
		{"", []string{"Patient/pe"}, nil, nil},
		{"clinic-a", []string{"Patient/pa"}, []string{"Observation/oa/_history/1"}, []string{"rec-a"}},
		{"clinic-b", []string{"Patient/pb"}, []string{"Patient/pb/_history/1"}, nil},
		{"clinic-c", []string{"Patient/pc"}, nil, nil},
		{"clinic-d", []string{"Patient/pd"}, []string{"Observation/od"}, nil},
	}
	if len(got) != len(want) {
		t.Fatalf("events = %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.tenant != w.tenant || !slices.Equal(g.patients, w.patients) || !slices.Equal(g.entities, w.entities) || !slices.Equal(g.named, w.named) {
			t.Errorf("event %d = %+v, want %+v", i, g, w)
		}
	}
	for i, ev := range evs[1:] {
		var doc struct {
			OutcomeDesc string
			Source      struct{ Site string }
		}
		if err := json.Unmarshal(ev.res.Body, &doc); err != nil {
			t.Fatal(err)
		}
		whose := fmt.Sprintf("tenant %q", ev.res.Tenant)
		if ev.res.Tenant == "" {
			whose = "the default tenant"
		}
		if want := "HTTP 200 OK: the share of " + whose + " of an all-tenant client's request"; !strings.HasPrefix(doc.OutcomeDesc, want) || doc.Source.Site != "*" {
			t.Errorf("share %d says %q, site %q; want %q…, site *", i+1, doc.OutcomeDesc, doc.Source.Site, want)
		}
	}
	slices.Sort(looked)
	if w := []string{"Observation/od", "Patient/pd", "Patient/pe", "Patient/px"}; !slices.Equal(looked, w) {
		t.Errorf("looked up %v, want %v (only what the scope knew no tenant of, once each)", looked, w)
	}

	// A lookup that fails fails the AuditEvent (and so the answer).
	sc = NewScope("read", all)
	sc.Concern("Patient/boom")
	if _, err := l.events(sc, 200, read); !errors.Is(err, store.ErrUnavailable) {
		t.Errorf("events with a failing lookup = %v, want ErrUnavailable", err)
	}

	// A share naming more patients than one AuditEvent may is split too.
	sc = NewScope("job-download", all)
	for i := range patientsPerEvent + 1 {
		sc.ConcernIn("clinic-a", fmt.Sprintf("Patient/p%d", i))
	}
	evs, err = l.events(sc, 200, read)
	if err != nil {
		t.Fatal(err)
	}
	if got := viewEvents(t, evs); len(got) != 4 || got[2].tenant != "clinic-a" || len(got[2].patients) != patientsPerEvent || got[3].tenant != "clinic-a" {
		t.Errorf("%d events for %d patients of one tenant, want 2 whole and 2 of its share", len(got), patientsPerEvent+1)
	}

	// A tenant-bound request: one event in its tenant, nothing looked up.
	looked = nil
	sc = NewScope("read", &auth.Principal{ClientID: "clinB", Tenant: "clinic-b"})
	sc.Touch(res("clinic-b", "Patient", "pb", `{}`))
	sc.Concern("Patient/pd")
	evs, err = l.events(sc, 200, read)
	if err != nil {
		t.Fatal(err)
	}
	if got := viewEvents(t, evs); len(got) != 1 || got[0].tenant != "clinic-b" || len(looked) != 0 {
		t.Errorf("tenant-bound events = %+v (looked up %v), want one of clinic-b, nothing looked up", got, looked)
	}
}

// TestShareSaysWhatWasDisclosed: a tenant's share of an all-tenant
// delivery read says, as the whole record does, whether the payload (the
// patient's FHIR Bundle and the EHR's answers) was disclosed: the share's
// description replaces the request's, and the clinic sees only the share.
func TestShareSaysWhatWasDisclosed(t *testing.T) {
	ctx := context.Background()
	l := New(nil, Config{Observer: "gw", Now: func() time.Time { return time.Unix(1e9, 0) }})
	read := func(typ, id string) (*store.Resource, error) { return nil, store.ErrNotFound }
	all := &auth.Principal{ClientID: "opAll", Tenant: search.AllTenants}
	for _, tc := range []struct {
		shown Shown
		want  string
	}{
		{ShownSummary, "payload not disclosed"},
		{ShownAnswers, "the EHR's answers disclosed; payload not disclosed"},
		{ShownPayload, "payload (the FHIR Bundle) and the EHR's answers disclosed"},
	} {
		sc := NewScope("delivery-read", all)
		sc.ConcernIn("clinic-a", "Patient/pa")
		v := operator.View{ID: "k7q2xw4mbn3ra", Tenant: "clinic-a", History: []operator.AttemptView{{}}}
		if err := NameDelivery(ctx, nil, sc, "", v, tc.shown); err != nil {
			t.Fatal(err)
		}
		evs, err := l.events(sc, 200, read)
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 2 || evs[1].res.Tenant != "clinic-a" {
			t.Fatalf("shown %d: %d events, want the whole one and clinic-a's share", tc.shown, len(evs))
		}
		for i, ev := range evs {
			var doc struct{ OutcomeDesc string }
			if err := json.Unmarshal(ev.res.Body, &doc); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(doc.OutcomeDesc, tc.want) {
				t.Errorf("shown %d: event %d (tenant %q) says %q, want it to say %q", tc.shown, i, ev.res.Tenant, doc.OutcomeDesc, tc.want)
			}
		}
	}
}

// TestShareNamesRecordInEveryTenant: two clinics may hold a source record
// under the same source system and record id; an all-tenant request that
// named it in both (a lineage read) names it in both clinics' shares, so
// each clinic's record trail finds the read.
func TestShareNamesRecordInEveryTenant(t *testing.T) {
	l := New(nil, Config{Observer: "gw", Now: func() time.Time { return time.Unix(1e9, 0) }})
	read := func(typ, id string) (*store.Resource, error) { return nil, store.ErrNotFound }
	sc := NewScope("lineage", &auth.Principal{ClientID: "opAll", Tenant: search.AllTenants})
	const system, record = "https://ketamine-gateway.org/fhir/sid/emr/assessment-record", "ASM-1"
	sc.NameRecordIn("clinic-a", system, record)
	sc.NameRecordIn("clinic-b", system, record)
	evs, err := l.events(sc, 200, read)
	if err != nil {
		t.Fatal(err)
	}
	named := map[string]bool{}
	for _, ev := range evs {
		var doc struct {
			Entity []struct {
				What struct {
					Identifier struct{ System, Value string }
				}
			}
		}
		if err := json.Unmarshal(ev.res.Body, &doc); err != nil {
			t.Fatal(err)
		}
		for _, e := range doc.Entity {
			if e.What.Identifier.System == system && e.What.Identifier.Value == record {
				named[ev.res.Tenant] = true
			}
		}
	}
	if !named["clinic-a"] || !named["clinic-b"] || !named[search.AllTenantsAudit] {
		t.Errorf("the record is named in the events of %v, want the whole record's and both clinics' shares", named)
	}
}

// TestFoldShares: an all-tenant reader's list shows each all-tenant
// request once: a tenant's share is left out when the request's whole
// record is listed, kept when it is not (a tenant's reader sees only its
// share), and a tenant-bound request is never folded (probe p39 F7).
func TestFoldShares(t *testing.T) {
	view := func(id, req, desc string) RequestView {
		return ViewAuditEvent(map[string]any{"id": id, "recorded": "2026-12-06T08:00:00.000Z", "outcomeDesc": desc,
			"source": map[string]any{"site": "*"},
			"entity": []any{map[string]any{"what": map[string]any{"identifier": map[string]any{"system": audit.SystemRequestID, "value": req}}}}})
	}
	share := func(tenant string) string {
		return "HTTP 200 OK: " + audit.ShareDescription(tenant) + " (its data named here: 1 resource, 1 patient; " +
			"the whole record is the request's AuditEvent kept for all-tenant readers)"
	}
	tests := []struct {
		name   string
		rows   []RequestView
		want   []string
		folded int
	}{
		{"whole and shares", []RequestView{view("w", "r1", "HTTP 200 OK: lineage"), view("sa", "r1", share("clinic-a")), view("sd", "r1", share(""))},
			[]string{"AuditEvent/w"}, 2},
		{"a share alone", []RequestView{view("sa", "r1", share("clinic-a")), view("w2", "r2", "HTTP 200 OK: lineage")},
			[]string{"AuditEvent/sa", "AuditEvent/w2"}, 0},
		{"tenant-bound", []RequestView{view("a", "r1", "HTTP 200 OK: read"), view("b", "r2", "HTTP 200 OK: read")},
			[]string{"AuditEvent/a", "AuditEvent/b"}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, folded := FoldShares(tc.rows)
			var ids []string
			for _, r := range got {
				ids = append(ids, r.AuditEvent)
			}
			if !slices.Equal(ids, tc.want) || folded != tc.folded {
				t.Errorf("FoldShares = %v, %d; want %v, %d", ids, folded, tc.want, tc.folded)
			}
		})
	}
}
