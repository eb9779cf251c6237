package profile_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestGoldenOutputConforms: every resource of every golden Bundle conforms,
// through the StructureDefinitions, to every profile it claims (the kg-*
// profiles and the R4 vital-signs profiles), with no warning either: each
// coding is in the ValueSet its element is bound to.
func TestGoldenOutputConforms(t *testing.T) {
	s := set(t)
	checked := map[string]int{}
	for _, g := range goldens(t) {
		typ := g.doc["resourceType"].(string)
		if issues := s.Validate(g.doc, typ); len(issues) > 0 {
			t.Errorf("%s: %s: %+v", g.file, typ, issues)
		}
		meta, _ := g.doc["meta"].(map[string]any)
		for _, p := range meta["profile"].([]any) {
			checked[p.(string)]++
		}
	}
	for _, sd := range s.Profiles() {
		if checked[sd.URL] == 0 {
			t.Errorf("no golden resource claims %s", sd.URL)
		}
	}
	for _, core := range []string{"vitalsigns", "bp", "heartrate", "resprate", "oxygensat", "bodytemp", "bodyweight"} {
		if checked["http://hl7.org/fhir/StructureDefinition/"+core] == 0 {
			t.Errorf("no golden resource claims the R4 profile %s", core)
		}
	}
}

// TestMutations: golden output broken in one place fails the profile that
// requires it, with the rule and the element's path.
func TestMutations(t *testing.T) {
	s := set(t)
	all := goldens(t)
	type want struct{ rule, expr string }
	tests := []struct {
		name, profile, code string
		mutate              func(d map[string]any)
		want                []want
	}{
		{"heart rate without its LOINC code", "heartrate", "8867-4",
			func(d map[string]any) { at(d, "code")["coding"] = []any{} },
			[]want{{"profile.slice", "Observation.code.coding"}}},
		{"heart rate in Cel", "heartrate", "8867-4",
			func(d map[string]any) { at(d, "valueQuantity")["code"] = "Cel" },
			[]want{{"profile.fixed-value", "Observation.valueQuantity.code"}}},
		{"heart rate in mg", "heartrate", "8867-4",
			func(d map[string]any) { at(d, "valueQuantity")["code"] = "mg" },
			[]want{{"profile.fixed-value", "Observation.valueQuantity.code"}, {"profile.vital-unit", "Observation.valueQuantity"}}},
		{"body weight in stone", "bodyweight", "29463-7",
			func(d map[string]any) { at(d, "valueQuantity")["code"] = "[stone_av]" },
			[]want{{"profile.binding", "Observation.valueQuantity.code"}, {"profile.vital-unit", "Observation.valueQuantity"}}},
		{"vital sign without unit", "kg-vital-signs", "8867-4",
			func(d map[string]any) { delete(at(d, "valueQuantity"), "unit") },
			[]want{{"profile.vital-quantity", "Observation.valueQuantity.unit"}, {"profile.cardinality", "Observation.valueQuantity.unit"}}},
		{"vital sign without value", "kg-vital-signs", "8867-4",
			func(d map[string]any) { delete(d, "valueQuantity") },
			[]want{{"profile.vital-quantity", "Observation"}, {"vs-2", "Observation"}}},
		{"blood pressure without systolic", "bp", "85354-9",
			func(d map[string]any) { d["component"] = d["component"].([]any)[1:] },
			[]want{{"profile.slice", "Observation.component"}, {"profile.cardinality", "Observation.component"}}},
		{"blood pressure component in mmHg", "bp", "85354-9",
			func(d map[string]any) { at(d, "component", 0, "valueQuantity")["code"] = "mmHg" },
			[]want{{"profile.vital-unit", "Observation.component[0].valueQuantity"}, {"profile.binding", "Observation.component[0].valueQuantity"},
				{"profile.fixed-value", "Observation.component[0].valueQuantity.code"}}},
		{"vital sign measured in a year", "vitalsigns", "8867-4",
			func(d map[string]any) { d["effectiveDateTime"] = "2026" },
			[]want{{"vs-1", "Observation.effectiveDateTime"}}},
		{"vital sign without PSY label", "kg-vital-signs", "8867-4",
			func(d map[string]any) { at(d, "meta")["security"] = at(d, "meta")["security"].([]any)[1:] },
			[]want{{"profile.security-label", "Observation.meta.security"}}},
		{"assessment without security labels", "kg-survey-item", "",
			func(d map[string]any) { delete(at(d, "meta"), "security") },
			[]want{{"profile.security-label", "Observation.meta.security"}}},
		{"assessment in category exam", "kg-survey-panel", "",
			func(d map[string]any) { at(d, "category", 0, "coding", 0)["code"] = "exam" },
			[]want{{"profile.category", "Observation.category"}}},
		{"score in points", "kg-survey-score", "44261-6",
			func(d map[string]any) { at(d, "valueQuantity")["code"] = "{points}" },
			[]want{{"profile.score-value", "Observation.valueQuantity.code"}}},
		{"score as text", "kg-survey-score", "44261-6",
			func(d map[string]any) { delete(d, "valueQuantity"); d["valueString"] = "12" },
			[]want{{"profile.score-value", "Observation.valueString"}}},
		{"score without value or dataAbsentReason", "kg-survey-score", "44261-6",
			func(d map[string]any) { delete(d, "valueQuantity") },
			[]want{{"profile.score-value", "Observation"}}},
		{"panel without members", "kg-survey-panel", "",
			func(d map[string]any) { delete(d, "hasMember") },
			[]want{{"profile.panel-members", "Observation.hasMember"}}},
		{"item without answer", "kg-survey-item", "",
			func(d map[string]any) { delete(d, "valueCodeableConcept") },
			[]want{{"profile.item-answer", "Observation.value"}}},
		{"Observation with a period", "kg-survey-item", "",
			func(d map[string]any) {
				d["effectivePeriod"] = map[string]any{"start": d["effectiveDateTime"]}
				delete(d, "effectiveDateTime")
			},
			[]want{{"profile.effective", "Observation.effectivePeriod"}}},
		{"subject by display only", "kg-survey-item", "",
			func(d map[string]any) { d["subject"] = map[string]any{"display": "a patient"} },
			[]want{{"profile.subject", "Observation.subject"}}},
		{"identifier without system", "kg-patient", "",
			func(d map[string]any) { d["identifier"] = []any{map[string]any{"value": "1"}} },
			[]want{{"profile.identifier", "Patient"}}},
		{"no identifier", "kg-infusion-session", "",
			func(d map[string]any) { delete(d, "identifier") },
			[]want{{"profile.identifier", "Procedure.identifier"}}},
		{"session without code text", "kg-infusion-session", "",
			func(d map[string]any) { delete(at(d, "code"), "text") },
			[]want{{"profile.code-text", "Procedure.code.text"}}},
		{"drug given outside a session", "kg-medication-administration", "",
			func(d map[string]any) { delete(d, "partOf") },
			[]want{{"profile.part-of-session", "MedicationAdministration.partOf"}}},
		{"plan without a dose", "kg-medication-request", "",
			func(d map[string]any) { delete(at(d, "dosageInstruction", 0), "doseAndRate") },
			[]want{{"profile.planned-dose", "MedicationRequest"}}},
		{"flag without detail", "kg-safety-flag", "",
			func(d map[string]any) { delete(d, "extension") },
			[]want{{"profile.flag-detail", "Flag.extension"}}},
		{"flag detail without reference", "kg-safety-flag", "",
			func(d map[string]any) { at(d, "extension", 0)["valueReference"] = map[string]any{"display": "x"} },
			[]want{{"profile.flag-detail", "Flag.extension[0]"}}},
		{"flag in category clinical", "kg-safety-flag", "",
			func(d map[string]any) { at(d, "category", 0, "coding", 0)["code"] = "clinical" },
			[]want{{"profile.flag-category", "Flag.category"}}},
		{"detected issue without implicated", "kg-detected-issue", "",
			func(d map[string]any) { delete(d, "implicated") },
			[]want{{"profile.issue-implicated", "DetectedIssue.implicated"}}},
		{"detected issue without patient", "kg-detected-issue", "",
			func(d map[string]any) { delete(d, "patient") },
			[]want{{"profile.subject", "DetectedIssue.patient"}}},
		{"detected issue without code text", "kg-detected-issue", "",
			func(d map[string]any) { delete(at(d, "code"), "text") },
			[]want{{"profile.code-text", "DetectedIssue.code.text"}}},
		{"adverse event without event", "kg-adverse-event", "",
			func(d map[string]any) { delete(d, "event") },
			[]want{{"profile.event-coded", "AdverseEvent.event"}}},
		{"adverse event without onset", "kg-adverse-event", "",
			func(d map[string]any) { delete(d, "date") },
			[]want{{"profile.event-date", "AdverseEvent.date"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := golden(t, all, tc.profile, tc.code)
			typ := doc["resourceType"].(string)
			if issues := s.Validate(doc, typ); len(issues) > 0 {
				t.Fatalf("the golden resource already fails: %+v", issues)
			}
			tc.mutate(doc)
			issues := s.Validate(doc, typ)
			for _, w := range tc.want {
				if !slices.ContainsFunc(issues, func(i outcome.Issue) bool {
					return i.Rule == w.rule && i.Expression == w.expr && i.Severity == "error" && i.Message != ""
				}) {
					t.Errorf("Validate() = %s, want %s at %s", brief(issues), w.rule, w.expr)
				}
			}
			// Only the rules the mutation breaks: nothing else is reported.
			for _, i := range issues {
				if !slices.ContainsFunc(tc.want, func(w want) bool { return w.rule == i.Rule }) {
					t.Errorf("Validate() also reports %s at %s: %s", i.Rule, i.Expression, i.Message)
				}
			}
			// The write check reports the kg-* rules among them, and only those.
			for _, i := range s.Check(doc, typ) {
				if !strings.HasPrefix(i.Rule, "profile.") || i.Rule == "profile.slice" && !strings.Contains(i.Message, "kg-") {
					continue
				}
				if !slices.ContainsFunc(issues, func(x outcome.Issue) bool { return x.Rule == i.Rule && x.Expression == i.Expression }) {
					t.Errorf("Check() = %s, not in Validate()", brief([]outcome.Issue{i}))
				}
			}
		})
	}
}

func brief(issues []outcome.Issue) string {
	var b strings.Builder
	for _, i := range issues {
		fmt.Fprintf(&b, "[%s %s %s: %s] ", i.Severity, i.Rule, i.Expression, i.Message)
	}
	return b.String()
}

// security and identifier satisfy the rules every kg-* profile shares.
const common = `"meta": {"profile": ["https://ketamine-gateway.org/fhir/StructureDefinition/%s"],
	"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"},
	{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]},
	"identifier": [{"system": "https://x.example/sid", "value": "1"}], "subject": {"reference": "Patient/1"}`

// TestCheckOnWrite: the write check applies the kg-* profiles a resource
// claims and names the rule at fault; it reports an unknown kg-* profile
// and ignores profiles of others.
func TestCheckOnWrite(t *testing.T) {
	flag := `{"resourceType": "Flag", ` + fmt.Sprintf(common, "kg-safety-flag") + `, "status": "active",
		"code": {"text": "C-SSRS screener positive"},
		"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "safety"}]}],
		"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/flag-detail", "valueReference": {"reference": "Observation/1"}}]}`
	plan := `{"resourceType": "MedicationRequest", ` + fmt.Sprintf(common, "kg-medication-request") + `, "status": "completed",
		"intent": "order", "medicationCodeableConcept": {"text": "Ketamine"},
		"dosageInstruction": [{"doseAndRate": [{"doseQuantity": {"value": 46, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}]}]}`
	vital := `{"resourceType": "Observation", ` + fmt.Sprintf(common, "kg-vital-signs") + `, "status": "final",
		"category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
		"code": {"text": "Heart rate"}, "effectiveDateTime": "2026-03-02T09:00:00Z",
		"valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}`
	unknown := strings.Replace(flag, "kg-safety-flag", "kg-no-such-profile", 1)
	other := strings.Replace(vital, `"https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs"`,
		`"http://hl7.org/fhir/StructureDefinition/heartrate"`, 1)
	// R4 requires Flag.code and MedicationRequest.subject itself: the R4
	// validator reports their absence, the profiles what they add.
	noText := strings.Replace(flag, `"code": {"text": "C-SSRS screener positive"}`, `"code": {"coding": [{"code": "x"}]}`, 1)
	byDisplay := strings.Replace(plan, `"subject": {"reference": "Patient/1"}`, `"subject": {"display": "a patient"}`, 1)
	tests := []struct {
		name, doc string
		drop      string // a member removed from the resource
		want      string // the rule broken, "" none
	}{
		{"flag", flag, "", ""},
		{"flag without flag-detail", flag, "extension", "profile.flag-detail"},
		{"flag without category", flag, "category", "profile.flag-category"},
		{"flag without code text", noText, "", "profile.code-text"},
		{"plan", plan, "", ""},
		{"plan without a planned dose", plan, "dosageInstruction", "profile.planned-dose"},
		{"plan with a subject by display only", byDisplay, "", "profile.subject"},
		{"vital sign coded by text only", vital, "", ""},
		{"vital sign without category", vital, "category", "profile.category"},
		{"vital sign without effective time", vital, "effectiveDateTime", "profile.effective"},
		{"unknown gateway profile", unknown, "", "profile.unknown"},
		// A profile of another type: one issue, not its rules applied to
		// elements the resource lacks (a conformance review).
		{"a Flag claiming the vital-signs profile", strings.Replace(flag, "kg-safety-flag", "kg-vital-signs", 1), "", "profile.type-mismatch"},
		{"another's profile is not checked on write", other, "code", ""},
	}
	s := set(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var doc map[string]any
			if err := json.Unmarshal([]byte(tc.doc), &doc); err != nil {
				t.Fatal(err)
			}
			delete(doc, tc.drop)
			issues := s.Check(doc, "R")
			switch {
			case tc.want == "" && len(issues) > 0:
				t.Errorf("Check() = %s, want none", brief(issues))
			case tc.want != "" && (len(issues) != 1 || issues[0].Rule != tc.want):
				t.Errorf("Check() = %s, want %s", brief(issues), tc.want)
			}
		})
	}
}

