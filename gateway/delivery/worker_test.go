package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

func wantAttempt(t *testing.T, ev event, n int, status string, httpStatus int, errPart string) {
	t.Helper()
	if ev.A.N != n || ev.Status != status || ev.A.HTTPStatus != httpStatus || !strings.Contains(ev.A.Error, errPart) ||
		(errPart == "" && ev.A.Error != "") {
		t.Fatalf("attempt %d: got n=%d status=%s http=%d error=%q; want n=%d status=%s http=%d error containing %q",
			n, ev.A.N, ev.Status, ev.A.HTTPStatus, ev.A.Error, n, status, httpStatus, errPart)
	}
}

func wantCounts(t *testing.T, ehr *stubEHR, patients, procedures, aes int) {
	t.Helper()
	if p, pr, ae := ehr.count("Patient"), ehr.count("Procedure"), ehr.count("AdverseEvent"); p != patients || pr != procedures || ae != aes {
		t.Fatalf("EHR holds %d Patient, %d Procedure, %d AdverseEvent; want %d, %d, %d", p, pr, ae, patients, procedures, aes)
	}
}

func TestServerErrorsThenSuccess(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
			if n < 2 {
				writeJSON(w, http.StatusInternalServerError, outcome("exception", "database is down"))
				return true
			}
			return false
		}
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, nil)
		id, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
		if len(evs) != 3 {
			t.Fatalf("%d attempts, want 3", len(evs))
		}
		wantAttempt(t, evs[0], 1, store.StatusPending, 500, "http 500 (exception)")
		wantAttempt(t, evs[1], 2, store.StatusPending, 500, "http 500")
		wantAttempt(t, evs[2], 3, store.StatusDone, 200, "")
		// Rand 0.5, base 2s: attempt n waits half of 2s*2^(n-1).
		for i, want := range []time.Duration{time.Second, 2 * time.Second} {
			if got := evs[i].Next.Sub(evs[i].A.At); got != want {
				t.Errorf("backoff after attempt %d = %v, want %v", i+1, got, want)
			}
		}
		if !strings.Contains(string(evs[0].A.Outcome), "database is down") {
			t.Errorf("outcome of attempt 1 not recorded: %s", evs[0].A.Outcome)
		}
		if !strings.Contains(string(evs[2].A.Outcome), "transaction-response") {
			t.Errorf("the transaction-response is not recorded: %s", evs[2].A.Outcome)
		}
		it, attempts, err := h.outbox.Delivery(context.Background(), id)
		if err != nil || it.Status != store.StatusDone || it.Attempts != 3 || len(attempts) != 3 {
			t.Errorf("outbox: %+v, %d attempts recorded, %v; want done after 3", it, len(attempts), err)
		}
		wantCounts(t, ehr, 1, 1, 1)
	})
}

func TestRetryAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		value func(now time.Time) string
		want  time.Duration
	}{
		{"seconds", func(time.Time) string { return "120" }, 120 * time.Second},
		{"http-date", func(now time.Time) string { return now.Add(300 * time.Second).Format(http.TimeFormat) }, 300 * time.Second},
		// Beyond the backoff's maximum (10m here): capped there, for the
		// item and for the destination's hold.
		{"seconds beyond the maximum", func(time.Time) string { return "999999999" }, 10 * time.Minute},
		{"http-date beyond the maximum", func(now time.Time) string { return now.AddDate(0, 0, 30).Format(http.TimeFormat) }, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, ob testOutbox) {
				ehr := newStubEHR(t)
				d := testDest("ehr", ehr.base())
				d.Concurrency = 1
				h := newHarnessOn(t, ob, []Destination{d}, func(o *WorkerOptions) { o.BackoffMax = 10 * time.Minute })
				ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
					if n == 0 {
						w.Header().Set("Retry-After", tc.value(h.clock.Now()))
						writeJSON(w, http.StatusTooManyRequests, outcome("throttled", "slow down"))
						return true
					}
					return false
				}
				t0 := h.clock.Now()
				a := h.enqueue("ehr", "kA", sessionBundle("P-1", "S-1", "completed", false))
				b := h.enqueue("ehr", "kB", sessionBundle("P-2", "S-2", "completed", false))
				h.run()
				ev := h.next()
				if ev.ID != a {
					t.Fatalf("first attempt is of item %d", ev.ID)
				}
				wantAttempt(t, ev, 1, store.StatusPending, 429, "http 429 (throttled)")
				if got := ev.Next.Sub(ev.A.At); got != tc.want {
					t.Fatalf("next attempt in %v, want the Retry-After %v", got, tc.want)
				}
				// The whole destination is held: b, due since t0, is not sent
				// before the Retry-After has passed.
				h.clock.Advance(tc.want)
				for range 2 {
					ev := h.next()
					if ev.Status != store.StatusDone || ev.A.At.Before(t0.Add(tc.want)) {
						t.Fatalf("item %d: %s at %v, want done no earlier than %v", ev.ID, ev.Status, ev.A.At.Sub(t0), tc.want)
					}
					if ev.ID == b && ev.A.N != 1 {
						t.Fatalf("item b took %d attempts", ev.A.N)
					}
				}
			})
		})
	}
}

// TestTimeout: an EHR that does not answer within the destination's
// Timeout makes the attempt a "timeout", retried. The first request is
// marked in the transport and the EHR holds the marked one until the
// client gives up (the EHR's own count of requests is no guide: a request
// the client gave up on before the EHR read it is never counted). The retry
// is answered at once, and its request is let run past the Timeout (its
// deadline taken off in the transport): on a busy machine even an immediate
// answer took longer than the 100 ms, and the retry timed out too.
func TestTimeout(t *testing.T) {
	ehr := newStubEHR(t)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		if r.Header.Get("X-Test-Hold") != "" {
			<-r.Context().Done() // longer than the client waits
			return true
		}
		return false
	}
	d := testDest("ehr", ehr.base())
	d.Timeout = 100 * time.Millisecond
	var trips atomic.Int32
	h := newHarness(t, []Destination{d}, func(o *WorkerOptions) {
		o.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if trips.Add(1) == 1 {
					r = r.Clone(r.Context())
					r.Header.Set("X-Test-Hold", "1")
				} else {
					r = r.WithContext(context.WithoutCancel(r.Context()))
				}
				return rt.RoundTrip(r)
			})
		}
	})
	_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
	wantAttempt(t, evs[0], 1, store.StatusPending, 0, "timeout")
	wantAttempt(t, evs[1], 2, store.StatusDone, 200, "")
}

func TestConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, mode := range []Mode{ModeTransaction, ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			d := testDest("ehr", "http://"+addr+"/fhir")
			d.Mode = mode
			// The second attempt probes the destination on hold: its
			// failure does not count toward MaxAttempts, and the record is
			// a dead letter after MaxAge.
			h := newHarness(t, []Destination{d}, func(o *WorkerOptions) { o.MaxAttempts, o.MaxAge = 2, time.Hour })
			_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", true))
			wantAttempt(t, evs[0], 1, store.StatusPending, 0, "connection refused")
			wantAttempt(t, evs[1], 2, store.StatusDead, 0, "connection refused (gave up after 1h0m0s)")
			for _, ev := range evs {
				if strings.Contains(ev.A.Error, "P-1") || strings.Contains(ev.A.Error, "S-1") || strings.Contains(ev.A.Error, "identifier") {
					t.Errorf("error names the record: %q", ev.A.Error)
				}
			}
		})
	}
}

func TestBadRequestIsDead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
			writeJSON(w, http.StatusBadRequest, outcome("invalid", "Procedure.status: unknown code"))
			return true
		}
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, nil)
		_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
		if len(evs) != 1 {
			t.Fatalf("%d attempts, want 1", len(evs))
		}
		wantAttempt(t, evs[0], 1, store.StatusDead, 400, "http 400 (invalid)")
		if !strings.Contains(string(evs[0].A.Outcome), "Procedure.status: unknown code") {
			t.Errorf("OperationOutcome not recorded: %s", evs[0].A.Outcome)
		}
	})
}

func TestSlowEHROnlyHoldsItsOwnSlots(t *testing.T) {
	slow, fast := newStubEHR(t), newStubEHR(t)
	release := make(chan struct{})
	var cur, peak atomic.Int32
	slow.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		c := cur.Add(1)
		defer cur.Add(-1)
		for p := peak.Load(); c > p && !peak.CompareAndSwap(p, c); p = peak.Load() {
		}
		<-release
		return false
	}
	ds, df := testDest("slow", slow.base()), testDest("fast", fast.base())
	ds.Concurrency = 2
	h := newHarness(t, []Destination{ds, df}, nil)
	for i := range 4 {
		h.enqueue("slow", "s"+string(rune('a'+i)), sessionBundle("P-s", "S-s"+string(rune('a'+i)), "completed", false))
	}
	fastIDs := map[int64]bool{}
	for i := range 3 {
		fastIDs[h.enqueue("fast", "f"+string(rune('a'+i)), sessionBundle("P-f", "S-f"+string(rune('a'+i)), "completed", false))] = true
	}
	h.run()
	for range 3 {
		ev := h.next()
		if !fastIDs[ev.ID] || ev.Status != store.StatusDone {
			t.Fatalf("item %d %s while the slow EHR blocks; want the fast items done", ev.ID, ev.Status)
		}
	}
	close(release)
	for range 4 {
		if ev := h.next(); ev.Status != store.StatusDone {
			t.Fatalf("slow item %d: %s %q", ev.ID, ev.Status, ev.A.Error)
		}
	}
	if p := peak.Load(); p > 2 {
		t.Errorf("%d concurrent requests to the slow EHR, want at most 2", p)
	}
}

func TestMalformedSuccessIsRetriedThenDead(t *testing.T) {
	for _, tc := range []struct{ name, ctype, body, reason string }{
		{"garbage", "text/plain", "ok!!", "response is not JSON, not a transaction-response"},
		{"html", "text/html", "<html><body>Proxy login</body></html>", "response is HTML or XML"},
		{"empty", "application/fhir+json", "", "response is empty"},
		{"operation-outcome", "application/fhir+json", `{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}`, "response is an OperationOutcome"},
		{"wrong-bundle-type", "application/fhir+json", `{"resourceType":"Bundle","type":"searchset","entry":[]}`, `Bundle of type "searchset"`},
		{"entry-count", "application/fhir+json", `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201"}}]}`, "has 1 entries for 3 requests"},
		// (A well-formed answer with a failed entry is classified by the
		// entry's status: TestTransactionEntryStatuses.)
		{"not-fhir", "application/json", `{"hello":"world"}`, "response is not a transaction-response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
				w.Header().Set("Content-Type", tc.ctype)
				w.WriteHeader(http.StatusOK)
				w.Write([]byte(tc.body))
				return true
			}
			h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, nil)
			_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
			if len(evs) != 4 {
				t.Fatalf("%d attempts, want MaxAttempts 4", len(evs))
			}
			for i, ev := range evs[:3] {
				wantAttempt(t, ev, i+1, store.StatusPending, 200, tc.reason)
			}
			wantAttempt(t, evs[3], 4, store.StatusDead, 200, tc.reason+"")
			if !strings.HasSuffix(evs[3].A.Error, "(gave up after 4 attempts)") {
				t.Errorf("final error %q", evs[3].A.Error)
			}
			if string(evs[3].A.Outcome) != tc.body {
				t.Errorf("answer not recorded: %q", evs[3].A.Outcome)
			}
		})
	}
}

func TestAmendmentNeverOvertakesOriginal(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		var failed atomic.Int32
		ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
			if strings.Contains(string(body), `"in-progress"`) && failed.Add(1) <= 2 {
				writeJSON(w, http.StatusBadGateway, outcome("transient", "upstream"))
				return true
			}
			return false
		}
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, nil)
		orig := h.enqueue("ehr", "clinic|session|S-1", sessionBundle("P-1", "S-1", "in-progress", false))
		amend := h.enqueue("ehr", "clinic|session|S-1", sessionBundle("P-1", "S-1", "completed", true))
		h.run()
		var got []string
		for len(got) < 4 {
			ev := h.next()
			got = append(got, map[int64]string{orig: "orig", amend: "amend"}[ev.ID]+":"+string(ev.Status))
			if ev.Status == store.StatusPending {
				h.clock.Advance(time.Hour)
			}
		}
		if want := "orig:pending orig:pending orig:done amend:done"; strings.Join(got, " ") != want {
			t.Fatalf("attempts %v, want %s", got, want)
		}
		var procWrites []string
		for _, w := range ehr.committed() {
			if strings.Contains(w, "Procedure/") {
				procWrites = append(procWrites, w)
			}
		}
		if len(procWrites) != 2 || !strings.HasPrefix(procWrites[0], "POST") || !strings.HasSuffix(procWrites[0], "in-progress") ||
			!strings.HasPrefix(procWrites[1], "PUT") || !strings.HasSuffix(procWrites[1], "completed") {
			t.Fatalf("Procedure writes at the EHR: %v", procWrites)
		}
		wantCounts(t, ehr, 1, 1, 1)
	})
}

