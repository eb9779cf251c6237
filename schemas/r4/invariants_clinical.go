package r4

import (
	"bytes"
	"strconv"
)

// The R4 error-level invariants of data types and clinical resources that
// can be checked on the element tree alone (no terminology, no reference
// resolution). Each reports under its R4 key at the element the R4
// definition puts it on. Left out: con-3 (a warning in R4), ctm-1
// (resolves a reference), ppc-2..5 (they test a placeholder system and
// never fail).

// R4 code systems the invariants test.
const (
	ucum                = "http://unitsofmeasure.org"
	allergyVerification = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
	conditionClinical   = "http://terminology.hl7.org/CodeSystem/condition-clinical"
	conditionVerStatus  = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
)

// dataTypeInvariants are the invariants of R4 data types (datatypes.html,
// metadatatypes.html).
var dataTypeInvariants = []*invariant{
	{key: "rng-2", types: []string{"Range"}, human: "low must not be higher than high (rng-2)", check: holds(rangeOrdered)},
	{key: "sqty-1", types: simpleQuantityContainers(), human: "a SimpleQuantity has no comparator (sqty-1)", check: checkSimpleQuantities},
	{key: "age-1", types: []string{"Age"}, human: "an age with a value must have a code, its system must be UCUM, and its value must be above 0 (age-1)",
		check: holds(func(o *objView) bool {
			f, num := o.decimal("value")
			return (o.has("code") || !o.has("value")) && o.systemIs("", ucum) && (!num || f > 0)
		})},
	{key: "cnt-3", types: []string{"Count"}, human: "a count with a value must have the code 1 of UCUM and a whole number as value (cnt-3)",
		check: holds(func(o *objView) bool {
			code, _ := o.w.memberStr(o.obj, "code")
			v := o.val("value")
			whole := v < 0 || o.w.nodes[v].kind != kNumber || !bytes.Contains(o.w.raw(v), []byte("."))
			return (o.has("code") || !o.has("value")) && o.systemIs("", ucum) && (!o.has("code") || code == "1") && whole
		})},
	{key: "dis-1", types: []string{"Distance"}, human: "a distance with a value must have a code, and its system must be UCUM (dis-1)",
		check: holds(func(o *objView) bool { return (o.has("code") || !o.has("value")) && o.systemIs("", ucum) })},
	{key: "drt-1", types: []string{"Duration"}, human: "a duration with a code must have UCUM as its system and a value (drt-1)",
		check: holds(func(o *objView) bool { return !o.has("code") || o.systemIs(ucum) && o.has("value") })},
	{key: "tim-1", types: []string{"Timing.repeat"}, human: "a duration needs a durationUnit (tim-1)",
		check: holds(func(o *objView) bool { return !o.has("duration") || o.has("durationUnit") })},
	{key: "tim-2", types: []string{"Timing.repeat"}, human: "a period needs a periodUnit (tim-2)",
		check: holds(func(o *objView) bool { return !o.has("period") || o.has("periodUnit") })},
	{key: "tim-4", types: []string{"Timing.repeat"}, human: "duration must not be negative (tim-4)",
		check: holds(func(o *objView) bool { f, ok := o.decimal("duration"); return !ok || f >= 0 })},
	{key: "tim-5", types: []string{"Timing.repeat"}, human: "period must not be negative (tim-5)",
		check: holds(func(o *objView) bool { f, ok := o.decimal("period"); return !ok || f >= 0 })},
	{key: "tim-6", types: []string{"Timing.repeat"}, human: "a periodMax needs a period (tim-6)",
		check: holds(func(o *objView) bool { return !o.has("periodMax") || o.has("period") })},
	{key: "tim-7", types: []string{"Timing.repeat"}, human: "a durationMax needs a duration (tim-7)",
		check: holds(func(o *objView) bool { return !o.has("durationMax") || o.has("duration") })},
	{key: "tim-8", types: []string{"Timing.repeat"}, human: "a countMax needs a count (tim-8)",
		check: holds(func(o *objView) bool { return !o.has("countMax") || o.has("count") })},
	{key: "tim-9", types: []string{"Timing.repeat"}, human: "an offset needs a when other than C, CM, CD and CV (tim-9)",
		check: holds(func(o *objView) bool {
			if !o.has("offset") {
				return true
			}
			meal := false
			o.w.items(o.val("when"), func(_ int, c int32) {
				if o.w.nodes[c].kind == kString {
					switch string(o.w.str(c)) {
					case "C", "CM", "CD", "CV":
						meal = true
					}
				}
			})
			return o.has("when") && !meal
		})},
	{key: "tim-10", types: []string{"Timing.repeat"}, human: "timeOfDay and when must not both be present (tim-10)",
		check: holds(func(o *objView) bool { return !o.has("timeOfDay") || !o.has("when") })},
}

