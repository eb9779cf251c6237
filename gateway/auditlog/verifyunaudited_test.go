package auditlog

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// chainReads records where each of a verification's reads of the chain
// began (AuditChainAfter's after).
type chainReads struct {
	store.Store
	after []int64
}

func (c *chainReads) AuditChainAfter(ctx context.Context, after int64, fn func(audit.ChainEntry) error) error {
	c.after = append(c.after, after)
	return c.Store.AuditChainAfter(ctx, after, fn)
}

// verifyTampered runs Verify on f's database after the statements.
func verifyTampered(t *testing.T, f *lineageFixture, stmts ...string) *AuditVerification {
	t.Helper()
	res, _ := verifyTamperedReads(t, f, stmts...)
	return res
}

// verifyTamperedReads is verifyTampered, also giving where each read of
// the chain began.
func verifyTamperedReads(t *testing.T, f *lineageFixture, stmts ...string) (*AuditVerification, []int64) {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+f.db+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range stmts {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ctx := context.Background()
	st, err := sqlite.Open(ctx, f.db, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	reads := &chainReads{Store: st}
	res, err := Verify(ctx, reads, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.BrokenAt != 0 {
		t.Fatalf("Verify: chain broken at %d (%s), want its links intact", res.BrokenAt, res.Reason)
	}
	return res, reads.after
}

// insertAttempt is the row of an attempt n of item at (Unix ms), as a
// gateway that audits nothing records it.
func insertAttempt(item int64, n int, at int64, status int, errText string) []string {
	return []string{
		fmt.Sprintf(`INSERT INTO delivery_attempts (item_id, n, at, duration_ms, http_status, outcome, trace_id, error)
			VALUES (%d, %d, %d, 40, %d, X'7b7d', '', '%s')`, item, n, at, status, errText),
		fmt.Sprintf(`UPDATE outbox SET attempts = %d WHERE id = %d`, n, item),
	}
}

// TestVerifyUnauditedAttempts: an attempt the outbox holds that no
// delivery-send AuditEvent names is a fault naming the delivery and the
// attempt, and Summary and Describe count them and name the deliveries
// (p44 F1: an old replica's 225 unaudited deliveries, verify intact); one
// begun before the trail's first delivery-send AuditEvent predates
// delivery auditing: counted apart, with a note, not a fault. An attempt
// that was not sent (a filter refused it: no transmission) is neither.
func TestVerifyUnauditedAttempts(t *testing.T) {
	t.Run("after auditing began", func(t *testing.T) {
		f := newLineageFixture(t)
		res := verifyTampered(t, f, insertAttempt(f.item1, 3, f.claimedAt.Add(time.Minute).UnixMilli(), 200, "")...)
		about := "delivery " + f.delivery1 + " attempt 3"
		if res.Intact || res.Lineage.Unaudited != 1 || res.Lineage.Faults != 1 || res.FaultCount != 1 || len(res.Faults) != 1 {
			t.Fatalf("Verify = intact %t, lineage %+v, faults %+v; want one fault, the attempt no AuditEvent names", res.Intact, res.Lineage, res.Faults)
		}
		if fl := res.Faults[0]; fl.About != about || fl.AuditEvent != "" || fl.Seq != 0 || fl.Problem != UnauditedProblem {
			t.Errorf("fault = %+v, want one about %s, naming no AuditEvent", fl, about)
		}
		sum := res.Summary()
		for _, want := range []string{"1 delivery attempt that no delivery-send AuditEvent names", "(deliveries " + f.delivery1 + ")",
			"did not audit", "lost"} {
			if !strings.Contains(sum, want) {
				t.Errorf("Summary() = %q, want it to say %q", sum, want)
			}
		}
		if strings.Contains(sum, "stored otherwise") {
			t.Errorf("Summary() = %q, want the unnamed attempt not called one stored otherwise", sum)
		}
		if d := res.Describe(); !strings.Contains(d, "1 delivery attempt no AuditEvent names") || strings.Contains(d, "stored otherwise") {
			t.Errorf("Describe() = %q, want the unnamed attempt counted as such", d)
		}
	})
	t.Run("before auditing began", func(t *testing.T) {
		f := newLineageFixture(t)
		early := time.Now().Add(-24 * time.Hour).UnixMilli() // before the fixture's first delivery-send AuditEvent
		// The delivery of a record an older release received (no receipt
		// named with its hash), sent by that release.
		legacy := []string{fmt.Sprintf(`INSERT INTO outbox (id, destination, order_key, patient, kind, source, record_id, version,
			trace_id, payload, status, attempts, next_attempt, created, updated, tenant)
			SELECT 900, destination, 'emr|session|OLD-1', patient, kind, source, 'OLD-1', '1', '', payload, 'done', 0, 0, %d, %d, tenant
			FROM outbox WHERE id = %d`, early, early, f.item1)}
		res, reads := verifyTamperedReads(t, f, append(legacy, insertAttempt(900, 1, early, 200, "")...)...)
		// Such an attempt is no suspect: not held to look for its
		// AuditEvent in the chain committed after the walk (a history
		// before delivery auditing was held whole, review of fix-ops).
		if len(reads) != 1 {
			t.Errorf("Verify read the chain from %v, want once (the walk): the attempt before auditing was held as a suspect", reads)
		}
		if !res.Intact || res.Lineage.Unaudited != 0 || res.Lineage.BeforeAuditing != 1 || res.FaultCount != 0 ||
			!strings.Contains(res.Lineage.Note, "1 delivery attempt no AuditEvent names began before the trail's first delivery-send AuditEvent") {
			t.Errorf("Verify = intact %t, lineage %+v, faults %+v; want intact, 1 attempt before auditing, noted", res.Intact, res.Lineage, res.Faults)
		}
	})
	// An attempt's time does not exempt it (an auditor's review: the
	// chain's delivery-sends cut and the attempt back-dated passed as
	// before auditing): its record was received by a release that audits
	// deliveries (its receipt named with its hash).
	t.Run("back-dated, of a record an auditing release received", func(t *testing.T) {
		f := newLineageFixture(t)
		early := time.Now().Add(-24 * time.Hour).UnixMilli()
		res := verifyTampered(t, f, insertAttempt(f.item1, 3, early, 200, "")...)
		if res.Intact || res.Lineage.Unaudited != 1 || res.Lineage.BeforeAuditing != 0 || res.Faults[0].About != "delivery "+f.delivery1+" attempt 3" {
			t.Fatalf("Verify = intact %t, lineage %+v, faults %+v; want the back-dated attempt a fault", res.Intact, res.Lineage, res.Faults)
		}
	})
	t.Run("not sent", func(t *testing.T) {
		f := newLineageFixture(t)
		res := verifyTampered(t, f, insertAttempt(f.item1, 3, f.claimedAt.Add(time.Minute).UnixMilli(), 0,
			store.NotSent+"the destination filter.kinds does not accept this kind")...)
		if !res.Intact || res.Lineage.Unaudited != 0 || res.Lineage.BeforeAuditing != 0 {
			t.Errorf("Verify = intact %t, lineage %+v, faults %+v; want intact: no transmission, no AuditEvent", res.Intact, res.Lineage, res.Faults)
		}
	})
}

// TestVerifyCancelledAfterLapse: a delivery whose worker stopped after
// its attempt's AuditEvent, and that an operator cancelled once its claim
// lapsed (p44 F2) before a gateway recorded the attempt cut off, has no
// row of that attempt: not a fault (in progress, as while in flight).
func TestVerifyCancelledAfterLapse(t *testing.T) {
	f := newLineageFixture(t)
	res := verifyTampered(t, f,
		fmt.Sprintf(`DELETE FROM delivery_attempts WHERE item_id = %d`, f.item2),
		fmt.Sprintf(`UPDATE outbox SET attempts = 0, status = 'dead', last_error = 'cancelled by operator: delivered before the restore' WHERE id = %d`, f.item2))
	if !res.Intact || res.FaultCount != 0 || res.Lineage.InProgress != 2 {
		t.Errorf("Verify = intact %t, lineage %+v, faults %+v; want intact, the cut-off attempt's 2 AuditEvents in progress", res.Intact, res.Lineage, res.Faults)
	}
}

// TestSentNames: an attempt is vouched for when an AuditEvent named it,
// or, once each, by an AuditEvent of an older gateway that named its
// delivery but no attempt; names added after a lookup (the AuditEvents
// committed while verify ran) are found too; the earliest recorded time
// is kept.
func TestSentNames(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	var s sentNames
	s.add(7, 2, t0.Add(time.Minute))
	s.add(7, 1, t0.Add(2*time.Minute))
	s.add(7, 1, t0.Add(3*time.Minute)) // named twice
	s.add(9, 0, t0)                    // unnumbered: vouches for one attempt of row 9
	s.add(3, 1, time.Time{})           // no recorded time
	at := func(item int64, n int) *store.Attempt { return &store.Attempt{ItemID: item, N: n} }
	for _, tc := range []struct {
		a    *store.Attempt
		want bool
	}{
		{at(7, 1), true}, {at(7, 2), true}, {at(7, 1), true}, {at(7, 3), false},
		{at(3, 1), true}, {at(2, 1), false},
		{at(9, 4), true}, {at(9, 5), false}, // one unnumbered name, one attempt
		{at(8, 1), false},
	} {
		if got := s.vouched(tc.a); got != tc.want {
			t.Errorf("vouched(row %d attempt %d) = %v, want %v", tc.a.ItemID, tc.a.N, got, tc.want)
		}
	}
	if !s.first.Equal(t0) {
		t.Errorf("first = %v, want %v", s.first, t0)
	}
	s.add(8, 1, t0.Add(time.Hour)) // committed while verify ran
	if !s.vouched(at(8, 1)) || s.vouched(at(8, 2)) || !s.vouched(at(7, 2)) {
		t.Error("a name added after a lookup: not found, or the others lost")
	}
	if !s.first.Equal(t0) {
		t.Errorf("first = %v after a later name, want %v", s.first, t0)
	}
	var none sentNames
	if none.vouched(at(1, 1)) {
		t.Error("an empty set vouches")
	}
}

// BenchmarkSentNames: the names of a full verify's 1.5 million attempts,
// then a lookup of each (B/op is what the set holds).
func BenchmarkSentNames(b *testing.B) {
	const rows, attempts = 500_000, 3
	at := time.Now()
	b.ReportAllocs()
	var live uint64
	for b.Loop() {
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		var s sentNames
		for i := range int64(rows) {
			for n := range attempts {
				s.add(i*7919%rows+1, n+1, at)
			}
		}
		a := &store.Attempt{ItemID: 1, N: 1}
		s.vouched(a)
		runtime.GC()
		runtime.ReadMemStats(&m1)
		live = m1.HeapAlloc - m0.HeapAlloc
		for i := range int64(rows) {
			for n := range attempts {
				a.ItemID, a.N = i+1, n+1
				if !s.vouched(a) {
					b.Fatal("not vouched")
				}
			}
		}
	}
	b.ReportMetric(float64(live)/(rows*attempts), "live-B/attempt")
}

// TestLineageNoteNumber: the note agrees with its count (p45: "1
// Provenance version ... were not looked for").
func TestLineageNoteNumber(t *testing.T) {
	for _, tc := range []struct {
		n    int
		want string
	}{
		{1, "1 Provenance version named as written by the AuditEvent of a write that failed was not looked for: the write's transaction rolled back, so it was never stored (an earlier gateway named it)"},
		{2, "2 Provenance versions named as written by the AuditEvent of a write that failed were not looked for: the write's transaction rolled back, so they were never stored (an earlier gateway named them)"},
	} {
		c := LineageCheck{RolledBack: tc.n}
		c.note()
		if c.Note != tc.want {
			t.Errorf("note of %d = %q, want %q", tc.n, c.Note, tc.want)
		}
	}
}
