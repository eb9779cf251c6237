package delivery

import (
	"context"
	"math"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/store"
)

func TestDestinationValidate(t *testing.T) {
	ok := Destination{Name: "ehr", BaseURL: "https://ehr.example.org/fhir"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid destination: %v", err)
	}
	smart := ok
	smart.Auth = Auth{Type: AuthSMARTBackend, SMART: SMART{ClientID: "c", Scope: "system/*.write", PrivateKeyFile: "k.pem", KeyID: "k1"}}
	if err := smart.Validate(); err != nil {
		t.Fatalf("valid SMART destination: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*Destination)
		want string
	}{
		"no name":         {func(d *Destination) { d.Name = " " }, "name is required"},
		"no base":         {func(d *Destination) { d.BaseURL = "" }, "base URL: required"},
		"plain http":      {func(d *Destination) { d.BaseURL = "http://ehr.example.org/fhir" }, "http is only allowed to a loopback host"},
		"ftp":             {func(d *Destination) { d.BaseURL = "ftp://ehr.example.org" }, `scheme "ftp"`},
		"credentials":     {func(d *Destination) { d.BaseURL = "https://u:p@ehr.example.org" }, "credentials in the URL"},
		"query":           {func(d *Destination) { d.BaseURL = "https://ehr.example.org/fhir?x=1" }, "query or fragment"},
		"mode":            {func(d *Destination) { d.Mode = "bulk" }, `mode "bulk"`},
		"negative":        {func(d *Destination) { d.Concurrency = -1 }, "concurrency -1"},
		"tls pair":        {func(d *Destination) { d.TLS.CertFile = "c.pem" }, "cert file and key file go together"},
		"bearer no token": {func(d *Destination) { d.Auth.Type = AuthBearer }, "bearer needs a token"},
		"auth type":       {func(d *Destination) { d.Auth.Type = "basic" }, `type "basic"`},
		"smart no key": {func(d *Destination) {
			d.Auth = Auth{Type: AuthSMARTBackend, SMART: SMART{ClientID: "c", Scope: "s", KeyID: "k"}}
		}, "exactly one of private key"},
		"smart alg":       {func(d *Destination) { d.Auth = smart.Auth; d.Auth.SMART.Alg = "HS256" }, `alg "HS256"`},
		"smart token url": {func(d *Destination) { d.Auth = smart.Auth; d.Auth.SMART.TokenURL = "http://auth.example.org/token" }, "token URL"},
		"empty filter":    {func(d *Destination) { d.Filter.Kinds = []string{""} }, "filter: empty kind"},
	} {
		d := ok
		tc.edit(&d)
		err := d.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", name, err, tc.want)
		}
	}
	// Every problem is reported at once, and secrets are not echoed.
	d := Destination{BaseURL: "http://x", Auth: Auth{Type: AuthBearer, Token: "secret token"}}
	err := d.Validate()
	if err == nil || !strings.Contains(err.Error(), "name is required") || !strings.Contains(err.Error(), "white space") ||
		strings.Contains(err.Error(), "secret") {
		t.Errorf("joined errors: %v", err)
	}
	for _, base := range []string{"http://127.0.0.1:8080/fhir", "http://localhost/fhir", "http://[::1]:1/fhir"} {
		if err := (Destination{Name: "x", BaseURL: base}).Validate(); err != nil {
			t.Errorf("%s: %v", base, err)
		}
	}
}

