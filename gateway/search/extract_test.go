package search

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// extractJSON decodes doc and extracts it.
func extractJSON(t *testing.T, rt, doc string) []Entry {
	t.Helper()
	return Extract(rt, decode(t, []byte(doc)))
}

// wantEntries checks that every wanted entry is in got.
func wantEntries(t *testing.T, got []Entry, want ...Entry) {
	t.Helper()
	for _, w := range want {
		if !hasEntry(got, w) {
			t.Errorf("missing entry %+v\n  in %+v", w, entriesOf(got, w.Param))
		}
	}
}

// wantStored is wantEntries for the entries a store finds for each
// parameter of rt (storedAs): a patient reference kept as the subject's
// row of type Patient is wanted there, and not a second time.
func wantStored(t *testing.T, rt string, got []Entry, want ...Entry) {
	t.Helper()
	for _, w := range want {
		if es := storedAs(rt, got, w.Param); !hasEntry(es, w) {
			t.Errorf("missing entry %+v\n  in %+v", w, es)
		}
		if p, _ := ReferenceRows(rt, w.Param); p != w.Param && w.Type == TypeReference && hasEntry(got, w) {
			t.Errorf("entry %+v is also its own row, besides %s's", w, p)
		}
	}
}

func TestExtractPatient(t *testing.T) {
	got := extractJSON(t, "Patient", `{
		"resourceType": "Patient", "id": "p1",
		"meta": {"lastUpdated": "2026-03-02T10:00:00.123Z"},
		"identifier": [
			{"system": "http://x", "value": "123", "type": {"text": "Medical Record Number"}},
			{"system": "http://x", "value": "123", "type": {"text": "Medical Record Number"}},
			{"value": "only-value"}, {"type": {"text": "nothing else"}}, "garbage"],
		"name": [{"family": "Müller-Lüdenscheidt", "given": ["José", "Ana María"], "prefix": ["Dr."], "text": "Dr. José Müller"},
			{"family": 42, "given": "Single"}],
		"gender": "female",
		"birthDate": "1980-05",
		"telecom": [{"system": "phone", "value": "555"}]
	}`)
	wantEntries(t, got,
		Entry{Param: "_id", Type: TypeToken, Code: "p1"},
		Entry{Param: "_lastUpdated", Type: TypeDate, Low: utc(2026, 3, 2, 10, 0, 0, 123), High: utc(2026, 3, 2, 10, 0, 0, 123)},
		Entry{Param: "identifier", Type: TypeToken, System: "http://x", Code: "123", Text: "medical record number"},
		Entry{Param: "identifier", Type: TypeToken, Code: "only-value"},
		Entry{Param: "family", Type: TypeString, Norm: "muller ludenscheidt", Exact: "Müller-Lüdenscheidt"},
		Entry{Param: "given", Type: TypeString, Norm: "jose", Exact: "José"},
		Entry{Param: "given", Type: TypeString, Norm: "ana maria", Exact: "Ana María"},
		Entry{Param: "given", Type: TypeString, Norm: "single", Exact: "Single"},
		Entry{Param: "name", Type: TypeString, Norm: "muller ludenscheidt", Exact: "Müller-Lüdenscheidt"},
		Entry{Param: "name", Type: TypeString, Norm: "jose", Exact: "José"},
		Entry{Param: "name", Type: TypeString, Norm: "dr", Exact: "Dr."},
		Entry{Param: "name", Type: TypeString, Norm: "dr jose muller", Exact: "Dr. José Müller"},
		Entry{Param: "gender", Type: TypeToken, System: "http://hl7.org/fhir/administrative-gender", Code: "female"},
		Entry{Param: "birthdate", Type: TypeDate, Low: utc(1980, 5, 1, 0, 0, 0, 0), High: utc(1980, 5, 31, 23, 59, 59, 999)},
	)
	if n := len(entriesOf(got, "identifier")); n != 2 {
		t.Errorf("identifier entries = %d, want 2 (deduplicated, empty skipped): %+v", n, entriesOf(got, "identifier"))
	}
	if n := len(entriesOf(got, "family")); n != 1 {
		t.Errorf("family entries = %d, want 1 (a number is skipped)", n)
	}
	// Entries come grouped in parameter-name order.
	for i := 1; i < len(got); i++ {
		if got[i-1].Param > got[i].Param {
			t.Fatalf("entries not in parameter order: %q before %q", got[i-1].Param, got[i].Param)
		}
	}
}

