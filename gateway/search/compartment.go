package search

import "slices"

// patientCompartment are the resource types of R4's patient compartment
// (compartmentdefinition-patient.html): the types with a parameter that
// names the patient. Patient itself is in its own compartment.
var patientCompartment = []string{"Account", "AdverseEvent", "AllergyIntolerance", "Appointment",
	"AppointmentResponse", "AuditEvent", "Basic", "BodyStructure", "CarePlan", "CareTeam", "ChargeItem", "Claim",
	"ClaimResponse", "ClinicalImpression", "Communication", "CommunicationRequest", "Composition", "Condition",
	"Consent", "Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "DetectedIssue",
	"DeviceRequest", "DeviceUseStatement", "DiagnosticReport", "DocumentManifest", "DocumentReference", "Encounter",
	"EnrollmentRequest", "EpisodeOfCare", "ExplanationOfBenefit", "FamilyMemberHistory", "Flag", "Goal", "Group",
	"ImagingStudy", "Immunization", "ImmunizationEvaluation", "ImmunizationRecommendation", "Invoice", "List",
	"MeasureReport", "Media", "MedicationAdministration", "MedicationDispense", "MedicationRequest",
	"MedicationStatement", "MolecularSequence", "NutritionOrder", "Observation", "Patient", "Person", "Procedure",
	"Provenance", "QuestionnaireResponse", "RelatedPerson", "RequestGroup", "ResearchSubject", "RiskAssessment",
	"Schedule", "ServiceRequest", "Specimen", "SupplyDelivery", "SupplyRequest", "Task", "VisionPrescription"}

// PatientCompartment returns the reference parameter of resource type rt
// through which a resource is in a patient's compartment, and whether rt
// is in the patient compartment at all. The gateway indexes one parameter
// per type for it: "patient" (for most types the R4 parameter of that name;
// for the others its simplification, any reference to a Patient),
// AdverseEvent's "subject", and for Patient itself "_id" (a Patient is in
// its own compartment; the R4 definition's Patient.link is not followed).
// The R4 definition lists more parameters for some types (an Observation's
// performer, say): the gateway does not index those.
func PatientCompartment(rt string) (string, bool) {
	switch {
	case rt == "Patient":
		return "_id", true
	case !slices.Contains(patientCompartment, rt):
		return "", false
	case rt == "AdverseEvent":
		return "subject", true
	}
	if _, ok := Lookup(rt, "patient"); ok {
		return "patient", true
	}
	return "", false
}

// PatientCompartmentTypes returns the types of the patient compartment the
// gateway searches (see PatientCompartment), sorted.
func PatientCompartmentTypes() []string {
	var out []string
	for _, t := range patientCompartment {
		if _, ok := PatientCompartment(t); ok {
			out = append(out, t)
		}
	}
	return out
}

// Compartment restricts a search to one patient's compartment: a query
// over several types (Query.Type "", Query.Types) keeps the Patient itself
// and the resources that reference it through their PatientCompartment
// parameter.
type Compartment struct {
	PatientID string
}
