package bulk_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/auditlog"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/auth"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/bulk"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/engine"
)

// TestExportGranularScopes: a type the caller reads through a granular
// scope is exported as if its restriction were a _typeFilter: a hospital
// given the vital signs gets the vital sign, not the PHQ-9 Observation,
// with and without a _typeFilter of its own, at every level.
func TestExportGranularScopes(t *testing.T) {
	ctx := context.Background()
	a, _ := newApp(t, 1<<20)
	clinic := &auth.Principal{ClientID: "clinic", Scopes: auth.ParseScopes("system/*.cruds")}
	const cat = "http://terminology.hl7.org/CodeSystem/observation-category"
	create := func(typ string, doc map[string]any) string {
		b, _ := json.Marshal(doc)
		res, err := a.Engine.Create(ctx, auditlog.NewScope("create", clinic), typ, func() ([]byte, error) { return b, nil }, engine.Preconditions{})
		if err != nil {
			t.Fatal(err)
		}
		return res.Resource.ID
	}
	patient := create("Patient", map[string]any{"resourceType": "Patient", "gender": "female"})
	obs := func(category, code string) string {
		return create("Observation", map[string]any{"resourceType": "Observation", "status": "final",
			"category": []any{map[string]any{"coding": []any{map[string]any{"system": cat, "code": category}}}},
			"code":     map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": code}}},
			"subject":  map[string]any{"reference": "Patient/" + patient}})
	}
	vital, phq9 := obs("vital-signs", "85354-9"), obs("survey", "44261-6")
	hospital := &auth.Principal{ClientID: "hospital",
		Scopes: auth.ParseScopes("system/Observation.rs?category=" + cat + "|vital-signs system/Patient.rs")}
	tests := []struct {
		name  string
		p     bulk.ExportParams
		want  string // the Observations exported
		clerk *auth.Principal
	}{
		{"system", bulk.ExportParams{Level: bulk.LevelSystem, Query: map[string][]string{"_type": {"Observation"}}}, vital, hospital},
		{"patient", bulk.ExportParams{Level: bulk.LevelPatient, Query: map[string][]string{"_type": {"Observation"}}}, vital, hospital},
		{"own _typeFilter", bulk.ExportParams{Level: bulk.LevelSystem, Query: map[string][]string{"_type": {"Observation"},
			"_typeFilter": {"Observation?status=final"}}}, vital, hospital},
		{"_typeFilter for the PHQ-9", bulk.ExportParams{Level: bulk.LevelSystem, Query: map[string][]string{"_type": {"Observation"},
			"_typeFilter": {"Observation?code=44261-6"}}}, "", hospital},
		{"unrestricted", bulk.ExportParams{Level: bulk.LevelSystem, Query: map[string][]string{"_type": {"Observation"}}}, vital + " " + phq9, clinic},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, _ := exported(t, a, auditlog.NewScope("bulk-export", tt.clerk), tt.p)
			var got []string
			for _, l := range lines["Observation"] {
				var r struct{ ID string }
				if err := json.Unmarshal([]byte(l), &r); err != nil {
					t.Fatal(err)
				}
				got = append(got, r.ID)
			}
			if g := strings.Join(got, " "); len(got) != len(strings.Fields(tt.want)) || !strings.Contains(tt.want, g) && len(got) == 1 {
				t.Errorf("export %s: Observations %v, want %s", tt.name, got, tt.want)
			}
			for _, id := range got {
				if id == phq9 && tt.clerk == hospital {
					t.Errorf("export %s: the PHQ-9 Observation was exported to the hospital", tt.name)
				}
			}
		})
	}
}
