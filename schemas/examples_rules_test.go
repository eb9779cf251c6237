package schemas_test

// The examples must satisfy the clinical rules that the mapping rule engine
// enforces after the schema (docs/records.md, "Rule catalogue"). This file
// re-states those rules independently, for the examples only, so that an
// example with a wrong total or an inconsistent dose is caught here even
// before the rule engine exists. It is not the rule engine.

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

type ruleCheck struct{ problems []string }

func (c *ruleCheck) failf(rule, format string, args ...any) {
	c.problems = append(c.problems, rule+": "+fmt.Sprintf(format, args...))
}

func instant(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err) // the schema has accepted it
	}
	return t
}

func (c *ruleCheck) envelope(e mapping.Envelope) {
	if e.Source.Version == "" && e.Source.LastUpdated == "" {
		c.failf("source.version-missing", "")
	}
}

// instruments are the instruments the examples use, written from their
// manuals, independently of mapping.Instruments.
var instruments = map[string]struct{ items, maxScore, maxTotal int }{
	"PHQ-9":           {9, 3, 27},
	"GAD-7":           {7, 3, 21},
	"C-SSRS-screener": {7, -1, -1},
	"MADRS":           {10, 6, 60},
	"QIDS-SR16":       {16, 3, 27},
	"CADSS":           {23, 4, 92},
	"MOAA-S":          {0, -1, 5},
}

func (c *ruleCheck) assessment(a mapping.AssessmentBody) {
	in, ok := instruments[a.Instrument]
	if !ok {
		// Kept apart from mapping.Instruments on purpose: the examples are
		// checked against the instrument as its manual defines it.
		c.failf("test-table", "instrument %s is not in the instruments table of schemas/examples_rules_test.go: add its "+
			"items, highest item score and highest total as its manual gives them", a.Instrument)
		return
	}
	scores := map[int]int{}
	seen := map[int]bool{}
	for _, it := range a.Items {
		if it.Number > in.items {
			c.failf("assessment.item-unknown", "item %d", it.Number)
		}
		if seen[it.Number] {
			c.failf("assessment.item-duplicate", "item %d", it.Number)
		}
		seen[it.Number] = true
		if a.Instrument == "C-SSRS-screener" {
			if it.Answer == nil {
				c.failf("assessment.item-answer-missing", "item %d", it.Number)
			}
			continue
		}
		if it.Score == nil {
			c.failf("assessment.item-answer-missing", "item %d", it.Number)
			continue
		}
		if *it.Score > in.maxScore {
			c.failf("assessment.score-range", "item %d", it.Number)
		}
		scores[it.Number] = *it.Score
	}
	if len(a.Items) == 0 && a.Total == nil {
		c.failf("assessment.empty", "")
	}
	if a.Instrument == "MOAA-S" && a.Total == nil {
		c.failf("assessment.total-missing", "")
	}
	if a.Total == nil || a.Instrument == "C-SSRS-screener" {
		return
	}
	if *a.Total > in.maxTotal {
		c.failf("assessment.total-range", "%d", *a.Total)
	}
	if len(a.Items) == 0 {
		return
	}
	if len(a.Items) != in.items {
		c.failf("assessment.items-incomplete", "%d of %d items", len(a.Items), in.items)
		return
	}
	sum := 0
	if a.Instrument == "QIDS-SR16" {
		maxOf := func(ns ...int) int {
			m := 0
			for _, n := range ns {
				m = max(m, scores[n])
			}
			return m
		}
		sum = maxOf(1, 2, 3, 4) + scores[5] + maxOf(6, 7, 8, 9) + scores[10] + scores[11] + scores[12] + scores[13] + scores[14] + maxOf(15, 16)
	} else {
		for _, s := range scores {
			sum += s
		}
	}
	if sum != *a.Total {
		c.failf("assessment.total-mismatch", "items give %d, total is %d", sum, *a.Total)
	}
}

func inRange(v, lo, hi float64) bool { return v >= lo && v <= hi }

func (c *ruleCheck) vitals(v mapping.VitalsBody) {
	if v.BloodPressure == nil && v.HeartRate == nil && v.RespiratoryRate == nil && v.SpO2 == nil && v.Temperature == nil && v.BodyWeight == nil {
		c.failf("vitals.empty", "")
	}
	if bp := v.BloodPressure; bp != nil {
		if bp.Systolic <= bp.Diastolic {
			c.failf("vitals.bp-order", "")
		}
		if !inRange(bp.Systolic, 50, 300) || !inRange(bp.Diastolic, 20, 200) {
			c.failf("vitals.plausible-range", "blood pressure")
		}
	}
	check := func(p *float64, lo, hi float64, what string) {
		if p != nil && !inRange(*p, lo, hi) {
			c.failf("vitals.plausible-range", "%s", what)
		}
	}
	check(v.HeartRate, 20, 300, "heart rate")
	check(v.RespiratoryRate, 4, 80, "respiratory rate")
	check(v.SpO2, 50, 100, "spo2")
	if t := v.Temperature; t != nil {
		if (t.Unit == "Cel" && !inRange(t.Value, 30, 45)) || (t.Unit == "[degF]" && !inRange(t.Value, 86, 113)) {
			c.failf("vitals.plausible-range", "temperature")
		}
	}
	if w := v.BodyWeight; w != nil {
		if (w.Unit == "kg" && !inRange(w.Value, 2, 500)) || (w.Unit == "[lb_av]" && !inRange(w.Value, 4.4, 1100)) {
			c.failf("vitals.plausible-range", "weight")
		}
	}
}

