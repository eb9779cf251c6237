package ingest_test

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/app"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/mapping"
)

// staleStore makes its next write transaction read as PostgreSQL's READ
// COMMITTED can when a concurrent request commits in the middle of it: the
// ledger, the key table and searches see nothing stored, until the
// transaction's conditional look-ups (SearchEach, engine.Tx.RunChecked),
// which see what is there.
type staleStore struct {
	store.Store
	armed atomic.Bool
}

func (s *staleStore) Write(ctx context.Context, fn func(store.Tx) error) error {
	return s.Store.Write(ctx, func(tx store.Tx) error {
		if s.armed.CompareAndSwap(true, false) {
			return fn(&staleTx{Tx: tx})
		}
		return fn(tx)
	})
}

type staleTx struct {
	store.Tx
	fresh bool
}

func (t *staleTx) Ledger(source, kind, recordID, version string) (*store.Ledger, error) {
	if !t.fresh {
		return nil, store.ErrNotFound
	}
	return t.Tx.Ledger(source, kind, recordID, version)
}

func (t *staleTx) LedgerVersions(source, kind, recordID string) ([]*store.Ledger, error) {
	if !t.fresh {
		return nil, nil
	}
	return t.Tx.LedgerVersions(source, kind, recordID)
}

func (t *staleTx) KeyOwner(key string) (string, string, error) {
	if !t.fresh {
		return "", "", store.ErrNotFound
	}
	return t.Tx.KeyOwner(key)
}

func (t *staleTx) Search(q *search.Query) (*store.Page, error) {
	if !t.fresh {
		return &store.Page{}, nil
	}
	return t.Tx.Search(q)
}

func (t *staleTx) SearchEach(qs []*search.Query) ([]*store.Page, error) {
	t.fresh = true
	return t.Tx.SearchEach(qs)
}

// TestConcurrentSameRecord: a request that read, at its start, no ledger
// entry and no Patient, and then finds the record's resources stored by a
// request that committed meanwhile (PostgreSQL's READ COMMITTED), runs
// again and answers what the first request stored: not 409
// record-patient-changed ("stored for another patient": the patient it
// had not seen yet). TestReplicasExactlyOnce met it with 50 clients.
func TestConcurrentSameRecord(t *testing.T) {
	var st *staleStore
	g := newGatewayOver(t, app.Config{}, func(inner store.Store) store.Store {
		st = &staleStore{Store: inner}
		return st
	})
	for _, example := range []string{"assessment/phq9-moderate.json", "session/routine-ketamine-iv-session.json"} {
		t.Run(example, func(t *testing.T) {
			raw, err := os.ReadFile("../../schemas/examples/" + example)
			if err != nil {
				t.Fatal(err)
			}
			kind := mapping.Kind(filepath.Dir(example))
			if err := g.ingest("", kind, string(raw)); err != nil {
				t.Fatal(err)
			}
			st.armed.Store(true)
			if err := g.ingest("", kind, string(raw)); err != nil {
				t.Errorf("the same record, its first reads before the first request's commit: %v", err)
			}
			if st.armed.Load() {
				t.Error("the stale transaction never ran")
			}
		})
	}
}

// TestConcurrentFirstRecordMRN: a record with an MRN that read no Patient
// of its patient at its start, and whose conditional create then matched
// the Patient a concurrent request committed meanwhile (PostgreSQL's READ
// COMMITTED), runs again and adds its MRN to that Patient: before, it was
// stored without adding it, and the MRN's key was claimed for a Patient
// that does not carry it (TestConcurrentFirstRecordsOnePatient met it).
func TestConcurrentFirstRecordMRN(t *testing.T) {
	var st *staleStore
	g := newGatewayOver(t, app.Config{}, func(inner store.Store) store.Store {
		st = &staleStore{Store: inner}
		return st
	})
	if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-1", "1", "P-RACE", "", aeBody("S-1", "2026-03-02T10:00:00-05:00"))); err != nil {
		t.Fatal(err)
	}
	st.armed.Store(true)
	if err := g.ingest("", mapping.KindAdverseEvent, rec("AE-2", "1", "P-RACE", "MRN-9", aeBody("S-1", "2026-03-02T11:00:00-05:00"))); err != nil {
		t.Fatal(err)
	}
	if st.armed.Load() {
		t.Fatal("the stale transaction never ran")
	}
	patient := g.one(t, "Patient", clinicPatient+"P-RACE")
	if got := g.one(t, "Patient", "identifier=https://hospital.example/mrn|MRN-9"); got != patient {
		t.Errorf("the MRN is on Patient %s, want %s", got, patient)
	}
}
