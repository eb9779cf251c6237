package ingest_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/ingest"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestNewVersionUnchanged: each new version of a stored record writes a
// version of each of its resources, its Provenance and its delivery, even
// one that maps to exactly what is stored (a record re-sent with a new
// version label and the same content): an auditor follows every record
// version to the resource versions and to what the EHR received. (A FHIR
// client's update that changes nothing writes no version: Entry.VersionAlways.)
// The same version sent again writes nothing. A new version that changes
// a value writes a version of the resource that holds it only: the others
// it leaves as they are (TestCorrectionAmendsOnlyWhatChanged).
func TestNewVersionUnchanged(t *testing.T) {
	g := newGateway(t, app.Config{Routes: []ingest.Route{{Name: "ehr", Accepts: func(string, string) bool { return true }}}})
	raw, err := os.ReadFile("../../schemas/examples/vitals/pre-dose-baseline.json")
	if err != nil {
		t.Fatal(err)
	}
	version := func(v, lastUpdated string) string {
		return strings.NewReplacer(`"version": "1"`, `"version": "`+v+`"`,
			`"2026-03-10T09:16:40-05:00"`, `"`+lastUpdated+`"`).Replace(string(raw))
	}
	ctx := context.Background()
	amended := 0 // Observations stored amended after the last version
	versions := map[string]int64{}
	observations := func() (written int) {
		t.Helper()
		q, err := search.Parse("Observation", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		page, err := g.a.Store.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		amended = 0
		for _, r := range page.Matches {
			if r.Version > versions[r.ID] {
				written++
			}
			versions[r.ID] = r.Version
			if strings.Contains(string(r.Body), `"status":"amended"`) {
				amended++
			}
		}
		return written
	}
	for _, tc := range []struct {
		name, doc   string
		written     int // Observations it writes a version of
		provenances int
		deliveries  int
		amended     int // Observations amended after it: only a value changed is
	}{
		{"first version", string(raw), 6, 1, 1, 0},
		{"second version, the same content", version("2", "2026-03-10T10:00:00-05:00"), 6, 2, 2, 0},
		{"third version, the same content", version("3", "2026-03-10T11:00:00-05:00"), 6, 3, 3, 0},
		{"the third again", version("3", "2026-03-10T11:00:00-05:00"), 0, 3, 3, 0},
		{"fourth version, a value changed", strings.Replace(version("4", "2026-03-10T12:00:00-05:00"),
			`"heartRate": 76`, `"heartRate": 77`, 1), 1, 4, 4, 1},
		// Two measurements left out (they stay as stored): the others are
		// written again, unchanged, not amended (an EHR review).
		{"fifth version, measurements left out", strings.NewReplacer(`"heartRate": 76`, `"heartRate": 77`,
			`,
  "temperature": {"value": 36.7, "unit": "Cel"},
  "bodyWeight": {"value": 80, "unit": "kg"}`, ``).Replace(version("5", "2026-03-10T13:00:00-05:00")), 4, 5, 5, 1},
	} {
		if err := g.ingest("", mapping.KindVitals, tc.doc); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if written := observations(); written != tc.written {
			t.Errorf("%s: %d Observations written, want %d", tc.name, written, tc.written)
		}
		if amended != tc.amended {
			t.Errorf("%s: %d Observations amended, want %d", tc.name, amended, tc.amended)
		}
		if n := g.count(t, "", "Provenance", ""); n != tc.provenances {
			t.Errorf("%s: %d Provenances, want %d", tc.name, n, tc.provenances)
		}
		items, err := g.a.Store.Deliveries(ctx, store.DeliveryFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != tc.deliveries {
			t.Errorf("%s: %d deliveries queued, want %d", tc.name, len(items), tc.deliveries)
		}
	}
}
