package profile

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

//go:generate go run ./internal/gen -defs /tmp/npmchk/medplum/package/dist/fhir/r4 -fhirjs /tmp/npmchk/package/profiles/types.json -out .

// r4baseGz holds, gzipped, the R4 StructureDefinitions and ValueSets the
// profiles derive from and the vital-signs profiles the output claims;
// internal/gen extracted them from HL7's definitions (its doc comment
// names the source and version).
//
//go:embed r4base.json.gz
var r4baseGz []byte

// library is the R4 base: StructureDefinitions by url and, for the core
// types and resources, their elements by path; ValueSets by url.
type library struct {
	source string
	sds    map[string]*StructureDefinition
	// core maps a path of a core type or resource ("Observation.status",
	// "Coding.system") to its definition.
	core      map[string]*ElementDefinition
	valueSets map[string]*ValueSet
}

// r4Prefix is the canonical prefix of HL7's R4 StructureDefinitions.
const r4Prefix = "http://hl7.org/fhir/StructureDefinition/"

// loadLibrary decodes the embedded R4 base.
func loadLibrary() (*library, error) {
	zr, err := gzip.NewReader(bytes.NewReader(r4baseGz))
	if err != nil {
		return nil, fmt.Errorf("r4 base: %w", err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("r4 base: %w", err)
	}
	var f struct {
		Source               string                 `json:"source"`
		StructureDefinitions []*StructureDefinition `json:"structureDefinitions"`
		ValueSets            []*ValueSet            `json:"valueSets"`
	}
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, fmt.Errorf("r4 base: %w", err)
	}
	lib := &library{source: f.Source, sds: map[string]*StructureDefinition{},
		core: map[string]*ElementDefinition{}, valueSets: map[string]*ValueSet{}}
	for _, sd := range f.StructureDefinitions {
		lib.sds[sd.URL] = sd
		if sd.Derivation == "constraint" {
			continue
		}
		for _, e := range sd.Snapshot.Element {
			if e.SliceName == "" && !strings.Contains(e.ID, ":") {
				lib.core[e.Path] = e
			}
		}
	}
	for _, vs := range f.ValueSets {
		lib.valueSets[vs.URL] = vs
	}
	return lib, nil
}

// typeSD returns the StructureDefinition of an R4 type or resource.
func (l *library) typeSD(code string) *StructureDefinition { return l.sds[r4Prefix+code] }

// coreOf returns the R4 definition an element constrains (nil for none).
func (l *library) coreOf(e *ElementDefinition) *ElementDefinition {
	if e.Base == nil {
		return nil
	}
	return l.core[e.Base.Path]
}
