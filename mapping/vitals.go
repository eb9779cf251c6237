package mapping

import (
	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"
)

// Core R4 vital-signs profiles.
const (
	profileVitalSigns = "http://hl7.org/fhir/StructureDefinition/vitalsigns"
	profileBP         = "http://hl7.org/fhir/StructureDefinition/bp"
	profileHeartRate  = "http://hl7.org/fhir/StructureDefinition/heartrate"
	profileRespRate   = "http://hl7.org/fhir/StructureDefinition/resprate"
	profileOxygenSat  = "http://hl7.org/fhir/StructureDefinition/oxygensat"
	profileBodyTemp   = "http://hl7.org/fhir/StructureDefinition/bodytemp"
	profileBodyWeight = "http://hl7.org/fhir/StructureDefinition/bodyweight"
)

// vitalRange is a plausible range of a measurement in one unit.
type vitalRange struct{ lo, hi float64 }

// plausible lists the plausible ranges by measurement and UCUM unit.
var plausible = map[string]vitalRange{
	"systolic": {50, 300}, "diastolic": {20, 200},
	"heartRate": {20, 300}, "respiratoryRate": {4, 80}, "spo2": {50, 100},
	"temperature Cel": {30, 45}, "temperature [degF]": {86, 113},
	"bodyWeight kg": {2, 500}, "bodyWeight [lb_av]": {4.4, 1100},
}

// checkVitals enforces the vital-sign rules at pointer p.
func checkVitals(vs *VitalsBody, p string, v *violations) {
	if vs.BloodPressure == nil && vs.HeartRate == nil && vs.RespiratoryRate == nil &&
		vs.SpO2 == nil && vs.Temperature == nil && vs.BodyWeight == nil {
		v.add("vitals.empty", p, "a vitals record needs at least one measurement")
	}
	inRange := func(name, unit string, val float64, ptr string) {
		key := name
		if unit != "" {
			key += " " + unit
		}
		r := plausible[key]
		if val < r.lo || val > r.hi {
			v.add("vitals.plausible-range", ptr, "%s must lie between %g and %g", key, r.lo, r.hi)
		}
	}
	if bp := vs.BloodPressure; bp != nil {
		inRange("systolic", "", bp.Systolic, p+"/bloodPressure/systolic")
		inRange("diastolic", "", bp.Diastolic, p+"/bloodPressure/diastolic")
		if bp.Systolic <= bp.Diastolic {
			v.add("vitals.bp-order", p+"/bloodPressure", "systolic pressure must be greater than diastolic")
		}
	}
	if vs.HeartRate != nil {
		inRange("heartRate", "", *vs.HeartRate, p+"/heartRate")
	}
	if vs.RespiratoryRate != nil {
		inRange("respiratoryRate", "", *vs.RespiratoryRate, p+"/respiratoryRate")
	}
	if vs.SpO2 != nil {
		inRange("spo2", "", *vs.SpO2, p+"/spo2")
	}
	if t := vs.Temperature; t != nil {
		inRange("temperature", t.Unit, t.Value, p+"/temperature/value")
	}
	if w := vs.BodyWeight; w != nil {
		inRange("bodyWeight", w.Unit, w.Value, p+"/bodyWeight/value")
	}
}

// units gives the human-readable unit of each UCUM code used for vitals.
var units = map[string]string{"Cel": "°C", "[degF]": "°F", "kg": "kg", "[lb_av]": "lb"}

// vitals maps one time point's measurements: one vital-signs Observation per
// measurement (blood pressure as the 85354-9 panel with two components),
// each partOf the session Procedure when linked.
func (m *mapper) vitals(vs *VitalsBody, recordID, sessionInBundle string) {
	id := m.ident(nsVitals, recordID)
	partOf := m.sessionRef(vs.SessionID, false)
	if sessionInBundle != "" {
		partOf = m.sessionRef(sessionInBundle, true)
	}
	performer := m.practitioner(vs.MeasuredBy)
	lim := m.opts.safety()
	timepoint := fhir.Extension{Url: extensionURL("monitoring-timepoint"),
		ValueCodeableConcept: ptr(cc(vs.TimepointText, "timepoint."+vs.Timepoint))}
	add := func(key, coreProfile string, fill func(*fhir.Observation), extraCodes ...string) {
		oid := id.child(concept(key).Code)
		o := m.observation(oid, "category.vital-signs", cc("", append([]string{key}, extraCodes...)...),
			vs.MeasuredAt, performer, partOf, profile("kg-vital-signs"), profileVitalSigns, coreProfile)
		o.Extension = []fhir.Extension{timepoint}
		fill(&o)
		m.add("Observation", oid, o)
	}
	if bp := vs.BloodPressure; bp != nil {
		add("vitals.bp", profileBP, func(o *fhir.Observation) {
			sys, dia := lim.Systolic.interpret(bp.Systolic), lim.Diastolic.interpret(bp.Diastolic)
			o.Component = []fhir.ObservationComponent{
				{Code: cc("", "vitals.bp.systolic"), ValueQuantity: quantity(bp.Systolic, "mmHg", "mm[Hg]"), Interpretation: interpretation(sys)},
				{Code: cc("", "vitals.bp.diastolic"), ValueQuantity: quantity(bp.Diastolic, "mmHg", "mm[Hg]"), Interpretation: interpretation(dia)},
			}
			// The panel carries the more severe of its components'.
			if severity(dia) > severity(sys) {
				sys = dia
			}
			o.Interpretation = interpretation(sys)
		})
	}
	if hr := vs.HeartRate; hr != nil {
		add("vitals.heart-rate", profileHeartRate, func(o *fhir.Observation) {
			o.ValueQuantity = quantity(*hr, "beats/minute", "/min")
			o.Interpretation = interpretation(lim.HeartRate.interpret(*hr))
		})
	}
	if rr := vs.RespiratoryRate; rr != nil {
		add("vitals.respiratory-rate", profileRespRate, func(o *fhir.Observation) {
			o.ValueQuantity = quantity(*rr, "breaths/minute", "/min")
			o.Interpretation = interpretation(lim.RespiratoryRate.interpret(*rr))
		})
	}
	if s := vs.SpO2; s != nil {
		add("vitals.spo2", profileOxygenSat, func(o *fhir.Observation) {
			// The text says what was measured: the first coding is 2708-6
			// (arterial blood), as the R4 oxygensat profile requires, but
			// the reading is a pulse oximeter's (59408-5).
			o.Code.Text = strp(spo2Text)
			o.ValueQuantity = quantity(*s, "%", "%")
			o.Interpretation = interpretation(lim.SpO2.interpret(*s))
		}, "vitals.spo2.pulse-ox")
	}
	if t := vs.Temperature; t != nil {
		add("vitals.temperature", profileBodyTemp, func(o *fhir.Observation) {
			o.ValueQuantity = quantity(t.Value, units[t.Unit], t.Unit)
			o.Interpretation = interpretation(lim.Temperature.interpret(celsius(t.Value, t.Unit)))
		})
	}
	if w := vs.BodyWeight; w != nil {
		add("vitals.body-weight", profileBodyWeight, func(o *fhir.Observation) {
			o.ValueQuantity = quantity(w.Value, units[w.Unit], w.Unit)
		})
	}
}

// spo2Text is the SpO2 Observation's code.text (LOINC 59408-5's meaning).
const spo2Text = "Oxygen saturation by pulse oximetry"
