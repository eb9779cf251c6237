package mapping

// The native record formats. These Go types mirror the JSON Schemas in
// schemas/*.schema.json one to one: a record is first validated against its
// schema (shape, types, formats, enums) and only then decoded into these
// types, so mapping code can rely on required fields being present. Clinical
// rules that a schema cannot express live in rules.go.

// Kind names a native record format.
type Kind string

// The native record kinds, as used in /ingest/{kind} and `map --kind`.
const (
	KindAssessment   Kind = "assessment"
	KindVitals       Kind = "vitals"
	KindInfusion     Kind = "infusion"
	KindAdverseEvent Kind = "adverse-event"
	KindSession      Kind = "session"
)

// Kinds lists every native record kind in a stable order.
func Kinds() []Kind {
	return []Kind{KindAssessment, KindVitals, KindInfusion, KindAdverseEvent, KindSession}
}

// SameRecord lists the kinds whose records of one source and record id are
// one record with a record of kind k, k first: an infusion and the session
// of that infusion (a session's source.recordId is its infusion's id; they
// write the same resources). Every other kind is its own.
func SameRecord(k Kind) []Kind {
	switch k {
	case KindInfusion:
		return []Kind{KindInfusion, KindSession}
	case KindSession:
		return []Kind{KindSession, KindInfusion}
	}
	return []Kind{k}
}

// Source identifies where a record comes from and which version of it this is.
type Source struct {
	// System is the clinic system's stable name (lowercase letters, digits, '-').
	System string `json:"system"`
	// RecordID is the record's id in that system, unique per kind.
	RecordID string `json:"recordId"`
	// Version and/or LastUpdated tell versions of one record apart.
	Version     string `json:"version,omitempty"`
	LastUpdated string `json:"lastUpdated,omitempty"`
	// Status is "active" (default) or "entered-in-error" for a withdrawn record.
	Status string `json:"status,omitempty"`
}

// Patient is the person a record is about.
type Patient struct {
	// ID is the clinic's patient id (required).
	ID        string     `json:"id"`
	MRN       *MRN       `json:"mrn,omitempty"`
	Name      *HumanName `json:"name,omitempty"`
	BirthDate string     `json:"birthDate,omitempty"`
	Gender    string     `json:"gender,omitempty"`
}

// MRN is a hospital medical record number.
type MRN struct {
	Value    string `json:"value"`
	System   string `json:"system,omitempty"`
	Assigner string `json:"assigner"`
}

// HumanName is a patient's name.
type HumanName struct {
	Family string   `json:"family,omitempty"`
	Given  []string `json:"given,omitempty"`
}

// Person is a clinician: an id in the source system and an optional display name.
type Person struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// Envelope is what every standalone record carries.
type Envelope struct {
	Source  Source  `json:"source"`
	Patient Patient `json:"patient"`
}

// Assessment is a scored instrument (or a C-SSRS screener) taken at one time.
type Assessment struct {
	Envelope
	AssessmentBody
}

// AssessmentBody is an assessment without its envelope, as nested in a session.
type AssessmentBody struct {
	// RecordID is set only when nested in a session document.
	RecordID       string  `json:"recordId,omitempty"`
	Instrument     string  `json:"instrument"`
	TakenAt        string  `json:"takenAt"`
	AdministeredBy *Person `json:"administeredBy,omitempty"`
	// SessionID links to an infusion session record of the same source system.
	SessionID string `json:"sessionId,omitempty"`
	Items     []Item `json:"items,omitempty"`
	// Total is the total score as recorded by the clinic (checked against Items).
	Total *int `json:"total,omitempty"`
	// Difficulty is the PHQ-9 functional difficulty question (item 10).
	Difficulty string `json:"difficulty,omitempty"`
}

// Item is one answered question of an instrument.
type Item struct {
	Number int `json:"number"`
	// Score is the ordinal answer (scored instruments).
	Score *int `json:"score,omitempty"`
	// Answer is the yes/no answer (C-SSRS screener).
	Answer *bool `json:"answer,omitempty"`
}

// Vitals is a set of vital signs measured at one time point.
type Vitals struct {
	Envelope
	VitalsBody
}

// VitalsBody is a vitals record without its envelope.
type VitalsBody struct {
	RecordID        string         `json:"recordId,omitempty"`
	SessionID       string         `json:"sessionId,omitempty"`
	Timepoint       string         `json:"timepoint"`
	TimepointText   string         `json:"timepointText,omitempty"`
	MeasuredAt      string         `json:"measuredAt"`
	MeasuredBy      *Person        `json:"measuredBy,omitempty"`
	BloodPressure   *BloodPressure `json:"bloodPressure,omitempty"`
	HeartRate       *float64       `json:"heartRate,omitempty"`
	RespiratoryRate *float64       `json:"respiratoryRate,omitempty"`
	SpO2            *float64       `json:"spo2,omitempty"`
	Temperature     *UnitValue     `json:"temperature,omitempty"`
	BodyWeight      *UnitValue     `json:"bodyWeight,omitempty"`
}

// BloodPressure is a systolic/diastolic pair in mm[Hg].
type BloodPressure struct {
	Systolic  float64 `json:"systolic"`
	Diastolic float64 `json:"diastolic"`
}

