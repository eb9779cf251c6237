package ingest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
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
			// The patient is stored first (concurrent first records:
			// TestConcurrentFirstRecordsOnePatient).
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

// clinicPatient is the criteria of the Patient of clinic patient id id.
const clinicPatient = "identifier=https://ketamine-gateway.org/fhir/sid/serenity-clinic-emr/patient|"

// keyOwner returns the resource holding the conditional key of the
// criteria of typ (default tenant), "" for none.
func (g *gw) keyOwner(t *testing.T, typ, criteria string) string {
	t.Helper()
	q, err := search.ParseConditional(typ, criteria)
	if err != nil {
		t.Fatal(err)
	}
	owner := ""
	err = g.a.Store.Write(context.Background(), func(tx store.Tx) error {
		typ, id, err := tx.KeyOwner(search.Key(typ, q))
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		owner = typ + "/" + id
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return owner
}

// TestMRNKeepsPatientKey: a record adding an MRN writes a new version of
// its stored Patient (a conditional update on the clinic identifier),
// which keeps the conditional key of the clinic identifier that the
// Patient's creation claimed. The store drops a resource's keys with each
// version; left free, the key let a concurrent first record of the
// patient that had searched before the Patient was committed claim it
// and create a second Patient (PostgreSQL), which then made every later
// record of the patient fail with patient.identity-ambiguous.
func TestMRNKeepsPatientKey(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			g := b.open(t, app.Config{})
			if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-KEY", "", aeBody("S-1", "2026-03-02T10:00:00-05:00"))); err != nil {
				t.Fatal(err)
			}
			patient := "Patient/" + g.one(t, "Patient", clinicPatient+"P-KEY")
			if got := g.keyOwner(t, "Patient", clinicPatient+"P-KEY"); got != patient {
				t.Fatalf("after the first record the key is held by %q, want %s", got, patient)
			}
			if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-2", "1", "P-KEY", "MRN-7", aeBody("S-1", "2026-03-02T11:00:00-05:00"))); err != nil {
				t.Fatal(err)
			}
			if got := g.keyOwner(t, "Patient", clinicPatient+"P-KEY"); got != patient {
				t.Errorf("after a record added the MRN the key is held by %q, want %s", got, patient)
			}
		})
	}
}

// TestConcurrentFirstRecordsOnePatient: the first records of patients new
// to the gateway, sent at once and each with an MRN of another hospital,
// make one Patient per patient holding every MRN, on both stores. The
// records race: one creates the Patient, the others, run again, add their
// MRNs to it.
func TestConcurrentFirstRecordsOnePatient(t *testing.T) {
	const patients, n = 6, 6
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			g := b.open(t, app.Config{})
			for p := range patients {
				pid := fmt.Sprintf("P-NEW-%d", p)
				var wg sync.WaitGroup
				errs := make([]error, n)
				for i := range n {
					wg.Go(func() {
						doc := `{"source": {"system": "serenity-clinic-emr", "recordId": "AE-` + fmt.Sprint(p, "-", i) + `", "version": "1"},
							"patient": {"id": "` + pid + `", "mrn": {"value": "MRN-` + fmt.Sprint(p, "-", i) + `", "system": "https://hosp` + fmt.Sprint(i) + `.example/mrn", "assigner": "Hospital"}},
							` + aeBody("S-1", "2026-03-02T10:00:00-05:00") + `}`
						errs[i] = g.ingest("", mapping.KindAdverseEvent, doc)
					})
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("%s, record %d: %v", pid, i, err)
					}
				}
				if c := g.count(t, "", "Patient", clinicPatient+pid); c != 1 {
					t.Fatalf("%s: %d Patients, want 1", pid, c)
				}
				r, err := g.a.Store.Read(context.Background(), "Patient", g.one(t, "Patient", clinicPatient+pid))
				if err != nil {
					t.Fatal(err)
				}
				var doc struct {
					Identifier []struct{ System, Value string }
				}
				if err := json.Unmarshal(r.Body, &doc); err != nil {
					t.Fatal(err)
				}
				mrns := map[string]bool{}
				for _, id := range doc.Identifier {
					mrns[id.System+"|"+id.Value] = true
				}
				for i := range n {
					if !mrns[fmt.Sprintf("https://hosp%d.example/mrn|MRN-%d-%d", i, p, i)] {
						t.Errorf("%s: MRN %d lost: the Patient (version %d) holds %v", pid, i, r.Version, doc.Identifier)
					}
				}
			}
		})
	}
}
