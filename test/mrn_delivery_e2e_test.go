package test

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// TestDeliveryMatchesHospitalPatientByMRN: the hospital (a second gateway
// standing for its FHIR server) already holds the patient under its MRN.
// The record delivered to it charts its Observations on that Patient and
// creates no second one (DECISIONS.md 7): the delivered Patient's
// conditional create matches the clinic identifier or the MRN. A later
// record of the patient without an MRN is charted there too: its Patient is
// matched by the MRN the gateway holds (p40 F1), not made again from the
// clinic identifier alone.
func TestDeliveryMatchesHospitalPatientByMRN(t *testing.T) {
	dir := t.TempDir()
	ehr := start(t, "--db", filepath.Join(dir, "ehr.db"))
	const mrnSystem, mrn = "https://serenity-test-hospital.example/fhir/mrn", "MRN-TEST-000123"
	status, _, created := doReq(t, "POST", ehr.base+"/fhir/Patient", `{"resourceType":"Patient",
		"identifier":[{"system":"`+mrnSystem+`","value":"`+mrn+`"}],"name":[{"family":"Testpatient"}]}`)
	if status != 201 {
		t.Fatalf("create the hospital's Patient = %d %v", status, created)
	}
	hospitalID, _ := created["id"].(string)

	g := start(t, "--db", filepath.Join(dir, "kg.db"), "--ehr-url", ehr.base+"/fhir")
	body, err := os.ReadFile("../schemas/examples/vitals/pre-dose-baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	if status, _, resp := doReq(t, "POST", g.base+"/ingest/vitals", string(body)); status != 200 {
		t.Fatalf("ingest = %d %v", status, resp)
	}
	waitDelivered(t, g, 1)

	_, _, set := doReq(t, "GET", ehr.base+"/fhir/Patient?identifier="+url.QueryEscape(mrnSystem+"|"+mrn), "")
	if n, _ := set["total"].(float64); n != 1 {
		t.Errorf("the EHR holds %v Patients with the MRN, want 1 (the hospital's): %v", set["total"], set)
	}
	_, _, obs := doReq(t, "GET", ehr.base+"/fhir/Observation?subject=Patient/"+hospitalID+"&_summary=count", "")
	first, _ := obs["total"].(float64)
	if first == 0 {
		t.Errorf("no Observation at the EHR is about the hospital's Patient %s: %v", hospitalID, obs)
	}

	var doc map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc["patient"].(map[string]any), "mrn")
	doc["source"].(map[string]any)["recordId"] = "VIT-2026-0310-002"
	doc["timepoint"] = "post-dose-40min"
	without, _ := json.Marshal(doc)
	if status, _, resp := doReq(t, "POST", g.base+"/ingest/vitals", string(without)); status != 200 {
		t.Fatalf("ingest without MRN = %d %v", status, resp)
	}
	waitDelivered(t, g, 2)
	_, _, all := doReq(t, "GET", ehr.base+"/fhir/Patient?_summary=count", "")
	if n, _ := all["total"].(float64); n != 1 {
		t.Errorf("after a record without MRN the EHR holds %v Patients, want 1 (the hospital's)", all["total"])
	}
	_, _, obs = doReq(t, "GET", ehr.base+"/fhir/Observation?subject=Patient/"+hospitalID+"&_summary=count", "")
	if n, _ := obs["total"].(float64); n <= first {
		t.Errorf("the record without MRN is not charted on the hospital's Patient %s: %v Observations, %v before", hospitalID, n, first)
	}
}
