package storetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/internal/sqlstore"
)

// richAudit is the body of AuditEvent id about Patient/patient, from
// which the AuditEvent's entity entry can be extracted.
func richAudit(id, patient string) []byte {
	return fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"meta":{"versionId":"1"},"action":"R",`+
		`"entity":[{"what":{"reference":"Patient/%s"}}]}`, id, patient)
}

// appendIndexed puts AuditEvent id (version 1, no entries) and appends it
// with entries, as the audit log does.
func appendIndexed(tx store.Tx, id string, body []byte, entries []search.Entry) error {
	if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, Body: body}, nil); err != nil {
		return err
	}
	return tx.AppendAudit(id, body, entries)
}

// testAuditIndex: an appended AuditEvent's index entries are written by
// the store after the commit, and a search of AuditEvents (or with an
// AuditEvent _revinclude) finds every AuditEvent committed before it:
// those appended with entries by them, those appended without by the
// entries of their stored body; a rolled-back one is found by none. A bulk
// export's filter finds them too.
func testAuditIndex(t *testing.T, s store.Store) {
	ctx := context.Background()
	put(t, s, res("Patient", "p1", 1, base))
	err := s.Write(ctx, func(tx store.Tx) error {
		for i := range 5 {
			id := fmt.Sprint("ix", i)
			if err := appendIndexed(tx, id, auditBody(id), []search.Entry{ref("entity", "Patient", "p1"), tok("action", "", "R")}); err != nil {
				return err
			}
		}
		return appendIndexed(tx, "ix-body", richAudit("ix-body", "p1"), nil)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, func(tx store.Tx) error {
		if err := appendIndexed(tx, "ix-gone", richAudit("ix-gone", "p1"), []search.Entry{ref("entity", "Patient", "p1")}); err != nil {
			return err
		}
		return fmt.Errorf("rolled back")
	})
	if err == nil {
		t.Fatal("the rolled-back write succeeded")
	}
	want := []string{"ix0", "ix1", "ix2", "ix3", "ix4", "ix-body"}
	// A bulk export of a patient's AuditEvents filters on the same rows
	// (first: a search before it would have written them).
	page, err := s.Export(ctx, store.ExportQuery{Type: "AuditEvent", Limit: 100,
		Filters: []*search.Query{query("AuditEvent", clause("entity", search.TypeReference, "", vRef("Patient", "p1")))}})
	if err != nil {
		t.Fatal(err)
	}
	if got := sorted(ids(page)); fmt.Sprint(got) != fmt.Sprint(sorted(want)) {
		t.Errorf("export of AuditEvent by entity: %v, want %v", got, sorted(want))
	}
	expect(t, s, "AuditEvent by entity", query("AuditEvent", clause("entity", search.TypeReference, "", vRef("Patient", "p1"))), want...)
	expect(t, s, "AuditEvent by action", query("AuditEvent", clause("action", search.TypeToken, "", vCode("R"))), want...)
	q := query("Patient", clause("_id", search.TypeToken, "", vCode("p1")))
	q.RevIncludes = []search.Include{{SourceType: "AuditEvent", Param: "entity"}}
	if got := sorted(ids(doSearch(t, s, q).Included)); fmt.Sprint(got) != fmt.Sprint(sorted(want)) {
		t.Errorf("Patient with its AuditEvents: included %v, want %v", got, sorted(want))
	}
}

// testAuditIndexBatched: AuditEvents appended steadily, a few to a
// transaction, are indexed many to a transaction: after a pass that did
// not index a full chunk, the indexer waits sqlstore.AuditIndexDelay
// before the next one, so that it never runs more than one pass per
// delay (it ran one for every few AuditEvents, issue 19). Then every one
// of them is found.
func testAuditIndexBatched(t *testing.T, s store.Store) {
	ix, ok := s.(interface{ AuditIndexPasses() int64 })
	if !ok {
		t.Skip("the store does not index AuditEvents after their commit")
	}
	ctx := context.Background()
	put(t, s, res("Patient", "p1", 1, base))
	// Four writers append for three delays (at least 20 each).
	const writers = 4
	start := time.Now()
	var wg sync.WaitGroup
	var appended atomic.Int64
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := 0; i < 20 || time.Since(start) < 3*sqlstore.AuditIndexDelay; i++ {
				id := fmt.Sprintf("b%d-%d", w, i)
				err := s.Write(ctx, func(tx store.Tx) error {
					return appendIndexed(tx, id, richAudit(id, "p1"), []search.Entry{ref("entity", "Patient", "p1")})
				})
				if err != nil {
					errs <- err
					return
				}
				appended.Add(1)
			}
		})
	}
	wg.Wait()
	passes, took := ix.AuditIndexPasses(), time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// A pass starts at most once per delay after the first append.
	if most := int64(took/sqlstore.AuditIndexDelay) + 1; passes > most {
		t.Errorf("%d indexing passes in %v of appends, want at most %d (one per %v)", passes, took.Round(time.Millisecond), most, sqlstore.AuditIndexDelay)
	}
	q := query("AuditEvent", clause("entity", search.TypeReference, "", vRef("Patient", "p1")))
	q.Count, q.Total = 1000, true
	if pg, n := doSearch(t, s, q), int(appended.Load()); pg.Total != n || len(pg.Matches) != min(n, 1000) {
		t.Errorf("found %d AuditEvents of the patient (total %d), want %d", len(pg.Matches), pg.Total, n)
	}
}

// testAuditIndexShared: two stores (processes) on one database append
// AuditEvents at once and search them: each finds every AuditEvent
// either committed, once, whichever indexed it (the other's are
// extracted from their bodies).
func testAuditIndexShared(t *testing.T, a, b store.Store) {
	ctx := context.Background()
	put(t, a, res("Patient", "p9", 1, base))
	const per = 30
	var wg sync.WaitGroup
	for w, s := range []store.Store{a, b, a, b} {
		wg.Go(func() {
			for i := range per {
				id := fmt.Sprintf("sh%d-%02d", w, i)
				err := store.Retry(ctx, s, func(tx store.Tx) error {
					return appendIndexed(tx, id, richAudit(id, "p9"), []search.Entry{ref("entity", "Patient", "p9")})
				})
				if err != nil {
					t.Errorf("append %s: %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	q := query("AuditEvent", clause("entity", search.TypeReference, "", vRef("Patient", "p9")))
	q.Count, q.Total = 1000, true
	for name, s := range map[string]store.Store{"a": a, "b": b} {
		pg := doSearch(t, s, q)
		if pg.Total != 4*per || len(pg.Matches) != 4*per {
			t.Errorf("search through %s: %d matches, total %d; want %d", name, len(pg.Matches), pg.Total, 4*per)
		}
	}
}
