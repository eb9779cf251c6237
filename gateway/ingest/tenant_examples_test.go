package ingest_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestExamplesInNamedTenant: the shipped example records, loaded in
// several orders (sessions before and after the records they nest), get
// the same answers in a named tenant as in the default one: stored, or
// the documented 409 record-version-stale (a session re-sends a nested
// record at an older source.lastUpdated). A named tenant's ids are
// namespaced, but its conditional criteria must still find its own
// resources (no 400 conditional-criteria-unmatched).
func TestExamplesInNamedTenant(t *testing.T) {
	kinds := []mapping.Kind{mapping.KindSession, mapping.KindInfusion, mapping.KindVitals, mapping.KindAssessment, mapping.KindAdverseEvent}
	type file struct {
		kind mapping.Kind
		name string
		body []byte
	}
	files := map[mapping.Kind][]file{}
	for _, k := range kinds {
		names, err := filepath.Glob(filepath.Join("../../schemas/examples", string(k), "*.json"))
		if err != nil || len(names) == 0 {
			t.Fatalf("examples of %s: %v", k, err)
		}
		sort.Strings(names)
		for _, n := range names {
			b, err := os.ReadFile(n)
			if err != nil {
				t.Fatal(err)
			}
			files[k] = append(files[k], file{k, filepath.Base(n), b})
		}
	}
	orders := map[string][]mapping.Kind{
		"sessions first": kinds,
		"sessions last":  {mapping.KindInfusion, mapping.KindVitals, mapping.KindAssessment, mapping.KindAdverseEvent, mapping.KindSession},
	}
	for name, order := range orders {
		t.Run(name, func(t *testing.T) {
			// answer per file and tenant: "" stored, else the rule ids
			answers := map[string]map[string]string{}
			stored := map[string]map[string]int{} // tenant -> type -> count
			types := []string{"Patient", "Procedure", "MedicationRequest", "MedicationAdministration", "Observation", "Flag", "AdverseEvent"}
			for _, tenant := range []string{"", "clinic-a"} {
				g := newGateway(t, app.Config{})
				for _, k := range order {
					for _, f := range files[k] {
						got := ""
						if err := g.ingest(tenant, f.kind, string(f.body)); err != nil {
							kind, issues := outcome.From(err)
							got = kind.String()
							for _, is := range issues {
								got += " " + is.Rule
							}
						}
						key := string(f.kind) + "/" + f.name
						if answers[key] == nil {
							answers[key] = map[string]string{}
						}
						answers[key][tenant] = got
					}
				}
				stored[tenant] = map[string]int{}
				for _, typ := range types {
					stored[tenant][typ] = g.count(t, tenant, typ, "")
				}
			}
			stale := outcome.Conflict.String() + " " + ingest.RuleVersionStale
			for key, a := range answers {
				if def := a[""]; def != "" && strings.ReplaceAll(def, " "+ingest.RuleVersionStale, "") != outcome.Conflict.String() {
					t.Errorf("%s in the default tenant: %s, want stored or %s", key, def, stale)
				}
				if a["clinic-a"] != a[""] {
					t.Errorf("%s in tenant clinic-a: %q, in the default tenant %q", key, a["clinic-a"], a[""])
				}
			}
			for _, typ := range types {
				if got, want := stored["clinic-a"][typ], stored[""][typ]; got != want {
					t.Errorf("tenant clinic-a holds %d %s, the default tenant %d", got, typ, want)
				}
			}
		})
	}
}
