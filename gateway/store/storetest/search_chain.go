package storetest

import (
	"strings"
	"testing"

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
