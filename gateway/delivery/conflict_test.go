package delivery

import (
	"net/http"
	"strings"
	"testing"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestConflictIsRetriedThenDead: a 409 is mostly a transient version
// conflict at a FHIR server (or the EHR still processing an attempt that
// timed out), so it is retried, never before the destination's timeout
// has passed, up to ConflictAttempts attempts; then the record is a dead
// letter (p23 F4).
func TestConflictIsRetriedThenDead(t *testing.T) {
	ehr := newStubEHR(t)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		writeJSON(w, http.StatusConflict, outcome("conflict", "version conflict"))
		return true
	}
	d := testDest("ehr", ehr.base())
	h := newHarness(t, []Destination{d}, func(o *WorkerOptions) { o.MaxAttempts = 10 })
	_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
	if len(evs) != ConflictAttempts {
		t.Fatalf("%d attempts, want ConflictAttempts %d", len(evs), ConflictAttempts)
	}
	for i, ev := range evs[:len(evs)-1] {
		wantAttempt(t, ev, i+1, store.StatusPending, 409, "http 409 (conflict)")
		if wait := ev.Next.Sub(ev.A.At.Add(ev.A.Duration)); wait < d.Timeout {
			t.Errorf("attempt %d: next attempt after %v, want at least the destination's timeout %v", i+1, wait, d.Timeout)
		}
	}
	last := evs[len(evs)-1]
	wantAttempt(t, last, ConflictAttempts, store.StatusDead, 409, "http 409 (conflict)")
	if !strings.Contains(last.A.Error, "gave up") {
		t.Errorf("final error %q, want it to say the gateway gave up", last.A.Error)
	}
}
