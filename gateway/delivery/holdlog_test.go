package delivery

import (
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

// TestDestinationHoldLoggedOncePerRound: the four concurrent attempts of
// one outage round, each answered 503 with a Retry-After (each a longer
// one), log "destination on hold" once, as operations.md says, not once
// per attempt whose Retry-After ends after the hold set so far (p44 F5).
// The hold still honours the longest Retry-After.
func TestDestinationHoldLoggedOncePerRound(t *testing.T) {
	ehr := newStubEHR(t)
	var logs syncLog
	// The attempts start together (one round) and are answered one after
	// the other, each once the one before it was tracked (OnAttempt comes
	// after track), so each Retry-After ends after the hold set before it.
	var tracked [4]chan struct{}
	for i := range tracked {
		tracked[i] = make(chan struct{})
	}
	obs := &attemptSignal{done: tracked[:]}
	h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		o.Observer = obs
	})
	var started sync.WaitGroup
	started.Add(4)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		if n < 4 {
			started.Done()
			started.Wait()
			if n > 0 {
				<-tracked[n-1]
			}
			w.Header().Set("Retry-After", strconv.Itoa(2+n))
			writeJSON(w, http.StatusServiceUnavailable, outcome("transient", "maintenance"))
			return true
		}
		return false
	}
	t0 := h.clock.Now()
	for _, k := range []string{"kA", "kB", "kC", "kD"} {
		h.enqueue("ehr", k, sessionBundle("P-"+k, "S-"+k, "completed", false))
	}
	h.run()
	for range 4 {
		if ev := h.next(); ev.Status != store.StatusPending {
			t.Fatalf("item %d: %s, want pending", ev.ID, ev.Status)
		}
	}
	if n := strings.Count(logs.String(), `"msg":"delivery: destination on hold"`); n != 1 {
		t.Errorf("%d 'destination on hold' lines for one round, want 1:\n%s", n, logs.String())
	}
	if got, want := h.w.Holds()["ehr"], t0.Add(5e9); !got.Equal(want) {
		t.Errorf("Holds()[ehr] = %v, want %v (the longest Retry-After)", got, want)
	}
}

// attemptSignal closes done[i] after the i-th attempt (OnAttempt).
type attemptSignal struct {
	mu   sync.Mutex
	n    int
	done []chan struct{}
}

func (a *attemptSignal) OnAttempt(string, string, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n < len(a.done) {
		close(a.done[a.n])
	}
	a.n++
}

func (a *attemptSignal) OnBacklog(store.DestinationStats) {}