func TestExtractObservation(t *testing.T) {
	got := extractJSON(t, "Observation", `{
		"resourceType": "Observation", "id": "o1", "status": "final",
		"category": [{"text": "Vital Signs"}, {"coding": [{"system": "http://c", "code": "vs", "display": "VS Display"}]}],
		"code": {"coding": [{"system": "http://loinc.org", "code": "85354-9", "display": "Blood pressure panel"},
			{"display": "display only"}], "text": "BP"},
		"subject": {"reference": "Patient/123/_history/4"},
		"effectivePeriod": {"start": "2026-03-02T09:00:00-05:00"},
		"effectiveTiming": {"event": ["2026-03-02", "bad"]},
		"valueQuantity": {"value": 128.5, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
		"component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
			"valueQuantity": {"value": 120}}],
		"partOf": [{"type": "Procedure", "identifier": {"system": "http://s", "value": "S-1"}},
			{"type": "Patient", "identifier": {"system": "http://s", "value": "wrong-type"}}],
		"hasMember": [{"reference": "https://ehr.example/fhir/Observation/o2/_history/1"}, {"reference": "#contained"}],
		"derivedFrom": [{"reference": "urn:uuid:2163dcc8-2b43-5a20-8bd6-035b1c857e96"}, {"reference": "Practitioner/9"}]
	}`)
	wantStored(t, "Observation", got,
		Entry{Param: "status", Type: TypeToken, System: "http://hl7.org/fhir/observation-status", Code: "final"},
		Entry{Param: "category", Type: TypeToken, Text: "vital signs"},
		Entry{Param: "category", Type: TypeToken, System: "http://c", Code: "vs", Text: "vs display"},
		Entry{Param: "code", Type: TypeToken, System: "http://loinc.org", Code: "85354-9", Text: "bp"},
		Entry{Param: "code", Type: TypeToken, Text: "blood pressure panel"},
		Entry{Param: "code", Type: TypeToken, Text: "display only"},
		Entry{Param: "component-code", Type: TypeToken, System: "http://loinc.org", Code: "8480-6"},
		Entry{Param: "subject", Type: TypeReference, RefType: "Patient", RefID: "123"},
		Entry{Param: "patient", Type: TypeReference, RefType: "Patient", RefID: "123"},
		Entry{Param: "date", Type: TypeDate, Low: utc(2026, 3, 2, 14, 0, 0, 0), High: MaxTime()},
		Entry{Param: "date", Type: TypeDate, Low: utc(2026, 3, 2, 0, 0, 0, 0), High: utc(2026, 3, 2, 23, 59, 59, 999)},
		Entry{Param: "value-quantity", Type: TypeQuantity, Number: 128.5, System: "http://unitsofmeasure.org", Code: "mm[Hg]", Unit: "mmHg"},
		Entry{Param: "part-of", Type: TypeToken, System: "http://s", Code: "S-1"},
		Entry{Param: "has-member", Type: TypeReference, RefType: "Observation", RefID: "",
			RefURL: "https://ehr.example/fhir/Observation/o2/_history/1"},
		Entry{Param: "derived-from", Type: TypeReference, RefURL: "urn:uuid:2163dcc8-2b43-5a20-8bd6-035b1c857e96"},
	)
	for _, e := range got {
		switch {
		case e.Param == "value-quantity" && e.Number == 120:
			t.Error("component valueQuantity indexed as value-quantity")
		case e.Code == "wrong-type":
			t.Error("part-of identifier of a Patient (not a target) indexed")
		case e.RefID == "9":
			t.Error("derived-from a Practitioner (not a target) indexed")
		case e.Param == "has-member" && e.RefURL == "#contained":
			t.Error("contained reference indexed")
		}
	}
	if n := len(entriesOf(got, "date")); n != 2 {
		t.Errorf("date entries = %d, want 2 (a bad event is skipped)", n)
	}
}

