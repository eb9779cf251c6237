package mapping

import (
	"errors"
	"fmt"
	"math"
)

// Safety holds the thresholds at which the mappings mark a value as a
// signal a receiving clinician must see: the interpretation of vital signs,
// the positive screens that raise a Flag on the patient, and the adverse
// events named in their session's summary. DefaultSafety gives the
// defaults, each with its clinical source; a deployment may override them
// per tenant (docs/configuration.md).
type Safety struct {
	// PHQ9Item9 flags a PHQ-9 whose item 9 ("thoughts that you would be
	// better off dead, or of hurting yourself") scores at least this (1-3).
	PHQ9Item9 int
	// MADRSItem10 flags a MADRS whose item 10 (suicidal thoughts, 0-6)
	// scores at least this (1-6).
	MADRSItem10 int
	// QIDSItem12 flags a QIDS-SR16 whose item 12 (thoughts of death or
	// suicide, 0-3) scores at least this (1-3).
	QIDSItem12 int
	// CSSRSRisk flags a C-SSRS screener whose derived risk level is at
	// least this: "low", "moderate" or "high".
	CSSRSRisk string
	// AdverseEventGrade names an adverse event of at least this CTCAE grade
	// (1-5) in its session's summary; serious events are always named.
	AdverseEventGrade int
	// SessionMinIntervalHours is the least time between the starts of two
	// sessions of a patient that gave their drug; closer is a warning to
	// the sender (session.interval-short). 0: not checked.
	SessionMinIntervalHours float64
	// The vital-sign limits (blood pressure in mm[Hg], rates in /min, SpO2
	// in %, temperature in Cel; a temperature sent in [degF] is converted to
	// compare).
	Systolic, Diastolic, HeartRate, RespiratoryRate, SpO2, Temperature Limits
}

// Limits interpret a measurement: H at or above High, HH at or above
// CriticalHigh, L below Low, LL below CriticalLow. A zero limit is not
// applied.
type Limits struct {
	High, CriticalHigh, Low, CriticalLow float64
}

// DefaultSafety returns the default thresholds. Sources:
//   - PHQ-9 item 9 >= 1: any answer other than "not at all" to item 9
//     warrants a suicide risk assessment (Kroenke, Spitzer, Williams 2001,
//     J Gen Intern Med 16:606; the PHQ-9 instructions).
//   - MADRS item 10 >= 4: the anchor "Long for death. Suicidal thoughts
//     are common, and suicide is considered as a possible solution, but
//     without specific plans or intention" (Montgomery & Asberg 1979, Br J
//     Psychiatry 134:382); 2 is fleeting thoughts, 6 explicit plans. Trials
//     of ketamine and esketamine use item 10 >= 4 as active suicidal
//     ideation (e.g. the ASPIRE esketamine trials' MADRS-SI; Fu et al.
//     2020, J Clin Psychiatry 81:19m13191).
//   - QIDS-SR16 item 12 >= 2: "I think of suicide or death several times a
//     week for several minutes" (2) or more, against 1 "I feel that life is
//     empty or wonder if it's worth living" (Rush et al. 2003, Biol
//     Psychiatry 54:573); 2 and 3 name suicide itself.
//   - An adverse event of suicidal ideation always flags (not configurable).
//   - C-SSRS screener at low risk or above, i.e. any "yes": the Columbia
//     Protocol screener triage (Posner et al. 2011, Am J Psychiatry 168:1266;
//     the Columbia Lighthouse Project's screen versions).
//   - Adverse events of CTCAE grade 3 or more (severe or medically
//     significant; CTCAE v5.0), and every serious event (ICH E2A).
//   - Blood pressure: H at 140/90 (grade 1 hypertension) and HH at 180/110
//     (grade 3 hypertension) mm[Hg], ESC/ESH 2018 guidelines (Williams et
//     al., Eur Heart J 39:3021); L below 90 systolic or 60 diastolic
//     (the usual definition of hypotension).
//   - Heart rate, respiratory rate and temperature: the bands of the
//     National Early Warning Score 2 (Royal College of Physicians 2017)
//     that score 2 or 3 (H/HH, L/LL): heart rate H from 111, HH from 131
//     (above 130), L at 50 and below, LL at 40 and below /min; respiratory
//     rate H from 21, HH from 25, L at 11 and below, LL at 8 and below /min;
//     temperature H from 38.1, HH from 39.1, L at 36.0 and below, LL at 35.0
//     and below Cel.
//   - Sessions at least 20 hours apart: no IV ketamine or esketamine
//     protocol for depression doses more than once a day (IV ketamine two
//     or three times a week, e.g. six infusions over two to three weeks,
//     Wan et al. 2015, J Clin Psychiatry 76:247; esketamine twice a week
//     in its induction phase, the Spravato label); 20 hours rather than 24
//     lets a next-day session start earlier in the day than the last.
//   - SpO2: L below 94 % (the lower end of the target range of the BTS
//     guideline for oxygen use, O'Driscoll et al. 2017, Thorax 72:i1), LL
//     below 90 % (hypoxaemia).
func DefaultSafety() Safety {
	return Safety{
		PHQ9Item9:               1,
		MADRSItem10:             4,
		QIDSItem12:              2,
		CSSRSRisk:               "low",
		AdverseEventGrade:       3,
		SessionMinIntervalHours: 20,
		Systolic:                Limits{High: 140, CriticalHigh: 180, Low: 90},
		Diastolic:               Limits{High: 90, CriticalHigh: 110, Low: 60},
		HeartRate:               Limits{High: 111, CriticalHigh: 131, Low: 51, CriticalLow: 41},
		RespiratoryRate:         Limits{High: 21, CriticalHigh: 25, Low: 12, CriticalLow: 9},
		SpO2:                    Limits{Low: 94, CriticalLow: 90},
		Temperature:             Limits{High: 38.1, CriticalHigh: 39.1, Low: 36.1, CriticalLow: 35.1},
	}
}

