package profile

// extensionDef is one of the gateway's extensions, as its authors state
// it; its StructureDefinition is derived from R4's Extension.
type extensionDef struct {
	name, title, description string
	// context lists the elements it may extend.
	context []string
	// valueType is its value[x]'s one type; vs binds a coded value.
	valueType, vs string
	repeats       bool
}

// extensionDefs are the extensions the mappings and the audit trail write.
func extensionDefs() []extensionDef {
	return []extensionDef{
		{name: "monitoring-timepoint", title: "Monitoring time point", context: []string{"Observation"}, valueType: "CodeableConcept",
			vs: vsURL("kg-monitoring-timepoints"), description: "When, relative to dosing, a vital sign was measured: before dosing, about 40 minutes after, before discharge or another time (with text)."},
		{name: "ctcae-grade", title: "CTCAE grade", context: []string{"AdverseEvent"}, valueType: "integer",
			description: "The adverse event's CTCAE grade (1-5) as the clinic recorded it; severity is derived from it (1 mild, 2 moderate, 3-5 severe)."},
		{name: "seriousness-criterion", title: "Seriousness criterion", context: []string{"AdverseEvent"}, valueType: "CodeableConcept", repeats: true,
			vs: vsURL("kg-seriousness-criteria"), description: "Why a serious adverse event is serious (results in death, is life-threatening, requires hospitalization, ...); R4 AdverseEvent has one seriousness only."},
		{name: "adverse-event-action-taken", title: "Action taken", context: []string{"AdverseEvent"}, valueType: "CodeableConcept", repeats: true,
			vs: vsURL("kg-adverse-event-actions"), description: "What was done about the adverse event during the session (infusion paused, slowed or stopped, medication given, ...)."},
		{name: "related-session", title: "Related session", context: []string{"AdverseEvent"}, valueType: "Reference",
			description: "The session (its Procedure) an adverse event was recorded in when the session's drug cannot have caused it (the session was not done, or the event began before the infusion), so the event names no suspect entity."},
		{name: "medication-lot-number", title: "Lot number", context: []string{"MedicationAdministration"}, valueType: "string",
			description: "The lot number of the drug given (R4 MedicationAdministration has no element for it without a Medication resource)."},
		{name: "weight-based-dose", title: "Weight-based dose", context: []string{"Dosage", "MedicationAdministration.dosage"}, valueType: "Quantity",
			description: "The prescribed dose per kilogram of body weight (UCUM mg/kg) the total dose was calculated from."},
		{name: "trace-id", title: "Trace id", context: []string{"AuditEvent", "Provenance"}, valueType: "string",
			description: "The OpenTelemetry trace id (32 hex digits) of the request that recorded the AuditEvent or Provenance."},
		{name: "receipt-patient", title: "Receipt's patient", context: []string{"Provenance"}, valueType: "Reference",
			description: "On the gateway's receipt of a native record: the Patient the record is about, also when the receipt targets no version of it (a later version of the record, a record of a patient stored before)."},
		{name: "content-hash", title: "Content hash", context: []string{"Provenance.entity"}, valueType: "string",
			description: "sha256:<hex> of the source content a Provenance entity stands for."},
		{name: "record-kind", title: "Native record kind", context: []string{"Provenance.entity"}, valueType: "string",
			description: "The kind of native clinic record a Provenance entity stands for (assessment, vitals, infusion, adverse-event, session)."},
		{name: "record-version", title: "Native record version", context: []string{"Provenance.entity"}, valueType: "string",
			description: "The version of the native clinic record a Provenance entity stands for."},
		{name: "validation-rule", title: "Validation rule", context: []string{"ElementDefinition"}, valueType: "Coding",
			description: "On an element of a gateway profile: the rule (a code of the CodeSystem validation-rule, with its text as display) its failures report, in OperationOutcome.issue.details; elements below it report the same rule unless they name their own."},
	}
}

// differential is the extension's differential.
func (x extensionDef) differential() []*ElementDefinition {
	max := "1"
	if x.repeats {
		max = "*"
	}
	value := el("Extension.value[x]", "", atLeast(1), types(x.valueType))
	if x.vs != "" {
		value.Binding = &Binding{Strength: "extensible", ValueSet: x.vs}
	}
	return []*ElementDefinition{
		{ID: "Extension", Short: x.title, Definition: x.description, Max: max},
		el("Extension.extension", "", atMost("0")),
		el("Extension.url", "", fixed("Uri", extURL(x.name))),
		value,
	}
}

// contexts are the extension's contexts.
func (x extensionDef) contexts() []Context {
	out := make([]Context, 0, len(x.context))
	for _, c := range x.context {
		out = append(out, Context{Type: "element", Expression: c})
	}
	return out
}
