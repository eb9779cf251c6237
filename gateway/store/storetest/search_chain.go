package storetest

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// chain is a chained clause param:target.clause.
func chain(param, target string, c search.Clause) search.Clause {
	return search.Clause{Param: param, Type: search.TypeReference, Modifier: target,
		Chain: &search.Chain{TargetType: target, Clause: c}}
}

// has is a reverse chain _has:typ:param:clause.
func has(typ, param string, c search.Clause) search.Clause {
	return search.Clause{Param: "_has", Type: search.TypeReference, Has: &search.Has{Type: typ, Param: param, Clause: c}}
}

// testSearchChain: chained parameters and _has over the patients
// fixtures: a deleted target matches nothing, values are ORed within and
// ANDed across occurrences, and chains compose with plain clauses.
func testSearchChain(t *testing.T, s store.Store) {
	patients(t, s)
	obs := func(id, subject, code string) doc {
		return doc{"Observation", id, []search.Entry{ref("subject", "Patient", subject),
			tok("code", loinc, code)}}
	}
	load(t, s, obs("o1", "p1", "8867-4"), obs("o2", "p2", "8867-4"), obs("o3", "p3", "8480-6"), obs("o4", "p4", "8867-4"),
		obs("o5", "p1", "8480-6"),
		doc{"Observation", "o6", []search.Entry{ref("subject", "Group", "p1"), tok("code", loinc, "8867-4")}})
	ident := func(v ...search.Value) search.Clause { return clause("identifier", search.TypeToken, "", v...) }
	family := func(mod string, v ...search.Value) search.Clause {
		return clause("family", search.TypeString, mod, v...)
	}
	code := func(v ...search.Value) search.Clause { return clause("code", search.TypeToken, "", v...) }

	expect(t, s, "patient.identifier system|code", query("Observation", chain("patient", "Patient", ident(vSys(mrn, "123")))), "o1", "o5")
	expect(t, s, "subject:Patient.identifier code", query("Observation", chain("subject", "Patient", ident(vCode("789")))), "o2", "o3")
	expect(t, s, "values ORed", query("Observation", chain("patient", "Patient", ident(vSys(mrn, "123"), vSys(mrn, "456")))),
		"o1", "o2", "o5")
	expect(t, s, "subject.family starts-with, accents folded", query("Observation", chain("subject", "Patient", family("", vStr("mull")))),
		"o1", "o2", "o5")
	expect(t, s, "family:exact", query("Observation", chain("subject", "Patient", family("exact", vStr("Müller")))), "o1", "o5")
	expect(t, s, "a deleted target matches nothing", query("Observation", chain("patient", "Patient", ident(vSys(mrn, "999")))))
	expect(t, s, "chain and plain clause", query("Observation", chain("patient", "Patient", ident(vSys(mrn, "123"))),
		code(vSys(loinc, "8480-6"))), "o5")
	expect(t, s, "two chains ANDed", query("Observation", chain("patient", "Patient", family("", vStr("mull"))),
		chain("patient", "Patient", ident(vCode("456")))), "o2")
	expect(t, s, "chain to _id", query("Observation", chain("subject", "Patient", clause("_id", search.TypeToken, "", vCode("p3")))), "o3")
	// o6's subject is Group/p1, which is not stored: Patient/p1 is not it.
	expect(t, s, "the reference's type counts", query("Observation", chain("subject", "Group", clause("_id", search.TypeToken, "", vCode("p1")))))
	expect(t, s, "the target's type counts", query("Observation", chain("subject", "Patient", clause("_id", search.TypeToken, "", vCode("p1")))), "o1", "o5")

	expect(t, s, "_has:Observation:patient:code", query("Patient", has("Observation", "patient", code(vSys(loinc, "8867-4")))), "p1", "p2")
	expect(t, s, "_has ANDed", query("Patient", has("Observation", "patient", code(vCode("8867-4"))),
		has("Observation", "patient", code(vCode("8480-6")))), "p1")
	expect(t, s, "_has and plain clause", query("Patient", has("Observation", "subject", code(vCode("8480-6"))),
		clause("gender", search.TypeToken, "", vCode("other"))), "p3")
	expect(t, s, "_has through a deleted target", query("Patient", has("Observation", "patient", code(vCode("8867-4"))),
		clause("_id", search.TypeToken, "", vCode("p4"))))
	expectTotal(t, s, "chain total", query("Observation", chain("patient", "Patient", ident(vSys(mrn, "123")))), 2)

	// A chain over several target types (search.Chain.Or) matches through
	// any of them: o7's subject is a Location with identifier 123.
	load(t, s, doc{"Location", "l1", []search.Entry{tok("identifier", mrn, "123")}},
		doc{"Observation", "o7", []search.Entry{ref("subject", "Location", "l1")}})
	either := func(c search.Clause) search.Clause {
		cl := chain("subject", "Location", c)
		cl.Modifier = ""
		cl.Chain.Or = []search.Chain{{TargetType: "Patient", Clause: c}}
		return cl
	}
	expect(t, s, "chain over Location or Patient", query("Observation", either(ident(vSys(mrn, "123")))), "o1", "o5", "o7")
	expect(t, s, "chain over Location or Patient, ANDed", query("Observation", either(ident(vSys(mrn, "123"))),
		code(vSys(loinc, "8480-6"))), "o5")
	expect(t, s, "chain to Location only", query("Observation", chain("subject", "Location", ident(vSys(mrn, "123")))), "o7")
}

