package mapping

import (
	"fmt"
	"strconv"
)

// This file is the one table of every code the mappings emit. A terminologist
// corrects a code here and nowhere else; docs/mapping.md is generated from it
// (go test ./mapping -update). Codes marked Check were found only in
// secondary sources and await review.

// Code systems and canonical URLs.
const (
	SystemLOINC       = "http://loinc.org"
	SystemSNOMED      = "http://snomed.info/sct"
	SystemUCUM        = "http://unitsofmeasure.org"
	SystemRxNorm      = "http://www.nlm.nih.gov/research/umls/rxnorm"
	SystemICD10CM     = "http://hl7.org/fhir/sid/icd-10-cm"
	SystemMedDRA      = "http://terminology.hl7.org/CodeSystem/MDRAE"
	SystemObsCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	SystemAESeverity  = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
	SystemAESerious   = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
	SystemAEOutcome   = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
	SystemAECausality = "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess"
	SystemActCode     = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	SystemConfid      = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	SystemV2IDType    = "http://terminology.hl7.org/CodeSystem/v2-0203"
	SystemV3Interp    = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
	SystemFlagCat     = "http://terminology.hl7.org/CodeSystem/flag-category"
	SystemDataAbsent  = "http://terminology.hl7.org/CodeSystem/data-absent-reason"

	// Canonical is the project's canonical base for the profiles, code
	// systems, extensions and search parameters it publishes.
	Canonical = "https://ketamine-gateway.org/fhir"
	// SystemLocal is the gateway's own CodeSystem for concepts that have no
	// standard code (MADRS, QIDS-SR16, CADSS, MOAA/S, time points, ...).
	SystemLocal = Canonical + "/CodeSystem/ketamine-gateway"
	// ExtOrdinalValue is the core extension carrying an answer's score.
	ExtOrdinalValue = "http://hl7.org/fhir/StructureDefinition/ordinalValue"
	// ExtFlagDetail is the core extension pointing a Flag at the record
	// that supports it (R4 Flag has no element for it).
	ExtFlagDetail = "http://hl7.org/fhir/StructureDefinition/flag-detail"
	// ExtRelatedSession links an adverse event that the session's drug
	// cannot have caused to its session's Procedure (R4 AdverseEvent has
	// no element for a related, not suspected, procedure).
	ExtRelatedSession = Canonical + "/StructureDefinition/related-session"
)

// Concept is one row of the code table.
type Concept struct {
	Key     string // the table key the mappings use
	System  string
	Code    string
	Display string // "" in a row whose code an earlier row has: that row's display
	// Check marks a code found only in secondary sources.
	Check bool
}

// Concepts returns the whole code table in a stable order.
func Concepts() []Concept { return append([]Concept(nil), table.rows...) }

// conceptTable is the table plus its index by key.
type conceptTable struct {
	rows  []Concept
	byKey map[string]Concept
}

// table is built once from literal data and never changed afterwards.
var table = newConceptTable()

// concept returns the row for key. The keys are compile-time constants of this
// package, so a missing key is a programming error caught by the golden tests.
func concept(key string) Concept {
	c, ok := table.byKey[key]
	if !ok {
		panic(fmt.Sprintf("mapping: no concept %q in the code table", key))
	}
	return c
}

func hasConcept(key string) bool { _, ok := table.byKey[key]; return ok }

