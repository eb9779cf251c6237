package search

import (
	"testing"
)

// TestExtractEverydayParams: the everyday R4 parameters (finding p43 F2)
// are extracted as R4 defines them: each case gives a resource and, for
// one parameter, exactly the entries a store finds for it (storedAs).
func TestExtractEverydayParams(t *testing.T) {
	const (
		loinc  = "http://loinc.org"
		sct    = "http://snomed.info/sct"
		cstat  = "http://terminology.hl7.org/CodeSystem/condition-clinical"
		vstat  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
		actV3  = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
		conf   = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
		kgProf = "https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs"
	)
	tok := func(param, system, code, text string) Entry {
		return Entry{Param: param, Type: TypeToken, System: system, Code: code, Text: text}
	}
	refTo := func(param, rt, id string) Entry {
		return Entry{Param: param, Type: TypeReference, RefType: rt, RefID: id}
	}
	str := func(param, norm, exact string) Entry {
		return Entry{Param: param, Type: TypeString, Norm: norm, Exact: exact}
	}
	obs := `{"resourceType": "Observation", "id": "o1", "status": "final",
		"meta": {"profile": ["` + kgProf + `"], "security": [{"system": "` + actV3 + `", "code": "PSY"},
			{"system": "` + conf + `", "code": "R"}], "tag": [{"system": "http://t", "code": "synthetic", "display": "Synthetic"}]},
		"code": {"coding": [{"system": "` + loinc + `", "code": "85354-9"}]},
		"component": [{"code": {"coding": [{"system": "` + loinc + `", "code": "8480-6"}]}}],
		"encounter": {"reference": "Encounter/e1"},
		"valueCodeableConcept": {"coding": [{"system": "` + sct + `", "code": "373066001", "display": "Yes"}]},
		"valueString": "Feels Calm"}`
	cond := `{"resourceType": "Condition", "id": "c1",
		"clinicalStatus": {"coding": [{"system": "` + cstat + `", "code": "active"}]},
		"verificationStatus": {"coding": [{"system": "` + vstat + `", "code": "confirmed"}]},
		"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
		"encounter": {"reference": "Encounter/e1"}, "onsetPeriod": {"start": "2026-01-01", "end": "2026-02"}}`
	enc := `{"resourceType": "Encounter", "id": "e1", "status": "finished",
		"class": {"system": "` + actV3 + `", "code": "AMB"},
		"type": [{"coding": [{"system": "` + sct + `", "code": "185345009"}]}],
		"participant": [{"individual": {"reference": "Practitioner/pr1"}}, {"individual": {"reference": "RelatedPerson/rp1"}},
			{"individual": {"type": "Practitioner", "identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "999"}}}],
		"serviceProvider": {"reference": "Organization/org1"}}`
	pat := `{"resourceType": "Patient", "id": "p1", "active": true,
		"telecom": [{"system": "phone", "value": "555-0100"}, {"system": "email", "value": "a@b.example"}, {"value": "nosys"}],
		"address": [{"line": ["1 Main St"], "city": "Boston", "state": "MA", "postalCode": "02118"}],
		"generalPractitioner": [{"reference": "Practitioner/pr1"}], "managingOrganization": {"reference": "Organization/org1"},
		"deceasedDateTime": "2026-01-01"}`
	medAdmin := `{"resourceType": "MedicationAdministration", "id": "m1", "status": "completed",
		"medicationReference": {"reference": "Medication/med1"}, "context": {"reference": "Encounter/e1"},
		"performer": [{"actor": {"reference": "Practitioner/pr1"}}]}`
	tests := []struct {
		name, rt, doc, param string
		want                 []Entry
	}{
		// meta.profile, meta.security and meta.tag make no rows.
		{"profile", "Observation", obs, "_profile", nil},
		{"security", "Observation", obs, "_security", nil},
		{"tag", "Observation", obs, "_tag", nil},
		{"observation encounter", "Observation", obs, "encounter", []Entry{refTo("encounter", "Encounter", "e1")}},
		{"value-concept", "Observation", obs, "value-concept", []Entry{tok("value-concept", sct, "373066001", "yes")}},
		{"value-string", "Observation", obs, "value-string", []Entry{str("value-string", "feels calm", "Feels Calm")}},
		{"combo-code has no rows", "Observation", obs, "combo-code", nil},
		{"clinical-status", "Condition", cond, "clinical-status", []Entry{tok("clinical-status", cstat, "active", "")}},
		{"verification-status", "Condition", cond, "verification-status", []Entry{tok("verification-status", vstat, "confirmed", "")}},
		{"condition category", "Condition", cond, "category",
			[]Entry{tok("category", "http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "")}},
		{"condition encounter", "Condition", cond, "encounter", []Entry{refTo("encounter", "Encounter", "e1")}},
		{"onset-date", "Condition", cond, "onset-date",
			[]Entry{{Param: "onset-date", Type: TypeDate, Low: utc(2026, 1, 1, 0, 0, 0, 0), High: utc(2026, 2, 28, 23, 59, 59, 999)}}},
		{"encounter status", "Encounter", enc, "status", []Entry{tok("status", "http://hl7.org/fhir/encounter-status", "finished", "")}},
		{"encounter class", "Encounter", enc, "class", []Entry{tok("class", actV3, "AMB", "")}},
		{"encounter type", "Encounter", enc, "type", []Entry{tok("type", sct, "185345009", "")}},
		{"participant", "Encounter", enc, "participant", []Entry{refTo("participant", "Practitioner", "pr1"),
			refTo("participant", "RelatedPerson", "rp1"), tok("participant", "http://hl7.org/fhir/sid/us-npi", "999", "")}},
		// practitioner is participant's rows of type Practitioner, and its
		// own Reference.identifier rows.
		{"practitioner", "Encounter", enc, "practitioner", []Entry{tok("practitioner", "http://hl7.org/fhir/sid/us-npi", "999", ""),
			refTo("practitioner", "Practitioner", "pr1")}},
		{"service-provider", "Encounter", enc, "service-provider", []Entry{refTo("service-provider", "Organization", "org1")}},
		{"active", "Patient", pat, "active", []Entry{tok("active", "", "true", "")}},
		{"phone", "Patient", pat, "phone", []Entry{tok("phone", "", "555-0100", "")}},
		{"email", "Patient", pat, "email", []Entry{tok("email", "", "a@b.example", "")}},
		{"telecom", "Patient", pat, "telecom", []Entry{tok("telecom", "", "555-0100", ""), tok("telecom", "", "a@b.example", ""),
			tok("telecom", "", "nosys", "")}},
		{"address", "Patient", pat, "address", []Entry{str("address", "1 main st", "1 Main St"), str("address", "boston", "Boston"),
			str("address", "ma", "MA"), str("address", "02118", "02118")}},
		{"address-city", "Patient", pat, "address-city", []Entry{str("address-city", "boston", "Boston")}},
		{"address-postalcode", "Patient", pat, "address-postalcode", []Entry{str("address-postalcode", "02118", "02118")}},
		{"address-state", "Patient", pat, "address-state", []Entry{str("address-state", "ma", "MA")}},
		{"general-practitioner", "Patient", pat, "general-practitioner", []Entry{refTo("general-practitioner", "Practitioner", "pr1")}},
		{"organization", "Patient", pat, "organization", []Entry{refTo("organization", "Organization", "org1")}},
		{"deceased by a date", "Patient", pat, "deceased", []Entry{tok("deceased", "", "true", "")}},
		{"deceased false", "Patient", `{"resourceType": "Patient", "deceasedBoolean": false}`, "deceased", []Entry{tok("deceased", "", "false", "")}},
		{"deceased unsaid", "Patient", `{"resourceType": "Patient"}`, "deceased", []Entry{tok("deceased", "", "false", "")}},
		{"medadmin status", "MedicationAdministration", medAdmin, "status",
			[]Entry{tok("status", "http://terminology.hl7.org/CodeSystem/medication-admin-status", "completed", "")}},
		{"medication", "MedicationAdministration", medAdmin, "medication", []Entry{refTo("medication", "Medication", "med1")}},
		{"context", "MedicationAdministration", medAdmin, "context", []Entry{refTo("context", "Encounter", "e1")}},
		{"performer", "MedicationAdministration", medAdmin, "performer", []Entry{refTo("performer", "Practitioner", "pr1")}},
		{"actuality", "AdverseEvent", `{"resourceType": "AdverseEvent", "actuality": "actual"}`, "actuality",
			[]Entry{tok("actuality", "http://hl7.org/fhir/adverse-event-actuality", "actual", "")}},
		{"adverse event category", "AdverseEvent", `{"resourceType": "AdverseEvent", "category": [{"coding": [{"code": "wrong-dose"}]}]}`,
			"category", []Entry{tok("category", "", "wrong-dose", "")}},
		{"procedure encounter", "Procedure", `{"resourceType": "Procedure", "encounter": {"reference": "Encounter/e1"}}`, "encounter",
			[]Entry{refTo("encounter", "Encounter", "e1")}},
		{"procedure category", "Procedure", `{"resourceType": "Procedure", "category": {"coding": [{"system": "` + sct + `", "code": "103693007"}]}}`,
			"category", []Entry{tok("category", sct, "103693007", "")}},
		{"report code", "DiagnosticReport", `{"resourceType": "DiagnosticReport", "code": {"coding": [{"system": "` + loinc + `", "code": "51990-0"}]}}`,
			"code", []Entry{tok("code", loinc, "51990-0", "")}},
		{"report result", "DiagnosticReport", `{"resourceType": "DiagnosticReport", "result": [{"reference": "Observation/o1"}]}`,
			"result", []Entry{refTo("result", "Observation", "o1")}},
		{"report date", "DiagnosticReport", `{"resourceType": "DiagnosticReport", "effectiveDateTime": "2026-03-02"}`, "date",
			[]Entry{{Param: "date", Type: TypeDate, Low: utc(2026, 3, 2, 0, 0, 0, 0), High: utc(2026, 3, 2, 23, 59, 59, 999)}}},
		{"report patient", "DiagnosticReport", `{"resourceType": "DiagnosticReport", "subject": {"reference": "Patient/p1"}}`, "patient",
			[]Entry{refTo("patient", "Patient", "p1")}},
		{"vaccine-code", "Immunization", `{"resourceType": "Immunization", "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}]}}`,
			"vaccine-code", []Entry{tok("vaccine-code", "http://hl7.org/fhir/sid/cvx", "140", "")}},
		{"immunization date", "Immunization", `{"resourceType": "Immunization", "occurrenceDateTime": "2026-03-02"}`, "date",
			[]Entry{{Param: "date", Type: TypeDate, Low: utc(2026, 3, 2, 0, 0, 0, 0), High: utc(2026, 3, 2, 23, 59, 59, 999)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := storedAs(tc.rt, extractJSON(t, tc.rt, tc.doc), tc.param)
			same := len(got) == len(tc.want)
			for _, w := range tc.want {
				same = same && hasEntry(got, w)
			}
			for _, g := range got {
				same = same && hasEntry(tc.want, g)
			}
			if !same {
				t.Errorf("Extract(%s) %s = %+v\nwant %+v (in any order)", tc.rt, tc.param, got, tc.want)
			}
		})
	}
}