func TestExtractReferenceTargets(t *testing.T) {
	tests := []struct {
		name, subject string
		subjectWant   []Entry
		patientWant   []Entry
	}{
		{"relative patient", `{"reference": "Patient/1"}`,
			[]Entry{{RefType: "Patient", RefID: "1"}}, []Entry{{RefType: "Patient", RefID: "1"}}},
		{"group", `{"reference": "Group/g"}`, []Entry{{RefType: "Group", RefID: "g"}}, nil},
		{"urn without type", `{"reference": "urn:uuid:x"}`, []Entry{{RefURL: "urn:uuid:x"}}, nil},
		{"urn typed patient", `{"reference": "urn:uuid:x", "type": "Patient"}`,
			[]Entry{{RefType: "Patient", RefURL: "urn:uuid:x"}}, []Entry{{RefType: "Patient", RefURL: "urn:uuid:x"}}},
		{"canonical type url", `{"reference": "urn:uuid:x", "type": "http://hl7.org/fhir/StructureDefinition/Patient"}`,
			[]Entry{{RefType: "Patient", RefURL: "urn:uuid:x"}}, []Entry{{RefType: "Patient", RefURL: "urn:uuid:x"}}},
		{"urn typed group", `{"reference": "urn:uuid:x", "type": "Group"}`,
			[]Entry{{RefType: "Group", RefURL: "urn:uuid:x"}}, nil},
		{"absolute patient (another server's: no local id)", `{"reference": "http://other/fhir/Patient/7"}`,
			[]Entry{{RefType: "Patient", RefURL: "http://other/fhir/Patient/7"}},
			[]Entry{{RefType: "Patient", RefURL: "http://other/fhir/Patient/7"}}},
		{"identifier only", `{"type": "Patient", "identifier": {"system": "http://mrn", "value": "42"}}`,
			[]Entry{{Type: TypeToken, System: "http://mrn", Code: "42"}}, []Entry{{Type: TypeToken, System: "http://mrn", Code: "42"}}},
		{"identifier untyped", `{"identifier": {"system": "http://mrn", "value": "42"}}`,
			[]Entry{{Type: TypeToken, System: "http://mrn", Code: "42"}}, nil},
		{"not a target", `{"reference": "Practitioner/1"}`, nil, nil},
		{"unparsable relative", `{"reference": "Patient/1/extra"}`, []Entry{{RefURL: "Patient/1/extra"}}, nil},
		{"wrong json", `{"reference": 7}`, nil, nil},
		{"string", `"Patient/1"`, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := extractJSON(t, "Condition", `{"resourceType": "Condition", "subject": `+tt.subject+`}`)
			check := func(param string, want []Entry) {
				t.Helper()
				es := storedAs("Condition", got, param)
				if len(es) != len(want) {
					t.Fatalf("%s entries = %+v, want %+v", param, es, want)
				}
				for i, w := range want {
					w.Param = param
					if w.Type == "" {
						w.Type = TypeReference
					}
					if es[i] != w {
						t.Errorf("%s entry = %+v, want %+v", param, es[i], w)
					}
				}
			}
			check("subject", tt.subjectWant)
			check("patient", tt.patientWant)
		})
	}
}

func TestExtractCompartment(t *testing.T) {
	// Medication: R4 defines no patient parameter for it, so the
	// gateway's own walks the whole resource.
	got := extractJSON(t, "Medication", `{
		"resourceType": "Medication", "id": "c1",
		"patient": {"reference": "Patient/p1"},
		"provider": {"reference": "Practitioner/d1"},
		"item": [{"encounter": [{"reference": "Encounter/e1"}]}],
		"insurance": [{"coverage": {"reference": "urn:uuid:u1", "type": "Patient"}}],
		"extension": [{"url": "http://x", "valueReference": {"reference": "https://ehr/fhir/Patient/p2"}}],
		"related": [{"claim": {"type": "Patient", "identifier": {"system": "http://mrn", "value": "9"}}}],
		"contained": [{"resourceType": "Coverage", "beneficiary": {"reference": "Patient/p3"}}]
	}`)
	want := []Entry{
		{Param: "patient", Type: TypeReference, RefType: "Patient", RefURL: "https://ehr/fhir/Patient/p2"},
		{Param: "patient", Type: TypeReference, RefType: "Patient", RefID: "p3"},
		{Param: "patient", Type: TypeReference, RefType: "Patient", RefURL: "urn:uuid:u1"},
		{Param: "patient", Type: TypeReference, RefType: "Patient", RefID: "p1"},
		{Param: "patient", Type: TypeToken, System: "http://mrn", Code: "9"},
	}
	es := entriesOf(got, "patient")
	if len(es) != len(want) {
		t.Fatalf("patient entries = %+v, want %+v", es, want)
	}
	wantEntries(t, got, want...)
	// Deterministic order.
	again := extractJSON(t, "Medication", `{"resourceType": "Medication", "b": {"reference": "Patient/b"}, "a": {"reference": "Patient/a"}}`)
	if len(again) != 2 || again[0].RefID != "a" {
		t.Errorf("compartment entries not in key order: %+v", again)
	}
}