// testTenantChain: the far end of a chain or _has is confined to the
// searching tenant: clinic-b's ob2 points at clinic-a's pa1, and no
// search of clinic-b finds it through pa1's identifier.
func testTenantChain(t *testing.T, s store.Store) {
	clinics(t, s)
	id := func(v string) search.Clause { return clause("_id", search.TypeToken, "", vCode(v)) }
	expect(t, s, "clinic-a through its patient", inTenant(tenantA, query("Observation", chain("subject", "Patient", id("pa1")))), "oa1")
	expect(t, s, "clinic-b through clinic-a's patient", inTenant(tenantB, query("Observation", chain("subject", "Patient", id("pa1")))))
	expect(t, s, "every tenant", inTenant(search.AllTenants, query("Observation", chain("subject", "Patient", id("pa1")))), "oa1", "ob2")
	code := clause("code", search.TypeToken, "", vCode("c1"))
	expect(t, s, "_has in clinic-a", inTenant(tenantA, query("Patient", has("Observation", "subject", code))), "pa1", "pa2")
	expect(t, s, "_has does not see clinic-b's observations", inTenant(tenantA, query("Patient", has("Observation", "subject", code),
		id("pa1"))), "pa1")
	expect(t, s, "_has in clinic-b", inTenant(tenantB, query("Patient", has("Observation", "subject", clause("code", search.TypeToken, "", vCode("c2"))))), "pb1")

	// A bulk export's filters: the far end of a _has is the exporting
	// tenant's, not the default tenant's (od1, of pd1) nor clinic-b's
	// (ob2, of pa1).
	export := func(tenant string) []string {
		t.Helper()
		got, err := s.Export(context.Background(), store.ExportQuery{Type: "Patient", Tenant: tenant, Limit: 100,
			Filters: []*search.Query{query("Patient", has("Observation", "subject", code))}})
		if err != nil {
			t.Fatalf("Export(%s): %v", tenant, err)
		}
		return ids(got)
	}
	if got := export(tenantA); !slices.Equal(got, []string{"pa1", "pa2"}) {
		t.Errorf("Export(Patient, clinic-a, _has:Observation:subject:code=c1) = %v, want [pa1 pa2]", got)
	}
	if got := export(tenantB); !slices.Equal(got, []string{"pb1"}) {
		t.Errorf("Export(Patient, clinic-b, _has:Observation:subject:code=c1) = %v, want [pb1]", got)
	}
}

