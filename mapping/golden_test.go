package mapping_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
	"github.com/ketamine-gateway/ketamine-gateway/schemas"
)

var update = flag.Bool("update", false, "rewrite golden files and generated docs")

// goldenCase is one input to map and the golden file its Bundle must equal.
type goldenCase struct {
	name   string
	kind   mapping.Kind
	input  []byte
	golden string
	opts   mapping.Options
}

// goldenCases lists testdata/<kind>/<case>.input.json (an input named
// *-update.input.json is mapped as a newer version) and every shipped
// example in schemas/examples, whose goldens live in testdata/examples.
func goldenCases(t *testing.T) []goldenCase {
	t.Helper()
	var cases []goldenCase
	for _, kind := range mapping.Kinds() {
		files, err := filepath.Glob(filepath.Join("testdata", string(kind), "*.input.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			name := strings.TrimSuffix(filepath.Base(f), ".input.json")
			cases = append(cases, goldenCase{
				name: string(kind) + "/" + name, kind: kind, input: b,
				golden: strings.TrimSuffix(f, ".input.json") + ".golden.json",
				opts:   mapping.Options{Update: strings.HasSuffix(name, "-update")},
			})
		}
	}
	ex := schemas.Examples()
	err := fs.WalkDir(ex, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		b, err := fs.ReadFile(ex, path)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(path, "examples/")
		kind := mapping.Kind(filepath.Dir(rel))
		cases = append(cases, goldenCase{
			name: "examples/" + strings.TrimSuffix(rel, ".json"), kind: kind, input: b,
			golden: filepath.Join("testdata", "examples", strings.TrimSuffix(rel, ".json")+".golden.json"),
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return cases
}

// goldenAdvice is what to do when a golden file differs: the order
// TestVersionBumped asks for too (p34 F6: "run -update" here, "bump the
// version first" there).
const goldenAdvice = "if the input is unchanged, this changes the output a receiver gets: first bump mapping.Version " +
	"(mapping/map.go) and add its entry to docs/mapping-changelog.md (docs/mapping.md §10 says which part to bump), " +
	"then run go test ./mapping -update and review the diff"

// TestGolden maps every input and compares the transaction Bundle with its
// golden file (go test ./mapping -update rewrites them; review the diff).
func TestGolden(t *testing.T) {
	set, err := schemas.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			if err := set.Validate(string(tc.kind), tc.input); err != nil {
				t.Fatalf("input does not satisfy its schema: %v", describe(err))
			}
			got := mapJSON(t, tc.kind, tc.input, tc.opts)
			if *update {
				if err := os.MkdirAll(filepath.Dir(tc.golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(tc.golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(tc.golden)
			if err != nil {
				t.Fatalf("no golden file (run go test ./mapping -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("Map(%s) differs from %s; %s\n%s", tc.name, tc.golden, goldenAdvice, jsonDiff(want, got))
			}
		})
	}
}

// mapJSON decodes, maps and renders one record.
func mapJSON(t *testing.T, kind mapping.Kind, input []byte, opts mapping.Options) []byte {
	t.Helper()
	rec, err := mapping.Decode(kind, input)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	res, err := mapping.Map(rec, opts)
	if err != nil {
		t.Fatalf("Map: %v", describe(err))
	}
	got, err := res.TransactionJSON()
	if err != nil {
		t.Fatalf("TransactionJSON: %v", err)
	}
	return append(got, '\n')
}

// describe renders a validation or rule error with its issues, for test output.
func describe(err error) string {
	b, _ := json.Marshal(err)
	return err.Error() + " " + string(b)
}

// TestTransactionFrom: the single-pass rendering (each resource rendered
// once by MarshalResource, the Bundle assembled from those bytes) gives the
// very bytes of fhirwire.Marshal of Transaction(), and each resource is the
// one json.Marshal renders, resourceType first, for every golden case.
func TestTransactionFrom(t *testing.T) {
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := mapping.Decode(tc.kind, tc.input)
			if err != nil {
				t.Fatal(err)
			}
			res, err := mapping.Map(rec, tc.opts)
			if err != nil {
				t.Fatal(describe(err))
			}
			raws := make([][]byte, len(res.Entries))
			for i, e := range res.Entries {
				if raws[i], err = mapping.MarshalResource(e.Resource); err != nil {
					t.Fatal(err)
				}
				var a, b any
				want, _ := json.Marshal(e.Resource)
				if json.Unmarshal(raws[i], &a) != nil || json.Unmarshal(want, &b) != nil || !reflect.DeepEqual(a, b) {
					t.Fatalf("MarshalResource(entry %d) is not the resource json.Marshal renders", i)
				}
				if e.Resource != nil && !bytes.HasPrefix(raws[i], []byte(`{"resourceType":`)) {
					t.Fatalf("MarshalResource(entry %d) does not start with resourceType: %.60s", i, raws[i])
				}
			}
			got, err := res.TransactionFrom(raws)
			if err != nil {
				t.Fatal(err)
			}
			b, err := res.Transaction()
			if err != nil {
				t.Fatal(err)
			}
			want, err := fhirwire.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("TransactionFrom differs from fhirwire.Marshal(Transaction()):\n%s\n%s", got, want)
			}
		})
	}
}
