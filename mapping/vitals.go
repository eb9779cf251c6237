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
		if val >= r.lo && val <= r.hi {
			return
		}
		if unit == "" {
			v.add("vitals.plausible-range", ptr, "%s must lie between %g and %g", name, r.lo, r.hi)
			return
		}
		// A value in the other unit's range is the usual mistake (98.6
		// sent as Cel): both ranges are named, so the sender checks the
		// unit, whatever the value (which is never named).
		other := otherUnit[unit]
		o := plausible[name+" "+other]
		v.add("vitals.plausible-range", ptr, "%s.value must lie between %g and %g %s for unit %s (between %g and %g %s for unit %s): check %s.unit",
			name, r.lo, r.hi, units[unit], unit, o.lo, o.hi, units[other], other, name)
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

// otherUnit is, for each unit of a measure sent in one of two units, the
// other one.
var otherUnit = map[string]string{"Cel": "[degF]", "[degF]": "Cel", "kg": "[lb_av]", "[lb_av]": "kg"}

// units gives the human-readable unit of each UCUM code used for vitals.
var units = map[string]string{"Cel": "°C", "[degF]": "°F", "kg": "kg", "[lb_av]": "lb"}

// measure is one value of a vitals record: what vitals charts, and what
// the Safety thresholds interpret (the DetectedIssue's critical values
// are read from the same list, so a vital sign charted is a vital sign
// checked).
type measure struct {
	// key is the code table key of the Observation that charts it; the
	// measures of one key (the two pressures) are one Observation, each a
	// component (component: its code table key).
	key, component string
	// name says what was measured, for DetectedIssue.detail.
	name string
	// pointer is the JSON pointer of the value in the vitals record.
	pointer string
	// value is the value as sent, in unit (human-readable) and ucum.
	value      float64
	unit, ucum string
	// interp is the thresholds' interpretation (a code table key, "" for
	// none); interpreted is false for a measurement they do not judge
	// (body weight).
	interp      string
	interpreted bool
}

// measurements lists the values of a vitals record in the order vitals
// charts them, interpreted by the limits of lim.
func measurements(vs *VitalsBody, lim Safety) []measure {
	var out []measure
	judged := func(key, component, name, pointer string, v float64, unit, ucum string, l Limits, limitValue float64) {
		out = append(out, measure{key: key, component: component, name: name, pointer: pointer, value: v,
			unit: unit, ucum: ucum, interp: l.interpret(limitValue), interpreted: true})
	}
	if bp := vs.BloodPressure; bp != nil {
		judged("vitals.bp", "vitals.bp.systolic", "systolic blood pressure", "/bloodPressure/systolic", bp.Systolic, "mmHg", "mm[Hg]", lim.Systolic, bp.Systolic)
		judged("vitals.bp", "vitals.bp.diastolic", "diastolic blood pressure", "/bloodPressure/diastolic", bp.Diastolic, "mmHg", "mm[Hg]", lim.Diastolic, bp.Diastolic)
	}
	if hr := vs.HeartRate; hr != nil {
		judged("vitals.heart-rate", "", "heart rate", "/heartRate", *hr, "beats/minute", "/min", lim.HeartRate, *hr)
	}
	if rr := vs.RespiratoryRate; rr != nil {
		judged("vitals.respiratory-rate", "", "respiratory rate", "/respiratoryRate", *rr, "breaths/minute", "/min", lim.RespiratoryRate, *rr)
	}
	if s := vs.SpO2; s != nil {
		judged("vitals.spo2", "", "SpO2", "/spo2", *s, "%", "%", lim.SpO2, *s)
	}
	if t := vs.Temperature; t != nil {
		judged("vitals.temperature", "", "body temperature", "/temperature/value", t.Value, units[t.Unit], t.Unit, lim.Temperature, celsius(t.Value, t.Unit))
	}
	if w := vs.BodyWeight; w != nil {
		out = append(out, measure{key: "vitals.body-weight", name: "body weight", pointer: "/bodyWeight/value",
			value: w.Value, unit: units[w.Unit], ucum: w.Unit})
	}
	return out
}

// vitalChart says how vitals charts the Observation of a measure key: its
// core R4 profile, the codes after the key's, and code.text.
var vitalChart = map[string]struct {
	coreProfile string
	extraCodes  []string
	text        string
}{
	"vitals.bp":               {coreProfile: profileBP},
	"vitals.heart-rate":       {coreProfile: profileHeartRate},
	"vitals.respiratory-rate": {coreProfile: profileRespRate},
	// The text says what was measured: the first coding is 2708-6
	// (arterial blood), as the R4 oxygensat profile requires, but the
	// reading is a pulse oximeter's (59408-5).
	"vitals.spo2":        {coreProfile: profileOxygenSat, extraCodes: []string{"vitals.spo2.pulse-ox"}, text: spo2Text},
	"vitals.temperature": {coreProfile: profileBodyTemp},
	"vitals.body-weight": {coreProfile: profileBodyWeight},
}

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
	timepoint := fhir.Extension{Url: extensionURL("monitoring-timepoint"),
		ValueCodeableConcept: ptr(cc(vs.TimepointText, "timepoint."+vs.Timepoint))}
	ms := measurements(vs, m.opts.safety())
	for i := 0; i < len(ms); {
		j := i + 1
		for j < len(ms) && ms[j].key == ms[i].key {
			j++
		}
		group := ms[i:j]
		i = j
		key, chart := group[0].key, vitalChart[group[0].key]
		oid := id.child(concept(key).Code)
		o := m.observation(oid, "category.vital-signs", cc("", append([]string{key}, chart.extraCodes...)...),
			vs.MeasuredAt, performer, partOf, profile("kg-vital-signs"), profileVitalSigns, chart.coreProfile)
		o.Extension = []fhir.Extension{timepoint}
		if chart.text != "" {
			o.Code.Text = strp(chart.text)
		}
		if group[0].component == "" {
			o.ValueQuantity = quantity(group[0].value, group[0].unit, group[0].ucum)
			o.Interpretation = interpretation(group[0].interp)
		} else {
			// A panel carries the more severe of its components'
			// interpretations (the first of equals).
			worst := group[0].interp
			for _, c := range group {
				o.Component = append(o.Component, fhir.ObservationComponent{Code: cc("", c.component),
					ValueQuantity: quantity(c.value, c.unit, c.ucum), Interpretation: interpretation(c.interp)})
				if severity(c.interp) > severity(worst) {
					worst = c.interp
				}
			}
			o.Interpretation = interpretation(worst)
		}
		m.add("Observation", oid, o)
	}
}

// spo2Text is the SpO2 Observation's code.text (LOINC 59408-5's meaning).
const spo2Text = "Oxygen saturation by pulse oximetry"
