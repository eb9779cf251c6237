package storetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/audit"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testAuditChainSeek: AuditChainSeek finds the entry before the lowest
// seq whose AuditEvent's stored time is in a period, also when the
// chain's times are out of order (a request that committed late), and
// across a gap; AuditChainAfter walks from a seq with the same entries as
// from seq 1.
func testAuditChainSeek(t *testing.T, s store.Store) {
	ctx := context.Background()
	t0 := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	// Record n is recorded at t0 plus mins[n-1] minutes: record 4 before
	// record 3, record 6 before records 3 to 5.
	mins := []int{0, 1, 3, 2, 4, 2, 5, 6}
	for i, m := range mins {
		id := fmt.Sprintf("s%d", i+1)
		at := t0.Add(time.Duration(m) * time.Minute)
		body := fmt.Appendf(nil, `{"resourceType":"AuditEvent","id":%q,"recorded":%q}`, id, at.Format("2006-01-02T15:04:05.000Z"))
		err := s.Write(ctx, func(tx store.Tx) error {
			if err := tx.Put(&store.Resource{Type: "AuditEvent", ID: id, Version: 1, LastUpdated: at, Body: body}, nil); err != nil {
				return err
			}
			return tx.AppendAudit(id, body, nil)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	at := func(m int) time.Time { return t0.Add(time.Duration(m) * time.Minute) }
	for _, tc := range []struct {
		name          string
		since, until  time.Time
		first, before int64
	}{
		{"from the start", at(0), time.Time{}, 1, 0},
		{"a late record is the first", at(2), at(3), 4, 3},
		{"the lowest seq, not the earliest time", at(3), time.Time{}, 3, 2},
		{"until excluded", at(1), at(2), 2, 1},
		{"a millisecond inside", at(2).Add(-time.Millisecond + time.Microsecond), at(2).Add(time.Microsecond), 4, 3},
		{"nothing", at(7), time.Time{}, 0, 0},
		{"nothing in a gap", at(0).Add(time.Second), at(1), 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, ok, err := s.AuditChainSeek(ctx, tc.since, tc.until)
			if err != nil || before != tc.before || ok != (tc.first > 0) {
				t.Errorf("AuditChainSeek(%s, %s) = %d, %t, %v; want %d, %t (the first record %d)", tc.since, tc.until, before, ok, err,
					tc.before, tc.first > 0, tc.first)
			}
		})
	}

	var walked []string
	err := s.AuditChainAfter(ctx, 5, func(e audit.ChainEntry) error {
		walked = append(walked, fmt.Sprintf("%d:%s:%d", e.Seq, e.ID, len(e.Faults)))
		return nil
	})
	if err != nil || strings.Join(walked, " ") != "6:s6:0 7:s7:0 8:s8:0" {
		t.Errorf("AuditChainAfter(5) = %v, %v; want records 6 to 8 without faults", walked, err)
	}
}
