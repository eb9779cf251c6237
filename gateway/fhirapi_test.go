package gateway_test

import (
	"net/http"
	"strings"
	"testing"
)

// The FHIR API features of issue 13 items 5-7, through the real handler.

// TestConditionalTypeForm: ifNoneExist, If-None-Exist and conditional
// update criteria are accepted as Type?criteria when Type is the entry's
// type (HL7's Bundle-xds writes them so); another type is 400 naming the
// entry, and nothing is written.
func TestConditionalTypeForm(t *testing.T) {
	h := fhirServer(t)
	entry := strings.Replace(patEntry, `"ifNoneExist":"identifier=`, `"ifNoneExist":"Patient?identifier=`, 1)
	if rec := req(h, "POST", "/fhir", txBundle(entry)); rec.Code != 200 {
		t.Fatalf("transaction with ifNoneExist Patient?identifier= = %d %s", rec.Code, rec.Body)
	}
	rec := req(h, "POST", "/fhir", txBundle(entry))
	st := decode(t, rec)["entry"].([]any)[0].(map[string]any)["response"].(map[string]any)["status"]
	if st != "200 OK" {
		t.Errorf("the same Type?criteria again = %v, want 200 OK (matched)", st)
	}
	rec = req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: Patient?identifier=http://hospital.example/mrn|M1")
	if rec.Code != http.StatusOK {
		t.Errorf("If-None-Exist: Patient?identifier= = %d, want 200 (matched)", rec.Code)
	}
	rec = req(h, "PUT", "/fhir/Patient?identifier=http://hospital.example/mrn|M1", strings.Replace(patientJSON, "Ann", "Anne", 1))
	if rec.Code != http.StatusOK {
		t.Errorf("conditional update = %d %s", rec.Code, rec.Body)
	}

	// Another type: 400 naming the entry, nothing written.
	other := strings.Replace(patEntry, `"ifNoneExist":"identifier=http://hospital.example/mrn|M1`,
		`"ifNoneExist":"Observation?identifier=http://hospital.example/mrn|NEW`, 1)
	other = strings.Replace(other, `"value":"M1"`, `"value":"NEW"`, 1)
	other = strings.Replace(other, "urn:uuid:11111111-1111-4111-8111-111111111111", "urn:uuid:55555555-5555-4555-8555-555555555555", 1)
	rec = req(h, "POST", "/fhir", txBundle(patEntry, other))
	assertOutcome(t, rec, 400, "search-type-mismatch", "")
	if !strings.Contains(rec.Body.String(), "Bundle entry 1") {
		t.Errorf("the outcome does not name the entry: %s", rec.Body)
	}
	rec = req(h, "POST", "/fhir/Patient", patientJSON, "If-None-Exist: Observation?identifier=http://hospital.example/mrn|M1")
	assertOutcome(t, rec, 400, "search-type-mismatch", "")
	if n := decode(t, req(h, "GET", "/fhir/Patient?identifier=http://hospital.example/mrn|NEW", ""))["total"].(float64); n != 0 {
		t.Errorf("a refused Type?criteria wrote %v patients", n)
	}
}
