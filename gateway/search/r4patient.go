package search

import (
	_ "embed"
	"strings"
	"sync"
)

// r4PatientText holds R4's patient search parameters (the FHIRPath of each
// type's) and CompartmentDefinition/patient (the parameters through which
// a resource of each type is in a patient's compartment); see its header.
//
//go:embed r4patient.txt
var r4PatientText string

// r4PatientParam is R4's patient search parameter of one resource type.
type r4PatientParam struct {
	id   string // SearchParameter id: clinical-patient, Immunization's too
	expr string // the type's part of its expression
}

// r4PatientData is r4patient.txt, read.
type r4PatientData struct {
	params      map[string]r4PatientParam // resource type -> its patient parameter
	compartment map[string][]string       // resource type -> its compartment parameters
}

var r4Patient = sync.OnceValue(func() r4PatientData {
	d := r4PatientData{params: map[string]r4PatientParam{}, compartment: map[string][]string{}}
	for line := range strings.Lines(r4PatientText) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && f[0] == "patient":
			d.params[f[1]] = r4PatientParam{id: f[2], expr: strings.Join(f[3:], " ")}
		case len(f) >= 3 && f[0] == "compartment":
			d.compartment[f[1]] = f[2:]
		}
	}
	return d
})

// r4PatientPaths returns the element paths of R4's patient parameter of
// resource type rt, nil if R4 defines none for it. Every one of R4's is a
// union of "Type.path" and "Type.path.where(resolve() is Patient)", the
// references at path that are Patients (patientRef's meaning).
func r4PatientPaths(rt string) []string {
	sp, ok := r4Patient().params[rt]
	if !ok {
		return nil
	}
	var out []string
	for part := range strings.SplitSeq(sp.expr, "|") {
		part = strings.TrimSpace(part)
		part = strings.TrimPrefix(part, rt+".")
		part = strings.TrimSuffix(part, ".where(resolve() is Patient)")
		out = append(out, part)
	}
	return out
}
