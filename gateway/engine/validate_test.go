package engine_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// TestGoldenBundlesValidate runs the gateway's own FHIR validator over every
// golden Bundle the mappings produce: mapped output must always be valid.
func TestGoldenBundlesValidate(t *testing.T) {
	v := engine.NewValidator()
	var files []string
	_ = filepath.WalkDir("../../mapping/testdata", func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(path) == ".json" && len(path) > 12 && path[len(path)-12:] == ".golden.json" {
			files = append(files, path)
		}
		return err
	})
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := v.Document(b); err != nil {
			_, issues := outcome.From(err)
			t.Errorf("%s: %+v", f, issues)
		}
	}
}
