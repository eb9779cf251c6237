package conformance_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/conformance"
)

// ruleID is the shape of a rule id.
var ruleID = regexp.MustCompile(`^[a-z][a-z0-9]*([.-][a-z0-9]+)*$`)

// emittedRules collects, from the Go sources (tests left out) of the
// gateway, the CLI, the mappings, the record schemas and the R4
// validator, the rule ids they can report: string constants named Rule*,
// `Rule: "..."` in composite literals, the argument a function takes as
// its parameter named rule (outcome.New, the engine's fail, ...), an
// auth.Failure's Reason (reported as auth-<reason>), and the R4
// validator's rule and invariant keys. It is a source scan, so that a rule
// id added anywhere without publishing it fails TestRulesPublished.
func emittedRules(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{} // id -> where first seen
	fset := token.NewFileSet()
	var files []*ast.File
	var paths []string
	for _, dir := range []string{"../../gateway", "../../cmd", "../../mapping", "../../schemas"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" || d.Name() == "examples" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			files = append(files, f)
			paths = append(paths, filepath.ToSlash(path))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The position of the parameter named rule (reason, in package auth:
	// reported as auth-<reason>) of each function, by directory.
	args := map[string]map[string]int{}
	for i, f := range files {
		dir := filepath.Dir(paths[i])
		if args[dir] == nil {
			args[dir] = map[string]int{"New": 2} // outcome.New(kind, code, rule, msg)
		}
		paramIndex(f, args[dir], paramName(paths[i]))
	}
	for i, f := range files {
		scanRules(fset, f, paths[i], args[filepath.Dir(paths[i])], out)
	}
	return out
}

// paramName is the name of the parameter that takes a rule id (or, in
// package auth, the reason of a Failure) in the file at path.
func paramName(path string) string {
	if strings.Contains(path, "gateway/auth/") {
		return "reason"
	}
	return "rule"
}

// paramIndex adds the position of the parameter named name of each
// function of f (declared, or a function literal given a name) to idx.
func paramIndex(f *ast.File, idx map[string]int, name string) {
	params := func(fn string, ft *ast.FuncType) {
		i := 0
		for _, p := range ft.Params.List {
			for _, n := range p.Names {
				if n.Name == name {
					idx[fn] = i
				}
				i++
			}
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			params(n.Name.Name, n.Type)
		case *ast.AssignStmt:
			for i, rhs := range n.Rhs {
				if fl, ok := rhs.(*ast.FuncLit); ok && i < len(n.Lhs) {
					if id, ok := n.Lhs[i].(*ast.Ident); ok {
						params(id.Name, fl.Type)
					}
				}
			}
		}
		return true
	})
}

// scanRules adds the rule ids of one Go file to out; ruleArg is the
// position of the rule id among the arguments of the functions of its
// package.
func scanRules(fset *token.FileSet, f *ast.File, path string, ruleArg map[string]int, out map[string]string) {
	r4 := strings.Contains(path, "schemas/r4/")
	auth := strings.Contains(path, "gateway/auth/")
	prefix := ""
	if auth {
		prefix = "auth-"
	}
	add := func(e ast.Expr, prefix string) {
		lit, ok := e.(*ast.BasicLit)
		if !ok || lit.Kind != token.STRING {
			return
		}
		s, err := strconv.Unquote(lit.Value)
		if err != nil || !ruleID.MatchString(s) {
			return
		}
		if _, seen := out[prefix+s]; !seen {
			out[prefix+s] = fset.Position(lit.Pos()).String()
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for i, name := range n.Names {
				if strings.HasPrefix(name.Name, "Rule") && i < len(n.Values) {
					add(n.Values[i], "")
				}
				if cl, ok := valueAt(n, i).(*ast.CompositeLit); ok && r4 && name.Name == "ruleCode" {
					for _, e := range cl.Elts { // the R4 validator's rules, by issue code
						if kv, ok := e.(*ast.KeyValueExpr); ok {
							add(kv.Key, "")
						}
					}
				}
			}
		case *ast.AssignStmt:
			// A scope's rules set outright (sc.Rules = []string{"..."}),
			// as the console's forms do.
			for i, lhs := range n.Lhs {
				if sel, ok := lhs.(*ast.SelectorExpr); ok && sel.Sel.Name == "Rules" && i < len(n.Rhs) {
					if cl, ok := n.Rhs[i].(*ast.CompositeLit); ok {
						for _, e := range cl.Elts {
							add(e, "")
						}
					}
				}
			}
		case *ast.KeyValueExpr:
			key, _ := n.Key.(*ast.Ident)
			switch {
			case key == nil:
			case key.Name == "Rule":
				add(n.Value, "")
			case key.Name == "Reason" && auth:
				add(n.Value, "auth-")
			case key.Name == "key" && r4:
				add(n.Value, "")
			}
		case *ast.CallExpr:
			var name string
			switch fn := n.Fun.(type) {
			case *ast.Ident:
				name = fn.Name
			case *ast.SelectorExpr:
				name = fn.Sel.Name
			}
			// (The mappings' functions name other things rule; their
			// rules are Rule: literals of Violations.)
			if i, ok := ruleArg[name]; ok && i < len(n.Args) && !strings.HasPrefix(path, "../../mapping/") {
				add(n.Args[i], prefix)
			}
			if r4 {
				switch name {
				case "errorf", "warnf", "failAt", "fail":
					if len(n.Args) > 0 {
						add(n.Args[0], "")
					}
				case "newIssue":
					if len(n.Args) > 1 {
						add(n.Args[1], "")
					}
				}
			}
		}
		return true
	})
}

// TestRulesPublished: every rule id the gateway can report under the
// validation-rule system (found in its sources) is a concept of the
// published validation-rule CodeSystem, with a definition; the
// CodeSystem lists each code once.
func TestRulesPublished(t *testing.T) {
	var codes []string
	for _, cs := range conformance.CodeSystems() {
		if *cs.Id != "validation-rule" {
			continue
		}
		for _, c := range cs.Concept {
			if slices.Contains(codes, c.Code) {
				t.Errorf("validation-rule lists %s twice", c.Code)
			}
			if c.Definition == nil || *c.Definition == "" {
				t.Errorf("validation-rule %s has no definition", c.Code)
			}
			codes = append(codes, c.Code)
		}
	}
	emitted := emittedRules(t)
	if len(emitted) < 100 {
		t.Fatalf("the source scan found %d rule ids; it no longer recognises how rules are reported", len(emitted))
	}
	for _, id := range slices.Sorted(func(yield func(string) bool) {
		for id := range emitted {
			if !yield(id) {
				return
			}
		}
	}) {
		if !slices.Contains(codes, id) {
			t.Errorf("%s (%s) is not in the validation-rule CodeSystem: add it to gateway/conformance/rules.go", id, emitted[id])
		}
	}
}

// valueAt is the i-th value of a declaration, or nil.
func valueAt(vs *ast.ValueSpec, i int) ast.Expr {
	if i < len(vs.Values) {
		return vs.Values[i]
	}
	return nil
}
