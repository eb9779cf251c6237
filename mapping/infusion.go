package mapping

import (
	"fmt"
	"math"
	"time"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// DoseTolerance is how far a planned total dose may differ from mg/kg x
// body weight: 2% of the product, but at least DoseRoundingMg, because
// clinics round the dose to a volume they can draw up, to the nearest 5 mg
// (0.5 mg/kg x 67 kg = 33.5 mg is drawn up as 35 mg), an error of up to
// 2.5 mg. DoseToleranceMg is the least tolerance of a dose computed from a
// rate (infusion.rate-mismatch).
const (
	DoseTolerance   = 0.02
	DoseRoundingMg  = 2.5
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

// Infusion time limits (infusion.duration-plausible): an IV ketamine
// infusion or an intranasal esketamine administration runs at least
// MinRunMinutes (shorter is a bolus push or a mistyped time) and at most
// MaxRunMinutes, and the monitoring ends at most MaxMonitoringMinutes after
// the infusion. Protocols run about 40 minutes IV and 5-15 minutes
// intranasal, with at least 2 hours of monitoring; a day is far beyond any.
const (
	MinRunMinutes        = 1
	MaxRunMinutes        = 24 * 60
	MaxMonitoringMinutes = 24 * 60
)

// RateTolerance is how far the dose a planned mg rate gives over the time
// the infusion ran may differ from the dose given, for a session given as
// planned (whose MedicationAdministration charts the planned rate): 10% of
// the dose, but at least DoseToleranceMg. Wider than DoseTolerance because
// infusion times are recorded to the minute and pumps are stopped by hand.
const RateTolerance = 0.10

// EsketamineDeviceMg is what one esketamine nasal spray device delivers,
// in two sprays of EsketamineSprayMg (one per nostril).
const (
	EsketamineDeviceMg = 28
	EsketamineSprayMg  = 14
)

// The plausible ceilings of a dose, planned or given: IV ketamine
// 2.0 mg/kg (the plan's range is 0.1-2.0 mg/kg; anaesthetic induction
// doses start about there), esketamine three devices, 84 mg (the label's
// highest dose). A dose given above the plan is charted up to them.
const (
	IVMaxMgPerKg    = 2.0
	EsketamineMaxMg = 3 * EsketamineDeviceMg
)

// minutesBetween is the time from start to end in minutes, computed from
// seconds so that spans beyond time.Duration's 292 years stay exact.
func minutesBetween(start, end time.Time) float64 {
	return float64(end.Unix()-start.Unix())/60 + float64(end.Nanosecond()-start.Nanosecond())/6e10
}

// ratePerMinute is a rate in amount units per minute.
func ratePerMinute(r *Rate) float64 {
	d := r.Duration
	if r.DurationUnit == "h" {
		d *= 60
	}
	return r.Amount / d
}

// checkInfusion enforces the dosing and timing rules at pointer p.
func checkInfusion(in *InfusionBody, p string, v *violations) {
	before := len(*v)
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
	if w := in.BodyWeightKg; w != nil {
		if r := plausible["bodyWeight kg"]; *w < r.lo || *w > r.hi {
			v.add("vitals.plausible-range", p+"/bodyWeightKg", "bodyWeightKg must lie between %g and %g kg; send the weight in kg", r.lo, r.hi)
		}
	}
	switch in.Drug {
	case "ketamine-iv":
		if k := in.DoseMgPerKg; k != nil && (*k < 0.1 || *k > IVMaxMgPerKg) {
			v.add("infusion.dose-plausible", p+"/doseMgPerKg", "an IV ketamine dose must lie between 0.1 and %g mg/kg", IVMaxMgPerKg)
		}
		// A dose given above the plan is charted (a warning), up to the
		// plausible ceiling: beyond it, a typo (4600 for 46) is likelier
		// than a pump error and would chart a hundredfold overdose.
		if a, w := in.AdministeredDoseMg, in.BodyWeightKg; a != nil && w != nil && *a > IVMaxMgPerKg**w {
			v.add("infusion.dose-plausible", p+"/administeredDoseMg", "an IV ketamine dose given must lie at most %g mg/kg of bodyWeightKg: check administeredDoseMg", IVMaxMgPerKg)
		}
	case "esketamine-nasal":
		if t := in.TotalDoseMg; t != nil && !esketamineDoses[*t] {
			v.add("infusion.dose-plausible", p+"/totalDoseMg", "an esketamine nasal dose is 28, 56 or 84 mg")
		}
		// A session stopped early may stop between the two sprays of a
		// device (one per nostril): its dose given is whole sprays.
		if a := in.AdministeredDoseMg; a != nil {
			switch stopped := in.Status == "stopped-early"; {
			case *a > EsketamineMaxMg:
				v.add("infusion.dose-plausible", p+"/administeredDoseMg", "an esketamine nasal dose given is at most %d mg (three %d mg devices): check administeredDoseMg", EsketamineMaxMg, EsketamineDeviceMg)
			case stopped && math.Mod(*a, EsketamineSprayMg) != 0:
				v.add("infusion.dose-plausible", p+"/administeredDoseMg", "an esketamine nasal dose given is a whole number of %d mg sprays (two to a %d mg device: 0, 14, 28, 42, ... 84)", EsketamineSprayMg, EsketamineDeviceMg)
			case !stopped && math.Mod(*a, EsketamineDeviceMg) != 0:
				v.add("infusion.dose-plausible", p+"/administeredDoseMg", "an esketamine nasal dose given is a whole number of %d mg devices (0, 28, 56 or 84 mg); a session stopped early may end after one spray of a device (%d mg)", EsketamineDeviceMg, EsketamineSprayMg)
			}
		}
		if in.DoseMgPerKg != nil {
			v.add("infusion.iv-only", p+"/doseMgPerKg", "esketamine nasal spray is dosed in %d mg devices, not by weight: leave out doseMgPerKg and send totalDoseMg", EsketamineDeviceMg)
		}
		if in.Rate != nil {
			v.add("infusion.iv-only", p+"/rate", "esketamine nasal spray has no infusion rate: leave out rate")
		}
	}
	// (Esketamine is not dosed by weight: its doseMgPerKg is refused above,
	// and its totalDoseMg is not held to one.)
	if in.Drug != "esketamine-nasal" && in.DoseMgPerKg != nil && in.BodyWeightKg != nil && in.TotalDoseMg != nil {
		want := *in.DoseMgPerKg * *in.BodyWeightKg
		if math.Abs(*in.TotalDoseMg-want) > math.Max(DoseTolerance*want, DoseRoundingMg) {
			v.add("infusion.dose-weight-mismatch", p+"/totalDoseMg",
				"totalDoseMg must equal doseMgPerKg x bodyWeightKg within %g%%, or within %g mg (rounding to the nearest 5 mg), whichever is more", DoseTolerance*100, DoseRoundingMg)
		}
	}
	checkAdministered(in, p, v)
	checkTimes(in, p, v)
	// The rate is checked against doses and times that keep the other
	// rules, so one mistake is reported once.
	if len(*v) == before && in.Drug == "ketamine-iv" && in.Rate != nil && in.Rate.AmountUnit == "mg" {
		if a := administered(in); a.asPlanned && a.minutes > 0 && a.doseMg != nil {
			got := ratePerMinute(in.Rate) * a.minutes
			if math.Abs(got-*a.doseMg) > math.Max(RateTolerance**a.doseMg, DoseToleranceMg) {
				v.add("infusion.rate-mismatch", p+"/rate",
					"the planned rate over the time the infusion ran must give totalDoseMg within %g%% (at least %g mg); correct rate, or state administeredDoseMg or administeredDurationMin if the infusion did not run as planned",
					RateTolerance*100, DoseToleranceMg)
			}
		}
	}
}

// checkTimes enforces the order and the plausible lengths of an infusion's
// times (time.order, infusion.duration-plausible).
func checkTimes(in *InfusionBody, p string, v *violations) {
	start, hasStart := parseTime(in.InfusionStart)
	end, hasEnd := parseTime(in.InfusionEnd)
	mon, hasMon := parseTime(in.MonitoringEnd)
	switch {
	case hasStart && hasEnd && !end.After(start):
		v.add("time.order", p+"/infusionEnd", "infusionEnd must be after infusionStart")
	case hasStart && hasEnd && in.Status != "not-done":
		if m := minutesBetween(start, end); m < MinRunMinutes || m > MaxRunMinutes {
			v.add("infusion.duration-plausible", p+"/infusionEnd",
				"an administration runs from %d minute to %d hours from infusionStart to infusionEnd; check both times (for a single nasal device given in under a minute, leave out infusionEnd)", MinRunMinutes, MaxRunMinutes/60)
		} else if d := in.AdministeredDurationMin; d != nil && *d > m {
			v.add("time.order", p+"/administeredDurationMin", "administeredDurationMin must not exceed the time from infusionStart to infusionEnd")
		}
	}
	if d := in.AdministeredDurationMin; d != nil && (*d < MinRunMinutes || *d > MaxRunMinutes) {
		v.add("infusion.duration-plausible", p+"/administeredDurationMin", "administeredDurationMin must lie between %d and %d minutes", MinRunMinutes, MaxRunMinutes)
	}
	if hasMon {
		switch {
		case hasEnd && mon.Before(end):
			v.add("time.order", p+"/monitoringEnd", "monitoringEnd must not be before infusionEnd")
		case !hasEnd && hasStart && !mon.After(start):
			v.add("time.order", p+"/monitoringEnd", "monitoringEnd must be after infusionStart")
		case hasEnd && minutesBetween(end, mon) > MaxMonitoringMinutes:
			v.add("infusion.duration-plausible", p+"/monitoringEnd", "monitoringEnd must lie within %d hours after infusionEnd", MaxMonitoringMinutes/60)
		case !hasEnd && hasStart && minutesBetween(start, mon) > MaxMonitoringMinutes:
			v.add("infusion.duration-plausible", p+"/monitoringEnd", "monitoringEnd must lie within %d hours after infusionStart", MaxMonitoringMinutes/60)
		}
	}
}

// checkAdministered enforces the rules on the dose actually given: a
// session stopped early states it (and, IV, when it stopped or how long it
// ran), a completed session gave some, and a session not done gave
// nothing, ran no time and had no outcome. A dose above the plan is a
// warning (infusionWarnings), within the plausible ceiling checked with
// the plan's (checkInfusion).
func checkAdministered(in *InfusionBody, p string, v *violations) {
	switch in.Status {
	case "not-done":
		if in.AdministeredDoseMg != nil {
			v.add("infusion.administered-not-applicable", p+"/administeredDoseMg", "a session that was not done gave no dose")
		}
		if in.AdministeredDurationMin != nil {
			v.add("infusion.administered-not-applicable", p+"/administeredDurationMin", "a session that was not done did not run")
		}
		if in.InfusionEnd != "" {
			v.add("infusion.administered-not-applicable", p+"/infusionEnd", "a session that was not done did not run: leave out infusionEnd, or send the status it had")
		}
		if in.MonitoringEnd != "" {
			v.add("infusion.administered-not-applicable", p+"/monitoringEnd", "a session that was not done had no monitoring: leave out monitoringEnd, or send the status it had")
		}
		if in.Outcome != "" {
			v.add("infusion.administered-not-applicable", p+"/outcome", "a session that was not done has no outcome: leave out outcome, or send the status it had")
		}
		return
	case "stopped-early":
		if in.AdministeredDoseMg == nil {
			v.add("infusion.administered-missing", p+"/administeredDoseMg", "a session stopped early states the dose actually given in administeredDoseMg")
		}
		if in.Drug == "ketamine-iv" && in.InfusionEnd == "" && in.AdministeredDurationMin == nil {
			v.add("infusion.administered-missing", p+"/infusionEnd", "an IV infusion stopped early states when it stopped (infusionEnd) or how long it ran (administeredDurationMin)")
		}
	case "completed":
		if a := in.AdministeredDoseMg; a != nil && *a == 0 {
			v.add("infusion.administered-none", p+"/administeredDoseMg", "a completed session gave a dose: when nothing was given send status not-done, or stopped-early when it was stopped")
		}
	}
	if in.Drug != "ketamine-iv" && in.AdministeredDurationMin != nil {
		v.add("infusion.administered-not-applicable", p+"/administeredDurationMin", "administeredDurationMin applies to IV infusions only")
	}
}

// abovePlan reports whether a session gave more than its planned dose (a
// pump or dilution error, a device too many), and the note that charts it
// on the MedicationAdministration beside the dose given: the record is
// charted as it happened, never refused (a refusal would leave a real
// overdose unchartable).
func abovePlan(in *InfusionBody) (bool, string) {
	a, t := in.AdministeredDoseMg, in.TotalDoseMg
	if a == nil || t == nil || *a <= *t || in.Status == "not-done" {
		return false, ""
	}
	return true, fmt.Sprintf("Dose given above the planned dose: %g mg given, %g mg planned.", *a, *t)
}

// administration is what was actually given in a session.
type administration struct {
	// asPlanned: a completed session that gave the planned dose over the
	// recorded infusion time.
	asPlanned bool
	// doseMg is the dose given (nil when neither given nor planned).
	doseMg *float64
	// minutes is how long the infusion ran (0: unknown).
	minutes float64
}

// administered works out what a given session actually administered.
func administered(in *InfusionBody) administration {
	a := administration{doseMg: in.TotalDoseMg}
	if in.AdministeredDoseMg != nil {
		given := *in.AdministeredDoseMg + 0 // -0 is 0
		a.doseMg = &given
	}
	start, ok1 := parseTime(in.InfusionStart)
	end, ok2 := parseTime(in.InfusionEnd)
	if ok1 && ok2 && end.After(start) {
		a.minutes = minutesBetween(start, end)
	}
	span := a.minutes
	if d := in.AdministeredDurationMin; d != nil {
		a.minutes = *d
	}
	sameDose := in.AdministeredDoseMg == nil || (in.TotalDoseMg != nil && *in.AdministeredDoseMg == *in.TotalDoseMg)
	sameTime := in.AdministeredDurationMin == nil || *in.AdministeredDurationMin == span
	a.asPlanned = in.Status == "completed" && sameDose && sameTime
	return a
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
	Request                   *fhir.Reference                          `json:"request,omitempty"`
	Dosage                    *fhir.MedicationAdministrationDosage     `json:"dosage,omitempty"`
	Note                      []fhir.Annotation                        `json:"note,omitempty"`
}

// medRequest is a MedicationRequest: the session's plan. samply's type
// always emits an empty medicationReference (see medAdmin).
type medRequest struct {
	ResourceType              string                 `json:"resourceType"`
	ID                        *string                `json:"id,omitempty"`
	Meta                      *fhir.Meta             `json:"meta,omitempty"`
	Identifier                []fhir.Identifier      `json:"identifier,omitempty"`
	Status                    string                 `json:"status"`
	Intent                    string                 `json:"intent"`
	MedicationCodeableConcept *fhir.CodeableConcept  `json:"medicationCodeableConcept,omitempty"`
	Subject                   fhir.Reference         `json:"subject"`
	SupportingInformation     []fhir.Reference       `json:"supportingInformation,omitempty"`
	Requester                 *fhir.Reference        `json:"requester,omitempty"`
	ReasonCode                []fhir.CodeableConcept `json:"reasonCode,omitempty"`
	DosageInstruction         []fhir.Dosage          `json:"dosageInstruction,omitempty"`
}

// planStatus maps the native session status to the MedicationRequest
// status of its plan: completed, or stopped before all of it was given.
var planStatus = map[string]string{"completed": "completed", "stopped-early": "stopped"}

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

// sessionExtras are what a session document adds to its infusion's
// resources: the body weight measured at the session (a vitals
// Observation of the same Bundle) and the adverse events its summary names.
type sessionExtras struct {
	// weight is the identifier of the vitals body-weight Observation that
	// holds the dosing weight (nil: the infusion's own weight Observation).
	weight *ident
	// complications name the session's serious or high-grade adverse events.
	complications []fhir.CodeableConcept
}

// infusion maps a session to a Procedure (the whole session including
// monitoring), a MedicationRequest (the plan: the prescribed dose and rate)
// and a MedicationAdministration partOf the Procedure (what was actually
// given), plus, when a body weight is recorded and no vitals Observation of
// the same session holds it, the weight Observation the dose is based on.
func (m *mapper) infusion(in *InfusionBody, recordID string, extra sessionExtras) {
	procID, medID, weightID := m.sessionIDs(recordID)
	planID := procID.child("medication-request")
	drug := drugs[in.Drug]
	status := sessionStatus[in.Status]
	if m.withdrawn {
		status = fhir.EventStatusEnteredInError
	}
	given := in.Status != "not-done"
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
		Complication: extra.complications,
		Note:         annotation(in.Notes),
	}
	if given {
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

	// The body weight the dose was calculated with: the session's vitals
	// Observation when it holds the same weight, else the infusion's own.
	var weightRef []fhir.Reference
	ownWeight := in.BodyWeightKg != nil && given && extra.weight == nil
	switch {
	case !given || in.BodyWeightKg == nil:
	case extra.weight != nil:
		weightRef = []fhir.Reference{literal(extra.weight.fullURL())}
	default:
		weightRef = []fhir.Reference{literal(weightID.fullURL())}
	}

	if given {
		m.add("MedicationRequest", planID, m.plan(in, planID, drug.medication, drug.route, drug.medText, drug.routeText,
			performer, reasons, weightRef))
	}

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
		SupportingInformation:     weightRef,
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
	if in.LotNumber != "" && given {
		med.Extension = []fhir.Extension{{Url: extensionURL("medication-lot-number"), ValueString: ptr(in.LotNumber)}}
	}
	if given {
		med.Request = ptr(literal(planID.fullURL()))
		med.Dosage = m.dosage(in, drug.route, drug.routeText, drug.medText)
		if above, note := abovePlan(in); above {
			med.Note = annotation(note)
		}
	}
	m.add("MedicationAdministration", medID, med)

	if w := in.BodyWeightKg; ownWeight {
		partOf := literal(procID.fullURL())
		o := m.observation(weightID, "category.vital-signs", cc("", "vitals.body-weight"), when, performer, &partOf,
			profile("kg-vital-signs"), profileVitalSigns, profileBodyWeight)
		o.ValueQuantity = quantity(*w, "kg", "kg")
		m.add("Observation", weightID, o)
	}
}

// plan is the session's MedicationRequest: the prescribed dose (mg/kg and
// the planned total), the planned rate, the route and the scheduled time.
// It is completed, or stopped when the session was stopped early.
func (m *mapper) plan(in *InfusionBody, id ident, medication []string, route, medText, routeText string,
	requester *fhir.Reference, reasons []fhir.CodeableConcept, weight []fhir.Reference) medRequest {
	status := planStatus[in.Status]
	if m.withdrawn {
		status = "entered-in-error"
	}
	d := fhir.Dosage{Route: ptr(cc("", route))}
	var text string
	text, d.Extension = plannedDose(in, medText+" "+routeText)
	var dr fhir.DosageDoseAndRate
	if in.TotalDoseMg != nil {
		dr.DoseQuantity = quantity(*in.TotalDoseMg, "mg", "mg")
	}
	if r := in.Rate; r != nil {
		dr.RateRatio = rateRatio(r.Amount, r.AmountUnit, r.Duration, r.DurationUnit)
		text = fmt.Sprintf("%s at %g %s per %g %s", text, r.Amount, r.AmountUnit, r.Duration, r.DurationUnit)
	}
	if dr.DoseQuantity != nil || dr.RateRatio != nil {
		d.DoseAndRate = []fhir.DosageDoseAndRate{dr}
	}
	if in.ScheduledAt != "" {
		d.Timing = &fhir.Timing{Event: []string{in.ScheduledAt}}
	}
	d.Text = ptr(text)
	return medRequest{
		ResourceType:              "MedicationRequest",
		Meta:                      meta(profile("kg-medication-request")),
		Identifier:                []fhir.Identifier{identifier(id)},
		Status:                    status,
		Intent:                    "order",
		MedicationCodeableConcept: ptr(cc(medText, medication...)),
		Subject:                   m.patient,
		SupportingInformation:     weight,
		Requester:                 requester,
		ReasonCode:                reasons,
		DosageInstruction:         []fhir.Dosage{d},
	}
}

// dosage states only what was given: the dose in mg, the rate and the
// route. A session given as planned keeps the plan's rate and, for
// weight-based dosing, its mg/kg (text and extension), which were then
// what was given; otherwise the dose is the administered dose and the rate
// that dose over the time the infusion ran.
func (m *mapper) dosage(in *InfusionBody, route, routeText, medText string) *fhir.MedicationAdministrationDosage {
	d := &fhir.MedicationAdministrationDosage{Route: ptr(cc("", route))}
	a := administered(in)
	if a.doseMg != nil {
		d.Dose = quantity(*a.doseMg, "mg", "mg")
	}
	text := medText + " " + routeText
	switch {
	case a.asPlanned:
		if r := in.Rate; r != nil {
			d.RateRatio = rateRatio(r.Amount, r.AmountUnit, r.Duration, r.DurationUnit)
		}
		text, d.Extension = plannedDose(in, text)
	case a.doseMg != nil:
		text = fmt.Sprintf("%s %g mg", text, *a.doseMg)
		if in.Drug == "ketamine-iv" && a.minutes > 0 {
			d.RateRatio = rateRatio(*a.doseMg, "mg", a.minutes, "min")
		}
	}
	if a.minutes > 0 {
		text = fmt.Sprintf("%s over %g min", text, a.minutes)
	}
	d.Text = ptr(text)
	return d
}

// plannedDose appends the planned dose to text: "mg/kg x kg = mg" with
// the weight-based-dose extension for weight-based dosing, else the planned
// total in mg. A total that is not the product (drawn up rounded, within
// DoseTolerance) is stated as the dose, with the product beside it: "42 mg
// (0.5 mg/kg x 80 kg = 40 mg)", never an equation that does not hold (a
// mapping developer's review: "0.5 mg/kg x 80 kg = 42 mg").
func plannedDose(in *InfusionBody, text string) (string, []fhir.Extension) {
	switch {
	case in.DoseMgPerKg != nil && in.BodyWeightKg != nil && in.TotalDoseMg != nil:
		ext := []fhir.Extension{weightBasedDose(*in.DoseMgPerKg)}
		product := math.Round(*in.DoseMgPerKg**in.BodyWeightKg*100) / 100
		if math.Abs(product-*in.TotalDoseMg) < 0.005 {
			return fmt.Sprintf("%s %g mg/kg x %g kg = %g mg", text, *in.DoseMgPerKg, *in.BodyWeightKg, *in.TotalDoseMg), ext
		}
		return fmt.Sprintf("%s %g mg (%g mg/kg x %g kg = %g mg)", text, *in.TotalDoseMg, *in.DoseMgPerKg, *in.BodyWeightKg, product), ext
	case in.TotalDoseMg != nil:
		return fmt.Sprintf("%s %g mg", text, *in.TotalDoseMg), nil
	}
	return text, nil
}

// rateRatio is an amount per duration in UCUM units (unit = code).
func rateRatio(amount float64, amountUnit string, duration float64, durationUnit string) *fhir.Ratio {
	return &fhir.Ratio{
		Numerator:   quantity(amount, amountUnit, amountUnit),
		Denominator: quantity(duration, durationUnit, durationUnit),
	}
}

// weightBasedDose is the weight-based-dose extension: mg per kg.
func weightBasedDose(mgPerKg float64) fhir.Extension {
	return fhir.Extension{Url: extensionURL("weight-based-dose"), ValueQuantity: quantity(mgPerKg, "mg/kg", "mg/kg")}
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

// EsketamineMonitoringMinutes is the least monitoring after an esketamine
// nasal administration: the esketamine REMS requires patients to be
// observed for at least 2 hours after it (sedation, dissociation, blood
// pressure).
const EsketamineMonitoringMinutes = 120

// The usual range of IV ketamine for depression (infusion.dose-atypical,
// infusion.duration-atypical, warnings): 0.5 mg/kg over 40 minutes,
// titrated up to about 1.0 mg/kg (Wan et al. 2015, J Clin Psychiatry
// 76:247; McIntyre et al. 2021, Am J Psychiatry 178:383), over 20 minutes
// to 2 hours. Above 1.0 mg/kg is the anaesthetic-induction range (1-4.5
// mg/kg); a run under 20 minutes is close to a push.
const (
	IVUsualMaxMgPerKg = 1.0
	IVUsualMaxMg      = 200
	IVUsualMinMinutes = 20
	IVUsualMaxMinutes = 120
)

// infusionWarnings reports what an infusion at pointer p records outside
// practice without being wrong: an IV plan above the depression protocols'
// dose or an IV infusion given as planned faster or slower than they run,
// and an esketamine session that gave a dose and records less than
// EsketamineMonitoringMinutes of monitoring after the administration
// (infusionEnd, else infusionStart), or no monitoringEnd.
func infusionWarnings(in *InfusionBody, p string, w *violations) {
	if above, _ := abovePlan(in); above {
		w.add("infusion.administered-above-plan", p+"/administeredDoseMg", "the dose given is above the planned totalDoseMg: it is charted as given, with a note on the MedicationAdministration; check the dose, and send an adverse-event record if it was a medication error")
	}
	if in.Drug == "ketamine-iv" && in.Status != "not-done" {
		// Each bound broken is told at its own field: a sender who
		// corrects one learns of the other now, not on the next try.
		if in.DoseMgPerKg != nil && *in.DoseMgPerKg > IVUsualMaxMgPerKg {
			w.add("infusion.dose-atypical", p+"/doseMgPerKg", "the planned dose is above %g mg/kg, the upper end of IV ketamine protocols for depression (0.5 mg/kg, titrated up to about 1.0): check the dose", IVUsualMaxMgPerKg)
		}
		if in.TotalDoseMg != nil && *in.TotalDoseMg > IVUsualMaxMg {
			w.add("infusion.dose-atypical", p+"/totalDoseMg", "the planned dose is above %d mg, beyond IV ketamine protocols for depression: check the dose and the weight", IVUsualMaxMg)
		}
		if a := administered(in); a.asPlanned && a.minutes > 0 && (a.minutes < IVUsualMinMinutes || a.minutes > IVUsualMaxMinutes) {
			ptr := p + "/infusionEnd"
			if in.AdministeredDurationMin != nil {
				ptr = p + "/administeredDurationMin"
			}
			w.add("infusion.duration-atypical", ptr, "the infusion ran under %d minutes or over %d hours, outside IV ketamine protocols for depression (about 40 minutes): check the times", IVUsualMinMinutes, IVUsualMaxMinutes/60)
		}
		return
	}
	if in.Drug != "esketamine-nasal" || in.Status == "not-done" || (in.AdministeredDoseMg != nil && *in.AdministeredDoseMg == 0) {
		return
	}
	last, ok := parseTime(in.InfusionEnd)
	if !ok {
		last, ok = parseTime(in.InfusionStart)
	}
	if !ok {
		return
	}
	if end, recorded := parseTime(in.MonitoringEnd); recorded && minutesBetween(last, end) >= EsketamineMonitoringMinutes {
		return
	}
	w.add("infusion.esketamine-monitoring-short", p+"/monitoringEnd", "the esketamine session records less than %d hours of monitoring after the administration, or no monitoringEnd: the esketamine REMS requires at least %d hours; send the monitoringEnd the session had", EsketamineMonitoringMinutes/60, EsketamineMonitoringMinutes/60)
}