func TestDeadLetterDoesNotDelayOtherPatients(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
	}{{"dead", http.StatusUnprocessableEntity}, {"retrying", http.StatusInternalServerError}} {
		t.Run(tc.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, ob testOutbox) {
				ehr := newStubEHR(t)
				ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
					if strings.Contains(string(body), "P-A") {
						writeJSON(w, tc.status, outcome("business-rule", "rejected"))
						return true
					}
					return false
				}
				d := testDest("ehr", ehr.base())
				d.Concurrency = 1
				h := newHarnessOn(t, ob, []Destination{d}, nil)
				t0 := h.clock.Now()
				a := h.enqueue("ehr", "kA", sessionBundle("P-A", "S-A", "completed", false))
				b1 := h.enqueue("ehr", "kB1", sessionBundle("P-B", "S-B1", "completed", false))
				b2 := h.enqueue("ehr", "kB2", sessionBundle("P-B", "S-B2", "completed", false))
				h.run()
				if ev := h.next(); ev.ID != a || ev.Status == store.StatusDone {
					t.Fatalf("first attempt: item %d %s", ev.ID, ev.Status)
				}
				for _, id := range []int64{b1, b2} {
					ev := h.next()
					if ev.ID != id || ev.Status != store.StatusDone || !ev.A.At.Equal(t0) {
						t.Fatalf("item %d: %s at +%v; want item %d done at once", ev.ID, ev.Status, ev.A.At.Sub(t0), id)
					}
				}
				wantCounts(t, ehr, 1, 2, 2)
			})
		})
	}
}

func TestLostResponseCreatesNoDuplicate(t *testing.T) {
	for _, mode := range []Mode{ModeTransaction, ModeBatch, ModeSingle} {
		t.Run(string(mode), func(t *testing.T) {
			ehr := newStubEHR(t)
			var dropped atomic.Bool
			ehr.afterCommit = func(n int, w http.ResponseWriter, r *http.Request) bool {
				if dropped.CompareAndSwap(false, true) {
					conn, _, err := http.NewResponseController(w).Hijack()
					if err != nil {
						t.Error(err)
						return false
					}
					conn.Close() // committed, but the answer is lost
					return true
				}
				return false
			}
			d := testDest("ehr", ehr.base())
			d.Mode = mode
			h := newHarness(t, []Destination{d}, nil)
			_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
			if len(evs) != 2 {
				t.Fatalf("%d attempts, want 2", len(evs))
			}
			wantAttempt(t, evs[0], 1, store.StatusPending, 0, "connection closed before the response")
			wantAttempt(t, evs[1], 2, store.StatusDone, 200, "")
			wantCounts(t, ehr, 1, 1, 1)
		})
	}
}

func TestNotifyWakesTheWorker(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) { o.PollInterval = time.Hour })
		h.run()
		id := h.enqueue("ehr", "k1", sessionBundle("P-1", "S-1", "completed", false))
		h.w.Notify()
		if ev := h.next(); ev.ID != id || ev.Status != store.StatusDone {
			t.Fatalf("item %d %s", ev.ID, ev.Status)
		}
	})
}

func TestPanicIsRecoveredAndRetried(t *testing.T) {
	ehr := newStubEHR(t)
	var panicked atomic.Bool
	d := testDest("ehr", ehr.base())
	h := newHarness(t, []Destination{d}, func(o *WorkerOptions) {
		o.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
			return roundTripFunc(func(r *http.Request) (*http.Response, error) {
				if r.Method == http.MethodPost && panicked.CompareAndSwap(false, true) {
					panic("transport bug")
				}
				return rt.RoundTrip(r)
			})
		}
	})
	_, evs := h.sendOne(sessionBundle("P-1", "S-1", "completed", false))
	wantAttempt(t, evs[0], 1, store.StatusPending, 0, "internal error (panic)")
	wantAttempt(t, evs[1], 2, store.StatusDone, 200, "")
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestRunWaitsForInFlightAttempts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		arrived, release := make(chan struct{}), make(chan struct{})
		ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
			close(arrived)
			<-release
			return false
		}
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, nil)
		id := h.enqueue("ehr", "k1", sessionBundle("P-1", "S-1", "completed", false))
		h.run()
		<-arrived
		stopped := make(chan struct{})
		go func() { h.stop(); close(stopped) }()
		close(release)
		<-stopped
		h.stop = nil
		select {
		case ev := <-h.outbox.events:
			if ev.ID != id || ev.Status != store.StatusDone {
				t.Fatalf("item %d %s", ev.ID, ev.Status)
			}
		default:
			t.Fatal("Run returned before the in-flight attempt was recorded")
		}
	})
}

// TestWorkerRecordsAttempts runs the worker on each backend with items of
// two tenants: retries in order per order key, the same order key of
// another tenant not held up, a dead letter that blocks neither its own
// key nor others, every attempt recorded in the outbox.
func TestWorkerRecordsAttempts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ctx := context.Background()
		ehr := newStubEHR(t)
		var failed atomic.Int32
		otherTenant := make(chan struct{})
		sentOther := sync.OnceFunc(func() { close(otherTenant) })
		ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
			switch s := string(body); {
			case strings.Contains(s, "P-2"):
				sentOther()
			case strings.Contains(s, "P-A") && strings.Contains(s, `"in-progress"`):
				writeJSON(w, http.StatusBadRequest, outcome("invalid", "rejected"))
				return true
			case strings.Contains(s, "P-1") && strings.Contains(s, `"in-progress"`) && failed.Add(1) <= 2:
				// The first attempt is answered once clinic-b's item of the
				// same order key has been sent: it must not wait for this one.
				select {
				case <-otherTenant:
				case <-time.After(10 * time.Second):
					t.Error("clinic-b's item was not sent while the default tenant's item of the same order key was in flight")
				}
				writeJSON(w, http.StatusBadGateway, outcome("transient", "upstream"))
				return true
			}
			return false
		}
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, nil)
		items := []*store.OutboxItem{
			{OrderKey: "k1", Patient: "P-1", Payload: sessionBundle("P-1", "S-1", "in-progress", false)},
			{OrderKey: "k1", Patient: "P-1", Payload: sessionBundle("P-1", "S-1", "completed", true)},
			{OrderKey: "kA", Patient: "P-A", Payload: sessionBundle("P-A", "S-A", "in-progress", false)},
			{OrderKey: "kA", Patient: "P-A", Payload: sessionBundle("P-A", "S-A", "completed", true)},
			{OrderKey: "kB", Patient: "P-B", Payload: sessionBundle("P-B", "S-B", "completed", false)},
			{OrderKey: "k1", Patient: "P-2", Tenant: "clinic-b", Payload: sessionBundle("P-2", "S-2", "completed", false)},
		}
		for _, it := range items {
			it.Destination, it.Kind, it.Source, it.RecordID, it.Version = "ehr", "session", "clinic", it.OrderKey, "1"
			it.NextAttempt = h.clock.Now()
		}
		if err := ob.Enqueue(items...); err != nil {
			t.Fatal(err)
		}
		h.run()
		final := map[int64]string{}
		for len(final) < len(items) {
			ev := h.next()
			if ev.Status == store.StatusPending {
				h.clock.Advance(time.Hour)
				continue
			}
			final[ev.ID] = ev.Status
		}
		want := []string{store.StatusDone, store.StatusDone, store.StatusDead, store.StatusDone, store.StatusDone, store.StatusDone}
		for i, it := range items {
			got, attempts, err := ob.Delivery(ctx, it.ID)
			if err != nil {
				t.Fatal(err)
			}
			if final[it.ID] != want[i] || got.Status != want[i] || got.Tenant != it.Tenant {
				t.Errorf("item %d: worker %s, outbox %s (tenant %q); want %s (tenant %q)", i, final[it.ID], got.Status, got.Tenant, want[i], it.Tenant)
			}
			if i == 0 && (len(attempts) != 3 || attempts[2].N != 3 || attempts[0].Error != "http 502 (transient)") {
				t.Errorf("item 0 attempts: %+v", attempts)
			}
			if i == 2 && (len(attempts) != 1 || !strings.Contains(string(attempts[0].Outcome), "rejected")) {
				t.Errorf("dead letter attempts: %+v", attempts)
			}
		}
		for session, want := range map[string]string{"S-1": "POST in-progress,PUT completed", "S-A": "PUT completed", "S-B": "POST completed", "S-2": "POST completed"} {
			if got := strings.Join(procedureWrites(ehr, session), ","); got != want {
				t.Errorf("Procedure writes of %s: %s, want %s", session, got, want)
			}
		}
		if stats, err := ob.Stats(ctx); err != nil || len(stats) != 1 || stats[0].Pending != 0 || stats[0].Dead != 1 {
			t.Errorf("Stats() = %+v, %v; want ehr with nothing pending and 1 dead", stats, err)
		}
		if err := ob.Complete(ctx, &store.Attempt{ItemID: items[0].ID, N: 9}, store.StatusDone, time.Time{}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("late Complete: %v, want store.ErrNotFound", err)
		}
	})
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

