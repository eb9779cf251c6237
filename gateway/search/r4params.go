package search

import (
	_ "embed"
	"strings"
	"sync"
)

// r4ParamsText lists the search parameters HL7 FHIR R4 (4.0.1) defines,
// one a line: base type, code, SearchParameter id (taken from R4's
// search-parameters.json; its canonical URL is r4SearchParameterBase+id).
//
//go:embed r4params.txt
var r4ParamsText string

const r4SearchParameterBase = "http://hl7.org/fhir/SearchParameter/"

// r4Params maps "Type code" to the id of R4's SearchParameter.
var r4Params = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for line := range strings.Lines(r4ParamsText) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) == 3 {
			m[f[0]+" "+f[1]] = f[2]
		}
	}
	return m
})

// R4Definition returns the canonical URL of the SearchParameter with which
// HL7 FHIR R4 defines the parameter code of resourceType
// (http://hl7.org/fhir/SearchParameter/clinical-code for Observation's
// code, .../Resource-id for _id), or "" when R4 defines none for that type.
func R4Definition(resourceType, code string) string {
	m := r4Params()
	for _, base := range []string{resourceType, "Resource", "DomainResource"} {
		if base == "DomainResource" && (resourceType == "Binary" || resourceType == "Bundle" || resourceType == "Parameters") {
			continue
		}
		if id, ok := m[base+" "+code]; ok {
			return r4SearchParameterBase + id
		}
	}
	return ""
}
