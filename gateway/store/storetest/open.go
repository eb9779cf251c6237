package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// The checks of this file need a backend's help to open (and reopen) its
// database; a backend's tests call them.

// Reopen writes a resource to s, a new store, closes s twice (the second
// Close must succeed too), opens the database again with reopen and checks
// that the resource, its exact body and its index entry are there. It
// returns the reopened store, which the caller closes.
func Reopen(t *testing.T, s store.Store, reopen func() (store.Store, error)) store.Store {
	t.Helper()
	ctx := context.Background()
	body := `{"x": 1}`
	identifier := tok("identifier", "urn:x", "1")
	put(t, s, &store.Resource{Type: "Patient", ID: "a", Version: 1, Body: []byte(body)}, identifier)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s, err := reopen()
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	got, err := s.Read(ctx, "Patient", "a")
	if err != nil || string(got.Body) != body {
		t.Errorf("Read after reopen = %v, %v; want body %s", got, err, body)
	}
	expect(t, s, "search after reopen", query("Patient", clause("identifier", search.TypeToken, "", vSys("urn:x", "1"))), "a")
	return s
}

// ConcurrentOpen opens n stores with open, all at once, on one new
// database (as n processes starting together: their migrations must not
// collide), writes a resource through each and checks that the first
// store sees every one. It returns the stores, which are closed when the
// test ends.
func ConcurrentOpen(t *testing.T, n int, open func() (store.Store, error)) []store.Store {
	t.Helper()
	stores := make([]store.Store, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = open()
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	for i, s := range stores {
		put(t, s, &store.Resource{Type: "Basic", ID: fmt.Sprint(i), Version: 1, Body: []byte(`{}`)})
	}
	pg, err := stores[0].Search(context.Background(), &search.Query{Type: "Basic", Total: true})
	if err != nil || pg.Total != n {
		t.Errorf("Search = %v, %v; want %d resources", pg, err, n)
	}
	return stores
}

// SchemaV3Rows are statements that fill a database of schema version 3
// (before tenants): a Patient with an index entry and an outbox item.
// They are portable SQL: FALSE is 0 to SQLite.
var SchemaV3Rows = []string{
	`INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ('Patient', 'p', 1, 0, FALSE, '{}')`,
	`INSERT INTO current (type, id, version, last_updated, deleted) VALUES ('Patient', 'p', 1, 0, FALSE)`,
	`INSERT INTO idx_token (type, id, param, system, code, text) VALUES ('Patient', 'p', 'identifier', 'urn:x', '1', '')`,
	`INSERT INTO outbox (destination, order_key, patient, kind, source, record_id, version, trace_id, payload, status,
		next_attempt, created, updated) VALUES ('ehr', 'k', 'pat', 'session', 'src', 'r', '1', '', '{}', 'pending', 0, 0, 0)`,
}

// MigratedTenants checks s, opened on a database of schema version 3 that
// SchemaV3Rows filled: its resource and outbox item belong to the default
// tenant.
func MigratedTenants(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	if r, err := s.Read(ctx, "Patient", "p"); err != nil || r.Tenant != "" {
		t.Errorf("Read = %+v, %v; want the default tenant's", r, err)
	}
	q := &search.Query{Type: "Patient", Total: true, Clauses: []search.Clause{clause("identifier", search.TypeToken, "", vSys("urn:x", "1"))}}
	for tenant, want := range map[string]int{"": 1, "clinic-a": 0, search.AllTenants: 1} {
		q.Tenant = tenant
		if pg, err := s.Search(ctx, q); err != nil || pg.Total != want || len(pg.Matches) != want {
			t.Errorf("Search(tenant %q) = %v, %v; want %d match", tenant, pg, err, want)
		}
	}
	if _, total, err := s.History(ctx, store.HistoryQuery{}); err != nil || total != 1 {
		t.Errorf("History(default tenant) total = %d, %v; want 1", total, err)
	}
	items, err := s.Deliveries(ctx, store.DeliveryFilter{})
	if err != nil || len(items) != 1 || items[0].Tenant != "" {
		t.Errorf("Deliveries = %v, %v; want one item of the default tenant", items, err)
	}
}

// SchemaBeforePatientRows are statements that fill a database of the schema
// before patient references were kept as their subject's rows (SQLite's
// 10, PostgreSQL's 11): two Observations referencing a Patient by
// "urn:uuid:" with Reference.type only, as Extract then indexed them (no
// type on the subject row, the patient row beside it), and one
// referencing something untyped.
var SchemaBeforePatientRows = []string{
	`INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ('Observation', 'o1', 1, 0, FALSE, '{}')`,
	`INSERT INTO current (type, id, version, last_updated, deleted) VALUES ('Observation', 'o1', 1, 0, FALSE)`,
	`INSERT INTO idx_reference (type, id, param, ref_type, ref_id, ref_url) VALUES ('Observation', 'o1', 'subject', '', '', 'urn:uuid:x')`,
	`INSERT INTO idx_reference (type, id, param, ref_type, ref_id, ref_url) VALUES ('Observation', 'o1', 'patient', '', '', 'urn:uuid:x')`,
	`INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ('Observation', 'o2', 1, 0, FALSE, '{}')`,
	`INSERT INTO current (type, id, version, last_updated, deleted) VALUES ('Observation', 'o2', 1, 0, FALSE)`,
	`INSERT INTO idx_reference (type, id, param, ref_type, ref_id, ref_url) VALUES ('Observation', 'o2', 'subject', '', '', 'urn:uuid:y')`,
}

// SchemaAfterPatientRows fills a database of the schema after the patient
// rows were kept once (SQLite's 11, PostgreSQL's 13) and before the index
// version was recorded: an Observation with its subject row only.
var SchemaAfterPatientRows = SchemaBeforePatientRows[4:]

// MigratedIndexVersions checks the index version that the migration
// recording it gives databases with resources: 1 to one holding the
// patient rows of the builds before they were kept once (before, opened on
// a database SchemaBeforePatientRows filled), 2 to one without them
// (after, SchemaAfterPatientRows). (A database without resources gets this
// build's, search.IndexVersion.)
func MigratedIndexVersions(t *testing.T, before, after store.Store) {
	t.Helper()
	IndexVersion(t, before, "migrated with an older build's patient rows", 1)
	IndexVersion(t, after, "migrated with resources and no patient rows", 2)
}

// MigratedPatientRows checks s, opened on a database that
// SchemaBeforePatientRows filled: a search by patient still finds the
// Observation whose subject only Reference.type said was a Patient, now
// through its subject row, and not the other.
func MigratedPatientRows(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	for url, want := range map[string]int{"urn:uuid:x": 1, "urn:uuid:y": 0} {
		for _, mod := range []string{"", "Patient"} {
			q := &search.Query{Type: "Observation", Total: true,
				Clauses: []search.Clause{clause("patient", search.TypeReference, mod, search.Value{RefURL: url})}}
			if pg, err := s.Search(ctx, q); err != nil || pg.Total != want {
				t.Errorf("patient:%s=%s: %+v, %v; want %d match", mod, url, pg, err, want)
			}
		}
		q := &search.Query{Type: "Observation", Total: true,
			Clauses: []search.Clause{clause("subject", search.TypeReference, "", search.Value{RefURL: url})}}
		if pg, err := s.Search(ctx, q); err != nil || pg.Total != 1 {
			t.Errorf("subject=%s: %+v, %v; want 1 match", url, pg, err)
		}
	}
}

// SchemaBeforeComparator fills a database of the schema before quantity
// rows had a comparator (SQLite's 12, PostgreSQL's 14): an Observation of
// "<5 mg", its row the point 5 as the builds before index version 4 wrote
// it.
var SchemaBeforeComparator = []string{
	`INSERT INTO resources (type, id, version, last_updated, deleted, body) VALUES ('Observation', 'q1', 1, 0, FALSE,
		'{"resourceType":"Observation","id":"q1","status":"final","code":{"text":"x"},"valueQuantity":{"value":5,"comparator":"<","unit":"mg","system":"http://unitsofmeasure.org","code":"mg"}}')`,
	`INSERT INTO current (type, id, version, last_updated, deleted) VALUES ('Observation', 'q1', 1, 0, FALSE)`,
	`INSERT INTO idx_quantity (type, id, param, number, system, code, unit) VALUES ('Observation', 'q1', 'value-quantity', 5,
		'http://unitsofmeasure.org', 'mg', 'mg')`,
}

// MigratedComparator checks s, opened on a database SchemaBeforeComparator
// filled: the row written before reads as the point 5 (no comparator), as
// the build that wrote it searched it, until a reindex pass gives it its
// comparator: then lt5 finds the Observation and 5 does not. The pass
// also gives its status the code system its binding implies.
func MigratedComparator(t *testing.T, s store.Store) {
	t.Helper()
	ctx := context.Background()
	q := func(name string, prefix search.Prefix, want int) {
		t.Helper()
		v := search.Value{Prefix: prefix, Number: 5, Precision: 0.5}
		pg, err := s.Search(ctx, &search.Query{Type: "Observation", Total: true,
			Clauses: []search.Clause{clause("value-quantity", search.TypeQuantity, "", v)}})
		if err != nil || pg.Total != want {
			t.Errorf("%s: value-quantity=%s5: %+v, %v; want %d match", name, prefix, pg, err, want)
		}
	}
	q("migrated", search.PrefixEq, 1)
	q("migrated", search.PrefixLt, 0)
	r, ok := s.(store.Reindexer)
	if !ok {
		t.Fatal("the store is no Reindexer")
	}
	if b, err := r.Reindex(ctx, store.ReindexQuery{Tenant: search.AllTenants}); err != nil || b.Changed != 1 {
		t.Fatalf("Reindex = %+v, %v; want the Observation changed", b, err)
	}
	q("reindexed", search.PrefixEq, 0)
	q("reindexed", search.PrefixLt, 1)
	status := search.Value{System: "http://hl7.org/fhir/observation-status", Code: "final", HasSystem: true}
	if pg, err := s.Search(ctx, &search.Query{Type: "Observation", Total: true,
		Clauses: []search.Clause{clause("status", search.TypeToken, "", status)}}); err != nil || pg.Total != 1 {
		t.Errorf("reindexed: status=observation-status|final: %+v, %v; want 1 match", pg, err)
	}
}

// SchemaBeforeSourceClaims fills a database of the schema before claims of
// source systems were decided by the ledger (SQLite's 14, PostgreSQL's
// 16): one such claim, and a Patient's conditional key.
var SchemaBeforeSourceClaims = []string{
	`INSERT INTO conditional_keys (key, type, id) VALUES ('source-system|0123abcd', 'Tenant', 'tenant:clinic-b')`,
	`INSERT INTO conditional_keys (key, type, id) VALUES ('Patient|identifier=s|v', 'Patient', 'p1')`,
}

// MigratedSourceClaims checks s, opened on a database
// SchemaBeforeSourceClaims filled: the claim of the source system is gone
// (the next record decides it again from the ledger), the Patient's key
// is kept.
func MigratedSourceClaims(t *testing.T, s store.Store) {
	t.Helper()
	err := s.Write(context.Background(), func(tx store.Tx) error {
		if _, _, err := tx.KeyOwner("source-system|0123abcd"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("the source system's claim: %v, want dropped", err)
		}
		if _, id, err := tx.KeyOwner("Patient|identifier=s|v"); err != nil || id != "p1" {
			t.Errorf("the Patient's key: %q, %v; want kept", id, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// MigrationNotes checks s, opened on a database of schema version from
// that it migrated to version to: Migrated says so and lists each
// migration applied, in order, with its note for the operator.
func MigrationNotes(t *testing.T, s store.Store, from, to int) {
	t.Helper()
	m := s.Migrated()
	if m.From != from || m.To != to || len(m.Applied) != to-from {
		t.Fatalf("Migrated = %+v, want from %d to %d with %d migrations applied", m, from, to, to-from)
	}
	for i, a := range m.Applied {
		if a.Version != from+1+i || a.Note == "" {
			t.Errorf("Migrated.Applied[%d] = %+v, want version %d with a note", i, a, from+1+i)
		}
	}
}

// SchemaVersionRefused checks the error of opening a database whose
// schema is version have with a program whose schema is want: a
// *store.SchemaVersionError saying both, ErrNewerRelease for a newer
// schema (a rollback), ErrNoDatabase for an older one (a migration
// pending, opened as existing).
func SchemaVersionRefused(t *testing.T, err error, have, want int) {
	t.Helper()
	var ve *store.SchemaVersionError
	if !errors.As(err, &ve) || ve.Have != have || ve.Want != want {
		t.Fatalf("Open = %v, want a SchemaVersionError of %d against %d", err, have, want)
	}
	text := fmt.Sprintf("the database's schema is version %d, this release's %d", have, want)
	if !strings.Contains(err.Error(), text) {
		t.Errorf("Open = %q, want it to say %q", err, text)
	}
	newer, none := errors.Is(err, store.ErrNewerRelease), errors.Is(err, store.ErrNoDatabase)
	if newer != (have > want) || none != (have < want) {
		t.Errorf("Open = %v: ErrNewerRelease %v, ErrNoDatabase %v; want %v, %v", err, newer, none, have > want, have < want)
	}
}
