package search

import (
	"slices"
	"time"
)

// PatientCompartment returns the reference parameter of resource type rt
// through which a resource is in a patient's compartment, and whether rt
// is in R4's patient compartment (CompartmentDefinition/patient, 67 types)
// at all. The gateway searches one parameter per type:
//   - R4's patient parameter, where R4 defines one for the type (61 of
//     them): for each it is the reference R4's compartment lists that
//     says whose record the resource is (MedicationStatement's subject,
//     Goal's and Immunization's patient, Coverage's beneficiary, Task's
//     for);
//   - for the other four the one parameter R4's compartment lists:
//     AdverseEvent's subject, Group's member, Schedule's actor,
//     SupplyRequest's subject (deliverTo);
//   - for Patient itself "_id" (a Patient is in its own compartment; R4's
//     Patient.link is not followed).
//
// R4's definition lists more parameters for some types, those naming the
// patient as a participant rather than as whose record it is: an
// AllergyIntolerance's or Condition's asserter and recorder, an
// Observation's performer, a Composition's author, a Communication's
// sender. The gateway deliberately leaves them out: its compartment is what
// Patient/{id}/{type}, $everything and bulk export hand out as the
// patient's chart, and a mother who reported her child's allergy would
// otherwise get the child's allergy in her chart.
func PatientCompartment(rt string) (string, bool) {
	if rt == "Patient" {
		return "_id", true
	}
	params, ok := r4Patient().compartment[rt]
	if !ok {
		return "", false
	}
	if _, ok := r4Patient().params[rt]; ok {
		return "patient", true
	}
	if len(params) == 1 {
		if _, ok := Lookup(rt, params[0]); ok {
			return params[0], true
		}
	}
	return "", false
}

// PatientCompartmentTypes returns the types of the patient compartment the
// gateway searches (see PatientCompartment), sorted.
func PatientCompartmentTypes() []string {
	var out []string
	for t := range r4Patient().compartment {
		if _, ok := PatientCompartment(t); ok {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// Compartment restricts a search to one patient's compartment: a query
// over several types (Query.Type "", Query.Types) keeps the Patient itself
// and the resources that reference it through their PatientCompartment
// parameter.
type Compartment struct {
	PatientID string
	// Start and End, when not zero, narrow it to a period of care
	// ($everything's start and end): a resource of a type with a
	// CareDate parameter is kept when a value of that parameter overlaps
	// [Start, End], or when it has none (nothing says it lies outside);
	// the resources of other types are kept whatever their dates.
	Start, End time.Time
}

// CareDate returns the date parameter that holds when the care a resource
// of type rt records took place (R4's clinical-date where the gateway
// indexes it, the period of an administration, when an issue was
// identified or a Provenance recorded), or "" for the types of the patient
// compartment the gateway indexes no such date of. $everything's start
// and end compare it.
func CareDate(rt string) string {
	return careDates[rt]
}

// careDates are the CareDate parameters, by type. Every date parameter the
// gateway indexes on a type of the patient compartment is here, or among
// those that do not date care (Patient's birthdate, a Condition's
// onset-date: TestCareDates lists them and checks it).
var careDates = map[string]string{
	"AdverseEvent":             "date",
	"AuditEvent":               "date",
	"DetectedIssue":            "identified",
	"DiagnosticReport":         "date",
	"Encounter":                "date",
	"Flag":                     "date",
	"Immunization":             "date",
	"MedicationAdministration": "effective-time",
	"Observation":              "date",
	"Procedure":                "date",
	"Provenance":               "recorded",
}

// PatientsParam returns the reference parameter of resource type rt that
// says which patients a resource of it is about: its PatientCompartment
// parameter, else R4's patient parameter (Device, Contract,
// GuidanceResponse), else "" (Patient itself, and the types R4 gives no
// patient parameter outside the compartment).
func PatientsParam(rt string) string {
	if p, ok := PatientCompartment(rt); ok {
		if p == "_id" {
			return ""
		}
		return p
	}
	if _, ok := r4Patient().params[rt]; ok {
		return "patient"
	}
	return ""
}

// PatientReferences returns, sorted and without repeats, the Patients
// ("Patient/<id>") the PatientsParam parameter of a resource of type rt
// references by a relative literal reference, as Extract indexes them.
func PatientReferences(rt string, resource map[string]any) []string {
	name := PatientsParam(rt)
	if name == "" {
		return nil
	}
	param, _ := ReferenceRows(rt, name)
	var out []string
	for _, e := range extractParam(rt, param, resource) { // this runs for every search match: one parameter only
		if e.Param == param && e.Type == TypeReference && e.RefType == "Patient" && e.RefID != "" {
			out = append(out, "Patient/"+e.RefID)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// PatientPaths returns the element paths of the PatientsParam parameter
// of rt (nil when it has none).
func PatientPaths(rt string) []string {
	if name := PatientsParam(rt); name != "" {
		if p, ok := Lookup(rt, name); ok {
			return p.Paths
		}
	}
	return nil
}