func (c *ruleCheck) infusion(in mapping.InfusionBody) {
	given := in.Status == "completed" || in.Status == "stopped-early"
	switch {
	case in.Drug == "ketamine-iv" && given:
		if in.DoseMgPerKg == nil || in.BodyWeightKg == nil || in.TotalDoseMg == nil {
			c.failf("infusion.dose-missing", "")
			break
		}
		product := *in.DoseMgPerKg * *in.BodyWeightKg
		if math.Abs(*in.TotalDoseMg-product) > math.Max(0.02*product, 2.5) {
			c.failf("infusion.dose-weight-mismatch", "")
		}
		if !inRange(*in.DoseMgPerKg, 0.1, 2.0) {
			c.failf("infusion.dose-plausible", "")
		}
	case in.Drug == "esketamine-nasal" && given:
		if in.TotalDoseMg == nil {
			c.failf("infusion.dose-missing", "")
			break
		}
		if d := *in.TotalDoseMg; d != 28 && d != 56 && d != 84 {
			c.failf("infusion.dose-plausible", "")
		}
	}
	switch {
	case in.Status == "stopped-early" && in.AdministeredDoseMg == nil:
		c.failf("infusion.administered-missing", "")
	case in.Status == "not-done" && (in.AdministeredDoseMg != nil || in.AdministeredDurationMin != nil):
		c.failf("infusion.administered-not-applicable", "")
	}
	if in.InfusionStart != "" && in.InfusionEnd != "" && !instant(in.InfusionEnd).After(instant(in.InfusionStart)) {
		c.failf("time.order", "infusionEnd")
	}
	if in.InfusionEnd != "" && in.MonitoringEnd != "" && instant(in.MonitoringEnd).Before(instant(in.InfusionEnd)) {
		c.failf("time.order", "monitoringEnd")
	}
	if in.BodyWeightKg != nil && !inRange(*in.BodyWeightKg, 2, 500) {
		c.failf("vitals.plausible-range", "bodyWeightKg")
	}
	if in.Drug == "esketamine-nasal" && (in.DoseMgPerKg != nil || in.Rate != nil) {
		c.failf("infusion.iv-only", "")
	}
	if in.Status == "completed" && in.AdministeredDoseMg != nil && *in.AdministeredDoseMg == 0 {
		c.failf("infusion.administered-none", "")
	}
	if in.Status == "not-done" && (in.InfusionEnd != "" || in.MonitoringEnd != "" || in.Outcome != "") {
		c.failf("infusion.administered-not-applicable", "times or outcome")
	}
	if in.InfusionStart != "" && in.InfusionEnd != "" && in.Status != "not-done" {
		if m := instant(in.InfusionEnd).Sub(instant(in.InfusionStart)).Minutes(); m < 1 || m > 24*60 {
			c.failf("infusion.duration-plausible", "infusionEnd")
		}
	}
	if in.InfusionEnd != "" && in.MonitoringEnd != "" && instant(in.MonitoringEnd).Sub(instant(in.InfusionEnd)) > 24*time.Hour {
		c.failf("infusion.duration-plausible", "monitoringEnd")
	}
}