func TestExtractRobust(t *testing.T) {
	docs := []string{
		`{}`,
		`{"id": 5, "meta": [], "identifier": {"system": 1}, "name": "x", "birthDate": 19800101, "gender": true}`,
		`{"subject": [], "effectivePeriod": "2026", "effectiveTiming": {"event": "2026-01-01", "repeat": {"boundsPeriod": {"end": "2026"}}},
		  "valueQuantity": {"value": "12"}, "component": {"code": {"coding": {"code": "x"}}}, "code": {"coding": [null, 1, {"code": 2}]}}`,
		`{"effectivePeriod": {"start": "2027-01-01", "end": "2026-01-01"}}`,
		`{"effectivePeriod": {"start": "bad"}}`,
		`{"valueQuantity": {"value": 1e400}}`,
	}
	for _, rt := range []string{"Patient", "Observation", "AuditEvent", "Claim", "Unknown"} {
		for _, d := range docs {
			_ = extractJSON(t, rt, d)
		}
	}
	if Extract("Patient", nil) != nil || Extract("Nope", map[string]any{"id": "x"}) != nil {
		t.Error("Extract of nil / unknown type is not nil")
	}
	got := extractJSON(t, "Observation", docs[3])
	wantEntries(t, got, Entry{Param: "date", Type: TypeDate, Low: utc(2026, 1, 1, 0, 0, 0, 0), High: utc(2027, 1, 1, 23, 59, 59, 999)})
	got = extractJSON(t, "Observation", docs[2])
	wantEntries(t, got, Entry{Param: "date", Type: TypeDate, Low: utc(2026, 1, 1, 0, 0, 0, 0), High: utc(2026, 1, 1, 23, 59, 59, 999)},
		Entry{Param: "date", Type: TypeDate, Low: MinTime(), High: utc(2026, 12, 31, 23, 59, 59, 999)},
		Entry{Param: "component-code", Type: TypeToken, Code: "x"})
	for _, e := range entriesOf(extractJSON(t, "Observation", docs[5]), "value-quantity") {
		t.Errorf("overflowing quantity indexed: %+v", e)
	}
	// float64 numbers (a decoder without UseNumber) are read too.
	es := Extract("Observation", map[string]any{"valueQuantity": map[string]any{"value": 2.5}})
	wantEntries(t, es, Entry{Param: "value-quantity", Type: TypeQuantity, Number: 2.5})
}

