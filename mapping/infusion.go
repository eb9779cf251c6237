package mapping

import (
	"fmt"
	"math"
	"time"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// DoseTolerance is how far a recorded total dose may differ from
// mg/kg x body weight: 2% of the product, but at least DoseToleranceMg.
const (
	DoseTolerance   = 0.02
	DoseToleranceMg = 0.5
)

// esketamineDoses are the doses one to three 28 mg nasal devices deliver.
var esketamineDoses = map[float64]bool{28: true, 56: true, 84: true}

// parseTime parses an RFC 3339 time the schema has already checked.
func parseTime(s string) (time.Time, bool) {
	if s == "" {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, s)
	return t, err == nil
}

// checkInfusion enforces the dosing and timing rules at pointer p.
func checkInfusion(in *InfusionBody, p string, v *violations) {
	given := in.Status != "not-done"
	if given {
		need := map[string]bool{"totalDoseMg": in.TotalDoseMg != nil}
		if in.Drug == "ketamine-iv" {
			need["doseMgPerKg"], need["bodyWeightKg"] = in.DoseMgPerKg != nil, in.BodyWeightKg != nil
		}
		for _, name := range []string{"doseMgPerKg", "bodyWeightKg", "totalDoseMg"} {
			if ok, asked := need[name]; asked && !ok {
				v.add("infusion.dose-missing", p+"/"+name, "a given %s session needs %s", in.Drug, name)
			}
		}
	} else if in.ScheduledAt == "" && in.InfusionStart == "" {
		v.add("infusion.time-missing", p+"/scheduledAt", "a session that was not done needs scheduledAt")
	}
	switch in.Drug {
	case "ketamine-iv":
		if k := in.DoseMgPerKg; k != nil && (*k < 0.1 || *k > 2.0) {
			v.add("infusion.dose-plausible", p+"/doseMgPerKg", "an IV ketamine dose must lie between 0.1 and 2.0 mg/kg")
		}
	case "esketamine-nasal":
		if t := in.TotalDoseMg; t != nil && !esketamineDoses[*t] {
			v.add("infusion.dose-plausible", p+"/totalDoseMg", "an esketamine nasal dose is 28, 56 or 84 mg")
		}
	}
	if in.DoseMgPerKg != nil && in.BodyWeightKg != nil && in.TotalDoseMg != nil {
		want := *in.DoseMgPerKg * *in.BodyWeightKg
		if math.Abs(*in.TotalDoseMg-want) > math.Max(DoseTolerance*want, DoseToleranceMg) {
			v.add("infusion.dose-weight-mismatch", p+"/totalDoseMg",
				"totalDoseMg must equal doseMgPerKg x bodyWeightKg within %g%% (at least %g mg)", DoseTolerance*100, DoseToleranceMg)
		}
	}
	start, hasStart := parseTime(in.InfusionStart)
	end, hasEnd := parseTime(in.InfusionEnd)
	mon, hasMon := parseTime(in.MonitoringEnd)
	if hasStart && hasEnd && !end.After(start) {
		v.add("time.order", p+"/infusionEnd", "infusionEnd must be after infusionStart")
	}
	if hasMon {
		switch {
		case hasEnd && mon.Before(end):
			v.add("time.order", p+"/monitoringEnd", "monitoringEnd must not be before infusionEnd")
		case !hasEnd && hasStart && !mon.After(start):
			v.add("time.order", p+"/monitoringEnd", "monitoringEnd must be after infusionStart")
		}
	}
}

// medAdmin is a MedicationAdministration. samply's type marks both
// alternatives of the required choices medication[x] and effective[x] as
// required fields, so it always emits an empty medicationReference and
// effectivePeriod; this local type marshals only the alternative used.
type medAdmin struct {
	ResourceType              string                                   `json:"resourceType"`
	ID                        *string                                  `json:"id,omitempty"`
	Meta                      *fhir.Meta                               `json:"meta,omitempty"`
	Extension                 []fhir.Extension                         `json:"extension,omitempty"`
	Identifier                []fhir.Identifier                        `json:"identifier,omitempty"`
	PartOf                    []fhir.Reference                         `json:"partOf,omitempty"`
	Status                    string                                   `json:"status"`
	StatusReason              []fhir.CodeableConcept                   `json:"statusReason,omitempty"`
	MedicationCodeableConcept *fhir.CodeableConcept                    `json:"medicationCodeableConcept,omitempty"`
	Subject                   fhir.Reference                           `json:"subject"`
	SupportingInformation     []fhir.Reference                         `json:"supportingInformation,omitempty"`
	EffectiveDateTime         *string                                  `json:"effectiveDateTime,omitempty"`
	EffectivePeriod           *fhir.Period                             `json:"effectivePeriod,omitempty"`
	Performer                 []fhir.MedicationAdministrationPerformer `json:"performer,omitempty"`
	ReasonCode                []fhir.CodeableConcept                   `json:"reasonCode,omitempty"`
	Dosage                    *fhir.MedicationAdministrationDosage     `json:"dosage,omitempty"`
}

// sessionStatus maps the native session status to the FHIR event status of
// the Procedure and the MedicationAdministration.
var sessionStatus = map[string]fhir.EventStatus{
	"completed":     fhir.EventStatusCompleted,
	"stopped-early": fhir.EventStatusStopped,
	"not-done":      fhir.EventStatusNotDone,
}

// drugs describes how each native drug is coded and given.
var drugs = map[string]struct {
	procedure, route, procText, medText, routeText string
	medication                                     []string
}{
	"ketamine-iv": {"procedure.iv-infusion", "route.iv", "Ketamine intravenous infusion", "Ketamine", "IV",
		[]string{"drug.ketamine", "drug.ketamine.substance"}},
	"esketamine-nasal": {"procedure.nasal", "route.nasal", "Esketamine intranasal administration", "Esketamine nasal spray", "intranasal",
		[]string{"drug.esketamine-nasal"}},
}

// sessionIDs returns the identifiers of a session's Procedure,
// MedicationAdministration and body-weight Observation.
func (m *mapper) sessionIDs(recordID string) (proc, med, weight ident) {
	proc = m.ident(nsSession, recordID)
	return proc, proc.child("medication"), proc.child(concept("vitals.body-weight").Code)
}

// infusion maps a session to a Procedure (the whole session including
// monitoring), a MedicationAdministration partOf it (the drug given) and,
// when a body weight is recorded, the weight Observation the dose is based on.
func (m *mapper) infusion(in *InfusionBody, recordID string) {
	procID, medID, weightID := m.sessionIDs(recordID)
	drug := drugs[in.Drug]
	status := sessionStatus[in.Status]
	if m.withdrawn {
		status = fhir.EventStatusEnteredInError
	}
	performer := m.practitioner(in.Clinician)
	reasons := indication(in.Indication)
	var statusReason *fhir.CodeableConcept
	if in.StatusReason != nil {
		statusReason = ptr(cc(in.StatusReason.Text, "stop."+in.StatusReason.Code))
	}

	proc := fhir.Procedure{
		Meta:         meta(profile("kg-infusion-session")),
		Identifier:   []fhir.Identifier{identifier(procID)},
		Status:       status,
		StatusReason: statusReason,
		Category:     ptr(cc("", "procedure.category")),
		Code:         ptr(cc(drug.procText, drug.procedure)),
		Subject:      m.patient,
		ReasonCode:   reasons,
		Note:         annotation(in.Notes),
	}
	if in.Status != "not-done" {
		end := in.MonitoringEnd
		if end == "" {
			end = in.InfusionEnd
		}
		proc.PerformedPeriod = &fhir.Period{Start: strp(in.InfusionStart), End: strp(end)}
	}
	if performer != nil {
		proc.Performer = []fhir.ProcedurePerformer{{Actor: *performer}}
	}
	if in.Outcome != "" {
		proc.Outcome = ptr(cc("", "outcome."+in.Outcome))
	}
	m.add("Procedure", procID, proc)

	when := in.InfusionStart
	if when == "" {
		when = in.ScheduledAt
	}
	med := medAdmin{
		ResourceType:              "MedicationAdministration",
		Meta:                      meta(profile("kg-medication-administration")),
		Identifier:                []fhir.Identifier{identifier(medID)},
		PartOf:                    []fhir.Reference{literal(procID.fullURL())},
		Status:                    status.Code(),
		MedicationCodeableConcept: ptr(cc(drug.medText, drug.medication...)),
		Subject:                   m.patient,
		ReasonCode:                reasons,
	}
	if in.Status == "not-done" && statusReason != nil {
		med.StatusReason = []fhir.CodeableConcept{*statusReason}
	}
	if in.InfusionStart != "" {
		med.EffectivePeriod = &fhir.Period{Start: strp(in.InfusionStart), End: strp(in.InfusionEnd)}
	} else {
		med.EffectiveDateTime = strp(when)
	}
	if performer != nil {
		med.Performer = []fhir.MedicationAdministrationPerformer{{Actor: *performer}}
	}
	if in.LotNumber != "" && in.Status != "not-done" {
		med.Extension = []fhir.Extension{{Url: extensionURL("medication-lot-number"), ValueString: ptr(in.LotNumber)}}
	}
	if in.Status != "not-done" {
		med.Dosage = m.dosage(in, drug.route, drug.routeText, drug.medText)
	}
	weighed := in.BodyWeightKg != nil && in.Status != "not-done"
	if weighed {
		med.SupportingInformation = []fhir.Reference{literal(weightID.fullURL())}
	}
	m.add("MedicationAdministration", medID, med)

	if w := in.BodyWeightKg; weighed {
		partOf := literal(procID.fullURL())
		o := m.observation(weightID, "category.vital-signs", cc("", "vitals.body-weight"), when, performer, &partOf,
			profile("kg-vital-signs"), profileVitalSigns, profileBodyWeight)
		o.ValueQuantity = quantity(*w, "kg", "kg")
		m.add("Observation", weightID, o)
	}
}

// dosage states the dose given: the total in mg, the rate, the route and, for
// weight-based dosing, the mg/kg dose in text and in an extension.
func (m *mapper) dosage(in *InfusionBody, route, routeText, medText string) *fhir.MedicationAdministrationDosage {
	d := &fhir.MedicationAdministrationDosage{Route: ptr(cc("", route))}
	if in.TotalDoseMg != nil {
		d.Dose = quantity(*in.TotalDoseMg, "mg", "mg")
	}
	if r := in.Rate; r != nil {
		d.RateRatio = &fhir.Ratio{
			Numerator:   quantity(r.Amount, r.AmountUnit, r.AmountUnit),
			Denominator: quantity(r.Duration, r.DurationUnit, r.DurationUnit),
		}
	}
	text := medText + " " + routeText
	if in.DoseMgPerKg != nil && in.BodyWeightKg != nil && in.TotalDoseMg != nil {
		text = fmt.Sprintf("%s %g mg/kg x %g kg = %g mg", text, *in.DoseMgPerKg, *in.BodyWeightKg, *in.TotalDoseMg)
		d.Extension = []fhir.Extension{{Url: extensionURL("weight-based-dose"), ValueQuantity: quantity(*in.DoseMgPerKg, "mg/kg", "mg/kg")}}
	} else if in.TotalDoseMg != nil {
		text = fmt.Sprintf("%s %g mg", text, *in.TotalDoseMg)
	}
	start, ok1 := parseTime(in.InfusionStart)
	end, ok2 := parseTime(in.InfusionEnd)
	if ok1 && ok2 && end.After(start) {
		text = fmt.Sprintf("%s over %g min", text, end.Sub(start).Minutes())
	}
	d.Text = ptr(text)
	return d
}

// indication maps the native indication to Procedure/MedicationAdministration
// reasonCode. There is no code for treatment-resistant depression, so it is
// stated in text.
func indication(ind *Indication) []fhir.CodeableConcept {
	if ind == nil {
		return nil
	}
	var out []fhir.CodeableConcept
	for _, c := range ind.Codes {
		out = append(out, cc("", "indication."+c))
	}
	if ind.TreatmentResistant {
		out = append(out, fhir.CodeableConcept{Text: ptr("Treatment-resistant depression")})
	}
	if ind.Text != "" {
		out = append(out, fhir.CodeableConcept{Text: ptr(ind.Text)})
	}
	return out
}
