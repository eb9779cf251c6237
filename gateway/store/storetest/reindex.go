package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/fhirwire"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// reindexBodies are resources whose bodies give index rows of every
// table: tokens, strings, dates, references, quantities and uris.
var reindexBodies = map[string]string{
	"Patient/rx-p1": `{"resourceType":"Patient","id":"rx-p1","identifier":[{"system":"urn:mrn","value":"M-1"}],` +
		`"name":[{"family":"Reindexer","given":["Ada"]}],"birthDate":"1980-05-01"}`,
	"Observation/rx-o1": `{"resourceType":"Observation","id":"rx-o1","status":"final",` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"44249-1"}]},"subject":{"reference":"Patient/rx-p1"},` +
		`"effectiveDateTime":"2026-01-02","valueQuantity":{"value":12,"unit":"score","system":"http://unitsofmeasure.org","code":"{score}"}}`,
	"Observation/rx-o2": `{"resourceType":"Observation","id":"rx-o2","status":"amended",` +
		`"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"subject":{"reference":"Patient/rx-p1"}}`,
	"ValueSet/rx-vs": `{"resourceType":"ValueSet","id":"rx-vs","url":"https://example.org/ValueSet/rx","status":"active"}`,
}

// reindexPut puts version v of key (Type/id) with its reindexBodies body
// and the given entries (which need not be the body's).
func reindexPut(t *testing.T, s store.Store, key string, v int64, tenant string, entries ...search.Entry) {
	t.Helper()
	typ, id, _ := strings.Cut(key, "/")
	r := res(typ, id, v, base)
	r.Body, r.Tenant = []byte(reindexBodies[key]), tenant
	put(t, s, r, entries...)
}

// extracted are the index entries of a reindexBodies body.
func extracted(t *testing.T, key string) []search.Entry {
	t.Helper()
	doc, err := fhirwire.Decode([]byte(reindexBodies[key]))
	if err != nil {
		t.Fatal(err)
	}
	typ, _, _ := strings.Cut(key, "/")
	return search.Extract(typ, doc)
}

// reindexAll runs Reindex over q's resources, count at a time, to the
// end, and returns the totals and how many calls it took.
func reindexAll(t *testing.T, s store.Store, q store.ReindexQuery) (checked, changed, calls int) {
	t.Helper()
	for {
		b, err := s.Reindex(context.Background(), q)
		if err != nil {
			t.Fatalf("Reindex after %+v: %v", q.After, err)
		}
		checked, changed, calls = checked+b.Checked, changed+b.Changed, calls+1
		if b.Done {
			return checked, changed, calls
		}
		if b.Last == q.After {
			t.Fatalf("Reindex did not move on from %+v", q.After)
		}
		q.After = b.Last
		if calls > 100 {
			t.Fatal("Reindex never done")
		}
	}
}

