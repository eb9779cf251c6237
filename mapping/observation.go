package mapping

import (
	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// obsStatus is the status every Observation of the record gets: final for
// a first version, amended for a later one, entered-in-error when withdrawn.
func (m *mapper) obsStatus() fhir.ObservationStatus {
	switch {
	case m.withdrawn:
		return fhir.ObservationStatusEnteredInError
	case m.opts.Update:
		return fhir.ObservationStatusAmended
	default:
		return fhir.ObservationStatusFinal
	}
}

// observation builds the parts every Observation shares.
func (m *mapper) observation(id ident, category string, code fhir.CodeableConcept, effective string,
	performer *fhir.Reference, partOf *fhir.Reference, profiles ...string) fhir.Observation {
	o := fhir.Observation{
		Meta:              meta(profiles...),
		Identifier:        []fhir.Identifier{identifier(id)},
		Status:            m.obsStatus(),
		Category:          []fhir.CodeableConcept{cc("", category)},
		Code:              code,
		Subject:           ptr(m.patient),
		EffectiveDateTime: ptr(effective),
	}
	if performer != nil {
		o.Performer = []fhir.Reference{*performer}
	}
	if partOf != nil {
		o.PartOf = []fhir.Reference{*partOf}
	}
	return o
}
