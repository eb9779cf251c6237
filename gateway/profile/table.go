package profile

import (
	"encoding/json"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// This file is the one place the gateway's profiles are stated. Each
// profile is the list of its differential elements; the published
// StructureDefinitions (differential and snapshot) are derived from it and
// the checks on every write interpret those StructureDefinitions, so what
// is enforced and what is published cannot differ. An element that adds a
// check names the rule (rules.go) its failures report; elements below it
// inherit that rule.

// Profile is one of the gateway's kg-* profiles as its authors state it.
type Profile struct {
	// Name is the profile's id and the last segment of its url.
	Name string
	// Type is the R4 resource type it constrains (its base).
	Type               string
	Title, Description string
	// Elements are its differential elements, in any order.
	Elements []*ElementDefinition
}

// URL is the profile's canonical url.
func (p Profile) URL() string { return Prefix + p.Name }

// Profiles returns the gateway's profiles.
func Profiles() []Profile {
	obs := "Observation"
	survey := func(name, title, desc string, codes string, extra ...*ElementDefinition) Profile {
		els := append(common(obs), subject(obs+".subject"), effective(), codeText(obs),
			el("Observation.code", "", binding("extensible", codes)),
			el("Observation.interpretation", "", binding("extensible", vsURL("kg-observation-interpretations"))))
		els = append(append(els, category("survey", "survey")...), extra...)
		return Profile{Name: name, Type: obs, Title: title, Description: desc, Elements: els}
	}
	return []Profile{
		{Name: "kg-patient", Type: "Patient", Title: "Ketamine-therapy gateway Patient",
			Description: "A patient of a ketamine-therapy clinic as the gateway writes it: identified by the clinic's patient id (and the hospital MRN when known), labelled psychiatric and restricted.",
			Elements:    common("Patient")},
		survey("kg-survey-panel", "Ketamine-therapy gateway assessment panel",
			"A scored instrument's panel Observation (category survey): no value, its answers and total in hasMember.",
			vsURL("kg-survey-panel-codes"),
			el("Observation.hasMember", "profile.panel-members", atLeast(1), mustSupport())),
		survey("kg-survey-item", "Ketamine-therapy gateway assessment item",
			"One answered item of an instrument (category survey): the answer as valueCodeableConcept, its score in the ordinalValue extension.",
			vsURL("kg-survey-item-codes"),
			el("Observation.value[x]", "profile.item-answer", atLeast(1), types("CodeableConcept"), mustSupport(),
				binding("extensible", vsURL("kg-survey-answers")))),
		survey("kg-survey-score", "Ketamine-therapy gateway assessment score",
			"An instrument's total score (valueQuantity in UCUM {score}, or valueInteger) or derived level (valueCodeableConcept), with its severity band in interpretation.",
			vsURL("kg-survey-score-codes"),
			// A level the answers do not settle (an incomplete C-SSRS
			// screener) has no value and a dataAbsentReason instead.
			el("Observation", "", invariant("profile.score-value", "value.exists() or dataAbsentReason.exists()")),
			el("Observation.value[x]", "profile.score-value", types("Quantity", "integer", "CodeableConcept"),
				slicedBy("open", "type", "$this"), mustSupport()),
			el("Observation.value[x]:valueQuantity", "", types("Quantity")),
			el("Observation.value[x]:valueQuantity.system", "", atLeast(1), fixed("Uri", mapping.SystemUCUM)),
			el("Observation.value[x]:valueQuantity.code", "", atLeast(1), fixed("Code", "{score}")),
			el("Observation.value[x]:valueCodeableConcept", "", types("CodeableConcept"),
				binding("extensible", vsURL("kg-cssrs-risk-levels")))),
		vitalSigns(),
		{Name: "kg-infusion-session", Type: "Procedure", Title: "Ketamine-therapy gateway infusion session",
			Description: "A ketamine or esketamine treatment session, monitoring included, as a Procedure; the drug given is a MedicationAdministration partOf it.",
			Elements: append(common("Procedure"), subject("Procedure.subject"), codeText("Procedure"),
				el("Procedure.code", "", binding("extensible", vsURL("kg-session-procedure-codes"))),
				el("Procedure.category", "", binding("extensible", vsURL("kg-procedure-categories"))),
				el("Procedure.statusReason", "", binding("extensible", vsURL("kg-stop-reasons"))),
				el("Procedure.reasonCode", "", binding("extensible", vsURL("kg-indications"))),
				el("Procedure.outcome", "", binding("extensible", vsURL("kg-procedure-outcomes"))),
				el("Procedure.complication", "", binding("extensible", vsURL("kg-adverse-event-types"))))},
		{Name: "kg-medication-request", Type: "MedicationRequest", Title: "Ketamine-therapy gateway planned dose",
			Description: "A session's plan: the prescribed drug, route, dose (mg, and mg/kg with the weight it used) and rate.",
			Elements: append(common("MedicationRequest"), subject("MedicationRequest.subject"),
				el("MedicationRequest", "", invariant("profile.planned-dose",
					"dosageInstruction.empty() or dosageInstruction.doseAndRate.dose.ofType(Quantity).where(value.exists() and unit.exists() and system = '"+mapping.SystemUCUM+"' and code.exists()).exists()")),
				el("MedicationRequest.medication[x]", "", binding("extensible", vsURL("kg-drugs"))),
				el("MedicationRequest.reasonCode", "", binding("extensible", vsURL("kg-indications"))),
				el("MedicationRequest.dosageInstruction", "profile.planned-dose", atLeast(1), mustSupport()),
				el("MedicationRequest.dosageInstruction.extension", "", slicedBy("open", "value", "url")),
				el("MedicationRequest.dosageInstruction.extension:weightBasedDose", "", atMost("1"), extension("weight-based-dose")),
				el("MedicationRequest.dosageInstruction.route", "", binding("extensible", vsURL("kg-routes"))))},
		{Name: "kg-medication-administration", Type: "MedicationAdministration", Title: "Ketamine-therapy gateway drug given",
			Description: "The drug actually given in a session: dose, rate and route, partOf the session Procedure.",
			Elements: append(common("MedicationAdministration"), subject("MedicationAdministration.subject"),
				el("MedicationAdministration.extension", "", slicedBy("open", "value", "url")),
				el("MedicationAdministration.extension:lotNumber", "", atMost("1"), extension("medication-lot-number")),
				el("MedicationAdministration.partOf", "profile.part-of-session", atLeast(1), mustSupport()),
				el("MedicationAdministration.statusReason", "", binding("extensible", vsURL("kg-stop-reasons"))),
				el("MedicationAdministration.medication[x]", "", binding("extensible", vsURL("kg-drugs"))),
				el("MedicationAdministration.reasonCode", "", binding("extensible", vsURL("kg-indications"))),
				el("MedicationAdministration.dosage.extension", "", slicedBy("open", "value", "url")),
				el("MedicationAdministration.dosage.extension:weightBasedDose", "", atMost("1"), extension("weight-based-dose")),
				el("MedicationAdministration.dosage.route", "", binding("extensible", vsURL("kg-routes"))))},
		{Name: "kg-safety-flag", Type: "Flag", Title: "Ketamine-therapy gateway safety flag",
			Description: "A safety signal on the patient (a positive PHQ-9 item 9 or C-SSRS screener), pointing at the Observation that raised it.",
			Elements: append(common("Flag"), subject("Flag.subject"), codeText("Flag"),
				el("Flag.extension", "", slicedBy("open", "value", "url")),
				el("Flag.extension:flagDetail", "profile.flag-detail", atLeast(1), extension(mapping.ExtFlagDetail),
					invariant("profile.flag-detail", "value.ofType(Reference).reference.exists()")),
				el("Flag.category", "", slicedBy("open", "pattern", "$this")),
				el("Flag.category:safety", "profile.flag-category", atLeast(1), atMost("1"),
					pattern("CodeableConcept", map[string]any{"coding": []any{map[string]any{"system": mapping.SystemFlagCat, "code": "safety"}}})),
				el("Flag.code", "", binding("extensible", vsURL("kg-safety-flag-codes"))))},
		{Name: "kg-detected-issue", Type: "DetectedIssue", Title: "Ketamine-therapy gateway detected issue",
			Description: "A clinical problem with an action taken in a session: the drug given after a critical pre-dose vital sign, implicating the administration and the Observations that were critical.",
			Elements: append(common("DetectedIssue"),
				subject("DetectedIssue.patient"),
				el("DetectedIssue.code", "profile.code-text", atLeast(1), mustSupport()),
				codeText("DetectedIssue"),
				el("DetectedIssue.severity", "", mustSupport()),
				el("DetectedIssue.implicated", "profile.issue-implicated", atLeast(1), mustSupport()))},
		{Name: "kg-adverse-event", Type: "AdverseEvent", Title: "Ketamine-therapy gateway adverse event",
			Description: "A side effect of a ketamine or esketamine session: the event (SNOMED CT and MedDRA), onset, severity, seriousness with its criteria, outcome, the action taken and the suspected session.",
			Elements: append(common("AdverseEvent"), subject("AdverseEvent.subject"),
				el("AdverseEvent.extension", "", slicedBy("open", "value", "url")),
				el("AdverseEvent.extension:ctcaeGrade", "", atMost("1"), extension("ctcae-grade")),
				el("AdverseEvent.extension:seriousnessCriterion", "", extension("seriousness-criterion")),
				el("AdverseEvent.extension:actionTaken", "", extension("adverse-event-action-taken")),
				el("AdverseEvent.extension:relatedSession", "", atMost("1"), extension("related-session")),
				el("AdverseEvent.event", "profile.event-coded", atLeast(1), mustSupport(),
					binding("extensible", vsURL("kg-adverse-event-types"))),
				el("AdverseEvent.date", "profile.event-date", atLeast(1), mustSupport()))},
	}
}

// vitalSigns is kg-vital-signs.
func vitalSigns() Profile {
	quantity := func(id string, opts ...option) []*ElementDefinition {
		return []*ElementDefinition{
			el(id, "profile.vital-quantity", append(opts, types("Quantity"), slicedBy("open", "type", "$this"), mustSupport())...),
			el(id+":valueQuantity", "profile.vital-unit", types("Quantity"),
				binding("required", vsURL("kg-vital-sign-units"))),
			el(id+":valueQuantity.value", "profile.vital-quantity", atLeast(1)),
			el(id+":valueQuantity.unit", "profile.vital-quantity", atLeast(1)),
			el(id+":valueQuantity.system", "profile.vital-quantity", atLeast(1), fixed("Uri", mapping.SystemUCUM)),
			el(id+":valueQuantity.code", "profile.vital-quantity", atLeast(1)),
		}
	}
	els := append(common("Observation"), subject("Observation.subject"), effective(), codeText("Observation"),
		el("Observation", "", invariant("profile.vital-quantity", "dataAbsentReason.exists() or component.exists() or value.exists()")),
		el("Observation.extension", "", slicedBy("open", "value", "url")),
		el("Observation.extension:timepoint", "", atMost("1"), extension("monitoring-timepoint")),
		el("Observation.code", "", binding("extensible", vsURL("kg-vital-sign-codes"))),
		el("Observation.interpretation", "", binding("extensible", vsURL("kg-observation-interpretations"))),
		el("Observation.component.code", "", binding("extensible", vsURL("kg-vital-sign-codes"))),
		el("Observation.component.interpretation", "", binding("extensible", vsURL("kg-observation-interpretations"))),
	)
	els = append(els, category("vitalSigns", "vital-signs")...)
	els = append(els, quantity("Observation.value[x]")...)
	els = append(els, quantity("Observation.component.value[x]", atLeast(1))...)
	return Profile{Name: "kg-vital-signs", Type: "Observation", Title: "Ketamine-therapy gateway vital sign",
		Description: "A vital sign measured around a session (category vital-signs): a UCUM quantity (blood pressure as two components), the monitoring time point, partOf the session. Mapped vital signs also claim the R4 vital-signs profiles.",
		Elements:    els}
}

// common are the elements of every kg-* profile: a business identifier and
// the sensitivity labels.
func common(t string) []*ElementDefinition {
	sec := t + ".meta.security"
	return []*ElementDefinition{
		el(t, "", invariant("profile.identifier", "identifier.empty() or identifier.where(system.exists() and value.exists()).exists()")),
		el(t+".meta", "profile.security-label", atLeast(1)),
		el(sec, "profile.security-label", slicedBy("open", "value", "system", "code"), mustSupport()),
		el(sec+":psy", "", atLeast(1), atMost("1")),
		el(sec+":psy.system", "", atLeast(1), fixed("Uri", mapping.SystemActCode)),
		el(sec+":psy.code", "", atLeast(1), fixed("Code", "PSY")),
		el(sec+":restricted", "", atLeast(1), atMost("1")),
		el(sec+":restricted.system", "", atLeast(1), fixed("Uri", mapping.SystemConfid)),
		el(sec+":restricted.code", "", atLeast(1), fixed("Code", "R")),
		el(t+".identifier", "profile.identifier", atLeast(1), mustSupport()),
	}
}

// subject: the resource names its patient, in the element at path (its
// subject; DetectedIssue.patient).
func subject(path string) *ElementDefinition {
	return el(path, "profile.subject", atLeast(1), mustSupport(),
		invariant("profile.subject", "reference.exists() or identifier.exists()"))
}

// effective: an Observation states when, as a dateTime.
func effective() *ElementDefinition {
	return el("Observation.effective[x]", "profile.effective", atLeast(1), types("dateTime"), mustSupport())
}

// codeText: code.text is always set.
func codeText(t string) *ElementDefinition {
	return el(t+".code.text", "profile.code-text", atLeast(1), mustSupport())
}

// category: an Observation has the observation-category code (a slice
// named slice).
func category(slice, code string) []*ElementDefinition {
	return []*ElementDefinition{
		el("Observation.category", "", slicedBy("open", "pattern", "$this"), mustSupport()),
		el("Observation.category:"+slice, "", withRule("profile.category", "the Observation has category "+code),
			atLeast(1), atMost("1"), pattern("CodeableConcept", map[string]any{
				"coding": []any{map[string]any{"system": mapping.SystemObsCategory, "code": code}}})),
	}
}

// vsURL is the url of one of the gateway's ValueSets.
func vsURL(name string) string { return mapping.Canonical + "/ValueSet/" + name }

// extURL is the url of one of the gateway's extensions.
func extURL(name string) string { return mapping.Canonical + "/StructureDefinition/" + name }

// option sets one property of a differential element.
type option func(*ElementDefinition)

// el is a differential element: id, the rule its failures report ("" for
// the one it inherits), and its constraints.
func el(id, rule string, opts ...option) *ElementDefinition {
	e := &ElementDefinition{ID: id}
	if rule != "" {
		e.Extension = []Extension{ruleExtension(rule, "")}
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

func atLeast(n int) option   { return func(e *ElementDefinition) { e.Min = ptr(n) } }
func atMost(m string) option { return func(e *ElementDefinition) { e.Max = m } }
func mustSupport() option    { return func(e *ElementDefinition) { e.MustSupport = true } }

// withRule names the rule with a message of its own (the rule's text
// otherwise).
func withRule(id, message string) option {
	return func(e *ElementDefinition) { e.Extension = append(e.Extension, ruleExtension(id, message)) }
}
func types(codes ...string) option {
	return func(e *ElementDefinition) {
		for _, c := range codes {
			e.Type = append(e.Type, TypeRef{Code: c})
		}
	}
}

// extension makes a slice of an extension element for the extension name
// (one of the gateway's, or a full url).
func extension(name string) option {
	url := name
	if !isURL(name) {
		url = extURL(name)
	}
	return func(e *ElementDefinition) { e.Type = []TypeRef{{Code: "Extension", Profile: []string{url}}} }
}

func binding(strength, valueSet string) option {
	return func(e *ElementDefinition) { e.Binding = &Binding{Strength: strength, ValueSet: valueSet} }
}

// slicedBy slices an element: rules, discriminator type, and the
// discriminator paths.
func slicedBy(rules, typ string, paths ...string) option {
	return func(e *ElementDefinition) {
		s := &Slicing{Rules: rules, Ordered: ptr(false)}
		for _, p := range paths {
			s.Discriminator = append(s.Discriminator, Discriminator{Type: typ, Path: p})
		}
		e.Slicing = s
	}
}

func fixed(typ string, v any) option {
	return func(e *ElementDefinition) { e.Fixed = &Value{Type: typ, JSON: mustJSON(v)} }
}

func pattern(typ string, v any) option {
	return func(e *ElementDefinition) { e.Pattern = &Value{Type: typ, JSON: mustJSON(v)} }
}

// invariant adds a FHIRPath constraint keyed by a rule id, which gives its
// text.
func invariant(rule, expression string) option {
	return func(e *ElementDefinition) {
		e.Constraint = append(e.Constraint, Constraint{Key: rule, Severity: "error", Human: ruleMessage(rule), Expression: expression})
	}
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // literal values of this file
	}
	return b
}

func isURL(s string) bool { return len(s) > 8 && (s[:7] == "http://" || s[:8] == "https://") }