func newConceptTable() conceptTable {
	rows := []Concept{
		// Observation categories.
		{"category.survey", SystemObsCategory, "survey", "Survey", false},
		{"category.vital-signs", SystemObsCategory, "vital-signs", "Vital Signs", false},

		// PHQ-9.
		{"phq9.panel", SystemLOINC, "44249-1", "PHQ-9 quick depression assessment panel [Reported.PHQ]", false},
		{"phq9.1", SystemLOINC, "44250-9", "Little interest or pleasure in doing things", false},
		{"phq9.2", SystemLOINC, "44255-8", "Feeling down, depressed, or hopeless", false},
		{"phq9.3", SystemLOINC, "44259-0", "Trouble falling or staying asleep, or sleeping too much", false},
		{"phq9.4", SystemLOINC, "44254-1", "Feeling tired or having little energy", false},
		{"phq9.5", SystemLOINC, "44251-7", "Poor appetite or overeating", false},
		{"phq9.6", SystemLOINC, "44258-2", "Feeling bad about yourself-or that you are a failure or have let yourself or your family down", false},
		{"phq9.7", SystemLOINC, "44252-5", "Trouble concentrating on things, such as reading the newspaper or watching television", false},
		{"phq9.8", SystemLOINC, "44253-3", "Moving or speaking so slowly that other people could have noticed. Or the opposite-being so fidgety or restless that you have been moving around a lot more than usual", false},
		{"phq9.9", SystemLOINC, "44260-8", "Thoughts that you would be better off dead, or of hurting yourself in some way", false},
		{"phq9.total", SystemLOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]", false},
		{"phq9.difficulty", SystemLOINC, "69722-7", "How difficult have these problems made it for you to do your work, take care of things at home, or get along with other people", false},

		// Frequency answers shared by PHQ-9 and GAD-7 (the key's number is the score).
		{"answer.freq.0", SystemLOINC, "LA6568-5", "Not at all", false},
		{"answer.freq.1", SystemLOINC, "LA6569-3", "Several days", false},
		{"answer.freq.2", SystemLOINC, "LA6570-1", "More than half the days", false},
		{"answer.freq.3", SystemLOINC, "LA6571-9", "Nearly every day", false},
		// PHQ-9 difficulty answers.
		{"answer.difficulty.not-difficult", SystemLOINC, "LA6572-7", "Not difficult at all", false},
		{"answer.difficulty.somewhat-difficult", SystemLOINC, "LA6573-5", "Somewhat difficult", false},
		{"answer.difficulty.very-difficult", SystemLOINC, "LA6575-0", "Very difficult", false},
		{"answer.difficulty.extremely-difficult", SystemLOINC, "LA6574-3", "Extremely difficult", false},
		// Yes/No answers (C-SSRS screener).
		{"answer.yes", SystemLOINC, "LA33-6", "Yes", false},
		{"answer.no", SystemLOINC, "LA32-8", "No", false},

		// GAD-7.
		{"gad7.panel", SystemLOINC, "69737-5", "Generalized anxiety disorder 7 item (GAD-7)", false},
		{"gad7.1", SystemLOINC, "69725-0", "Feeling nervous, anxious or on edge", false},
		{"gad7.2", SystemLOINC, "68509-9", "Not being able to stop or control worrying", false},
		{"gad7.3", SystemLOINC, "69733-4", "Worrying too much about different things", false},
		{"gad7.4", SystemLOINC, "69734-2", "Trouble relaxing", false},
		{"gad7.5", SystemLOINC, "69735-9", "Being so restless that it is hard to sit still", false},
		{"gad7.6", SystemLOINC, "69689-8", "Becoming easily annoyed or irritable", false},
		{"gad7.7", SystemLOINC, "69736-7", "Feeling afraid as if something awful might happen", false},
		{"gad7.total", SystemLOINC, "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]", false},

		// C-SSRS screener (items 1-6; item 7 is question 6 asked for the past 3 months).
		{"cssrs.panel", SystemLOINC, "93373-9", "Columbia suicide severity rating scale screener - recent [C-SSRS]", true},
		{"cssrs.1", SystemLOINC, "93246-7", "Wish to be dead", false},
		{"cssrs.2", SystemLOINC, "93247-5", "Non-specific active suicidal thoughts", false},
		{"cssrs.3", SystemLOINC, "93248-3", "Active suicidal ideation with any methods without intent to act", false},
		{"cssrs.4", SystemLOINC, "93249-1", "Active suicidal ideation with some intent to act, without specific plan", false},
		{"cssrs.5", SystemLOINC, "93250-9", "Active suicidal ideation with specific plan and intent", false},
		{"cssrs.6", SystemLOINC, "93267-3", "Suicidal behavior (lifetime)", false},
		{"cssrs.7", SystemLOINC, "93269-9", "Suicidal behavior within the past 3 months", false},
		{"cssrs.total", SystemLOINC, "93374-7", "Suicide risk level [C-SSRS]", false},
		{"cssrs.risk.none", SystemLocal, "cssrs-risk-none", "No suicide risk identified by the C-SSRS screener", false},
		{"cssrs.risk.low", SystemLocal, "cssrs-risk-low", "Low suicide risk (C-SSRS screener)", false},
		{"cssrs.risk.moderate", SystemLocal, "cssrs-risk-moderate", "Moderate suicide risk (C-SSRS screener)", false},
		{"cssrs.risk.high", SystemLocal, "cssrs-risk-high", "High suicide risk (C-SSRS screener)", false},
		{"data-absent.unknown", SystemDataAbsent, "unknown", "Unknown", false},

		// Local scales without LOINC codes (items are appended below).
		{"madrs.panel", SystemLocal, "madrs", "Montgomery-Asberg Depression Rating Scale (MADRS) panel", false},
		{"madrs.total", SystemLocal, "madrs-total", "MADRS total score", false},
		{"qids.panel", SystemLocal, "qids-sr16", "Quick Inventory of Depressive Symptomatology, self-report, 16 items (QIDS-SR16) panel", false},
		{"qids.total", SystemLocal, "qids-sr16-total", "QIDS-SR16 total score", false},
		{"cadss.panel", SystemLocal, "cadss", "Clinician-Administered Dissociative States Scale (CADSS) panel", false},
		{"cadss.total", SystemLocal, "cadss-total", "CADSS total score", false},
		{"moaas.total", SystemLocal, "moaa-s", "Modified Observer's Assessment of Alertness/Sedation (MOAA/S) score", false},

		// Severity bands, used as Observation.interpretation on totals.
		{"band.none", SystemLocal, "band-none", "None", false},
		{"band.normal", SystemLocal, "band-normal", "Normal / symptom absent", false},
		{"band.minimal", SystemLocal, "band-minimal", "Minimal", false},
		{"band.mild", SystemLocal, "band-mild", "Mild", false},
		{"band.moderate", SystemLocal, "band-moderate", "Moderate", false},
		{"band.moderately-severe", SystemLocal, "band-moderately-severe", "Moderately severe", false},
		{"band.severe", SystemLocal, "band-severe", "Severe", false},
		{"band.very-severe", SystemLocal, "band-very-severe", "Very severe", false},

		// Interpretations (Observation.interpretation) of values past the
		// safety thresholds (safety.go).
		{"interp.H", SystemV3Interp, "H", "High", false},
		{"interp.HH", SystemV3Interp, "HH", "Critical high", false},
		{"interp.L", SystemV3Interp, "L", "Low", false},
		{"interp.LL", SystemV3Interp, "LL", "Critical low", false},
		{"interp.POS", SystemV3Interp, "POS", "Positive", false},
		// Safety flags on the patient (no standard code names a positive
		// screen for these instruments).
		{"flag.category.safety", SystemFlagCat, "safety", "Safety", false},
		{"flag.phq9-item9", SystemLocal, "flag-phq9-item9", "PHQ-9 item 9 positive: thoughts of being better off dead or of self-harm", false},
		{"flag.cssrs", SystemLocal, "flag-cssrs-positive", "C-SSRS screener positive for suicide risk", false},
		{"flag.madrs-item10", SystemLocal, "flag-madrs-item10", "MADRS item 10 (suicidal thoughts) at or above the safety threshold", false},
		{"flag.qids-item12", SystemLocal, "flag-qids-item12", "QIDS-SR16 item 12 (thoughts of death or suicide) at or above the safety threshold", false},
		{"flag.suicidal-ideation-event", SystemLocal, "flag-suicidal-ideation-event", "Suicidal ideation recorded as an adverse event", false},
		{"issue.observation-alert", SystemActCode, "OBSA", "Observation Alert", false},

		// Vital signs.
		{"vitals.bp", SystemLOINC, "85354-9", "Blood pressure panel with all children optional", false},
		{"vitals.bp.systolic", SystemLOINC, "8480-6", "Systolic blood pressure", false},
		{"vitals.bp.diastolic", SystemLOINC, "8462-4", "Diastolic blood pressure", false},
		{"vitals.heart-rate", SystemLOINC, "8867-4", "Heart rate", false},
		{"vitals.respiratory-rate", SystemLOINC, "9279-1", "Respiratory rate", false},
		{"vitals.spo2", SystemLOINC, "2708-6", "Oxygen saturation in Arterial blood", false},
		{"vitals.spo2.pulse-ox", SystemLOINC, "59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry", false},
		{"vitals.temperature", SystemLOINC, "8310-5", "Body temperature", false},
		{"vitals.body-weight", SystemLOINC, "29463-7", "Body weight", false},
		// Monitoring time points (Observation extension).
		{"timepoint.pre-dose", SystemLocal, "timepoint-pre-dose", "Before dosing", false},
		{"timepoint.post-dose-40min", SystemLocal, "timepoint-post-dose-40min", "About 40 minutes after dosing", false},
		{"timepoint.discharge", SystemLocal, "timepoint-discharge", "Before discharge", false},
		{"timepoint.other", SystemLocal, "timepoint-other", "Other time point", false},

		// Infusion session.
		{"procedure.iv-infusion", SystemSNOMED, "14152002", "Intravenous infusion", true},
		{"procedure.nasal", SystemSNOMED, "18629005", "Administration of drug or medicament", true},
		{"procedure.category", SystemSNOMED, "24642003", "Psychiatry procedure or service", false},
		{"outcome.successful", SystemSNOMED, "385669000", "Successful", false},
		{"outcome.unsuccessful", SystemSNOMED, "385671000", "Unsuccessful", false},
		{"outcome.partially-successful", SystemSNOMED, "385670004", "Partially successful", false},
		{"drug.ketamine", SystemRxNorm, "6130", "ketamine", true},
		{"drug.ketamine.substance", SystemSNOMED, "373464007", "Ketamine", true},
		{"drug.esketamine-nasal", SystemRxNorm, "2201623", "esketamine 28 MG per actuation nasal spray", true},
		{"route.iv", SystemSNOMED, "47625008", "Intravenous route", false},
		{"route.nasal", SystemSNOMED, "46713006", "Nasal route", false},
		{"indication.F32.2", SystemICD10CM, "F32.2", "Major depressive disorder, single episode, severe without psychotic features", false},
		{"indication.F32.9", SystemICD10CM, "F32.9", "Major depressive disorder, single episode, unspecified", false},
		{"indication.F33.1", SystemICD10CM, "F33.1", "Major depressive disorder, recurrent, moderate", false},
		{"indication.F33.2", SystemICD10CM, "F33.2", "Major depressive disorder, recurrent severe without psychotic features", false},
		{"indication.F33.9", SystemICD10CM, "F33.9", "Major depressive disorder, recurrent, unspecified", false},
		{"indication.R45.851", SystemICD10CM, "R45.851", "Suicidal ideations", false},
		{"indication.370143000", SystemSNOMED, "370143000", "Major depressive disorder", false},
		{"indication.6471006", SystemSNOMED, "6471006", "Suicidal thoughts", false},
		{"stop.adverse-event", SystemLocal, "stop-adverse-event", "Stopped because of an adverse event", false},
		{"stop.patient-request", SystemLocal, "stop-patient-request", "Patient request", false},
		{"stop.elevated-blood-pressure", SystemLocal, "stop-elevated-blood-pressure", "Elevated blood pressure", false},
		{"stop.excessive-sedation", SystemLocal, "stop-excessive-sedation", "Excessive sedation", false},
		{"stop.clinical-decision", SystemLocal, "stop-clinical-decision", "Clinical decision", false},
		{"stop.equipment-failure", SystemLocal, "stop-equipment-failure", "Equipment failure", false},
		{"stop.patient-no-show", SystemLocal, "stop-patient-no-show", "Patient did not attend", false},
		{"stop.other", SystemLocal, "stop-other", "Other reason", false},

		// Adverse events: the event (SNOMED) and its MedDRA term where known.
		{"ae.nausea", SystemSNOMED, "422587007", "Nausea", false},
		{"ae.nausea.meddra", SystemMedDRA, "10028813", "Nausea", false},
		{"ae.vomiting", SystemSNOMED, "422400008", "Vomiting", false},
		{"ae.vomiting.meddra", SystemMedDRA, "10047700", "Vomiting", false},
		{"ae.dizziness", SystemSNOMED, "404640003", "Dizziness", false},
		{"ae.dizziness.meddra", SystemMedDRA, "10013573", "Dizziness", false},
		{"ae.lightheadedness", SystemSNOMED, "386705008", "Lightheadedness", false},
		{"ae.increased-blood-pressure", SystemSNOMED, "24184005", "Finding of increased blood pressure", false},
		{"ae.increased-blood-pressure.meddra", SystemMedDRA, "10005750", "Blood pressure increased", true},
		{"ae.hypertension", SystemSNOMED, "38341003", "Hypertensive disorder", false},
		{"ae.hypertension.meddra", SystemMedDRA, "10020772", "Hypertension", false},
		{"ae.hypotension", SystemSNOMED, "45007003", "Low blood pressure", false},
		{"ae.hypotension.meddra", SystemMedDRA, "10021097", "Hypotension", false},
		{"ae.tachycardia", SystemSNOMED, "3424008", "Tachycardia", false},
		{"ae.palpitations", SystemSNOMED, "80313002", "Palpitations", false},
		{"ae.palpitations.meddra", SystemMedDRA, "10033557", "Palpitations", false},
		{"ae.disorientation", SystemSNOMED, "62476001", "Disorientated", false},
		{"ae.disorientation.meddra", SystemMedDRA, "10013395", "Disorientation", true},
		{"ae.confusion", SystemSNOMED, "40917007", "Clouded consciousness", false},
		{"ae.confusion.meddra", SystemMedDRA, "10010300", "Confusional state", false},
		{"ae.headache", SystemSNOMED, "25064002", "Headache", false},
		{"ae.headache.meddra", SystemMedDRA, "10019211", "Headache", false},
		{"ae.increased-salivation", SystemSNOMED, "53827007", "Excessive salivation", false},
		{"ae.increased-salivation.meddra", SystemMedDRA, "10039424", "Salivary hypersecretion", true},
		{"ae.dry-mouth", SystemSNOMED, "87715008", "Xerostomia", false},
		{"ae.dry-mouth.meddra", SystemMedDRA, "10013781", "Dry mouth", false},
		{"ae.anxiety", SystemSNOMED, "48694002", "Anxiety", false},
		{"ae.anxiety.meddra", SystemMedDRA, "10002855", "Anxiety", false},
		{"ae.agitation", SystemSNOMED, "24199005", "Feeling agitated", false},
		{"ae.agitation.meddra", SystemMedDRA, "10001497", "Agitation", false},
		{"ae.hallucinations", SystemSNOMED, "7011001", "Hallucinations", false},
		{"ae.hallucinations.meddra", SystemMedDRA, "10019077", "Hallucination", false},
		{"ae.sedation", SystemSNOMED, "271782001", "Drowsy", false},
		{"ae.sedation.meddra", SystemMedDRA, "10041349", "Somnolence", false},
		{"ae.suicidal-ideation", SystemSNOMED, "6471006", "", false}, // the display of indication.6471006
		{"ae.suicidal-ideation.meddra", SystemMedDRA, "10042458", "Suicidal ideation", false},
		{"ae.dissociation", SystemLocal, "dissociation", "Dissociation (ketamine-induced dissociative state)", false},
		{"ae.dissociation.meddra", SystemMedDRA, "10013457", "Dissociation", true},
		{"ae.other", SystemLocal, "adverse-event-other", "Other adverse event (see text)", false},

		// Adverse event assessment (HL7 terminology).
		{"ae.severity.mild", SystemAESeverity, "mild", "Mild", false},
		{"ae.severity.moderate", SystemAESeverity, "moderate", "Moderate", false},
		{"ae.severity.severe", SystemAESeverity, "severe", "Severe", false},
		{"ae.serious.false", SystemAESerious, "Non-serious", "Non-serious", false},
		{"ae.serious.true", SystemAESerious, "Serious", "Serious", false},
		{"ae.criterion.death", SystemAESerious, "SeriousResultsInDeath", "Results in death", false},
		{"ae.criterion.life-threatening", SystemAESerious, "SeriousIsLifeThreatening", "Is Life-threatening", false},
		{"ae.criterion.hospitalization", SystemAESerious, "SeriousResultsInHospitalization", "Requires or prolongs inpatient hospitalization", false},
		{"ae.criterion.disability", SystemAESerious, "SeriousResultsInDisability", "Results in persistent or significant disability/incapacity", false},
		{"ae.criterion.congenital-anomaly", SystemAESerious, "SeriousIsBirthDefect", "Is a congenital anomaly/birth defect", false},
		// R4 has no "medically important" code: its definition of
		// SeriousRequiresPreventImpairment is "requires intervention to
		// prevent permanent impairment or damage (i.e., an important medical
		// event that requires medical judgement)", ICH E2A's sixth criterion.
		{"ae.criterion.medically-important", SystemAESerious, "SeriousRequiresPreventImpairment", "Requires intervention to prevent permanent impairment", false},
		{"ae.outcome.resolved", SystemAEOutcome, "resolved", "Resolved", false},
		{"ae.outcome.recovering", SystemAEOutcome, "recovering", "Recovering", false},
		{"ae.outcome.ongoing", SystemAEOutcome, "ongoing", "Ongoing", false},
		{"ae.outcome.resolved-with-sequelae", SystemAEOutcome, "resolvedWithSequelae", "Resolved with Sequelae", false},
		{"ae.outcome.fatal", SystemAEOutcome, "fatal", "Fatal", false},
		{"ae.outcome.unknown", SystemAEOutcome, "unknown", "Unknown", false},
		{"ae.causality.certain", SystemAECausality, "Certain", "Certain", false},
		{"ae.causality.probably-likely", SystemAECausality, "Probably-Likely", "Probably/Likely", false},
		{"ae.causality.possible", SystemAECausality, "Possible", "Possible", false},
		{"ae.causality.unlikely", SystemAECausality, "Unlikely", "Unlikely", false},
		{"ae.causality.conditional", SystemAECausality, "Conditional-Classified", "Conditional/Classified", false},
		{"ae.causality.unassessable", SystemAECausality, "Unassessable-Unclassifiable", "Unassessable/Unclassifiable", false},
		{"ae.action.none", SystemLocal, "action-none", "No action taken", false},
		{"ae.action.infusion-paused", SystemLocal, "action-infusion-paused", "Infusion paused", false},
		{"ae.action.infusion-slowed", SystemLocal, "action-infusion-slowed", "Infusion rate reduced", false},
		{"ae.action.infusion-stopped", SystemLocal, "action-infusion-stopped", "Infusion stopped", false},
		{"ae.action.medication-given", SystemLocal, "action-medication-given", "Medication given", false},
		{"ae.action.observation-extended", SystemLocal, "action-observation-extended", "Observation extended", false},
		{"ae.action.hospital-transfer", SystemLocal, "action-hospital-transfer", "Transferred to hospital", false},
		{"ae.action.other", SystemLocal, "action-other", "Other action", false},

		// Identifier types and security labels.
		{"idtype.PI", SystemV2IDType, "PI", "Patient internal identifier", false},
		{"idtype.MR", SystemV2IDType, "MR", "Medical record number", false},
		{"security.PSY", SystemActCode, "PSY", "psychiatry disorder information sensitivity", false},
		{"security.R", SystemConfid, "R", "restricted", false},
	}
	// The local scales' items, numbered from 1.
	for _, s := range []struct {
		key, code, name string
		items           int
	}{{"madrs", "madrs", "MADRS", 10}, {"qids", "qids-sr16", "QIDS-SR16", 16}, {"cadss", "cadss", "CADSS", 23}} {
		for i := 1; i <= s.items; i++ {
			n := strconv.Itoa(i)
			rows = append(rows, Concept{s.key + "." + n, SystemLocal, s.code + "-" + n, s.name + " item " + n, false})
		}
	}
	// Answer scores of the local scales (0..6).
	for i := 0; i <= 6; i++ {
		n := strconv.Itoa(i)
		rows = append(rows, Concept{"answer.score." + n, SystemLocal, "score-" + n, "Score " + n, false})
	}
	// A code two rows share (the same LOINC item in two instruments, a
	// finding that is an indication and an adverse event) has its display
	// written once, in its first row: the later rows leave Display "".
	displays := map[string]string{}
	for i, c := range rows {
		sc := c.System + "|" + c.Code
		if c.Display == "" {
			rows[i].Display = displays[sc]
		} else if _, ok := displays[sc]; !ok {
			displays[sc] = c.Display
		}
		if rows[i].Display == "" {
			panic("mapping: concept " + c.Key + " has no display and no earlier row of its code")
		}
	}
	t := conceptTable{rows: rows, byKey: make(map[string]Concept, len(rows))}
	for _, c := range rows {
		if _, dup := t.byKey[c.Key]; dup {
			panic("mapping: duplicate concept key " + c.Key)
		}
		t.byKey[c.Key] = c
	}
	return t
}
