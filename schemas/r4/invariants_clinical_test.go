package r4

import "testing"

// invariantCase is one R4 invariant with a resource that satisfies it and
// one that breaks it (at expr).
type invariantCase struct {
	key, valid, invalid, expr string
}

const (
	allergyVer  = `"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-verification","code":"entered-in-error"}]}`
	allergyAct  = `"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical","code":"active"}]}`
	conditionEE = `"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"entered-in-error"}]}`
)

func allergy(body string) string {
	return `{"resourceType":"AllergyIntolerance","patient":{"reference":"Patient/1"}` + body + `}`
}

func condition(body string) string {
	return `{"resourceType":"Condition","subject":{"reference":"Patient/1"}` + body + `}`
}

func conditionStatus(code string) string {
	return `,"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"` + code + `"}]}`
}

// medRequest is a MedicationRequest with its required elements and body.
func medRequest(body string) string {
	return `{"resourceType":"MedicationRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"medicationCodeableConcept":{"text":"k"}` + body + `}`
}

// timing is a MedicationRequest whose dosage has Timing.repeat rep.
func timing(rep string) string {
	return medRequest(`,"dosageInstruction":[{"timing":{"repeat":{` + rep + `}}}]`)
}

const repeatExpr = "MedicationRequest.dosageInstruction[0].timing.repeat"

func medAdmin(dosage string) string {
	return `{"resourceType":"MedicationAdministration","status":"completed","medicationCodeableConcept":{"text":"k"},"subject":{"reference":"Patient/1"},` +
		`"effectiveDateTime":"2020-01-01T10:00:00Z","dosage":{` + dosage + `}}`
}

func basicExt(value string) string {
	return `{"resourceType":"Basic","code":{"text":"x"},"extension":[{"url":"http://e","` + value + `}]}`
}

// period is an Observation with effectivePeriod start and end.
func period(start, end string) string {
	return obs(`,"effectivePeriod":{"start":"` + start + `","end":"` + end + `"}`)
}

const periodExpr = "Observation.effectivePeriod"

