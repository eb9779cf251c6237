package storetest

import (
	"context"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/search"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testWriteDefaults: a zero LastUpdated and a zero Received are set to
// now, and what the caller sees is what is stored.
func testWriteDefaults(t *testing.T, s store.Store) {
	ctx := context.Background()
	r := &store.Resource{Type: "Patient", ID: "a", Version: 1, Body: []byte(`{}`)}
	l := &store.Ledger{Source: "s", Kind: "k", RecordID: "r", Version: "1"}
	before := time.Now().Add(-time.Second)
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.Put(r, nil); err != nil {
			return err
		}
		return tx.PutLedger(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.LastUpdated.Before(before) || l.Received.Before(before) {
		t.Errorf("zero times not set: LastUpdated %v, Received %v", r.LastUpdated, l.Received)
	}
	got, err := s.Read(ctx, "Patient", "a")
	if err != nil || !got.LastUpdated.Equal(r.LastUpdated) {
		t.Errorf("Read = %v, %v; want last updated %v", got, err, r.LastUpdated)
	}
}

// Clock checks that a store takes the time from the clock it is given:
// open must return a new, empty store whose clock is now (Clock closes
// it). The clock starts far from the real time, so that a store that reads
// the real one fails.
func Clock(t *testing.T, open func(t *testing.T, now func() time.Time) store.Store) {
	clock := time.Date(2101, 2, 3, 4, 5, 6, 789123456, time.UTC)
	s := open(t, func() time.Time { return clock })
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	ctx := context.Background()
	want := clock.Truncate(time.Millisecond)

	r := &store.Resource{Type: "Procedure", ID: "a", Version: 1, Body: []byte(`{}`)}
	l := &store.Ledger{Source: "s", Kind: "k", RecordID: "r", Version: "1"}
	it := item("ehr", "k", "p")
	// 100 days before now, with an entry 60 days after it: "ap" widens
	// the value by 10 days (10% of the distance to now), so the entry is
	// not near it.
	value := clock.AddDate(0, 0, -100)
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.Put(r, []search.Entry{date("date", instant(value.AddDate(0, 0, 60)))}); err != nil {
			return err
		}
		if err := tx.PutLedger(l); err != nil {
			return err
		}
		return tx.Enqueue(it)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(ctx, "Procedure", "a")
	if err != nil || !got.LastUpdated.Equal(want) || !r.LastUpdated.Equal(want) {
		t.Errorf("Put with a zero LastUpdated: %v (read %v, %v), want %v", r.LastUpdated, got, err, want)
	}
	if !l.Received.Equal(want) {
		t.Errorf("PutLedger with a zero Received: %v, want %v", l.Received, want)
	}
	if !it.Created.Equal(want) || !it.NextAttempt.Equal(want) {
		t.Errorf("Enqueue: created %v, next attempt %v, want %v", it.Created, it.NextAttempt, want)
	}
	expect(t, s, "date ap, 60 days off, 10 days allowed", query("Procedure",
		clause("date", search.TypeDate, "", vDate(search.PrefixAp, instant(value)))))
	expect(t, s, "date ap, 2 days off, 4.2 days allowed", query("Procedure",
		clause("date", search.TypeDate, "", vDate(search.PrefixAp, instant(value.AddDate(0, 0, 58))))), "a")

	// A nonce expires by the clock.
	exp := clock.Add(time.Minute)
	if !useNonce(t, s, "n", exp) {
		t.Error("UseNonce(n) = false, want true")
	}
	if useNonce(t, s, "n", exp) {
		t.Error("UseNonce(n) again before it expires = true, want false")
	}
	clock = clock.Add(2 * time.Minute)
	if !useNonce(t, s, "n", clock.Add(time.Minute)) {
		t.Error("UseNonce(n) after it expired by the clock = false, want true")
	}
}