func TestExtractGoldenAdverseEvent(t *testing.T) {
	rs := goldenResources(t, "examples/adverse-event/dissociation-moderate.golden.json")
	patient := firstOfType(t, rs, "Patient")
	pid := patient["id"].(string)
	got := Extract("AdverseEvent", firstOfType(t, rs, "AdverseEvent"))
	wantEntries(t, got,
		Entry{Param: "_id", Type: TypeToken, Code: "bbac4497-446c-5865-aa23-efc0969752c7"},
		Entry{Param: "identifier", Type: TypeToken, System: "https://ketamine-gateway.org/fhir/sid/harbor-ketamine-ehr/adverse-event", Code: "hk-ae-7001"},
		Entry{Param: "event", Type: TypeToken, System: "http://terminology.hl7.org/CodeSystem/MDRAE", Code: "10013457",
			Text: "dissociation ketamine induced dissociative state"},
		Entry{Param: "event", Type: TypeToken, Text: "dissociation"},
		Entry{Param: "seriousness", Type: TypeToken, System: "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness", Code: "Non-serious", Text: "non serious"},
		Entry{Param: "severity", Type: TypeToken, System: "http://terminology.hl7.org/CodeSystem/adverse-event-severity", Code: "moderate", Text: "moderate"},
		Entry{Param: "date", Type: TypeDate, Low: utc(2026, 2, 17, 17, 15, 0, 0), High: utc(2026, 2, 17, 17, 15, 0, 999)},
		Entry{Param: "subject", Type: TypeReference, RefType: "Patient", RefID: pid},
		Entry{Param: "substance", Type: TypeToken, System: "https://ketamine-gateway.org/fhir/sid/harbor-ketamine-ehr/infusion-session", Code: "hk-inf-30052-medication"},
		Entry{Param: "substance", Type: TypeToken, System: "https://ketamine-gateway.org/fhir/sid/harbor-ketamine-ehr/infusion-session", Code: "hk-inf-30052"},
	)
	if es := entriesOf(got, "patient"); len(es) != 0 {
		t.Errorf("AdverseEvent has patient entries: %+v", es)
	}
	pe := Extract("Patient", patient)
	wantEntries(t, pe,
		Entry{Param: "identifier", Type: TypeToken, System: "https://ketamine-gateway.org/fhir/sid/harbor-ketamine-ehr/patient",
			Code: "hk-patient-0789", Text: "patient internal identifier"},
		Entry{Param: "family", Type: TypeString, Norm: "sample", Exact: "Sample"},
		Entry{Param: "name", Type: TypeString, Norm: "riley", Exact: "Riley"},
		Entry{Param: "gender", Type: TypeToken, System: "http://hl7.org/fhir/administrative-gender", Code: "other"})
}

func TestExtractGoldenInfusion(t *testing.T) {
	rs := goldenResources(t, "infusion/iv-completed.golden.json")
	pid := firstOfType(t, rs, "Patient")["id"].(string)
	proc := firstOfType(t, rs, "Procedure")
	procID := proc["id"].(string)
	got := Extract("Procedure", proc)
	wantStored(t, "Procedure", got,
		Entry{Param: "code", Type: TypeToken, System: "http://snomed.info/sct", Code: "14152002", Text: "ketamine intravenous infusion"},
		Entry{Param: "code", Type: TypeToken, Text: "intravenous infusion"},
		Entry{Param: "date", Type: TypeDate, Low: utc(2026, 3, 2, 14, 0, 0, 0), High: utc(2026, 3, 2, 16, 0, 0, 999)},
		Entry{Param: "status", Type: TypeToken, System: "http://hl7.org/fhir/event-status", Code: "completed"},
		Entry{Param: "identifier", Type: TypeToken, System: "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/infusion-session", Code: "S-2026-0001"},
		Entry{Param: "patient", Type: TypeReference, RefType: "Patient", RefID: pid},
		Entry{Param: "subject", Type: TypeReference, RefType: "Patient", RefID: pid},
	)
	got = Extract("MedicationAdministration", firstOfType(t, rs, "MedicationAdministration"))
	wantStored(t, "MedicationAdministration", got,
		Entry{Param: "code", Type: TypeToken, System: "http://www.nlm.nih.gov/research/umls/rxnorm", Code: "6130", Text: "ketamine"},
		Entry{Param: "code", Type: TypeToken, System: "http://snomed.info/sct", Code: "373464007", Text: "ketamine"},
		Entry{Param: "effective-time", Type: TypeDate, Low: utc(2026, 3, 2, 14, 0, 0, 0), High: utc(2026, 3, 2, 14, 40, 0, 999)},
		Entry{Param: "part-of", Type: TypeReference, RefType: "Procedure", RefID: procID},
		Entry{Param: "patient", Type: TypeReference, RefType: "Patient", RefID: pid},
	)
}