// testReindex: resources stored with index rows that are not their
// bodies' (none, fewer, other) are found by a dry run, which writes
// nothing, and rewritten by Reindex, a few at a time, after which every
// search finds them by their bodies' values; resources whose rows are
// their bodies' are left alone, deletions are not checked, and a second
// pass changes nothing (nor does one after AuditEvents were appended:
// their rows are never written twice). Type restricts a pass.
func testReindex(t *testing.T, s store.Store) {
	ctx := context.Background()
	// A database without resources is indexed as this build indexes,
	// whatever it records.
	if err := s.MarkIndexed(ctx, 1); err != nil {
		t.Fatal(err)
	}
	IndexVersion(t, s, "an empty store marked 1", search.IndexVersion)
	reindexPut(t, s, "Patient/rx-p1", 1, "") // no rows
	// Other rows, among them the patient row an older build wrote.
	reindexPut(t, s, "Observation/rx-o1", 1, "clinic-a", tok("code", "http://loinc.org", "0-0"), ref("patient", "Patient", "rx-p1"))
	reindexPut(t, s, "Observation/rx-o2", 1, "", extracted(t, "Observation/rx-o2")...) // its own rows
	reindexPut(t, s, "ValueSet/rx-vs", 1, "", extracted(t, "ValueSet/rx-vs")[:1]...)   // fewer rows
	put(t, s, res("Basic", "rx-gone", 1, base), tok("code", "urn:x", "gone"))
	put(t, s, deletion("Basic", "rx-gone", 2, base))
	err := s.Write(ctx, func(tx store.Tx) error {
		body := richAudit("rx-audit", "rx-p1")
		doc, _ := fhirwire.Decode(body)
		return appendIndexed(tx, "rx-audit", body, search.Extract("AuditEvent", doc))
	})
	if err != nil {
		t.Fatal(err)
	}
	byCode := query("Observation", clause("code", search.TypeToken, "", vSys("http://loinc.org", "44249-1")))
	byCode.Tenant = search.AllTenants
	byName := query("Patient", clause("family", search.TypeString, "", vStr("reindexer")))
	expect(t, s, "before: Observation by code", byCode)
	expect(t, s, "before: Patient by family", byName)

	checked, changed, _ := reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants, DryRun: true})
	// Patient, two Observations, the ValueSet and the AuditEvent (unless
	// not indexed yet: then it is left out of the comparison).
	if checked != 5 || changed != 3 {
		t.Errorf("dry run: checked %d, changed %d; want 5 and 3", checked, changed)
	}
	expect(t, s, "after the dry run: Observation by code", byCode)
	// With resources, what it records (these were put with rows that are
	// not their bodies', to stand for rows an older build wrote).
	IndexVersion(t, s, "with resources, marked 1", 1)

	if tenants, err := s.Tenants(ctx); err != nil || !slices.Equal(tenants, []string{"", "clinic-a"}) {
		t.Errorf("Tenants = %q, %v; want \"\" and clinic-a", tenants, err)
	}
	// One tenant's resources only: clinic-a's Observation.
	if checked, changed, _ := reindexAll(t, s, store.ReindexQuery{Tenant: "clinic-a", DryRun: true}); checked != 1 || changed != 1 {
		t.Errorf("dry run of clinic-a's: checked %d, changed %d; want 1 and 1", checked, changed)
	}
	if checked, _, _ := reindexAll(t, s, store.ReindexQuery{DryRun: true}); checked != 4 {
		t.Errorf("dry run of the default tenant's: checked %d; want 4", checked)
	}
	checked, changed, calls := reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants, Count: 2})
	if checked != 5 || changed != 3 || calls != 3 {
		t.Errorf("reindex: checked %d, changed %d in %d calls; want 5, 3 in 3", checked, changed, calls)
	}
	expect(t, s, "Observation by code", byCode, "rx-o1")
	IndexVersion(t, s, "after a pass, before it is marked", 1)
	if err := s.MarkIndexed(ctx, search.IndexVersion); err != nil {
		t.Fatal(err)
	}
	IndexVersion(t, s, "marked again", search.IndexVersion)
	expect(t, s, "Observation by the code its rows had", query("Observation", clause("code", search.TypeToken, "", vSys("http://loinc.org", "0-0"))))
	expect(t, s, "Patient by family", byName, "rx-p1")
	expect(t, s, "Patient by identifier", query("Patient", clause("identifier", search.TypeToken, "", vSys("urn:mrn", "M-1"))), "rx-p1")
	expect(t, s, "Patient by birthdate", query("Patient", clause("birthdate", search.TypeDate, "", vDate(search.PrefixEq, day(1980, 5, 1)))), "rx-p1")
	subject := query("Observation", clause("subject", search.TypeReference, "", vRef("Patient", "rx-p1")))
	subject.Tenant = search.AllTenants
	expect(t, s, "Observation by subject", subject, "rx-o1", "rx-o2")
	valued := query("Observation", clause("value-quantity", search.TypeQuantity, "", vQty(search.PrefixGt, 10, 0, "", "")))
	valued.Tenant = search.AllTenants
	expect(t, s, "Observation by value", valued, "rx-o1")
	expect(t, s, "ValueSet by url", query("ValueSet", clause("url", search.TypeURI, "", vStr("https://example.org/ValueSet/rx"))), "rx-vs")
	expect(t, s, "ValueSet by status", query("ValueSet", clause("status", search.TypeToken, "", vCode("active"))), "rx-vs")
	expect(t, s, "AuditEvent by entity", query("AuditEvent", clause("entity", search.TypeReference, "", vRef("Patient", "rx-p1"))), "rx-audit")

	// More AuditEvents, appended without rows in memory: whether the
	// indexer or the pass gets to each first, each has its body's rows
	// once.
	err = s.Write(ctx, func(tx store.Tx) error {
		for i := range 3 {
			id := fmt.Sprint("rx-audit-", i)
			if err := appendIndexed(tx, id, richAudit(id, "rx-p1"), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants})
	expect(t, s, "AuditEvents by entity", query("AuditEvent", clause("entity", search.TypeReference, "", vRef("Patient", "rx-p1"))),
		"rx-audit", "rx-audit-0", "rx-audit-1", "rx-audit-2")
	if checked, changed, _ := reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants}); checked != 8 || changed != 0 {
		t.Errorf("second pass: checked %d, changed %d; want 8 and 0", checked, changed)
	}

	// A pass over one type.
	reindexPut(t, s, "Patient/rx-p1", 2, "")
	reindexPut(t, s, "Observation/rx-o2", 2, "")
	if checked, changed, _ := reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants, Type: "Patient"}); checked != 1 || changed != 1 {
		t.Errorf("pass over Patients: checked %d, changed %d; want 1 and 1", checked, changed)
	}
	expect(t, s, "Patient by family, version 2", byName, "rx-p1")
	expect(t, s, "Observation by code, version 2 not reindexed", query("Observation", clause("code", search.TypeToken, "", vSys("http://loinc.org", "8867-4"))))

	// A body that does not decode is named and left; the others of its
	// batch are rewritten, and counted by type.
	bad := res("Basic", "rx-bad", 1, base)
	bad.Body = []byte(`{"resourceType":"Basic","id":`)
	put(t, s, bad, tok("code", "urn:x", "kept"))
	reindexPut(t, s, "Patient/rx-p1", 3, "")
	b, err := s.Reindex(ctx, store.ReindexQuery{Tenant: search.AllTenants})
	if err != nil {
		t.Fatal(err)
	}
	want := store.ReindexBatch{Checked: 9, Changed: 2, ChangedTypes: map[string]int{"Observation": 1, "Patient": 1},
		Unreadable: []store.ResourceKey{{Type: "Basic", ID: "rx-bad"}}, Last: store.ResourceKey{Type: "ValueSet", ID: "rx-vs"}, Done: true}
	if fmt.Sprint(b) != fmt.Sprint(want) {
		t.Errorf("pass over an unreadable body: %+v, want %+v", b, want)
	}
	expect(t, s, "the unreadable one by its rows", query("Basic", clause("code", search.TypeToken, "", vSys("urn:x", "kept"))), "rx-bad")
}