// testTenantSharedChain: each hop of a search is confined by the rule of
// its own type (search.Query.Shared). The default tenant's CodeSystem cs1
// (shared: every tenant reads it) names clinic-a's patient pa1, as does
// clinic-b's ConceptMap cmb (not shared); clinic-a's Provenance pva and
// clinic-b's pvb are about cs1. A chain or _has from the shared cs1, or
// from clinic-b's own cmb, never reaches another tenant's Patient or
// Provenance; a chain to cs1 or an include of it finds it in any tenant.
func testTenantSharedChain(t *testing.T, s store.Store) {
	clinics(t, s)
	loadTenants(t, s,
		tdoc{"", doc{"CodeSystem", "cs1", []search.Entry{ref("patient", "Patient", "pa1")}}},
		tdoc{tenantA, doc{"CodeSystem", "csa", nil}}, // a clinic's, written before the type was read-only
		tdoc{tenantB, doc{"ConceptMap", "cmb", []search.Entry{ref("patient", "Patient", "pa1")}}},
		tdoc{"", doc{"ConceptMap", "cmd", nil}},
		tdoc{tenantA, doc{"Provenance", "pva", []search.Entry{ref("target", "CodeSystem", "cs1"), ref("agent", "Practitioner", "dra")}}},
		tdoc{tenantB, doc{"Provenance", "pvb", []search.Entry{ref("target", "CodeSystem", "cs1")}}},
	)
	in := func(tenant string, q *search.Query) *search.Query {
		q.Tenant, q.Shared = tenant, []string{"CodeSystem"}
		return q
	}
	id := func(v string) search.Clause { return clause("_id", search.TypeToken, "", vCode(v)) }
	agent := clause("agent", search.TypeReference, "", vRef("Practitioner", "dra"))
	for _, c := range []struct {
		name string
		q    *search.Query
		want []string
	}{
		{"a shared type: the default tenant's and the tenant's own", in(tenantB, query("CodeSystem")), []string{"cs1"}},
		{"a shared type in clinic-a", in(tenantA, query("CodeSystem")), []string{"cs1", "csa"}},
		{"a type not shared", in(tenantB, query("ConceptMap")), []string{"cmb"}},
		{"every type: the tenant's own", in(tenantB, &search.Query{Types: []string{"CodeSystem", "ConceptMap"}, Count: 50}), []string{"cmb"}},
		{"chain from a shared type to another tenant's Patient", in(tenantB, query("CodeSystem", chain("patient", "Patient", id("pa1")))), nil},
		{"chain from a shared type to the tenant's Patient", in(tenantA, query("CodeSystem", chain("patient", "Patient", id("pa1")))), []string{"cs1"}},
		{"chain from the tenant's ConceptMap to another tenant's Patient", in(tenantB, query("ConceptMap", chain("patient", "Patient", id("pa1")))), nil},
		{"_has from a shared type through another tenant's Provenance", in(tenantB, query("CodeSystem", has("Provenance", "target", agent))), nil},
		{"_has from a shared type through the tenant's Provenance", in(tenantA, query("CodeSystem", has("Provenance", "target", agent))), []string{"cs1"}},
		{"chain to a shared type", in(tenantB, query("Provenance", chain("target", "CodeSystem", id("cs1")))), []string{"pvb"}},
		{"chain to another tenant's resource of a shared type", in(tenantB, query("Provenance", chain("target", "CodeSystem", id("csa")))), nil},
		{"_has to a shared type", in(tenantB, query("Patient", has("CodeSystem", "patient", id("cs1")))), nil},
		{"_has to a shared type in clinic-a", in(tenantA, query("Patient", has("CodeSystem", "patient", id("cs1")))), []string{"pa1"}},
		{"all tenants", in(search.AllTenants, query("CodeSystem", has("Provenance", "target", agent))), []string{"cs1"}},
	} {
		expect(t, s, c.name, c.q, c.want...)
	}

	rev := in(tenantB, query("CodeSystem", id("cs1")))
	rev.RevIncludes = []search.Include{{SourceType: "Provenance", Param: "target"}}
	expectIncluded(t, s, "_revinclude on a shared type", rev, "Provenance/pvb")
	rev.RevIncludes = []search.Include{{SourceType: "*", Param: "*"}}
	expectIncluded(t, s, "_revinclude of every type on a shared type", rev, "Provenance/pvb")
	inc := in(tenantB, query("ConceptMap", id("cmb")))
	inc.Includes = []search.Include{{SourceType: "ConceptMap", Param: "patient"}}
	expectIncluded(t, s, "_include from the tenant's ConceptMap of another tenant's Patient", inc)
	prov := in(tenantA, query("Provenance", id("pva")))
	prov.Includes = []search.Include{{SourceType: "Provenance", Param: "target", TargetType: "CodeSystem"}}
	expectIncluded(t, s, "_include of a shared type", prov, "CodeSystem/cs1")
	prov.Includes = []search.Include{{SourceType: "Provenance", Param: "*"}}
	expectIncluded(t, s, "_include of every type", prov, "CodeSystem/cs1", "Practitioner/dra")
	prov.Tenant = tenantB
	prov.Clauses = []search.Clause{id("pvb")}
	expectIncluded(t, s, "_include of every type in clinic-b", prov, "CodeSystem/cs1")

	hist := func(tenant, typ string) []string {
		t.Helper()
		got, _, err := s.History(context.Background(), store.HistoryQuery{Type: typ, Tenant: tenant, Shared: []string{"CodeSystem"}})
		if err != nil {
			t.Fatalf("History(%s, %s): %v", tenant, typ, err)
		}
		return sorted(ids(got))
	}
	for _, c := range []struct {
		tenant, typ string
		want        []string
	}{
		{tenantB, "CodeSystem", []string{"cs1"}},
		{tenantA, "CodeSystem", []string{"cs1", "csa"}},
		{tenantB, "ConceptMap", []string{"cmb"}},
		{tenantB, "", []string{"cmb", "ob1", "ob2", "ob3", "pb1", "pvb"}},
	} {
		if got := hist(c.tenant, c.typ); !slices.Equal(got, c.want) {
			t.Errorf("History(%s, %q, shared CodeSystem) = %v, want %v", c.tenant, c.typ, got, c.want)
		}
	}
}

