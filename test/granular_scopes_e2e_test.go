package test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// TestGranularScopesEveryWay: a hospital registered for the clinic's vital
// signs (system/Observation.rs restricted to the vital-signs category, and
// create of vital signs) gets a token with exactly that scope, sees the
// vital-sign Observation and nothing of the PHQ-9 Observation (a survey)
// or of an Observation without a category, by every way resources leave
// the gateway (disclosureWays, bulk export), with searches' totals that
// count only what it may see; it cannot create a PHQ-9, nor learn through a
// _has which patients have one; the log does not carry the restriction.
func TestGranularScopesEveryWay(t *testing.T) {
	const cat = "http://terminology.hl7.org/CodeSystem/observation-category"
	const vital = "system/Observation.rs?category=" + cat + "|vital-signs"
	const vitalCreate = "system/Observation.c?category=" + cat + "|vital-signs"
	clients := []securedClient{
		{id: "clinic", tenant: "clinic-a", scopes: []string{"system/*.cruds", "gateway/ingest"}},
		{id: "hospital", tenant: "clinic-a", scopes: []string{vital, vitalCreate, "system/Patient.rs"}},
	}
	s := startSecuredClients(t, clients, nil, nil, "--rate-limit", "100000")
	clinic := s.token(t, "clinic", "system/*.cruds gateway/ingest")
	ids := seedMatrix(t, s.base, clinic) // its Observation has no category
	obs := func(category, code string) string {
		return `{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"` + cat + `","code":"` +
			category + `"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"` + code + `"}]},` +
			`"subject":{"reference":"Patient/` + ids["Patient"] + `"}}`
	}
	post := func(token, body string) (int, map[string]any) {
		status, _, b := call(t, "POST", s.base+"/fhir/Observation", token, body)
		return status, b
	}
	_, b := post(clinic, obs("vital-signs", "85354-9"))
	vitalID, _ := b["id"].(string)
	_, b = post(clinic, obs("survey", "44261-6"))
	phq9ID, _ := b["id"].(string)
	if vitalID == "" || phq9ID == "" {
		t.Fatalf("seed Observations: %q %q", vitalID, phq9ID)
	}
	hidden := []string{phq9ID, ids["Observation"]}

	scope := vital + " " + vitalCreate + " system/Patient.rs"
	status, body := s.tokenRequest(t, tokenForm(s.assertion(t, "hospital", nil), scope))
	// One scope per type and restriction, permissions merged.
	want := "system/Patient.rs system/Observation.crs?category=" + cat + "|vital-signs"
	if status != 200 || body["scope"] != want {
		t.Fatalf("hospital token = %d %v, want 200 with scope %q", status, body, want)
	}
	token := body["access_token"].(string)

	seen := map[string]bool{}
	for _, way := range disclosureWays {
		for _, obsID := range []string{vitalID, phq9ID, ids["Observation"]} {
			t.Run(way.name, func(t *testing.T) {
				answers := way.fetch(t, s.base, token, seeded{"Patient": ids["Patient"], "Observation": obsID})
				for _, r := range resources(answers) {
					id, _ := r["id"].(string)
					rt, _ := r["resourceType"].(string)
					if rt != "Observation" && rt != "Patient" {
						t.Errorf("a %s left the gateway for %s", rt, way.name)
					}
					if slices.Contains(hidden, id) {
						t.Errorf("%s showed the hidden Observation/%s", way.name, id)
					}
					seen[way.name+" "+id] = true
				}
			})
		}
	}
	for _, way := range []string{"read", "search", "revinclude", "batch entry", "transaction response"} {
		if !seen[way+" "+vitalID] {
			t.Errorf("%s did not show the vital sign", way)
		}
	}

	for _, q := range []string{"", "?_summary=count", "?patient=" + ids["Patient"], "?code=44261-6", "?_id=" + phq9ID} {
		_, _, b := call(t, "GET", s.base+"/fhir/Observation"+q, token, "")
		want := 1.0
		if strings.Contains(q, "44261-6") || strings.Contains(q, "_id") {
			want = 0
		}
		if b["total"] != want {
			t.Errorf("GET Observation%s total = %v, want %v", q, b["total"], want)
		}
	}

	status, b = post(token, obs("survey", "44261-6"))
	if status != 403 || !strings.Contains(mustJSON(b), "scope-restriction-write") {
		t.Errorf("hospital creates a PHQ-9 = %d %v, want 403 scope-restriction-write", status, b)
	}
	if status, b = post(token, obs("vital-signs", "8867-4")); status != 201 {
		t.Errorf("hospital creates a vital sign = %d %v, want 201", status, b)
	}
	status, _, b = call(t, "GET", s.base+"/fhir/Patient?_has:Observation:patient:code=44261-6", token, "")
	if status != 403 || !strings.Contains(mustJSON(b), "scope-restriction-unenforceable") {
		t.Errorf("Patient?_has through the PHQ-9 = %d %v, want 403 scope-restriction-unenforceable", status, b)
	}

	_, m := exportDone(t, s.base+"/fhir/$export?_type=Observation,Patient", "Authorization: Bearer "+token)
	var got []string
	for _, r := range download(t, m, "Authorization: Bearer "+token) {
		if r.typ == "Observation" {
			got = append(got, r.id)
		}
		if slices.Contains(hidden, r.id) {
			t.Errorf("export gave the hidden Observation/%s", r.id)
		}
	}
	if len(got) != 2 || !slices.Contains(got, vitalID) {
		t.Errorf("export Observations = %v, want the two vital signs (%s and the hospital's)", got, vitalID)
	}

	if logs := s.Logs.String(); strings.Contains(logs, "vital-signs") || strings.Contains(logs, "44261-6") {
		t.Errorf("the log carries a restriction or a search value:\n%s", logs)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
