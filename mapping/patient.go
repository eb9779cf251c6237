package mapping

import (
	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// patientEntry adds the Patient. It is always a conditional create, never
// an update: a hospital that already holds the patient keeps its
// demographics and gets no duplicate (DECISIONS.md 7). The gateway's own
// store matches the clinic's patient identifier (IfNoneExist); the Bundle
// the EHRs receive matches that or the hospital's MRN when the record
// carries one with a system (DeliverCriteria), since a hospital knows
// its patients by MRN and never by the identifier the gateway mints. Two
// Patients matching there (one by each) is the EHR's 412, a dead letter.
func (m *mapper) patientEntry(p *Patient) {
	id := m.ident(nsPatient, p.ID)
	pi := identifier(id)
	pi.Type = ptr(cc("", "idtype.PI"))
	res := fhir.Patient{
		Meta:       meta(profile("kg-patient")),
		Identifier: []fhir.Identifier{pi},
		BirthDate:  strp(p.BirthDate),
	}
	if p.MRN != nil {
		mrn := fhir.Identifier{
			Use:      ptr(fhir.IdentifierUseUsual),
			Type:     ptr(cc("", "idtype.MR")),
			System:   strp(p.MRN.System),
			Value:    ptr(p.MRN.Value),
			Assigner: &fhir.Reference{Display: ptr(p.MRN.Assigner)},
		}
		res.Identifier = append(res.Identifier, mrn)
	}
	if p.Name != nil {
		res.Name = []fhir.HumanName{{Use: ptr(fhir.NameUseOfficial), Family: strp(p.Name.Family), Given: p.Name.Given}}
	}
	if g, ok := genders[p.Gender]; ok {
		res.Gender = &g
	}
	m.patient = literal(id.fullURL())
	e := Entry{
		FullURL: id.fullURL(), ResourceType: "Patient", Resource: res,
		IdentifierSystem: id.System, IdentifierValue: id.Value,
		Method: fhir.HTTPVerbPOST, URL: "Patient", IfNoneExist: id.search(),
	}
	if p.MRN != nil {
		e.DeliverMatching([]MRN{*p.MRN})
	}
	m.entries = append(m.entries, e)
}

// DeliverMatching sets the MRNs e, a Patient entry, is matched by at the
// EHRs besides the clinic identifier (DeliverMRNs): those of mrns that
// have a system (DeliverCriteria). The mapping gives it the record's MRN;
// the ingest gives it the MRNs the gateway holds for the patient, so that
// a record without an MRN is charted on the hospital's Patient too.
func (e *Entry) DeliverMatching(mrns []MRN) {
	e.DeliverMRNs = nil
	for _, mrn := range mrns {
		if mrn.System != "" {
			e.DeliverMRNs = append(e.DeliverMRNs, mrn)
		}
	}
}

// DeliverCriteria is the entry request's ifNoneExist in the transaction
// Bundle (what the EHRs receive): IfNoneExist, or for a Patient with
// DeliverMRNs, the clinic identifier or any of those MRNs (a token OR,
// each MRN escaped: token), since a hospital knows its patients by MRN
// (DECISIONS.md 7), while the gateway's own store keeps matching the
// clinic identifier alone.
func (e *Entry) DeliverCriteria() string {
	criteria := e.IfNoneExist
	for _, mrn := range e.DeliverMRNs {
		criteria += "," + token(mrn.System, mrn.Value)
	}
	return criteria
}

// genders maps the native gender to FHIR. Samply enums marshal their zero
// value as the first code, so absence must stay a nil pointer.
var genders = map[string]fhir.AdministrativeGender{
	"male":    fhir.AdministrativeGenderMale,
	"female":  fhir.AdministrativeGenderFemale,
	"other":   fhir.AdministrativeGenderOther,
	"unknown": fhir.AdministrativeGenderUnknown,
}

// IsMRN reports whether a decoded Identifier is typed as a medical record
// number (v2-0203 MR), as the mapping types a record's patient.mrn.
func IsMRN(ident map[string]any) bool {
	typ, _ := ident["type"].(map[string]any)
	codings, _ := typ["coding"].([]any)
	for _, c := range codings {
		cm, _ := c.(map[string]any)
		if s, _ := cm["system"].(string); s == SystemV2IDType {
			if code, _ := cm["code"].(string); code == "MR" {
				return true
			}
		}
	}
	return false
}
