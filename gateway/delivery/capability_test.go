package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// capabilityStatement is an EHR's CapabilityStatement listing every type
// the mapping writes with its interactions and the flags its deliveries
// rely on declared true, but for drop: a type mapped to nil is not
// listed, one mapped to interactions is listed without them.
func capabilityStatement(t *testing.T, drop map[string][]string) []byte {
	t.Helper()
	var resources []any
	for _, w := range mapping.Writes() {
		skip, dropped := drop[w.Type]
		if dropped && skip == nil {
			continue
		}
		var ins []any
		for _, in := range append(slices.Clone(w.Interactions), "read", "search-type") {
			if !slices.Contains(skip, in) {
				ins = append(ins, map[string]any{"code": in})
			}
		}
		res := map[string]any{"type": w.Type, "interaction": ins}
		for _, f := range w.Flags {
			res[f] = true
		}
		resources = append(resources, res)
	}
	b, err := json.Marshal(map[string]any{"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1",
		"rest": []any{map[string]any{"mode": "server", "resource": resources,
			"interaction": []any{map[string]any{"code": "transaction"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// statementWorker is a worker with one destination, "ehr", whose
// CapabilityStatement is what statement holds when it is read, and the
// buffer its log lines (JSON) go to, and the EHR's base URL.
func statementWorker(t *testing.T) (*Worker, *atomic.Value, *bytes.Buffer, string) {
	t.Helper()
	statement := &atomic.Value{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write(statement.Load().([]byte))
	}))
	t.Cleanup(srv.Close)
	logs := &bytes.Buffer{}
	w, err := NewWorker(newMemoryOutbox(), []Destination{testDest("ehr", srv.URL+"/fhir")},
		WorkerOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return w, statement, logs, srv.URL + "/fhir"
}

// TestCapabilityResourceTypes: the capability check reads the resource
// types the EHR's CapabilityStatement lists (rest.resource) and warns,
// once per change and naming the destination and the type, of each type
// the gateway delivers (mapping.Writes) that it does not list, or lists
// without an interaction the deliveries use; Capabilities says which.
// The worker still delivers (each delivery's answer is the EHR's to
// give). An EHR without DetectedIssue got no warning, and its deliveries
// failed one by one (probe leftover).
func TestCapabilityResourceTypes(t *testing.T) {
	w, statement, logs, base := statementWorker(t)
	d := w.dests[0]
	const warn = `"level":"WARN","msg":"delivery: destination does not support a resource type the gateway delivers","destination":"ehr"`
	gaps := func() []string {
		var out []string
		for _, g := range w.Capabilities()["ehr"].Unsupported {
			out = append(out, g.Type+":"+strings.Join(g.Missing, ","))
		}
		return out
	}
	for _, step := range []struct {
		name  string
		drop  map[string][]string
		gaps  []string // Capabilities().Unsupported, as type:missing
		lines []string // logged by this check
	}{
		{"every type", nil, nil, nil},
		{"no DetectedIssue, AdverseEvent without delete",
			map[string][]string{"DetectedIssue": nil, "AdverseEvent": {"delete"}},
			[]string{"AdverseEvent:delete", "DetectedIssue:create,update"},
			[]string{warn + `,"resource_type":"AdverseEvent","listed":true,"missing_interactions":"delete"`,
				warn + `,"resource_type":"DetectedIssue","listed":false,"missing_interactions":"create,update"`}},
		{"the same again: not logged again",
			map[string][]string{"DetectedIssue": nil, "AdverseEvent": {"delete"}},
			[]string{"AdverseEvent:delete", "DetectedIssue:create,update"}, nil},
		{"every type again", nil, nil,
			[]string{`"level":"INFO","msg":"delivery: destination supports every resource type the gateway delivers","destination":"ehr"`}},
	} {
		t.Run(step.name, func(t *testing.T) {
			statement.Store(capabilityStatement(t, step.drop))
			logs.Reset()
			d.checkCapabilities(context.Background())
			if got := gaps(); !slices.Equal(got, step.gaps) {
				t.Errorf("Capabilities().Unsupported = %v, want %v", got, step.gaps)
			}
			for _, line := range step.lines {
				if !strings.Contains(logs.String(), line) {
					t.Errorf("log lacks %s:\n%s", line, logs.String())
				}
			}
			if n := strings.Count(logs.String(), "resource type"); n != len(step.lines) {
				t.Errorf("%d lines about resource types, want %d:\n%s", n, len(step.lines), logs.String())
			}
		})
	}
	// A destination that receives vitals only is sent Patients,
	// Observations and the DetectedIssue a vitals correction retires
	// (mapping.Writes): a statement without AdverseEvent is all it needs.
	vitals := testDest("vitals-only", base)
	vitals.Filter.Kinds = []string{"vitals"}
	wv, err := NewWorker(newMemoryOutbox(), []Destination{vitals}, WorkerOptions{Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	statement.Store(capabilityStatement(t, map[string][]string{"AdverseEvent": nil, "Observation": {"update"}}))
	logs.Reset()
	wv.dests[0].checkCapabilities(context.Background())
	if got := wv.Capabilities()["vitals-only"].Unsupported; len(got) != 1 || got[0].Type != "Observation" {
		t.Errorf("a vitals-only destination: unsupported %+v, want Observation only", got)
	}
	if strings.Contains(logs.String(), "AdverseEvent") || !strings.Contains(logs.String(), `"resource_type":"Observation"`) {
		t.Errorf("a vitals-only destination:\n%s", logs.String())
	}
	// A statement without rest.resource says nothing about the types
	// (optional in R4): no gaps, not a warning for every type.
	statement.Store([]byte(`{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server"}]}`))
	d.checkCapabilities(context.Background())
	if got := w.Capabilities()["ehr"].Unsupported; len(got) != 0 {
		t.Errorf("a statement without rest.resource: %d types unsupported, want none", len(got))
	}
}

// TestCapabilityChecks: CapabilityChecks tells, for every destination in
// configuration order, what its last CapabilityStatement lacks and whether
// the last check failed (since when, why: no PHI, the reason only), so
// that readiness, the console and the metrics show what the log warns of:
// a destination not checked yet has nothing to say; a failed check keeps
// the gaps of the last statement read; a check that succeeds again clears
// the failure.
func TestCapabilityChecks(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusOK)
	statement := capabilityStatement(t, map[string][]string{"DetectedIssue": nil})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := int(status.Load()); s != http.StatusOK {
			w.WriteHeader(s)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write(statement)
	}))
	t.Cleanup(srv.Close)
	clock := newFakeClock()
	w, err := NewWorker(newMemoryOutbox(), []Destination{testDest("ehr", srv.URL+"/fhir"), testDest("lab", srv.URL+"/fhir")},
		WorkerOptions{Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	show := func(c CapabilityCheck) string {
		var gaps []string
		for _, g := range c.Unsupported {
			gaps = append(gaps, g.Type+":"+strings.Join(g.Missing, ","))
		}
		s := c.Destination + " gaps=" + strings.Join(gaps, ";") + " failed=" + c.Failed
		if !c.Checked.IsZero() {
			s += " checked=" + c.Checked.Format(time.TimeOnly)
		}
		if !c.FailedSince.IsZero() {
			s += " since=" + c.FailedSince.Format(time.TimeOnly)
		}
		return s
	}
	checks := func() []string {
		var out []string
		for _, c := range w.CapabilityChecks() {
			out = append(out, show(c))
		}
		return out
	}
	ehr := w.dests[0]
	for _, step := range []struct {
		name   string
		status int
		want   []string
	}{
		{"not checked yet", 0, []string{"ehr gaps= failed=", "lab gaps= failed="}},
		{"a statement without DetectedIssue", http.StatusOK,
			[]string{"ehr gaps=DetectedIssue:create,update failed= checked=12:01:00", "lab gaps= failed="}},
		{"the check fails: the gaps read stay", http.StatusServiceUnavailable,
			[]string{"ehr gaps=DetectedIssue:create,update failed=metadata: http 503 checked=12:01:00 since=12:02:00", "lab gaps= failed="}},
		{"fails again: since the first failure", http.StatusBadGateway,
			[]string{"ehr gaps=DetectedIssue:create,update failed=metadata: http 502 checked=12:01:00 since=12:02:00", "lab gaps= failed="}},
		{"read again", http.StatusOK,
			[]string{"ehr gaps=DetectedIssue:create,update failed= checked=12:04:00", "lab gaps= failed="}},
	} {
		t.Run(step.name, func(t *testing.T) {
			if step.status != 0 {
				status.Store(int64(step.status))
				ehr.checkCapabilities(context.Background())
			}
			if got := checks(); !slices.Equal(got, step.want) {
				t.Errorf("CapabilityChecks() = %q, want %q", got, step.want)
			}
			clock.Advance(time.Minute)
		})
	}
	// A destination that is never read (the check turned off) says nothing.
	off, err := NewWorker(newMemoryOutbox(), []Destination{testDest("ehr", srv.URL+"/fhir")}, WorkerOptions{CapabilityInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if got := off.CapabilityChecks(); len(got) != 1 || show(got[0]) != "ehr gaps= failed=" {
		t.Errorf("CapabilityChecks() without checks = %+v", got)
	}
}

// TestCapabilityFlags: the gateway delivers Patients by conditional create,
// corrections and new versions by conditional update, and AdverseEvents by
// a PUT of their id that creates them: an EHR whose CapabilityStatement
// declares conditionalCreate, conditionalUpdate or updateCreate false for
// a type it is sent, or leaves it out (R4's default: false), has a gap
// naming the type and the flag, on the same surfaces as a missing
// interaction (Capabilities, CapabilityChecks, the log). The worker still
// delivers.
func TestCapabilityFlags(t *testing.T) {
	w, statement, logs, _ := statementWorker(t)
	// with is the complete statement with the flags of types set to v
	// (nil: left out).
	with := func(v any, set map[string][]string) []byte {
		var cs map[string]any
		if err := json.Unmarshal(capabilityStatement(t, nil), &cs); err != nil {
			t.Fatal(err)
		}
		for _, r := range cs["rest"].([]any)[0].(map[string]any)["resource"].([]any) {
			res := r.(map[string]any)
			for _, f := range set[res["type"].(string)] {
				if v == nil {
					delete(res, f)
				} else {
					res[f] = v
				}
			}
		}
		b, _ := json.Marshal(cs)
		return b
	}
	every := map[string][]string{}
	var everyGap []string
	for _, wr := range mapping.Writes() {
		every[wr.Type] = wr.Flags
		everyGap = append(everyGap, wr.Type+"::"+strings.Join(wr.Flags, ","))
	}
	const warn = `"level":"WARN","msg":"delivery: destination does not support a resource type the gateway delivers","destination":"ehr"`
	for _, step := range []struct {
		name      string
		statement []byte
		gaps      []string // type:missing interactions:missing flags
		lines     []string
	}{
		{"declared true", capabilityStatement(t, nil), nil, nil},
		{"conditionalCreate false for Patient", with(false, map[string][]string{"Patient": {"conditionalCreate"}}),
			[]string{"Patient::conditionalCreate"},
			[]string{warn + `,"resource_type":"Patient","listed":true,"missing_interactions":"","missing_flags":"conditionalCreate"`}},
		{"conditionalUpdate false for Observation", with(false, map[string][]string{"Observation": {"conditionalUpdate"}}),
			[]string{"Observation::conditionalUpdate"},
			[]string{warn + `,"resource_type":"Observation","listed":true,"missing_interactions":"","missing_flags":"conditionalUpdate"`}},
		{"updateCreate false for AdverseEvent", with(false, map[string][]string{"AdverseEvent": {"updateCreate"}}),
			[]string{"AdverseEvent::updateCreate"},
			[]string{warn + `,"resource_type":"AdverseEvent","listed":true,"missing_interactions":"","missing_flags":"updateCreate"`}},
		{"every flag absent: R4's default false", with(nil, every), everyGap, nil},
		{"declared true again", capabilityStatement(t, nil), nil, nil},
	} {
		t.Run(step.name, func(t *testing.T) {
			statement.Store(step.statement)
			logs.Reset()
			w.dests[0].checkCapabilities(context.Background())
			var got []string
			for _, g := range w.Capabilities()["ehr"].Unsupported {
				got = append(got, g.Type+":"+strings.Join(g.Missing, ",")+":"+strings.Join(g.Flags, ","))
			}
			if !slices.Equal(got, step.gaps) {
				t.Errorf("Capabilities().Unsupported = %q, want %q", got, step.gaps)
			}
			var checked []string
			for _, c := range w.CapabilityChecks() {
				for _, g := range c.Unsupported {
					checked = append(checked, g.Type+":"+strings.Join(g.Missing, ",")+":"+strings.Join(g.Flags, ","))
				}
			}
			if !slices.Equal(checked, step.gaps) {
				t.Errorf("CapabilityChecks() gaps = %q, want %q", checked, step.gaps)
			}
			for _, line := range step.lines {
				if !strings.Contains(logs.String(), line) {
					t.Errorf("log lacks %s:\n%s", line, logs.String())
				}
			}
		})
	}
}

// TestCapabilityCheckCounts: a type the statement does not list, or lists
// without an interaction the deliveries use, is unsupported; one it lists
// with every interaction but without declaring a flag true (which many
// EHRs honour undeclared) counts apart, in undeclaredFlags only.
func TestCapabilityCheckCounts(t *testing.T) {
	c := CapabilityCheck{Unsupported: []TypeGap{
		{Type: "DetectedIssue", Missing: []string{"create"}, Flags: []string{"conditionalCreate"}},
		{Type: "AdverseEvent", Listed: true, Missing: []string{"update"}},
		{Type: "Patient", Listed: true, Flags: []string{"conditionalCreate"}},
	}}
	if unsupported, flags := c.Counts(); unsupported != 2 || flags != 1 {
		t.Errorf("Counts() = %d, %d; want 2, 1", unsupported, flags)
	}
}

// TestCapabilityRecheckAfterDelivery: a delivery that succeeds while the
// last capability check failed has the statement read again at once (the
// destination answers), once; one while the check stands does not.
func TestCapabilityRecheckAfterDelivery(t *testing.T) {
	var status atomic.Int64
	status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s := int(status.Load()); s != http.StatusOK {
			w.WriteHeader(s)
			return
		}
		w.Header().Set("Content-Type", "application/fhir+json")
		w.Write(capabilityStatement(t, nil))
	}))
	t.Cleanup(srv.Close)
	w, err := NewWorker(newMemoryOutbox(), []Destination{testDest("ehr", srv.URL+"/fhir")}, WorkerOptions{Clock: newFakeClock()})
	if err != nil {
		t.Fatal(err)
	}
	d := w.dests[0]
	now := time.Now()
	d.checkCapabilities(context.Background())
	d.track(Result{Outcome: OutcomeRetry}, now, now)
	if d.takeRecheck() {
		t.Errorf("a failed attempt asks for a recheck")
	}
	d.track(Result{Outcome: OutcomeDone}, now, now)
	if !d.takeRecheck() || d.takeRecheck() {
		t.Errorf("a delivery after a failed check: want one recheck")
	}
	status.Store(http.StatusOK)
	d.checkCapabilities(context.Background())
	d.track(Result{Outcome: OutcomeDone}, now, now)
	if d.takeRecheck() {
		t.Errorf("a delivery while the check stands asks for a recheck")
	}
	if c := w.CapabilityChecks(); len(c) != 1 || c[0].Failed != "" {
		t.Errorf("after the recheck: %+v, want it standing", c)
	}
}
