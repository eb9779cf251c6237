// Package conformance checks, with a FHIR R4 parser nobody on this project
// wrote (github.com/google/fhir/go jsonformat), that every golden Bundle the
// mappings produce is valid FHIR R4. It is its own module so that the
// gateway's go.mod does not carry google/fhir's protobuf dependencies.
package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/fhir/go/fhirversion"
	"github.com/google/fhir/go/jsonformat"
)

// TestGoldenBundlesParse unmarshals every golden transaction Bundle, and
// every resource inside it on its own, with google/fhir's R4 parser, which
// validates primitive formats, cardinalities, required fields, choice types
// and required-binding codes.
func TestGoldenBundlesParse(t *testing.T) {
	um, err := jsonformat.NewUnmarshaller("UTC", fhirversion.R4)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	err = filepath.WalkDir("../../mapping/testdata", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(path) == ".json" && len(path) > 12 && path[len(path)-12:] == ".golden.json" {
			files = append(files, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no golden files found under mapping/testdata")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := um.UnmarshalR4(b); err != nil {
				t.Fatalf("google/fhir rejects the Bundle: %v", err)
			}
			var bundle struct {
				Entry []struct {
					Resource json.RawMessage `json:"resource"`
				} `json:"entry"`
			}
			if err := json.Unmarshal(b, &bundle); err != nil {
				t.Fatal(err)
			}
			for i, e := range bundle.Entry {
				if len(e.Resource) == 0 {
					continue // a DELETE entry
				}
				if _, err := um.UnmarshalR4(e.Resource); err != nil {
					t.Errorf("entry %d: google/fhir rejects the resource: %v", i, err)
				}
			}
		})
	}
	t.Logf("%d golden Bundles accepted by google/fhir R4", len(files))
}
