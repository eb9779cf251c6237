package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ketamine-gateway/ketamine-gateway/gateway/outcome"
)

// The large request bodies in process are bounded in bytes. A body's
// decoded and validated form takes some thirty times its size in memory
// (a 10 MB Bundle of short strings took 210 MB), so the concurrency
// bound alone (MaxInFlight requests, each up to MaxBodyBytes) let one
// authenticated client hold far more memory than the machine has with a
// few dozen large bodies (an attacker's review: eight 10 MB bodies took
// the gateway to 2.5 GB, and every other client's requests slowed 30
// times). A body of largeBody bytes or more takes its size from a budget
// of bodyBudgetBodies times the body limit, and no client takes more than
// half of it; a body that finds no room waits up to bodyWait, then is
// refused: 429 when its client holds its half, 503 when the others hold
// the rest. What it took is given back when its request ends. Smaller
// bodies (a native record, a search form, a typical Bundle) never wait.
const (
	largeBody        = 1 << 20
	bodyBudgetBodies = 2
	bodyWait         = 2 * time.Second
	bodyPoll         = 20 * time.Millisecond
)

// bodyBudget is the budget of the large bodies in process.
type bodyBudget struct {
	total, perClient int64
	wait             time.Duration // bodyWait; shorter in tests

	mu       sync.Mutex
	used     int64
	byClient map[string]int64
}

func newBodyBudget(maxBody int64) *bodyBudget {
	total := bodyBudgetBodies * maxBody
	return &bodyBudget{total: total, perClient: total / 2, wait: bodyWait, byClient: map[string]int64{}}
}

// take takes n bytes for client key, waiting up to bodyWait for room; the
// release it returns gives them back (once). A body larger than a
// client's half is let in alone, when nothing else of its client is in
// process (the body limit is what refuses a body too large).
func (b *bodyBudget) take(ctx context.Context, key string, n int64) (release func(), err error) {
	deadline := time.Now().Add(b.wait)
	for {
		b.mu.Lock()
		mine := b.byClient[key]
		clientRoom := mine+n <= b.perClient || mine == 0
		if clientRoom && (b.used+n <= b.total || b.used == 0) {
			b.used += n
			b.byClient[key] = mine + n
			b.mu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { b.give(key, n) }) }, nil
		}
		b.mu.Unlock()
		if !time.Now().Before(deadline) {
			if !clientRoom {
				return nil, errBodiesThrottled
			}
			return nil, errBodiesBusy
		}
		t := time.NewTimer(bodyPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

func (b *bodyBudget) give(key string, n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.byClient[key] -= n; b.byClient[key] <= 0 {
		delete(b.byClient, key)
	}
}

// The refusals of a large body the budget has no room for.
var (
	errBodiesThrottled = &outcome.Error{Kind: outcome.Throttled, RetryAfter: 1, Issues: []outcome.Issue{{Severity: "error",
		Code: "throttled", Rule: "body-budget-client", Message: "this client's large request bodies in process already take " +
			"its share of the gateway's memory for them; retry when one of its requests has finished (send large Bundles one at a time)"}}}
	errBodiesBusy = &outcome.Error{Kind: outcome.Unavailable, RetryAfter: 1, Issues: []outcome.Issue{{Severity: "error",
		Code: "transient", Rule: "body-budget", Message: "the gateway is processing as many large request bodies as its memory " +
			"for them allows; retry shortly"}}}
)

// bodyHoldKey is the echo context key of the request's hold on the budget
// (heldBody), which holdBodies gives back when the request ends.
const bodyHoldKey = "kg.bodyHold"

// heldBody is what one request took from the budget.
type heldBody struct {
	budget  *bodyBudget
	release []func()
}

// holdBodies lets the request's body reads take from the budget
// (admitBody) and gives back what they took when the request ends.
func (s *Server) holdBodies(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := &heldBody{budget: s.bodies}
		c.Set(bodyHoldKey, h)
		defer func() {
			for _, r := range h.release {
				r()
			}
		}()
		return next(c)
	}
}

// admitBody takes the room of a body of n bytes, read whole, for the
// request's client (nothing below largeBody, nor outside holdBodies).
func admitBody(c echo.Context, n int) error {
	h, ok := c.Get(bodyHoldKey).(*heldBody)
	if !ok || h.budget == nil || n < largeBody {
		return nil
	}
	release, err := h.budget.take(c.Request().Context(), budgetKey(c), int64(n))
	if err != nil {
		return err
	}
	h.release = append(h.release, release)
	return nil
}

// budgetKey names the request's client for the budget as the per-client
// rate limit does (auth.Principal.Key; development mode's one anonymous
// client: ""); an unauthenticated request, which no route reads the body
// of, by address.
func budgetKey(c echo.Context) string {
	if p := scopeOf(c).Principal; p != nil {
		return "client:" + p.Key()
	}
	return "addr:" + c.RealIP()
}