// MaxSessionIntervalHours is the largest SessionMinIntervalHours (a week):
// beyond it the warning would flag ordinary weekly maintenance sessions.
const MaxSessionIntervalHours = 7 * 24

// cssrsLevels orders the C-SSRS screener risk levels.
var cssrsLevels = map[string]int{"none": 0, "low": 1, "moderate": 2, "high": 3}

// Validate reports the first threshold that makes no sense (out of range,
// or limits in the wrong order), naming the setting.
func (s Safety) Validate() error {
	if s.PHQ9Item9 < 1 || s.PHQ9Item9 > 3 {
		return errors.New("phq9Item9Min must be 1, 2 or 3")
	}
	if s.MADRSItem10 < 1 || s.MADRSItem10 > 6 {
		return errors.New("madrsItem10Min must be 1 to 6")
	}
	if s.QIDSItem12 < 1 || s.QIDSItem12 > 3 {
		return errors.New("qidsItem12Min must be 1, 2 or 3")
	}
	if lvl, ok := cssrsLevels[s.CSSRSRisk]; !ok || lvl == 0 {
		return errors.New("cssrsMinRisk must be low, moderate or high")
	}
	if s.AdverseEventGrade < 1 || s.AdverseEventGrade > 5 {
		return errors.New("adverseEventMinGrade must be 1 to 5")
	}
	if h := s.SessionMinIntervalHours; h < 0 || h > MaxSessionIntervalHours || math.IsNaN(h) {
		return fmt.Errorf("sessionMinIntervalHours must be 0 (not checked) to %d", MaxSessionIntervalHours)
	}
	for _, l := range s.limits() {
		if err := l.limits.validate(); err != nil {
			return fmt.Errorf("vitals.%s: %w", l.name, err)
		}
	}
	return nil
}

// namedLimits is one measurement's limits with its configuration name.
type namedLimits struct {
	name   string
	limits Limits
}

func (s Safety) limits() []namedLimits {
	return []namedLimits{{"systolic", s.Systolic}, {"diastolic", s.Diastolic}, {"heartRate", s.HeartRate},
		{"respiratoryRate", s.RespiratoryRate}, {"spo2", s.SpO2}, {"temperature", s.Temperature}}
}

func (l Limits) validate() error {
	for _, v := range []float64{l.High, l.CriticalHigh, l.Low, l.CriticalLow} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return errors.New("limits are numbers not below 0 (0: not applied)")
		}
	}
	switch {
	case l.High != 0 && l.CriticalHigh != 0 && l.CriticalHigh < l.High:
		return errors.New("criticalHigh must not be below high")
	case l.Low != 0 && l.CriticalLow != 0 && l.CriticalLow > l.Low:
		return errors.New("criticalLow must not be above low")
	case l.Low != 0 && l.High != 0 && l.Low > l.High:
		return errors.New("low must not be above high")
	}
	return nil
}

// interpret returns the code table key of the interpretation of v, or ""
// when v is within the limits. The critical bands win.
func (l Limits) interpret(v float64) string {
	switch {
	case l.CriticalHigh != 0 && v >= l.CriticalHigh:
		return "interp.HH"
	case l.CriticalLow != 0 && v < l.CriticalLow:
		return "interp.LL"
	case l.High != 0 && v >= l.High:
		return "interp.H"
	case l.Low != 0 && v < l.Low:
		return "interp.L"
	}
	return ""
}

// severity orders interpretations: a critical band outranks a non-critical one.
func severity(key string) int {
	switch key {
	case "interp.HH", "interp.LL":
		return 2
	case "interp.H", "interp.L":
		return 1
	}
	return 0
}

// celsius converts a temperature to Cel for comparison, to 0.01 degree.
func celsius(v float64, unit string) float64 {
	if unit == "[degF]" {
		return math.Round((v-32)*5/9*100) / 100
	}
	return v
}

// suicideItem is an item of an instrument that asks about suicidal
// thoughts: the flag it raises (code table key) and its threshold.
func (s Safety) suicideItem(instrumentKey string, number int) (flag string, min int, ok bool) {
	switch {
	case instrumentKey == "phq9" && number == 9:
		return "flag.phq9-item9", s.PHQ9Item9, true
	case instrumentKey == "madrs" && number == 10:
		return "flag.madrs-item10", s.MADRSItem10, true
	case instrumentKey == "qids" && number == 12:
		return "flag.qids-item12", s.QIDSItem12, true
	}
	return "", 0, false
}

// cssrsFlags reports whether a C-SSRS screener risk level key
// ("cssrs.risk.*") reaches the threshold.
func (s Safety) cssrsFlags(riskKey string) bool {
	return cssrsLevels[riskKey[len("cssrs.risk."):]] >= cssrsLevels[s.CSSRSRisk]
}

// safety returns the options' thresholds (DefaultSafety when unset).
func (o Options) safety() Safety {
	if o.Safety == nil {
		return DefaultSafety()
	}
	return *o.Safety
}
