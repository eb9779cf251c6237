package storetest

import (
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testSearchPatientRows: a patient parameter kept as another parameter's
// rows of type Patient (search.ReferenceRows: an Observation's patient is
// its subject, a Provenance's its target) is found through those rows by
// every way of searching a reference parameter, and only through rows of
// type Patient; rows the gateway's schema 10 and older wrote under the
// patient parameter itself are found once all the same.
func testSearchPatientRows(t *testing.T, s store.Store) {
	if p, rt := search.ReferenceRows("Observation", "patient"); p != "subject" || rt != "Patient" {
		t.Fatalf("an Observation's patient is kept as %q of type %q, not as its subject: this test's rows are wrong", p, rt)
	}
	patients(t, s)
	load(t, s,
		doc{"Observation", "o1", []search.Entry{ref("subject", "Patient", "p1"), tok("code", "urn:c", "a")}},
		doc{"Observation", "o2", []search.Entry{ref("subject", "Patient", "p2"), tok("code", "urn:c", "a")}},
		// A Group with the id of a Patient is no patient.
		doc{"Observation", "o3", []search.Entry{ref("subject", "Group", "p1"), tok("code", "urn:c", "a")}},
		// As schema 10 wrote it: the patient reference twice.
		doc{"Observation", "o4", []search.Entry{ref("subject", "Patient", "p1"), ref("patient", "Patient", "p1")}},
		// No subject: missing a patient.
		doc{"Observation", "o5", []search.Entry{tok("code", "urn:c", "a")}},
		// Another type's subject is not its patient (AdverseEvent has none).
		doc{"AdverseEvent", "a1", []search.Entry{ref("subject", "Patient", "p1")}},
		// A type whose patient parameter is its own.
		doc{"Immunization", "i1", []search.Entry{ref("patient", "Patient", "p1")}},
		doc{"Provenance", "v1", []search.Entry{ref("target", "Observation", "o1"), ref("target", "Patient", "p1")}},
	)
	obsPatient := func(mod string, v ...search.Value) *search.Query {
		return query("Observation", clause("patient", search.TypeReference, mod, v...))
	}
	expect(t, s, "patient=p1", obsPatient("", vRef("", "p1")), "o1", "o4")
	expect(t, s, "patient=Patient/p1", obsPatient("", vRef("Patient", "p1")), "o1", "o4")
	expect(t, s, "patient:Patient=p1", obsPatient("Patient", vRef("", "p1")), "o1", "o4")
	expect(t, s, "patient=p1,p2", obsPatient("", vRef("", "p1"), vRef("", "p2")), "o1", "o2", "o4")
	expect(t, s, "subject=p1 still finds the Group", query("Observation",
		clause("subject", search.TypeReference, "", vRef("", "p1"))), "o1", "o3", "o4")
	// (patients loads an Observation p1 with no subject.)
	expect(t, s, "patient:missing=true", query("Observation", missing("patient", search.TypeReference, true)), "o3", "o5", "p1")
	expect(t, s, "patient:missing=false", query("Observation", missing("patient", search.TypeReference, false)),
		"o1", "o2", "o4")
	expect(t, s, "patient and code", query("Observation", clause("patient", search.TypeReference, "", vRef("", "p1")),
		clause("code", search.TypeToken, "", vSys("urn:c", "a"))), "o1")
	expect(t, s, "Provenance patient=p1", query("Provenance", clause("patient", search.TypeReference, "", vRef("", "p1"))), "v1")
	expect(t, s, "Provenance patient=o1 (not a Patient)",
		query("Provenance", clause("patient", search.TypeReference, "", vRef("", "o1"))))
	expect(t, s, "Immunization patient=p1", query("Immunization", clause("patient", search.TypeReference, "", vRef("", "p1"))), "i1")

	// Chains and _has.
	expect(t, s, "patient.identifier", query("Observation", chain("patient", "Patient", clause("identifier", search.TypeToken, "", vSys(mrn, "123")))),
		"o1", "o4")
	expect(t, s, "_has:Observation:patient:code", query("Patient", has("Observation", "patient", clause("code", search.TypeToken, "", vSys("urn:c", "a")))),
		"p1", "p2")

	// Over several types: each type's own way.
	every := &search.Query{Types: []string{"Observation", "Immunization", "AdverseEvent"},
		Clauses: []search.Clause{clause("patient", search.TypeReference, "", vRef("Patient", "p1"))}, Count: 50}
	expect(t, s, "patient=p1 over three types", every, "o1", "o4", "i1")

	// _include and _revinclude.
	obs := query("Observation", clause("_id", search.TypeToken, "", vCode("o1"), vCode("o2"), vCode("o3")))
	obs.Includes = []search.Include{{SourceType: "Observation", Param: "patient"}}
	expectIncluded(t, s, "_include=Observation:patient", obs, "Patient/p1", "Patient/p2")
	pat := query("Patient", clause("_id", search.TypeToken, "", vCode("p1")))
	pat.RevIncludes = []search.Include{{SourceType: "Observation", Param: "patient"}}
	expectIncluded(t, s, "_revinclude=Observation:patient", pat, "Observation/o1", "Observation/o4")
	pat.RevIncludes = []search.Include{{SourceType: "*", Param: "patient"}}
	expectIncluded(t, s, "_revinclude=*:patient", pat, "Observation/o1", "Observation/o4", "Immunization/i1", "Provenance/v1")
	grp := query("Patient", clause("_id", search.TypeToken, "", vCode("p2")))
	grp.RevIncludes = []search.Include{{SourceType: "Observation", Param: "patient"}}
	expectIncluded(t, s, "_revinclude of p2", grp, "Observation/o2")
}
