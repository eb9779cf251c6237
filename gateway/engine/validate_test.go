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

// TestByteOrderMark: a document that starts with a UTF-8 byte order mark
// is read as the R4 reader reads it (RFC 8259 §8.1: ignored), and its
// problems are named: validate answered an OperationOutcome without an
// issue, and exit 1, for a valid resource with a BOM.
func TestByteOrderMark(t *testing.T) {
	v := engine.NewValidator()
	const bom = "\xEF\xBB\xBF"
	if err := v.Document([]byte(bom + `{"resourceType":"Patient","gender":"female"}`)); err != nil {
		t.Errorf("a valid Patient with a byte order mark: %v", err)
	}
	err := v.Document([]byte(bom + `{"resourceType":"Patient","gender":"nope"}`))
	if _, issues := outcome.From(err); len(issues) == 0 {
		t.Errorf("an invalid Patient with a byte order mark: %v, want its issues", err)
	}
	if m, err := engine.DecodeResource([]byte(bom + `{"resourceType":"Patient"}`)); err != nil || m["resourceType"] != "Patient" {
		t.Errorf("DecodeResource with a byte order mark = %v, %v", m, err)
	}
}