func TestExtractGoldenVitals(t *testing.T) {
	rs := goldenResources(t, "vitals/pre-dose-full.golden.json")
	var bp, hr map[string]any
	for _, r := range rs {
		if r["resourceType"] != "Observation" {
			continue
		}
		switch r["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)["code"] {
		case "85354-9":
			bp = r
		case "8867-4":
			hr = r
		}
	}
	if bp == nil || hr == nil {
		t.Fatal("blood pressure or heart rate Observation missing")
	}
	got := Extract("Observation", bp)
	wantEntries(t, got,
		Entry{Param: "component-code", Type: TypeToken, System: "http://loinc.org", Code: "8480-6", Text: "systolic blood pressure"},
		Entry{Param: "component-code", Type: TypeToken, System: "http://loinc.org", Code: "8462-4", Text: "diastolic blood pressure"},
		Entry{Param: "category", Type: TypeToken, System: "http://terminology.hl7.org/CodeSystem/observation-category", Code: "vital-signs", Text: "vital signs"},
		Entry{Param: "part-of", Type: TypeToken, System: "https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/infusion-session", Code: "S-2026-0001"},
		Entry{Param: "date", Type: TypeDate, Low: utc(2026, 3, 2, 8, 50, 0, 0), High: utc(2026, 3, 2, 8, 50, 0, 999)},
	)
	if es := entriesOf(got, "value-quantity"); len(es) != 0 {
		t.Errorf("BP panel has value-quantity entries %+v", es)
	}
	if es := entriesOf(Extract("Observation", hr), "value-quantity"); len(es) != 1 || es[0].Code != "/min" {
		t.Errorf("heart rate value-quantity = %+v, want one in /min", es)
	}
}

// TestExtractAllGoldens extracts every resource of every mapping golden.
func TestExtractAllGoldens(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "..", "mapping", "testdata", "*", "*.golden.json"))
	more, _ := filepath.Glob(filepath.Join("..", "..", "mapping", "testdata", "examples", "*", "*.golden.json"))
	files = append(files, more...)
	if len(files) == 0 {
		t.Skip("no mapping golden files")
	}
	for _, f := range files {
		for _, r := range bundleResources(t, readJSON(t, f)) {
			rt, _ := r["resourceType"].(string)
			es := Extract(rt, r)
			if len(entriesOf(es, "_id")) != 1 {
				t.Errorf("%s %s: no _id entry", f, rt)
			}
			if p, ok := Lookup(rt, "patient"); ok && p.Paths != nil && len(storedAs(rt, es, "patient")) == 0 {
				t.Errorf("%s %s: no patient entry", f, rt)
			}
		}
	}
}

// TestExtractSynthea extracts every resource of every Synthea bundle, as
// sent (urn:uuid references) and resolved.
func TestExtractSynthea(t *testing.T) {
	dir := sharedTestdata(t, "synthea")
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		t.Skip("no Synthea bundles")
	}
	if testing.Short() {
		files = files[:1]
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		raw := bundleResourcesRaw(t, decode(t, data))
		resolved := bundleResources(t, decode(t, data))
		for i, r := range raw {
			rt := r["resourceType"].(string)
			_ = Extract(rt, r)
			es := Extract(rt, resolved[i])
			if rt == "Observation" || rt == "Condition" || rt == "Encounter" || rt == "Procedure" || rt == "Immunization" {
				if len(storedAs(rt, es, "patient")) == 0 {
					t.Errorf("%s: %s %v has no patient entry", filepath.Base(f), rt, r["id"])
				}
			}
		}
	}
	// Specific entries of one bundle.
	f := filepath.Join(dir, "Barrett_Douglas_d21c38f7-9fc7-4729-b414-3e0fe5ce3d8b.json")
	if _, err := os.Stat(f); err != nil {
		t.Skip("Barrett_Douglas bundle absent")
	}
	rs := bundleResources(t, readJSON(t, f))
	pe := Extract("Patient", firstOfType(t, rs, "Patient"))
	wantEntries(t, pe,
		Entry{Param: "identifier", Type: TypeToken, System: "http://hl7.org/fhir/sid/us-ssn", Code: "999-67-3021", Text: "social security number"},
		Entry{Param: "identifier", Type: TypeToken, System: "https://github.com/synthetichealth/synthea", Code: "d21c38f7-9fc7-4729-b414-3e0fe5ce3d8b"})
	obs := Extract("Observation", firstOfType(t, rs, "Observation"))
	wantStored(t, "Observation", obs,
		Entry{Param: "code", Type: TypeToken, System: "http://loinc.org", Code: "8302-2", Text: "body height"},
		Entry{Param: "patient", Type: TypeReference, RefType: "Patient", RefID: "1d3b3586-5268-4ce8-b1eb-9fc7cc0947a4"},
		Entry{Param: "value-quantity", Type: TypeQuantity, Number: 181.76153240895297, System: "http://unitsofmeasure.org", Code: "cm", Unit: "cm"},
		Entry{Param: "date", Type: TypeDate, Low: utc(2000, 4, 15, 19, 20, 6, 0), High: utc(2000, 4, 15, 19, 20, 6, 999)})
}

