// Package architecture checks the package map of docs/architecture.md:
// which package may import which. It fails when echo is imported outside
// the HTTP edge, when the application, mapping, schemas or store depend on
// the edge or touch net/http server types, or when a CLI command other
// than serve reaches the edge.
package architecture

import (
	"go/types"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/tools/go/packages"
)

const (
	module = "github.com/ketamine-gateway/ketamine-gateway"
	edge   = module + "/gateway"
	cli    = module + "/cmd/ketamine-gateway"
	echo   = "github.com/labstack/echo"
)

// below are the packages that must never depend on the edge nor touch
// net/http server types: the application, and everything it is built on.
var below = []string{
	"gateway/app", "gateway/engine", "gateway/ingest", "gateway/auditlog", "gateway/operator",
	"gateway/jobs", "gateway/bulk", "gateway/replay", "gateway/reindex",
	"gateway/outcome", "gateway/fhirwire", "gateway/profile", "gateway/conformance",
	"gateway/store", "gateway/search", "gateway/audit", "gateway/telemetry/stage",
	"mapping", "schemas",
}

// noNetHTTP are the packages that do not import net/http at all: nothing
// in them is about HTTP.
var noNetHTTP = []string{
	"gateway/app", "gateway/engine", "gateway/ingest", "gateway/auditlog", "gateway/operator",
	"gateway/jobs", "gateway/bulk", "gateway/replay", "gateway/reindex",
	"gateway/outcome", "gateway/fhirwire", "gateway/profile", "gateway/conformance",
	"gateway/store", "gateway/search", "mapping", "schemas",
}

// serverTypes are net/http's server side.
var serverTypes = []string{"Handler", "HandlerFunc", "ResponseWriter", "Request", "Server", "ServeMux", "Flusher",
	"Hijacker", "ResponseController", "MaxBytesReader", "ListenAndServe", "Serve", "Handle", "HandleFunc"}

// load loads the module's packages with mode.
func load(t *testing.T, mode packages.LoadMode) []*packages.Package {
	t.Helper()
	cfg := &packages.Config{Dir: filepath.Join("..", ".."), Mode: packages.NeedName | mode}
	pkgs, err := packages.Load(cfg, "./...")
	if err != nil {
		t.Fatal(err)
	}
	var out []*packages.Package
	for _, p := range pkgs {
		if len(p.Errors) > 0 {
			t.Fatalf("load %s: %v", p.PkgPath, p.Errors)
		}
		if strings.HasPrefix(p.PkgPath, module) {
			out = append(out, p)
		}
	}
	if len(out) < 10 {
		t.Fatalf("loaded only %d packages of the module", len(out))
	}
	return out
}

// deps returns every package p depends on, transitively.
func deps(p *packages.Package) map[string]bool {
	seen := map[string]bool{}
	var walk func(*packages.Package)
	walk = func(q *packages.Package) {
		for path, imp := range q.Imports {
			if !seen[path] {
				seen[path] = true
				walk(imp)
			}
		}
	}
	walk(p)
	return seen
}

// under reports whether pkg is one of prefixes (module-relative) or below one.
func under(pkg string, prefixes []string) bool {
	for _, pre := range prefixes {
		full := module + "/" + pre
		if pkg == full || strings.HasPrefix(pkg, full+"/") {
			return true
		}
	}
	return false
}

func TestImportDirections(t *testing.T) {
	typed := map[string]*packages.Package{}
	for _, p := range load(t, packages.NeedImports|packages.NeedTypes|packages.NeedTypesInfo|packages.NeedSyntax) {
		typed[p.PkgPath] = p
	}
	for _, p := range load(t, packages.NeedImports|packages.NeedDeps) {
		d := deps(p)
		if p.PkgPath != edge && p.PkgPath != cli {
			for path := range d {
				if strings.HasPrefix(path, echo) {
					t.Errorf("%s depends on %s: echo belongs to the HTTP edge (package gateway) only", p.PkgPath, path)
					break
				}
			}
		}
		if !under(p.PkgPath, below) {
			continue
		}
		if d[edge] {
			t.Errorf("%s depends on the HTTP edge (%s)", p.PkgPath, edge)
		}
		if under(p.PkgPath, noNetHTTP) && p.Imports["net/http"] != nil {
			t.Errorf("%s imports net/http", p.PkgPath)
		}
		tp := typed[p.PkgPath]
		if tp == nil {
			t.Fatalf("%s not type-checked", p.PkgPath)
		}
		for id, obj := range tp.TypesInfo.Uses {
			if obj.Pkg() != nil && obj.Pkg().Path() == "net/http" && slices.Contains(serverTypes, obj.Name()) {
				if _, isType := obj.(*types.TypeName); isType || obj.Parent() == obj.Pkg().Scope() {
					t.Errorf("%s uses net/http.%s at %s", p.PkgPath, obj.Name(), tp.Fset.Position(id.Pos()))
				}
			}
		}
	}
}

// TestCLIReachesTheEdgeOnlyInServe: only the serve command builds the HTTP
// edge; every other command calls the application packages.
func TestCLIReachesTheEdgeOnlyInServe(t *testing.T) {
	found := false
	for _, p := range load(t, packages.NeedSyntax|packages.NeedTypes) {
		if p.PkgPath != cli {
			continue
		}
		found = true
		for _, f := range p.Syntax {
			name := filepath.Base(p.Fset.Position(f.Package).Filename)
			for _, imp := range f.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if path == edge && name != "serve.go" {
					t.Errorf("%s imports the HTTP edge; only serve.go may", name)
				}
			}
		}
	}
	if !found {
		t.Fatalf("package %s not loaded", cli)
	}
}

// TestConsoleUsesTheApplication: the web console reads and changes nothing
// around the application: it imports neither echo (checked above) nor a
// store backend, and calls no method of the store's interfaces (it uses
// the application's engine, audit log and operator service; its types,
// such as store.DeliveryFilter, are fine).
func TestConsoleUsesTheApplication(t *testing.T) {
	const consolePkg = module + "/gateway/console"
	found := false
	for _, p := range load(t, packages.NeedImports|packages.NeedTypes|packages.NeedTypesInfo|packages.NeedSyntax) {
		if p.PkgPath != consolePkg {
			continue
		}
		found = true
		for path := range p.Imports {
			if strings.HasPrefix(path, module+"/gateway/store/") || path == edge {
				t.Errorf("the console imports %s", path)
			}
		}
		for id, obj := range p.TypesInfo.Uses {
			fn, ok := obj.(*types.Func)
			if !ok || fn.Pkg() == nil || fn.Pkg().Path() != module+"/gateway/store" {
				continue
			}
			if sig, _ := fn.Type().(*types.Signature); sig != nil && sig.Recv() != nil {
				t.Errorf("the console calls store method %s at %s: go through the application", fn.Name(), p.Fset.Position(id.Pos()))
			}
		}
	}
	if !found {
		t.Fatalf("package %s not loaded", consolePkg)
	}
}