func TestDestinationAccepts(t *testing.T) {
	all := Destination{}
	some := Destination{Filter: Filter{Kinds: []string{"session", "adverse-event"}, Sources: []string{"clinic-a"}}}
	for _, tc := range []struct {
		d            Destination
		kind, source string
		want         bool
	}{
		{all, "session", "any", true},
		{some, "session", "clinic-a", true},
		{some, "adverse-event", "clinic-a", true},
		{some, "assessment", "clinic-a", false},
		{some, "session", "clinic-b", false},
	} {
		if got := tc.d.Accepts(tc.kind, tc.source); got != tc.want {
			t.Errorf("Accepts(%s, %s) = %v with %+v", tc.kind, tc.source, got, tc.d.Filter)
		}
	}
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"30":                            30 * time.Second,
		" 5 ":                           5 * time.Second,
		"-3":                            0,
		"99999999999999":                maxRetryAfter * time.Second,
		"Sun, 10 May 2026 12:02:00 GMT": 2 * time.Minute,
		"Sun, 10 May 2026 11:00:00 GMT": 0, // in the past
		"soon":                          0,
	} {
		if got := retryAfter(http.Header{"Retry-After": {v}}, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

func TestBackoffIsFullJitterWithinBounds(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999999} {
		w := &Worker{opts: WorkerOptions{BackoffBase: time.Second, BackoffMax: 10 * time.Minute, Rand: func() float64 { return r }}}
		d := &destWorker{w: w}
		for n := 1; n <= 100; n++ {
			ceil := time.Duration(min(float64(10*time.Minute), float64(time.Second)*math.Pow(2, float64(n-1))))
			got := d.backoff(n)
			if got < 0 || got > ceil || got != time.Duration(r*float64(ceil)) {
				t.Fatalf("rand %v attempt %d: %v, ceiling %v", r, n, got, ceil)
			}
		}
	}
}

func TestRelativeURLs(t *testing.T) {
	for raw, ok := range map[string]bool{
		"Patient":                              true,
		"AdverseEvent/8cb856e0-d30c-52d6-b3a3": true,
		"Procedure?identifier=https://x.org/sid/session|S-1": true,
		"Observation/1/_history/2":                           true,
		"https://evil.example/Patient":                       false,
		"//evil.example/Patient":                             false,
		"/Patient":                                           false,
		"Patient/../metadata":                                false,
		"Patient/..":                                         false,
		"patient":                                            false,
		"Patient/1/2":                                        false,
		"Patient#x":                                          false,
		"Patient/1?x=a b":                                    false,
		"Patient\\1":                                         false,
	} {
		if _, err := checkRelative(raw); (err == nil) != ok {
			t.Errorf("checkRelative(%q): %v", raw, err)
		}
	}
	for loc, want := range map[string]string{
		"Patient/12/_history/1":                           "Patient/12",
		"https://ehr.example/fhir/Patient/abc/_history/3": "Patient/abc",
		"Patient/12":                "Patient/12",
		"Observation/12/_history/1": "",
		"":                          "",
	} {
		if got, _ := parseLocation(loc, "Patient"); got != want {
			t.Errorf("parseLocation(%q) = %q, want %q", loc, got, want)
		}
	}
	if got := escapeQuery("identifier=https://x.org/sid|S 1+2%41é"); got != "identifier=https://x.org/sid%7CS%201%2B2%41%C3%A9" {
		t.Errorf("escapeQuery: %s", got)
	}
}

func TestClassifyStatus(t *testing.T) {
	for code, want := range map[int]string{
		200: OutcomeRetry, // never asked for 2xx; anything unexpected is retried
		301: OutcomeRetry, 400: OutcomeDead, 401: OutcomeRetry, 403: OutcomeDead, 404: OutcomeDead,
		408: OutcomeRetry, 409: OutcomeRetry, 412: OutcomeDead, 422: OutcomeDead, 429: OutcomeRetry,
		500: OutcomeRetry, 502: OutcomeRetry, 503: OutcomeRetry, 504: OutcomeRetry,
	} {
		if got, _ := classifyStatus(code); got != want {
			t.Errorf("status %d: %s, want %s", code, got, want)
		}
	}
}

func TestRateLimiter(t *testing.T) {
	clock := newFakeClock()
	l := newLimiter(clock, 2, 2) // 2/s, bursts of 2
	delay := func() time.Duration {
		now := clock.Now()
		return l.bucket.ReserveN(now, 1).DelayFrom(now)
	}
	var waits []time.Duration
	for range 5 {
		waits = append(waits, delay())
	}
	want := []time.Duration{0, 0, 500 * time.Millisecond, time.Second, 1500 * time.Millisecond}
	if !slices.Equal(waits, want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	clock.Advance(10 * time.Second) // refills to the burst, no more
	if w1, w2, w3 := delay(), delay(), delay(); w1 != 0 || w2 != 0 || w3 != 500*time.Millisecond {
		t.Fatalf("after a pause: %v %v %v", w1, w2, w3)
	}
	// A wait cut off by its context gives its token back.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := l.wait(ctx); err == nil {
		t.Fatal("wait with a cancelled context")
	}
	if w := delay(); w != time.Second {
		t.Fatalf("after a cancelled wait: %v, want 1s (the token given back)", w)
	}
	// A wait that has to wait ends when the clock gets there.
	done := make(chan error, 1)
	go func() { done <- l.wait(context.Background()) }()
	for clock.pending() == 0 {
		runtime.Gosched()
	}
	clock.Advance(1500 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatalf("wait: %v", err)
	}
	if newLimiter(clock, 0, 0) != nil {
		t.Fatal("a zero rate limits")
	}
}

func TestNewWorkerChecks(t *testing.T) {
	d := Destination{Name: "ehr", BaseURL: "https://ehr.example.org/fhir"}
	if _, err := NewWorker(newMemoryOutbox(), []Destination{d, d}, WorkerOptions{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate names: %v", err)
	}
	if _, err := NewWorker(nil, nil, WorkerOptions{}); err == nil {
		t.Error("nil outbox accepted")
	}
	slow := d
	slow.Timeout = 10 * time.Minute
	if _, err := NewWorker(newMemoryOutbox(), []Destination{slow}, WorkerOptions{}); err == nil || !strings.Contains(err.Error(), "attempt timeout") {
		t.Errorf("timeout beyond the attempt timeout: %v", err)
	}
	bad := d
	bad.Auth = Auth{Type: AuthSMARTBackend, SMART: SMART{ClientID: "c", Scope: "s", KeyID: "k", PrivateKeyPEM: "nope"}}
	if _, err := NewWorker(newMemoryOutbox(), []Destination{bad}, WorkerOptions{}); err == nil || !strings.Contains(err.Error(), "no PEM") {
		t.Errorf("bad key: %v", err)
	}
	w, err := NewWorker(newMemoryOutbox(), []Destination{d}, WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := w.Run(ctx); err == nil {
		t.Fatal("second Run accepted")
	}
}

func TestDestinationAcceptsTenant(t *testing.T) {
	all := Destination{}
	some := Destination{Filter: Filter{Tenants: []string{"clinic-a"}}}
	for _, tc := range []struct {
		d      Destination
		tenant string
		want   bool
	}{{all, "clinic-a", true}, {all, "", true}, {some, "clinic-a", true}, {some, "clinic-b", false}, {some, "", false}} {
		if got := tc.d.AcceptsTenant(tc.tenant); got != tc.want {
			t.Errorf("AcceptsTenant(%q) = %v with %v, want %v", tc.tenant, got, tc.d.Filter.Tenants, tc.want)
		}
	}
}

func TestRetryNeverPastTheDeadLetterDeadline(t *testing.T) {
	created := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name       string
		age        time.Duration // at the attempt
		retryAfter time.Duration
		want       time.Duration // next attempt after created
	}{
		{"well before", time.Hour, 5 * time.Minute, time.Hour + 5*time.Minute},
		{"crossing the deadline", 71*time.Hour + 58*time.Minute, 10 * time.Minute, 72 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &Worker{opts: WorkerOptions{BackoffBase: time.Second, BackoffMax: 10 * time.Minute, MaxAttempts: 50,
				MaxAge: 72 * time.Hour, Rand: func() float64 { return 0 }}}
			d := &destWorker{w: w}
			res := Result{Outcome: OutcomeRetry, Error: "http 429", RetryAfter: tc.retryAfter}
			status, next := d.decide(&store.OutboxItem{Created: created, Attempts: 1}, &res, created.Add(tc.age), false)
			if status != store.StatusPending || !next.Equal(created.Add(tc.want)) {
				t.Fatalf("decide = %s, next at +%v; want pending at +%v", status, next.Sub(created), tc.want)
			}
		})
	}
}

// TestPreconditionFailedReason: a 412 is a dead letter whose reason gives
// the likely cause and the remedy, as likely, not as a fact (the gateway
// sends no If-Match, but an EHR may answer 412 for its own reasons), and
// for a 412 to the whole Bundle says that it names no entry (an EHR
// review).
func TestPreconditionFailedReason(t *testing.T) {
	c := &Client{clock: newFakeClock()}
	resp := &response{status: http.StatusPreconditionFailed, header: http.Header{}}
	for _, tc := range []struct {
		what string
		want []string
	}{
		{"", []string{"http 412: most likely more than one resource", "the EHR's answer names no entry", "merge them at the EHR"}},
		{"Bundle.entry[0] (POST Patient)", []string{"Bundle.entry[0] (POST Patient): http 412: most likely", "merge them at the EHR"}},
	} {
		r := c.failure(tc.what, resp, nil)
		for _, w := range tc.want {
			if !strings.Contains(r.Error, w) || r.Outcome != OutcomeDead {
				t.Errorf("failure(%q) = %s %q, want dead and %q", tc.what, r.Outcome, r.Error, w)
			}
		}
		if tc.what != "" && strings.Contains(r.Error, "names no entry") {
			t.Errorf("failure(%q) = %q says it names no entry", tc.what, r.Error)
		}
	}
}