// clinicalInvariants are the invariants of R4 clinical (and a few
// administrative) resources.
var clinicalInvariants = []*invariant{
	{key: "ait-1", types: []string{"AllergyIntolerance"}, human: "clinicalStatus is required unless verificationStatus is entered-in-error (ait-1)",
		check: holds(func(o *objView) bool {
			return o.has("clinicalStatus") || o.coded("verificationStatus", allergyVerification, "entered-in-error")
		})},
	{key: "ait-2", types: []string{"AllergyIntolerance"}, human: "clinicalStatus must be absent when verificationStatus is entered-in-error (ait-2)",
		check: holds(func(o *objView) bool {
			return !o.has("clinicalStatus") || !o.coded("verificationStatus", allergyVerification, "entered-in-error")
		})},
	{key: "con-4", types: []string{"Condition"}, human: "an abated condition must have clinicalStatus inactive, resolved or remission (con-4)",
		check: holds(func(o *objView) bool {
			return !o.has("abatement") || o.coded("clinicalStatus", conditionClinical, "resolved", "remission", "inactive")
		})},
	{key: "con-5", types: []string{"Condition"}, human: "clinicalStatus must be absent when verificationStatus is entered-in-error (con-5)",
		check: holds(func(o *objView) bool {
			return !o.has("clinicalStatus") || !o.coded("verificationStatus", conditionVerStatus, "entered-in-error")
		})},
	{key: "con-1", types: []string{"Condition.stage"}, human: "a stage must have a summary or an assessment (con-1)",
		check: holds(func(o *objView) bool { return o.has("summary") || o.has("assessment") })},
	{key: "con-2", types: []string{"Condition.evidence"}, human: "evidence must have a code or a detail (con-2)",
		check: holds(func(o *objView) bool { return o.has("code") || o.has("detail") })},
	{key: "mad-1", types: []string{"MedicationAdministration.dosage"}, human: "a dosage must have a dose or a rate (mad-1)",
		check: holds(func(o *objView) bool { return o.has("dose") || o.has("rate") })},
	{key: "imm-1", types: []string{"Immunization.education"}, human: "education must have a documentType or a reference (imm-1)",
		check: holds(func(o *objView) bool { return o.has("documentType") || o.has("reference") })},
	{key: "imr-1", types: []string{"ImmunizationRecommendation.recommendation"}, human: "a recommendation must have a vaccineCode or a targetDisease (imr-1)",
		check: holds(func(o *objView) bool { return o.has("vaccineCode") || o.has("targetDisease") })},
	{key: "mdd-1", types: []string{"MedicationDispense"}, human: "whenHandedOver must not be before whenPrepared (mdd-1)",
		check: holds(func(o *objView) bool { return dateTimesOrdered(o, "whenPrepared", "whenHandedOver") })},
	{key: "cpl-3", types: []string{"CarePlan.activity"}, human: "an activity has a reference or a detail, not both (cpl-3)",
		check: holds(func(o *objView) bool { return !o.has("detail") || !o.has("reference") })},
	{key: "gol-1", types: []string{"Goal.target"}, human: "a target with a detail must have a measure (gol-1)",
		check: holds(func(o *objView) bool { return !o.has("detail") || o.has("measure") })},
	{key: "prr-1", types: []string{"ServiceRequest"}, human: "orderDetail is only allowed with a code (prr-1)",
		check: holds(func(o *objView) bool { return !o.has("orderDetail") || o.has("code") })},
	{key: "fhs-1", types: []string{"FamilyMemberHistory"}, human: "age[x] and born[x] must not both be present (fhs-1)",
		check: holds(func(o *objView) bool { return !o.has("age") || !o.has("born") })},
	{key: "fhs-2", types: []string{"FamilyMemberHistory"}, human: "estimatedAge is only allowed with an age[x] (fhs-2)",
		check: holds(func(o *objView) bool { return o.has("age") || !o.has("estimatedAge") })},
	{key: "qrs-1", types: []string{"QuestionnaireResponse.item"}, human: "an item must not have both answers and nested items (qrs-1)",
		check: holds(func(o *objView) bool { return !o.has("answer") || !o.has("item") })},
	{key: "cmp-1", types: []string{"Composition.section"}, human: "a section must have a text, entries or sub-sections (cmp-1)",
		check: holds(func(o *objView) bool { return o.has("text") || o.has("entry") || o.has("section") })},
	{key: "cmp-2", types: []string{"Composition.section"}, human: "emptyReason is only allowed in a section without entries (cmp-2)",
		check: holds(func(o *objView) bool { return !o.has("emptyReason") || !o.has("entry") })},
	{key: "grp-1", types: []string{"Group"}, human: "only an actual group (actual = true) may have members (grp-1)",
		check: holds(func(o *objView) bool {
			a := o.val("actual")
			return !o.has("member") || a >= 0 && o.w.nodes[a].kind == kTrue
		})},
	{key: "org-1", types: []string{"Organization"}, human: "an organization must have a name or an identifier (org-1)",
		check: holds(func(o *objView) bool { return o.has("name") || o.has("identifier") })},
	{key: "org-2", types: []string{"Organization"}, human: "an organization's address must not have use home (org-2)",
		check: func(o *objView, inv *invariant) { o.failUse(inv, "address") }},
	{key: "org-3", types: []string{"Organization"}, human: "an organization's telecom must not have use home (org-3)",
		check: func(o *objView, inv *invariant) { o.failUse(inv, "telecom") }},
}