// TestLeaseRenewedDuringAttempt: with a lease much shorter than an attempt,
// the claim is renewed while the attempt runs, so a second worker on the
// same outbox never claims (and sends) the item again; SQLite. A fake clock
// moves a third of a lease at a time, each step once the owner's renewal
// is written and the second worker has polled: on the real clock a
// renewal stalled by a busy machine lost the lease (as it should after a
// stall that long) and the test failed.
func TestLeaseRenewedDuringAttempt(t *testing.T) {
	const lease = 30 * time.Second
	var posts atomic.Int32
	posted := make(chan struct{}, 10)
	release := make(chan struct{})
	releaseOnce := sync.OnceFunc(func() { close(release) })
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		posts.Add(1)
		posted <- struct{}{}
		<-release // the attempt outlives several leases
		w.Header().Set("Content-Type", "application/fhir+json")
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}}]}`)
	}))
	defer ehr.Close()
	defer releaseOnce()
	ob := &leaseOutbox{testOutbox: openSQLite(t), completed: make(chan struct{}, 10)}
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "P", Kind: "session", Source: "clinic", RecordID: "k",
		Version: "1", Payload: []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:3f1f8a4e-0b7e-4a83-9d0e-5f1b7c2d9e10",` +
			`"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`)}
	clock := newFakeClock()
	it.NextAttempt, it.Created = clock.Now(), clock.Now()
	if err := ob.Enqueue(it); err != nil {
		t.Fatal(err)
	}
	d := Destination{Name: "ehr", BaseURL: ehr.URL + "/fhir", Timeout: time.Minute, Concurrency: 1, Mode: ModeTransaction}
	// The owner polls never again after its claim: its only timers within
	// a lease are its renewals. The other worker polls every third of a
	// lease and renews never (its own lease is 1000 h): its only timers
	// within a lease are its polls.
	owner := signalClock{fakeClock: clock, within: lease, c: make(chan time.Time, 100)}
	other := signalClock{fakeClock: clock, within: lease, c: make(chan time.Time, 100)}
	start := func(ob Outbox, c Clock, poll, lease time.Duration) func(context.Context) error {
		w, err := NewWorker(ob, []Destination{d}, WorkerOptions{Clock: c, Lease: lease, PollInterval: poll,
			AttemptTimeout: time.Minute, CapabilityInterval: -1, BacklogInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		return w.Run
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { releaseOnce(); cancel(); wg.Wait() }()
	wait := func(c <-chan time.Time, what string) {
		t.Helper()
		select {
		case <-c:
		case <-time.After(30 * time.Second): // a hang guard, not a limit
			t.Fatalf("no %s within 30s", what)
		}
	}
	runOwner := start(ob, owner, 1000*time.Hour, lease)
	wg.Go(func() { _ = runOwner(ctx) })
	select {
	case <-posted:
	case <-time.After(30 * time.Second):
		t.Fatal("the item was not sent within 30s")
	}
	wait(owner.c, "first renewal timer")
	runOther := start(ob.testOutbox, other, lease/3, 1000*time.Hour)
	wg.Go(func() { _ = runOther(ctx) })
	wait(other.c, "first poll of the second worker")
	for step := range 15 { // five leases
		clock.Advance(lease / 3)
		wait(owner.c, fmt.Sprintf("renewal at step %d", step+1))
		wait(other.c, fmt.Sprintf("poll of the second worker at step %d", step+1))
	}
	releaseOnce()
	select {
	case <-ob.completed:
	case <-time.After(30 * time.Second):
		t.Fatal("the attempt was not recorded within 30s")
	}
	cancel()
	wg.Wait()
	if n := posts.Load(); n != 1 {
		t.Errorf("the EHR got %d transactions, want 1 (a lease ran out while its attempt ran)", n)
	}
	if n := ob.renewed.Load(); n < 15 {
		t.Errorf("%d leases renewed during five leases, want 15 (one every third of a lease)", n)
	}
	got, attempts, _ := ob.Delivery(context.Background(), it.ID)
	if got.Status != store.StatusDone || len(attempts) != 1 {
		t.Errorf("item %s with %d attempts, want done after 1", got.Status, len(attempts))
	}
}

// signalClock is a fakeClock that sends the deadline of each timer set at
// most within ahead of now on c, once the timer is set.
type signalClock struct {
	*fakeClock
	within time.Duration
	c      chan time.Time
}

func (s signalClock) NewTimer(deadline time.Time) (<-chan time.Time, func()) {
	ch, stop := s.fakeClock.NewTimer(deadline)
	if deadline.Sub(s.Now()) <= s.within {
		s.c <- deadline
	}
	return ch, stop
}

// leaseOutbox counts the leases renewed and reports each Complete.
type leaseOutbox struct {
	testOutbox
	renewed   atomic.Int32
	completed chan struct{}
}

func (o *leaseOutbox) Renew(ctx context.Context, ids []int64, until time.Time) ([]int64, error) {
	renewed, err := o.testOutbox.Renew(ctx, ids, until)
	o.renewed.Add(int32(len(renewed)))
	return renewed, err
}

func (o *leaseOutbox) Complete(ctx context.Context, a *store.Attempt, status string, next time.Time) error {
	err := o.testOutbox.Complete(ctx, a, status, next)
	o.completed <- struct{}{}
	return err
}

// TestAttemptLogLines: one line per attempt an operator can triage from:
// "delivery: retry", "delivery: delivered" and "delivery: dead letter",
// each with duration_ms, a retry with its next attempt (a dead letter has
// none); a capability check that failed and then worked
// logs its recovery.
func TestAttemptLogLines(t *testing.T) {
	var mu sync.Mutex
	posts, metas := map[string]int{}, 0
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/fhir+json")
		if r.Method == http.MethodGet {
			metas++
			if metas == 1 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			_, _ = io.WriteString(w, `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1","rest":[{"mode":"server","interaction":[{"code":"transaction"}]}]}`)
			return
		}
		body, _ := io.ReadAll(r.Body)
		key := "good"
		if strings.Contains(string(body), "Refused") {
			key = "bad"
		}
		posts[key]++
		switch {
		case key == "bad":
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"invalid"}]}`)
		case posts[key] == 1:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}}]}`)
		}
	}))
	defer ehr.Close()
	ob := openSQLite(t)
	payload := func(family string) []byte {
		return []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:3f1f8a4e-0b7e-4a83-9d0e-5f1b7c2d9e10",` +
			`"resource":{"resourceType":"Patient","name":[{"family":"` + family + `"}]},"request":{"method":"POST","url":"Patient"}}]}`)
	}
	good := &store.OutboxItem{Destination: "ehr", OrderKey: "g", Patient: "P", Kind: "session", Source: "clinic", RecordID: "g", Version: "1", Payload: payload("Kept")}
	bad := &store.OutboxItem{Destination: "ehr", OrderKey: "b", Patient: "P", Kind: "session", Source: "clinic", RecordID: "b", Version: "1", Payload: payload("Refused")}
	if err := ob.Enqueue(good, bad); err != nil {
		t.Fatal(err)
	}
	var logs syncLog
	w, err := NewWorker(ob, []Destination{{Name: "ehr", BaseURL: ehr.URL + "/fhir", Timeout: 5 * time.Second, Concurrency: 2}},
		WorkerOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), PollInterval: 20 * time.Millisecond,
			BackoffBase: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, CapabilityInterval: 30 * time.Millisecond, BacklogInterval: -1,
			DeliveryID: func(item int64) string { return fmt.Sprintf("public-%d", item) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		g, _, _ := ob.Delivery(context.Background(), good.ID)
		b, _, _ := ob.Delivery(context.Background(), bad.ID)
		out := logs.String()
		if g.Status == store.StatusDone && b.Status == store.StatusDead && strings.Contains(out, "capability check recovered") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("deliveries %s/%s, logs:\n%s", g.Status, b.Status, out)
		}
	}
	cancel()
	<-done
	want := map[string]bool{"delivery: retry": false, "delivery: delivered": false, "delivery: dead letter": false}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON log line: %s", line)
		}
		msg, _ := m["msg"].(string)
		if _, ok := want[msg]; !ok {
			continue
		}
		want[msg] = true
		if _, ok := m["duration_ms"].(float64); !ok || m["destination"] != "ehr" {
			t.Errorf("%s line lacks duration_ms or destination: %s", msg, line)
		}
		if _, ok := m["duration"]; ok {
			t.Errorf("%s line has a raw duration: %s", msg, line)
		}
		// A line names the delivery as operators do (its public id).
		if id := m["delivery"]; id != fmt.Sprintf("public-%d", good.ID) && id != fmt.Sprintf("public-%d", bad.ID) {
			t.Errorf("%s line names delivery %v, want its public id: %s", msg, id, line)
		}
		// Only a retry has a next attempt; a dead letter has none.
		if _, ok := m["next_attempt"]; ok != (msg == "delivery: retry") {
			t.Errorf("%s line: next_attempt present %v: %s", msg, ok, line)
		}
		// A dead letter whose EHR answered says where its answer is.
		if want := "kept with the attempt: deliveries show " + fmt.Sprintf("public-%d", bad.ID) + " --payload"; msg == "delivery: dead letter" && m["answer"] != want {
			t.Errorf("dead letter line: answer %v, want %q: %s", m["answer"], want, line)
		}
	}
	for msg, seen := range want {
		if !seen {
			t.Errorf("no %q line in:\n%s", msg, logs.String())
		}
	}
	if strings.Contains(logs.String(), "Kept") || strings.Contains(logs.String(), "Refused") {
		t.Errorf("the log quotes payload content")
	}
}

