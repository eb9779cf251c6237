package auditlog

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// countingStore counts the chain entries the export's walk reads.
type countingStore struct {
	store.Store
	read int
	// fromOne makes the seek answer "from record 1": the export then
	// walks the whole chain, as it did before it could seek.
	fromOne bool
}

func (c *countingStore) AuditChainFrom(ctx context.Context, after int64, fn func(audit.ChainEntry) error) error {
	return c.Store.AuditChainFrom(ctx, after, func(e audit.ChainEntry) error {
		c.read++
		return fn(e)
	})
}

func (c *countingStore) AuditChainSeek(ctx context.Context, since, until time.Time) (int64, bool, error) {
	if c.fromOne {
		return 0, true, nil
	}
	return c.Store.AuditChainSeek(ctx, since, until)
}

// seekChain is a database of n AuditEvents recorded a second apart from
// t0, in chain order except that every 7th committed late (recorded 400 s
// before its place) and every 11th was recorded by a replica whose clock
// runs 200 s ahead; and each record's time.
func seekChain(tb testing.TB, n int, t0 time.Time) (store.Store, []time.Time) {
	tb.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(tb.TempDir(), "kg.db"), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	times := make([]time.Time, n+1) // by seq
	const batch = 500
	for start := 1; start <= n; start += batch {
		err := st.Write(ctx, func(tx store.Tx) error {
			for seq := start; seq < start+batch && seq <= n; seq++ {
				at := t0.Add(time.Duration(seq) * time.Second)
				switch {
				case seq%7 == 0:
					at = at.Add(-400 * time.Second)
				case seq%11 == 0:
					at = at.Add(200 * time.Second)
				}
				times[seq] = at
				id := fmt.Sprintf("ae%06d", seq)
				body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"recorded":%q,"outcomeDesc":"x"}`, id, at.Format("2006-01-02T15:04:05.000Z"))
				if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, LastUpdated: at, Body: body}, nil); err != nil {
					return err
				}
				if err := tx.AppendAudit(id, body, nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	return st, times
}

// TestExportSeeks: an export of a period starts at the period's first
// record instead of walking from record 1, and writes exactly the bytes
// the walk from record 1 writes, out-of-order times included: the same
// records, the same prev (an anchor at the record before still verifies
// it), the same manifest. The chain entries it reads are those from the
// record before the period's first to the first recorded past until and
// the commit slack (or the head): none before.
func TestExportSeeks(t *testing.T) {
	const n = 3000
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	base, times := seekChain(t, n, t0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	now := at(n + 3600)
	for _, tc := range []struct {
		name         string
		since, until time.Time
	}{
		{"a middle period", at(1200), at(1500)},
		{"a period starting at a late record's time", times[1407], at(1450)},
		{"a period starting at a fast clock's time", times[1199], at(1450)},
		{"a period between two records' milliseconds", at(1000).Add(500 * time.Microsecond), at(1100)},
		{"the last 1%, no end", at(n - n/100), time.Time{}},
		{"the start", at(0), at(10)},
		{"before the chain", at(-5000), at(-4000)},
		{"after the chain", at(n + 1000), time.Time{}},
		{"no start", time.Time{}, at(20)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			old := &countingStore{Store: base, fromOne: true}
			var want bytes.Buffer
			if _, err := Export(ctx, old, tc.since, tc.until, now, &want, nil); err != nil {
				t.Fatal(err)
			}
			st := &countingStore{Store: base}
			var got bytes.Buffer
			var progress int64 = -1
			m, err := Export(ctx, st, tc.since, tc.until, now, &got, func(n int64) { progress = n })
			if err != nil {
				t.Fatal(err)
			}
			if progress != int64(st.read) {
				t.Errorf("Export told %d records read at the end, want %d", progress, st.read)
			}
			if !bytes.Equal(got.Bytes(), want.Bytes()) {
				t.Fatalf("Export(%s, %s) differs from the walk from record 1:\n got %.300s\nwant %.300s", tc.since, tc.until, got.String(), want.String())
			}
			// Bound: from the record before the first to where the walk
			// stops (the first record after it recorded at or past until
			// and the slack), or to the head.
			bound := 0
			if m.FirstSeq > 0 {
				stop := n
				if !tc.until.IsZero() {
					for s := int(m.FirstSeq); s <= n; s++ {
						if !times[s].Before(tc.until.Add(exportSlack)) {
							stop = s
							break
						}
					}
				}
				bound = stop - int(max(m.FirstSeq-1, 1)) + 1
			}
			if tc.since.IsZero() {
				bound = max(bound, old.read) // no start: from record 1 as before
			}
			if st.read > bound {
				t.Errorf("Export(%s, %s) read %d chain entries for records %d to %d, want at most %d (the walk from record 1 read %d)",
					tc.since, tc.until, st.read, m.FirstSeq, m.LastSeq, bound, old.read)
			}
			if m.FirstSeq > 1 {
				c, err := VerifyExport(bytes.NewReader(got.Bytes()), Anchor{Seq: m.FirstSeq - 1, Hash: m.Prev})
				if err != nil || !c.Intact || !c.Anchored {
					t.Errorf("VerifyExport --expect the record before = %+v, %v; want intact and anchored", c, err)
				}
			}
		})
	}
}

// BenchmarkExportLastPercent exports the last 1% of a chain of 20,000
// AuditEvents (docs/audit.md gives the numbers, walk from record 1 and
// seek).
func BenchmarkExportLastPercent(b *testing.B) {
	const n = 20000
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	base, _ := seekChain(b, n, t0)
	since := t0.Add(time.Duration(n-n/100) * time.Second)
	for _, bc := range []struct {
		name    string
		fromOne bool
	}{{"walk-from-1", true}, {"seek", false}} {
		b.Run(bc.name, func(b *testing.B) {
			st := &countingStore{Store: base, fromOne: bc.fromOne}
			for b.Loop() {
				st.read = 0
				if _, err := Export(context.Background(), st, since, time.Time{}, t0.Add(48*time.Hour), &bytes.Buffer{}, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.read), "entries/op")
		})
	}
}