// UnitValue is a measurement with a UCUM unit from a fixed list.
type UnitValue struct {
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Infusion is one ketamine/esketamine treatment session.
type Infusion struct {
	Envelope
	InfusionBody
}

// InfusionBody is an infusion session without its envelope.
type InfusionBody struct {
	Drug         string  `json:"drug"`
	Status       string  `json:"status"`
	StatusReason *Reason `json:"statusReason,omitempty"`
	// DoseMgPerKg, BodyWeightKg, TotalDoseMg and Rate are the plan: the
	// prescribed mg/kg, the weight it was calculated with, the planned total
	// dose and the planned rate.
	DoseMgPerKg  *float64 `json:"doseMgPerKg,omitempty"`
	BodyWeightKg *float64 `json:"bodyWeightKg,omitempty"`
	TotalDoseMg  *float64 `json:"totalDoseMg,omitempty"`
	// AdministeredDoseMg is the dose actually given (required when stopped
	// early; absent for a completed session: the plan was given in full).
	AdministeredDoseMg *float64 `json:"administeredDoseMg,omitempty"`
	// AdministeredDurationMin is how long an IV infusion actually ran, when
	// that differs from InfusionEnd - InfusionStart (a pause).
	AdministeredDurationMin *float64    `json:"administeredDurationMin,omitempty"`
	Rate                    *Rate       `json:"rate,omitempty"`
	InfusionStart           string      `json:"infusionStart,omitempty"`
	InfusionEnd             string      `json:"infusionEnd,omitempty"`
	MonitoringEnd           string      `json:"monitoringEnd,omitempty"`
	ScheduledAt             string      `json:"scheduledAt,omitempty"`
	Indication              *Indication `json:"indication,omitempty"`
	Outcome                 string      `json:"outcome,omitempty"`
	LotNumber               string      `json:"lotNumber,omitempty"`
	Clinician               *Person     `json:"clinician,omitempty"`
	Notes                   string      `json:"notes,omitempty"`
}

// Reason is a coded reason with optional free text.
type Reason struct {
	Code string `json:"code"`
	Text string `json:"text,omitempty"`
}

// Rate is an infusion rate: Amount AmountUnit per Duration DurationUnit.
type Rate struct {
	Amount       float64 `json:"amount"`
	AmountUnit   string  `json:"amountUnit"`
	Duration     float64 `json:"duration"`
	DurationUnit string  `json:"durationUnit"`
}

// Indication is why the session was given.
type Indication struct {
	Codes              []string `json:"codes,omitempty"`
	TreatmentResistant bool     `json:"treatmentResistant,omitempty"`
	Text               string   `json:"text,omitempty"`
}

// AdverseEvent is a side effect observed around a session.
type AdverseEvent struct {
	Envelope
	AdverseEventBody
}

// AdverseEventBody is an adverse event without its envelope.
type AdverseEventBody struct {
	RecordID            string   `json:"recordId,omitempty"`
	SessionID           string   `json:"sessionId,omitempty"`
	Event               string   `json:"event"`
	EventText           string   `json:"eventText,omitempty"`
	OnsetAt             string   `json:"onsetAt"`
	DetectedAt          string   `json:"detectedAt,omitempty"`
	RecordedAt          string   `json:"recordedAt,omitempty"`
	Severity            string   `json:"severity,omitempty"`
	CTCAEGrade          *int     `json:"ctcaeGrade,omitempty"`
	Serious             *bool    `json:"serious"`
	SeriousnessCriteria []string `json:"seriousnessCriteria,omitempty"`
	Outcome             string   `json:"outcome,omitempty"`
	Causality           string   `json:"causality,omitempty"`
	ActionTaken         []string `json:"actionTaken,omitempty"`
	Recorder            *Person  `json:"recorder,omitempty"`
}

// Session is one infusion with the vitals, assessments and adverse events
// recorded around it. The envelope's RecordID is the infusion session's id.
type Session struct {
	Envelope
	Infusion      InfusionBody       `json:"infusion"`
	Vitals        []VitalsBody       `json:"vitals,omitempty"`
	Assessments   []AssessmentBody   `json:"assessments,omitempty"`
	AdverseEvents []AdverseEventBody `json:"adverseEvents,omitempty"`
}

// NestedRecord names a record a session nests: its kind and record id
// (it keeps its identity: docs/records.md).
type NestedRecord struct {
	Kind     Kind
	RecordID string
}

// Nested lists the records s nests, vitals, then assessments, then
// adverse events, each in document order.
func (s *Session) Nested() []NestedRecord {
	out := make([]NestedRecord, 0, len(s.Vitals)+len(s.Assessments)+len(s.AdverseEvents))
	for _, v := range s.Vitals {
		out = append(out, NestedRecord{KindVitals, v.RecordID})
	}
	for _, a := range s.Assessments {
		out = append(out, NestedRecord{KindAssessment, a.RecordID})
	}
	for _, ae := range s.AdverseEvents {
		out = append(out, NestedRecord{KindAdverseEvent, ae.RecordID})
	}
	return out
}