// syncLog is a bytes.Buffer for concurrent log writers.
type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDestinationHold: the concurrent attempts of one outage round count
// once (the hold is the first backoff step, not the fourth), the hold is
// logged and shown by Holds with until when, and the first success after
// it resumes the destination, logged.
func TestDestinationHold(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		ehr := newStubEHR(t)
		var logs syncLog
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
			o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		})
		var started sync.WaitGroup
		started.Add(4)
		ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
			if n < 4 {
				// The four attempts of the first round run together.
				started.Done()
				started.Wait()
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
		// Rand 0.5, base 2s: one round of failures holds for 1s (four
		// would hold for 8s).
		if got := h.w.Holds(); !got["ehr"].Equal(t0.Add(time.Second)) {
			t.Fatalf("Holds() = %v, want ehr until %v", got, t0.Add(time.Second))
		}
		if n := strings.Count(logs.String(), `"msg":"delivery: destination on hold"`); n != 1 {
			t.Fatalf("%d 'destination on hold' lines, want 1:\n%s", n, logs.String())
		}
		if !strings.Contains(logs.String(), `"until":"`+t0.Add(time.Second).Format(time.RFC3339)) {
			t.Errorf("the hold's log line does not say until when:\n%s", logs.String())
		}
		if h.w.Release("other") {
			t.Error("Release(unknown destination) = true")
		}
		h.clock.Advance(time.Second)
		for range 4 {
			if ev := h.next(); ev.Status != store.StatusDone {
				t.Fatalf("item %d: %s, want done", ev.ID, ev.Status)
			}
		}
		if got := h.w.Holds(); len(got) != 0 {
			t.Errorf("Holds() after recovery = %v, want none", got)
		}
		if n := strings.Count(logs.String(), `"msg":"delivery: destination resumed"`); n != 1 {
			t.Errorf("%d 'destination resumed' lines, want 1:\n%s", n, logs.String())
		}
	})
}

