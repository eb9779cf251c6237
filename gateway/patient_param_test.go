package gateway_test

import (
	"net/http"
	"testing"
)

// TestPatientParamIsWhoseRecord: a resource is a patient's by R4's patient
// parameter of its type (clinical-patient: MedicationStatement.subject,
// Goal.subject, AllergyIntolerance.patient), not by any reference to a
// Patient in it. A mother who only reported her child's medication, goal
// and allergy (informationSource, expressedBy, asserter: references R4
// allows to a Patient) finds none of them by patient=, in her compartment
// or in her $everything; the child finds all three.
func TestPatientParamIsWhoseRecord(t *testing.T) {
	h := fhirServer(t)
	put := func(path, body string) {
		t.Helper()
		if rec := req(h, "PUT", "/fhir/"+path, body); rec.Code != http.StatusCreated && rec.Code != http.StatusOK {
			t.Fatalf("PUT %s = %d %s", path, rec.Code, rec.Body)
		}
	}
	put("Patient/mother", `{"resourceType":"Patient","id":"mother"}`)
	put("Patient/child", `{"resourceType":"Patient","id":"child"}`)
	put("MedicationStatement/ms1", `{"resourceType":"MedicationStatement","id":"ms1","status":"active",
		"medicationCodeableConcept":{"text":"sertraline 50 mg"},
		"subject":{"reference":"Patient/child"},"informationSource":{"reference":"Patient/mother"}}`)
	put("Goal/g1", `{"resourceType":"Goal","id":"g1","lifecycleStatus":"active",
		"description":{"text":"reduce self-harm episodes"},
		"subject":{"reference":"Patient/child"},"expressedBy":{"reference":"Patient/mother"}}`)
	put("AllergyIntolerance/a1", `{"resourceType":"AllergyIntolerance","id":"a1","code":{"text":"peanut"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]},
		"patient":{"reference":"Patient/child"},"asserter":{"reference":"Patient/mother"}}`)

	total := func(t *testing.T, target string) float64 {
		t.Helper()
		rec := req(h, "GET", target, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", target, rec.Code, rec.Body)
		}
		n, _ := decode(t, rec)["total"].(float64)
		return n
	}
	for _, typ := range []string{"MedicationStatement", "Goal", "AllergyIntolerance"} {
		for _, tc := range []struct {
			name, target string
			want         float64
		}{
			{"patient=mother", "/fhir/" + typ + "?patient=mother", 0},
			{"patient=Patient/mother", "/fhir/" + typ + "?patient=Patient/mother", 0},
			{"patient=child", "/fhir/" + typ + "?patient=child", 1},
			{"mother's compartment", "/fhir/Patient/mother/" + typ, 0},
			{"child's compartment", "/fhir/Patient/child/" + typ, 1},
			{"mother's $everything", "/fhir/Patient/mother/$everything?_type=" + typ, 1}, // the Patient only
			{"child's $everything", "/fhir/Patient/child/$everything?_type=" + typ, 2},
		} {
			t.Run(typ+"/"+tc.name, func(t *testing.T) {
				if got := total(t, tc.target); got != tc.want {
					t.Errorf("GET %s: total = %v, want %v", tc.target, got, tc.want)
				}
			})
		}
	}

	// $everything without _type: the mother's chart has none of the
	// child's records, the child's has all three.
	ids := func(pid string) map[string]bool {
		rec := req(h, "GET", "/fhir/Patient/"+pid+"/$everything", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("$everything of %s = %d %s", pid, rec.Code, rec.Body)
		}
		out := map[string]bool{}
		for _, e := range decode(t, rec)["entry"].([]any) {
			r := e.(map[string]any)["resource"].(map[string]any)
			out[r["resourceType"].(string)+"/"+r["id"].(string)] = true
		}
		return out
	}
	mother, child := ids("mother"), ids("child")
	for _, r := range []string{"MedicationStatement/ms1", "Goal/g1", "AllergyIntolerance/a1"} {
		if mother[r] {
			t.Errorf("Patient/mother/$everything holds %s, the child's", r)
		}
		if !child[r] {
			t.Errorf("Patient/child/$everything lacks %s", r)
		}
	}
}