// TestValidateRequestedProfile: $validate's profile parameter checks a
// profile the resource does not claim; one of another type is an error;
// a claimed profile nobody knows is reported as not checked.
func TestValidateRequestedProfile(t *testing.T) {
	s := set(t)
	all := goldens(t)
	hr := golden(t, all, "heartrate", "8867-4")
	at(hr, "meta")["profile"] = []any{"https://example.org/StructureDefinition/other"}
	at(hr, "valueQuantity")["code"] = "Cel"
	issues := s.Validate(hr, "Observation")
	if len(issues) != 1 || issues[0].Rule != "profile.not-checked" || issues[0].Severity != "information" {
		t.Errorf("Validate(claims an unknown profile) = %s", brief(issues))
	}
	issues = s.Validate(hr, "Observation", "http://hl7.org/fhir/StructureDefinition/heartrate|4.0.1")
	if !slices.ContainsFunc(issues, func(i outcome.Issue) bool { return i.Rule == "profile.fixed-value" }) {
		t.Errorf("Validate(heartrate) = %s, want the fixed unit broken", brief(issues))
	}
	issues = s.Validate(hr, "Observation", "https://ketamine-gateway.org/fhir/StructureDefinition/kg-adverse-event")
	if !slices.ContainsFunc(issues, func(i outcome.Issue) bool { return i.Rule == "profile.type-mismatch" }) {
		t.Errorf("Validate(kg-adverse-event on an Observation) = %s", brief(issues))
	}
	// Claimed, not requested: the same one issue.
	patient := map[string]any{"resourceType": "Patient", "meta": map[string]any{"profile": []any{"http://hl7.org/fhir/StructureDefinition/bp"}}}
	if issues := s.Validate(patient, "Patient"); len(issues) != 1 || issues[0].Rule != "profile.type-mismatch" {
		t.Errorf("Validate(a Patient claiming bp) = %s, want one profile.type-mismatch", brief(issues))
	}
	for url, want := range map[string]bool{
		"https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs":                    true,
		"https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs|" + mapping.Version: true,
		"https://ketamine-gateway.org/fhir/StructureDefinition/kg-vital-signs|1.0.0":              false,
		"http://hl7.org/fhir/StructureDefinition/bp":                                              true,
		"http://hl7.org/fhir/StructureDefinition/Observation":                                     false,
		"https://ketamine-gateway.org/fhir/StructureDefinition/kg-nothing":                        false,
	} {
		if _, ok := s.Resolve(url); ok != want {
			t.Errorf("Resolve(%s) = %v, want %v", url, ok, want)
		}
	}
}

// BenchmarkCheck is the write check of one mapped blood pressure
// (kg-vital-signs) and its $validate (also R4's vitalsigns and bp).
func BenchmarkCheck(b *testing.B) {
	s := set(b)
	bp := golden(b, goldens(b), "bp", "85354-9")
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			if len(s.Check(bp, "Observation")) > 0 {
				b.Fatal("issues")
			}
		}
	})
	b.Run("validate", func(b *testing.B) {
		for b.Loop() {
			if len(s.Validate(bp, "Observation")) > 0 {
				b.Fatal("issues")
			}
		}
	})
}
