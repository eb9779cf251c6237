package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// TestBodyBudget: large bodies take their size from the budget; a client
// past its half waits, then is 429; the others past the rest, 503; room
// given back lets the next in; a body larger than a client's half goes
// in alone; giving back twice gives back once.
func TestBodyBudget(t *testing.T) {
	const mib = 1 << 20
	b := newBodyBudget(32 * mib) // 64 MiB in all, 32 a client
	b.wait = 30 * time.Millisecond
	ctx := context.Background()
	take := func(key string, n int64) (func(), error) { return b.take(ctx, key, n*mib) }
	a1, err := take("a", 20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := take("a", 20); kindOf(err) != outcome.Throttled {
		t.Errorf("a client past its half: %v, want 429", err)
	}
	b1, err := take("b", 30)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := take("c", 20); kindOf(err) != outcome.Unavailable {
		t.Errorf("past the budget: %v, want 503", err)
	}
	a1()
	a1() // once
	c1, err := take("c", 20)
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	if b.used != 50*mib {
		t.Errorf("used %d MiB, want 50 (a release counted twice?)", b.used/mib)
	}
	b1()
	c1()
	big, err := take("d", 40)
	if err != nil {
		t.Fatalf("a body over a client's half, alone: %v", err)
	}
	big()
	if b.used != 0 || len(b.byClient) != 0 {
		t.Errorf("after every release: used %d, clients %v", b.used, b.byClient)
	}
	// A waiter gets in when room frees within the wait.
	b.wait = 2 * time.Second
	h, _ := take("e", 32)
	go func() { time.Sleep(50 * time.Millisecond); h() }()
	if r, err := take("e", 32); err != nil {
		t.Errorf("a waiter whose client freed room: %v", err)
	} else {
		r()
	}
}

func kindOf(err error) outcome.Kind {
	var oe *outcome.Error
	if !errors.As(err, &oe) {
		return outcome.Internal
	}
	return oe.Kind
}

// TestBodyBudgetHTTP: a large body the budget has no room for is refused
// 503 with Retry-After and an OperationOutcome, nothing written; a small
// one is not held up; room given back by a request's end lets the large
// body in.
func TestBodyBudgetHTTP(t *testing.T) {
	s, _ := sqliteServer(t, false)
	s.bodies.wait = 50 * time.Millisecond
	hold, err := s.bodies.take(context.Background(), "someone else", s.bodies.total)
	if err != nil {
		t.Fatal(err)
	}
	large := `{"resourceType":"Patient","name":[{"text":"` + strings.Repeat("a", largeBody) + `"}]}`
	rec := send(s, "POST", "/fhir/Patient", large)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "body-budget") {
		t.Errorf("a large body without room = %d %s, want 503 body-budget with Retry-After", rec.Code, rec.Body)
	}
	if rec := send(s, "POST", "/fhir/Patient", `{"resourceType":"Patient","gender":"other"}`); rec.Code != http.StatusCreated {
		t.Errorf("a small body = %d %s, want 201", rec.Code, rec.Body)
	}
	hold()
	if rec := send(s, "POST", "/fhir/Patient", large); rec.Code != http.StatusCreated {
		t.Errorf("a large body with room = %d %s, want 201", rec.Code, rec.Body)
	}
	if s.bodies.used != 0 {
		t.Errorf("the requests left %d bytes taken", s.bodies.used)
	}
}