// IndexVersion checks s's Reindexer.IndexVersion (also after a
// migration: see the stores' tests).
func IndexVersion(t *testing.T, s store.Store, when string, want int) {
	t.Helper()
	if got, err := s.IndexVersion(context.Background()); err != nil || got != want {
		t.Errorf("IndexVersion %s = %d, %v; want %d", when, got, err, want)
	}
}

// testReindexConcurrent: Reindex passes running while writers update the
// resources they rewrite leave every resource with its current body's rows
// (a pass never writes the rows of a body it read before an update over
// them): a dry run afterwards finds nothing to change, and each resource
// is found by its last code only.
func testReindexConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	const resources, updates = 4, 40
	body := func(id string, v int) (*store.Resource, []search.Entry) {
		b := fmt.Sprintf(`{"resourceType":"Observation","id":%q,"status":"final","code":{"coding":[{"system":"urn:rx","code":"c-%d"}]}}`, id, v)
		doc, err := fhirwire.Decode([]byte(b))
		if err != nil {
			t.Fatal(err)
		}
		return &store.Resource{Type: "Observation", ID: id, Version: int64(v), LastUpdated: base, Body: []byte(b)}, search.Extract("Observation", doc)
	}
	for i := range resources {
		r, _ := body(fmt.Sprint("rc-", i), 1)
		put(t, s, r) // no rows: the first pass rewrites them
	}
	done := make(chan struct{})
	errs := make(chan error, resources+1)
	go func() { // passes until the writers are done
		for {
			select {
			case <-done:
				errs <- nil
				return
			default:
			}
			if _, err := s.Reindex(ctx, store.ReindexQuery{Tenant: search.AllTenants, Type: "Observation", Count: 2}); err != nil {
				errs <- err
				return
			}
		}
	}()
	var writers sync.WaitGroup
	for i := range resources {
		writers.Go(func() {
			id := fmt.Sprint("rc-", i)
			for v := 2; v <= updates; v++ {
				r, e := body(id, v)
				if err := s.Write(ctx, func(tx store.Tx) error { return tx.Put(r, e) }); err != nil {
					errs <- fmt.Errorf("update %s to version %d: %w", id, v, err)
					return
				}
			}
		})
	}
	writers.Wait()
	close(done)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if checked, changed, _ := reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants, DryRun: true}); checked != resources || changed != 0 {
		t.Errorf("dry run after: checked %d, changed %d; want %d and 0", checked, changed, resources)
	}
	var want []string
	for i := range resources {
		want = append(want, fmt.Sprint("rc-", i))
	}
	expect(t, s, "by the last code", query("Observation", clause("code", search.TypeToken, "", vSys("urn:rx", fmt.Sprint("c-", updates)))), want...)
	expect(t, s, "by an earlier code", query("Observation", clause("code", search.TypeToken, "", vSys("urn:rx", "c-2"))))
}