// coded reports whether CodeableConcept element name has a coding of
// system with one of codes.
func (o *objView) coded(name, system string, codes ...string) bool {
	w, hit := o.w, false
	w.items(w.member(o.val(name), "coding"), func(_ int, c int32) {
		sys, _ := w.memberStr(c, "system")
		code, _ := w.memberStr(c, "code")
		for _, want := range codes {
			hit = hit || sys == system && code == want
		}
	})
	return hit
}

// systemIs reports whether the object's system is one of systems ("" for
// absent).
func (o *objView) systemIs(systems ...string) bool {
	sys, ok := o.w.memberStr(o.obj, "system")
	if !ok && o.has("system") {
		return true // only extensions, or malformed: reported elsewhere
	}
	for _, s := range systems {
		if sys == s {
			return true
		}
	}
	return false
}

// decimal returns the value of decimal element name, when it has one (a
// JSON number, or a decimal written as a string, which $validate accepts).
func (o *objView) decimal(name string) (float64, bool) {
	return o.w.decimalAt(o.val(name))
}

// decimalAt parses decimal node v, if it holds a decimal value.
func (w *walker) decimalAt(v int32) (float64, bool) {
	if v < 0 {
		return 0, false
	}
	var s []byte
	switch w.nodes[v].kind {
	case kNumber:
		s = w.raw(v)
	case kString:
		if s = w.str(v); !isDecimal(s) {
			return 0, false
		}
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(string(s), 64)
	return f, err == nil
}

// failUse reports inv at each item of array element name whose use is
// home.
func (o *objView) failUse(inv *invariant, name string) {
	o.w.items(o.val(name), func(i int, item int32) {
		if use, _ := o.w.memberStr(item, "use"); use == "home" {
			o.failAt(inv.key, name, i, inv.human)
		}
	})
}

// rangeOrdered implements rng-2 (low <= high) where both quantities have
// a value in the same unit (the same system and code, or without codes the
// same unit text); quantities in different units are not compared, which
// would need UCUM conversions.
func rangeOrdered(o *objView) bool {
	w := o.w
	lo, hi := o.val("low"), o.val("high")
	a, okA := w.decimalAt(w.member(lo, "value"))
	b, okB := w.decimalAt(w.member(hi, "value"))
	if !okA || !okB || w.unitKey(lo) != w.unitKey(hi) {
		return true
	}
	return a <= b
}

// unitKey renders the unit of Quantity node q for comparison.
func (w *walker) unitKey(q int32) string {
	if code, ok := w.memberStr(q, "code"); ok {
		sys, _ := w.memberStr(q, "system")
		return "c\x00" + sys + "\x00" + code
	}
	unit, _ := w.memberStr(q, "unit")
	return "u\x00" + unit
}

// dateTimesOrdered reports whether dateTime element first is not after
// second (per-1, mdd-1): compared at their common precision, and values
// equal there but of different precisions (FHIRPath's comparison is
// empty) are not ordered, as the HL7 validator judges them.
func dateTimesOrdered(o *objView, first, second string) bool {
	s, e := o.val(first), o.val(second)
	if s < 0 || e < 0 || o.w.nodes[s].kind != kString || o.w.nodes[e].kind != kString {
		return true
	}
	a := o.w.strCopy(s)
	c, ambiguous, ok := compareDateTimes([]byte(a), o.w.str(e))
	return !ok || (c < 0 || c == 0 && !ambiguous)
}

// simpleQuantityElements lists, per type, the elements R4 profiles as
// SimpleQuantity (a Quantity without comparator): for a choice element its
// Quantity alternative. Taken from the R4 StructureDefinitions (elements
// of type Quantity with profile SimpleQuantity). Read-only.
var simpleQuantityElements = map[string][]string{
	"ActivityDefinition":                            {"quantity"},
	"CarePlan.activity.detail":                      {"dailyAmount", "quantity"},
	"Claim.item":                                    {"quantity"},
	"Claim.item.detail":                             {"quantity"},
	"Claim.item.detail.subDetail":                   {"quantity"},
	"ClaimResponse.addItem":                         {"quantity"},
	"ClaimResponse.addItem.detail":                  {"quantity"},
	"ClaimResponse.addItem.detail.subDetail":        {"quantity"},
	"Contract.term.asset.valuedItem":                {"quantity"},
	"Coverage.costToBeneficiary":                    {"value"},
	"CoverageEligibilityRequest.item":               {"quantity"},
	"Dosage":                                        {"maxDosePerAdministration", "maxDosePerLifetime"},
	"Dosage.doseAndRate":                            {"dose", "rate"},
	"ExplanationOfBenefit.item":                     {"quantity"},
	"ExplanationOfBenefit.item.detail":              {"quantity"},
	"ExplanationOfBenefit.item.detail.subDetail":    {"quantity"},
	"ExplanationOfBenefit.addItem":                  {"quantity"},
	"ExplanationOfBenefit.addItem.detail":           {"quantity"},
	"ExplanationOfBenefit.addItem.detail.subDetail": {"quantity"},
	"Immunization":                                  {"doseQuantity"},
	"MedicationAdministration.dosage":               {"dose", "rate"},
	"MedicationDispense":                            {"quantity", "daysSupply"},
	"MedicationKnowledge":                           {"amount"},
	"MedicationKnowledge.administrationGuidelines.patientCharacteristics": {"characteristic"},
	"MedicationKnowledge.packaging":                                       {"quantity"},
	"MedicationKnowledge.drugCharacteristic":                              {"value"},
	"MedicationKnowledge.regulatory.maxDispense":                          {"quantity"},
	"MedicationKnowledge.kinetics":                                        {"areaUnderCurve", "lethalDose50"},
	"MedicationRequest.dispenseRequest":                                   {"quantity"},
	"MedicationRequest.dispenseRequest.initialFill":                       {"quantity"},
	"NutritionOrder.oralDiet.nutrient":                                    {"amount"},
	"NutritionOrder.supplement":                                           {"quantity"},
	"NutritionOrder.enteralFormula":                                       {"caloricDensity", "maxVolumeToDeliver"},
	"NutritionOrder.enteralFormula.administration":                        {"quantity", "rate"},
	"Observation.referenceRange":                                          {"low", "high"},
	"Range":                                                               {"low", "high"},
	"SampledData":                                                         {"origin"},
	"Specimen.collection":                                                 {"quantity"},
	"Specimen.container":                                                  {"capacity", "specimenQuantity"},
	"SpecimenDefinition.typeTested.container":                             {"capacity", "minimumVolume"},
	"Substance.instance":                                                  {"quantity"},
	"SupplyDelivery.suppliedItem":                                         {"quantity"},
	"VisionPrescription.lensSpecification":                                {"duration"},
}

// simpleQuantityContainers returns the types sqty-1 is checked on.
func simpleQuantityContainers() []string {
	out := make([]string, 0, len(simpleQuantityElements))
	for t := range simpleQuantityElements {
		out = append(out, t)
	}
	return out
}

// checkSimpleQuantities implements sqty-1 (comparator.empty()) on the
// SimpleQuantity elements of the object.
func checkSimpleQuantities(o *objView, inv *invariant) {
	w := o.w
	for _, name := range simpleQuantityElements[o.def.name] {
		i, ok := o.def.byName[name]
		if !ok {
			continue
		}
		e := &o.def.elems[i]
		v, key := o.val(name), name
		if e.choice {
			alt := o.sl[2*len(o.def.elems)+i] - 1
			if alt < 0 || e.alts[alt].typeName != "Quantity" {
				continue
			}
			key = e.alts[alt].key
		}
		if v < 0 {
			continue
		}
		if w.nodes[v].kind == kArray {
			w.items(v, func(j int, q int32) {
				if w.member(q, "comparator") >= 0 {
					o.failAt(inv.key, key, j, inv.human)
				}
			})
		} else if w.member(v, "comparator") >= 0 {
			o.failAt(inv.key, key, -1, inv.human)
		}
	}
}
