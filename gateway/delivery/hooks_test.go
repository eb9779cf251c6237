package delivery

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

type recObserver struct {
	attempts chan string
	mu       sync.Mutex
	backlogs []store.DestinationStats
}

func (o *recObserver) OnAttempt(dest, outcome string, d time.Duration) {
	o.attempts <- dest + ":" + outcome
}

func (o *recObserver) OnBacklog(s store.DestinationStats) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.backlogs = append(o.backlogs, s)
}

type traceKey struct{}

func TestHooks(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		ehr.authorize = func(h string) bool { return h == "Bearer s3cret" }
		d := testDest("ehr", ehr.base())
		d.Auth = Auth{Type: AuthBearer, Token: "s3cret"}
		obs := &recObserver{attempts: make(chan string, 10)}
		var ended atomic.Value
		h := newHarnessOn(t, ob, []Destination{d}, func(o *WorkerOptions) {
			o.Observer = obs
			o.StartAttempt = func(ctx context.Context, dest string, it *store.OutboxItem) (context.Context, func(string)) {
				return context.WithValue(ctx, traceKey{}, fmt.Sprintf("trace-%d", it.ID)), func(outcome string) { ended.Store(outcome) }
			}
			o.TraceID = func(ctx context.Context) string { s, _ := ctx.Value(traceKey{}).(string); return s }
			o.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
				return roundTripFunc(func(r *http.Request) (*http.Response, error) {
					if s, ok := r.Context().Value(traceKey{}).(string); ok {
						r.Header.Set("traceparent", s) // what otelhttp would do
					}
					return rt.RoundTrip(r)
				})
			}
		})
		id := h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", false))
		h.run()
		ev := h.next()
		if ev.Status != store.StatusDone || ev.A.TraceID != fmt.Sprintf("trace-%d", id) {
			t.Fatalf("%s, trace id %q", ev.Status, ev.A.TraceID)
		}
		if got := <-obs.attempts; got != "ehr:done" {
			t.Fatalf("observer got %s", got)
		}
		if got, _ := ended.Load().(string); got != OutcomeDone {
			t.Fatalf("StartAttempt's end got %q", got)
		}
		obs.mu.Lock()
		if len(obs.backlogs) == 0 || obs.backlogs[0].Destination != "ehr" || obs.backlogs[0].Pending != 1 {
			t.Errorf("backlogs %+v", obs.backlogs)
		}
		obs.mu.Unlock()
		if r := ehr.reqs()[0]; r.Auth != "Bearer s3cret" {
			t.Errorf("authorization %q", r.Auth)
		}
	})
}

func TestUnauthorizedIsRetried(t *testing.T) {
	ehr := newStubEHR(t)
	ehr.authorize = func(h string) bool { return h == "Bearer right" }
	d := testDest("ehr", ehr.base())
	d.Auth = Auth{Type: AuthBearer, Token: "wrong"}
	h := newHarness(t, []Destination{d}, func(o *WorkerOptions) { o.MaxAttempts = 2 })
	id := h.enqueue("ehr", "k", sessionBundle("P-1", "S-1", "completed", false))
	h.run()
	evs := h.retryUntilFinal(id)
	wantAttempt(t, evs[0], 1, store.StatusPending, 401, "http 401 (login)")
	wantAttempt(t, evs[1], 2, store.StatusDead, 401, "http 401")
	if n := len(ehr.reqs()); n != 2 {
		t.Fatalf("%d requests: a static token is not retried within an attempt", n)
	}
	for _, ev := range evs {
		if strings.Contains(ev.A.Error, "wrong") {
			t.Fatalf("error names the token: %q", ev.A.Error)
		}
	}
}
