package search_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
)

var update = flag.Bool("update", false, "rewrite the parameter table in docs/fhir.md")

// TestDocsParameterTable: the search parameter table in docs/fhir.md is
// the one the code serves (go test ./gateway/search -run
// TestDocsParameterTable -update rewrites it).
func TestDocsParameterTable(t *testing.T) {
	const path = "../../docs/fhir.md"
	const begin, end = "<!-- search-parameters:begin -->\n", "<!-- search-parameters:end -->"
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i < 0 || j < i {
		t.Fatalf("%s lacks the %q and %q markers", path, begin, end)
	}
	var tb strings.Builder
	var common []string
	for _, p := range search.CommonParams() {
		common = append(common, "`"+p.Name+"`")
	}
	fmt.Fprintf(&tb, "| type | parameters (besides those of every type: %s) |\n|---|---|\n", strings.Join(common, ", "))
	for _, typ := range search.Types() {
		var names []string
		for _, p := range search.Params(typ) {
			if p.Resource != "Resource" {
				names = append(names, fmt.Sprintf("`%s` (%s)", p.Name, p.Type))
			}
		}
		if len(names) > 1 || len(names) == 1 && !strings.HasPrefix(names[0], "`patient`") {
			fmt.Fprintf(&tb, "| %s | %s |\n", typ, strings.Join(names, ", "))
		}
	}
	want := doc[:i+len(begin)] + tb.String() + doc[j:]
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want != doc {
		t.Errorf("the search parameter table in %s differs from the code; run go test ./gateway/search -run TestDocsParameterTable -update and review the diff", path)
	}
}