// TestReleaseEndsTheHold: an operator's retry ends a destination's hold
// (Worker.Release), logged.
func TestReleaseEndsTheHold(t *testing.T) {
	ehr := newStubEHR(t)
	ehr.intercept = func(n int, w http.ResponseWriter, r *http.Request, body []byte) bool {
		w.Header().Set("Retry-After", "3600")
		writeJSON(w, http.StatusTooManyRequests, outcome("throttled", "slow down"))
		return true
	}
	var logs syncLog
	h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	})
	h.enqueue("ehr", "kA", sessionBundle("P-1", "S-1", "completed", false))
	h.run()
	h.next()
	// Retry-After 3600 s, capped at the backoff's maximum (1 min here).
	if got := h.w.Holds(); !got["ehr"].Equal(h.clock.Now().Add(time.Minute)) {
		t.Fatalf("Holds() = %v, want ehr for a minute", got)
	}
	if !h.w.Release("ehr") || len(h.w.Holds()) != 0 || h.w.Release("ehr") {
		t.Fatalf("Release: Holds() = %v afterwards, want none", h.w.Holds())
	}
	for _, want := range []string{"delivery: Retry-After capped", "delivery: destination hold released by an operator's retry"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no %q line:\n%s", want, logs.String())
		}
	}
}

// TestRefusedWhenStoredStaysDead: a dead letter refused as its record was
// stored (no payload, store.Refused) that is put back in the queue in the
// database is never sent: the worker makes it dead again with its reason.
func TestRefusedWhenStoredStaysDead(t *testing.T) {
	forEachBackend(t, func(t *testing.T, ob testOutbox) {
		st, ok := ob.(storeOutbox)
		if !ok {
			t.Skip("a store's outbox only")
		}
		ehr := newStubEHR(t)
		h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, nil)
		reason := store.Refused + "source-system-other-tenant: another tenant holds the source here"
		it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "P", Kind: "session", Source: "clinic",
			RecordID: "k", Version: "1", Status: store.StatusDead, LastError: reason}
		if err := ob.Enqueue(it); err != nil {
			t.Fatal(err)
		}
		if err := st.Retry(context.Background(), it.ID, h.clock.Now()); err != nil {
			t.Fatal(err)
		}
		h.run()
		wantAttempt(t, h.next(), 1, store.StatusDead, 0, reason)
		if n := ehr.count("Patient") + ehr.count("Procedure"); n != 0 {
			t.Errorf("the EHR received %d resources", n)
		}
	})
}

// TestFilterTakenOffIsNotSent: a delivery queued while the destination's
// filter accepted its record, and pending when the filter no longer does
// (the configuration changed), is not sent there: it is a dead letter
// naming the filter's field that refused it, and, as nothing was sent, it
// has no AuditEvent of a transmission (probe p10 F13: it was audited as an
// export with an invented HTTP 502).
func TestFilterTakenOffIsNotSent(t *testing.T) {
	for _, tc := range []struct {
		field  string
		filter Filter
	}{
		{"tenants", Filter{Tenants: []string{"clinic-b"}}},
		{"kinds", Filter{Kinds: []string{"assessment"}}},
		{"sources", Filter{Sources: []string{"other-clinic"}}},
	} {
		t.Run(tc.field, func(t *testing.T) {
			ehr := newStubEHR(t)
			d := testDest("ehr", ehr.base())
			d.Filter = tc.filter
			ev, audited := sendOne(t, d, sessionBundle("P-1", "S-1", "completed", false))
			wantNotSent(t, ev, ehr, audited, "not sent: the destination's filter."+tc.field+" does not accept")
		})
	}
}

// sendOne runs a worker with destination d (named "ehr") over one session
// record's delivery whose payload is payload, and returns its first
// attempt and how many transmissions were audited.
func sendOne(t *testing.T, d Destination, payload []byte) (event, int32) {
	t.Helper()
	var audited atomic.Int32
	h := newHarness(t, []Destination{d}, func(o *WorkerOptions) {
		o.Audit = func(context.Context, *store.OutboxItem, *store.Attempt, string, int) error {
			audited.Add(1)
			return nil
		}
	})
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "P", Kind: "session", Source: "clinic",
		Tenant: "clinic-a", RecordID: "k", Version: "1", Payload: payload, NextAttempt: h.clock.Now(), Created: h.clock.Now()}
	if err := h.outbox.Enqueue(it); err != nil {
		t.Fatal(err)
	}
	h.run()
	ev := h.next()
	return ev, audited.Load()
}

// wantNotSent checks that ev is a dead letter not sent (reason containing
// errPart): the EHR received nothing and no transmission was audited.
func wantNotSent(t *testing.T, ev event, ehr *stubEHR, audited int32, errPart string) {
	t.Helper()
	wantAttempt(t, ev, 1, store.StatusDead, 0, errPart)
	// audit verify knows an attempt that sent nothing by this prefix: it
	// looks for no AuditEvent of it.
	if !strings.HasPrefix(ev.A.Error, store.NotSent) {
		t.Errorf("attempt error = %q, want it to begin with store.NotSent %q", ev.A.Error, store.NotSent)
	}
	if n := ehr.count("Patient") + ehr.count("Procedure"); n != 0 {
		t.Errorf("the EHR received %d resources", n)
	}
	if audited != 0 {
		t.Errorf("%d AuditEvents of a transmission for an attempt that sent nothing", audited)
	}
}

