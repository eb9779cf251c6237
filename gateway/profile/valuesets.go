package profile

import (
	"slices"
	"strconv"
	"strings"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// ValueSet is the part of an R4 ValueSet the gateway writes and reads: an
// enumerated compose (valueset.html).
type ValueSet struct {
	ResourceType string   `json:"resourceType"`
	ID           string   `json:"id"`
	URL          string   `json:"url"`
	Version      string   `json:"version,omitempty"`
	Name         string   `json:"name,omitempty"`
	Title        string   `json:"title,omitempty"`
	Status       string   `json:"status"`
	Experimental *bool    `json:"experimental,omitempty"`
	Publisher    string   `json:"publisher,omitempty"`
	Description  string   `json:"description,omitempty"`
	Compose      *Compose `json:"compose,omitempty"`
}

// Compose lists what a ValueSet includes.
type Compose struct {
	Include []Include `json:"include"`
}

// Include is a code system's codes in a ValueSet (all of them when Concept
// is empty).
type Include struct {
	System  string    `json:"system"`
	Concept []Concept `json:"concept,omitempty"`
}

// Concept is one code of an Include.
type Concept struct {
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// Contains reports whether system|code is in the ValueSet.
func (vs *ValueSet) Contains(system, code string) bool {
	if vs.Compose == nil || code == "" {
		return false
	}
	for _, in := range vs.Compose.Include {
		if in.System != system {
			continue
		}
		if len(in.Concept) == 0 {
			return true
		}
		if slices.ContainsFunc(in.Concept, func(c Concept) bool { return c.Code == code }) {
			return true
		}
	}
	return false
}

// valueSetDef is one of the gateway's ValueSets: the rows of the mapping's
// code table whose keys it selects.
type valueSetDef struct {
	name, title, description string
	keys                     func(key string) bool
}

// prefixed selects the code-table keys with one of the prefixes.
func prefixed(prefixes ...string) func(string) bool {
	return func(k string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				return true
			}
		}
		return false
	}
}

// instrumentKeys selects the code-table keys of the instruments' panels,
// items (their difficulty question included) or scores, as
// mapping.Instruments defines them: a new instrument is in the ValueSets
// without a list here.
func instrumentKeys(part string) func(string) bool {
	keys := map[string]bool{}
	for _, in := range mapping.Instruments() {
		switch part {
		case "panel":
			if in.Items > 0 {
				keys[in.Key+".panel"] = true
			}
		case "item":
			for n := 1; n <= in.Items; n++ {
				keys[in.Key+"."+strconv.Itoa(n)] = true
			}
			if in.Difficulty != "" {
				keys[in.Difficulty] = true
			}
		case "score":
			keys[in.Key+".total"] = true
		}
	}
	return func(k string) bool { return keys[k] }
}

// aeAssessment are the adverse-event keys that are not the event itself.
var aeAssessment = []string{"ae.severity.", "ae.serious.", "ae.criterion.", "ae.outcome.", "ae.causality.", "ae.action."}

// valueSetDefs are the ValueSets the profiles bind. Coded elements whose
// codes come from HL7 value sets (observation category, adverse-event
// severity, seriousness, outcome and causality, flag category, identifier
// type, security labels) are bound to those instead.
func valueSetDefs() []valueSetDef {
	return []valueSetDef{
		{"kg-survey-panel-codes", "Assessment panel codes", "The codes of the assessment panels (Observation.code of kg-survey-panel): LOINC where the instrument has a panel code, the gateway's local codes otherwise.",
			instrumentKeys("panel")},
		{"kg-survey-item-codes", "Assessment item codes", "The codes of the answered items (Observation.code of kg-survey-item), the PHQ-9 difficulty question included.",
			instrumentKeys("item")},
		{"kg-survey-score-codes", "Assessment score codes", "The codes of total scores and derived levels (Observation.code of kg-survey-score).",
			instrumentKeys("score")},
		{"kg-survey-answers", "Assessment answers", "The answers of assessment items (Observation.valueCodeableConcept of kg-survey-item): LOINC answer codes, the local scales' scores.",
			prefixed("answer.")},
		{"kg-cssrs-risk-levels", "C-SSRS screener risk levels", "The suicide risk level derived from the C-SSRS screener's answers.",
			prefixed("cssrs.risk.")},
		{"kg-observation-interpretations", "Observation interpretations", "Severity bands of assessment totals and the flags of values past the safety thresholds.",
			prefixed("band.", "interp.")},
		{"kg-vital-sign-codes", "Vital sign codes", "The LOINC codes of the vital signs the gateway maps (Observation.code and component.code of kg-vital-signs).",
			prefixed("vitals.")},
		{"kg-monitoring-timepoints", "Monitoring time points", "When, relative to dosing, a vital sign was measured.",
			prefixed("timepoint.")},
		{"kg-session-procedure-codes", "Session procedure codes", "What a session is (Procedure.code of kg-infusion-session).",
			prefixed("procedure.iv-infusion", "procedure.nasal")},
		{"kg-procedure-categories", "Session procedure categories", "The category of a session (Procedure.category).",
			prefixed("procedure.category")},
		{"kg-procedure-outcomes", "Session outcomes", "The outcome of a session (Procedure.outcome).",
			prefixed("outcome.")},
		{"kg-indications", "Indications", "Why a session was given (reasonCode): ICD-10-CM and SNOMED CT depression and suicidality codes.",
			prefixed("indication.")},
		{"kg-stop-reasons", "Reasons a session stopped", "Why a session was stopped early or not done (statusReason).",
			prefixed("stop.")},
		{"kg-drugs", "Drugs", "The drug given or planned (medicationCodeableConcept): ketamine and esketamine.",
			prefixed("drug.")},
		{"kg-routes", "Routes", "The route of administration (dosage.route).",
			prefixed("route.")},
		{"kg-adverse-event-types", "Adverse event types", "The side effects the gateway maps (AdverseEvent.event, Procedure.complication): SNOMED CT and MedDRA codes, local codes where neither has one.",
			func(k string) bool { return strings.HasPrefix(k, "ae.") && !prefixed(aeAssessment...)(k) }},
		{"kg-seriousness-criteria", "Seriousness criteria", "Why a serious adverse event is serious (extension seriousness-criterion).",
			prefixed("ae.criterion.")},
		{"kg-adverse-event-actions", "Adverse event actions", "What was done about an adverse event (extension adverse-event-action-taken).",
			prefixed("ae.action.")},
		{"kg-safety-flag-codes", "Safety flag codes", "What a safety flag says (Flag.code of kg-safety-flag).",
			prefixed("flag.phq9-item9", "flag.cssrs", "flag.madrs-item10", "flag.qids-item12", "flag.suicidal-ideation-event")},
	}
}

