package delivery

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestHoldProbesDoNotCountTowardMaxAttempts: while a destination is held
// after a destination-wide failure, the one attempt that probes it is
// always its oldest record's; a probe that fails does not count toward
// that record's MaxAttempts, so that a long outage does not make it a dead
// letter (its MaxAge still does) (p23 F3).
func TestHoldProbesDoNotCountTowardMaxAttempts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
			writeJSON(w, http.StatusServiceUnavailable, outcome("transient", "down for maintenance"))
			return true
		}
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
			o.MaxAttempts, o.MaxAge = 2, 10*time.Hour
		})
		_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
		if len(evs) <= 2 {
			t.Fatalf("%d attempts, want more than MaxAttempts 2: the hold's probes do not count", len(evs))
		}
		last := evs[len(evs)-1]
		if last.Status != store.StatusDead || !strings.Contains(last.A.Error, "gave up after 10h0m0s") {
			t.Errorf("last attempt %d: %s %q, want dead after MaxAge", last.A.N, last.Status, last.A.Error)
		}
	})
}