// TestAttemptAuditedBeforeRecorded: the worker makes an attempt's
// AuditEvent durable before it records the attempt; when that fails, the
// AuditEvent is tried again (not the send) and the attempt recorded only
// after it, so every transmission the outbox records has its AuditEvent.
// The lease is long: one that ran out while the worker waited to try
// again would let the item be claimed and sent again (on a loaded host a
// 300 ms lease did).
func TestAttemptAuditedBeforeRecorded(t *testing.T) {
	ehr, posts := acceptingEHR(t)
	ob := openSQLite(t)
	it := oneItem(t, ob)
	var mu sync.Mutex
	var audited []string
	w, err := NewWorker(ob, []Destination{{Name: "ehr", BaseURL: ehr.URL + "/fhir", Timeout: 5 * time.Second}},
		WorkerOptions{PollInterval: 20 * time.Millisecond, Lease: 5 * time.Second, BacklogInterval: -1,
			Audit: func(ctx context.Context, got *store.OutboxItem, a *store.Attempt, outcome string, _ int) error {
				_, recorded, err := ob.Delivery(ctx, got.ID)
				mu.Lock()
				defer mu.Unlock()
				audited = append(audited, fmt.Sprintf("attempt %d %s, %d recorded before (%v)", a.N, outcome, len(recorded), err))
				if len(audited) == 1 {
					return errors.New("the audit trail is unavailable")
				}
				return nil
			}})
	if err != nil {
		t.Fatal(err)
	}
	attempts := runUntilDone(t, w, ob, it.ID)
	mu.Lock()
	defer mu.Unlock()
	want := []string{"attempt 1 done, 0 recorded before (<nil>)", "attempt 1 done, 0 recorded before (<nil>)"}
	if !slices.Equal(audited, want) || posts.Load() != 1 || len(attempts) != 1 {
		t.Errorf("audited %q, %d sent, %d attempts recorded; want %q, 1 sent (the first try of its AuditEvent failed and was "+
			"tried again, not the send), 1 recorded", audited, posts.Load(), len(attempts), want)
	}
}

// TestInterruptedAttemptRecorded: a worker that stopped during its attempt
// (killed: its claim held, nothing recorded) may have sent the record.
// The worker that claims the item after the lease ends records that
// attempt, dated when it was claimed, and audits it as interrupted before
// sending the record again: the outbox and the audit trail count every
// transmission the EHR may have seen (probe p10 F3: the first send was in
// no record).
func TestInterruptedAttemptRecorded(t *testing.T) {
	ehr, posts := acceptingEHR(t)
	ob := openSQLite(t)
	it := oneItem(t, ob)
	// The worker that died: it claimed the item and recorded nothing.
	claimed := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	if got, err := ob.Claim(context.Background(), "ehr", claimed, time.Millisecond, 1); err != nil || len(got) != 1 {
		t.Fatalf("claim = %v, %v", got, err)
	}
	var mu sync.Mutex
	var audited []string
	w, err := NewWorker(ob, []Destination{{Name: "ehr", BaseURL: ehr.URL + "/fhir", Timeout: 5 * time.Second}},
		WorkerOptions{PollInterval: 20 * time.Millisecond, Lease: 300 * time.Millisecond, BacklogInterval: -1,
			Audit: func(ctx context.Context, got *store.OutboxItem, a *store.Attempt, outcome string, _ int) error {
				mu.Lock()
				defer mu.Unlock()
				audited = append(audited, fmt.Sprintf("attempt %d %s", a.N, outcome))
				return nil
			}})
	if err != nil {
		t.Fatal(err)
	}
	attempts := runUntilDone(t, w, ob, it.ID)
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"attempt 1 interrupted", "attempt 2 done"}; !slices.Equal(audited, want) || posts.Load() != 1 {
		t.Errorf("audited %q, %d sent; want %q, 1 sent", audited, posts.Load(), want)
	}
	if len(attempts) != 2 {
		t.Fatalf("%d attempts recorded, want 2 (the interrupted one, the delivery)", len(attempts))
	}
	if a := attempts[0]; a.N != 1 || a.HTTPStatus != 0 || !a.At.Equal(claimed) || !strings.HasPrefix(a.Error, "interrupted: ") {
		t.Errorf("first attempt = n %d, status %d, at %v, error %q; want 1, 0, %v (its claim), interrupted", a.N, a.HTTPStatus, a.At, a.Error, claimed)
	}
	if a := attempts[1]; a.N != 2 || a.HTTPStatus != 200 {
		t.Errorf("second attempt = n %d, status %d; want 2, 200", a.N, a.HTTPStatus)
	}
}

// acceptingEHR is an EHR that stores every Bundle posted to it, and the
// count of posts.
func acceptingEHR(t *testing.T) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	posts := new(atomic.Int32)
	ehr := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, `{"resourceType":"CapabilityStatement","fhirVersion":"4.0.1"}`)
			return
		}
		posts.Add(1)
		_, _ = io.WriteString(w, `{"resourceType":"Bundle","type":"transaction-response","entry":[{"response":{"status":"201 Created"}}]}`)
	}))
	t.Cleanup(ehr.Close)
	return ehr, posts
}

// oneItem enqueues one record of one Patient for destination "ehr".
func oneItem(t *testing.T, ob testOutbox) *store.OutboxItem {
	t.Helper()
	it := &store.OutboxItem{Destination: "ehr", OrderKey: "a", Patient: "P", Kind: "session", Source: "clinic", RecordID: "a", Version: "1",
		Payload: []byte(`{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:3f1f8a4e-0b7e-4a83-9d0e-5f1b7c2d9e10",` +
			`"resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}`)}
	if err := ob.Enqueue(it); err != nil {
		t.Fatal(err)
	}
	return it
}

// runUntilDone runs w until item id is delivered (at most 30 s), stops it
// and returns the item's attempts.
func runUntilDone(t *testing.T, w *Worker, ob testOutbox, id int64) []*store.Attempt {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, _, _ := ob.Delivery(context.Background(), id)
		if got.Status == store.StatusDone {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("delivery %s after 30 s", got.Status)
		}
	}
	cancel()
	<-done
	_, attempts, err := ob.Delivery(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return attempts
}

// lockedOutbox is an outbox whose claims fail while the database is
// locked by another process.
type lockedOutbox struct {
	*memoryOutbox
	fails atomic.Int32
}

func (o *lockedOutbox) Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]*store.OutboxItem, error) {
	o.fails.Add(1)
	return nil, store.Unavailable(store.CauseLocked, errors.New("database is locked"))
}

// TestClaimFailureLevel: a claim that fails because another process holds
// the database's lock is a warning naming the cause, not an error: it is
// the database's trouble (readyz says so) and passes (p13).
func TestClaimFailureLevel(t *testing.T) {
	var logs syncLog
	ob := &lockedOutbox{memoryOutbox: newMemoryOutbox()}
	w, err := NewWorker(ob, []Destination{{Name: "ehr", BaseURL: "http://127.0.0.1:1/fhir"}},
		WorkerOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), PollInterval: 5 * time.Millisecond,
			CapabilityInterval: -1, BacklogInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	for ob.fails.Load() < 4 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	var line struct{ Level, Msg, Cause string }
	logged := 0 // an outage is logged once (a review: a line every poll)
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var ln struct{ Level, Msg, Cause string }
		if err := json.Unmarshal([]byte(l), &ln); err == nil && ln.Msg == "delivery: claim failed" {
			if logged == 0 {
				line = ln
			}
			logged++
		}
	}
	if line.Msg != "delivery: claim failed" || line.Level != "WARN" || line.Cause != store.CauseLocked || logged != 1 {
		t.Errorf("claim failures logged %d times, first as %+v; want once, WARN with cause %q; log:\n%s", logged, line, store.CauseLocked, logs.String())
	}
}

