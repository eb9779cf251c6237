// Package profile holds the rules of the gateway's own profiles
// (mapping.Canonical/StructureDefinition/kg-*), which add to the R4 base for
// the resources the gateway maps. A resource that claims one in meta.profile
// must satisfy it: receivers of mapped data rely on these rules. The engine
// applies them on every write and in $validate.
package profile

import (
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// Prefix is the canonical URL prefix of the gateway's profiles.
const Prefix = mapping.Canonical + "/StructureDefinition/"

// profileRule is one rule of a profile over a decoded resource: it returns
// the FHIRPath of the element at fault, or "" when the rule holds.
type profileRule struct {
	id, msg string
	check   func(doc map[string]any) string
}

// commonRules apply to every kg-* profile.
var commonRules = []profileRule{
	{"profile.identifier", "a gateway-profiled resource carries an identifier with system and value", func(d map[string]any) string {
		ids := d["identifier"]
		if one, ok := ids.(map[string]any); ok { // AdverseEvent.identifier is single
			ids = []any{one}
		}
		list, _ := ids.([]any)
		for _, i := range list {
			m, _ := i.(map[string]any)
			if str(m, "system") != "" && str(m, "value") != "" {
				return ""
			}
		}
		return "identifier"
	}},
	{"profile.security-label", "a gateway-profiled resource is labelled PSY (v3-ActCode) and R (v3-Confidentiality) in meta.security", func(d map[string]any) string {
		meta, _ := d["meta"].(map[string]any)
		sec, _ := meta["security"].([]any)
		psy, r := false, false
		for _, c := range sec {
			m, _ := c.(map[string]any)
			psy = psy || str(m, "system") == mapping.SystemActCode && str(m, "code") == "PSY"
			r = r || str(m, "system") == mapping.SystemConfid && str(m, "code") == "R"
		}
		if psy && r {
			return ""
		}
		return "meta.security"
	}},
}

// profileRules are the rules of each profile beyond the common ones.
var profileRules = map[string][]profileRule{
	"kg-patient": nil,
	"kg-survey-panel": {
		subjectRule, effectiveRule, codeTextRule, categoryRule("survey"),
		{"profile.panel-members", "a survey panel lists its answers in hasMember", func(d map[string]any) string {
			if m, _ := d["hasMember"].([]any); len(m) > 0 {
				return ""
			}
			return "hasMember"
		}},
	},
	"kg-survey-item": {subjectRule, effectiveRule, codeTextRule, categoryRule("survey"),
		{"profile.item-answer", "a survey item carries valueCodeableConcept", func(d map[string]any) string {
			if _, ok := d["valueCodeableConcept"].(map[string]any); ok {
				return ""
			}
			return "value"
		}},
	},
	"kg-survey-score": {subjectRule, effectiveRule, codeTextRule, categoryRule("survey"),
		{"profile.score-value", "a score is valueQuantity with UCUM {score}, valueInteger, or a coded level; never valueString", func(d map[string]any) string {
			if q, ok := d["valueQuantity"].(map[string]any); ok && str(q, "code") == "{score}" && str(q, "system") == mapping.SystemUCUM {
				return ""
			}
			if _, ok := d["valueInteger"]; ok {
				return ""
			}
			if _, ok := d["valueCodeableConcept"].(map[string]any); ok {
				return ""
			}
			return "value"
		}},
	},
	"kg-vital-signs": {subjectRule, effectiveRule, codeTextRule, categoryRule("vital-signs"),
		{"profile.vital-quantity", "a vital sign has a UCUM valueQuantity (value, unit, system, code), components, or a dataAbsentReason", func(d map[string]any) string {
			if _, ok := d["dataAbsentReason"]; ok {
				return ""
			}
			if comps, ok := d["component"].([]any); ok && len(comps) > 0 {
				for i, c := range comps {
					m, _ := c.(map[string]any)
					if !ucumQuantity(m["valueQuantity"]) {
						return "component[" + strconv.Itoa(i) + "].valueQuantity"
					}
				}
				return ""
			}
			if ucumQuantity(d["valueQuantity"]) {
				return ""
			}
			return "valueQuantity"
		}},
	},
	"kg-infusion-session": {subjectRule, codeTextRule},
	"kg-medication-administration": {subjectRule,
		{"profile.part-of-session", "the drug given is partOf the session Procedure", func(d map[string]any) string {
			if p, _ := d["partOf"].([]any); len(p) > 0 {
				return ""
			}
			return "partOf"
		}},
	},
	"kg-medication-request": {subjectRule,
		{"profile.planned-dose", "a session's plan states its planned dose in dosageInstruction.doseAndRate.doseQuantity", func(d map[string]any) string {
			dis, _ := d["dosageInstruction"].([]any)
			for _, di := range dis {
				dm, _ := di.(map[string]any)
				drs, _ := dm["doseAndRate"].([]any)
				for _, dr := range drs {
					if m, _ := dr.(map[string]any); ucumQuantity(m["doseQuantity"]) {
						return ""
					}
				}
			}
			return "dosageInstruction"
		}},
	},
	"kg-safety-flag": {subjectRule, codeTextRule,
		{"profile.flag-detail", "a safety flag points at the record that raised it (extension flag-detail)", func(d map[string]any) string {
			exts, _ := d["extension"].([]any)
			for _, e := range exts {
				m, _ := e.(map[string]any)
				if ref, ok := m["valueReference"].(map[string]any); ok && str(m, "url") == mapping.ExtFlagDetail && str(ref, "reference") != "" {
					return ""
				}
			}
			return "extension"
		}},
		{"profile.flag-category", "a safety flag has category safety", func(d map[string]any) string {
			if hasCategory(d, mapping.SystemFlagCat, "safety") {
				return ""
			}
			return "category"
		}},
	},
	"kg-adverse-event": {subjectRule,
		{"profile.event-coded", "an adverse event states its event", func(d map[string]any) string {
			if _, ok := d["event"].(map[string]any); ok {
				return ""
			}
			return "event"
		}},
		{"profile.event-date", "an adverse event states its onset in date", func(d map[string]any) string {
			if str(d, "date") != "" {
				return ""
			}
			return "date"
		}},
	},
}

var (
	subjectRule = profileRule{"profile.subject", "the resource references its patient in subject", func(d map[string]any) string {
		if s, ok := d["subject"].(map[string]any); ok && (str(s, "reference") != "" || s["identifier"] != nil) {
			return ""
		}
		return "subject"
	}}
	effectiveRule = profileRule{"profile.effective", "the Observation states effectiveDateTime", func(d map[string]any) string {
		if str(d, "effectiveDateTime") != "" {
			return ""
		}
		return "effective"
	}}
	codeTextRule = profileRule{"profile.code-text", "code.text is always set", func(d map[string]any) string {
		if c, ok := d["code"].(map[string]any); ok && str(c, "text") != "" {
			return ""
		}
		return "code.text"
	}}
)

func categoryRule(code string) profileRule {
	return profileRule{"profile.category", "the Observation has category " + code, func(d map[string]any) string {
		if hasCategory(d, mapping.SystemObsCategory, code) {
			return ""
		}
		return "category"
	}}
}

// hasCategory reports whether a resource's category has a coding system|code.
func hasCategory(d map[string]any, system, code string) bool {
	cats, _ := d["category"].([]any)
	for _, c := range cats {
		m, _ := c.(map[string]any)
		codings, _ := m["coding"].([]any)
		for _, cd := range codings {
			cm, _ := cd.(map[string]any)
			if str(cm, "system") == system && str(cm, "code") == code {
				return true
			}
		}
	}
	return false
}

// Check applies the gateway profiles a resource claims. expr is the
// FHIRPath prefix of the resource ("Observation" or
// "Bundle.entry[3].resource").
func Check(doc map[string]any, expr string) []outcome.Issue {
	meta, _ := doc["meta"].(map[string]any)
	profiles, _ := meta["profile"].([]any)
	var out []outcome.Issue
	for _, p := range profiles {
		url, _ := p.(string)
		name, ok := strings.CutPrefix(url, Prefix)
		if !ok {
			continue
		}
		rules, known := profileRules[name]
		if !known {
			out = append(out, outcome.Issue{Severity: "error", Code: "not-supported", Rule: "profile.unknown", Expression: expr + ".meta.profile",
				Message: "the resource claims a gateway profile that does not exist"})
			continue
		}
		for _, r := range append(append([]profileRule(nil), commonRules...), rules...) {
			if at := r.check(doc); at != "" {
				out = append(out, outcome.Issue{Severity: "error", Code: "invariant", Rule: r.id, Expression: expr + "." + at, Message: r.msg})
			}
		}
	}
	return out
}

// Error wraps profile issues as an Unprocessable error (the resource is
// valid FHIR but breaks a profile it claims); nil without issues.
func Error(issues []outcome.Issue) error {
	if len(issues) == 0 {
		return nil
	}
	return &outcome.Error{Kind: outcome.Unprocessable, Issues: issues}
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func ucumQuantity(v any) bool {
	q, ok := v.(map[string]any)
	return ok && q["value"] != nil && str(q, "unit") != "" && str(q, "system") == mapping.SystemUCUM && str(q, "code") != ""
}