// bundleResourcesRaw returns the resources of a Bundle untouched.
func bundleResourcesRaw(t *testing.T, bundle map[string]any) []map[string]any {
	var out []map[string]any
	for _, e := range bundle["entry"].([]any) {
		out = append(out, e.(map[string]any)["resource"].(map[string]any))
	}
	return out
}

// TestExtractConformance: a conformance resource is found by its canonical
// url (a uri), version, name and status.
func TestExtractConformance(t *testing.T) {
	sd := map[string]any{"resourceType": "StructureDefinition", "url": "https://x.example/StructureDefinition/a",
		"version": "2.0.0", "name": "KGVitalSigns", "status": "active"}
	got := map[string]Entry{}
	for _, e := range Extract("StructureDefinition", sd) {
		got[e.Param] = e
	}
	if e := got["url"]; e.Type != TypeURI || e.Exact != "https://x.example/StructureDefinition/a" {
		t.Errorf("url entry = %+v", e)
	}
	if e := got["version"]; e.Type != TypeToken || e.Code != "2.0.0" {
		t.Errorf("version entry = %+v", e)
	}
	if got["name"].Type != TypeString || got["status"].Code != "active" {
		t.Errorf("entries = %+v", got)
	}
	for _, typ := range []string{"CodeSystem", "ValueSet", "SearchParameter", "OperationDefinition", "ImplementationGuide"} {
		if p, ok := Lookup(typ, "url"); !ok || p.Type != TypeURI {
			t.Errorf("Lookup(%s, url) = %+v, %v", typ, p, ok)
		}
		if _, ok := Lookup(typ, "patient"); !ok {
			t.Errorf("Lookup(%s, patient): the compartment parameter is gone", typ)
		}
	}
}

// TestExtractDedupesMany: a parameter with more entries than add compares
// one by one (fewEntries) still gets each distinct entry once, in order.
func TestExtractDedupesMany(t *testing.T) {
	for _, n := range []int{1, fewEntries - 1, fewEntries, fewEntries + 1, 3 * fewEntries} {
		var codings []any
		for i := range n {
			c := map[string]any{"system": "http://s", "code": string(rune('A'+i%26)) + string(rune('a'+i/26))}
			codings = append(codings, c, c) // each twice
		}
		codings = append(codings, codings[0])
		doc := map[string]any{"resourceType": "Observation", "code": map[string]any{"coding": codings}}
		var got []string
		for _, e := range Extract("Observation", doc) {
			if e.Param == "code" {
				got = append(got, e.Code)
			}
		}
		if len(got) != n {
			t.Errorf("%d distinct codings, each twice: %d code entries, want %d", n, len(got), n)
		}
		for i := 0; i < len(got) && i < n; i++ {
			if want := string(rune('A'+i%26)) + string(rune('a'+i/26)); got[i] != want {
				t.Errorf("%d codings: entry %d = %s, want %s", n, i, got[i], want)
				break
			}
		}
	}
}

