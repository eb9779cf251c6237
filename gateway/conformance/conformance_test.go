package conformance_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/profile"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas/r4"
)

func profiles(t *testing.T) *profile.Set {
	t.Helper()
	p, err := profile.New()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestResources: every conformance resource is valid R4, with a unique id
// and url, and the ImplementationGuide lists all the others.
func TestResources(t *testing.T) {
	all, err := conformance.All(profiles(t))
	if err != nil {
		t.Fatal(err)
	}
	v := r4.New(r4.Options{})
	seen := map[string]bool{}
	counts := map[string]int{}
	for _, r := range all {
		if res := v.Validate(r.JSON); !res.Valid() {
			t.Errorf("%s/%s is not valid R4: %+v", r.ResourceType, r.ID, res.Issues)
		}
		key := r.ResourceType + "/" + r.ID
		if seen[key] || seen[r.URL] || r.URL == "" {
			t.Errorf("%s: duplicate or no url %q", key, r.URL)
		}
		seen[key], seen[r.URL] = true, true
		counts[r.ResourceType]++
	}
	for typ, want := range map[string]int{"StructureDefinition": 24, "ValueSet": 20, "CodeSystem": 2,
		"SearchParameter": 4, "OperationDefinition": 2, "ImplementationGuide": 1} {
		if counts[typ] != want {
			t.Errorf("%d %s, want %d", counts[typ], typ, want)
		}
	}
	var ig conformance.ImplementationGuide
	if err := json.Unmarshal(all[len(all)-1].JSON, &ig); err != nil || ig.ResourceType != "ImplementationGuide" {
		t.Fatalf("the last resource is not the ImplementationGuide: %v", err)
	}
	if ig.URL != conformance.GuideURL || ig.PackageID != conformance.PackageName || ig.Version != mapping.Version ||
		len(ig.Definition.Resource) != len(all)-1 {
		t.Errorf("ImplementationGuide %s %s %s lists %d of %d resources", ig.URL, ig.PackageID, ig.Version, len(ig.Definition.Resource), len(all)-1)
	}
	for _, r := range ig.Definition.Resource {
		if !seen[r.Reference.Reference] {
			t.Errorf("the guide lists %s, which is not published", r.Reference.Reference)
		}
	}
}

// TestRuleCodeSystem: every rule a profile reports is in the
// validation-rule CodeSystem.
func TestRuleCodeSystem(t *testing.T) {
	var codes []string
	for _, cs := range conformance.CodeSystems() {
		if *cs.Id == "validation-rule" {
			for _, c := range cs.Concept {
				codes = append(codes, c.Code)
			}
		}
	}
	for _, r := range append(profile.Rules(), profile.Rule{ID: "profile.subject"}, profile.Rule{ID: "assessment.total-mismatch"}) {
		if !slices.Contains(codes, r.ID) {
			t.Errorf("validation-rule lacks %s", r.ID)
		}
	}
}

// TestPackage: the NPM package unpacks into the layout of the FHIR package
// specification (hl7.org/fhir/packages.html): everything under package/,
// package/package.json naming the package, its FHIR version and its
// dependency on hl7.fhir.r4.core, package/.index.json listing exactly the
// resource files with their id, url, version and (StructureDefinitions)
// kind and type; each resource file a valid R4 resource. The same
// resources give the same bytes.
func TestPackage(t *testing.T) {
	p := profiles(t)
	var buf, again bytes.Buffer
	if err := conformance.WritePackage(&buf, p); err != nil {
		t.Fatal(err)
	}
	if err := conformance.WritePackage(&again, p); err != nil || !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Errorf("two packages of the same resources differ (%v)", err)
	}
	files := untar(t, buf.Bytes())

	var manifest map[string]any
	if err := json.Unmarshal(files["package/package.json"], &manifest); err != nil {
		t.Fatalf("package/package.json: %v", err)
	}
	deps, _ := manifest["dependencies"].(map[string]any)
	fv, _ := manifest["fhirVersions"].([]any)
	if manifest["name"] != "ketamine-gateway.fhir" || manifest["version"] != mapping.Version ||
		manifest["canonical"] != mapping.Canonical || len(fv) != 1 || fv[0] != "4.0.1" || deps["hl7.fhir.r4.core"] != "4.0.1" {
		t.Errorf("package.json = %v", manifest)
	}

	var index struct {
		IndexVersion int `json:"index-version"`
		Files        []struct {
			Filename, ResourceType, ID, URL, Version, Kind, Type string
		} `json:"files"`
	}
	if err := json.Unmarshal(files["package/.index.json"], &index); err != nil {
		t.Fatalf("package/.index.json: %v", err)
	}
	if index.IndexVersion != 2 || len(index.Files) != len(files)-2 {
		t.Errorf(".index.json: index-version %d, %d files for %d in the package", index.IndexVersion, len(index.Files), len(files)-2)
	}
	v := r4.New(r4.Options{})
	name := regexp.MustCompile(`^[A-Z][A-Za-z]+-[A-Za-z0-9\-.]{1,64}\.json$`)
	kg := 0
	for _, f := range index.Files {
		body, ok := files["package/"+f.Filename]
		if !ok || !name.MatchString(f.Filename) {
			t.Errorf("index entry %s: no such file, or not named Type-id.json", f.Filename)
			continue
		}
		if res := v.Validate(body); !res.Valid() {
			t.Errorf("%s is not valid R4: %+v", f.Filename, res.Issues)
		}
		var head map[string]any
		_ = json.Unmarshal(body, &head)
		if head["resourceType"] != f.ResourceType || head["id"] != f.ID || head["url"] != f.URL || head["version"] != f.Version {
			t.Errorf("index entry %s does not match the file: %+v", f.Filename, f)
		}
		if f.ResourceType == "StructureDefinition" && (f.Kind == "" || f.Type == "") {
			t.Errorf("index entry %s lacks kind or type", f.Filename)
		}
		if strings.HasPrefix(f.URL, profile.Prefix+"kg-") {
			kg++
			// The published profile is the one the gateway enforces.
			var sd profile.StructureDefinition
			if err := json.Unmarshal(body, &sd); err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(p.Profiles(), func(x *profile.StructureDefinition) bool { return x.URL == sd.URL })
			if want, _ := json.Marshal(p.Profiles()[i]); !bytes.Equal(want, body) {
				t.Errorf("%s in the package is not the profile the gateway checks", f.Filename)
			}
		}
	}
	if kg != len(p.Profiles()) {
		t.Errorf("%d kg-* profiles in the package, want %d", kg, len(p.Profiles()))
	}
}

// untar reads a gzipped tarball: regular files only, all under package/.
func untar(t *testing.T, tgz []byte) map[string][]byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(tgz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag != tar.TypeReg || !strings.HasPrefix(hdr.Name, "package/") || strings.Count(hdr.Name, "/") != 1 {
			t.Errorf("entry %s (type %c): not a file in package/", hdr.Name, hdr.Typeflag)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[hdr.Name] = body
	}
	return files
}
