package ingest_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// heartRateUnitStrict is a stricter profile of the heart rate's unit: the
// mapping's "/min" breaks it, as a mapping that changed the unit breaks
// the real one (finding p42 F1: {beats}/min).
func heartRateUnitStrict(doc map[string]any, expr string) error {
	code, _ := doc["code"].(map[string]any)
	codings, _ := code["coding"].([]any)
	for _, c := range codings {
		if m, _ := c.(map[string]any); m["code"] == "8867-4" {
			return &outcome.Error{Kind: outcome.Unprocessable, Issues: []outcome.Issue{{Severity: "error", Code: "code-invalid",
				Rule: "profile.vital-unit", Expression: expr + ".valueQuantity", Message: "a vital sign's unit is one of the gateway's vital-sign units"}}}
		}
	}
	return nil
}

// TestDryRunVerdict: the dry run (Service.DryRun, and Ingest with
// dryRun=true, which the CLI's map and the console's playground share)
// gives the verdict ingest gives a record before it reads the store: the
// clock (finding p42 F3), the profiles of the mapped resources (F1: a
// profile the gateway's own output breaks is the gateway's failure, 500,
// naming the rule and the entry), the tenant's thresholds (F9), and the
// warnings the stored answer carries (F7).
func TestDryRunVerdict(t *testing.T) {
	now := time.Date(2026, 12, 6, 1, 35, 0, 0, time.UTC)
	strict := mapping.DefaultSafety()
	strict.HeartRate.CriticalHigh = 100
	const fast = `"timepoint": "other", "timepointText": "check", "measuredAt": "2026-12-06T01:00:00Z", "heartRate": 105`
	above := rec("I-ABOVE", "1", "P-1", "", strings.Replace(infusionBody, `"totalDoseMg": 40`, `"totalDoseMg": 40, "administeredDoseMg": 45`, 1))
	tests := []struct {
		name    string
		tenant  string
		kind    mapping.Kind
		doc     string
		strict  bool   // the mapping's output breaks a profile
		errKind string // "" answered
		rules   []string
		interp  string // the heart rate's interpretation
		warn    []string
	}{
		{name: "future clinical time", kind: mapping.KindVitals, doc: vitalsAt("V-F", "1", "2026-12-06T01:20:00Z", "2026-12-06T14:35:00Z"),
			errKind: "unprocessable", rules: []string{ingest.RuleTimeFuture}},
		{name: "future lastUpdated", kind: mapping.KindVitals, doc: vitalsAt("V-F2", "1", "2026-12-06T14:35:00Z", "2026-12-06T01:20:00Z"),
			errKind: "unprocessable", rules: []string{ingest.RuleLastUpdatedFuture}},
		{name: "output breaks its profile", kind: mapping.KindVitals, doc: rec("V-P", "1", "P-1", "", fast), strict: true,
			errKind: "internal", rules: []string{ingest.RuleMappingNonconformant, "profile.vital-unit"}},
		{name: "default thresholds", kind: mapping.KindVitals, doc: rec("V-T", "1", "P-1", "", fast), interp: ""},
		{name: "tenant's thresholds", tenant: "strict", kind: mapping.KindVitals, doc: rec("V-T", "1", "P-1", "", fast), interp: "HH"},
		{name: "warning", kind: mapping.KindInfusion, doc: above, warn: []string{"infusion.administered-above-plan"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGateway(t, app.Config{Now: func() time.Time { return now }, TenantSafety: map[string]mapping.Safety{"strict": strict}})
			if tt.strict {
				ingest.SetProfileCheck(g.a.Ingest.Pipeline(), heartRateUnitStrict)
			}
			v, err := g.a.Ingest.DryRun(context.Background(), tt.tenant, tt.kind, []byte(tt.doc), false)
			sc := auditlog.NewScope("ingest", &auth.Principal{ClientID: "test", Tenant: tt.tenant})
			bundle, ierr := g.a.Ingest.Ingest(context.Background(), sc, tt.kind, []byte(tt.doc), true, engine.Answer{})
			if tt.errKind != "" {
				for name, err := range map[string]error{"DryRun": err, "Ingest(dryRun)": ierr, "Ingest": g.ingest(tt.tenant, tt.kind, tt.doc)} {
					kind, issues := outcome.From(err)
					if err == nil || kind.String() != tt.errKind || !slices.Equal(outcome.Rules(err), tt.rules) {
						t.Errorf("%s = %v %v, want %s %v", name, kind, outcome.Rules(err), tt.errKind, tt.rules)
					}
					if tt.strict && len(issues) > 1 && (issues[1].Expression != "Bundle.entry[1].resource.valueQuantity" ||
						!strings.Contains(issues[0].Message, "defect of the gateway's mapping")) {
						t.Errorf("%s issues = %+v, want the entry and the gateway's defect", name, issues)
					}
				}
				if n := g.count(t, tt.tenant, "Observation", ""); n != 0 {
					t.Errorf("%d Observations stored, want none", n)
				}
				return
			}
			if err != nil || ierr != nil {
				t.Fatalf("DryRun = %v, Ingest(dryRun) = %v", err, ierr)
			}
			if string(bundle) != string(v.Bundle) {
				t.Errorf("Ingest(dryRun) answered another Bundle than DryRun")
			}
			var rules []string
			for _, w := range v.Warnings {
				rules = append(rules, w.Rule)
			}
			if !slices.Equal(rules, tt.warn) {
				t.Errorf("warnings = %v, want %v", rules, tt.warn)
			}
			if tt.kind == mapping.KindVitals {
				if got := heartRateInterpretation(t, v.Bundle); got != tt.interp {
					t.Errorf("heart rate interpretation = %q, want %q", got, tt.interp)
				}
			}
		})
	}
}

// heartRateInterpretation is the interpretation code of a Bundle's heart
// rate ("" for none).
func heartRateInterpretation(t *testing.T, bundle []byte) string {
	t.Helper()
	var b struct {
		Entry []struct {
			Resource struct {
				Code           struct{ Coding []struct{ Code string } }
				Interpretation []struct{ Coding []struct{ Code string } }
			}
		}
	}
	if err := json.Unmarshal(bundle, &b); err != nil {
		t.Fatal(err)
	}
	for _, e := range b.Entry {
		if len(e.Resource.Code.Coding) > 0 && e.Resource.Code.Coding[0].Code == "8867-4" {
			if len(e.Resource.Interpretation) == 0 {
				return ""
			}
			return e.Resource.Interpretation[0].Coding[0].Code
		}
	}
	t.Fatal("no heart rate in the Bundle")
	return ""
}
