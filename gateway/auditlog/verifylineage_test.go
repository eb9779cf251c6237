package auditlog

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/operator"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// lineageFixture is a database with the lineage of one record: its
// receipt (a Provenance an ingest wrote), a delivery that failed once (500)
// and then succeeded, a delivery whose first attempt was cut off after its
// AuditEvent (recorded, and audited, as interrupted by the next worker),
// and two AuditEvents of an older gateway (an ingest and a delivery-send
// without hashes).
type lineageFixture struct {
	db, provID         string
	item1, item2       int64
	delivery1, deliv2  string
	claimedAt, sentAt2 time.Time
}

func newLineageFixture(t *testing.T) *lineageFixture {
	t.Helper()
	ctx := context.Background()
	f := &lineageFixture{db: filepath.Join(t.TempDir(), "kg.db")}
	st, err := sqlite.Open(ctx, f.db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := New(st, Config{Observer: "gw-1"})
	l.Start()
	defer l.Close()
	// After the store's clock, which dates the items enqueued (due then).
	now := time.Now().UTC().Add(time.Hour).Truncate(time.Second).Add(162_400_000)

	// The receipt.
	f.provID = audit.RecordProvenanceID("", "emr", "session", "INF-1", "1")
	sc := NewScope("ingest", nil)
	sc.RequestID, sc.TraceID = "req-1", "4bf92f3577b34da6a3ce929d0e0e4736"
	err = st.Write(ctx, func(tx store.Tx) error {
		sc.Reset()
		p, entries, err := store.NewVersion("Patient", "p1", 1, map[string]any{"active": true}, now)
		if err != nil {
			return err
		}
		if err := tx.Put(p, entries); err != nil {
			return err
		}
		sc.Touch(p)
		prov := audit.Provenance{ID: f.provID, Activity: "CREATE", Source: "emr", MappingVersion: "2.0.0",
			WhatSystem: "https://x.example/sid/emr/session-record", WhatValue: "INF-1", WhatDisplay: "session record version 1",
			RecordKind: "session", RecordVersion: "1", ContentHash: audit.SHA256([]byte("the clinic's record"))}
		if err := l.WriteProvenance(tx, sc, prov, []*store.Resource{p}, now); err != nil {
			return err
		}
		return l.AppendTx(tx, sc, 201)
	})
	if err != nil {
		t.Fatal(err)
	}

	// The deliveries.
	err = st.Write(ctx, func(tx store.Tx) error {
		return tx.Enqueue(
			&store.OutboxItem{Destination: "ehr-a", OrderKey: "emr|session|INF-1", Kind: "session", Source: "emr", RecordID: "INF-1",
				Version: "1", Payload: []byte(`{"resourceType":"Bundle","type":"transaction"}`)},
			&store.OutboxItem{Destination: "ehr-b", OrderKey: "emr|session|INF-1", Kind: "session", Source: "emr", RecordID: "INF-1",
				Version: "1", Payload: []byte(`{"resourceType":"Bundle","type":"transaction"}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	ids, err := operator.LoadIDs(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	claim := func(dest string, at time.Time, lease time.Duration) *store.OutboxItem {
		t.Helper()
		its, err := st.Claim(ctx, dest, at, lease, 1)
		if err != nil || len(its) != 1 {
			t.Fatalf("Claim(%s) = %v, %v; want one item", dest, its, err)
		}
		return its[0]
	}
	send := func(it *store.OutboxItem, a *store.Attempt, outcome, status string, complete bool) {
		t.Helper()
		if err := l.AppendSent(ctx, st, "https://x.example/sid", Sent{Delivery: ids.Encode(it.ID), Destination: it.Destination,
			Item: it, Attempt: a, Outcome: outcome}); err != nil {
			t.Fatal(err)
		}
		if complete {
			if err := st.Complete(ctx, a, status, a.At); err != nil {
				t.Fatal(err)
			}
		}
	}
	it := claim("ehr-a", now, time.Minute)
	f.item1, f.delivery1 = it.ID, ids.Encode(it.ID)
	send(it, &store.Attempt{ItemID: it.ID, N: 1, At: now, Duration: 27*time.Millisecond + 600*time.Microsecond, HTTPStatus: 500,
		Outcome: []byte(`{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"exception"}]}`), Error: "http 500 (exception)"},
		"retry", store.StatusPending, true)
	it = claim("ehr-a", now.Add(time.Second), time.Minute)
	send(it, &store.Attempt{ItemID: it.ID, N: 2, At: now.Add(time.Second), Duration: 31 * time.Millisecond, HTTPStatus: 200,
		Outcome: []byte(`{"resourceType":"Bundle","type":"transaction-response","entry":[]}`)}, "done", store.StatusDone, true)

	// Cut off: the AuditEvent of the attempt committed, its row never.
	it = claim("ehr-b", now, time.Millisecond)
	f.item2, f.deliv2, f.claimedAt = it.ID, ids.Encode(it.ID), now.Truncate(time.Millisecond)
	send(it, &store.Attempt{ItemID: it.ID, N: 1, At: now, Duration: 8 * time.Second, HTTPStatus: 200,
		Outcome: []byte(`{"resourceType":"Bundle","type":"transaction-response"}`)}, "done", "", false)
	it = claim("ehr-b", now.Add(35*time.Second), time.Minute)
	if !strings.HasPrefix(it.LastError, store.LeaseEnded) || !it.NextAttempt.Equal(f.claimedAt) {
		t.Fatalf("claimed again: last error %q, next attempt %v; want the lease ended, due since its claim %v", it.LastError, it.NextAttempt, f.claimedAt)
	}
	send(it, &store.Attempt{ItemID: it.ID, N: it.Attempts + 1, At: it.NextAttempt, TraceID: it.TraceID,
		Error: "interrupted: the gateway stopped during this attempt"}, "interrupted", store.StatusPending, true)

	// An older gateway's: no hashes.
	for i, rec := range []audit.Record{
		{Interaction: "ingest", Status: 201, Entities: []audit.Entity{{Type: "Provenance", ID: "rec-old", Version: 1}}},
		{Interaction: "delivery-send", Status: 200, Recipient: "ehr-a",
			Identified: []audit.Identified{{System: audit.SystemDelivery, Value: "31", Description: "the delivery"}}},
	} {
		rec.ID, rec.Recorded, rec.Observer = fmt.Sprintf("old%d", i), now.Add(time.Minute), "gw-0"
		if err := st.Write(ctx, newEvent("", rec).put); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestVerifyLineage: the lineage's records beside the chain (a receipt's
// Provenance, each delivery attempt's status, answer, time and the
// payload sent) are checked against the chained AuditEvents that wrote
// them: an untouched database is intact (an attempt cut off after its
// AuditEvent and recorded as interrupted by the next worker included;
// AuditEvents of an older gateway, without hashes, counted as unchecked);
// each record rewritten is a fault naming the AuditEvent's record, its id,
// the record and what differs (p16 F3).
func TestVerifyLineage(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		tamper func(f *lineageFixture) []string
		about  func(f *lineageFixture) []string // the records reported, in order
		want   []string                         // in the problems
	}{
		{"intact", func(*lineageFixture) []string { return nil }, nil, nil},
		{"a failed attempt made a delivery", func(*lineageFixture) []string {
			return []string{`UPDATE delivery_attempts SET http_status = 200, error = '',
				outcome = '{"resourceType":"Bundle","type":"transaction-response","entry":[]}' WHERE http_status = 500`}
		}, func(f *lineageFixture) []string { return []string{"delivery " + f.delivery1 + " attempt 1"} },
			[]string{"its HTTP status is 200 where the AuditEvent says 500", "the EHR's answer is not the one recorded", "its error"}},
		{"the receipt's content hash changed", func(*lineageFixture) []string {
			return []string{`UPDATE resources SET body = CAST(replace(CAST(body AS TEXT), '"sha256:', '"sha256:0') AS BLOB) WHERE type = 'Provenance'`}
		}, func(f *lineageFixture) []string { return []string{"Provenance/" + f.provID + "/_history/1"} },
			[]string{"stored JSON is not the one this AuditEvent recorded"}},
		{"a shadow version of the receipt", func(f *lineageFixture) []string {
			return []string{
				`INSERT INTO resources (type, id, version, last_updated, deleted, body, tenant)
					SELECT type, id, 2, last_updated, 0, body, tenant FROM resources WHERE type = 'Provenance'`,
				`UPDATE current SET version = 2 WHERE type = 'Provenance'`}
		}, func(f *lineageFixture) []string { return []string{"Provenance/" + f.provID + "/_history/1"} },
			[]string{"current version is 2, not the version 1"}},
		{"the receipt deleted", func(f *lineageFixture) []string {
			return []string{`DELETE FROM idx_token WHERE type = 'Provenance'`, `DELETE FROM idx_reference WHERE type = 'Provenance'`,
				`DELETE FROM idx_date WHERE type = 'Provenance'`, `DELETE FROM idx_string WHERE type = 'Provenance'`,
				`DELETE FROM idx_uri WHERE type = 'Provenance'`,
				`DELETE FROM current WHERE type = 'Provenance'`, `DELETE FROM resources WHERE type = 'Provenance'`}
		}, func(f *lineageFixture) []string { return []string{"Provenance/" + f.provID + "/_history/1"} },
			[]string{"is not stored"}},
		{"an attempt deleted", func(f *lineageFixture) []string {
			return []string{fmt.Sprintf(`DELETE FROM delivery_attempts WHERE item_id = %d AND n = 2`, f.item1)}
		}, func(f *lineageFixture) []string { return []string{"delivery " + f.delivery1 + " attempt 2"} },
			[]string{"not in the outbox"}},
		{"an attempt moved in time", func(f *lineageFixture) []string {
			return []string{fmt.Sprintf(`UPDATE delivery_attempts SET at = at - 3600000 WHERE item_id = %d AND n = 2`, f.item1)}
		}, func(f *lineageFixture) []string { return []string{"delivery " + f.delivery1 + " attempt 2"} },
			[]string{"its time is not the one recorded"}},
		{"the payload changed", func(f *lineageFixture) []string {
			return []string{fmt.Sprintf(`UPDATE outbox SET payload = X'7b7d' WHERE id = %d`, f.item1)}
		}, func(f *lineageFixture) []string {
			return []string{"delivery " + f.delivery1 + " attempt 1", "delivery " + f.delivery1 + " attempt 2"}
		}, []string{"the delivery's payload is not what was sent"}},
		{"the delivery sent elsewhere", func(f *lineageFixture) []string {
			return []string{fmt.Sprintf(`UPDATE outbox SET destination = 'ehr-c' WHERE id = %d`, f.item1)}
		}, func(f *lineageFixture) []string {
			return []string{"delivery " + f.delivery1 + " attempt 1", "delivery " + f.delivery1 + " attempt 2"}
		}, []string{"the delivery's destination is not the one recorded"}},
		{"an attempt passed off as interrupted", func(f *lineageFixture) []string {
			return []string{fmt.Sprintf(`UPDATE delivery_attempts SET http_status = 0, outcome = NULL, error = 'interrupted: x'
				WHERE item_id = %d AND n = 1`, f.item1)}
		}, func(f *lineageFixture) []string { return []string{"delivery " + f.delivery1 + " attempt 1"} },
			[]string{"no AuditEvent of an interrupted attempt says so"}},
		{"the interrupted attempt's time moved", func(f *lineageFixture) []string {
			return []string{fmt.Sprintf(`UPDATE delivery_attempts SET at = at + 1000 WHERE item_id = %d`, f.item2)}
		}, func(f *lineageFixture) []string {
			return []string{"delivery " + f.deliv2 + " attempt 1", "delivery " + f.deliv2 + " attempt 1"}
		}, []string{"its time is not the one recorded", "no AuditEvent of an interrupted attempt says so"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newLineageFixture(t)
			raw, err := sql.Open("sqlite", "file:"+f.db+"?_pragma=busy_timeout(10000)") // the store writes meanwhile (its audit index)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, q := range tc.tamper(f) {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			st, err := sqlite.Open(ctx, f.db, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			res, err := Verify(ctx, st, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if res.BrokenAt != 0 {
				t.Fatalf("Verify: chain broken at %d (%s), want its links intact", res.BrokenAt, res.Reason)
			}
			if res.Lineage.Unchecked != 2 || !strings.Contains(res.Lineage.Note, "2 lineage records") {
				t.Errorf("Lineage = %+v, want the older gateway's 2 records counted as unchecked, with a note", res.Lineage)
			}
			if tc.about == nil {
				if !res.Intact || res.FaultCount != 0 || res.Lineage.Provenances != 1 || res.Lineage.Attempts != 4 || res.Lineage.Faults != 0 {
					t.Errorf("Verify = intact %t, faults %+v, lineage %+v; want intact, 1 Provenance and 4 attempts checked",
						res.Intact, res.Faults, res.Lineage)
				}
				return
			}
			want := tc.about(f)
			if res.Intact || res.FaultCount != len(want) || res.Lineage.Faults != len(want) {
				t.Fatalf("Verify = intact %t, faults %+v; want %d lineage faults about %v", res.Intact, res.Faults, len(want), want)
			}
			var problems []string
			for i, fl := range res.Faults {
				if fl.About != want[i] || fl.Seq == 0 || fl.AuditEvent == "" {
					t.Errorf("fault %d = %+v, want one about %s naming its AuditEvent and record", i, fl, want[i])
				}
				problems = append(problems, fl.Problem)
			}
			all := strings.Join(problems, "; ")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("faults = %q, want one saying %q", all, w)
				}
			}
			if sum := res.Summary(); !strings.Contains(sum, "receipts or delivery attempts stored otherwise") || !strings.Contains(sum, want[0]) {
				t.Errorf("Summary() = %q, want the lineage's findings, naming %s", sum, want[0])
			}
		})
	}
}

// TestVerifyUncheckedWrittenOnly (p41 F4): a Bundle's AuditEvent names,
// without a hash, both the Provenance an older gateway's Bundle wrote
// and any a Bundle's GET entries read. Only the written ones are counted
// as unchecked: a Provenance is written by the request whose AuditEvent
// names it first; a later one only read it (as the lineage finds the
// request that wrote a receipt).
func TestVerifyUncheckedWrittenOnly(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	l := New(st, Config{Observer: "gw-1"})
	l.Start()
	defer l.Close()
	now := time.Now().UTC().Truncate(time.Millisecond)

	// An older gateway's transaction: its Provenance stored, its
	// AuditEvent naming it without a hash.
	p, entries, err := store.NewVersion("Provenance", "bundle-old", 1, map[string]any{"recorded": "2026-12-01T08:00:00.000Z"}, now)
	if err != nil {
		t.Fatal(err)
	}
	old := audit.Record{ID: "old-tx", Recorded: now, Observer: "gw-0", Interaction: "transaction", Status: 200,
		Entities: []audit.Entity{{Type: "Provenance", ID: "bundle-old", Version: 1}}}
	if err := st.Write(ctx, func(tx store.Tx) error {
		if err := tx.Put(p, entries); err != nil {
			return err
		}
		return newEvent("", old).put(tx)
	}); err != nil {
		t.Fatal(err)
	}
	// Later Bundles that only read it, an older gateway's and this one's.
	if err := st.Write(ctx, newEvent("", audit.Record{ID: "old-read", Recorded: now.Add(time.Second), Observer: "gw-0",
		Interaction: "batch", Status: 200, Entities: []audit.Entity{{Type: "Provenance", ID: "bundle-old", Version: 1}}}).put); err != nil {
		t.Fatal(err)
	}
	for _, interaction := range []string{"batch", "transaction"} {
		sc := NewScope(interaction, nil)
		sc.Touch(p)
		if err := l.Append(sc, 200); err != nil {
			t.Fatal(err)
		}
	}

	counted := &searchCounter{Store: st}
	res, err := Verify(ctx, counted, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !res.Intact || res.Lineage.Unchecked != 1 || !strings.Contains(res.Lineage.Note, "1 lineage record ") {
		t.Errorf("Verify = intact %t, lineage %+v; want intact, the older gateway's written receipt (only) unchecked, with a note",
			res.Intact, res.Lineage)
	}
	// Four AuditEvents name the receipt without a hash: one search finds
	// the first to name it, for all of them.
	if counted.searches["AuditEvent"] != 1 {
		t.Errorf("Verify searched AuditEvents %d times, want once (the first naming the receipt, kept)", counted.searches["AuditEvent"])
	}
}

// searchCounter counts the searches run through it, by resource type.
type searchCounter struct {
	store.Store
	searches map[string]int
}

func (c *searchCounter) Search(ctx context.Context, q *search.Query) (*store.Page, error) {
	if c.searches == nil {
		c.searches = map[string]int{}
	}
	c.searches[q.Type]++
	return c.Store.Search(ctx, q)
}
