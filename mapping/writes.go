package mapping

// Write is a resource type the mapping's transaction Bundles write, the
// FHIR interactions (restful-interaction codes) their entries use on it
// (create: a conditional create, POST with ifNoneExist; update: a
// conditional update, PUT Type?identifier=..., or a PUT of a
// deterministic id; delete) and the kinds of record whose Bundles may
// carry it.
type Write struct {
	Type         string
	Interactions []string
	// Flags are the CapabilityStatement flags (rest.resource) those
	// entries rely on, sorted: conditionalCreate (a POST with
	// ifNoneExist), conditionalUpdate (a PUT Type?identifier=...),
	// updateCreate (a PUT of a deterministic id the receiver may not hold
	// yet, which creates it).
	Flags []string
	Kinds []Kind
}

// The CapabilityStatement flags of Write.Flags.
const (
	FlagConditionalCreate = "conditionalCreate"
	FlagConditionalUpdate = "conditionalUpdate"
	FlagUpdateCreate      = "updateCreate"
)

// Writes returns what the mapping's Bundles write, first versions and
// updates alike, by resource type (sorted): what a receiver's FHIR server
// must support to take them. TestWrites keeps it equal to the entries the
// mapping makes from every golden input.
func Writes() []Write {
	both := []string{"create", "update"}
	conditional := []string{FlagConditionalCreate, FlagConditionalUpdate}
	all := []Kind{KindAdverseEvent, KindAssessment, KindInfusion, KindSession, KindVitals}
	infusion := []Kind{KindInfusion, KindSession}
	return []Write{
		// PUT AdverseEvent/<id>: R4 cannot search it by identifier; a
		// withdrawn event is deleted (it has no status).
		{Type: "AdverseEvent", Interactions: []string{"delete", "update"}, Flags: []string{FlagUpdateCreate}, Kinds: []Kind{KindAdverseEvent, KindSession}},
		// A vitals record corrected on its own retires its session's
		// (retireSessionIssue).
		{Type: "DetectedIssue", Interactions: both, Flags: conditional, Kinds: []Kind{KindSession, KindVitals}},
		{Type: "Flag", Interactions: both, Flags: conditional, Kinds: []Kind{KindAdverseEvent, KindAssessment, KindSession}},
		{Type: "MedicationAdministration", Interactions: both, Flags: conditional, Kinds: infusion},
		{Type: "MedicationRequest", Interactions: both, Flags: conditional, Kinds: infusion},
		{Type: "Observation", Interactions: both, Flags: conditional, Kinds: []Kind{KindAssessment, KindInfusion, KindSession, KindVitals}},
		// One Patient per clinic patient id, never updated by a record.
		{Type: "Patient", Interactions: []string{"create"}, Flags: []string{FlagConditionalCreate}, Kinds: all},
		{Type: "Procedure", Interactions: both, Flags: conditional, Kinds: infusion},
	}
}