func (c *ruleCheck) adverseEvent(e mapping.AdverseEventBody, inSession bool) {
	if e.Causality != "" && e.SessionID == "" && !inSession {
		c.failf("adverse-event.causality-without-session", "")
	}
	for _, at := range []string{e.DetectedAt, e.RecordedAt} {
		if at != "" && instant(at).Before(instant(e.OnsetAt)) {
			c.failf("time.order", "before onset")
		}
	}
	if e.Severity == "" && e.CTCAEGrade == nil {
		c.failf("adverse-event.severity-missing", "")
	}
	serious := e.Serious != nil && *e.Serious
	if g := e.CTCAEGrade; g != nil {
		want := map[int]string{1: "mild", 2: "moderate"}[*g]
		if *g >= 3 {
			want = "severe"
		}
		if e.Severity != "" && e.Severity != want {
			c.failf("adverse-event.severity-grade-mismatch", "")
		}
		if *g >= 4 && !serious {
			c.failf("adverse-event.grade-implies-serious", "")
		}
		if *g == 5 && (e.Outcome != "fatal" || !contains(e.SeriousnessCriteria, "death")) {
			c.failf("adverse-event.fatal-grade", "")
		}
	}
	if serious != (len(e.SeriousnessCriteria) > 0) {
		c.failf("adverse-event.criteria-without-serious", "")
	}
	if (e.CTCAEGrade == nil || *e.CTCAEGrade != 5) &&
		(e.Outcome == "fatal" && (!serious || !contains(e.SeriousnessCriteria, "death")) ||
			serious && contains(e.SeriousnessCriteria, "death") && e.Outcome != "fatal") {
		c.failf("adverse-event.fatal-outcome", "")
	}
	if contains(e.ActionTaken, "none") && len(e.ActionTaken) > 1 {
		c.failf("adverse-event.action-none-alone", "")
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (c *ruleCheck) session(s mapping.Session) {
	c.envelope(s.Envelope)
	c.infusion(s.Infusion)
	ids := map[string]bool{}
	id := func(r string) {
		if ids[r] {
			c.failf("session.duplicate-record-id", "")
		}
		ids[r] = true
	}
	// Records taken during the session lie within it (session.time-window).
	end := s.Infusion.MonitoringEnd
	if end == "" {
		end = s.Infusion.InfusionEnd
	}
	during := func(at string) {
		if s.Infusion.Status == "not-done" || s.Infusion.InfusionStart == "" {
			return
		}
		if instant(at).Before(instant(s.Infusion.InfusionStart)) || end != "" && instant(at).After(instant(end)) {
			c.failf("session.time-window", "a record taken during the session lies outside it")
		}
	}
	for _, v := range s.Vitals {
		id(v.RecordID)
		c.vitals(v)
		if v.Timepoint == "post-dose-40min" {
			during(v.MeasuredAt)
		}
	}
	for _, a := range s.Assessments {
		id(a.RecordID)
		c.assessment(a)
		if a.Instrument == "MOAA-S" || a.Instrument == "CADSS" {
			during(a.TakenAt)
		}
	}
	for _, e := range s.AdverseEvents {
		id(e.RecordID)
		c.adverseEvent(e, true)
		if s.Infusion.InfusionStart != "" && instant(e.OnsetAt).Before(instant(s.Infusion.InfusionStart)) {
			c.failf("session.time-window", "adverse event before infusion start")
		}
	}
}

func TestExamplesSatisfyRules(t *testing.T) {
	forEachExample(t, func(t *testing.T, kind, _ string, doc []byte) {
		c := &ruleCheck{}
		v := recordType(kind)
		if err := json.Unmarshal(doc, v); err != nil {
			t.Fatal(err)
		}
		switch r := v.(type) {
		case *mapping.Assessment:
			c.envelope(r.Envelope)
			c.assessment(r.AssessmentBody)
		case *mapping.Vitals:
			c.envelope(r.Envelope)
			c.vitals(r.VitalsBody)
		case *mapping.Infusion:
			c.envelope(r.Envelope)
			c.infusion(r.InfusionBody)
		case *mapping.AdverseEvent:
			c.envelope(r.Envelope)
			c.adverseEvent(r.AdverseEventBody, false)
		case *mapping.Session:
			c.session(*r)
		}
		for _, p := range c.problems {
			t.Error(p)
		}
	})
}

// TestRuleCheckerCatchesMistakes makes sure the checker above is not
// vacuous: a few deliberate mistakes must be reported.
func TestRuleCheckerCatchesMistakes(t *testing.T) {
	three, seven := 3, 7
	c := &ruleCheck{}
	c.assessment(mapping.AssessmentBody{Instrument: "GAD-7", Total: &seven, Items: []mapping.Item{
		{Number: 1, Score: &three}, {Number: 2, Score: &three}, {Number: 3, Score: &three}, {Number: 4, Score: &three},
		{Number: 5, Score: &three}, {Number: 6, Score: &three}, {Number: 7, Score: &three}}})
	w, d, total := 80.0, 0.5, 45.0
	c.infusion(mapping.InfusionBody{Drug: "ketamine-iv", Status: "completed", BodyWeightKg: &w, DoseMgPerKg: &d, TotalDoseMg: &total})
	if len(c.problems) != 2 {
		t.Errorf("problems %v, want total-mismatch and dose-weight-mismatch", c.problems)
	}
	// An instrument missing from the checker's own table says so (p20 F5:
	// it said "item 1" and "total-range").
	c = &ruleCheck{}
	c.assessment(mapping.AssessmentBody{Instrument: "XYZ-2", Total: &three, Items: []mapping.Item{{Number: 1, Score: &three}}})
	if len(c.problems) != 1 || !strings.Contains(c.problems[0], "schemas/examples_rules_test.go") {
		t.Errorf("problems %v, want one naming the instruments table of schemas/examples_rules_test.go", c.problems)
	}
}
