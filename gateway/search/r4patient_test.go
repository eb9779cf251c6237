package search

import (
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

// TestPatientParamIsR4s: every type R4 gives a patient search parameter
// has it as R4 defines it (its paths, the references there that are
// Patients, R4's SearchParameter as the definition), the hand-written
// ones (Observation, Condition, ...) included; the gateway's own "any
// reference to a Patient" is left to the types R4 gives none.
func TestPatientParamIsR4s(t *testing.T) {
	n := 0
	for _, rt := range r4Types {
		if rt == "Parameters" {
			continue
		}
		i := slices.IndexFunc(defs(rt), func(d def) bool { return d.name == "patient" })
		sp, isR4 := r4Patient().params[rt]
		if rt == "Patient" { // Patient has no patient parameter: _id is itself
			if i >= 0 || isR4 {
				t.Errorf("Patient has a patient parameter")
			}
			continue
		}
		if i < 0 {
			if isR4 {
				t.Errorf("%s has no patient parameter", rt)
			}
			continue // AdverseEvent: R4 has none, the gateway its subject
		}
		d := defs(rt)[i]
		p := d.param(rt)
		if !isR4 {
			if !d.compartment || p.Definition != "" {
				t.Errorf("%s patient: R4 defines none, want the gateway's own without definition; got %+v", rt, p)
			}
			continue
		}
		n++
		var want []string
		for part := range strings.SplitSeq(sp.expr, " | ") {
			want = append(want, strings.TrimSuffix(strings.TrimPrefix(part, rt+"."), ".where(resolve() is Patient)"))
		}
		if d.compartment || d.only != "Patient" || !slices.Equal(p.Paths, want) || !slices.Equal(p.Targets, []string{"Patient"}) ||
			p.Definition != r4SearchParameterBase+sp.id {
			t.Errorf("%s patient = paths %v targets %v definition %q (patientOnly %v); want R4's %s: paths %v, Patient only, %s",
				rt, p.Paths, p.Targets, p.Definition, d.only == "Patient", sp.expr, want, r4SearchParameterBase+sp.id)
		}
		for _, path := range p.Paths { // each is a Reference element of the type
			node, typ := r4.ResourceNode(rt), ""
			for step := range strings.SplitSeq(path, ".") {
				typ, node, _ = node.Member(step)
			}
			if typ != "Reference" {
				t.Errorf("%s patient path %s is a %q, not a Reference", rt, path, typ)
			}
		}
	}
	if n != 65 {
		t.Errorf("%d types have R4's patient parameter, want R4's 65", n)
	}
}

// TestPatientCompartmentIsR4s: the compartment is R4's 67 types, each
// through R4's patient parameter or, where R4 defines none, the one
// parameter CompartmentDefinition/patient lists for it.
func TestPatientCompartmentIsR4s(t *testing.T) {
	comp := r4Patient().compartment
	if len(comp) != 67 {
		t.Fatalf("CompartmentDefinition/patient has %d types, want 67", len(comp))
	}
	for rt, params := range comp {
		got, ok := PatientCompartment(rt)
		var want string
		switch _, isR4 := r4Patient().params[rt]; {
		case rt == "Patient":
			want = "_id"
		case isR4:
			want = "patient"
		default:
			want = params[0]
			if len(params) != 1 {
				t.Errorf("%s: R4 lists %v and has no patient parameter", rt, params)
			}
		}
		if !ok || got != want {
			t.Errorf("PatientCompartment(%s) = %q, %v; want %q", rt, got, ok, want)
		}
		if p, ok := Lookup(rt, got); !ok || p.Type != TypeReference && got != "_id" ||
			p.Definition != R4Definition(rt, got) || R4Definition(rt, got) == "" {
			t.Errorf("%s compartment parameter %s = %+v, %v; want R4's reference parameter", rt, got, p, ok)
		}
	}
	for _, rt := range []string{"Device", "Contract", "GuidanceResponse", "Practitioner", "Medication"} {
		if p, ok := PatientCompartment(rt); ok {
			t.Errorf("PatientCompartment(%s) = %q; R4's compartment does not list it", rt, p)
		}
	}
}
