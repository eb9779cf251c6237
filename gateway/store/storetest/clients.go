package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// testClientRecords: the registered clients' records change only by a
// compare and swap on their digest: an insert over a record, an update
// or a delete of a record whose digest is not the one named is
// ErrConflict and changes nothing; ClientRecords lists them by id.
func testClientRecords(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := time.Date(2026, 12, 6, 5, 0, 0, 123456789, time.UTC)
	rec := func(id, digest string) *store.ClientRecord {
		return &store.ClientRecord{ID: id, Digest: digest, Registration: []byte(`{"tenant":"` + id + `"}`), Recorded: at}
	}
	swap := func(id, was string, r *store.ClientRecord) error {
		return s.Write(ctx, func(tx store.Tx) error { return tx.SwapClientRecord(id, was, r) })
	}
	list := func() []store.ClientRecord {
		var out []store.ClientRecord
		if err := s.Write(ctx, func(tx store.Tx) error {
			var err error
			out, err = tx.ClientRecords()
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, step := range []struct {
		name     string
		id, was  string
		rec      *store.ClientRecord
		conflict bool
	}{
		{"insert b", "b", "", rec("b", "d1"), false},
		{"insert a", "a", "", rec("a", "d1"), false},
		{"insert b again", "b", "", rec("b", "d9"), true},
		{"update b from another digest", "b", "d0", rec("b", "d9"), true},
		{"update b", "b", "d1", rec("b", "d2"), false},
		{"delete a of another digest", "a", "d2", nil, true},
		{"delete a", "a", "d1", nil, false},
		{"delete a again", "a", "d1", nil, true},
		{"nothing to nothing", "c", "", nil, false},
	} {
		err := swap(step.id, step.was, step.rec)
		if got := errors.Is(err, store.ErrConflict); got != step.conflict || (err != nil && !got) {
			t.Fatalf("%s: SwapClientRecord = %v, want conflict %v", step.name, err, step.conflict)
		}
	}
	got := list()
	if len(got) != 1 || got[0].ID != "b" || got[0].Digest != "d2" || string(got[0].Registration) != `{"tenant":"b"}` ||
		!got[0].Recorded.Equal(at.Truncate(time.Millisecond)) {
		t.Fatalf("ClientRecords = %+v, want b of digest d2 recorded at %s", got, at.Truncate(time.Millisecond))
	}
	if err := swap("x", "", &store.ClientRecord{ID: "y", Digest: "d"}); err == nil || errors.Is(err, store.ErrConflict) {
		t.Errorf("SwapClientRecord of a record of another id = %v, want an error", err)
	}
}
