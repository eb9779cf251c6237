package ingest_test

import (
	"cmp"
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
	observations := func() []int64 {
		t.Helper()
		q, err := search.Parse("Observation", nil, false)
		if err != nil {
			t.Fatal(err)
		}
		page, err := g.a.Store.Search(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var vs []int64
		for _, r := range page.Matches {
			vs = append(vs, r.Version)
		}
		return vs
	}
	for _, tc := range []struct {
		name, doc   string
		version     int64 // of every Observation after it (of changed ones: changed)
		changed     int   // how many Observations it writes (0: all)
		provenances int
		deliveries  int
	}{
		{"first version", string(raw), 1, 0, 1, 1},
		{"second version: Observations amended", version("2", "2026-03-10T10:00:00-05:00"), 2, 0, 2, 2},
		{"third version, the same content", version("3", "2026-03-10T11:00:00-05:00"), 3, 0, 3, 3},
		{"the third again", version("3", "2026-03-10T11:00:00-05:00"), 3, 0, 3, 3},
		{"fourth version, a value changed", strings.Replace(version("4", "2026-03-10T12:00:00-05:00"),
			`"heartRate": 76`, `"heartRate": 77`, 1), 4, 1, 4, 4},
	} {
		if err := g.ingest("", mapping.KindVitals, tc.doc); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		vs := observations()
		if len(vs) == 0 {
			t.Fatalf("%s: no Observations", tc.name)
		}
		changed := 0
		for _, v := range vs {
			if v == tc.version {
				changed++
			}
		}
		if want := cmp.Or(tc.changed, len(vs)); changed != want {
			t.Errorf("%s: Observation versions %v, want %d at %d", tc.name, vs, want, tc.version)
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
