package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestMapCommandVerdict: map gives the verdict ingest and the dry run give
// (ingest.Service.DryRun): a time in the future is refused (finding p42
// F3), the thresholds are --config's, a tenant's with --tenant (F9), and
// the warnings a stored record's answer carries are printed on stderr
// (F7).
func TestMapCommandVerdict(t *testing.T) {
	const vitals = `{"source": {"system": "c", "recordId": "V-1", "version": "1"}, "patient": {"id": "P-1"},
		"timepoint": "pre-dose", "measuredAt": "2026-03-02T09:15:00-05:00", "heartRate": 105}`
	future := strings.Replace(vitals, "2026-03-02T09:15:00", "2099-03-02T09:15:00", 1)
	above := `{"source": {"system": "c", "recordId": "I-1", "version": "1"}, "patient": {"id": "P-1"},
		"drug": "ketamine-iv", "status": "completed", "doseMgPerKg": 0.5, "bodyWeightKg": 80, "totalDoseMg": 40,
		"administeredDoseMg": 45, "infusionStart": "2026-03-02T09:00:00-05:00", "infusionEnd": "2026-03-02T09:40:00-05:00"}`
	config := writeTemp(t, "c.json", `{"safety": {"vitals": {"heartRate": {"high": 100}},
		"tenants": {"strict": {"vitals": {"heartRate": {"criticalHigh": 100}}}}}}`)
	tests := []struct {
		name      string
		args      []string
		input     string
		code      int
		stdout    []string
		stderr    string
		notStdout string // never in the OperationOutcome
		interp    string // the heart rate's interpretation, for a Bundle
	}{
		{name: "future time", args: []string{"--kind", "vitals"}, input: future, code: exitInvalid,
			stdout: []string{`"code": "record.time-future"`, `"/measuredAt"`}},
		{name: "defaults", args: []string{"--kind", "vitals"}, input: vitals},
		{name: "config", args: []string{"--kind", "vitals", "--config", config}, input: vitals, interp: "H"},
		{name: "tenant", args: []string{"--kind", "vitals", "--config", config, "--tenant", "strict"}, input: vitals, interp: "HH"},
		{name: "tenant unknown", args: []string{"--kind", "vitals", "--config", config, "--tenant", "other"}, input: vitals,
			code: exitUsage, stderr: "safety.tenants"},
		// An unknown property is named on stderr, on the developer's own
		// file; the OperationOutcome names its object only (F6).
		{name: "unknown property", args: []string{"--kind", "vitals"}, input: strings.Replace(vitals, `"heartRate"`, `"pulseRate": 1, "heartRate"`, 1),
			code: exitInvalid, stdout: []string{`"code": "schema.additional-property"`}, notStdout: "pulseRate",
			stderr: "schema.additional-property: the vitals schema does not define the property at /pulseRate"},
		{name: "unknown nested property", args: []string{"--kind", "vitals"}, input: strings.Replace(vitals, `"id": "P-1"`, `"id": "P-1", "ssn": "x"`, 1),
			code: exitInvalid, stderr: "at /patient/ssn"},
		{name: "warning", args: []string{"--kind", "infusion"}, input: above,
			stderr: "warning infusion.administered-above-plan at /administeredDoseMg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errOut, code := cli(t, tt.input, append(append([]string{"map"}, tt.args...), "-")...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stdout %.300s, stderr %s", code, tt.code, out, errOut)
			}
			for _, want := range tt.stdout {
				if !strings.Contains(out, want) {
					t.Errorf("stdout lacks %s: %.500s", want, out)
				}
			}
			if tt.notStdout != "" && strings.Contains(out, tt.notStdout) {
				t.Errorf("stdout names %s: %s", tt.notStdout, out)
			}
			if !strings.Contains(errOut, tt.stderr) {
				t.Errorf("stderr %q, want %q", errOut, tt.stderr)
			}
			if tt.code != 0 || tt.input != vitals {
				return
			}
			var b struct {
				Entry []struct {
					Resource struct {
						Code           struct{ Coding []struct{ Code string } }
						Interpretation []struct{ Coding []struct{ Code string } }
					}
				}
			}
			if err := json.Unmarshal([]byte(out), &b); err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, e := range b.Entry {
				if len(e.Resource.Code.Coding) > 0 && e.Resource.Code.Coding[0].Code == "8867-4" && len(e.Resource.Interpretation) > 0 {
					got = e.Resource.Interpretation[0].Coding[0].Code
				}
			}
			if got != tt.interp {
				t.Errorf("heart rate interpretation %q, want %q", got, tt.interp)
			}
		})
	}
}