// hl7Bound are the code-table keys whose element is bound to an HL7 value
// set, not one of the gateway's (data-absent.: Observation.dataAbsentReason,
// bound by R4 to data-absent-reason; issue.: DetectedIssue.code, bound by R4
// to detectedissue-category).
var hl7Bound = []string{"category.", "issue.", "ae.severity.", "ae.serious.", "ae.outcome.", "ae.causality.", "flag.category.", "idtype.", "security.", "data-absent."}

// vitalUnits are the UCUM units of the mapped vital signs (ValueSet
// kg-vital-sign-units, bound required by kg-vital-signs).
var vitalUnits = []Concept{{"mm[Hg]", "millimeter of mercury"}, {"/min", "per minute"}, {"%", "percent"},
	{"Cel", "degree Celsius"}, {"[degF]", "degree Fahrenheit"}, {"kg", "kilogram"}, {"[lb_av]", "pound (US and British)"}}

// valueSets builds the gateway's ValueSets from the mapping's code table.
func valueSets() []*ValueSet {
	concepts := mapping.Concepts()
	var out []*ValueSet
	for _, d := range valueSetDefs() {
		vs := newValueSet(d.name, d.title, d.description)
		for _, c := range concepts {
			if d.keys(c.Key) {
				vs.add(c.System, Concept{Code: c.Code, Display: c.Display})
			}
		}
		out = append(out, vs)
	}
	units := newValueSet("kg-vital-sign-units", "Vital sign units", "The UCUM units of the vital signs the gateway maps (valueQuantity.code of kg-vital-signs, bound required).")
	for _, u := range vitalUnits {
		units.add(mapping.SystemUCUM, u)
	}
	return append(out, units)
}

func newValueSet(name, title, description string) *ValueSet {
	return &ValueSet{ResourceType: "ValueSet", ID: name, URL: vsURL(name), Version: mapping.Version, Name: pascal(name),
		Title: "Ketamine-therapy gateway " + phrase(title), Status: "active", Experimental: ptr(false),
		Publisher: Publisher, Description: description, Compose: &Compose{}}
}

// phrase makes a title a phrase that follows the publisher's name: its first
// letter lower-cased, unless the first word is an acronym ("C-SSRS",
// "PHQ-9", "LOINC"), which keeps its capitals.
func phrase(title string) string {
	first, _, _ := strings.Cut(title, " ")
	if len(first) < 2 || strings.ToLower(first[1:]) != first[1:] {
		return title
	}
	return strings.ToLower(first[:1]) + title[1:]
}

// add adds system|code, keeping the codes of a system together.
func (vs *ValueSet) add(system string, c Concept) {
	for i := range vs.Compose.Include {
		if vs.Compose.Include[i].System == system {
			if !slices.ContainsFunc(vs.Compose.Include[i].Concept, func(x Concept) bool { return x.Code == c.Code }) {
				vs.Compose.Include[i].Concept = append(vs.Compose.Include[i].Concept, c)
			}
			return
		}
	}
	vs.Compose.Include = append(vs.Compose.Include, Include{System: system, Concept: []Concept{c}})
}

// pascal turns kg-vital-signs into KGVitalSigns, a computable name.
func pascal(id string) string {
	var b strings.Builder
	for _, part := range strings.Split(id, "-") {
		if part == "kg" {
			b.WriteString("KG")
			continue
		}
		b.WriteString(upper(part))
	}
	return b.String()
}