var invariantCases = []invariantCase{
	// Data types.
	// per-1 as R5 states it, start.lowBoundary() <= end.highBoundary():
	// values of different precisions compare by the span each can mean,
	// a date without a zone by the widest zones (+14:00 for its start,
	// -12:00 for its end) against a time with one (finding p28 F7).
	{"per-1", period("2026-12-06", "2026-12-06T08:00:00Z"), period("2026-12-07", "2026-12-06T08:00:00Z"), periodExpr},
	{"per-1", period("2026-12", "2026-12-06T08:00:00Z"), period("2027", "2026-12-31T08:00:00Z"), periodExpr},
	{"per-1", period("2026-12-07", "2026-12-06T20:00:00-14:00"), period("2026-12-09", "2026-12-06T20:00:00-14:00"), periodExpr},
	{"per-1", period("2026-12-06T08:00:00Z", "2026-12-06"), period("2026-12-07T13:00:00Z", "2026-12-06"), periodExpr},
	{"per-1", period("2026-12-06T08:00:00.5Z", "2026-12-06T08:00:00Z"), period("2026-12-06T08:00:01Z", "2026-12-06T08:00:00.999Z"), periodExpr},
	{"per-1", period("2026-12-06T08:00:00+13:00", "2026-12-05T19:00:00Z"), period("2026-12-06T08:00:00+13:00", "2026-12-05T18:59:59Z"), periodExpr},
	{"per-1", period("2026-12-06", "2026-12-06"), period("2026-12-07", "2026-12-06"), periodExpr},
	{"per-1", period("2026-12-31", "2026-12"), period("2027-01-01", "2026-12"), periodExpr},
	{"per-1", period("2026", "2026-01-01"), period("2026-02", "2026-01-31"), periodExpr},
	// A leap second is in the minute it ends (finding p28 F4).
	{"per-1", period("2026-12-06T23:59:60Z", "2026-12-06T23:59:60Z"), period("2026-12-07T00:00:00Z", "2026-12-06T23:59:60Z"), periodExpr},
	{"per-1", period("2026-12-06", "2026-12-06T23:59:60Z"), period("2026-12-07T00:00:00.5Z", "2026-12-06T23:59:60.9Z"), periodExpr},
	{"rng-2", obs(`,"valueRange":{"low":{"value":1,"unit":"mg"},"high":{"value":5,"unit":"mg"}}`),
		obs(`,"valueRange":{"low":{"value":5,"unit":"mg"},"high":{"value":1,"unit":"mg"}}`), "Observation.valueRange"},
	{"rng-2", obs(`,"valueRange":{"low":{"value":5,"system":"http://unitsofmeasure.org","code":"g"},"high":{"value":1,"system":"http://unitsofmeasure.org","code":"kg"}}`),
		obs(`,"valueRange":{"low":{"value":5,"system":"http://unitsofmeasure.org","code":"g"},"high":{"value":1,"system":"http://unitsofmeasure.org","code":"g"}}`), "Observation.valueRange"},
	{"sqty-1", medRequest(`,"dispenseRequest":{"quantity":{"value":10}}`),
		medRequest(`,"dispenseRequest":{"quantity":{"value":10,"comparator":"<"}}`), "MedicationRequest.dispenseRequest.quantity"},
	{"sqty-1", medRequest(`,"dosageInstruction":[{"doseAndRate":[{"doseQuantity":{"value":1}}]}]`),
		medRequest(`,"dosageInstruction":[{"doseAndRate":[{"doseQuantity":{"value":1,"comparator":">="}}]}]`), "MedicationRequest.dosageInstruction[0].doseAndRate[0].doseQuantity"},
	{"sqty-1", obs(`,"valueRange":{"low":{"value":1}}`), obs(`,"valueRange":{"low":{"value":1,"comparator":"<"}}`), "Observation.valueRange.low"},
	{"age-1", condition(`,"onsetAge":{"value":40,"system":"http://unitsofmeasure.org","code":"a"}`),
		condition(`,"onsetAge":{"value":40,"unit":"years"}`), "Condition.onsetAge"},
	{"age-1", condition(`,"onsetAge":{"value":40,"system":"http://unitsofmeasure.org","code":"a"}`),
		condition(`,"onsetAge":{"value":0,"system":"http://unitsofmeasure.org","code":"a"}`), "Condition.onsetAge"},
	{"cnt-3", basicExt(`valueCount":{"value":3,"system":"http://unitsofmeasure.org","code":"1"}`),
		basicExt(`valueCount":{"value":2.5,"system":"http://unitsofmeasure.org","code":"1"}`), "Basic.extension[0].valueCount"},
	{"dis-1", basicExt(`valueDistance":{"value":3,"system":"http://unitsofmeasure.org","code":"m"}`),
		basicExt(`valueDistance":{"value":3,"system":"http://example.org/units","code":"m"}`), "Basic.extension[0].valueDistance"},
	{"drt-1", basicExt(`valueDuration":{"value":3,"system":"http://unitsofmeasure.org","code":"h"}`),
		basicExt(`valueDuration":{"system":"http://unitsofmeasure.org","code":"h"}`), "Basic.extension[0].valueDuration"},
	{"tim-1", timing(`"duration":30,"durationUnit":"min"`), timing(`"duration":30`), repeatExpr},
	{"tim-2", timing(`"period":1,"periodUnit":"d"`), timing(`"period":1`), repeatExpr},
	{"tim-4", timing(`"duration":0,"durationUnit":"min"`), timing(`"duration":-1,"durationUnit":"min"`), repeatExpr},
	{"tim-5", timing(`"period":0.5,"periodUnit":"d"`), timing(`"period":-0.5,"periodUnit":"d"`), repeatExpr},
	{"tim-6", timing(`"period":1,"periodMax":2,"periodUnit":"d"`), timing(`"periodMax":2,"periodUnit":"d"`), repeatExpr},
	{"tim-7", timing(`"duration":1,"durationMax":2,"durationUnit":"h"`), timing(`"durationMax":2,"durationUnit":"h"`), repeatExpr},
	{"tim-8", timing(`"count":1,"countMax":2`), timing(`"countMax":2`), repeatExpr},
	{"tim-9", timing(`"when":["ACM"],"offset":30`), timing(`"when":["CM"],"offset":30`), repeatExpr},
	{"tim-9", timing(`"when":["ACM"],"offset":30`), timing(`"offset":30`), repeatExpr},
	{"tim-10", timing(`"timeOfDay":["08:00:00"]`), timing(`"timeOfDay":["08:00:00"],"when":["MORN"]`), repeatExpr},

	// Clinical resources.
	{"ait-1", allergy(`,` + allergyAct), allergy(`,"verificationStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/allergyintolerance-verification","code":"confirmed"}]}`), "AllergyIntolerance"},
	{"ait-2", allergy(`,` + allergyVer), allergy(`,` + allergyVer + `,` + allergyAct), "AllergyIntolerance"},
	{"con-4", condition(conditionStatus("resolved") + `,"abatementDateTime":"2020-01-01"`), condition(conditionStatus("active") + `,"abatementDateTime":"2020-01-01"`), "Condition"},
	{"con-4", condition(`,"onsetDateTime":"2020-01-01"`), condition(`,"abatementString":"after the course"`), "Condition"},
	{"con-5", condition(`,` + conditionEE), condition(conditionStatus("active") + `,` + conditionEE), "Condition"},
	{"con-1", condition(`,"stage":[{"summary":{"text":"II"}}]`), condition(`,"stage":[{"type":{"text":"clinical"}}]`), "Condition.stage[0]"},
	{"con-2", condition(`,"evidence":[{"code":[{"text":"x"}]}]`), condition(`,"evidence":[{"extension":[{"url":"http://e.org/x","valueString":"y"}]}]`), "Condition.evidence[0]"},
	{"mad-1", medAdmin(`"dose":{"value":35,"unit":"mg"}`), medAdmin(`"text":"as planned"`), "MedicationAdministration.dosage"},
	{"imm-1", `{"resourceType":"Immunization","status":"completed","vaccineCode":{"text":"v"},"patient":{"reference":"Patient/1"},"occurrenceDateTime":"2021-01-01","education":[{"documentType":"x"}]}`,
		`{"resourceType":"Immunization","status":"completed","vaccineCode":{"text":"v"},"patient":{"reference":"Patient/1"},"occurrenceDateTime":"2021-01-01","education":[{"publicationDate":"2020-01-01"}]}`,
		"Immunization.education[0]"},
	{"imr-1", `{"resourceType":"ImmunizationRecommendation","patient":{"reference":"Patient/1"},"date":"2021-01-01","recommendation":[{"vaccineCode":[{"text":"v"}],"forecastStatus":{"text":"due"}}]}`,
		`{"resourceType":"ImmunizationRecommendation","patient":{"reference":"Patient/1"},"date":"2021-01-01","recommendation":[{"forecastStatus":{"text":"due"}}]}`,
		"ImmunizationRecommendation.recommendation[0]"},
	{"mdd-1", `{"resourceType":"MedicationDispense","status":"completed","medicationCodeableConcept":{"text":"k"},"whenPrepared":"2020-01-01T10:00:00Z","whenHandedOver":"2020-01-01T11:00:00Z"}`,
		`{"resourceType":"MedicationDispense","status":"completed","medicationCodeableConcept":{"text":"k"},"whenPrepared":"2020-01-02T10:00:00Z","whenHandedOver":"2020-01-01T11:00:00Z"}`,
		"MedicationDispense"},
	{"cpl-3", `{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"activity":[{"reference":{"reference":"ServiceRequest/1"}}]}`,
		`{"resourceType":"CarePlan","status":"active","intent":"plan","subject":{"reference":"Patient/1"},"activity":[{"reference":{"reference":"ServiceRequest/1"},"detail":{"status":"scheduled"}}]}`,
		"CarePlan.activity[0]"},
	{"gol-1", `{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"g"},"subject":{"reference":"Patient/1"},"target":[{"measure":{"text":"m"},"detailQuantity":{"value":5}}]}`,
		`{"resourceType":"Goal","lifecycleStatus":"active","description":{"text":"g"},"subject":{"reference":"Patient/1"},"target":[{"detailQuantity":{"value":5}}]}`,
		"Goal.target[0]"},
	{"prr-1", `{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"code":{"text":"c"},"orderDetail":[{"text":"d"}]}`,
		`{"resourceType":"ServiceRequest","status":"active","intent":"order","subject":{"reference":"Patient/1"},"orderDetail":[{"text":"d"}]}`,
		"ServiceRequest"},
	{"fhs-1", `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"text":"mother"},"bornDate":"1950"}`,
		`{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"text":"mother"},"bornDate":"1950","ageString":"70"}`,
		"FamilyMemberHistory"},
	{"fhs-2", `{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"text":"mother"},"ageString":"70","estimatedAge":true}`,
		`{"resourceType":"FamilyMemberHistory","status":"completed","patient":{"reference":"Patient/1"},"relationship":{"text":"mother"},"estimatedAge":true}`,
		"FamilyMemberHistory"},
	{"qrs-1", `{"resourceType":"QuestionnaireResponse","status":"completed","item":[{"linkId":"1","answer":[{"valueString":"a","item":[{"linkId":"1.1"}]}]}]}`,
		`{"resourceType":"QuestionnaireResponse","status":"completed","item":[{"linkId":"1","answer":[{"valueString":"a"}],"item":[{"linkId":"1.1"}]}]}`,
		"QuestionnaireResponse.item[0]"},
	{"cmp-1", `{"resourceType":"Composition","status":"final","type":{"text":"t"},"date":"2020-01-01","author":[{"reference":"Practitioner/1"}],"title":"c","section":[{"entry":[{"reference":"Observation/1"}]}]}`,
		`{"resourceType":"Composition","status":"final","type":{"text":"t"},"date":"2020-01-01","author":[{"reference":"Practitioner/1"}],"title":"c","section":[{"title":"empty"}]}`,
		"Composition.section[0]"},
	{"cmp-2", `{"resourceType":"Composition","status":"final","type":{"text":"t"},"date":"2020-01-01","author":[{"reference":"Practitioner/1"}],"title":"c","section":[{"title":"s","emptyReason":{"text":"none"},"section":[{"title":"x","entry":[{"reference":"Observation/1"}]}]}]}`,
		`{"resourceType":"Composition","status":"final","type":{"text":"t"},"date":"2020-01-01","author":[{"reference":"Practitioner/1"}],"title":"c","section":[{"emptyReason":{"text":"none"},"entry":[{"reference":"Observation/1"}]}]}`,
		"Composition.section[0]"},
	{"grp-1", `{"resourceType":"Group","type":"person","actual":true,"member":[{"entity":{"reference":"Patient/1"}}]}`,
		`{"resourceType":"Group","type":"person","actual":false,"member":[{"entity":{"reference":"Patient/1"}}]}`,
		"Group"},
	{"org-1", `{"resourceType":"Organization","name":"Clinic"}`, `{"resourceType":"Organization","active":true}`, "Organization"},
	{"org-2", `{"resourceType":"Organization","name":"Clinic","address":[{"use":"work","city":"x"}]}`,
		`{"resourceType":"Organization","name":"Clinic","address":[{"use":"work","city":"x"},{"use":"home","city":"y"}]}`, "Organization.address[1]"},
	{"org-3", `{"resourceType":"Organization","name":"Clinic","telecom":[{"system":"phone","value":"1","use":"work"}]}`,
		`{"resourceType":"Organization","name":"Clinic","telecom":[{"system":"phone","value":"1","use":"home"}]}`, "Organization.telecom[0]"},
}

// TestInvariants: per invariant, a resource that satisfies it is valid and
// one that breaks it is refused under the invariant's key, at the FHIRPath
// of the element R4 defines it on, with the issue type invariant.
func TestInvariants(t *testing.T) {
	v := testValidator()
	for _, c := range invariantCases {
		t.Run(c.key, func(t *testing.T) {
			if res := v.Validate([]byte(c.valid)); !res.Valid() || len(res.Issues) > 0 {
				t.Errorf("Validate(valid) = %+v, want no issue", res.Issues)
			}
			res := v.Validate([]byte(c.invalid))
			if len(res.Issues) != 1 {
				t.Fatalf("Validate(invalid) = %+v, want one %s issue at %s", res.Issues, c.key, c.expr)
			}
			if is := res.Issues[0]; is.Rule != c.key || is.Expression != c.expr || is.Severity != SeverityError || is.Code != "invariant" || is.Message == "" {
				t.Errorf("Validate(invalid) = %+v, want error %s at %s", is, c.key, c.expr)
			}
		})
	}
}
