package delivery

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
	"github.com/ketamine-gateway/ketamine-gateway/gateway/store/sqlite"
)

// recordingOutbox reports every Complete of any Outbox on a channel.
type recordingOutbox struct {
	Outbox
	events chan event
}

func (r recordingOutbox) Complete(ctx context.Context, id int64, a Attempt, next Status, at time.Time) error {
	err := r.Outbox.Complete(ctx, id, a, next, at)
	r.events <- event{id, a, next, at, err}
	return err
}

// TestWorkerOnSQLiteOutbox runs the worker on the store's real SQLite
// outbox through StoreOutbox: retries in order per key, a dead letter that
// blocks neither its own key nor others, attempts recorded.
func TestWorkerOnSQLiteOutbox(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "gw.db"), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ob := StoreOutbox{Store: st}
	ehr := newStubEHR(t)
	var failed atomic.Int32
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		switch s := string(body); {
		case strings.Contains(s, "P-A") && strings.Contains(s, `"in-progress"`):
			writeJSON(w, http.StatusBadRequest, outcome("invalid", "rejected"))
			return true
		case strings.Contains(s, "P-1") && strings.Contains(s, `"in-progress"`) && failed.Add(1) <= 2:
			writeJSON(w, http.StatusBadGateway, outcome("transient", "upstream"))
			return true
		}
		return false
	}
	clock := newFakeClock()
	items := []*store.OutboxItem{
		{OrderKey: "k1", Patient: "P-1", Payload: sessionBundle("P-1", "S-1", "in-progress", false)},
		{OrderKey: "k1", Patient: "P-1", Payload: sessionBundle("P-1", "S-1", "completed", true)},
		{OrderKey: "kA", Patient: "P-A", Payload: sessionBundle("P-A", "S-A", "in-progress", false)},
		{OrderKey: "kA", Patient: "P-A", Payload: sessionBundle("P-A", "S-A", "completed", true)},
		{OrderKey: "kB", Patient: "P-B", Payload: sessionBundle("P-B", "S-B", "completed", false)},
	}
	for _, it := range items {
		it.Destination, it.Kind, it.Source, it.RecordID, it.Version = "ehr", "session", "clinic", it.OrderKey, "1"
		it.NextAttempt = clock.Now()
	}
	if err := st.Write(ctx, func(tx store.Tx) error { return tx.(store.OutboxTx).Enqueue(items...) }); err != nil {
		t.Fatal(err)
	}
	rec := recordingOutbox{ob, make(chan event, 100)}
	w, err := NewWorker(rec, []Destination{testDest("ehr", ehr.base())}, testOptions(clock))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, clock: clock, w: w, outbox: &recOutbox{events: rec.events}}
	h.run()
	final := map[int64]Status{}
	for len(final) < len(items) {
		ev := h.next()
		if ev.Status == Pending {
			clock.Advance(time.Hour)
			continue
		}
		final[ev.ID] = ev.Status
	}
	want := []Status{Done, Done, Dead, Done, Done}
	for i, it := range items {
		got, attempts, err := st.Delivery(ctx, it.ID)
		if err != nil {
			t.Fatal(err)
		}
		if final[it.ID] != want[i] || got.Status != string(want[i]) {
			t.Errorf("item %d: worker %s, store %s; want %s", i, final[it.ID], got.Status, want[i])
		}
		if i == 0 && (len(attempts) != 3 || attempts[2].N != 3 || attempts[0].Error != "http 502 (transient)") {
			t.Errorf("item 0 attempts: %+v", attempts)
		}
		if i == 2 && (len(attempts) != 1 || !strings.Contains(string(attempts[0].Outcome), "rejected")) {
			t.Errorf("dead letter attempts: %+v", attempts)
		}
	}
	for session, want := range map[string]string{"S-1": "POST in-progress,PUT completed", "S-A": "PUT completed", "S-B": "POST completed"} {
		if got := strings.Join(procedureWrites(ehr, session), ","); got != want {
			t.Errorf("Procedure writes of %s: %s, want %s", session, got, want)
		}
	}
	if b, err := ob.Backlog(ctx, "ehr", clock.Now()); err != nil || b.Pending != 0 || b.Dead != 1 {
		t.Errorf("backlog %+v, %v", b, err)
	}
	if err := ob.Complete(ctx, items[0].ID, Attempt{N: 9}, Done, time.Time{}); !errors.Is(err, ErrNotInFlight) {
		t.Errorf("late Complete: %v, want ErrNotInFlight", err)
	}
}

// procedureWrites lists the committed writes ("METHOD status") of the
// Procedure of session at the stub, in order.
func procedureWrites(ehr *stubEHR, session string) []string {
	ehr.mu.Lock()
	ref := ehr.ident["Procedure|"+sid+"session|"+session]
	ehr.mu.Unlock()
	var out []string
	for _, w := range ehr.committed() {
		if f := strings.Fields(w); len(f) == 3 && f[1] == ref {
			out = append(out, f[0]+" "+f[2])
		}
	}
	return out
}
