package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// TestConcurrentMRNsKept: records of one patient sent at once, each with
// an MRN of another hospital, leave the Patient with every MRN, on both
// stores. On PostgreSQL, whose writers run in parallel, a review found
// 1-3 of 8 MRNs gone (each new Patient version was built from the one
// before the concurrent record's), and then another patient's record
// could take a lost MRN (store testLostUpdate is the deterministic
// form).
func TestConcurrentMRNsKept(t *testing.T) {
	const n = 8
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			g := b.open(t, app.Config{})
			// The patient is stored first: concurrent first records of a
			// patient new to a PostgreSQL gateway can still make two
			// Patients (a conditional update releases the create's key:
			// known, not this test's subject).
			if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-first", "1", "P-MRN", "", aeBody("S-1", "2026-03-02T10:00:00-05:00"))); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make([]error, n)
			for i := range n {
				wg.Go(func() {
					doc := `{"source": {"system": "serenity-clinic-emr", "recordId": "AE-` + fmt.Sprint(i) + `", "version": "1"},
						"patient": {"id": "P-MRN", "mrn": {"value": "MRN-` + fmt.Sprint(i) + `", "system": "https://hosp` + fmt.Sprint(i) + `.example/mrn", "assigner": "Hospital"}},
						` + aeBody("S-1", "2026-03-02T10:00:00-05:00") + `}`
					errs[i] = g.ingest("", mapping.KindAdverseEvent, doc)
				})
			}
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("record %d: %v", i, err)
				}
			}
			r, err := g.a.Store.Read(context.Background(), "Patient", g.one(t, "Patient", "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|P-MRN"))
			if err != nil {
				t.Fatal(err)
			}
			var p struct {
				Identifier []struct{ System, Value string }
			}
			if err := json.Unmarshal(r.Body, &p); err != nil {
				t.Fatal(err)
			}
			mrns := map[string]bool{}
			for _, id := range p.Identifier {
				mrns[id.System+"|"+id.Value] = true
			}
			for i := range n {
				if !mrns[fmt.Sprintf("https://hosp%d.example/mrn|MRN-%d", i, i)] {
					t.Errorf("MRN %d lost: the Patient (version %d) holds %v", i, r.Version, p.Identifier)
				}
			}
		})
	}
}