// testSearchCompartment: a search of every type restricted to a patient's
// compartment ($everything): the Patient, the resources referencing it
// through their compartment parameter, within Types.
func testSearchCompartment(t *testing.T, s store.Store) {
	patients(t, s)
	load(t, s,
		// o1's rows as the gateway's schema 10 and older wrote them, its
		// patient reference a second time: found once all the same.
		doc{"Observation", "o1", []search.Entry{ref("subject", "Patient", "p1"), ref("patient", "Patient", "p1")}},
		// An Observation's patient is its subject of type Patient
		// (search.ReferenceRows).
		doc{"Observation", "o2", []search.Entry{ref("subject", "Patient", "p2")}},
		doc{"AdverseEvent", "a1", []search.Entry{ref("subject", "Patient", "p1")}},
		doc{"Encounter", "e1", []search.Entry{ref("subject", "Patient", "p1")}},
		doc{"Immunization", "i1", []search.Entry{ref("patient", "Patient", "p1")}},
		// A reference by a parameter that is not the compartment's.
		doc{"Observation", "o3", []search.Entry{ref("has-member", "Patient", "p1")}},
		doc{"Practitioner", "dr1", []search.Entry{ref("patient", "Patient", "p1")}},
	)
	every := func(types ...string) *search.Query {
		return &search.Query{Types: types, Compartment: &search.Compartment{PatientID: "p1"}, Count: 50}
	}
	want := []string{"a1", "e1", "i1", "o1", "p1"}
	pg := doSearch(t, s, every())
	if got := sorted(ids(pg.Matches)); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("compartment of p1 = %v, want %v", got, want)
	}
	pg = doSearch(t, s, every("Observation", "Patient"))
	if got := sorted(ids(pg.Matches)); strings.Join(got, ",") != "o1,p1" {
		t.Errorf("compartment of p1 among Observation, Patient = %v, want o1, p1", got)
	}
	q := every("Encounter")
	q.Total = true
	if pg = doSearch(t, s, q); pg.Total != 1 || len(pg.Matches) != 1 {
		t.Errorf("compartment of p1 among Encounter: total %d, %d matches; want 1", pg.Total, len(pg.Matches))
	}
}