// testReindexRace: a resource updated after a pass compared it and before
// the pass writes keeps its writer's rows. Deterministic where one lane
// serves the writes (SQLite): the update is held in the lane until the
// pass, having compared the resource, waits behind it. Where writes run
// in parallel, ReindexConcurrent covers the same.
func testReindexRace(t *testing.T, s store.Store) {
	ctx := context.Background()
	gc, ok := s.(interface {
		GroupCommit() (lanes, maxBatch int)
		QueuedWrites() int
	})
	if !ok {
		t.Skip("the store does not say how its writes queue")
	}
	if lanes, _ := gc.GroupCommit(); lanes != 1 {
		t.Skip("writes run in parallel here: ReindexConcurrent covers them")
	}
	version := func(v int64) (*store.Resource, []search.Entry) {
		b := fmt.Sprintf(`{"resourceType":"Observation","id":"rr","status":"final","code":{"coding":[{"system":"urn:rx","code":"v%d"}]}}`, v)
		doc, err := fhirwire.Decode([]byte(b))
		if err != nil {
			t.Fatal(err)
		}
		return &store.Resource{Type: "Observation", ID: "rr", Version: v, LastUpdated: base, Body: []byte(b)}, search.Extract("Observation", doc)
	}
	r1, _ := version(1)
	put(t, s, r1) // no rows: the pass will want to rewrite them
	entered, proceed := make(chan struct{}, 1), make(chan struct{})
	wrote := make(chan error, 1)
	go func() {
		r2, e2 := version(2)
		wrote <- s.Write(ctx, func(tx store.Tx) error {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-proceed
			return tx.Put(r2, e2)
		})
	}()
	<-entered
	type result struct {
		b   store.ReindexBatch
		err error
	}
	passed := make(chan result, 1)
	go func() {
		b, err := s.Reindex(ctx, store.ReindexQuery{Tenant: search.AllTenants, Type: "Observation"})
		passed <- result{b, err}
	}()
	for start := time.Now(); gc.QueuedWrites() == 0; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			close(proceed)
			t.Fatal("the pass never waited to write")
		}
	}
	close(proceed)
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	p := <-passed
	if p.err != nil || p.b.Checked != 1 || p.b.Changed != 0 {
		t.Errorf("the pass: %+v, %v; want 1 checked, none changed (left to its writer)", p.b, p.err)
	}
	if checked, changed, _ := reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants, DryRun: true}); checked != 1 || changed != 0 {
		t.Errorf("dry run after: checked %d, changed %d; want 1 and 0", checked, changed)
	}
	expect(t, s, "by the code of version 2", query("Observation", clause("code", search.TypeToken, "", vSys("urn:rx", "v2"))), "rr")
	expect(t, s, "by the code of version 1", query("Observation", clause("code", search.TypeToken, "", vSys("urn:rx", "v1"))))
}

// testReindexKeys: a resource whose rows Reindex rewrites loses the
// conditional keys of search criteria it held ("Type?param=value", a
// tenant's "tenant:<t>|Type?..."), which an older build folded its own
// way and which could hold a key the current folding gives another
// resource's criteria; its other keys (ingest's MRN key "Patient|...")
// stay, and so do the keys of a resource whose rows are left alone.
func testReindexKeys(t *testing.T, s store.Store) {
	ctx := context.Background()
	reindexPut(t, s, "Patient/rx-p1", 1, "")                                     // no rows: rewritten
	reindexPut(t, s, "ValueSet/rx-vs", 1, "", extracted(t, "ValueSet/rx-vs")...) // its own rows: left alone
	keys := map[string]string{                                                   // key -> the resource claiming it
		"Patient?family=reindexer":               "Patient/rx-p1",
		"tenant:clinic-a|Patient?family=ada":     "Patient/rx-p1",
		"Patient|identifier=urn:mrn|M-1?x":       "Patient/rx-p1",
		"tenant:clinic-a|Patient|identifier=s|v": "Patient/rx-p1",
		"ValueSet?url=https://example.org/vs":    "ValueSet/rx-vs",
	}
	err := s.Write(ctx, func(tx store.Tx) error {
		for k, owner := range keys {
			typ, id, _ := strings.Cut(owner, "/")
			if err := tx.ClaimKey(k, typ, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, changed, _ := reindexAll(t, s, store.ReindexQuery{Tenant: search.AllTenants}); changed != 1 {
		t.Errorf("reindex: changed %d; want 1", changed)
	}
	gone := map[string]bool{"Patient?family=reindexer": true, "tenant:clinic-a|Patient?family=ada": true}
	err = s.Write(ctx, func(tx store.Tx) error {
		for k, owner := range keys {
			typ, id, err := tx.KeyOwner(k)
			switch {
			case gone[k] && !errors.Is(err, store.ErrNotFound):
				t.Errorf("after reindex KeyOwner(%q) = %s/%s, %v; want ErrNotFound", k, typ, id, err)
			case !gone[k] && (err != nil || typ+"/"+id != owner):
				t.Errorf("after reindex KeyOwner(%q) = %s/%s, %v; want %s", k, typ, id, err, owner)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