// TestExtractCodeSystems: a code element is indexed with the code system
// its R4 required binding implies, in the one entry its code has; a code
// no such system defines (a string, an extension, a code outside the
// value set) has none.
func TestExtractCodeSystems(t *testing.T) {
	tests := []struct {
		rt, param string
		doc       map[string]any
		system    string
		code      string
	}{
		{"Patient", "gender", map[string]any{"gender": "female"}, "http://hl7.org/fhir/administrative-gender", "female"},
		{"Patient", "gender", map[string]any{"gender": "unknown"}, "http://hl7.org/fhir/administrative-gender", "unknown"},
		{"Patient", "gender", map[string]any{"gender": "f"}, "", "f"}, // not R4's: no system
		{"Observation", "status", map[string]any{"status": "final"}, "http://hl7.org/fhir/observation-status", "final"},
		{"Procedure", "status", map[string]any{"status": "completed"}, "http://hl7.org/fhir/event-status", "completed"},
		{"MedicationRequest", "intent", map[string]any{"intent": "order"},
			"http://hl7.org/fhir/CodeSystem/medicationrequest-intent", "order"},
		{"MedicationRequest", "status", map[string]any{"status": "active"},
			"http://hl7.org/fhir/CodeSystem/medicationrequest-status", "active"},
		{"AuditEvent", "action", map[string]any{"action": "R"}, "http://hl7.org/fhir/audit-event-action", "R"},
		{"AuditEvent", "outcome", map[string]any{"outcome": "4"}, "http://hl7.org/fhir/audit-event-outcome", "4"},
		{"AuditEvent", "site", map[string]any{"source": map[string]any{"site": "clinic-a"}}, "", "clinic-a"}, // a string
		{"ValueSet", "status", map[string]any{"status": "active"}, "http://hl7.org/fhir/publication-status", "active"},
		{"ValueSet", "version", map[string]any{"version": "1.0.0"}, "", "1.0.0"}, // a string
		{"Patient", "_id", map[string]any{"id": "p1"}, "", "p1"},                 // an id
		{"AuditEvent", "trace-id", map[string]any{"extension": []any{map[string]any{"url": TraceIDExtension,
			"valueString": "0af7651916cd43dd8448eb211c80319c"}}}, "", "0af7651916cd43dd8448eb211c80319c"},
	}
	for _, tt := range tests {
		t.Run(tt.rt+"."+tt.param+"="+tt.code, func(t *testing.T) {
			tt.doc["resourceType"] = tt.rt
			got := entriesOf(Extract(tt.rt, tt.doc), tt.param)
			want := Entry{Param: tt.param, Type: TypeToken, System: tt.system, Code: tt.code}
			if len(got) != 1 || got[0] != want {
				t.Errorf("Extract(%s) %s entries = %+v, want only %+v", tt.rt, tt.param, got, want)
			}
			if got := CodeSystem(tt.rt, tt.param, tt.code); got != tt.system {
				t.Errorf("CodeSystem(%s, %s, %s) = %q, want %q", tt.rt, tt.param, tt.code, got, tt.system)
			}
		})
	}
}

// TestExtractQuantityComparator: a Quantity's comparator goes with its
// value into the one entry (the value is then a range open at one end);
// anything but R4's four comparators is no comparator.
func TestExtractQuantityComparator(t *testing.T) {
	for _, tt := range []struct {
		comparator any
		want       string
	}{
		{nil, ""}, {"<", "<"}, {"<=", "<="}, {">=", ">="}, {">", ">"}, {"=", ""}, {"lt", ""}, {true, ""},
	} {
		q := map[string]any{"value": json.Number("5"), "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}
		if tt.comparator != nil {
			q["comparator"] = tt.comparator
		}
		doc := map[string]any{"resourceType": "Observation", "valueQuantity": q}
		got := entriesOf(Extract("Observation", doc), "value-quantity")
		want := Entry{Param: "value-quantity", Type: TypeQuantity, Number: 5, System: "http://unitsofmeasure.org",
			Code: "mg", Unit: "mg", Comparator: tt.want}
		if len(got) != 1 || got[0] != want {
			t.Errorf("Extract(comparator %v) value-quantity = %+v, want only %+v", tt.comparator, got, want)
		}
	}
}

// TestExtractIdentifierTypes: each coding of an identifier's type gives
// a row of the parameter's :of-type rows (system "type-system type-code",
// code the value); an identifier without a value or a type gives none.
func TestExtractIdentifierTypes(t *testing.T) {
	const v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
	got := extractJSON(t, "Patient", `{"resourceType":"Patient","identifier":[
		{"type":{"coding":[{"system":"`+v2+`","code":"MR"},{"code":"local"}]},"system":"urn:mrn","value":"M1"},
		{"type":{"coding":[{"system":"`+v2+`","code":"SS"}]},"system":"urn:ssn"},
		{"system":"urn:x","value":"X1"}]}`)
	wantEntries(t, got,
		Entry{Param: "identifier:of-type", Type: TypeToken, System: v2 + " MR", Code: "M1"},
		Entry{Param: "identifier:of-type", Type: TypeToken, System: " local", Code: "M1"},
		Entry{Param: "identifier", Type: TypeToken, System: "urn:mrn", Code: "M1"})
	n := 0
	for _, e := range got {
		if e.Param == "identifier:of-type" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("Extract gave %d of-type rows, want 2: %+v", n, got)
	}
}