// testSearchCarePeriod: a compartment search narrowed to a period of care
// ($everything's start and end): a resource of a type with a care date
// (search.CareDate) is kept when that date overlaps the period or when it
// has none; the other types always; dates of another parameter do not
// count.
func testSearchCarePeriod(t *testing.T, s store.Store) {
	patients(t, s)
	p1 := ref("subject", "Patient", "p1")
	load(t, s,
		doc{"Observation", "o-may", []search.Entry{p1, date("date", day(2026, 5, 10))}},
		doc{"Observation", "o-july", []search.Entry{p1, date("date", day(2026, 7, 1))}},
		doc{"Observation", "o-undated", []search.Entry{p1}},
		// Its care date in July; another date parameter's in May.
		doc{"Procedure", "pr-july", []search.Entry{p1, date("date", day(2026, 7, 2)), date("other", day(2026, 5, 2))}},
		// An infusion across midnight, from the last day of June.
		doc{"MedicationAdministration", "ma-cross", []search.Entry{p1, date("effective-time",
			period(instant(time.Date(2026, 6, 30, 23, 30, 0, 0, time.UTC)), instant(time.Date(2026, 7, 1, 0, 45, 0, 0, time.UTC))))}},
		// A type without a care date (a Condition's onset-date is none:
		// search.CareDate): whatever its dates.
		doc{"Condition", "c-2010", []search.Entry{ref("subject", "Patient", "p1"), date("onset-date", day(2010, 1, 1))}},
		// A type with one (an Immunization's date) outside the periods.
		doc{"Immunization", "i-2010", []search.Entry{ref("patient", "Patient", "p1"), date("date", day(2010, 1, 1))}},
	)
	in := func(start, end time.Time, types ...string) []string {
		t.Helper()
		q := &search.Query{Types: types, Count: 50, Total: true,
			Compartment: &search.Compartment{PatientID: "p1", Start: start, End: end}}
		pg := doSearch(t, s, q)
		if pg.Total != len(pg.Matches) {
			t.Errorf("total %d, %d matches", pg.Total, len(pg.Matches))
		}
		return sorted(ids(pg.Matches))
	}
	july, endJuly := day(2026, 7, 1)[0], day(2026, 7, 31)[1]
	for _, c := range []struct {
		name       string
		start, end time.Time
		types      []string
		want       string
	}{
		{"July", july, endJuly, nil, "c-2010,ma-cross,o-july,o-undated,p1,pr-july"},
		{"from July on", july, time.Time{}, nil, "c-2010,ma-cross,o-july,o-undated,p1,pr-july"},
		{"up to May", time.Time{}, day(2026, 5, 31)[1], nil, "c-2010,i-2010,o-may,o-undated,p1"},
		{"the last minute of June", time.Date(2026, 6, 30, 23, 59, 0, 0, time.UTC), day(2026, 6, 30)[1], nil, "c-2010,ma-cross,o-undated,p1"},
		{"July's Observations", july, endJuly, []string{"Observation"}, "o-july,o-undated"},
		{"2025", day(2025, 1, 1)[0], day(2025, 12, 31)[1], []string{"Observation", "Procedure", "MedicationAdministration"}, "o-undated"},
	} {
		if got := strings.Join(in(c.start, c.end, c.types...), ","); got != c.want {
			t.Errorf("%s: compartment of p1 = %s, want %s", c.name, got, c.want)
		}
	}
}
