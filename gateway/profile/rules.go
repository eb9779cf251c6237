package profile

import (
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// RuleExtension is the extension on an ElementDefinition that names the
// validation rule its failures report (valueCoding: the rule id in the
// validation-rule CodeSystem, with its text as display).
const RuleExtension = mapping.Canonical + "/StructureDefinition/validation-rule"

// Rule is a rule id the profiles report, with what it says.
type Rule struct{ ID, Description string }

// Rules lists the rule ids of profile checks: those of the kg-* profiles
// (named by their elements and invariants) and those reported for the
// checks of other profiles (the R4 vital-signs profiles), which name no
// rule of their own. Invariants of other profiles report their key
// (vs-1, vs-2, vs-3).
func Rules() []Rule {
	return []Rule{
		{"profile.identifier", "a gateway-profiled resource carries an identifier with system and value"},
		{"profile.security-label", "a gateway-profiled resource is labelled PSY (v3-ActCode) and R (v3-Confidentiality) in meta.security"},
		{"profile.subject", "the resource references its patient in subject (a detected issue: in patient)"},
		{"profile.effective", "the Observation states effectiveDateTime"},
		{"profile.code-text", "code.text is always set"},
		{"profile.category", "the Observation has the category of its profile (survey, vital-signs)"},
		{"profile.panel-members", "a survey panel lists its answers in hasMember"},
		{"profile.item-answer", "a survey item carries valueCodeableConcept"},
		{"profile.score-value", "a score is valueQuantity with UCUM {score}, valueInteger, or a coded level, or, when it cannot be derived, no value and a dataAbsentReason; never valueString"},
		{"profile.vital-quantity", "a vital sign has a UCUM valueQuantity (value, unit, system, code), components, or a dataAbsentReason"},
		{"profile.vital-unit", "a vital sign's unit is one of the gateway's vital-sign units (ValueSet kg-vital-sign-units)"},
		{"profile.part-of-session", "the drug given is partOf the session Procedure"},
		{"profile.planned-dose", "a session's plan states its planned dose in dosageInstruction.doseAndRate.doseQuantity"},
		{"profile.flag-detail", "a safety flag points at the record that raised it (extension flag-detail)"},
		{"profile.flag-category", "a safety flag has category safety"},
		{"profile.issue-implicated", "a detected issue names the action it is about (the drug given) in implicated"},
		{"profile.event-coded", "an adverse event states its event"},
		{"profile.event-date", "an adverse event states its onset in date"},
		{"profile.unknown", "the profile (claimed in meta.profile, or asked for in $validate) is not one the gateway knows"},
		{"profile.type-mismatch", "the profile constrains another resource type than the resource's"},
		{"profile.not-checked", "the resource claims a profile the gateway does not know; it was not checked against it"},
		{"profile.cardinality", "an element occurs fewer or more times than a profile allows"},
		{"profile.slice", "an element lacks a repetition a profile requires (a slice), or has one a closed slicing forbids"},
		{"profile.fixed-value", "an element does not have the value a profile fixes"},
		{"profile.pattern", "an element does not match the pattern a profile requires"},
		{"profile.type", "a choice element has a type the profile does not allow"},
		{"profile.binding", "a code is not in the ValueSet a profile binds with strength required"},
		{"profile.binding-extensible", "no coding is from the ValueSet a profile binds with strength extensible (a warning)"},
	}
}

// ruleMessage returns a rule's text. The rule ids are constants of this
// package, so an unknown one is a programming error the tests catch.
func ruleMessage(id string) string {
	for _, r := range Rules() {
		if r.ID == id {
			return r.Description
		}
	}
	panic("profile: no rule " + id)
}

// ruleExtension names a rule on an element (message "" for the rule's own
// text).
func ruleExtension(id, message string) Extension {
	if message == "" {
		message = ruleMessage(id)
	}
	return Extension{URL: RuleExtension, ValueCoding: &Coding{System: outcome.RuleSystem, Code: id, Display: message}}
}
