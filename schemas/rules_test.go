package schemas

import (
	"go/ast"
	"go/parser"
	"go/token"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestRulesListed: Rules lists every rule id constant of issue.go once, so
// the gateway's catalogue (and the console's links to it) has each rule
// this package reports.
func TestRulesListed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "issue.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var consts []string
	ast.Inspect(f, func(n ast.Node) bool {
		if vs, ok := n.(*ast.ValueSpec); ok && len(vs.Names) == 1 && strings.HasPrefix(vs.Names[0].Name, "Rule") && len(vs.Values) == 1 {
			if lit, ok := vs.Values[0].(*ast.BasicLit); ok {
				s, _ := strconv.Unquote(lit.Value)
				consts = append(consts, s)
			}
		}
		return true
	})
	var listed []string
	for _, r := range Rules() {
		if r.Description == "" {
			t.Errorf("rule %s has no description", r.ID)
		}
		listed = append(listed, r.ID)
	}
	slices.Sort(consts)
	slices.Sort(listed)
	if len(consts) < 20 || !slices.Equal(consts, listed) {
		t.Errorf("Rules() lists %v,\nthe constants are %v", listed, consts)
	}
}
