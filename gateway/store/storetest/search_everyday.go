package storetest

import (
	"fmt"
	"net/url"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// everydayBodies are the resources testSearchEveryday loads, indexed by
// search.Extract as the gateway indexes what it stores.
var everydayBodies = []string{
	`{"resourceType":"Patient","id":"ev-p1","active":true,"meta":{"tag":[{"system":"urn:t","code":"synthetic"}]},
	  "telecom":[{"system":"phone","value":"555-0100"},{"system":"email","value":"ann@example.org"}],
	  "address":[{"line":["1 Main St"],"city":"Boston","state":"MA","postalCode":"02118"}],
	  "generalPractitioner":[{"reference":"Practitioner/ev-pr1"}],"managingOrganization":{"reference":"Organization/ev-org1"},
	  "deceasedDateTime":"2026-01-01"}`,
	`{"resourceType":"Patient","id":"ev-p2","active":false,
	  "telecom":[{"system":"email","value":"555-0100"}],
	  "address":[{"city":"Worcester","state":"MA","postalCode":"01608"}],"generalPractitioner":[{"reference":"Organization/ev-org1"}]}`,
	`{"resourceType":"Practitioner","id":"ev-pr1"}`,
	`{"resourceType":"RelatedPerson","id":"ev-rp1","patient":{"reference":"Patient/ev-p1"}}`,
	`{"resourceType":"Organization","id":"ev-org1"}`,
	`{"resourceType":"Encounter","id":"ev-e1","status":"finished",
	  "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"AMB"},
	  "type":[{"coding":[{"system":"http://snomed.info/sct","code":"185345009"}]}],
	  "subject":{"reference":"Patient/ev-p1"},
	  "participant":[{"individual":{"reference":"Practitioner/ev-pr1"}},{"individual":{"reference":"RelatedPerson/ev-rp1"}}],
	  "serviceProvider":{"reference":"Organization/ev-org1"}}`,
	`{"resourceType":"Encounter","id":"ev-e2","status":"in-progress",
	  "class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},
	  "subject":{"reference":"Patient/ev-p2"},"participant":[{"individual":{"reference":"RelatedPerson/ev-rp1"}}]}`,
	`{"resourceType":"Observation","id":"ev-o1","status":"final",
	  "meta":{"profile":["https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs"],
	    "security":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"PSY"}]},
	  "code":{"coding":[{"system":"http://loinc.org","code":"85354-9"}]},
	  "component":[{"code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]}}],
	  "subject":{"reference":"Patient/ev-p1"},"encounter":{"reference":"Encounter/ev-e1"}}`,
	`{"resourceType":"Observation","id":"ev-o2","status":"final",
	  "code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]},
	  "subject":{"reference":"Patient/ev-p2"},"encounter":{"reference":"Encounter/ev-e2"},
	  "valueCodeableConcept":{"coding":[{"system":"http://snomed.info/sct","code":"373066001"}]}}`,
	`{"resourceType":"Observation","id":"ev-o3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"72133-2"}]},
	  "subject":{"reference":"Patient/ev-p1"},"valueString":"Feels calm"}`,
	`{"resourceType":"Condition","id":"ev-c1","subject":{"reference":"Patient/ev-p1"},"encounter":{"reference":"Encounter/ev-e1"},
	  "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"active"}]},
	  "verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}]},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}]}],
	  "onsetDateTime":"2020-05-01"}`,
	`{"resourceType":"Condition","id":"ev-c2","subject":{"reference":"Patient/ev-p2"},
	  "clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"resolved"}]},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"encounter-diagnosis"}]}],
	  "onsetPeriod":{"start":"2026-01-01","end":"2026-02-01"}}`,
	`{"resourceType":"Procedure","id":"ev-pr","status":"completed","subject":{"reference":"Patient/ev-p1"},
	  "encounter":{"reference":"Encounter/ev-e1"},"category":{"coding":[{"system":"http://snomed.info/sct","code":"103693007"}]}}`,
	`{"resourceType":"MedicationAdministration","id":"ev-ma1","status":"completed","subject":{"reference":"Patient/ev-p1"},
	  "medicationReference":{"reference":"Medication/ev-med1"},"context":{"reference":"Encounter/ev-e1"},
	  "performer":[{"actor":{"reference":"Practitioner/ev-pr1"}}]}`,
	`{"resourceType":"MedicationAdministration","id":"ev-ma2","status":"not-done","subject":{"reference":"Patient/ev-p2"},
	  "medicationCodeableConcept":{"text":"ketamine"}}`,
	`{"resourceType":"AdverseEvent","id":"ev-ae1","actuality":"actual","subject":{"reference":"Patient/ev-p1"},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/adverse-event-category","code":"wrong-dose"}]}]}`,
	`{"resourceType":"AdverseEvent","id":"ev-ae2","actuality":"potential","subject":{"reference":"Patient/ev-p2"}}`,
	`{"resourceType":"DiagnosticReport","id":"ev-dr1","status":"final","subject":{"reference":"Patient/ev-p1"},
	  "category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0074","code":"LAB"}]}],
	  "code":{"coding":[{"system":"http://loinc.org","code":"51990-0"}]},"encounter":{"reference":"Encounter/ev-e1"},
	  "effectiveDateTime":"2026-03-02T10:00:00Z","result":[{"reference":"Observation/ev-o2"}]}`,
	`{"resourceType":"Immunization","id":"ev-im1","status":"completed","patient":{"reference":"Patient/ev-p1"},
	  "vaccineCode":{"coding":[{"system":"http://hl7.org/fhir/sid/cvx","code":"140"}]},"occurrenceDateTime":"2025-10-01"}`,
}

// testSearchEveryday: each of the everyday R4 parameters (Observation
// encounter, combo-code, ...; Condition clinical-status, ...; Encounter
// practitioner, ...; Patient phone, ...) finds
// exactly the resources it should, as the search package parses it and
// extracts the resources, and _include=Encounter:practitioner includes.
func testSearchEveryday(t *testing.T, s store.Store) {
	var docs []doc
	for i, b := range everydayBodies {
		m, err := fhirwire.Decode([]byte(b))
		if err != nil {
			t.Fatalf("body %d: %v", i, err)
		}
		typ, id := m["resourceType"].(string), m["id"].(string)
		docs = append(docs, doc{typ, id, search.Extract(typ, m)})
	}
	load(t, s, docs...)
	parse := func(typ, raw string) *search.Query {
		t.Helper()
		v, err := url.ParseQuery(raw)
		if err != nil {
			t.Fatal(err)
		}
		q, err := search.Parse(typ, v, false)
		if err != nil {
			t.Fatalf("Parse(%s?%s): %v", typ, raw, err)
		}
		q.Count = 100
		return q
	}
	for _, tc := range []struct {
		typ, query string
		want       []string
	}{
		{"Observation", "encounter=Encounter/ev-e1", []string{"ev-o1"}},
		{"Observation", "encounter=ev-e2", []string{"ev-o2"}},
		{"Observation", "value-concept=http://snomed.info/sct|373066001", []string{"ev-o2"}},
		{"Observation", "value-string=feels", []string{"ev-o3"}},
		{"Observation", "combo-code=http://loinc.org|8480-6", []string{"ev-o1", "ev-o2"}},
		{"Observation", "combo-code=85354-9", []string{"ev-o1"}},
		{"Observation", "combo-code:not=8480-6", []string{"ev-o3"}},
		{"Observation", "combo-code:missing=true", nil},
		{"Condition", "clinical-status=active", []string{"ev-c1"}},
		{"Condition", "verification-status=confirmed", []string{"ev-c1"}},
		{"Condition", "category=encounter-diagnosis", []string{"ev-c2"}},
		{"Condition", "encounter=Encounter/ev-e1", []string{"ev-c1"}},
		{"Condition", "onset-date=2020", []string{"ev-c1"}},
		{"Condition", "onset-date=ge2026-01-15", []string{"ev-c2"}},
		{"Encounter", "status=finished", []string{"ev-e1"}},
		{"Encounter", "class=IMP", []string{"ev-e2"}},
		{"Encounter", "type=http://snomed.info/sct|185345009", []string{"ev-e1"}},
		{"Encounter", "participant=RelatedPerson/ev-rp1", []string{"ev-e1", "ev-e2"}},
		{"Encounter", "practitioner=ev-pr1", []string{"ev-e1"}},
		{"Encounter", "practitioner=ev-rp1", nil},
		{"Encounter", "practitioner:missing=true", []string{"ev-e2"}},
		{"Encounter", "service-provider=Organization/ev-org1", []string{"ev-e1"}},
		{"Procedure", "encounter=ev-e1", []string{"ev-pr"}},
		{"Procedure", "category=103693007", []string{"ev-pr"}},
		{"MedicationAdministration", "status=not-done", []string{"ev-ma2"}},
		{"MedicationAdministration", "medication=Medication/ev-med1", []string{"ev-ma1"}},
		{"MedicationAdministration", "context=Encounter/ev-e1", []string{"ev-ma1"}},
		{"MedicationAdministration", "performer=Practitioner/ev-pr1", []string{"ev-ma1"}},
		{"AdverseEvent", "actuality=potential", []string{"ev-ae2"}},
		{"AdverseEvent", "category=wrong-dose", []string{"ev-ae1"}},
		{"Patient", "active=true", []string{"ev-p1"}},
		{"Patient", "phone=555-0100", []string{"ev-p1"}},
		{"Patient", "email=555-0100", []string{"ev-p2"}},
		{"Patient", "telecom=555-0100", []string{"ev-p1", "ev-p2"}},
		{"Patient", "address=1 main", []string{"ev-p1"}},
		{"Patient", "address=ma", []string{"ev-p1", "ev-p2"}}, // the state
		{"Patient", "address-city=worcester", []string{"ev-p2"}},
		{"Patient", "address-postalcode=02118", []string{"ev-p1"}},
		{"Patient", "address-state=MA", []string{"ev-p1", "ev-p2"}},
		{"Patient", "general-practitioner=Practitioner/ev-pr1", []string{"ev-p1"}},
		{"Patient", "general-practitioner:Organization=ev-org1", []string{"ev-p2"}},
		{"Patient", "organization=ev-org1", []string{"ev-p1"}},
		{"Patient", "deceased=true", []string{"ev-p1"}},
		{"Patient", "deceased=false", []string{"ev-p2"}},
		{"DiagnosticReport", "code=51990-0&status=final&category=LAB&encounter=ev-e1&result=Observation/ev-o2&date=2026-03-02",
			[]string{"ev-dr1"}},
		{"Immunization", "vaccine-code=140&status=completed&date=2025-10", []string{"ev-im1"}},
	} {
		expect(t, s, fmt.Sprintf("%s?%s", tc.typ, tc.query), parse(tc.typ, tc.query), tc.want...)
	}
	// Over several types, combo-code is Observation's code and
	// component-code rows (search.TokenRowAliases).
	several := &search.Query{Types: []string{"Observation", "Condition"}, Count: 100,
		Clauses: []search.Clause{clause("combo-code", search.TypeToken, "", vSys("http://loinc.org", "8480-6"))}}
	expect(t, s, "combo-code over Observation and Condition", several, "ev-o1", "ev-o2")
	// A chain through the new reference parameters.
	expect(t, s, "Observation?encounter.status=finished", parse("Observation", "encounter.status=finished"), "ev-o1")
	q := parse("Encounter", "_id=ev-e1,ev-e2&_include=Encounter:practitioner")
	expectIncluded(t, s, "Encounter?_include=Encounter:practitioner", q, "Practitioner/ev-pr1")
	q = parse("Patient", "_id=ev-p1&_include=Patient:general-practitioner&_include=Patient:organization")
	expectIncluded(t, s, "Patient?_include=Patient:general-practitioner,organization", q, "Practitioner/ev-pr1", "Organization/ev-org1")
	q = parse("Practitioner", "_id=ev-pr1&_revinclude=Encounter:practitioner")
	expectIncluded(t, s, "Practitioner?_revinclude=Encounter:practitioner", q, "Encounter/ev-e1")
}