// TestFailingDestinationWarns: an EHR that fails every attempt with an
// answer that does not hold the destination (a 500, a timeout) is a
// warning every failingWarnEvery consecutive failures, naming the
// destination and the last failure, and its recovery is logged (probe
// p10 F5: only INFO retry lines for hours).
func TestFailingDestinationWarns(t *testing.T) {
	var buf bytes.Buffer
	d := &destWorker{w: &Worker{opts: WorkerOptions{Logger: slog.New(slog.NewJSONHandler(&buf, nil))}}, dest: Destination{Name: "ehr"}}
	now := time.Now()
	fail := Result{Outcome: OutcomeRetry, HTTPStatus: 500, Error: "http 500 (exception)"}
	for range failingWarnEvery - 1 {
		d.track(fail, now, now)
	}
	d.track(Result{Outcome: OutcomeDead, HTTPStatus: 422}, now, now) // a record's own refusal: neither
	if strings.Contains(buf.String(), "destination failing") {
		t.Fatalf("warned before %d failures:\n%s", failingWarnEvery, buf.String())
	}
	d.track(fail, now, now)
	warn := buf.String()
	if !strings.Contains(warn, `"level":"WARN","msg":"delivery: destination failing","destination":"ehr","consecutive_failures":10,"http_status":500`) {
		t.Fatalf("no warning after %d failures:\n%s", failingWarnEvery, warn)
	}
	d.track(Result{Outcome: OutcomeDone, HTTPStatus: 200}, now, now)
	if !strings.Contains(buf.String(), `"msg":"delivery: destination answering again","destination":"ehr","failed_attempts":10`) {
		t.Errorf("the recovery is not logged:\n%s", buf.String())
	}
	buf.Reset()
	for range failingWarnEvery - 1 {
		d.track(fail, now, now)
	}
	if strings.Contains(buf.String(), "destination failing") {
		t.Errorf("the count did not start again after a success:\n%s", buf.String())
	}
}

// uncommittedOutbox's first Claim returns the due item with an error, as
// a store whose claim transaction failed at its commit (a connection the
// database server terminated) would have had it in hand: the item is not
// claimed, still pending.
type uncommittedOutbox struct {
	*memoryOutbox
	id     int64
	failed atomic.Bool
}

func (o *uncommittedOutbox) Claim(ctx context.Context, destination string, now time.Time, lease time.Duration, limit int) ([]*store.OutboxItem, error) {
	if o.failed.CompareAndSwap(false, true) {
		it, _, err := o.Delivery(ctx, o.id)
		if err != nil {
			return nil, err
		}
		return []*store.OutboxItem{it}, store.Unavailable(store.CauseShutdown, errors.New("terminating connection"))
	}
	return o.memoryOutbox.Claim(ctx, destination, now, lease, limit)
}

// TestUncommittedClaimIsNotSent: a claim that failed sends nothing, even
// items it returned: they were never claimed, and the next claim sends them
// (probe p37 F1: after a terminated database connection a delivery reached
// the EHR twice, its first send recorded nowhere).
func TestUncommittedClaimIsNotSent(t *testing.T) {
	ehr := newStubEHR(t)
	ob := &uncommittedOutbox{memoryOutbox: newMemoryOutbox()}
	h := newHarnessOn(t, ob, []Destination{testDest("ehr", ehr.base())}, nil)
	id := h.enqueue("ehr", "k1", sessionBundle("P-1", "S-1", "completed", false))
	ob.id = id
	h.run()
	// After the failed claim the worker claims again at its next poll.
	var ev event
	for deadline := time.Now().Add(20 * time.Second); ; {
		select {
		case ev = <-h.outbox.events:
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no attempt recorded within 20s")
			}
			h.clock.Advance(time.Second)
			continue
		}
		break
	}
	if ev.Err != nil {
		t.Fatalf("complete item %d: %v", ev.ID, ev.Err)
	}
	wantAttempt(t, ev, 1, store.StatusDone, 200, "")
	ehr.mu.Lock()
	n := len(ehr.requests)
	ehr.mu.Unlock()
	if n != 1 || !ob.failed.Load() {
		t.Errorf("the EHR got %d requests (the failed claim seen: %v), want 1", n, ob.failed.Load())
	}
}

// TestWithholdIsNotSent: an item Withhold gives a reason for (a withdrawal
// whose record never reached the destination) is a dead letter with that
// reason, nothing sent and no transmission audited; one Withhold could not
// judge (the database failed) is tried again, nothing sent meanwhile.
func TestWithholdIsNotSent(t *testing.T) {
	reason := store.WithheldWithdrawal + ": never received the record"
	for _, tc := range []struct {
		name string
		errs int // Withhold's failures before it answers
	}{{"withheld", 0}, {"withheld after a failure", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			ehr := newStubEHR(t)
			var audited atomic.Int32
			var calls atomic.Int32
			h := newHarness(t, []Destination{testDest("ehr", ehr.base())}, func(o *WorkerOptions) {
				o.Audit = func(context.Context, *store.OutboxItem, *store.Attempt, string, int) error {
					audited.Add(1)
					return nil
				}
				o.Withhold = func(context.Context, *store.OutboxItem) (string, error) {
					if int(calls.Add(1)) <= tc.errs {
						return "", store.ErrUnavailable
					}
					return reason, nil
				}
			})
			it := &store.OutboxItem{Destination: "ehr", OrderKey: "k", Patient: "P", Kind: "session", Source: "clinic",
				RecordID: "k", Version: "2", Payload: sessionBundle("P-1", "S-1", "completed", false), NextAttempt: h.clock.Now(), Created: h.clock.Now()}
			if err := h.outbox.Enqueue(it); err != nil {
				t.Fatal(err)
			}
			h.run()
			for range tc.errs {
				ev := h.next()
				if ev.Status != store.StatusPending || !strings.HasPrefix(ev.A.Error, store.NotSent) {
					t.Fatalf("attempt while Withhold failed: %s %q, want pending, not sent", ev.Status, ev.A.Error)
				}
				h.clock.Advance(time.Hour)
				h.w.Notify()
			}
			ev := h.next()
			if ev.Status != store.StatusDead || ev.A.Error != reason {
				t.Errorf("attempt: %s %q, want dead %q", ev.Status, ev.A.Error, reason)
			}
			if n := ehr.count("Patient") + ehr.count("Procedure"); n != 0 {
				t.Errorf("the EHR received %d resources", n)
			}
			if audited.Load() != 0 {
				t.Errorf("%d AuditEvents of a transmission for attempts that sent nothing", audited.Load())
			}
		})
	}
}
