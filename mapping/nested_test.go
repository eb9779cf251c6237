package mapping_test

import (
	"os"
	"strings"
	"testing"

	fhir "github.com/samply/golang-fhir-models/fhir-models/fhir"

	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestUpdateNested: a session mapped with some nested records marked
// UpdateNested writes those as new versions (conditional updates,
// Observations amended) and everything else as a first version.
func TestUpdateNested(t *testing.T) {
	b, err := os.ReadFile("../schemas/examples/session/routine-ketamine-iv-session.json")
	if err != nil {
		t.Fatal(err)
	}
	rec, err := mapping.Decode(mapping.KindSession, b)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mapping.Map(rec, mapping.Options{UpdateNested: map[string]bool{"/vitals/0": true}})
	if err != nil {
		t.Fatal(err)
	}
	var updated, created, observations int
	for _, e := range res.Entries {
		if e.ResourceType == "Patient" {
			continue
		}
		put := e.Method == fhir.HTTPVerbPUT && strings.Contains(e.URL, "?identifier=")
		if put != (e.Record == "/vitals/0") {
			t.Errorf("%s %s (record %q): method %s, want PUT only for /vitals/0", e.ResourceType, e.IdentifierValue, e.Record, e.Method.Code())
		}
		if o, ok := e.Resource.(fhir.Observation); ok {
			observations++
			want := fhir.ObservationStatusFinal
			if put {
				want = fhir.ObservationStatusAmended
			}
			if o.Status != want {
				t.Errorf("Observation %s: status %s, want %s", e.IdentifierValue, o.Status.Code(), want.Code())
			}
		}
		if put {
			updated++
		} else {
			created++
		}
	}
	if updated == 0 || created == 0 || observations == 0 {
		t.Errorf("%d updated, %d created, %d Observations: want all", updated, created, observations)
	}
}
